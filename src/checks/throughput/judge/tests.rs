//! Crafted bench documents against the judge: a healthy simulated p4d document passes; each
//! thing that cannot be true fails exactly its testcase, and the other GPUs keep their verdicts.

use std::collections::BTreeMap;

use super::super::partition::{Job, share_of};
use super::*;
use crate::bench::model::{Simulation, simulate};
use crate::catalog::Catalog;
use crate::report::Status;

fn a100_node(model: &str) -> GpuNode {
    let c = Catalog::embedded().expect("catalog");
    GpuNode {
        name: "p4d-1".into(),
        instance_type: "p4d.24xlarge".into(),
        model_key: model.into(),
        model: c.gpu_models[model].clone(),
        count: 8,
        expectation: "p4d.24xlarge".into(),
        driver: None,
    }
}

fn whole_job() -> Job {
    Job {
        node: "p4d-1".into(),
        pod: "bench-p4d-1".into(),
        subject: "p4d-1".into(),
        resource: "nvidia.com/gpu".into(),
        count: 8,
        devices: 8,
        mig: None,
        group: "p4d.24xlarge".into(),
    }
}

/// What a healthy p4d prints (the simulator's model of the bench, with distinct UUIDs).
fn healthy(table: &PerfTable) -> BenchReport {
    let m = &table.models["A100-SXM4-40GB"];
    let mut r = simulate(&Simulation {
        model_key: "A100-SXM4-40GB",
        model: m,
        device_name: "NVIDIA A100-SXM4-40GB".into(),
        gpus: 8,
        node: "p4d-1".into(),
        slow: BTreeMap::new(),
        driver_version: "580.95.05".into(),
        repetitions: 20,
        mig: None,
    });
    for g in &mut r.gpus {
        g.device.uuid = format!("GPU-{:08x}", g.device.index);
    }
    r
}

fn failed(out: &[Outcome]) -> Vec<(&str, &str)> {
    out.iter()
        .filter(|o| o.status == Status::Failed)
        .map(|o| (o.subject.as_str(), o.message.as_deref().unwrap_or("")))
        .collect()
}

fn judge(table: &PerfTable, g: &GpuNode, r: BenchReport, s: &Settings) -> Vec<Outcome> {
    all(table, s, &[(g.clone(), whole_job(), r)])
}

#[test]
fn a_healthy_document_passes() {
    let table = PerfTable::embedded().expect("table");
    let g = a100_node("A100-SXM4-40GB");
    let r = healthy(&table);
    let perf = table.models.get("A100-SXM4-40GB");
    assert_eq!(contract(&r, &whole_job(), &g, perf, true), Ok(()));
    let out = judge(&table, &g, r, &Settings::default());
    assert!(failed(&out).is_empty(), "{:#?}", failed(&out));
    // 8 GPUs × 8 metrics, 56 peer links, 8 stragglers.
    assert_eq!(out.len(), 64 + 56 + 8);
}

