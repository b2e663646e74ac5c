//! How checks ask for devices on a DRA node, table-tested: the claim requests they write, what a
//! pool offers (on a real published ResourceSlice, and on it tainted), busy pools, and each
//! node's decision.

use super::*;

const NODE: &str = "harpatil4220c-g9kfm-gpu-c-rd8r8";

/// Two T4s on driver 580.126.20, published by the DRA driver on OpenShift (source beside it).
fn real() -> ResourceSlice {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/real-slices/openshift-gcp-2x-t4.yaml");
    let text = std::fs::read_to_string(path).expect("read");
    serde_saphyr::from_str(&text).expect("a ResourceSlice")
}

fn want(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn requests_name_the_drivers_classes_and_select_mig_profiles() {
    let r = requests(&want(&[("nvidia.com/gpu", 4)]));
    assert_eq!(
        r,
        vec![json!({"name": "gpu", "exactly": {
            "deviceClassName": "gpu.nvidia.com", "allocationMode": "ExactCount", "count": 4}})]
    );
    let r = requests(&want(&[
        ("nvidia.com/gpu", 0),
        ("nvidia.com/mig-3g.20gb", 2),
        ("nvidia.com/mig-1g.5gb+me", 1),
    ]));
    assert_eq!(r.len(), 2, "{r:?}");
    assert_eq!(r[0]["name"], "mig-1g-5gb-me");
    assert_eq!(r[1]["name"], "mig-3g-20gb");
    assert_eq!(r[1]["exactly"]["deviceClassName"], "mig.nvidia.com");
    assert_eq!(r[1]["exactly"]["count"], 2);
    assert_eq!(
        r[1]["exactly"]["selectors"][0]["cel"]["expression"],
        r#"device.attributes["gpu.nvidia.com"].profile == "3g.20gb""#
    );
    // The objects parse as the API's types.
    let labels = json!({"a": "b"});
    let c: ResourceClaim =
        serde_json::from_value(claim("c", &labels, &want(&[("nvidia.com/gpu", 1)])))
            .expect("claim");
    assert_eq!(
        c.spec.devices.and_then(|d| d.requests).map(|r| r.len()),
        Some(1)
    );
    let t: k8s_openapi::api::resource::v1::ResourceClaimTemplate =
        serde_json::from_value(template("t", &labels, &want(&[("nvidia.com/gpu", 1)])))
            .expect("template");
    assert_eq!(
        t.spec.metadata.and_then(|m| m.labels).map(|l| l.len()),
        Some(1)
    );
}

#[test]
fn attach_replaces_gpu_limits_with_the_claim() {
    let mut spec = json!({"containers": [{"name": "c", "resources": {"limits": {"nvidia.com/gpu": "1", "cpu": "1"}}}]});
    attach(&mut spec, Source::Template("t"));
    assert_eq!(
        spec["resourceClaims"],
        json!([{"name": "gpus", "resourceClaimTemplateName": "t"}])
    );
    assert_eq!(
        spec["containers"][0]["resources"]["limits"],
        json!({"cpu": "1"})
    );
    assert_eq!(
        spec["containers"][0]["resources"]["claims"],
        json!([{"name": "gpus"}])
    );
    attach(&mut spec, Source::Claim("k"));
    assert_eq!(spec["resourceClaims"][0]["resourceClaimName"], "k");
}

#[test]
fn a_pool_offers_its_untainted_devices_by_kind() {
    let s = real();
    let (have, tainted) = usable(NODE, std::slice::from_ref(&s)).expect("complete");
    assert_eq!(have, want(&[("nvidia.com/gpu", 2)]));
    assert!(tainted.is_empty());
    // Another node's pool says nothing about this one.
    assert!(usable("other", std::slice::from_ref(&s)).is_err());
    // A NoSchedule taint takes the device out and names it; an informational one does not.
    for (effect, left) in [("NoSchedule", 1), ("NoExecute", 1), ("None", 2)] {
        let mut t = s.clone();
        let d = t
            .spec
            .devices
            .as_mut()
            .and_then(|d| d.first_mut())
            .expect("a device");
        let name = d.name.clone();
        d.taints = Some(vec![
            serde_json::from_value(
                json!({"key": "gpu.nvidia.com/xid", "value": "79", "effect": effect}),
            )
            .expect("taint"),
        ]);
        let (have, tainted) = usable(NODE, &[t]).expect("complete");
        assert_eq!(have, want(&[("nvidia.com/gpu", left)]), "{effect}");
        if left == 1 {
            assert_eq!(
                tainted,
                vec![format!("{name} (gpu.nvidia.com/xid=79:{effect})")]
            );
        }
    }
    // MIG devices count under their profile.
    let mut m = s.clone();
    for d in m.spec.devices.iter_mut().flatten() {
        let a = d.attributes.get_or_insert_with(Default::default);
        a.insert(
            "type".into(),
            serde_json::from_value(json!({"string": "mig"})).expect("attr"),
        );
        a.insert(
            "profile".into(),
            serde_json::from_value(json!({"string": "1g.5gb"})).expect("attr"),
        );
    }
    let (have, _) = usable(NODE, &[m]).expect("complete");
    assert_eq!(have, want(&[("nvidia.com/mig-1g.5gb", 2)]));
    // An incomplete pool offers nothing.
    let mut half = s;
    half.spec.pool.resource_slice_count = 2;
    assert!(
        usable(NODE, &[half])
            .expect_err("incomplete")
            .contains("incomplete")
    );
}

#[test]
fn expectations_are_in_the_device_plugins_words() {
    let whole = dra_judge::Want {
        devices: 8,
        mig: false,
        profiles: BTreeMap::new(),
        driver: None,
    };
    assert_eq!(expected_of(&whole), want(&[("nvidia.com/gpu", 8)]));
    let mig = dra_judge::Want {
        devices: 16,
        mig: true,
        profiles: BTreeMap::from([("3g.20gb".to_string(), 16)]),
        driver: None,
    };
    assert_eq!(
        expected_of(&mig),
        want(&[("nvidia.com/gpu", 0), ("nvidia.com/mig-3g.20gb", 16)])
    );
}

#[test]
fn a_pool_held_by_other_claims_is_busy() {
    let held = BTreeMap::from([(
        "n".to_string(),
        vec!["ml/train".to_string(), "ml/train".to_string()],
    )]);
    assert_eq!(busy(Some(&held), "n", 4, 2), None);
    let why = busy(Some(&held), "n", 4, 4).expect("busy");
    assert!(
        why.contains("2 of 4 devices of DRA pool n are allocated to other claims (ml/train), 2 free; the check needs 4"),
        "{why}"
    );
    assert_eq!(busy(Some(&held), "m", 4, 4), None);
    assert_eq!(busy(None, "n", 4, 4), None);
}

fn node(name: &str, gpus: u32) -> Node {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "status": {"capacity": {"nvidia.com/gpu": gpus.to_string()}, "allocatable": {"nvidia.com/gpu": gpus.to_string()}}
    }))
    .expect("node")
}

