//! Reading runs and comparing them: identities pooled across a pool's nodes, hardware
//! differences refused, software differences warned about, worse runs flagged in JUnit.

use super::*;

fn doc(run: &str, rows: &[(&str, &str, f64, &str)]) -> String {
    let rows: Vec<Value> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, device, mean, driver))| {
            let samples: Vec<f64> = (0..20)
                .map(|k| mean * (1.0 + 0.002 * f64::from((k * 7 + i as i32) % 5 - 2)))
                .collect();
            serde_json::json!({
                "id": id, "unit": "GB/s", "samples": samples, "device": device,
                "simulated": false, "driverVersion": driver,
            })
        })
        .collect();
    serde_json::json!({"runId": run, "startedAt": "2026-12-01T00:00:00Z", "cases": [], "benchmarks": rows})
        .to_string()
}

fn run(name: &str, rows: &[(&str, &str, f64, &str)]) -> Run {
    parse(Path::new("results.json"), &doc(name, rows)).expect("parses")
}

const A100: &str = "NVIDIA A100-SXM4-40GB";

#[test]
fn a_drop_is_worse_and_the_rest_the_same() {
    let base = run(
        "base",
        &[
            (
                "p4d.24xlarge/A100-SXM4-40GB/gpu0/triad",
                A100,
                1380.0,
                "580.95.05",
            ),
            (
                "p4d.24xlarge/A100-SXM4-40GB/gpu3/triad",
                A100,
                1380.0,
                "580.95.05",
            ),
        ],
    );
    let new = run(
        "new",
        &[
            (
                "p4d.24xlarge/A100-SXM4-40GB/gpu0/triad",
                A100,
                1380.0,
                "580.105.08",
            ),
            (
                "p4d.24xlarge/A100-SXM4-40GB/gpu3/triad",
                A100,
                1242.0,
                "580.105.08",
            ),
            (
                "p4d.24xlarge/A100-SXM4-40GB/gpu4/triad",
                A100,
                1380.0,
                "580.105.08",
            ),
        ],
    );
    let c = compare(&base, &new, &Settings::default()).expect("comparable");
    let verdicts: Vec<(&str, Verdict)> =
        c.rows.iter().map(|r| (r.id.as_str(), r.verdict)).collect();
    assert_eq!(
        verdicts,
        [
            ("p4d.24xlarge/A100-SXM4-40GB/gpu0/triad", Verdict::Same),
            ("p4d.24xlarge/A100-SXM4-40GB/gpu3/triad", Verdict::Worse),
        ]
    );
    assert!(c.regressed());
    assert_eq!(c.only_new, ["p4d.24xlarge/A100-SXM4-40GB/gpu4/triad"]);
    assert_eq!(
        c.warnings,
        ["p4d.24xlarge/A100-SXM4-40GB: driver 580.95.05 in base, 580.105.08 in new"]
    );
    let md = markdown(&c, &base, &new, &Settings::default());
    assert!(
        md.contains("1 worse, 0 inconclusive, 1 same, 0 better"),
        "{md}"
    );
    assert!(
        md.contains(
            "| `p4d.24xlarge/A100-SXM4-40GB/gpu3/triad` | 1380.00 GB/s | 1242.00 GB/s | -10.0% |"
        ),
        "{md}"
    );
    let xml = junit(&c);
    assert!(xml.contains("tests=\"2\" failures=\"1\""), "{xml}");
    assert!(
        xml.contains("<failure message=\"1380.00 → 1242.00 GB/s (-10.0%"),
        "{xml}"
    );
}

#[test]
fn other_hardware_is_refused() {
    let base = run(
        "base",
        &[("p4d.24xlarge/A100-SXM4-40GB/gpu0/triad", A100, 1380.0, "")],
    );
    let new = run(
        "new",
        &[(
            "p4d.24xlarge/A100-SXM4-40GB/gpu0/triad",
            "NVIDIA A100-SXM4-80GB",
            1380.0,
            "",
        )],
    );
    let e = compare(&base, &new, &Settings::default()).expect_err("refused");
    assert_eq!(
        e.to_string(),
        "the runs measured different hardware, refusing to compare:\n  p4d.24xlarge/A100-SXM4-40GB/gpu0/triad: NVIDIA A100-SXM4-40GB in base, NVIDIA A100-SXM4-80GB in new"
    );
    let other = run(
        "other",
        &[("g5.xlarge/A10G/gpu0/triad", "NVIDIA A10G", 480.0, "")],
    );
    assert!(matches!(
        compare(&base, &other, &Settings::default()),
        Err(CompareError::Disjoint { base: 1, new: 1 })
    ));
}

