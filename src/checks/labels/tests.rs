//! The labels check on real nodes as published (`tests/data/real-nodes/`), never on what the
//! simulator makes. Each node's expectation is what its owner would state: the catalog's entry
//! for its instance type (so the catalog itself is tested against real clusters), or, for a
//! machine no cloud map knows, the GPUs its source says it has, as an `expect` entry would;
//! the driver is what the source says the node runs. Every node passes as published, and
//! fails with a message naming node, label, observed and expected value when one GFD label is
//! removed, one value is changed, or the expected count is off by one.

use super::*;
use crate::catalog::Catalog;
use crate::fixture::real_nodes::{self, RealNode};
use crate::plan::driver::{DriverExpect, DriverRule};

/// The owner's expectation of a recorded node.
fn expectation(file: &str, r: &RealNode, catalog: &Catalog) -> GpuNode {
    let from_type = r
        .instance_type
        .as_deref()
        .and_then(|t| catalog.instance(t))
        .and_then(|i| i.gpu.as_ref())
        .map(|g| (g.model.clone(), g.count));
    let (model_key, count) = match (from_type, &r.truth.gpu, r.truth.count) {
        (Some((m, c)), Some(tm), tc) => {
            assert_eq!(
                &m, tm,
                "{file}: the catalog's model for the type disagrees with the source"
            );
            if let Some(tc) = tc {
                assert_eq!(
                    c, tc,
                    "{file}: the catalog's count for the type disagrees with the source"
                );
            }
            (m, c)
        }
        (Some(mc), None, _) => mc,
        (None, Some(m), Some(c)) => (m.clone(), c),
        _ => panic!("{file}: no catalog type and no truth.gpu/count"),
    };
    let model = catalog
        .gpu_models
        .get(&model_key)
        .unwrap_or_else(|| panic!("{file}: model {model_key} not in the catalog"))
        .clone();
    GpuNode {
        name: node_name(file),
        instance_type: r
            .instance_type
            .clone()
            .unwrap_or_else(|| "expect[0] (plan.yaml:1)".into()),
        model_key,
        model,
        count,
        expectation: "expect[0]".into(),
        driver: None,
    }
}

fn node_name(file: &str) -> String {
    file.trim_end_matches(".yaml").to_string()
}

fn exact(v: &str) -> DriverRule {
    DriverRule {
        expect: DriverExpect::Exact(v.into()),
        ..DriverRule::none()
    }
}

/// What the check reports on the parts of the label set the source shows.
fn shown_problems(r: &RealNode, node: &Node, g: &GpuNode, rule: &DriverRule) -> Vec<String> {
    let mut p = Vec::new();
    if r.shows("operator") {
        p.extend(operator_problems(node, g));
        p.extend(mig_problems(node, g));
    }
    if r.shows("gfd") {
        p.extend(gfd_problems(
            node,
            g,
            0,
            &crate::checks::asked::of_real_node(r),
        ));
    }
    if r.shows("nfd") {
        p.extend(nfd_problems(node, g));
    }
    if r.shows("driver") {
        p.extend(driver::problems(node, g, rule));
    }
    p
}

/// The recorded nodes that show GFD's labels (a GKE-managed node has none).
fn nodes() -> Vec<(String, RealNode)> {
    let all: Vec<_> = real_nodes::all()
        .into_iter()
        .filter(|(_, r)| r.shows("gfd"))
        .collect();
    assert!(
        all.len() >= 8,
        "at least 8 recorded nodes with GFD labels, found {}",
        all.len()
    );
    all
}

#[test]
fn every_recorded_node_passes_as_published() {
    let catalog = Catalog::embedded().expect("catalog");
    let mut models = std::collections::BTreeSet::new();
    for (file, r) in nodes() {
        let g = expectation(&file, &r, &catalog);
        models.insert(g.model_key.clone());
        let node = r.node(&g.name);
        let rule = r
            .truth
            .driver
            .as_deref()
            .map_or_else(DriverRule::none, exact);
        let p = shown_problems(&r, &node, &g, &rule);
        assert!(p.is_empty(), "{file}: {p:#?}");
        assert!(
            !r.shows("driver") || r.truth.driver.is_some(),
            "{file}: shows driver labels but states no driver"
        );
    }
    assert!(models.len() >= 5, "at least 5 GPU models: {models:?}");
}

/// The GFD labels the check requires, present on the node.
fn required_gfd(node: &Node, _g: &GpuNode) -> Vec<&'static str> {
    let mut keys = vec![
        gfd::PRODUCT,
        gfd::FAMILY,
        gfd::COMPUTE_MAJOR,
        gfd::COMPUTE_MINOR,
        gfd::COUNT,
    ];
    if !mig_single(node) {
        keys.push(gfd::MEMORY);
    }
    keys.retain(|k| node.labels().contains_key(*k));
    keys
}

/// Under MIG single the product names the profile (`…-MIG-1g.10gb`).
fn mig_single(node: &Node) -> bool {
    node.labels()
        .get(gfd::PRODUCT)
        .is_some_and(|p| p.contains("-MIG-"))
}

