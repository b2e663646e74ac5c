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
