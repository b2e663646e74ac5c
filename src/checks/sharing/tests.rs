//! The checks' reading of the device plugin's config, on configs as published: NVIDIA's
//! OpenShift time-slicing page (the ConfigMap in `tests/data/real-nodes/`
//! `aws-g4dn-xlarge-t4-timeslicing-ocp.yaml`) and the GPU Operator's MPS page.

use super::*;
use crate::fixture::real_nodes;

fn ocp_configs() -> PluginConfigs {
    let (_, r) = real_nodes::all()
        .into_iter()
        .find(|(f, _)| f.contains("t4-timeslicing-ocp"))
        .expect("the recorded OpenShift time-slicing node");
    PluginConfigs {
        source: "ConfigMap nvidia-gpu-operator/device-plugin-config".into(),
        default: None,
        configs: Ok(r.truth.plugin_configs.expect("its ConfigMap")),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn the_node_label_picks_the_config_and_replicas_multiply_each_resource() {
    let cm = ocp_configs();
    let t4 = cm
        .for_node(&labels(&[(asks::PLUGIN_CONFIG, "Tesla-T4")]))
        .expect("loads")
        .expect("shared");
    assert_eq!(t4.strategy, Strategy::TimeSlicing);
    assert_eq!(t4.config, "Tesla-T4");
    assert!(!t4.fail_requests_greater_than_one);
    assert_eq!(
        apply(Some(&t4), counts(&[("nvidia.com/gpu", 1)])),
        counts(&[("nvidia.com/gpu", 8)])
    );
    // The A100 config shares MIG devices too; `replicas: 1` is no sharing.
    let a100 = cm
        .for_node(&labels(&[(asks::PLUGIN_CONFIG, "A100-SXM4-40GB")]))
        .expect("loads")
        .expect("shared");
    assert_eq!(a100.of("nvidia.com/mig-1g.5gb"), None);
    assert_eq!(
        apply(
            Some(&a100),
            counts(&[
                ("nvidia.com/gpu", 0),
                ("nvidia.com/mig-1g.5gb", 16),
                ("nvidia.com/mig-2g.10gb", 8),
                ("nvidia.com/mig-3g.20gb", 8),
            ])
        ),
        counts(&[
            ("nvidia.com/gpu", 0),
            ("nvidia.com/mig-1g.5gb", 16),
            ("nvidia.com/mig-2g.10gb", 16),
            ("nvidia.com/mig-3g.20gb", 24),
        ])
    );
    // Three configs, no default, no label: the device plugin shares nothing.
    assert_eq!(cm.for_node(&labels(&[])), Ok(None));
    // A label naming no config fails, listing the ones there are.
    let err = cm
        .for_node(&labels(&[(asks::PLUGIN_CONFIG, "Tesla-V100")]))
        .expect_err("no such config");
    assert_eq!(
        err,
        "device plugin config `Tesla-V100` is not in ConfigMap nvidia-gpu-operator/device-plugin-config (it has: A100-SXM4-40GB, A100-SXM4-80GB, Tesla-T4)"
    );
}

#[test]
fn default_then_only_config_when_the_node_has_no_label() {
    let ts = "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n";
    let one = PluginConfigs {
        source: "s".into(),
        default: None,
        configs: Ok(BTreeMap::from([("ts".to_string(), ts.to_string())])),
    };
    assert_eq!(
        one.for_node(&labels(&[]))
            .expect("ok")
            .expect("shared")
            .config,
        "ts"
    );
    let two = PluginConfigs {
        default: Some("ts".into()),
        configs: Ok(BTreeMap::from([
            ("ts".to_string(), ts.to_string()),
            ("plain".to_string(), "version: v1\n".to_string()),
        ])),
        ..one.clone()
    };
    assert!(two.for_node(&labels(&[])).expect("ok").is_some());
    assert_eq!(
        two.for_node(&labels(&[(asks::PLUGIN_CONFIG, "plain")])),
        Ok(None)
    );
    let missing = PluginConfigs {
        configs: Err("ConfigMap gpu-operator/x does not exist".into()),
        ..one
    };
    assert_eq!(
        missing.for_node(&labels(&[])),
        Err("ConfigMap gpu-operator/x does not exist".into())
    );
}

#[test]
fn renaming_moves_the_replicas_to_the_new_name() {
    let renamed = parse(
        "r",
        "version: v1\nsharing:\n  timeSlicing:\n    renameByDefault: true\n    failRequestsGreaterThanOne: true\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n",
    )
    .expect("valid")
    .expect("shared");
    assert!(renamed.fail_requests_greater_than_one);
    assert_eq!(
        apply(Some(&renamed), counts(&[("nvidia.com/gpu", 2)])),
        counts(&[("nvidia.com/gpu", 0), ("nvidia.com/gpu.shared", 8)])
    );
    let explicit = parse(
        "r",
        "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        rename: example.com/slice\n        replicas: 3\n",
    )
    .expect("valid")
    .expect("shared");
    assert_eq!(
        apply(Some(&explicit), counts(&[("nvidia.com/gpu", 1)])),
        counts(&[("nvidia.com/gpu", 0), ("example.com/slice", 3)])
    );
}

/// The GPU Operator's MPS page: `sharing.mps` with 10 replicas; the device plugin forces
/// `failRequestsGreaterThanOne` on for MPS (v0.15.0).
#[test]
fn mps_as_published() {
    let mps = parse(
        "mps",
        "version: v1\nsharing:\n  mps:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 10\n",
    )
    .expect("valid")
    .expect("shared");
    assert_eq!(mps.strategy, Strategy::Mps);
    assert!(mps.fail_requests_greater_than_one);
    assert_eq!(
        apply(Some(&mps), counts(&[("nvidia.com/gpu", 1)])),
        counts(&[("nvidia.com/gpu", 10)])
    );
}

#[test]
fn configs_the_device_plugin_would_refuse_are_errors() {
    let rows = [
        ("version: v2\n", "unknown version `v2`, expected `v1`"),
        (
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 0\n",
            "nvidia.com/gpu: replicas must be at least 1, got 0",
        ),
        (
            "version: v1\nsharing:\n  timeSlicing: {}\n  mps: {}\n",
            "time-slicing and MPS cannot both be set",
        ),
        (
            "version: v1\nsharing:\n  mps:\n    resources:\n      - name: nvidia.com/mig-1g.5gb\n        replicas: 2\n",
            "nvidia.com/mig-1g.5gb: MPS shares only nvidia.com/gpu",
        ),
        (
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        devices: [0, 1]\n        replicas: 2\n",
            "nvidia.com/gpu: sharing only some devices (`devices:` other than `all`) is not supported by gpuconform's expectations",
        ),
    ];
    for (text, want) in rows {
        assert_eq!(parse("c", text), Err(want.to_string()), "{text}");
    }
    // `devices: all` is the default spelled out.
    assert!(
        parse(
            "c",
            "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        devices: all\n        replicas: 2\n"
        )
        .expect("valid")
        .is_some()
    );
    assert!(parse("c", "not: [valid").is_err());
}

#[test]
fn configs_from_the_plan_values() {
    let data = serde_json::json!({"ts": "version: v1\n", "bad": 3});
    let p = from_plan(&data, None);
    assert_eq!(
        p.configs,
        Err("operator.values.devicePlugin.config.data.bad is not a string".into())
    );
    let p = from_plan(
        &serde_json::json!({"ts": "version: v1\n"}),
        Some("ts".into()),
    );
    assert_eq!(p.for_node(&labels(&[])), Ok(None));
}