/// The first problem names the label; under MIG single a product without its profile also
/// changes what the count must be, so more may follow.
fn names_first(p: &[String], want: &str, node: &Node) -> bool {
    p.first().is_some_and(|m| m.starts_with(want)) && (p.len() == 1 || mig_single(node))
}

#[test]
fn a_removed_gfd_label_fails_naming_node_label_and_expected_value() {
    let catalog = Catalog::embedded().expect("catalog");
    for (file, r) in nodes() {
        let g = expectation(&file, &r, &catalog);
        let keys = required_gfd(&r.node(&g.name), &g);
        assert!(
            keys.len() >= 4,
            "{file}: shows too few GFD labels: {keys:?}"
        );
        for key in keys {
            let mut node = r.node(&g.name);
            node.labels_mut().remove(key);
            let p = gfd_problems(&node, &g, 0, &crate::checks::asked::of_real_node(&r));
            let want = format!("{}: {key} is missing, expected ", g.name);
            assert!(
                names_first(&p, &want, &r.node(&g.name)),
                "{file} without {key}: {p:#?}"
            );
        }
    }
}

#[test]
fn a_changed_value_fails_naming_observed_and_expected() {
    let catalog = Catalog::embedded().expect("catalog");
    for (file, r) in nodes() {
        let g = expectation(&file, &r, &catalog);
        let (_, hi) = g.model.memory_range();
        let product = match r
            .labels
            .get(gfd::PRODUCT)
            .and_then(|p| p.split_once("-MIG-"))
        {
            Some((_, profile)) => format!("NVIDIA-GeForce-RTX-4090-MIG-{profile}"),
            None => "NVIDIA-GeForce-RTX-4090".to_string(),
        };
        let changes = [
            (gfd::PRODUCT, product),
            (gfd::FAMILY, "pascal".to_string()),
            (gfd::COMPUTE_MAJOR, "6".to_string()),
            (gfd::MEMORY, (hi + 1).to_string()),
        ];
        for (key, value) in changes {
            let mut node = r.node(&g.name);
            if !node.labels().contains_key(key)
                || (key == gfd::MEMORY && !required_gfd(&node, &g).contains(&gfd::MEMORY))
            {
                continue;
            }
            let was = node.labels_mut().insert(key.into(), value.clone());
            let p = gfd_problems(&node, &g, 0, &crate::checks::asked::of_real_node(&r));
            let want = format!("{}: {key} is \"{value}\", expected ", g.name);
            assert!(
                p.len() == 1 && p[0].starts_with(&want),
                "{file} with {key}={value} (was {was:?}): {p:#?}"
            );
        }
        if let (true, Some(d)) = (r.shows("driver"), &r.truth.driver) {
            let node = r.node(&g.name);
            let p = driver::problems(&node, &g, &exact("999.99.99"));
            assert!(
                p.len() == 1 && p[0].contains(&format!("is \"{d}\", expected \"999.99.99\"")),
                "{file}: {p:#?}"
            );
        }
    }
}