#[test]
fn each_impossible_measurement_fails_exactly_its_testcase() {
    let table = PerfTable::embedded().expect("table");
    let g = a100_node("A100-SXM4-40GB");
    let s = Settings::default();
    let metric = |r: &mut BenchReport, gpu: usize, key: &str| -> usize {
        r.gpus[gpu]
            .measurements
            .iter()
            .position(|m| m.metric.key() == key)
            .expect("metric")
    };
    // Triad at 1.5× the 1555 GB/s peak: a timing bug, not a fast GPU.
    let mut r = healthy(&table);
    let i = metric(&mut r, 2, "triad");
    r.gpus[2].measurements[i].summary.median = 1555.0 * 1.5;
    // It does not make the honest GPUs stragglers either.
    let out = judge(&table, &g, r, &s);
    let f = failed(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "p4d-1/gpu2/triad");
    assert!(
        f[0].1.starts_with(
            "p4d-1 gpu2: triad is 2332.5 GB/s, above the NVIDIA-A100-SXM4-40GB peak 1555 (+5%): impossible result"
        ),
        "{}",
        f[0].1
    );
    // CV 30%: unstable, whatever the median.
    let mut r = healthy(&table);
    let i = metric(&mut r, 5, "sgemm");
    r.gpus[5].measurements[i].summary.cv = 0.3;
    let out = judge(&table, &g, r, &s);
    let f = failed(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "p4d-1/gpu5/sgemm");
    assert!(
        f[0].1
            .contains("is unstable: CV 30.0% over 20 samples, expected at most 5%"),
        "{}",
        f[0].1
    );
    // No peer copies on an 8-GPU node: each ordered pair fails, nothing else.
    let mut r = healthy(&table);
    r.peers.clear();
    let out = judge(&table, &g, r, &s);
    let f = failed(&out);
    assert_eq!(f.len(), 56, "{f:#?}");
    assert!(
        f.iter()
            .all(|(s, m)| s.contains("/peer/") && m.contains("was not measured"))
    );
    // One GPU erroring: its errors and unmeasured metrics fail; the other seven keep passing.
    let mut r = healthy(&table);
    r.gpus[7].measurements.clear();
    r.gpus[7].errors = vec!["cudaMalloc failed: out of memory".into()];
    let out = judge(&table, &g, r, &s);
    let f = failed(&out);
    assert!(
        f.iter().all(|(s, _)| s.starts_with("p4d-1/gpu7/")),
        "{f:#?}"
    );
    assert_eq!(f.len(), 1 + 8, "{f:#?}");
    let passed_elsewhere = out
        .iter()
        .filter(|o| o.status == Status::Passed && o.subject.starts_with("p4d-1/gpu0/"))
        .count();
    assert_eq!(
        passed_elsewhere, 9,
        "gpu0: 8 metrics and its straggler case"
    );
    // A GPU whose context could not even be created (the bench's exit 4): its name is unknown,
    // the document still meets the contract, and it fails as that GPU's errors.
    let mut r = healthy(&table);
    r.gpus[5].measurements.clear();
    r.gpus[5].device.name.clear();
    r.gpus[5].device.uuid.clear();
    r.gpus[5].errors = vec!["create context: CUDA_ERROR_ECC_UNCORRECTABLE".into()];
    r.peers.retain(|p| p.from != 5);
    assert_eq!(r.exit_code(), crate::bench::exit::PARTIAL);
    let perf = table.models.get("A100-SXM4-40GB");
    assert_eq!(contract(&r, &whole_job(), &g, perf, true), Ok(()));
    let out = judge(&table, &g, r, &s);
    let f = failed(&out);
    assert!(
        f.iter()
            .any(|(s, m)| *s == "p4d-1/gpu5/errors" && m.contains("ECC")),
        "{f:#?}"
    );
    // Its errors, its 8 unmeasured metrics, its 7 outgoing peer links; nothing of another GPU.
    assert!(
        f.iter()
            .all(|(s, _)| s.starts_with("p4d-1/gpu5/") || s.starts_with("p4d-1/peer/gpu5-")),
        "{f:#?}"
    );
    assert_eq!(f.len(), 1 + 8 + 7, "{f:#?}");
}

#[test]
fn tf32_math_is_named_not_counted_as_fp32() {
    let table = PerfTable::embedded().expect("table");
    let g = a100_node("A100-SXM4-40GB");
    let mut r = healthy(&table);
    // What the bench records when cuBLAS ran SGEMM on TF32 tensor cores: 8× the FP32 rate,
    // the errors of 10-bit inputs (the CPU emulation in bench::precision gives 6.6e-4).
    let sgemm = r.gpus[2]
        .measurements
        .iter_mut()
        .find(|m| m.metric == Metric::Sgemm)
        .expect("sgemm");
    sgemm.verified = false;
    sgemm.max_error = Some(6.6e-4);
    let out = judge(&table, &g, r, &Settings::default());
    let f = failed(&out);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "p4d-1/gpu2/sgemm");
    assert!(
        f[0].1
            .contains("sgemm ran with TF32-like precision, not FP32"),
        "{}",
        f[0].1
    );
    assert_eq!(
        crate::bench::precision::classify(6.6e-4),
        crate::bench::precision::Precision::Reduced
    );
}

#[test]
fn the_exit_status_follows_the_document() {
    let table = PerfTable::embedded().expect("table");
    let r = healthy(&table);
    assert_eq!(r.exit_code(), crate::bench::exit::OK);
    let mut wrong = r.clone();
    wrong.gpus[2].measurements[3].verified = false;
    wrong.gpus[4].errors.push("h2d, d2h: pinned alloc".into());
    assert_eq!(
        wrong.exit_code(),
        crate::bench::exit::VERIFICATION_FAILED,
        "wrong wins"
    );
    let mut nothing = r.clone();
    nothing.gpus.clear();
    nothing.peers.clear();
    nothing.errors.push("cannot load libcuda.so".into());
    assert_eq!(nothing.exit_code(), crate::bench::exit::NO_CUDA);
}

