use super::*;

fn case(suite: &str, check: &str, name: &str, node: Option<&str>, status: Status) -> Case {
    Case {
        suite: suite.into(),
        step: name.split('/').next().unwrap_or(name).into(),
        check: check.into(),
        name: name.into(),
        node: node.map(str::to_string),
        status,
        message: None,
        detail: String::new(),
        warnings: Vec::new(),
        seconds: 0.0,
        diagnostics: Vec::new(),
        attempts: Vec::new(),
        layer: None,
    }
}

fn run() -> Vec<Case> {
    vec![
        case(
            "gpu-stack",
            "operator",
            "operator/daemonset/nvidia-driver-daemonset",
            None,
            Status::Passed,
        ),
        case(
            "gpu-stack",
            "labels",
            "labels/gpu-1",
            Some("gpu-1"),
            Status::Passed,
        ),
        case(
            "gpu-stack",
            "workload",
            "workload/gpu-1",
            Some("gpu-1"),
            Status::Passed,
        ),
        case(
            "gpu-stack",
            "allocatable",
            "allocatable/gpu-1",
            Some("gpu-1"),
            Status::Passed,
        ),
        case(
            "throughput",
            "throughput",
            "bench/gpu-1",
            Some("gpu-1"),
            Status::Passed,
        ),
        // Not the driver's or the runtime's: no evidence for driver_runtime_management.
        case(
            "gpu-stack",
            "operator",
            "operator/daemonset/nvidia-dcgm-exporter",
            None,
            Status::Passed,
        ),
    ]
}

fn parse(text: &str) -> serde_json::Value {
    serde_saphyr::from_str(text).expect("the checklist parses")
}

#[test]
fn every_template_keeps_its_ids_descriptions_and_levels_when_filled() {
    let meta = Metadata {
        fields: vec![("vendorName".into(), "Example \"Cloud\"".into())],
    };
    for (v, t) in TEMPLATES {
        let filled = fill(t, &meta, &run(), None);
        let (a, b) = (parse(t), parse(&filled));
        assert_eq!(requirements(&a), requirements(&b), "{v}");
        assert!(requirements(&a).len() >= 9, "{v}");
        assert_eq!(b["metadata"]["vendorName"], "Example \"Cloud\"", "{v}");
        assert_eq!(b["metadata"]["kubernetesVersion"], format!("v{v}"), "{v}");
        assert_eq!(
            b["metadata"]["platformName"], "",
            "{v}: no placeholder left"
        );
        assert_eq!(
            b["spec"]["security"][0]["id"], "secure_accelerator_access",
            "{v}"
        );
        assert_eq!(b["spec"]["security"][0]["status"], "Not Implemented", "{v}");
    }
}

#[test]
fn only_passed_testcases_are_evidence() {
    let t = template("v1.35.4").expect("1.35").1;
    let b = parse(&fill(t, &Metadata::default(), &run(), None));
    let drm = &b["spec"]["accelerators"][1];
    assert_eq!(drm["id"], "driver_runtime_management");
    assert_eq!(drm["status"], "Implemented");
    assert_eq!(
        drm["evidence"],
        serde_json::json!([
            "file://junit.xml#gpu-stack/operator/daemonset/nvidia-driver-daemonset",
            "file://junit.xml#gpu-stack/labels/gpu-1",
            "file://junit.xml#gpu-stack/workload/gpu-1",
        ])
    );
    let mut cases = run();
    cases[2].status = Status::Failed;
    let b = parse(&fill(t, &Metadata::default(), &cases, None));
    let drm = &b["spec"]["accelerators"][1];
    assert_eq!(drm["status"], "Partially Implemented");
    assert_eq!(drm["evidence"].as_array().map(Vec::len), Some(2));
    assert!(
        drm["notes"]
            .as_str()
            .is_some_and(|n| n.contains("not passed: gpu-stack/workload/gpu-1")),
        "{drm}"
    );
    // DRA is a MUST in 1.35 and this run has no dra testcase: nothing is claimed.
    let dra = &b["spec"]["accelerators"][0];
    assert_eq!(
        (&dra["id"], &dra["level"]),
        (&"dra_support".into(), &"MUST".into())
    );
    assert_eq!(dra["status"], "Not Implemented");
    assert_eq!(dra["evidence"], serde_json::json!([]));
    assert!(
        dra["notes"]
            .as_str()
            .is_some_and(|n| n.starts_with("Not tested in this run")),
        "{dra}"
    );
    // A run of the dra check evidences it with exactly its passed testcases.
    let mut with_dra = run();
    with_dra.push(case("dra", "dra", "dra/api", None, Status::Passed));
    with_dra.push(case(
        "dra",
        "dra",
        "dra/gpu-1",
        Some("gpu-1"),
        Status::Passed,
    ));
    let b = parse(&fill(t, &Metadata::default(), &with_dra, None));
    let dra = &b["spec"]["accelerators"][0];
    assert_eq!(dra["status"], "Implemented");
    assert_eq!(
        dra["evidence"],
        serde_json::json!([
            "file://junit.xml#dra/dra/api",
            "file://junit.xml#dra/dra/gpu-1"
        ])
    );
}

#[test]
fn sharing_is_evidenced_only_by_nodes_that_share() {
    let t = template("v1.35.0").expect("1.35").1;
    let mut inv = Inventory::default();
    inv.nodes.push(crate::report::inventory::NodeInventory {
        name: "gpu-1".into(),
        gpu_product: Some("NVIDIA-A100-SXM4-40GB-MIG-1g.5gb".into()),
        ..Default::default()
    });
    let b = parse(&fill(t, &Metadata::default(), &run(), Some(&inv)));
    let sharing = &b["spec"]["accelerators"][2];
    assert_eq!(sharing["id"], "gpu_sharing");
    assert_eq!(sharing["status"], "Implemented");
    assert_eq!(
        sharing["evidence"],
        serde_json::json!([
            "file://junit.xml#gpu-stack/labels/gpu-1",
            "file://junit.xml#gpu-stack/allocatable/gpu-1",
        ])
    );
    let b = parse(&fill(t, &Metadata::default(), &run(), None));
    assert_eq!(b["spec"]["accelerators"][2]["status"], "Not Implemented");
}

#[test]
fn versions_pick_their_template() {
    assert_eq!(minor("v1.35.4").as_deref(), Some("1.35"));
    assert_eq!(minor("v1.36.0-rc.1+k3s1").as_deref(), Some("1.36"));
    assert_eq!(minor("1.33").as_deref(), Some("1.33"));
    assert_eq!(minor("latest"), None);
    assert!(template("v1.34.2").is_ok());
    let e = template("v1.37.0").expect_err("no 1.37 template");
    assert!(
        e.contains("1.37") && e.contains("1.33, 1.34, 1.35, 1.36"),
        "{e}"
    );
}