fn bare(name: &str) -> Node {
    serde_json::from_value(json!({"metadata": {"name": name}})).expect("node")
}

fn class(name: &str, extended: Option<&str>) -> DeviceClass {
    let mut spec = json!({});
    if let Some(e) = extended {
        spec["extendedResourceName"] = json!(e);
    }
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).expect("class")
}

#[test]
fn each_node_is_asked_through_its_own_mechanism() {
    let mut s = real();
    s.spec.node_name = Some("dra".into());
    s.spec.pool.name = "dra".into();
    let modes = Modes {
        nodes: vec![
            node("dra", 0),
            node("plugin", 4),
            bare("none"),
            node("dra-less", 0),
        ],
        classes: vec![class("gpu.nvidia.com", None)],
        slices: vec![s.clone()],
    };
    let d = |n: &str| modes.decide(n);
    assert_eq!(d("dra").mode, Mode::Dra);
    assert_eq!(d("plugin").mode, Mode::DevicePlugin);
    // Served by neither, in a cluster with the DRA driver's class: asked through DRA, so its
    // requests fail on the pool; not ambiguous.
    assert_eq!(
        d("none"),
        Decision {
            mode: Mode::Dra,
            ambiguous: None
        }
    );
    // A node that advertises nvidia.com resources (all 0 here) is a device-plugin node,
    // and so is one served by neither in a cluster without the class: their counts fail.
    assert_eq!(d("dra-less").mode, Mode::DevicePlugin);
    let plain = Modes {
        nodes: vec![bare("none")],
        classes: Vec::new(),
        slices: Vec::new(),
    };
    assert_eq!(plain.decide("none").mode, Mode::DevicePlugin);
    // Both mechanisms on one node, or a class mapping nvidia.com/gpu beside the plugin:
    // ambiguous, named.
    let mut both = s;
    both.spec.node_name = Some("plugin".into());
    both.spec.pool.name = "plugin".into();
    let m = Modes {
        nodes: vec![node("plugin", 2)],
        classes: vec![class("gpu.nvidia.com", None)],
        slices: vec![both],
    };
    let why = m.decide("plugin").ambiguous.expect("ambiguous");
    assert!(why.contains("one GPU could be allocated twice"), "{why}");
    let m = Modes {
        nodes: vec![node("plugin", 2)],
        classes: vec![class("gpu.nvidia.com", Some("nvidia.com/gpu"))],
        slices: Vec::new(),
    };
    let why = m.decide("plugin").ambiguous.expect("ambiguous");
    assert!(why.contains("maps it to DRA"), "{why}");
}

