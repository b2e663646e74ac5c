//! `labels`: on every GPU node, the NFD PCI label (any variant the operator accepts), kernel and
//! OS labels, `nvidia.com/gpu.present`, and the GFD set with values consistent with the node's
//! instance type — product, count, memory (within a tolerance: older drivers report a little
//! less), compute capability, family, MIG capability — and the driver version labels equal to
//! the plan's `driver.version`, accepting the deprecated and the current names.

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::{Ctx, GpuNode, Outcome, no_nodes};
use crate::gpu_stack::{gfd, nfd, operator};
use crate::suite::Step;

/// Runs the check: waits until every node's labels are right or the deadline, then reports.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let tolerance = step.int("memoryTolerancePercent").clamp(0, 100) as u64;
    let driver = ctx.plan.operator.driver_version();
    let last = super::watch_nodes(ctx, nodes, deadline, |n, g| {
        problems(n, g, driver.as_deref(), tolerance).is_empty()
    })
    .await;

    nodes
        .iter()
        .map(|g| {
            let Some(node) = last.get(&g.name).and_then(Option::as_ref) else {
                return Outcome::fail(
                    g.name.clone(),
                    Some(&g.name),
                    format!("{}: node not found", g.name),
                    "",
                );
            };
            let found = problems(node, g, driver.as_deref(), tolerance);
            let detail = gpu_labels(node);
            match found.first() {
                None => Outcome::pass(g.name.clone(), Some(&g.name), detail),
                Some(first) => Outcome::fail(
                    g.name.clone(),
                    Some(&g.name),
                    first.clone(),
                    format!("{}\n\nall problems:\n{}", detail, found.join("\n")),
                ),
            }
        })
        .collect()
}

/// Every mismatch on one node, each as `<node>: <label> is "<x>", expected "<y>" (<type>)`.
pub fn problems(node: &Node, g: &GpuNode, driver: Option<&str>, tolerance_pct: u64) -> Vec<String> {
    let labels = node.labels();
    let why = g.describe();
    let mut out = Vec::new();
    let mut expect = |key: &str, want: &str| match labels.get(key) {
        Some(v) if v == want => {}
        Some(v) => out.push(format!(
            "{}: {key} is \"{v}\", expected \"{want}\" ({why})",
            g.name
        )),
        None => out.push(format!(
            "{}: {key} is missing, expected \"{want}\" ({why})",
            g.name
        )),
    };
    expect(operator::GPU_PRESENT, "true");
    let replicas: u32 = labels
        .get(gfd::REPLICAS)
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let product = labels.get(gfd::PRODUCT).cloned().unwrap_or_default();
    let mig_single = product.contains("-MIG-");
    if mig_single {
        let base = format!("{}-MIG-", g.model.product);
        if !product.starts_with(&base) || product.ends_with("-MIG-INVALID") {
            expect("nvidia.com/gpu.product", &format!("{base}<profile>"));
        }
    } else {
        let want = if replicas > 1 {
            format!("{}-SHARED", g.model.product)
        } else {
            g.model.product.clone()
        };
        // Renamed shared resources keep the plain product name.
        if !(replicas > 1 && product == g.model.product) {
            expect(gfd::PRODUCT, &want);
        }
        expect(gfd::COUNT, &g.count.to_string());
    }
    if let Some((major, minor)) = g.model.compute_capability_parts() {
        expect(gfd::COMPUTE_MAJOR, &major.to_string());
        expect(gfd::COMPUTE_MINOR, &minor.to_string());
    }
    expect(gfd::FAMILY, &g.model.family);
    expect(gfd::MIG_CAPABLE, &g.model.mig_capable().to_string());

    if !mig_single {
        match labels.get(gfd::MEMORY).map(|m| m.parse::<u64>()) {
            Some(Ok(m)) => {
                let want = g.model.memory_mib;
                let floor = want - want * tolerance_pct / 100;
                if m > want || m < floor {
                    out.push(format!(
                        "{}: nvidia.com/gpu.memory is \"{m}\", expected \"{want}\" (within {tolerance_pct}%: {floor}..{want}) ({why})",
                        g.name
                    ));
                }
            }
            Some(Err(_)) => out.push(format!(
                "{}: nvidia.com/gpu.memory is \"{}\", expected a number of MiB ({why})",
                g.name,
                labels.get(gfd::MEMORY).cloned().unwrap_or_default()
            )),
            None => out.push(format!(
                "{}: nvidia.com/gpu.memory is missing, expected \"{}\" ({why})",
                g.name, g.model.memory_mib
            )),
        }
    }

    if !nfd::has_nvidia_pci(labels) {
        out.push(format!(
            "{}: feature.node.kubernetes.io/pci-10de.present is missing (nor the pci-0302_10de / pci-0300_10de forms), expected \"true\" ({why})",
            g.name
        ));
    }
    for key in [
        nfd::KERNEL_VERSION_FULL,
        nfd::OS_RELEASE_ID,
        nfd::OS_RELEASE_VERSION_ID,
    ] {
        if !labels.contains_key(key) {
            out.push(format!(
                "{}: {key} is missing, expected the NFD value ({why})",
                g.name
            ));
        }
    }

    // Driver version: the current name, or else the deprecated triple.
    let current = labels.get(gfd::DRIVER_VERSION_FULL).cloned();
    let deprecated = match (
        labels.get(gfd::DRIVER_DEPRECATED[0]),
        labels.get(gfd::DRIVER_DEPRECATED[1]),
        labels.get(gfd::DRIVER_DEPRECATED[2]),
    ) {
        (Some(a), Some(b), Some(c)) => Some(format!("{a}.{b}.{c}")),
        _ => None,
    };
    match (current.or(deprecated), driver) {
        (None, want) => out.push(format!(
            "{}: nvidia.com/cuda.driver-version.full (or the deprecated nvidia.com/cuda.driver.*) is missing, expected \"{}\" ({why})",
            g.name,
            want.unwrap_or("the driver version")
        )),
        (Some(have), Some(want)) if have != want => out.push(format!(
            "{}: nvidia.com/cuda.driver-version.full is \"{have}\", expected \"{want}\" (the plan's driver.version)",
            g.name
        )),
        _ => {}
    }
    out
}