#[test]
fn documents_that_are_not_the_expected_gpus_are_refused() {
    let table = PerfTable::embedded().expect("table");
    let g = a100_node("A100-SXM4-40GB");
    let perf = table.models.get("A100-SXM4-40GB");
    let job = whole_job();
    let mut dup = healthy(&table);
    dup.gpus[3].device.uuid = dup.gpus[0].device.uuid.clone();
    assert_eq!(
        contract(&dup, &job, &g, perf, true),
        Err("gpu0 and gpu3 report the same UUID GPU-00000000: one GPU counted twice".into())
    );
    let mut wrong = healthy(&table);
    wrong.gpus[1].device.name = "NVIDIA A100-SXM4-80GB".into();
    assert_eq!(
        contract(&wrong, &job, &g, perf, true),
        Err("the bench saw \"NVIDIA A100-SXM4-80GB\" as gpu1, expected \"NVIDIA A100-SXM4-40GB\" (p4d.24xlarge: 8× NVIDIA-A100-SXM4-40GB)".into())
    );
    let mut fewer = healthy(&table);
    fewer.gpus.truncate(7);
    assert!(
        contract(&fewer, &job, &g, perf, true)
            .is_err_and(|e| e.starts_with("the bench saw 7 device(s), expected 8"))
    );
    // Simulated numbers only count on the local cluster.
    assert!(contract(&healthy(&table), &job, &g, perf, false).is_err());
    // A MIG device of another profile.
    let model = &g.model;
    let p = model
        .mig_profiles
        .iter()
        .find(|p| p.name == "1g.5gb")
        .expect("profile");
    let mig_job = Job {
        devices: 1,
        count: 1,
        mig: Some(share_of(p, model, 108)),
        ..whole_job()
    };
    let mut mig = healthy(&table);
    mig.gpus.truncate(1);
    mig.gpus[0].device.name = "NVIDIA A100-SXM4-40GB MIG 3g.20gb".into();
    mig.gpus[0].device.sm_count = 42;
    assert_eq!(
        contract(&mig, &mig_job, &g, perf, true),
        Err("the bench saw NVIDIA A100-SXM4-40GB MIG 3g.20gb with 42 SMs, expected a MIG 1g.5gb device with 14 SMs".into())
    );
}

#[test]
fn a_model_without_a_performance_entry_fails_unless_allowed() {
    let table = PerfTable::embedded().expect("table");
    // The document of a GPU the table does not know (a K80 node, say).
    let g = GpuNode {
        count: 8,
        ..a100_node("K80")
    };
    let r = healthy(&table);
    let out = judge(&table, &g, r.clone(), &Settings::default());
    let f = failed(&out);
    assert_eq!(f.len(), 64, "every measurement: {f:#?}");
    assert!(
        f[0].1
            .contains("the performance table has no entry for K80"),
        "{}",
        f[0].1
    );
    let lenient = Settings {
        allow_unknown_models: true,
        ..Settings::default()
    };
    let out = judge(&table, &g, r, &lenient);
    assert!(failed(&out).is_empty());
    assert_eq!(
        out.iter().filter(|o| o.status == Status::Skipped).count(),
        64
    );
}

/// An A100-40GB 1g.5gb device: 14 of 108 SMs, 1 of 8 memory slices; host copies not judged.
#[test]
fn peaks_scale_to_the_mig_device() {
    let t = PerfTable::embedded().expect("table");
    let c = Catalog::embedded().expect("catalog");
    let perf = &t.models["A100-SXM4-40GB"];
    let model = &c.gpu_models["A100-SXM4-40GB"];
    let p = model
        .mig_profiles
        .iter()
        .find(|p| p.name == "1g.5gb")
        .expect("profile");
    let share = share_of(p, model, perf.sms);
    let peak = |m| scaled_peak(perf, m, Some(&share));
    assert_eq!(peak(Metric::Triad), Ok(Some(1555.0 / 8.0)));
    let sgemm = peak(Metric::Sgemm).expect("judged").expect("peak");
    assert!((sgemm - 19.5 * 14.0 / 108.0).abs() < 1e-9, "{sgemm}");
    assert!(peak(Metric::H2d).is_err());
    // Whole GPUs keep the table's peaks.
    assert_eq!(scaled_peak(perf, Metric::Triad, None), Ok(Some(1555.0)));
}
