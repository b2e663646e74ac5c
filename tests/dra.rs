//! Tier 2: GPUs through Dynamic Resource Allocation on the local cluster — the operator's DRA
//! stack (`plans/dra.yaml`: a 4× T4 node and an A100 node with MIG `all-3g.20gb`), the GPU
//! simulator playing NVIDIA's DRA kubelet plugin, the real scheduler allocating the `dra`
//! check's claims and those the allocatable, workload and throughput checks ask through; each
//! DRA fault fails exactly its testcases, naming node and device or attribute.

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

/// Skipped on every run, by design: host copies are not judged on a MIG device (every instance
/// of the GPU shares its PCIe link).
const BY_DESIGN: &[&str] = &[
    "throughput/bench/mig-worker-1/mig-3g.20gb/h2d",
    "throughput/bench/mig-worker-1/mig-3g.20gb/d2h",
];

/// The testcases that did not pass, by name, but for those skipped by design.
fn not_passed(c: &BTreeMap<String, (String, String, String)>) -> Vec<&String> {
    c.iter()
        .filter(|(n, (s, _, _))| {
            s != "passed" && !(s == "skipped" && BY_DESIGN.contains(&n.as_str()))
        })
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
    "dra/allocatable/t4-worker-1",
    "dra/allocatable/mig-worker-1",
    "dra/workload/t4-worker-1",
    "dra/workload/mig-worker-1/mig-3g.20gb",
    "secure-access/probe/positive/t4-worker-1",
    "secure-access/probe/negative/t4-worker-1",
    "secure-access/probe/multi-container/t4-worker-1",
    "secure-access/probe/positive/mig-worker-1",
    "secure-access/probe/negative/mig-worker-1",
    "secure-access/probe/multi-container/mig-worker-1",
    "throughput/bench/t4-worker-1",
    "throughput/bench/t4-worker-1/gpu3/sgemm",
    "throughput/bench/mig-worker-1/mig-3g.20gb",
    "throughput/bench/mig-worker-1/mig-3g.20gb/fp16Gemm",
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
    // allocatable judged the pool's usable devices and placed a claim for all of them.
    for (node, pool) in [
        ("t4-worker-1", "4 usable whole GPUs"),
        ("mig-worker-1", "16 usable MIG 3g.20gb devices"),
    ] {
        let detail = &c[&format!("dra/allocatable/{node}")].2;
        assert!(
            detail.contains(&format!("DRA pool {node}: {pool}"))
                && detail.contains("a claim for all of them was scheduled"),
            "{detail}"
        );
    }
    // The bench measured exactly the GPUs its claim was allocated, under the slice's UUIDs.
    let bench = &c["throughput/bench/t4-worker-1"].2;
    assert!(bench.contains("; the claim's GPUs: gpu-"), "{bench}");
    assert_eq!(bench.matches(" GPU-").count(), 4, "{bench}");
    for name in BY_DESIGN {
        let (status, message, _) = &c[*name];
        assert_eq!(status, "skipped", "{name}");
        assert!(message.contains("not judged on a MIG device"), "{message}");
    }
    assert!(not_passed(&c).is_empty(), "{c:#?}");
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
    // Nor can allocatable, the probe or the bench pick a mechanism on either node: each fails
    // closed; workload, which needs allocatable, is skipped.
    assert_eq!(
        failed,
        [
            "dra/allocatable/mig-worker-1",
            "dra/allocatable/t4-worker-1",
            "dra/dra/mode",
            "dra/workload/mig-worker-1",
            "dra/workload/t4-worker-1",
            "secure-access/probe/positive/mig-worker-1",
            "secure-access/probe/positive/t4-worker-1",
            "throughput/bench/mig-worker-1",
            "throughput/bench/t4-worker-1",
        ],
        "{c:#?}"
    );
    for case in [
        "dra/allocatable/t4-worker-1",
        "throughput/bench/mig-worker-1",
    ] {
        assert!(
            c[case].1.starts_with("allocation mode: ")
                && c[case].1.contains("one GPU could be allocated twice"),
            "{case}: {:?}",
            c[case]
        );
    }
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
            "dra-tainted-device",
            "dra/dra/t4-worker-1",
            "t4-worker-1: gpu-2 is tainted gpu.nvidia.com/xid=79:NoSchedule (the scheduler allocates no claim to it)",
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
        let mut want_failed = vec![case.to_string()];
        if fault == "dra-incomplete-pool" || fault == "dra-tainted-device" {
            // The node's pool lacks usable devices: allocatable fails it, its workload is
            // skipped (it needs allocatable) and the bench has too few to measure.
            want_failed.extend(
                [
                    "dra/allocatable/t4-worker-1",
                    "dra/workload/t4-worker-1",
                    "throughput/bench/t4-worker-1",
                ]
                .map(String::from),
            );
        }
        if fault == "dra-incomplete-pool" {
            // An incomplete pool serves no GPU: mode detection names the node, and the probe
            // cannot pick a mechanism for it.
            want_failed.push("dra/dra/mode".into());
            want_failed.push("secure-access/probe/positive/t4-worker-1".into());
        }
        if fault == "dra-tainted-device" {
            // The three untainted GPUs still serve claims: only the counts are short.
            let (_, message, _) = &c["dra/allocatable/t4-worker-1"];
            assert!(
                message.starts_with(
                    "t4-worker-1: DRA pool t4-worker-1 has 3 usable whole GPUs, expected 4"
                ) && message.ends_with("tainted: gpu-2 (gpu.nvidia.com/xid=79:NoSchedule)"),
                "{message}"
            );
            assert_eq!(c["throughput/bench/t4-worker-1"].0, "skipped");
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
