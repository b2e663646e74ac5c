//! The allocatable check on real nodes as published (`tests/data/real-nodes/`): each node whose
//! source shows its GPU capacity passes as published with its owner's expectation (the
//! catalog's entry for its type, or the GPUs its source states), and fails naming node,
//! resource, observed and expected value when the expected GPU count is off by one. MIG nodes
//! are left to the MIG tests: their expected devices come from the MIG layout, not the count.

use super::*;
use crate::catalog::Catalog;
use crate::fixture::real_nodes;

fn expectation(r: &real_nodes::RealNode, name: &str, catalog: &Catalog) -> GpuNode {
    let (model_key, count) = r
        .instance_type
        .as_deref()
        .and_then(|t| catalog.instance(t))
        .and_then(|i| i.gpu.as_ref())
        .map(|g| (g.model.clone(), g.count))
        .or_else(|| r.truth.gpu.clone().zip(r.truth.count))
        .unwrap_or_else(|| panic!("{name}: no expectation"));
    GpuNode {
        name: name.into(),
        instance_type: r.instance_type.clone().unwrap_or_default(),
        model: catalog.gpu_models[&model_key].clone(),
        model_key,
        count,
        expectation: "expect[0]".into(),
        driver: None,
    }
}

/// The recorded whole-GPU or time-sliced nodes with `nvidia.com/gpu` capacity.
fn with_capacity() -> Vec<(String, real_nodes::RealNode)> {
    let nodes: Vec<_> = real_nodes::all()
        .into_iter()
        .filter(|(_, r)| {
            r.capacity
                .as_ref()
                .is_some_and(|c| c.contains_key(resources::GPU))
        })
        .collect();
    assert!(
        nodes.len() >= 6,
        "{} recorded nodes with GPU capacity",
        nodes.len()
    );
    nodes
}

/// Where the source shows no allocatable, only what it shows is compared.
fn shown(p: Vec<String>, r: &real_nodes::RealNode) -> Vec<String> {
    p.into_iter()
        .filter(|m| r.allocatable.is_some() || !m.contains(": allocatable "))
        .collect()
}

#[test]
fn every_recorded_node_with_gpu_capacity_passes_as_published() {
    let catalog = Catalog::embedded().expect("catalog");
    for (file, r) in with_capacity() {
        let g = expectation(&r, &file, &catalog);
        let p = shown(
            problems(&r.node(&file), &g, &crate::checks::asked::of_real_node(&r)),
            &r,
        );
        assert!(p.is_empty(), "{file}: {p:#?}");
    }
}

#[test]
fn a_count_off_by_one_fails_naming_resource_observed_and_expected() {
    let catalog = Catalog::embedded().expect("catalog");
    for (file, r) in with_capacity() {
        let mut g = expectation(&r, &file, &catalog);
        let node = r.node(&file);
        let cap: u64 = r
            .capacity
            .as_ref()
            .and_then(|c| c[resources::GPU].parse().ok())
            .unwrap_or(0);
        let replicas = cap / u64::from(g.count);
        for delta in [1i64, -1] {
            let base = g.count;
            g.count = (i64::from(base) + delta) as u32;
            if g.count > 0 {
                let want = format!(
                    "{file}: capacity nvidia.com/gpu is \"{cap}\", expected \"{}\"",
                    u64::from(g.count) * replicas
                );
                let p = shown(
                    problems(&node, &g, &crate::checks::asked::of_real_node(&r)),
                    &r,
                );
                assert!(
                    p.first().is_some_and(|m| m.starts_with(&want)),
                    "{file} {delta:+}: {p:#?}"
                );
            }
            g.count = base;
        }
    }
}

/// The recorded time-sliced nodes: 8 (and 6) replicas expected from their owners' configs; the
/// same nodes judged as unshared, or with a renaming config, fail naming the resource.
#[test]
fn time_sliced_nodes_are_judged_by_their_config() {
    let catalog = Catalog::embedded().expect("catalog");
    let shared: Vec<_> = with_capacity()
        .into_iter()
        .filter(|(_, r)| r.truth.plugin_configs.is_some())
        .collect();
    assert_eq!(shared.len(), 2, "two recorded time-sliced nodes");
    for (file, r) in shared {
        let g = expectation(&r, &file, &catalog);
        let node = r.node(&file);
        let cap = &r.capacity.as_ref().expect("capacity")[resources::GPU];
        let p = shown(problems(&node, &g, &Asked::plain("single")), &r);
        assert!(
            p.first().is_some_and(|m| m.starts_with(&format!(
                "{file}: capacity nvidia.com/gpu is \"{cap}\", expected \"{}\"",
                g.count
            ))),
            "{file}: {p:#?}"
        );
        let mut renamed = crate::checks::asked::of_real_node(&r);
        if let Some(p) = renamed.plugin.as_mut()
            && let Ok(c) = p.configs.as_mut()
        {
            for text in c.values_mut() {
                *text = text.replace(
                    "timeSlicing:\n",
                    "timeSlicing:\n    renameByDefault: true\n",
                );
            }
        }
        let p = shown(problems(&node, &g, &renamed), &r);
        assert!(
            p.first().is_some_and(|m| m.starts_with(&format!(
                "{file}: capacity nvidia.com/gpu is \"{cap}\", expected \"0\" or absent"
            ))),
            "{file}: {p:#?}"
        );
        assert!(
            p.iter().any(|m| m.starts_with(&format!(
                "{file}: capacity nvidia.com/gpu.shared is missing, expected \"{cap}\""
            ))),
            "{file}: {p:#?}"
        );
    }
}