#[test]
fn a_count_off_by_one_fails() {
    let catalog = Catalog::embedded().expect("catalog");
    for (file, r) in nodes() {
        let mut g = expectation(&file, &r, &catalog);
        let node = r.node(&g.name);
        let shown: u32 = node
            .labels()
            .get(gfd::COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or_else(|| panic!("{file}: no count label"));
        // Under MIG single the label counts MIG devices: GPUs × instances per GPU.
        let per_gpu = shown / g.count;
        g.count += 1;
        let p = gfd_problems(&node, &g, 0, &crate::checks::asked::of_real_node(&r));
        let want = format!(
            "{}: {} is \"{shown}\", expected \"{}\"",
            g.name,
            gfd::COUNT,
            g.count * per_gpu
        );
        // Under MIG mixed with a known layout each profile's count is off too.
        let mixed_counts = p[1..]
            .iter()
            .all(|m| m.contains(": nvidia.com/mig-") && m.contains(".count is "));
        assert!(
            p.first().is_some_and(|m| m.starts_with(&want)) && mixed_counts,
            "{file}: {p:#?}"
        );
    }
}

/// GPU Operator 1.3.1's GFD wrote no `mig.capable`; on a T4 (no MIG) that is not a failure,
/// but `true` would be.
#[test]
fn old_gfd_without_mig_capable_passes_on_a_gpu_without_mig() {
    let catalog = Catalog::embedded().expect("catalog");
    let r = real_nodes::load(real_nodes::G4DN);
    let g = expectation(real_nodes::G4DN, &r, &catalog);
    let mut node = r.node(&g.name);
    assert!(!node.labels().contains_key(gfd::MIG_CAPABLE));
    assert!(gfd_problems(&node, &g, 0, &crate::checks::asked::of_real_node(&r)).is_empty());
    node.labels_mut()
        .insert(gfd::MIG_CAPABLE.into(), "true".into());
    assert_eq!(
        gfd_problems(&node, &g, 0, &crate::checks::asked::of_real_node(&r)).len(),
        1
    );
}

#[test]
fn current_and_deprecated_driver_labels_are_accepted() {
    let catalog = Catalog::embedded().expect("catalog");
    let r = real_nodes::load(real_nodes::G4DN);
    let g = expectation(real_nodes::G4DN, &r, &catalog);
    let mut node = r.node(&g.name);
    for k in gfd::DRIVER_DEPRECATED {
        node.labels_mut().remove(k);
    }
    assert_eq!(driver::problems(&node, &g, &exact("450.80.02")).len(), 1);
    node.labels_mut()
        .insert(gfd::DRIVER_VERSION_FULL.into(), "450.80.02".into());
    assert!(driver::problems(&node, &g, &exact("450.80.02")).is_empty());
    let branch = DriverRule {
        expect: DriverExpect::Branch(450),
        ..DriverRule::none()
    };
    assert!(driver::problems(&node, &g, &branch).is_empty());
}

#[test]
fn missing_pci_label_in_every_form_fails() {
    let catalog = Catalog::embedded().expect("catalog");
    let r = real_nodes::load(real_nodes::G4DN);
    let g = expectation(real_nodes::G4DN, &r, &catalog);
    let mut node = r.node(&g.name);
    node.labels_mut().remove(nfd::PCI_LABEL);
    // The class+vendor form NFD wrote on a g4dn.xlarge with its default config
    // (NVIDIA/gpu-operator#78).
    node.labels_mut().insert(
        "feature.node.kubernetes.io/pci-0302_10de.present".into(),
        "true".into(),
    );
    assert!(nfd_problems(&node, &g).is_empty());
    node.labels_mut()
        .remove("feature.node.kubernetes.io/pci-0302_10de.present");
    assert_eq!(nfd_problems(&node, &g).len(), 1);
}

/// A MIG layout mig-manager has not applied (yet) fails naming the config; the recorded nodes
/// were published after it succeeded.
#[test]
fn a_mig_layout_not_applied_fails_naming_the_config() {
    let catalog = Catalog::embedded().expect("catalog");
    let file = "onprem-supermicro-pio4124gs-h100-mig-mixed.yaml";
    let r = real_nodes::load(file);
    let g = expectation(file, &r, &catalog);
    let mut node = r.node(&g.name);
    assert!(mig_problems(&node, &g).is_empty());
    for state in ["pending", "failed"] {
        node.labels_mut()
            .insert("nvidia.com/mig.config.state".into(), state.into());
        let p = mig_problems(&node, &g);
        assert!(
            p.len() == 1
                && p[0].contains(&format!("nvidia.com/mig.config.state is \"{state}\", expected \"success\" (mig-manager applying nvidia.com/mig.config=all-balanced")),
            "{p:?}"
        );
    }
    node.labels_mut().remove("nvidia.com/mig.config.state");
    assert_eq!(mig_problems(&node, &g).len(), 1);
}

/// The recorded time-sliced T4 judged against the sharing its owner asked for: as published
/// it passes; had the config never taken effect (GFD's unshared labels) it fails naming
/// replicas and product; a renaming config expects the product without `-SHARED`.
#[test]
fn sharing_labels_follow_the_config_not_the_node() {
    let catalog = Catalog::embedded().expect("catalog");
    let (file, r) = nodes()
        .into_iter()
        .find(|(f, _)| f.contains("t4-timeslicing-ocp"))
        .expect("recorded node");
    let g = expectation(&file, &r, &catalog);
    let asked = crate::checks::asked::of_real_node(&r);
    let mut node = r.node(&g.name);
    assert!(gfd_problems(&node, &g, 0, &asked).is_empty());
    let labels = node.metadata.labels.get_or_insert_default();
    labels.insert(gfd::REPLICAS.into(), "1".into());
    labels.insert(gfd::PRODUCT.into(), "Tesla-T4".into());
    let p = gfd_problems(&node, &g, 0, &asked);
    assert_eq!(p.len(), 2, "{p:#?}");
    assert!(
        p[0].starts_with(&format!(
            "{}: nvidia.com/gpu.product is \"Tesla-T4\", expected \"Tesla-T4-SHARED\"",
            g.name
        )),
        "{p:#?}"
    );
    assert!(
        p[1].starts_with(&format!(
            "{}: nvidia.com/gpu.replicas is \"1\", expected \"8\"",
            g.name
        )),
        "{p:#?}"
    );
    // Unshared by the plan, the published labels (replicas 8, -SHARED) fail.
    let node = r.node(&g.name);
    let p = gfd_problems(&node, &g, 0, &Asked::plain("single"));
    assert_eq!(p.len(), 2, "{p:#?}");
    // Renamed: the product keeps its name.
    let mut renamed = asked.clone();
    if let Some(p) = renamed.plugin.as_mut()
        && let Ok(c) = p.configs.as_mut()
    {
        c.insert(
            "Tesla-T4".into(),
            "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 8\n".into(),
        );
    }
    let p = gfd_problems(&node, &g, 0, &renamed);
    assert_eq!(p.len(), 1, "{p:#?}");
    assert!(
        p[0].contains("nvidia.com/gpu.product is \"Tesla-T4-SHARED\", expected \"Tesla-T4\""),
        "{p:#?}"
    );
}
