//! The judge on a real published ResourceSlice (two T4s on driver 580.126.20, with its source in
//! tests/data/real-slices/) and on that slice broken one way at a time.

use super::*;
use crate::catalog::Catalog;
use crate::plan::driver::{DriverExpect, DriverRule};

const NODE: &str = "harpatil4220c-g9kfm-gpu-c-rd8r8";

fn real() -> ResourceSlice {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/real-slices/openshift-gcp-2x-t4.yaml");
    let text = std::fs::read_to_string(path).expect("read");
    serde_saphyr::from_str(&text).expect("a ResourceSlice")
}

fn gpu_node(model: &str, count: u32) -> GpuNode {
    let c = Catalog::embedded().expect("catalog");
    GpuNode {
        name: NODE.into(),
        instance_type: "n1-standard-8".into(),
        model_key: model.into(),
        model: c.gpu_models[model].clone(),
        count,
        expectation: "expect[0]".into(),
        driver: None,
    }
}

fn want(count: usize, driver: &str) -> Want {
    Want {
        devices: count,
        mig: false,
        profiles: BTreeMap::new(),
        driver: Some(DriverRule {
            expect: DriverExpect::Exact(driver.into()),
            field: "expectDriver".into(),
            file: "p.yaml".into(),
            line: None,
        }),
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn the_real_slice_passes_its_own_expectation() {
    let s = real();
    let gfd = labels(&[
        ("nvidia.com/gpu.product", "Tesla-T4"),
        ("nvidia.com/cuda.driver-version.full", "580.126.20"),
    ]);
    let detail = judge(
        NODE,
        &[&s],
        &want(2, "580.126.20"),
        &gpu_node("T4", 2),
        &gfd,
    )
    .expect("passes");
    assert!(
        detail.contains("gpu-1 gpu GPU-204349eb-0405-e927-278b-8804172f1be3"),
        "{detail}"
    );
    assert_eq!(device_count(&[&s]), Some(2));
}

#[test]
fn each_wrong_thing_is_named() {
    let s = real();
    let none = labels(&[]);
    let err = |s: &ResourceSlice, w: &Want, g: &GpuNode, l: &BTreeMap<String, String>| {
        judge(NODE, &[s], w, g, l).expect_err("fails").0
    };
    // 580.126.2 is not 580.126.20: versions compare by number, not by prefix.
    assert_eq!(
        err(&s, &want(2, "580.126.2"), &gpu_node("T4", 2), &none),
        format!(
            "{NODE}: gpu-0 driverVersion is \"580.126.20\", expected \"580.126.2\" (and 1 more)"
        )
    );
    assert_eq!(
        err(&s, &want(4, "580.126.20"), &gpu_node("T4", 4), &none),
        format!("{NODE}: the pool has 2 devices, expected 4 (n1-standard-8: 4× Tesla-T4)")
    );
    let m = err(
        &s,
        &want(2, "580.126.20"),
        &gpu_node("V100-SXM2-16GB", 2),
        &none,
    );
    assert!(
        m.contains("gpu-0 productName is \"Tesla T4\", expected \"Tesla V100 SXM2 16GB\""),
        "{m}"
    );
    let gfd = labels(&[("nvidia.com/cuda.driver-version.full", "570.172.08")]);
    let m = err(&s, &want(2, "580.126.20"), &gpu_node("T4", 2), &gfd);
    assert!(
        m.contains(
            "but the node's GFD label nvidia.com/cuda.driver-version.full says \"570.172.08\""
        ),
        "{m}"
    );
    let mut incomplete = s.clone();
    incomplete.spec.pool.resource_slice_count = 2;
    assert_eq!(
        err(
            &incomplete,
            &want(2, "580.126.20"),
            &gpu_node("T4", 2),
            &none
        ),
        format!("{NODE}: pool {NODE} is incomplete: 1 of 2 slices at generation 1")
    );
    assert_eq!(device_count(&[&incomplete]), None);
    let mut twin = s.clone();
    if let Some(d) = twin.spec.devices.as_mut() {
        let first = d[0]
            .attributes
            .as_ref()
            .and_then(|a| a.get("uuid"))
            .cloned();
        if let (Some(a), Some(u)) = (d[1].attributes.as_mut(), first) {
            a.insert("uuid".into(), u);
        }
    }
    let m = err(&twin, &want(2, "580.126.20"), &gpu_node("T4", 2), &none);
    assert!(
        m.contains(
            "gpu-1 uuid \"GPU-da96f367-6e47-8dc4-fd29-4f0b97b9f174\" is empty or not unique"
        ),
        "{m}"
    );
    let m = judge(NODE, &[], &want(2, "580.126.20"), &gpu_node("T4", 2), &none)
        .expect_err("no slice")
        .0;
    assert!(
        m.contains("no ResourceSlice of driver gpu.nvidia.com"),
        "{m}"
    );
}

#[test]
fn a_tainted_device_is_named_with_its_taint() {
    let mut s = real();
    let none = labels(&[]);
    let d = s
        .spec
        .devices
        .as_mut()
        .and_then(|d| d.get_mut(1))
        .expect("gpu-1");
    d.taints = Some(vec![
        serde_json::from_value(serde_json::json!({"key": "gpu.nvidia.com/xid", "value": "79", "effect": "NoSchedule", "timeAdded": "2026-12-02T10:00:00Z"}))
            .expect("taint"),
    ]);
    let m = judge(
        NODE,
        &[&s],
        &want(2, "580.126.20"),
        &gpu_node("T4", 2),
        &none,
    )
    .expect_err("fails")
    .0;
    assert_eq!(
        m,
        format!(
            "{NODE}: gpu-1 is tainted gpu.nvidia.com/xid=79:NoSchedule (the scheduler allocates no claim to it)"
        )
    );
    // An informational taint (effect None, a non-fatal XID) is not a failure.
    if let Some(t) = s
        .spec
        .devices
        .as_mut()
        .and_then(|d| d.get_mut(1))
        .and_then(|d| d.taints.as_mut())
        .and_then(|t| t.first_mut())
    {
        t.effect = "None".into();
    }
    assert!(
        judge(
            NODE,
            &[&s],
            &want(2, "580.126.20"),
            &gpu_node("T4", 2),
            &none
        )
        .is_ok()
    );
}

#[test]
fn quantities_read_in_mib() {
    assert_eq!(mib("15Gi"), Some(15360));
    assert_eq!(mib("4864Mi"), Some(4864));
    assert_eq!(mib("17179869184"), Some(16384));
    assert_eq!(mib("lots"), None);
    assert_eq!(numbers("580.95.05"), numbers("580.95.5"));
    assert_ne!(numbers("580.126.20"), numbers("580.126.2"));
    assert_eq!(numbers("7.5.0"), numbers("7.5"));
}