fn gpu_labels(node: &Node) -> String {
    node.labels()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("nvidia.com/") || k.starts_with("feature.node.kubernetes.io/")
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    //! On real nodes as published (`fixtures/nodes/`), never on what the simulator makes.
    use super::*;
    use crate::catalog::Catalog;
    use crate::fixture::real_nodes::{self, G4DN, P3};

    /// A published node and the owner's expectation of it, from the instance catalog.
    fn real(file: &str, name: &str) -> (Node, GpuNode) {
        let r = real_nodes::load(file);
        let c = Catalog::embedded().expect("catalog");
        let inst = c.instance(&r.instance_type).expect("instance type");
        let (model, count) = c.gpu_of(inst).expect("gpu");
        let gpu_model = inst.gpu.as_ref().expect("gpu").model.clone();
        let mut node = Node::default();
        node.metadata.name = Some(name.into());
        node.metadata.labels = Some(r.labels);
        let gpu = GpuNode {
            name: name.into(),
            instance_type: r.instance_type,
            model_key: gpu_model,
            model: model.clone(),
            count,
        };
        (node, gpu)
    }

    /// The g4dn.xlarge dump, published by GPU Operator 1.3.1's GFD, which did not yet write
    /// `nvidia.com/mig.capable`.
    fn g4dn() -> (Node, GpuNode) {
        real(G4DN, "gpu-worker-1")
    }

    const G4DN_DRIVER: Option<&str> = Some("450.80.02");

    #[test]
    fn a_real_g4dn_node_lacks_only_mig_capable() {
        let (node, g) = g4dn();
        assert_eq!(
            problems(&node, &g, G4DN_DRIVER, 2),
            vec![
                "gpu-worker-1: nvidia.com/mig.capable is missing, expected \"false\" (g4dn.xlarge: 1× Tesla-T4)"
            ],
            "T4 memory 15109 MiB on driver 450 is within 2% of 15360"
        );
        let (mut node, g) = g4dn();
        node.labels_mut()
            .insert(gfd::MIG_CAPABLE.into(), "false".into());
        assert_eq!(problems(&node, &g, G4DN_DRIVER, 2), Vec::<String>::new());
        assert_eq!(
            problems(&node, &g, G4DN_DRIVER, 1).len(),
            1,
            "15109 is not within 1%"
        );
    }

    /// The p3.2xlarge dump was filtered to `nvidia.com/gpu*` and `pci` labels: the problems
    /// are exactly the labels the publisher's grep removed, so every GFD value that is shown
    /// agrees with the catalog's V100-SXM2-16GB.
    #[test]
    fn a_real_p3_node_agrees_with_the_catalog_on_what_is_shown() {
        let (node, g) = real(P3, "ip-10-0-135-81");
        let p = problems(&node, &g, Some("535.129.03"), 0);
        let mentions = |key: &str| p.iter().any(|m| m.contains(key));
        for key in [
            gfd::MIG_CAPABLE,
            nfd::KERNEL_VERSION_FULL,
            nfd::OS_RELEASE_ID,
            nfd::OS_RELEASE_VERSION_ID,
            gfd::DRIVER_VERSION_FULL,
        ] {
            assert!(mentions(key), "{key} not reported missing: {p:?}");
        }
        assert_eq!(p.len(), 5, "{p:?}");
        assert!(p.iter().all(|m| m.contains("is missing")), "{p:?}");
    }

    fn g4dn_passing() -> (Node, GpuNode) {
        let (mut node, g) = g4dn();
        node.labels_mut()
            .insert(gfd::MIG_CAPABLE.into(), "false".into());
        (node, g)
    }

    #[test]
    fn wrong_count_message_names_node_value_and_expectation() {
        let (mut node, g) = g4dn_passing();
        node.labels_mut().insert(gfd::COUNT.into(), "0".into());
        assert_eq!(
            problems(&node, &g, G4DN_DRIVER, 2),
            vec![
                "gpu-worker-1: nvidia.com/gpu.count is \"0\", expected \"1\" (g4dn.xlarge: 1× Tesla-T4)"
            ]
        );
    }

    #[test]
    fn driver_and_memory_mismatches() {
        let (mut node, g) = g4dn_passing();
        node.labels_mut().insert(gfd::MEMORY.into(), "8192".into());
        let p = problems(&node, &g, Some("570.1.2"), 2);
        assert!(
            p.iter().any(|m| m.contains("gpu.memory is \"8192\"")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("is \"450.80.02\", expected \"570.1.2\"")),
            "{p:?}"
        );
        assert_eq!(p.len(), 2, "{p:?}");
    }

    #[test]
    fn current_and_deprecated_driver_labels_are_accepted() {
        // The real node has only the deprecated triple; a newer GFD writes the current name.
        let (mut node, g) = g4dn_passing();
        for k in gfd::DRIVER_DEPRECATED {
            node.labels_mut().remove(k);
        }
        assert_eq!(problems(&node, &g, G4DN_DRIVER, 2).len(), 1);
        node.labels_mut()
            .insert(gfd::DRIVER_VERSION_FULL.into(), "450.80.02".into());
        assert!(problems(&node, &g, G4DN_DRIVER, 2).is_empty());
    }

    #[test]
    fn missing_product_and_pci_variants() {
        let (mut node, g) = g4dn_passing();
        node.labels_mut().remove(gfd::PRODUCT);
        node.labels_mut().remove(nfd::PCI_LABEL);
        // The class+vendor form NFD wrote on a g4dn.xlarge with its default config
        // (NVIDIA/gpu-operator#78).
        node.labels_mut().insert(
            "feature.node.kubernetes.io/pci-0302_10de.present".into(),
            "true".into(),
        );
        let p = problems(&node, &g, G4DN_DRIVER, 2);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].contains("nvidia.com/gpu.product is missing, expected \"Tesla-T4\""));
        node.labels_mut()
            .remove("feature.node.kubernetes.io/pci-0302_10de.present");
        assert_eq!(problems(&node, &g, G4DN_DRIVER, 2).len(), 2);
    }
}