/// 8 H100 under MIG mixed all-balanced, one GPU missing (as the device plugin shows it when a
/// GPU fell off the bus): each profile's count is short by that GPU's share, named per
/// resource; a GPU left out of MIG shows up as a whole `nvidia.com/gpu`, which must be 0.
#[test]
fn a_gpu_missing_under_mig_mixed_fails_per_profile() {
    let catalog = Catalog::embedded().expect("catalog");
    let g = GpuNode {
        name: "mig-1".into(),
        instance_type: "p5.48xlarge".into(),
        model_key: "H100-SXM5-80GB".into(),
        model: catalog.gpu_models["H100-SXM5-80GB"].clone(),
        count: 8,
        expectation: "p5.48xlarge".into(),
        driver: None,
    };
    let node = |res: serde_json::Value| -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mig-1", "labels": {
                "nvidia.com/mig.config": "all-balanced",
                "nvidia.com/mig.config.state": "success",
            }},
            "status": {"capacity": res.clone(), "allocatable": res},
        }))
        .expect("node")
    };
    let asked = Asked::plain("mixed");
    let full = node(serde_json::json!({
        "nvidia.com/mig-1g.10gb": "16", "nvidia.com/mig-2g.20gb": "8", "nvidia.com/mig-3g.40gb": "8",
    }));
    assert!(problems(&full, &g, &asked).is_empty());
    let short = node(serde_json::json!({
        "nvidia.com/gpu": "1",
        "nvidia.com/mig-1g.10gb": "14", "nvidia.com/mig-2g.20gb": "7", "nvidia.com/mig-3g.40gb": "7",
    }));
    let p = problems(&short, &g, &asked);
    let firsts: Vec<&str> = p
        .iter()
        .filter(|m| m.contains(": capacity "))
        .map(|m| m.split(" (").next().unwrap_or(m))
        .collect();
    assert_eq!(
        firsts,
        [
            "mig-1: capacity nvidia.com/gpu is \"1\", expected \"0\" or absent",
            "mig-1: capacity nvidia.com/mig-1g.10gb is \"14\", expected \"16\"",
            "mig-1: capacity nvidia.com/mig-2g.20gb is \"7\", expected \"8\"",
            "mig-1: capacity nvidia.com/mig-3g.40gb is \"7\", expected \"8\"",
        ]
    );
}

/// A custom mig-parted config from the plan (mig-parted's example `custom-config`: four whole
/// A100s, four split): the expectation comes from the config, the whole GPUs included.
#[test]
fn a_custom_mig_config_from_the_plan_gives_the_expectation() {
    let catalog = Catalog::embedded().expect("catalog");
    let g = GpuNode {
        name: "p4d-1".into(),
        instance_type: "p4d.24xlarge".into(),
        model_key: "A100-SXM4-40GB".into(),
        model: catalog.gpu_models["A100-SXM4-40GB"].clone(),
        count: 8,
        expectation: "p4d.24xlarge".into(),
        driver: None,
    };
    let asked = Asked {
        mig_parted: Some(crate::checks::mig_parted::MigPartedConfigs {
            source: "operator.values.migManager.config.data".into(),
            text: Ok(include_str!("../../../tests/data/mig-parted/example-config.yaml").into()),
        }),
        ..Asked::plain("mixed")
    };
    let node = |res: serde_json::Value| -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p4d-1", "labels": {
                "nvidia.com/mig.config": "custom-config",
                "nvidia.com/mig.config.state": "success",
            }},
            "status": {"capacity": res.clone(), "allocatable": res},
        }))
        .expect("node")
    };
    let good = node(serde_json::json!({
        "nvidia.com/gpu": "4", "nvidia.com/mig-1g.5gb": "9",
        "nvidia.com/mig-2g.10gb": "4", "nvidia.com/mig-3g.20gb": "3",
    }));
    assert!(problems(&good, &g, &asked).is_empty());
    // The node's own count labels do not matter: one GPU's layout missing fails.
    let half = node(serde_json::json!({
        "nvidia.com/gpu": "4", "nvidia.com/mig-1g.5gb": "7",
        "nvidia.com/mig-2g.10gb": "4", "nvidia.com/mig-3g.20gb": "3",
    }));
    let p = problems(&half, &g, &asked);
    assert!(
        p.first().is_some_and(
            |m| m.starts_with("p4d-1: capacity nvidia.com/mig-1g.5gb is \"7\", expected \"9\"")
        ),
        "{p:#?}"
    );
}
