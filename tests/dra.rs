//! Tier 2: GPUs through Dynamic Resource Allocation on the local cluster — the operator's DRA
//! stack (`plans/dra.yaml`: a 4× T4 node and an A100 node with MIG `all-3g.20gb`), the GPU
//! simulator playing NVIDIA's DRA kubelet plugin, the real scheduler allocating the `dra`
//! check's claims; each DRA fault fails exactly its testcase, naming node and attribute.

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::*;

/// `suite/name` → `(status, message, detail)` of a finished run in `reports`.
fn cases(reports: &Path) -> BTreeMap<String, (String, String, String)> {
    let r = results(&run_dir(reports));
    r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (
                format!("{}/{}", s("suite"), s("name")),
                (s("status"), s("message"), s("detail")),
            )
        })
        .collect()
}

/// The testcases that did not pass, by name.
fn not_passed(c: &BTreeMap<String, (String, String, String)>) -> Vec<&String> {
    c.iter()
        .filter(|(_, (s, _, _))| s != "passed")
        .map(|(n, _)| n)
        .collect()
}

fn run(reports: &Path, fixture: Option<&str>) -> std::process::Output {
    let mut cmd = run_command(Path::new("plans/dra.yaml"), reports);
    if let Some(f) = fixture {
        cmd.arg("--set").arg(format!("target.local.fixture={f}"));
    }
    cmd.output().expect("run gpuconform")
}

const DRA_CASES: &[&str] = &[
    "dra/dra/api",
    "dra/dra/mode",
    "dra/dra/t4-worker-1",
    "dra/dra/mig-worker-1",
    "dra/dra/claim/t4-worker-1",
    "dra/dra/distinct/t4-worker-1",
    "dra/dra/claim/mig-worker-1",
    "dra/dra/distinct/mig-worker-1",
    "dra/dra/unsatisfiable",
    "dra/dra/cycles",
    "secure-access/probe/positive/t4-worker-1",
    "secure-access/probe/negative/t4-worker-1",
    "secure-access/probe/multi-container/t4-worker-1",
    "secure-access/probe/positive/mig-worker-1",
    "secure-access/probe/negative/mig-worker-1",
    "secure-access/probe/multi-container/mig-worker-1",
];

#[test]
fn the_dra_stack_allocates_through_claims_on_every_gpu_node() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    let out = run(&reports, None);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let c = cases(&reports);
    for name in DRA_CASES {
        let (status, message, _) = c
            .get(*name)
            .unwrap_or_else(|| panic!("{name} missing: {c:#?}"));
        assert_eq!(status, "passed", "{name}: {message}");
    }
    // What was judged came from the slices the simulated plugin published and the real
    // scheduler's allocations.
    assert!(
        c["dra/dra/t4-worker-1"]
            .2
            .starts_with("pool t4-worker-1, 4 devices:"),
        "{:?}",
        c["dra/dra/t4-worker-1"]
    );
    assert!(
        c["dra/dra/mig-worker-1"]
            .2
            .starts_with("pool mig-worker-1, 16 devices:"),
        "{:?}",
        c["dra/dra/mig-worker-1"]
    );
    assert!(
        c["dra/dra/mig-worker-1"]
            .2
            .contains("gpu-7-mig-3g20gb-9-4 mig MIG-"),
        "{:?}",
        c["dra/dra/mig-worker-1"]
    );
    let distinct = &c["dra/dra/distinct/t4-worker-1"].2;
    assert!(
        distinct.starts_with("gpu-") && distinct.contains(" and gpu-"),
        "{distinct}"
    );
    assert!(
        c["dra/dra/unsatisfiable"]
            .2
            .contains("cannot allocate all claims"),
        "{:?}",
        c["dra/dra/unsatisfiable"]
    );
    // The probe's counts came through each container's log.
    let multi = &c["secure-access/probe/multi-container/mig-worker-1"].2;
    assert!(
        multi.ends_with(
            "(a claim of DeviceClass mig.nvidia.com): with-device sees 1, without-device sees 0"
        ),
        "{multi}"
    );
    for (name, (status, message, _)) in &c {
        assert_eq!(status, "passed", "{name}: {message}");
    }
}

/// The device plugin left on beside the DRA driver: every GPU is offered twice, and the mode
/// testcase fails closed naming each node; the rest still passes.
#[test]
fn a_device_plugin_beside_the_dra_driver_fails_mode_detection() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    let mut cmd = run_command(Path::new("plans/dra.yaml"), &reports);
    cmd.args(["--set", "operator.values.devicePlugin.enabled=true"]);
    let out = cmd.output().expect("run gpuconform");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let c = cases(&reports);
    let failed = not_passed(&c);
    // The probe cannot pick a mechanism on either node: it fails closed on each.
    assert_eq!(
        failed,
        [
            "dra/dra/mode",
            "secure-access/probe/positive/mig-worker-1",
            "secure-access/probe/positive/t4-worker-1"
        ],
        "{c:#?}"
    );
    let (_, message, detail) = &c["dra/dra/mode"];
    assert!(
        message.contains("its GPUs are served by the device plugin"),
        "{message}"
    );
    for n in [
        "mig-worker-1:",
        "t4-worker-1: its GPUs are served by the device plugin (4 allocatable nvidia.com devices) and by the DRA driver (pool t4-worker-1, 4 devices)",
    ] {
        assert!(detail.contains(n), "{n}: {detail}");
    }
}

#[test]
fn each_dra_fault_fails_exactly_its_testcase() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let rows = [
        (
            "dra-incomplete-pool",
            "dra/dra/t4-worker-1",
            "t4-worker-1: pool t4-worker-1 is incomplete: 1 of 2 slices at generation 1",
        ),
        (
            "leaky-device",
            "secure-access/probe/negative/t4-worker-1",
            "t4-worker-1: pod gpuconform-probe-negative-t4-worker-1 (asking for no GPU): container probe sees 1 GPU device, expected 0 (it asks for none)",
        ),
        (
            "dra-wrong-attribute",
            "dra/dra/mig-worker-1",
            "mig-worker-1: gpu-0-mig-3g20gb-9-0 driverVersion is \"570.172.8\", expected \"580.95.05\"",
        ),
    ];
    for (fault, case, want) in rows {
        let reports = tmp.path().join(fault);
        let out = run(
            &reports,
            Some(&format!("fixtures/clusters/faults/{fault}.yaml")),
        );
        assert_eq!(out.status.code(), Some(1), "{fault}: {}", text(&out));
        let c = cases(&reports);
        let failed = not_passed(&c);
        // An incomplete pool serves no GPU: mode detection names the node too.
        let mut want_failed = vec![case.to_string()];
        if fault == "dra-incomplete-pool" {
            // Nor can the probe pick a mechanism for that node.
            want_failed.push("dra/dra/mode".into());
            want_failed.push("secure-access/probe/positive/t4-worker-1".into());
        }
        if fault == "leaky-device" {
            want_failed.push("secure-access/probe/multi-container/t4-worker-1".into());
        }
        want_failed.sort();
        assert_eq!(
            failed,
            want_failed.iter().collect::<Vec<_>>(),
            "{fault}: {c:#?}"
        );
        assert!(c[case].1.starts_with(want), "{fault}: {}", c[case].1);
        // The node that broke gets no claims; the other node's still run and pass.
        assert!(
            DRA_CASES.iter().filter(|n| c.contains_key(**n)).count() >= 6,
            "{fault}: {c:#?}"
        );
    }
}
