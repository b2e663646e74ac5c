//! Tier 1: the metrics of a fixed record (golden), label escaping, and the last-success
//! timestamp carried forward by a failed run.

use super::*;
use crate::report::bench::BenchRow;

fn record() -> RunRecord {
    let mut r = crate::report::tests::sample();
    r.benchmarks.push(BenchRow {
        id: "gpu-worker/V100-SXM2-16GB/gpu0/triad".into(),
        node: "gpu-worker-1".into(),
        instance_type: "p3.2xlarge".into(),
        gpu: 0,
        model: "V100-SXM2-16GB".into(),
        metric: "triad".into(),
        unit: "GB/s".into(),
        median: 812.5,
        p5: 800.0,
        p95: 820.0,
        cv: 0.01,
        floor: Some(630.0),
        peak: Some(900.0),
        simulated: true,
        verified: true,
        device: "Tesla V100-SXM2-16GB".into(),
        uuid: "GPU-0".into(),
        driver_version: "580.95.05".into(),
        samples: vec![812.5],
        hardware: Default::default(),
        software: Default::default(),
    });
    r
}

#[test]
fn render_is_golden() {
    let got = render(&record(), 1, 1_796_040_000.0, Some(1_795_953_600.0));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/metrics.prom");
    if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(path).expect("tests/golden/metrics.prom");
    assert_eq!(
        got, want,
        "GPUCONFORM_UPDATE_GOLDEN=1 rewrites the golden file"
    );
}

#[test]
fn each_family_is_declared_once_before_its_samples() {
    let text = render(&record(), 0, 10.0, None);
    let mut declared = std::collections::BTreeSet::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let name = rest.split(' ').next().expect("name");
            assert!(declared.insert(name.to_string()), "{name} declared twice");
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().expect("name");
            assert!(declared.contains(name), "{name} sampled before its TYPE");
        }
    }
    assert!(text.contains("gpuconform_run_success{plan=\"local\"} 1\n"));
    assert!(text.contains("gpuconform_last_success_timestamp_seconds{plan=\"local\"} 10\n"));
}

#[test]
fn label_values_are_escaped() {
    assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    let mut r = record();
    r.cases[1].name = "labels/\"odd\"\nnode".into();
    let text = render(&r, 1, 10.0, None);
    assert!(
        text.contains("testcase=\"labels/\\\"odd\\\"\\nnode\""),
        "{text}"
    );
    assert_eq!(number(42.0), "42");
    assert_eq!(number(0.25), "0.25");
    assert_eq!(number(f64::NAN), "NaN");
}

/// A failed run keeps the newest success's time; without one there is no series (an alert on
/// `absent()` or on its age then fires); a passing run sets it to its own end.
#[test]
fn a_failed_run_carries_the_last_success_forward() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("gpuconform.prom");
    let mut r = record();
    write(&path, &r, 1).expect("write");
    let first = std::fs::read_to_string(&path).expect("read");
    assert_eq!(previous_success(&first, "local"), None, "{first}");
    assert!(!first.contains(LAST_SUCCESS));
    r.exit_code = 0;
    write(&path, &r, 0).expect("write");
    let passed = std::fs::read_to_string(&path).expect("read");
    let t = previous_success(&passed, "local").expect("set by a passing run");
    assert!(t > 1_700_000_000.0, "{t}");
    write(&path, &r, 5).expect("write");
    let failed = std::fs::read_to_string(&path).expect("read");
    assert_eq!(previous_success(&failed, "local"), Some(t));
    assert!(failed.contains("gpuconform_run_success{plan=\"local\"} 0\n"));
    assert!(failed.contains("gpuconform_run_exit_code{plan=\"local\"} 5\n"));
    // Another plan's file says nothing about this one.
    assert_eq!(previous_success(&failed, "nightly"), None);
    // Nothing but the file is left in the folder (the temporary file was renamed).
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("gpuconform.prom")]);
}
