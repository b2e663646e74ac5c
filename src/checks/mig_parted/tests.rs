//! Custom MIG configs read as mig-parted reads them, on mig-parted's published example
//! (`tests/data/mig-parted/example-config.yaml`) and on an 8× A100-40GB node.

use super::*;
use crate::catalog::Catalog;

const EXAMPLE: &str = include_str!("../../../tests/data/mig-parted/example-config.yaml");

fn a100(count: u32) -> GpuNode {
    let c = Catalog::embedded().expect("catalog");
    GpuNode {
        name: "p4d-1".into(),
        instance_type: "p4d.24xlarge".into(),
        model_key: "A100-SXM4-40GB".into(),
        model: c.gpu_models["A100-SXM4-40GB"].clone(),
        count,
        expectation: "p4d.24xlarge".into(),
        driver: None,
    }
}

fn cfg(text: &str) -> MigPartedConfigs {
    MigPartedConfigs {
        source: "ConfigMap gpu-operator/custom-mig-config".into(),
        text: Ok(text.to_string()),
    }
}

fn counts(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn the_example_custom_config_gives_whole_gpus_next_to_mig_devices() {
    let g = a100(8);
    let per_gpu = cfg(EXAMPLE)
        .layout("custom-config", &g)
        .expect("valid")
        .expect("defined");
    assert_eq!(per_gpu.iter().filter(|l| l.is_none()).count(), 4);
    assert_eq!(
        resources("mixed", "custom-config", &per_gpu),
        Ok(counts(&[
            ("nvidia.com/gpu", 4),
            ("nvidia.com/mig-1g.5gb", 9),
            ("nvidia.com/mig-2g.10gb", 4),
            ("nvidia.com/mig-3g.20gb", 3),
        ]))
    );
    assert_eq!(
        resources("single", "custom-config", &per_gpu),
        Err("mig.config custom-config mixes 3 profile(s) and 4 GPU(s) without MIG; the single strategy needs one profile on every GPU".into())
    );
    let one = cfg(EXAMPLE)
        .layout("all-2g.10gb", &g)
        .expect("valid")
        .expect("defined");
    assert_eq!(
        resources("single", "all-2g.10gb", &one),
        Ok(counts(&[("nvidia.com/gpu", 24)]))
    );
    // MIG on with no devices yet: nothing to schedule.
    let empty = cfg(EXAMPLE)
        .layout("all-enabled", &g)
        .expect("valid")
        .expect("defined");
    assert_eq!(
        resources("mixed", "all-enabled", &empty),
        Ok(counts(&[("nvidia.com/gpu", 0)]))
    );
    assert_eq!(cfg(EXAMPLE).layout("nope", &g), Ok(None));
}

#[test]
fn device_filters_and_bad_entries() {
    let g = a100(2);
    // The operator's default config style: entries per PCI id (A100-SXM4-40GB is 0x20B0).
    let filtered = "version: v1\nmig-configs:\n  mine:\n    - device-filter: [\"0x233010DE\"]\n      devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.10gb\": 7}\n    - device-filter: \"0x20B010DE\"\n      devices: all\n      mig-enabled: true\n      mig-devices: {\"3g.20gb\": 2}\n";
    let per_gpu = cfg(filtered)
        .layout("mine", &g)
        .expect("valid")
        .expect("defined");
    assert_eq!(
        resources("mixed", "mine", &per_gpu),
        Ok(counts(&[
            ("nvidia.com/gpu", 0),
            ("nvidia.com/mig-3g.20gb", 4)
        ]))
    );
    let rows = [
        (
            "version: v1\nmig-configs:\n  c:\n    - devices: [0]\n      mig-enabled: false\n",
            "ConfigMap gpu-operator/custom-mig-config: mig-configs.c leaves GPU 1 of p4d.24xlarge: 2× NVIDIA-A100-SXM4-40GB unconfigured",
        ),
        (
            "version: v1\nmig-configs:\n  c:\n    - devices: [0, 5]\n      mig-enabled: false\n",
            "ConfigMap gpu-operator/custom-mig-config: mig-configs.c[0] names GPU 5, the node has 2 (p4d.24xlarge: 2× NVIDIA-A100-SXM4-40GB)",
        ),
        (
            "version: v1\nmig-configs:\n  c:\n    - devices: all\n      mig-enabled: true\n      mig-devices: {\"1g.10gb\": 7}\n",
            "ConfigMap gpu-operator/custom-mig-config: mig-configs.c[0] asks for 1g.10gb, which NVIDIA-A100-SXM4-40GB has not",
        ),
        (
            "version: v2\nmig-configs: {}\n",
            "ConfigMap gpu-operator/custom-mig-config: unknown version `v2`, expected `v1`",
        ),
    ];
    for (text, want) in rows {
        let got = cfg(text).layout("c", &g);
        assert_eq!(got, Err(want.to_string()), "{text}");
    }
}
