//! Which bench pods a node gets, and a MIG device's share of its GPU.

use std::collections::BTreeMap;

use super::*;
use crate::catalog::Catalog;
use crate::checks::sharing::PluginConfigs;

fn gpu_node(model: &str, count: u32) -> GpuNode {
    let c = Catalog::embedded().expect("catalog");
    GpuNode {
        name: "n1".into(),
        instance_type: "t".into(),
        model_key: model.into(),
        model: c.gpu_models[model].clone(),
        count,
        expectation: "t".into(),
        driver: None,
    }
}

fn node(labels: &[(&str, &str)]) -> Node {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(serde_json::json!({"metadata": {"name": "n1", "labels": labels}}))
        .expect("node")
}

fn jobs(p: Plan) -> Vec<Job> {
    match p {
        Plan::Jobs(j) => j,
        Plan::Skip(why) => panic!("skipped: {why}"),
    }
}

fn shared(text: &str) -> Asked {
    Asked {
        plugin: Some(PluginConfigs {
            source: "operator.values.devicePlugin.config.data".into(),
            default: None,
            configs: Ok(BTreeMap::from([("ts".to_string(), text.to_string())])),
        }),
        ..Asked::plain("single")
    }
}

const TS4: &str = "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n";

/// NVIDIA's MIG user guide: memory slices per profile, in eighths of the GPU.
#[test]
fn memory_slices_and_sm_share_per_profile() {
    let rows = [
        ("A100-SXM4-40GB", 108, "1g.5gb", 1, 14),
        ("A100-SXM4-40GB", 108, "2g.10gb", 2, 28),
        ("A100-SXM4-40GB", 108, "3g.20gb", 4, 42),
        ("A100-SXM4-40GB", 108, "7g.40gb", 8, 98),
        ("H100-SXM5-80GB", 132, "1g.10gb", 1, 16),
        ("H100-SXM5-80GB", 132, "1g.20gb", 2, 26),
        ("H100-SXM5-80GB", 132, "3g.40gb", 4, 60),
    ];
    for (model, sms, profile, slices, profile_sms) in rows {
        let g = gpu_node(model, 1);
        let p = g
            .model
            .mig_profiles
            .iter()
            .find(|p| p.name == profile)
            .unwrap_or_else(|| panic!("{model} {profile}"));
        let s = share_of(p, &g.model, sms);
        assert_eq!(s.memory_slices, slices, "{model} {profile}");
        assert_eq!(p.multiprocessors, profile_sms, "{model} {profile}");
        assert!(
            (s.compute - f64::from(profile_sms) / f64::from(sms)).abs() < 1e-9,
            "{model} {profile}"
        );
        assert!((s.bandwidth - f64::from(slices) / 8.0).abs() < 1e-9);
    }
}

#[test]
fn one_pod_per_mig_device_or_profile() {
    let a100 = gpu_node("A100-SXM4-40GB", 8);
    let single = node(&[
        ("nvidia.com/mig.config", "all-1g.5gb"),
        ("nvidia.com/mig.config.state", "success"),
    ]);
    let j = jobs(plan(&single, &a100, &Asked::plain("single"), Some(108)));
    assert_eq!(j.len(), 56);
    assert_eq!(j[3].pod, "bench-n1-mig3");
    assert_eq!(j[3].subject, "n1/mig3");
    assert_eq!(
        (j[3].resource.as_str(), j[3].count, j[3].devices),
        ("nvidia.com/gpu", 1, 1)
    );
    assert_eq!(j[3].mig.as_ref().map(|m| m.memory_slices), Some(1));
    let mixed = node(&[("nvidia.com/mig.config", "all-balanced")]);
    let j = jobs(plan(&mixed, &a100, &Asked::plain("mixed"), Some(108)));
    let subjects: Vec<(&str, &str, &str)> = j
        .iter()
        .map(|j| (j.subject.as_str(), j.resource.as_str(), j.pod.as_str()))
        .collect();
    assert_eq!(
        subjects,
        [
            (
                "n1/mig-1g.5gb",
                "nvidia.com/mig-1g.5gb",
                "bench-n1-mig-1g-5gb"
            ),
            (
                "n1/mig-2g.10gb",
                "nvidia.com/mig-2g.10gb",
                "bench-n1-mig-2g-10gb"
            ),
            (
                "n1/mig-3g.20gb",
                "nvidia.com/mig-3g.20gb",
                "bench-n1-mig-3g-20gb"
            ),
        ]
    );
    // Whole GPUs: one pod with all of them.
    let j = jobs(plan(&node(&[]), &a100, &Asked::plain("single"), Some(108)));
    assert_eq!(j.len(), 1);
    assert_eq!(
        (j[0].pod.as_str(), j[0].count, j[0].devices),
        ("bench-n1", 8, 8)
    );
    // No performance entry to scale by: nothing measured, said why.
    assert!(matches!(
        plan(&single, &a100, &Asked::plain("single"), None),
        Plan::Skip(_)
    ));
}

#[test]
fn shared_gpus() {
    let v100 = gpu_node("V100-SXM2-16GB", 1);
    let j = jobs(plan(&node(&[]), &v100, &shared(TS4), Some(80)));
    assert_eq!((j[0].resource.as_str(), j[0].count), ("nvidia.com/gpu", 1));
    let renamed = TS4.replace(
        "timeSlicing:\n",
        "timeSlicing:\n    renameByDefault: true\n",
    );
    let j = jobs(plan(&node(&[]), &v100, &shared(&renamed), Some(80)));
    assert_eq!(j[0].resource, "nvidia.com/gpu.shared");
    let many = gpu_node("V100-SXM2-16GB", 8);
    let Plan::Skip(why) = plan(&node(&[]), &many, &shared(TS4), Some(80)) else {
        panic!("8 time-sliced GPUs are not measured");
    };
    assert_eq!(
        why,
        "its 8 GPUs are time-sliced (time-slicing config ts from operator.values.devicePlugin.config.data); replicas cannot be pinned to distinct GPUs"
    );
    let mps = "version: v1\nsharing:\n  mps:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 2\n";
    assert!(matches!(
        plan(&node(&[]), &v100, &shared(mps), Some(80)),
        Plan::Skip(w) if w.starts_with("its GPUs are shared with MPS")
    ));
}
