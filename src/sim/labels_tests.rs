//! GFD, operator and device-plugin output per configuration.
use super::*;
use crate::catalog::Catalog;

fn gpus<'a>(catalog: &'a Catalog, ty: &'a str) -> NodeGpus<'a> {
    let instance = catalog.instance(ty).expect("type");
    let (model, count) = catalog.gpu_of(instance).expect("gpu");
    // Leaked: a test's hardware lives as long as the test binary.
    let hardware = Box::leak(Box::new(Hardware::of_type(ty, instance)));
    NodeGpus {
        hardware,
        model,
        count,
    }
}

fn cfg(strategy: MigStrategy) -> StackConfig {
    StackConfig {
        driver_version: "580.95.05".into(),
        driver_enabled: true,
        mig_strategy: strategy,
    }
}

#[test]
fn p3_labels_match_gfd_for_a_v100() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "p3.2xlarge");
    let l = gfd_labels(
        &g,
        &cfg(MigStrategy::Single),
        &MigLayout::Disabled,
        None,
        17,
    );
    let want = [
        ("nvidia.com/gpu.product", "Tesla-V100-SXM2-16GB"),
        ("nvidia.com/gpu.count", "1"),
        ("nvidia.com/gpu.memory", "16384"),
        ("nvidia.com/gpu.family", "volta"),
        ("nvidia.com/gpu.compute.major", "7"),
        ("nvidia.com/gpu.compute.minor", "0"),
        ("nvidia.com/gpu.machine", "HVM-domU"),
        ("nvidia.com/cuda.driver.major", "580"),
        ("nvidia.com/cuda.driver.rev", "05"),
        ("nvidia.com/cuda.driver-version.full", "580.95.05"),
        ("nvidia.com/cuda.driver-version.revision", "05"),
        ("nvidia.com/cuda.runtime-version.full", "13.0"),
        ("nvidia.com/mig.capable", "false"),
        ("nvidia.com/gpu.replicas", "1"),
        ("nvidia.com/gpu.sharing-strategy", "none"),
        ("nvidia.com/gfd.timestamp", "17"),
    ];
    for (k, v) in want {
        assert_eq!(l.get(k).map(String::as_str), Some(v), "{k}");
    }
}

#[test]
fn nitro_machine_is_the_instance_type() {
    let c = Catalog::embedded().expect("catalog");
    let l = gfd_labels(
        &gpus(&c, "p4d.24xlarge"),
        &cfg(MigStrategy::Single),
        &MigLayout::Disabled,
        None,
        0,
    );
    assert_eq!(l["nvidia.com/gpu.machine"], "p4d.24xlarge");
    assert_eq!(l["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-40GB");
    assert_eq!(l["nvidia.com/gpu.count"], "8");
    assert_eq!(l["nvidia.com/mig.capable"], "true");
}

#[test]
fn time_slicing_multiplies_and_marks_shared() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "g4dn.xlarge");
    let s = Sharing {
        strategy: "time-slicing".into(),
        replicas: 10,
        renamed: false,
    };
    let cf = cfg(MigStrategy::Single);
    let l = gfd_labels(&g, &cf, &MigLayout::Disabled, Some(&s), 0);
    assert_eq!(l["nvidia.com/gpu.product"], "Tesla-T4-SHARED");
    assert_eq!(l["nvidia.com/gpu.replicas"], "10");
    let r = device_plugin_resources(&g, &cf, &MigLayout::Disabled, Some(&s), 0);
    assert_eq!(r, vec![("nvidia.com/gpu".to_string(), 10, 10)]);
    let renamed = Sharing { renamed: true, ..s };
    let l = gfd_labels(&g, &cf, &MigLayout::Disabled, Some(&renamed), 0);
    assert_eq!(l["nvidia.com/gpu.product"], "Tesla-T4");
    let r = device_plugin_resources(&g, &cf, &MigLayout::Disabled, Some(&renamed), 0);
    assert_eq!(r[0].0, "nvidia.com/gpu.shared");
}

#[test]
fn mig_mixed_gives_profile_resources() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "p4d.24xlarge");
    let cf = cfg(MigStrategy::Mixed);
    let layout = mig_layout(g.model, "all-balanced").expect("layout");
    let r = device_plugin_resources(&g, &cf, &layout, None, 0);
    assert!(r.contains(&("nvidia.com/gpu".to_string(), 0, 0)));
    assert!(r.contains(&("nvidia.com/mig-1g.5gb".to_string(), 16, 16)));
    assert!(r.contains(&("nvidia.com/mig-2g.10gb".to_string(), 8, 8)));
    assert!(r.contains(&("nvidia.com/mig-3g.20gb".to_string(), 8, 8)));
    let l = gfd_labels(&g, &cf, &layout, None, 0);
    assert_eq!(l["nvidia.com/mig-1g.5gb.count"], "16");
    assert_eq!(l["nvidia.com/mig-1g.5gb.memory"], "4864");
    assert_eq!(l["nvidia.com/mig-3g.20gb.slices.gi"], "3");
    assert_eq!(l["nvidia.com/gpu.product"], "NVIDIA-A100-SXM4-40GB");
}