/// A claim allocated both T4s of the real slice: the bench must have measured exactly their
/// UUIDs (the ones the driver published, NVML's), no other GPU and none fewer.
#[test]
fn a_bench_must_measure_the_gpus_its_claim_was_allocated() {
    let claim: ResourceClaim = serde_json::from_value(json!({
        "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
        "metadata": {"name": "bench", "namespace": "t"},
        "spec": {"devices": {"requests": []}},
        "status": {"allocation": {"devices": {"results": [
            {"request": "gpu", "driver": "gpu.nvidia.com", "pool": NODE, "device": "gpu-1"},
            {"request": "gpu", "driver": "gpu.nvidia.com", "pool": NODE, "device": "gpu-0"},
        ]}}},
    }))
    .expect("claim");
    let slices = [real()];
    let allocated = allocated_uuids(&dra::allocation(&claim).expect("allocated"), &slices);
    let a = "GPU-da96f367-6e47-8dc4-fd29-4f0b97b9f174";
    let b = "GPU-204349eb-0405-e927-278b-8804172f1be3";
    assert_eq!(
        same_gpus(&allocated, &[a, b]),
        Ok(Some(format!("gpu-1 {b}, gpu-0 {a}")))
    );
    let other = "GPU-00000000-0000-0000-0000-000000000001";
    assert_eq!(
        same_gpus(&allocated, &[a, other]),
        Err(format!(
            "the bench measured {other} that its claim was not allocated; did not measure allocated gpu-1 {b}"
        ))
    );
    assert_eq!(
        same_gpus(&allocated, &[a]),
        Err(format!("the bench did not measure allocated gpu-1 {b}"))
    );
    assert_eq!(
        same_gpus(&allocated, &[a, b, b]),
        Err("the bench measured 3 devices for 2 allocated".into())
    );
    // A device in no slice (the pool moved on): nothing to compare, not a failure.
    let gone = vec![("gpu-9".to_string(), None)];
    assert_eq!(same_gpus(&gone, &[a]), Ok(None));
    assert_eq!(
        allocated_uuids(&[(NODE.to_string(), "gpu-9".to_string())], &slices),
        gone
    );
}