#[test]
fn rows_without_identities_or_samples() {
    let old = r#"{"runId": "old", "benchmarks": [{"node": "n", "gpu": 0, "metric": "triad"}]}"#;
    let e = parse(Path::new("r/results.json"), old).expect_err("no id");
    assert_eq!(
        e.to_string(),
        "r/results.json: not a gpuconform results.json (benchmarks[0] has no `id` (written by a gpuconform before stable identities))"
    );
    assert!(parse(Path::new("x"), "[]").is_err());
}

/// Two bench documents of one machine (scripts/gpu-check runs the bench twice): the same GPUs,
/// every benchmark the same.
#[test]
fn bench_documents_compare_gpu_by_gpu() {
    let table = crate::bench::model::PerfTable::embedded().expect("table");
    let doc = crate::bench::model::simulate(&crate::bench::model::Simulation {
        model_key: "H200-SXM-141GB",
        model: &table.models["H200-SXM-141GB"],
        device_name: "NVIDIA H200".into(),
        gpus: 1,
        node: "h200".into(),
        slow: Default::default(),
        driver_version: "580.95.05".into(),
        repetitions: 20,
        mig: None,
    });
    let text = format!(
        "table line\n{}\n",
        serde_json::to_string(&doc).expect("json")
    );
    let a = parse(Path::new("bench.json"), &text).expect("bench document");
    assert_eq!(a.series.len(), 8, "{:?}", a.series.keys());
    assert!(a.series.contains_key("bench/NVIDIA-H200/gpu0/triad"));
    let c = compare(&a, &a, &Settings::default()).expect("comparable");
    assert!(c.rows.iter().all(|r| r.verdict == Verdict::Same), "{c:?}");
}

fn with_environment(run: &str, power: &str, cublas: &str) -> Run {
    let samples: Vec<f64> = (0..20).map(|k| 19.5 + 0.01 * f64::from(k % 5)).collect();
    let text = serde_json::json!({
        "runId": run, "startedAt": "2026-12-01T00:00:00Z", "cases": [],
        "benchmarks": [{
            "id": "p4d.24xlarge/A100-SXM4-40GB/gpu0/sgemm", "unit": "TFLOPS", "samples": samples,
            "device": A100, "simulated": false, "driverVersion": "580.95.05",
            "hardware": {"power limit": power, "ECC": "on", "PCIe link": "gen4 x16"},
            "software": {"driver": "580.95.05", "cuBLAS": cublas},
        }],
    })
    .to_string();
    parse(Path::new("results.json"), &text).expect("parses")
}

#[test]
fn a_configuration_difference_is_refused_and_a_software_one_named() {
    let base = with_environment("base", "400 W", "12.4.5");
    let upgraded = with_environment("new", "400 W", "12.9.1");
    let c = compare(&base, &upgraded, &Settings::default()).expect("same hardware");
    assert_eq!(
        c.warnings,
        ["p4d.24xlarge/A100-SXM4-40GB: cuBLAS 12.4.5 in base, 12.9.1 in new"]
    );
    assert_eq!(c.rows[0].verdict, Verdict::Same);
    // A power cap changes what the numbers can be: refused, naming the setting.
    let capped = with_environment("capped", "250 W", "12.4.5");
    match compare(&base, &capped, &Settings::default()) {
        Err(CompareError::Hardware(why)) => assert!(
            why.contains("gpu0/sgemm: power limit 400 W in base, 250 W in capped"),
            "{why}"
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn bench_documents_carry_their_fingerprint() {
    let doc = |ecc: bool, nvrtc: &str| {
        let samples: Vec<f64> = (0..12).map(|k| 4400.0 + f64::from(k)).collect();
        serde_json::json!({
            "schemaVersion": 1, "driverVersion": "580.95.05", "cudaVersion": "13.0",
            "nvrtcVersion": nvrtc, "simulated": false,
            "gpus": [{
                "device": {"index": 0, "name": "NVIDIA H200"},
                "measurements": [{"metric": "triad", "unit": "GB/s", "sampleValues": samples}],
                "fingerprint": {"ecc": ecc, "maxSmClockMhz": 1980, "persistence": true},
            }],
        })
        .to_string()
    };
    let read = |name: &str, text: String| parse(Path::new(name), &text).expect("parses");
    let first = read("first.json", doc(true, "12.4"));
    let again = read("again.json", doc(true, "12.8"));
    let c = compare(&first, &again, &Settings::default()).expect("comparable");
    assert_eq!(
        c.warnings,
        ["bench/NVIDIA-H200/gpu0: NVRTC 12.4 in first.json, 12.8 in again.json"]
    );
    let no_ecc = read("no-ecc.json", doc(false, "12.4"));
    match compare(&first, &no_ecc, &Settings::default()) {
        Err(CompareError::Hardware(why)) => {
            assert!(
                why.contains("ECC on in first.json, off in no-ecc.json"),
                "{why}"
            );
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
}