#[test]
fn mig_single_renames_the_product() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "p4d.24xlarge");
    let cf = cfg(MigStrategy::Single);
    let layout = mig_layout(g.model, "all-1g.5gb").expect("layout");
    let l = gfd_labels(&g, &cf, &layout, None, 0);
    assert_eq!(
        l["nvidia.com/gpu.product"],
        "NVIDIA-A100-SXM4-40GB-MIG-1g.5gb"
    );
    assert_eq!(l["nvidia.com/gpu.count"], "56");
    assert_eq!(l["nvidia.com/gpu.memory"], "4864");
    let r = device_plugin_resources(&g, &cf, &layout, None, 1);
    assert_eq!(r, vec![("nvidia.com/gpu".to_string(), 56, 49)]);
    let balanced = mig_layout(g.model, "all-balanced").expect("layout");
    let l = gfd_labels(&g, &cf, &balanced, None, 0);
    assert_eq!(
        l["nvidia.com/gpu.product"],
        "NVIDIA-A100-SXM4-40GB-MIG-INVALID"
    );
}

#[test]
fn unknown_mig_config_is_an_error() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "p4d.24xlarge");
    assert!(mig_layout(g.model, "all-9g.99gb").is_err());
    let t4 = gpus(&c, "g4dn.xlarge");
    assert!(mig_layout(t4.model, "all-balanced").is_err());
    assert_eq!(
        mig_layout(t4.model, "all-disabled"),
        Ok(MigLayout::Disabled)
    );
}

#[test]
fn unhealthy_gpus_reduce_allocatable_only() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "p4d.24xlarge");
    let r = device_plugin_resources(&g, &cfg(MigStrategy::Single), &MigLayout::Disabled, None, 8);
    assert_eq!(r, vec![("nvidia.com/gpu".to_string(), 8, 0)]);
}

#[test]
fn nfd_labels_from_node_info() {
    let l = nfd_labels("Ubuntu 22.04.5 LTS", "6.8.0-1021-aws", true);
    assert_eq!(
        l["feature.node.kubernetes.io/system-os_release.ID"],
        "ubuntu"
    );
    assert_eq!(
        l["feature.node.kubernetes.io/system-os_release.VERSION_ID"],
        "22.04"
    );
    assert_eq!(l["feature.node.kubernetes.io/kernel-version.major"], "6");
    assert!(crate::gpu_stack::nfd::has_nvidia_pci(&l));
    assert!(!crate::gpu_stack::nfd::has_nvidia_pci(&nfd_labels(
        "Ubuntu 22.04",
        "6.8.0",
        false
    )));
}

/// The simulator's MIG-mixed labels against a real node's (NVIDIA's published Supermicro H100,
/// all-balanced, `tests/data/real-nodes/`): every `nvidia.com/*` GFD key the simulator writes
/// for an H100 under all-balanced is one the real GFD wrote, with the real values where they
/// do not depend on the count of GPUs (the real node has one, p5 has eight). GFD's `engines.*`
/// labels are not simulated.
#[test]
fn mig_mixed_labels_are_the_ones_real_gfd_writes() {
    let c = Catalog::embedded().expect("catalog");
    let g = gpus(&c, "p5.48xlarge");
    let cf = cfg(MigStrategy::Mixed);
    let layout = mig_layout(g.model, "all-balanced").expect("layout");
    let sim = gfd_labels(&g, &cf, &layout, None, 0);
    let real = crate::fixture::real_nodes::load("onprem-supermicro-pio4124gs-h100-mig-mixed.yaml");
    let per_node = ["count", "machine", "gfd.timestamp", "cuda."];
    // Written by GFD releases newer than the node's (v0.15, GPU Operator 24.3): gpu.mode since
    // v0.16.0; vgpu.present is on the newer recorded nodes (L4, GTX 1660 Ti), not on this one.
    let newer = ["nvidia.com/gpu.mode", "nvidia.com/vgpu.present"];
    for (k, v) in &sim {
        if newer.contains(&k.as_str()) {
            continue;
        }
        assert!(real.labels.contains_key(k), "the real GFD writes no {k}");
        let shaped_by_node = per_node.iter().any(|p| k.contains(p));
        if !shaped_by_node {
            assert_eq!(Some(v), real.labels.get(k), "{k}");
        }
    }
}
