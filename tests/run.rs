//! Tier 2: `gpuconform run` end to end on the local cluster — the default plan, each fault
//! fixture, SIGINT in the middle of the suites, malformed plans — through the real binary, with
//! the JUnit read back by an independent reader (Python's junitparser).

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A plan for `fixture` with short timeouts, written into `dir`.
fn plan(dir: &Path, name: &str, fixture: &str, install: &str, step: &str) -> PathBuf {
    let text = std::fs::read_to_string(root().join("plans/local.yaml")).expect("default plan");
    let text = text
        .replace("fixtures/clusters/seed.yaml", fixture)
        .replace("name: local", &format!("name: {name}"))
        .replace("install: 300s", &format!("install: {install}"))
        .replace("step: 120s", &format!("step: {step}"));
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, text).expect("write plan");
    path
}

/// The default plan pointed at an existing cluster (`kubeconfig` target), renamed `name`, with
/// `edit` applied, written into `dir`.
fn existing_plan(
    dir: &Path,
    kubeconfig: &Path,
    name: &str,
    edit: impl FnOnce(String) -> String,
) -> PathBuf {
    let text = std::fs::read_to_string(root().join("plans/local.yaml"))
        .expect("default plan")
        .replace(
            "  local:\n    fixture: fixtures/clusters/seed.yaml\n",
            &format!("  kubeconfig:\n    path: {}\n", kubeconfig.display()),
        )
        .replace("name: local", &format!("name: {name}"));
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, edit(text)).expect("write plan");
    path
}

/// `(suite/name, status, message)` of every case.
fn cases(r: &serde_json::Value) -> Vec<(String, String, String)> {
    r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            (
                format!(
                    "{}/{}",
                    c["suite"].as_str().unwrap_or(""),
                    c["name"].as_str().unwrap_or("")
                ),
                c["status"].as_str().unwrap_or("").to_string(),
                c["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Runs `script` on `path` with the test venv's Python; its stdout. `reader` (the Python
/// package doing the reading) names who refused the file.
fn venv_python(script: &str, path: &Path, reader: &str) -> String {
    let python = tools_dir().join("venv/bin/python");
    assert!(
        python.is_file(),
        "no test venv at {}: run scripts/install-tools",
        python.display()
    );
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{reader} rejected {}:\n{}",
        path.display(),
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// Reads junit.xml with junitparser and checks what CI reporters rely on; returns
/// `(tests, failures, errors, skipped)` as junitparser counts them.
fn junitparser(path: &Path) -> (u64, u64, u64, u64) {
    let script = r#"
import sys
from junitparser import JUnitXml, Failure, Error, Skipped
xml = JUnitXml.fromfile(sys.argv[1])
tests = failures = errors = skipped = 0
for suite in xml:
    assert suite.name, "testsuite without name"
    float(suite.time)
    names = set()
    n = f = e = s = 0
    for case in suite:
        assert case.classname == suite.name, (case.classname, suite.name)
        assert case.name not in names, "duplicate testcase " + case.name
        names.add(case.name)
        float(case.time)
        n += 1
        for r in case.result:
            if isinstance(r, Failure): f += 1
            elif isinstance(r, Error): e += 1
            elif isinstance(r, Skipped): s += 1
    assert (suite.tests, suite.failures, suite.errors) == (n, f, e), (suite.name, suite.tests, n, suite.failures, f, suite.errors, e)
    # Each testcase carries its share of its step's time: they add up to the suite's.
    total = sum(float(case.time) for case in suite)
    assert abs(total - float(suite.time)) <= 0.001 * max(1, n), (suite.name, total, suite.time)
    tests += n; failures += f; errors += e; skipped += s
print(tests, failures, errors, skipped)
"#;
    let nums: Vec<u64> = venv_python(script, path, "junitparser")
        .split_whitespace()
        .map(|n| n.parse().expect("number"))
        .collect();
    (nums[0], nums[1], nums[2], nums[3])
}

/// Validates a JUnit file with lxml against the strict schema Jenkins' xUnit plugin uses
/// (`tests/data/junit/junit-10.xsd`, vendored with its source and licence).
fn strict_junit(path: &Path) {
    let script = format!(
        r#"
import sys
from lxml import etree
schema = etree.XMLSchema(etree.parse({xsd:?}))
doc = etree.parse(sys.argv[1])
if not schema.validate(doc):
    sys.exit("\n".join(str(e) for e in schema.error_log))
"#,
        xsd = root()
            .join("tests/data/junit/junit-10.xsd")
            .display()
            .to_string()
    );
    venv_python(&script, path, "the strict JUnit schema (lxml)");
}

/// Every sample of a Prometheus text file as `(name, "k=v,k=v", value)`, parsed by
/// prometheus-client (the Python client's own parser), which refuses malformed files.
fn prometheus_samples(path: &Path) -> Vec<(String, String, f64)> {
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families
for family in text_string_to_metric_families(open(sys.argv[1]).read()):
    assert family.type == "gauge", (family.name, family.type)
    for s in family.samples:
        labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
        print(s.name, labels, repr(s.value), sep="\t")
"#;
    venv_python(script, path, "prometheus-client")
        .lines()
        .map(|l| {
            let mut f = l.split('\t');
            let name = f.next().expect("name").to_string();
            let labels = f.next().expect("labels").to_string();
            let value = f.next().expect("value").parse().expect("a number");
            (name, labels, value)
        })
        .collect()
}

/// Each line of an events file validated by jsonschema against `schemas/events.schema.json`,
/// `seq` counting from 1; the lines' types in order.
fn events_types(path: &Path) -> Vec<String> {
    let script = format!(
        r#"
import json, sys
from jsonschema import Draft202012Validator
schema = json.load(open({schema:?}))
Draft202012Validator.check_schema(schema)
v = Draft202012Validator(schema)
for i, line in enumerate(open(sys.argv[1]), 1):
    e = json.loads(line)
    v.validate(e)
    assert e["seq"] == i, (e["seq"], i)
    print(e["type"])
"#,
        schema = root()
            .join("schemas/events.schema.json")
            .display()
            .to_string()
    );
    venv_python(&script, path, "jsonschema")
        .lines()
        .map(str::to_string)
        .collect()
}

/// The default plan: every testcase passes, reports are written, exit 0, teardown verified.
#[test]
fn default_plan_passes_with_reports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    let step_summary = tmp.path().join("step-summary.md");
    let metrics = tmp.path().join("gpuconform.prom");
    let events = tmp.path().join("events.jsonl");
    let out = Command::new(bin())
        .args(["run", "--reports", &reports.to_string_lossy()])
        .arg("--metrics")
        .arg(&metrics)
        .arg("--events")
        .arg(&events)
        .current_dir(root())
        .env("GPUCONFORM_TOOLS", tools_dir())
        .env("GITHUB_STEP_SUMMARY", &step_summary)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = run_dir(&reports);
    let appended = std::fs::read_to_string(&step_summary).expect("GITHUB_STEP_SUMMARY written");
    assert!(appended.contains("— passed"), "{appended}");
    for f in [
        "junit.xml",
        "results.json",
        "summary.md",
        "operator-values.yaml",
        "cluster-logs/kube-apiserver.log",
    ] {
        assert!(dir.join(f).is_file(), "{f} missing in {}", dir.display());
    }
    // The cluster's keys and kubeconfigs lived outside the reports and are gone with it.
    assert_no_credentials(&dir, &[]);
    let id = dir.file_name().and_then(|n| n.to_str()).expect("run id");
    let state = gpuconform::target::state_dir(id);
    assert!(!state.exists(), "state left: {}", state.display());
    let r = results(&dir);
    assert_eq!(r["schemaVersion"], 1);
    assert_eq!(r["exitCode"], 0);
    assert_eq!(r["driverVersion"], "580.95.05");
    let all = cases(&r);
    let names: BTreeSet<&str> = all.iter().map(|(n, _, _)| n.as_str()).collect();
    for want in [
        "gpu-stack/operator/clusterpolicy",
        "gpu-stack/labels/gpu-worker-1",
        "gpu-stack/allocatable/gpu-worker-1",
        "gpu-stack/workload/gpu-worker-1",
        "throughput/bench/gpu-worker-1",
        "throughput/bench/gpu-worker-1/gpu0/triad",
        "throughput/bench/gpu-worker-1/gpu0/straggler",
        "teardown/uninstall",
        "teardown/verified-empty/crd/clusterpolicies.nvidia.com",
        "teardown/verified-empty/gpu-worker-1",
    ] {
        assert!(names.contains(want), "{want} missing: {names:#?}");
    }
    for (n, s, m) in &all {
        assert_eq!(s, "passed", "{n}: {m}");
    }
    let (tests, failures, errors, _) = junitparser(&dir.join("junit.xml"));
    assert_eq!((failures, errors), (0, 0));
    strict_junit(&dir.join("junit.xml"));
    assert_eq!(
        tests as usize,
        all.len() + r["phases"].as_array().map_or(0, Vec::len)
    );
    let summary = std::fs::read_to_string(dir.join("summary.md")).expect("summary");
    assert!(summary.contains("— passed"), "{summary}");
    assert!(summary.contains("## Throughput (simulated)"), "{summary}");
    let bmf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("bench.json")).expect("bench.json"))
            .expect("BMF is JSON");
    // Named by the node's pool and model, not its name; simulated numbers are marked so.
    let triad = &bmf["gpu-worker/V100-SXM2-16GB/gpu0/triad@simulated"]["throughput-gb-s"];
    assert!(triad["value"].as_f64().is_some_and(|v| v > 630.0), "{bmf}");
    assert!(triad["lower_value"].as_f64() <= triad["value"].as_f64());
    // The metrics file, read back by Prometheus' own Python client's text parser.
    let families = prometheus_samples(&metrics);
    let one = |name: &str, labels: &str| -> f64 {
        families
            .iter()
            .find(|(n, l, _)| n == name && l.contains(labels))
            .unwrap_or_else(|| panic!("{name} {labels} missing: {families:#?}"))
            .2
    };
    assert_eq!(one("gpuconform_run_success", "plan=local"), 1.0);
    assert_eq!(one("gpuconform_run_exit_code", "plan=local"), 0.0);
    assert_eq!(
        one("gpuconform_testcases", "status=passed") as usize,
        all.len()
    );
    assert!(one("gpuconform_last_success_timestamp_seconds", "plan=local") > 1.7e9);
    assert!(one("gpuconform_bench_median", "metric=triad") > 630.0);
    assert_eq!(
        families
            .iter()
            .filter(|(n, _, _)| n == "gpuconform_testcase_status")
            .count(),
        all.len()
    );
    // The events file: every line valid against the shipped schema (jsonschema), in order.
    let kinds = events_types(&events);
    assert_eq!(kinds.first().map(String::as_str), Some("run_started"));
    // The last line says where the reports went, right after the run's end.
    assert_eq!(
        kinds
            .iter()
            .rev()
            .take(2)
            .map(String::as_str)
            .collect::<Vec<_>>(),
        ["note", "run_finished"]
    );
    assert_eq!(kinds.iter().filter(|k| *k == "case").count(), all.len());
    assert!(kinds.iter().any(|k| k == "bench"), "{kinds:?}");
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    // One chart per metric the V100 has: copy, triad, FMA, SGEMM, FP16 GEMM, H2D, D2H.
    assert_eq!(html.matches("<svg").count(), 7, "one chart per metric");
    assert!(
        live_processes_of_run(&dir).is_empty(),
        "processes left: {:?}",
        live_processes_of_run(&dir)
    );
}

/// What the slow GPU 3 of the p4d fixture fails: every metric, the straggler check, and every
/// peer link it is on.
const SLOW_GPU3: &[&str] = &[
    "throughput/bench/gpu-worker-1/gpu3/copy",
    "throughput/bench/gpu-worker-1/gpu3/triad",
    "throughput/bench/gpu-worker-1/gpu3/fp32Fma",
    "throughput/bench/gpu-worker-1/gpu3/sgemm",
    "throughput/bench/gpu-worker-1/gpu3/fp16Gemm",
    "throughput/bench/gpu-worker-1/gpu3/bf16Gemm",
    "throughput/bench/gpu-worker-1/gpu3/h2d",
    "throughput/bench/gpu-worker-1/gpu3/d2h",
    "throughput/bench/gpu-worker-1/gpu3/straggler",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu0",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu1",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu2",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu4",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu5",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu6",
    "throughput/bench/gpu-worker-1/peer/gpu3-gpu7",
    "throughput/bench/gpu-worker-1/peer/gpu0-gpu3",
    "throughput/bench/gpu-worker-1/peer/gpu1-gpu3",
    "throughput/bench/gpu-worker-1/peer/gpu2-gpu3",
    "throughput/bench/gpu-worker-1/peer/gpu4-gpu3",
    "throughput/bench/gpu-worker-1/peer/gpu5-gpu3",
    "throughput/bench/gpu-worker-1/peer/gpu6-gpu3",
    "throughput/bench/gpu-worker-1/peer/gpu7-gpu3",
];

/// Each fault fixture fails exactly its testcases, with messages naming node, observed and
/// expected values; everything else keeps its status; exit 1; teardown still ran.
#[test]
fn fault_fixtures_fail_exactly_their_testcase() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let expectations: &[(&str, &[&str], &str)] = &[
        (
            "missing-label",
            &["gpu-stack/labels/gpu-worker-1"],
            "gpu-worker-1: nvidia.com/gpu.product is missing, expected \"Tesla-V100-SXM2-16GB\"",
        ),
        (
            "count-mismatch",
            &["gpu-stack/labels/gpu-worker-1"],
            "gpu-worker-1: nvidia.com/gpu.count is \"0\", expected \"1\" (p3.2xlarge: 1× Tesla-V100-SXM2-16GB)",
        ),
        (
            "allocatable-zero",
            // Nothing left to measure: the throughput suite checked nothing and says so.
            &[
                "gpu-stack/allocatable/gpu-worker-1",
                "throughput/nothing-checked",
            ],
            "gpu-worker-1: allocatable nvidia.com/gpu is \"0\", expected \"1\"",
        ),
        (
            "crash-loop",
            &[
                "gpu-stack/operator/clusterpolicy",
                "gpu-stack/operator/daemonset/nvidia-dcgm-exporter",
                "gpu-stack/operator/restarts/gpu-worker-1",
            ],
            "gpu-worker-1: container nvidia-dcgm-exporter of nvidia-dcgm-exporter-",
        ),
        (
            "policy-not-ready",
            &["gpu-stack/operator/clusterpolicy"],
            "state is \"notReady\", expected \"ready\" (DriverNotReady",
        ),
        (
            "leftovers",
            &["teardown/verified-empty/gpu-worker-1"],
            "gpu-worker-1: feature labels left after uninstall",
        ),
        (
            "slow-gpu",
            SLOW_GPU3,
            "gpu-worker-1 gpu3: triad is 758.4 GB/s, expected at least 1088.5 GB/s (70% of the NVIDIA-A100-SXM4-40GB peak 1555",
        ),
        (
            "bench-crash",
            &["throughput/bench/gpu-worker-1"],
            "gpu-worker-1: the bench pod failed with exit code 139",
        ),
        (
            // Exit 1 with a complete document: the other 63 measurements keep their verdicts.
            "wrong-result",
            &["throughput/bench/gpu-worker-1/gpu3/sgemm"],
            "gpu-worker-1 gpu3: sgemm produced a wrong result",
        ),
        (
            // Exit 4, a partial document: the metric that failed and its error, nothing else.
            "bench-error",
            &[
                "throughput/bench/gpu-worker-1/gpu5/errors",
                "throughput/bench/gpu-worker-1/gpu5/fp16Gemm",
            ],
            "gpu-worker-1 gpu5: fp16Gemm: CUDA_ERROR_LAUNCH_FAILED",
        ),
    ];
    // Three clusters at a time.
    for batch in expectations.chunks(3) {
        let children: Vec<_> = batch
            .iter()
            .map(|(name, _, _)| {
                let p = plan(
                    tmp.path(),
                    name,
                    &format!("fixtures/clusters/faults/{name}.yaml"),
                    "25s",
                    "15s",
                );
                let reports = tmp.path().join(format!("reports-{name}"));
                let child = run_command(&p, &reports)
                    .stdout(Stdio::piped())
                    .stderr(Stdio::piped())
                    .spawn()
                    .expect("spawn run");
                (reports, child)
            })
            .collect();
        for ((name, failing, message), (reports, child)) in batch.iter().zip(children) {
            let out = child.wait_with_output().expect("wait");
            assert_eq!(out.status.code(), Some(1), "{name}: {}", text(&out));
            let dir = run_dir(&reports);
            let all = cases(&results(&dir));
            let failed: BTreeSet<&str> = all
                .iter()
                .filter(|(_, s, _)| s == "failed" || s == "error")
                .map(|(n, _, _)| n.as_str())
                .collect();
            let want: BTreeSet<&str> = failing.iter().copied().collect();
            assert_eq!(failed, want, "{name}: wrong testcases failed:\n{all:#?}");
            assert!(
                all.iter()
                    .any(|(n, _, m)| want.contains(n.as_str()) && m.contains(message)),
                "{name}: no failure message containing `{message}`:\n{all:#?}"
            );
            for (n, s, m) in &all {
                if want.contains(n.as_str()) {
                    continue;
                }
                let skipped_ok = *name == "allocatable-zero"
                    && (n == "gpu-stack/workload/gpu-worker-1"
                        || n == "throughput/bench/gpu-worker-1");
                let expected = if skipped_ok { "skipped" } else { "passed" };
                assert_eq!(s, expected, "{name}: {n} changed status ({m})");
            }
            // Failures come with diagnostics; teardown ran.
            let r = results(&dir);
            // The first 20 failures of a run have them; later ones say why they have none.
            let failed: Vec<&serde_json::Value> = r["cases"]
                .as_array()
                .expect("cases")
                .iter()
                .filter(|c| c["status"] == "failed")
                // A suite's summary case describes its skipped cases, not the cluster.
                .filter(|c| c["name"] != "nothing-checked")
                .collect();
            for (i, c) in failed.iter().enumerate() {
                let has = c["diagnostics"].as_array().is_some_and(|d| {
                    d.iter().any(|p| {
                        dir.join(p.as_str().unwrap_or(""))
                            .join("events.txt")
                            .is_file()
                    })
                });
                if i < 20 {
                    assert!(
                        has,
                        "{name}: failed testcase {} without diagnostics",
                        c["name"]
                    );
                } else {
                    assert!(
                        !has && c["detail"]
                            .as_str()
                            .is_some_and(|d| d.contains("no diagnostics")),
                        "{name}: failure {} past the cap: {}",
                        i + 1,
                        c["name"]
                    );
                }
            }
            let teardown = r["phases"]
                .as_array()
                .expect("phases")
                .iter()
                .find(|p| p["name"] == "teardown")
                .expect("teardown phase");
            assert_eq!(teardown["ok"], true, "{name}: {teardown}");
            let (_, failures, _, _) = junitparser(&dir.join("junit.xml"));
            assert_eq!(failures as usize, want.len(), "{name}");
            assert!(
                live_processes_of_run(&dir).is_empty(),
                "{name}: processes left"
            );
        }
    }
}

/// A fixture of `n` GPU nodes whose GFD never publishes `nvidia.com/gpu.product`: the labels
/// check fails on every one of them (a cluster-wide outage), written into `dir`.
fn every_node_fails(dir: &Path, n: usize) -> PathBuf {
    let base = std::fs::read_to_string(root().join("fixtures/clusters/faults/missing-label.yaml"))
        .expect("fixture");
    let head = &base[..base.find("faults:").expect("faults")];
    let mut text = head.replace("name: missing-label", "name: outage").replace(
        "    instanceType: p3.2xlarge\n    count: 1",
        &format!("    instanceType: p3.2xlarge\n    count: {n}"),
    );
    text.push_str("faults:\n");
    for i in 1..=n {
        text.push_str(&format!(
            "  - kind: missingLabel\n    node: gpu-worker-{i}\n    label: nvidia.com/gpu.product\n"
        ));
    }
    let path = dir.join("outage-fixture.yaml");
    std::fs::write(&path, text).expect("write fixture");
    path
}

/// Cancels a run the way GitHub Actions does once `trigger` shows on stderr: SIGINT, then
/// SIGTERM `term_after` later (GitHub: 7.5 s; or `None`: as soon as teardown starts, to send it
/// into teardown for sure). Returns the exit status, the seconds from SIGINT to the start of
/// teardown and to the exit, and what stderr said.
fn cancel_like_ci(
    mut cmd: Command,
    trigger: &str,
    term_after: Option<Duration>,
) -> (std::process::ExitStatus, f64, f64, String) {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn run");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<(Instant, String)>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    let mut seen = String::new();
    let started = Instant::now();
    loop {
        let (_, line) = rx
            .recv_timeout(Duration::from_secs(180))
            .unwrap_or_else(|_| panic!("`{trigger}` never showed:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains(trigger) {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(240), "{seen}");
    }
    // SIGTERM goes after `term_after`, or as soon as a line says teardown started.
    let mut lines = Vec::new();
    let cancelled = common::cancel_like_ci(
        &mut child,
        |since| {
            lines.extend(rx.try_iter());
            match term_after {
                Some(d) => since >= d,
                None => lines
                    .iter()
                    .any(|(_, l): &(Instant, String)| l.contains("teardown")),
            }
        },
        // The runner kills the tree 2.5 s after SIGTERM; give the test a wide margin.
        Duration::from_secs(60),
    );
    lines.extend(rx.try_iter());
    let mut teardown = None;
    for (at, line) in &lines {
        seen.push_str(line);
        seen.push('\n');
        if let (None, Some((_, sigint, _))) = (teardown, &cancelled)
            && line.contains("teardown")
        {
            teardown = Some(at.saturating_duration_since(*sigint).as_secs_f64());
        }
    }
    let Some((status, _, exited)) = cancelled else {
        panic!("still running a minute after SIGINT:\n{seen}");
    };
    while let Ok((_, line)) = rx.recv_timeout(Duration::from_millis(200)) {
        seen.push_str(&line);
        seen.push('\n');
    }
    (status, teardown.unwrap_or(f64::NAN), exited, seen)
}

/// After a CI-style cancel: exit 130, teardown complete (the SIGTERM did not abort it), the
/// reports written and valid JUnit, no process of the run left.
fn assert_cancelled_cleanly(reports: &Path, status: std::process::ExitStatus, seen: &str) {
    assert_eq!(status.code(), Some(130), "{seen}");
    let dir = run_dir(reports);
    let r = results(&dir);
    assert_eq!(r["interrupted"], true, "{seen}");
    assert_eq!(r["finished"], true, "{seen}");
    assert_eq!(r["exitCode"], 130);
    let teardown = r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "teardown")
        .expect("teardown phase");
    assert_eq!(teardown["ok"], true, "{teardown}\n{seen}");
    let all = cases(&r);
    assert!(
        all.iter()
            .any(|(_, s, m)| s == "skipped" && m.contains("interrupted")),
        "{all:#?}"
    );
    junitparser(&dir.join("junit.xml"));
    assert!(
        live_processes_of_run(&dir).is_empty(),
        "processes left: {:?}",
        live_processes_of_run(&dir)
    );
}

/// GitHub Actions' cancel (SIGINT, SIGTERM 7.5 s later) during a check step that would wait
/// minutes, and a SIGINT during the diagnostics of a cluster-wide outage with the SIGTERM sent
/// into the teardown it started: the work stops at once, teardown runs to the end through the
/// SIGTERM, reports are written, nothing is left.
#[test]
// The measured times go to the test's output (`--nocapture`), for the notes.
#[allow(clippy::print_stderr)]
fn ci_cancel_during_a_step_or_diagnostics_tears_down_and_reports() {
    let tmp = tempfile::tempdir().expect("tempdir");
    // (a) The ClusterPolicy never gets ready here: the install stops waiting for it after 5 s,
    // then the operator step waits for its timeout.
    let p = plan(
        tmp.path(),
        "interrupted",
        "fixtures/clusters/faults/policy-not-ready.yaml",
        "5s",
        "120s",
    );
    let reports = tmp.path().join("reports-step");
    let (status, to_teardown, to_exit, seen) = cancel_like_ci(
        run_command(&p, &reports),
        "gpu-stack/operator (operator)",
        Some(Duration::from_millis(7500)),
    );
    eprintln!("during a step: teardown {to_teardown:.2} s and exit {to_exit:.2} s after SIGINT");
    assert_cancelled_cleanly(&reports, status, &seen);
    assert!(
        to_teardown < 5.0,
        "the step did not stop at once ({to_teardown:.2} s):\n{seen}"
    );

    // (b) Every node fails the labels check: SIGINT as its diagnostics start.
    let fixture = every_node_fails(tmp.path(), 24);
    let p = plan(
        tmp.path(),
        "outage",
        &fixture.to_string_lossy(),
        "300s",
        "15s",
    );
    let reports = tmp.path().join("reports-diagnostics");
    let (status, to_teardown, to_exit, seen) =
        cancel_like_ci(run_command(&p, &reports), "collecting diagnostics", None);
    eprintln!(
        "during diagnostics: teardown {to_teardown:.2} s and exit {to_exit:.2} s after SIGINT"
    );
    assert_cancelled_cleanly(&reports, status, &seen);
    assert!(
        to_teardown < 5.0,
        "diagnostics did not stop at once ({to_teardown:.2} s):\n{seen}"
    );
}

/// A malformed plan and suites: every error with file, line and field, exit 2, nothing started.
#[test]
fn malformed_plan_and_suites_are_rejected_before_anything_starts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let suites = tmp.path().join("suites");
    std::fs::create_dir(&suites).expect("mkdir");
    std::fs::write(
        suites.join("bad.yaml"),
        "name: bad\nsteps:\n  - name: a\n    check: labelz\n  - name: b\n    check: operator\n    needs: [zz]\n    with: {maxRestarts: -1}\n",
    )
    .expect("write suite");
    let p = tmp.path().join("plan.yaml");
    std::fs::write(
        &p,
        "name: bad-plan\ntarget:\n  local:\n    fixture: fixtures/clusters/seed.yaml\noperator:\n  chart: fixtures/charts/gpu-operator\nsuites: [bad]\n",
    )
    .expect("write plan");
    let reports = tmp.path().join("reports");
    let out = gpuconform(&[
        "run",
        &p.to_string_lossy(),
        "--suite-dir",
        &suites.to_string_lossy(),
        "--reports",
        &reports.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in [
        "bad.yaml:4:12: field `steps[0].check`: unknown check `labelz`",
        "bad.yaml:7:13: field `steps[1].needs[0]`: `zz` is not a step of this suite",
        "field `steps[1].with.maxRestarts`: must be a non-negative integer",
    ] {
        assert!(err.contains(want), "missing `{want}` in:\n{err}");
    }
    assert!(
        !reports.exists(),
        "a report folder was created for a bad plan"
    );

    std::fs::write(&p, "name: Bad_Plan\ntarget: {}\noperator:\n  chart: fixtures/charts/gpu-operator\nsuites: [gpu-stack]\n").expect("write");
    let out = gpuconform(&[
        "run",
        &p.to_string_lossy(),
        "--reports",
        &reports.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("plan.yaml:1:7: field `name`"),
        "{}",
        text(&out)
    );

    // Overrides: an error in a `--set` names the argument, one in an overlay its file and line.
    let overlay = tmp.path().join("overlay.yaml");
    std::fs::write(&overlay, "timeouts:\n  step: never\n").expect("write");
    let cases: [(&[&str], &str); 5] = [
        (
            &["--set", "timeouts.step=soon"],
            "--set timeouts.step=soon: field `timeouts.step`: `soon` is not a duration",
        ),
        (
            &["--set", "suites[7]=labels"],
            "--set suites[7]=labels: `suites[7]`: the list has 3 items",
        ),
        (
            &["--set", "suites[0]=labelz"],
            "--set suites[0]=labelz: field `suites[0]`: no suite `labelz`",
        ),
        (&["--set", "suitez=[labels]"], "--set suitez=[labels]"),
        (
            &["-f", &overlay.to_string_lossy()],
            "overlay.yaml:2:9: field `timeouts.step`: `never` is not a duration",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["run", "plans/local.yaml", "--reports"];
        let r = reports.to_string_lossy();
        all.push(&r);
        all.extend_from_slice(args);
        let out = gpuconform(&all);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{args:?}: missing `{want}` in:\n{err}");
    }
    assert!(
        !reports.exists(),
        "a report folder was created for a bad override"
    );

    // `lint` checks the shipped files cleanly and reports the bad suite's errors.
    let out = gpuconform(&["lint"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let out = gpuconform(&["lint", &suites.join("bad.yaml").to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr)
            .matches("error: ")
            .count(),
        3,
        "{}",
        text(&out)
    );
}

/// The `kubeconfig` target against an existing cluster (a local one started beforehand): the run
/// passes, tears down only what it created (release, namespaces), and leaves the cluster running.
#[test]
fn kubeconfig_target_uses_an_existing_cluster() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let cluster = tmp.path().join("cluster");
    let _down = DownOnDrop(cluster.clone());
    let up = gpuconform(&["local", "up", "--dir", &cluster.to_string_lossy()]);
    assert!(up.status.success(), "{}", text(&up));
    let kubeconfig = cluster.join("kubeconfig");
    let p = existing_plan(tmp.path(), &kubeconfig, "existing", |t| t);
    let reports = tmp.path().join("reports");
    let out = gpuconform(&[
        "run",
        &p.to_string_lossy(),
        "--reports",
        &reports.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = results(&run_dir(&reports));
    assert_eq!(r["cluster"], "127.0.0.1");
    // The cluster is still there and the run's namespaces are gone.
    let ns = kubectl(&kubeconfig, &["get", "namespaces", "-o", "name"]);
    assert!(ns.status.success(), "{}", text(&ns));
    let names = String::from_utf8_lossy(&ns.stdout);
    assert!(!names.contains("gpu-operator"), "{names}");
    assert!(!names.contains("gpuconform-"), "{names}");
}

fn helm(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(tool("helm"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .current_dir(root())
        .output()
        .expect("run helm")
}

/// What the owner of a cluster cares about after a run: the release (revision and values), its
/// namespace and CRD by UID, and the GPU node's labels.
fn owner_state(kubeconfig: &Path) -> (u64, serde_json::Value, String, String, String) {
    let list = helm(kubeconfig, &["list", "-n", "gpu-operator", "-o", "json"]);
    assert!(list.status.success(), "{}", text(&list));
    let list: serde_json::Value = serde_json::from_slice(&list.stdout).expect("helm list json");
    let rel = list
        .as_array()
        .and_then(|a| a.iter().find(|r| r["name"] == "gpu-operator"))
        .expect("release gpu-operator present");
    let revision = rel["revision"]
        .as_u64()
        .or_else(|| rel["revision"].as_str().and_then(|s| s.parse().ok()))
        .expect("revision");
    let values = helm(
        kubeconfig,
        &[
            "get",
            "values",
            "gpu-operator",
            "-n",
            "gpu-operator",
            "-o",
            "json",
        ],
    );
    assert!(values.status.success(), "{}", text(&values));
    let values: serde_json::Value = serde_json::from_slice(&values.stdout).expect("values json");
    let get = |args: &[&str]| {
        let out = kubectl(kubeconfig, args);
        assert!(out.status.success(), "{}", text(&out));
        String::from_utf8_lossy(&out.stdout).to_string()
    };
    let ns = get(&[
        "get",
        "namespace",
        "gpu-operator",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let crd = get(&[
        "get",
        "crd",
        "clusterpolicies.nvidia.com",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    let labels = get(&[
        "get",
        "node",
        "gpu-worker-1",
        "-o",
        "jsonpath={.metadata.labels}",
    ]);
    (revision, values, ns, crd, labels)
}

/// An operator installed by its owner with plain helm before any run: verify-only passes and
/// changes nothing; `install` refuses (exit 2) and changes nothing; `adopt: true` upgrades for
/// the run and rolls back to the owner's revision at teardown. Nothing of the owner's is removed.
/// A local cluster whose owner installed the operator chart with plain helm before any run,
/// settled (the ClusterPolicy ready, the GPU node labelled); its kubeconfig.
fn owned_cluster(dir: &Path) -> (DownOnDrop, PathBuf) {
    let cluster = dir.join("cluster");
    let down = DownOnDrop(cluster.clone());
    let up = gpuconform(&["local", "up", "--dir", &cluster.to_string_lossy()]);
    assert!(up.status.success(), "{}", text(&up));
    let kubeconfig = cluster.join("kubeconfig");
    let owner = helm(
        &kubeconfig,
        &[
            "install",
            "gpu-operator",
            "fixtures/charts/gpu-operator",
            "-n",
            "gpu-operator",
            "--create-namespace",
            "--set",
            "driver.version=580.95.05",
            "--set",
            "mig.strategy=single",
        ],
    );
    assert!(owner.status.success(), "{}", text(&owner));
    // Let the stack settle (the simulator labels the node once the operands are Ready).
    for args in [
        &[
            "wait",
            "clusterpolicy/cluster-policy",
            "--for=jsonpath={.status.state}=ready",
            "--timeout=120s",
        ][..],
        &[
            "wait",
            "node/gpu-worker-1",
            "--for=jsonpath={.metadata.labels.nvidia\\.com/gpu\\.count}=1",
            "--timeout=120s",
        ][..],
    ] {
        let out = kubectl(&kubeconfig, args);
        assert!(out.status.success(), "{}", text(&out));
    }
    (down, kubeconfig)
}

#[test]
fn a_preinstalled_operator_is_verified_refused_or_adopted_never_removed() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_down, kubeconfig) = owned_cluster(tmp.path());
    let before = owner_state(&kubeconfig);

    let plan_with = |name: &str, operator_extra: &str| {
        existing_plan(tmp.path(), &kubeconfig, name, |t| {
            t.replacen(
                "\noperator:\n",
                &format!("\noperator:\n{operator_extra}"),
                1,
            )
            .replace("  - throughput\n", "")
        })
    };
    // One reports folder per plan, so each run's folder is the only one in it.
    let reports_of = |p: &Path| {
        tmp.path()
            .join("reports")
            .join(p.file_stem().unwrap_or_default())
    };
    let run = |p: &Path| {
        gpuconform(&[
            "run",
            &p.to_string_lossy(),
            "--reports",
            &reports_of(p).to_string_lossy(),
        ])
    };

    // Verify-only: green, uninstall and teardown checks skipped with the reason, nothing changed.
    let verify = plan_with("verify", "  mode: existing\n");
    let out = run(&verify);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = results(&run_dir(&reports_of(&verify)));
    let all = cases(&r);
    let uninstall = all
        .iter()
        .find(|(n, _, _)| n == "teardown/uninstall")
        .expect("uninstall case");
    assert_eq!(uninstall.1, "skipped", "{all:#?}");
    assert!(uninstall.2.contains("verify-only"), "{uninstall:?}");
    assert!(
        all.iter()
            .filter(|(n, _, _)| n.starts_with("gpu-stack/"))
            .all(|(_, s, _)| s == "passed"),
        "{all:#?}"
    );
    assert_eq!(
        owner_state(&kubeconfig),
        before,
        "verify-only changed the owner's operator"
    );

    // A refused run: exit 2, the reason on stderr, nothing of the owner's changed.
    let refused = |p: &Path, says: &[&str]| {
        let out = run(p);
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        for s in says {
            assert!(err.contains(s), "{s} not in: {err}");
        }
        assert_eq!(
            owner_state(&kubeconfig),
            before,
            "{}: changed the owner's operator",
            p.display()
        );
    };

    // Verify-only, but of a release that is not there: refused, and the namespace that is
    // there (the owner's) is not the run's to delete.
    let missing = plan_with("missing", "  mode: existing\n");
    let text_plan = std::fs::read_to_string(&missing)
        .expect("plan")
        .replace("  release: gpu-operator\n", "  release: other\n");
    std::fs::write(&missing, text_plan).expect("write plan");
    refused(&missing, &["no release other"]);

    // Install over it: refused before anything changes.
    refused(
        &plan_with("install", ""),
        &["already exists", "operator.mode: existing"],
    );

    // Adopt: upgraded with the owner's values plus the plan's, then rolled back.
    let out = run(&plan_with("adopt", "  adopt: true\n"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let after = owner_state(&kubeconfig);
    assert_eq!(after.0, before.0 + 2, "one upgrade and one rollback");
    assert_eq!(after.1, before.1, "the owner's values are back");
    assert_eq!(
        (&after.2, &after.3),
        (&before.2, &before.3),
        "namespace and CRD kept"
    );
    let history = helm(
        &kubeconfig,
        &[
            "history",
            "gpu-operator",
            "-n",
            "gpu-operator",
            "-o",
            "json",
        ],
    );
    let history = String::from_utf8_lossy(&history.stdout);
    assert!(
        history.contains(&format!("Rollback to {}", before.0)),
        "{history}"
    );

    from_outside_the_repository(&kubeconfig);
}

/// From a folder outside the repository, with only what the binary has built in: `init` writes
/// a verify-only plan for the cluster (and will not overwrite it), which dry-runs and runs
/// green without changing the owner's operator; the built-in default plan dry-runs too.
fn from_outside_the_repository(kubeconfig: &Path) {
    let before = owner_state(kubeconfig);
    let outside = tempfile::tempdir().expect("tempdir");
    let cmd = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .current_dir(outside.path())
            .env("GPUCONFORM_TOOLS", tools_dir())
            .env("XDG_CACHE_HOME", outside.path().join("cache"))
            .output()
            .expect("run gpuconform")
    };
    let k = kubeconfig.to_string_lossy();
    let init = cmd(&["init", "--kubeconfig", &k]);
    assert_eq!(init.status.code(), Some(0), "{}", text(&init));
    let plan = std::fs::read_to_string(outside.path().join("gpuconform.yaml")).expect("plan");
    for want in [
        "CONFIRM BEFORE USE",
        "mode: existing",
        "release: \"gpu-operator\"",
        "the catalog expects 1× V100-SXM2-16GB",
    ] {
        assert!(plan.contains(want), "{want} not in:\n{plan}");
    }
    let again = cmd(&["init", "--kubeconfig", &k]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("--force"), "{}", text(&again));
    let dry = cmd(&["run", "gpuconform.yaml", "--dry-run"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let run = cmd(&["run", "gpuconform.yaml", "--reports", "reports"]);
    assert_eq!(run.status.code(), Some(0), "{}", text(&run));
    let r = results(&run_dir(&outside.path().join("reports")));
    let all = cases(&r);
    assert!(
        all.iter()
            .filter(|(n, _, _)| n.starts_with("gpu-stack/") || n.starts_with("throughput/"))
            .all(|(_, s, _)| s == "passed"),
        "{all:#?}"
    );
    assert!(
        all.iter()
            .any(|(n, _, _)| n.starts_with("throughput/bench/")),
        "{all:#?}"
    );
    assert_eq!(
        owner_state(kubeconfig),
        before,
        "init and its plan changed the operator"
    );
    let default = cmd(&["run", "--dry-run"]);
    assert_eq!(default.status.code(), Some(0), "{}", text(&default));
    assert!(
        text(&default).contains("gpuconform/builtin/"),
        "{}",
        text(&default)
    );
    let list = cmd(&["list", "-o", "json"]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    let v: serde_json::Value = serde_json::from_slice(&list.stdout).expect("list -o json");
    let files: Vec<&str> = v["suites"]
        .as_array()
        .expect("suites")
        .iter()
        .filter_map(|s| s["file"].as_str())
        .collect();
    assert!(
        files.contains(&"builtin:suites/gpu-stack.yaml"),
        "{files:?}"
    );
}

/// A kubeconfig for the ServiceAccount `gpuconform-tests/gpuconform`: the cluster's address and
/// CA from the admin kubeconfig, a token from the TokenRequest API.
fn service_account_kubeconfig(admin: &Path, out: &Path) {
    let token = kubectl(
        admin,
        &[
            "create",
            "token",
            "gpuconform",
            "-n",
            "gpuconform-tests",
            "--duration=1h",
        ],
    );
    assert!(token.status.success(), "{}", text(&token));
    let token = String::from_utf8_lossy(&token.stdout).trim().to_string();
    let view = kubectl(
        admin,
        &["config", "view", "--raw", "--minify", "-o", "json"],
    );
    assert!(view.status.success(), "{}", text(&view));
    let view: serde_json::Value = serde_json::from_slice(&view.stdout).expect("config json");
    let cluster = &view["clusters"][0]["cluster"];
    let kc = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": {
            "server": cluster["server"],
            "certificate-authority-data": cluster["certificate-authority-data"],
        }}],
        "users": [{"name": "gpuconform", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "local", "user": "gpuconform"}}],
        "current-context": "sa",
    });
    std::fs::write(out, kc.to_string()).expect("write kubeconfig");
}

/// The dry run's output with what differs between machines replaced (port, paths, versions).
fn normalized(out: &str, tmp: &Path) -> String {
    let mut s = out.replace(&tmp.to_string_lossy().to_string(), "TMP");
    for (prefix, label) in [
        ("https://127.0.0.1:", "https://127.0.0.1:PORT"),
        ("Kubernetes v", "Kubernetes VERSION"),
    ] {
        let mut out = String::new();
        let mut rest = s.as_str();
        while let Some(i) = rest.find(prefix) {
            out.push_str(&rest[..i]);
            out.push_str(label);
            let after = &rest[i + prefix.len()..];
            let end = after
                .find(|c: char| c == '/' || c.is_whitespace())
                .unwrap_or(after.len());
            rest = &after[end..];
        }
        out.push_str(rest);
        s = out;
    }
    s
}

/// Least privilege: a ServiceAccount bound only to deploy/rbac/verify-only.yaml runs a
/// verify-only plan to green (RBAC on, the test namespace enforcing `restricted`), and the dry
/// run says so (golden). With one rule removed, the dry run names the missing permission and the
/// run stops with it before changing anything (exit 3) instead of timing out in a check.
#[test]
fn the_shipped_verify_only_rbac_is_enough_and_a_missing_rule_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (_down, admin) = owned_cluster(tmp.path());
    let apply = kubectl(&admin, &["apply", "-f", "deploy/rbac/verify-only.yaml"]);
    assert!(apply.status.success(), "{}", text(&apply));
    // The namespace enforces `restricted`: a pod without its settings is refused, so the run's
    // passing pods below do meet the profile.
    let probe = kubectl(
        &admin,
        &[
            "run",
            "probe",
            "--image=registry.k8s.io/pause:3.10",
            "-n",
            "gpuconform-tests",
        ],
    );
    assert!(!probe.status.success(), "{}", text(&probe));
    assert!(
        text(&probe).contains("violates PodSecurity"),
        "{}",
        text(&probe)
    );

    let sa = tmp.path().join("sa-kubeconfig");
    service_account_kubeconfig(&admin, &sa);
    let before = owner_state(&admin);
    let plan = existing_plan(tmp.path(), &sa, "rbac", |t| {
        t.replacen("\noperator:\n", "\noperator:\n  mode: existing\n", 1)
            .replace("  - throughput\n", "")
    });
    let reports = tmp.path().join("reports");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "run",
            plan.to_str().expect("utf-8 path"),
            "--namespace",
            "gpuconform-tests",
        ];
        let r = reports.to_string_lossy().to_string();
        args.extend(["--reports", &r]);
        args.extend(extra);
        let out = gpuconform(&args);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
            text(&out),
        )
    };

    let (code, stdout, all) = run(&["--dry-run"]);
    assert_eq!(code, Some(0), "{all}");
    let got = normalized(&stdout, tmp.path());
    let golden = root().join("tests/golden/dry-run-rbac.txt");
    if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(&golden).expect("golden");
    assert_eq!(
        got,
        want,
        "GPUCONFORM_UPDATE_GOLDEN=1 rewrites {}",
        golden.display()
    );
    assert!(!reports.exists(), "a dry run writes no reports");

    let (code, _, all) = run(&[]);
    assert_eq!(code, Some(0), "{all}");
    assert_no_credentials(&reports, &[]);
    assert_eq!(
        owner_state(&admin),
        before,
        "verify-only changed the owner's operator"
    );
    let ns = kubectl(
        &admin,
        &["get", "namespace", "gpuconform-tests", "-o", "name"],
    );
    assert!(
        ns.status.success(),
        "the prepared test namespace was deleted: {}",
        text(&ns)
    );
    let left = kubectl(
        &admin,
        &[
            "get",
            "pods,jobs",
            "-n",
            "gpuconform-tests",
            "-l",
            "app.kubernetes.io/managed-by=gpuconform",
            "-o",
            "name",
        ],
    );
    assert!(left.status.success(), "{}", text(&left));
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "{}",
        text(&left)
    );

    // Someone else's pod holds the node's GPU: checks that need a free one skip the node with
    // the reason instead of waiting (the operator's own validator hangs there).
    let holder = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "gpu-holder", "namespace": "default"},
        "spec": {
            "nodeSelector": {"kubernetes.io/hostname": "gpu-worker-1"},
            "tolerations": [{"operator": "Exists"}],
            "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}}}],
        },
    });
    let holder_file = tmp.path().join("holder.json");
    std::fs::write(&holder_file, holder.to_string()).expect("write pod");
    let out = kubectl(&admin, &["apply", "-f", &holder_file.to_string_lossy()]);
    assert!(out.status.success(), "{}", text(&out));
    let out = kubectl(
        &admin,
        &[
            "wait",
            "pod/gpu-holder",
            "-n",
            "default",
            "--for=condition=Ready",
            "--timeout=60s",
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    std::fs::remove_dir_all(&reports).expect("clear reports");
    let (code, _, all) = run(&[]);
    assert_eq!(code, Some(0), "{all}");
    let r = results(&run_dir(&reports));
    let smoke = cases(&r)
        .into_iter()
        .find(|(n, _, _)| n.contains("workload") && n.ends_with("gpu-worker-1"))
        .expect("workload case of gpu-worker-1");
    assert_eq!(smoke.1, "skipped", "{smoke:?}");
    assert!(
        smoke.2.contains("1 of 1 GPUs are allocated to other pods"),
        "{smoke:?}"
    );
    let out = kubectl(
        &admin,
        &["delete", "pod", "gpu-holder", "-n", "default", "--wait"],
    );
    assert!(out.status.success(), "{}", text(&out));

    // Drop the Jobs rule of the test namespace's Role.
    let role = kubectl(
        &admin,
        &[
            "get",
            "role",
            "gpuconform-verify-tests",
            "-n",
            "gpuconform-tests",
            "-o",
            "json",
        ],
    );
    let role: serde_json::Value = serde_json::from_slice(&role.stdout).expect("role json");
    let idx = role["rules"]
        .as_array()
        .and_then(|r| r.iter().position(|x| x["resources"][0] == "jobs"))
        .expect("a jobs rule");
    let patch = format!(r#"[{{"op":"remove","path":"/rules/{idx}"}}]"#);
    let out = kubectl(
        &admin,
        &[
            "patch",
            "role",
            "gpuconform-verify-tests",
            "-n",
            "gpuconform-tests",
            "--type=json",
            "-p",
            &patch,
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let missing = "create batch/jobs (gpuconform-tests), for the workload check";
    let (code, stdout, all) = run(&["--dry-run"]);
    assert_eq!(code, Some(3), "{all}");
    assert!(stdout.contains("✗ create batch/jobs"), "{all}");
    assert!(stdout.contains(missing), "{all}");
    let (code, _, all) = run(&[]);
    assert_eq!(code, Some(3), "{all}");
    assert!(
        all.contains("missing permissions") && all.contains(missing),
        "{all}"
    );
    assert_eq!(
        owner_state(&admin),
        before,
        "a refused run changed the owner's operator"
    );
}

/// Plan `expect` entries through an overlay: one selects the GPU node by name and gives it its
/// model and count (it wins over the catalog, the checks pass on it), one selects no node and
/// fails by itself, naming the entry; nothing else fails.
#[test]
fn expect_entries_give_expectations_and_one_matching_nothing_fails() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let overlay = tmp.path().join("expect.yaml");
    std::fs::write(
        &overlay,
        "expect:\n  - select: {name: \"gpu-worker-*\"}\n    gpu: V100-SXM2-16GB\n    count: 1\n  - select: {matchLabels: {nvidia.com/gpu.machine: DGX-A100}}\n    gpu: V100-SXM2-16GB\n    count: 8\n",
    )
    .expect("write overlay");
    let reports = tmp.path().join("reports");
    let out = gpuconform(&[
        "run",
        "plans/local.yaml",
        "-f",
        &overlay.to_string_lossy(),
        "--set",
        "suites=[gpu-stack]",
        "--reports",
        &reports.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let r = results(&run_dir(&reports));
    let failed: Vec<(String, String, String)> = cases(&r)
        .into_iter()
        .filter(|(_, s, _)| s == "failed" || s == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].0, "gpu-nodes/discovery/expect[1]", "{failed:#?}");
    // Named where it is written: the overlay's line 5.
    assert!(failed[0].2.contains("expect[1] ("), "{failed:#?}");
    assert!(failed[0].2.contains("expect.yaml:5)"), "{failed:#?}");
    assert!(failed[0].2.contains("selects no node"), "{failed:#?}");
    let passed = cases(&r)
        .into_iter()
        .filter(|(n, s, _)| n.starts_with("gpu-stack/") && s == "passed")
        .count();
    assert!(passed > 0, "{r}");
}

/// On-prem pools and host drivers, three runs of `plans/onprem.yaml` side by side:
/// - two DGX nodes with no instance type and a host driver (535.129.03, while the chart says
///   580.95.05 and `driver.enabled=false`) get their expectation from the plan's `expect` entry:
///   labels and allocatable pass;
/// - the same cluster plus a pool of a type no map knows (GCE n1-standard-8 with a T4): that
///   node fails its discovery testcase by name and type, the DGX nodes still pass;
/// - an `expect[].driver` naming the chart's version instead of the host's: the labels check
///   fails on both DGX nodes, naming observed and expected driver;
/// - AKS- and GKE-shaped nodes (the default plan on `fixtures/clusters/aks-gke.yaml`) get their
///   expectation from the catalog's Azure and GKE maps and pass.
#[test]
fn onprem_pools_get_expectations_from_the_plan_and_host_drivers_are_checked() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = root().join("plans/onprem.yaml");
    let runs: [(&str, &[&str]); 4] = [
        ("right", &[]),
        (
            "new-pool",
            &[
                "--set",
                "target.local.fixture=fixtures/clusters/onprem-new-pool.yaml",
            ],
        ),
        (
            "wrong-driver",
            &[
                "--set",
                "expect[0].driver.version=580.95.05",
                "--set",
                "timeouts.step=10s",
            ],
        ),
        (
            "clouds",
            &[
                "--set",
                "target.local.fixture=fixtures/clusters/aks-gke.yaml",
                "--set",
                "expect=[]",
                // Maps merge, as in helm: drop the plan's branch, give a version.
                "--set",
                "expectDriver.branch=null",
                "--set",
                "expectDriver.version=550.54.15",
            ],
        ),
    ];
    let runs: Vec<(&str, Vec<String>)> = runs
        .iter()
        .map(|(name, args)| {
            let mut all = vec!["--set".to_string(), "suites=[gpu-stack]".to_string()];
            all.extend(args.iter().map(|a| a.to_string()));
            (*name, all)
        })
        .collect();
    let outcomes = side_by_side(tmp.path(), &plan, &runs);
    let failed = |c: &[(String, String, String)]| -> Vec<(String, String)> {
        c.iter()
            .filter(|(_, s, _)| s == "failed" || s == "error")
            .map(|(n, _, m)| (n.clone(), m.clone()))
            .collect()
    };
    let passed = |c: &[(String, String, String)], name: &str| {
        c.iter().any(|(n, s, _)| n == name && s == "passed")
    };

    // A green run in which the labels and allocatable cases of these nodes passed.
    let green = |i: usize, nodes: [&str; 2]| {
        let (code, c, out) = &outcomes[i];
        assert_eq!(*code, Some(0), "{out}");
        for node in nodes {
            for step in ["labels", "allocatable"] {
                let case = format!("gpu-stack/{step}/{node}");
                assert!(passed(c, &case), "{case} did not pass: {out}");
            }
        }
    };
    green(0, ["dgx-1", "dgx-2"]);

    let (code, c, out) = &outcomes[1];
    assert_eq!(*code, Some(1), "{out}");
    let f = failed(c);
    assert_eq!(f.len(), 1, "{f:#?}");
    assert_eq!(f[0].0, "gpu-nodes/discovery/t4-pool-1");
    assert!(
        f[0].1
            .contains("no expectation for node t4-pool-1: instance type n1-standard-8"),
        "{}",
        f[0].1
    );
    assert!(passed(c, "gpu-stack/labels/dgx-1") && passed(c, "gpu-stack/allocatable/dgx-2"));

    let (code, c, out) = &outcomes[2];
    assert_eq!(*code, Some(1), "{out}");
    let f = failed(c);
    let names: Vec<&str> = f.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        ["gpu-stack/labels/dgx-1", "gpu-stack/labels/dgx-2"],
        "{f:#?}"
    );
    for (n, m) in &f {
        let node = n.rsplit('/').next().unwrap_or_default();
        assert!(
            m.contains(&format!(
                "{node}: nvidia.com/cuda.driver-version.full is \"535.129.03\", expected \"580.95.05\" (expect[0].driver (--set expect[0].driver.version=580.95.05))"
            )),
            "{m}"
        );
    }

    green(3, ["nca100-1", "g2-1"]);
}

/// Teardown as real kubelets behave: allocatable drops at once, capacity may stay for the
/// kubelet's grace period. With the check's grace shortened to 4 s, a node whose capacity is
/// never released fails after it, naming node, resource and value; the same run's uninstall
/// and every other case pass. (The default plan's run shows the normal case: capacity drops
/// after the simulator's grace and teardown passes.)
#[test]
fn gpu_capacity_kept_past_the_grace_period_fails_teardown() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let suites = tmp.path().join("suites");
    std::fs::create_dir(&suites).expect("mkdir");
    for f in ["gpu-stack.yaml", "teardown.yaml"] {
        std::fs::copy(root().join("suites").join(f), suites.join(f)).expect("copy suite");
    }
    let teardown = std::fs::read_to_string(suites.join("teardown.yaml")).expect("read");
    let shortened = teardown.replace(
        "    check: teardown\n",
        "    check: teardown\n    timeout: 12s\n    with: {capacityGraceSeconds: 4}\n",
    );
    assert_ne!(shortened, teardown, "the teardown step");
    std::fs::write(suites.join("teardown.yaml"), shortened).expect("write");
    let p = plan(
        tmp.path(),
        "kept",
        "fixtures/clusters/faults/capacity-kept.yaml",
        "60s",
        "30s",
    );
    let reports = tmp.path().join("reports");
    let out = run_command(&p, &reports)
        .args(["--set", "suites=[gpu-stack, teardown]"])
        .arg("--suite-dir")
        .arg(&suites)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let c = cases(&results(&run_dir(&reports)));
    let failed: Vec<&(String, String, String)> = c
        .iter()
        .filter(|(_, s, _)| s == "failed" || s == "error")
        .collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].0, "teardown/verified-empty/gpu-worker-1");
    assert!(
        failed[0]
            .2
            .starts_with("gpu-worker-1: capacity nvidia.com/gpu is still 1 "),
        "{}",
        failed[0].2
    );
    assert!(
        c.iter()
            .any(|(n, s, _)| n == "teardown/uninstall" && s == "passed"),
        "{c:#?}"
    );
}

/// MIG layouts must be applied before the GPU checks judge a node: under the mixed strategy an
/// `all-balanced` p5 passes labels and runs one workload Job per MIG profile; a layout
/// mig-manager cannot apply (`all-1g.5gb` does not exist on an H100) fails the labels check
/// naming node, state and config, instead of passing on the whole GPUs left in place; and a
/// p4d with one unhealthy A100 under MIG single fails allocatable with the count the layout
/// and the catalog give (56), not the node's own.
#[test]
fn mig_layouts_must_be_applied_and_each_profile_runs_a_workload() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = root().join("plans/local.yaml");
    // (name, fixture, strategy, layout)
    let runs = [
        ("balanced", "p5-mig.yaml", "mixed", "all-balanced"),
        ("bad", "p5-mig.yaml", "mixed", "all-1g.5gb"),
        (
            "unhealthy",
            "faults/mig-gpu-unhealthy.yaml",
            "single",
            "all-1g.5gb",
        ),
    ];
    let runs: Vec<(&str, Vec<String>)> = runs
        .iter()
        .map(|(name, fixture, strategy, config)| {
            // The balanced layout is measured too: one bench pod per MIG profile.
            let suites = if *name == "balanced" {
                "suites=[gpu-stack,throughput]"
            } else {
                "suites=[gpu-stack]"
            };
            let sets = [
                suites.to_string(),
                format!("target.local.fixture=fixtures/clusters/{fixture}"),
                format!("operator.values.mig.strategy={strategy}"),
                format!("operator.values.migManager.config.default={config}"),
                "timeouts.step=15s".to_string(),
            ];
            (
                *name,
                sets.into_iter()
                    .flat_map(|v| ["--set".to_string(), v])
                    .collect(),
            )
        })
        .collect();
    let outcomes = side_by_side(tmp.path(), &plan, &runs);
    let (code, c, out) = &outcomes[0];
    assert_eq!(*code, Some(0), "{out}");
    for case in [
        "gpu-stack/labels/mig-worker-1",
        "gpu-stack/workload/mig-worker-1/mig-1g.10gb",
        "gpu-stack/workload/mig-worker-1/mig-2g.20gb",
        "gpu-stack/workload/mig-worker-1/mig-3g.40gb",
        "throughput/bench/mig-worker-1/mig-1g.10gb",
        "throughput/bench/mig-worker-1/mig-1g.10gb/triad",
        "throughput/bench/mig-worker-1/mig-3g.40gb/sgemm",
        "throughput/bench/mig-worker-1/mig-2g.20gb/straggler",
        "throughput/bench/t4-worker-1/gpu0/triad",
    ] {
        assert!(
            c.iter().any(|(n, s, _)| n == case && s == "passed"),
            "{case} did not pass: {out}"
        );
    }
    // Host copies share the GPU's PCIe link: not judged on a MIG device, and no peer copies.
    let h2d = c
        .iter()
        .find(|(n, _, _)| n == "throughput/bench/mig-worker-1/mig-1g.10gb/h2d")
        .expect("h2d case");
    assert_eq!(h2d.1, "skipped", "{h2d:?}");
    assert!(
        !c.iter()
            .any(|(n, _, _)| n.starts_with("throughput/bench/mig-worker-1/peer/")),
        "{out}"
    );
    let (code, c, out) = &outcomes[1];
    assert_eq!(*code, Some(1), "{out}");
    let labels = c
        .iter()
        .find(|(n, _, _)| n == "gpu-stack/labels/mig-worker-1")
        .expect("labels case");
    assert_eq!(labels.1, "failed", "{labels:?}");
    assert!(
        labels.2.starts_with(
            "mig-worker-1: nvidia.com/mig.config.state is \"failed\", expected \"success\" (mig-manager applying nvidia.com/mig.config=all-1g.5gb"
        ),
        "{}",
        labels.2
    );
    // allocatable waits on mig-manager too, and names the config.
    let alloc = c
        .iter()
        .find(|(n, _, _)| n == "gpu-stack/allocatable/mig-worker-1")
        .expect("allocatable case");
    assert_eq!(alloc.1, "failed", "{alloc:?}");
    assert!(
        alloc
            .2
            .contains("nvidia.com/mig.config.state is \"failed\"")
            && alloc.2.contains("nvidia.com/mig.config=all-1g.5gb"),
        "{}",
        alloc.2
    );
    // One unhealthy A100 under MIG single all-1g.5gb: 56 devices expected, 49 allocatable.
    let (code, c, out) = &outcomes[2];
    assert_eq!(*code, Some(1), "{out}");
    let failed: Vec<_> = c.iter().filter(|(_, s, _)| s == "failed").collect();
    assert_eq!(failed.len(), 1, "{failed:#?}");
    assert_eq!(failed[0].0, "gpu-stack/allocatable/gpu-worker-1");
    assert!(
        failed[0]
            .2
            .starts_with("gpu-worker-1: allocatable nvidia.com/gpu is \"49\", expected \"56\""),
        "{}",
        failed[0].2
    );
}

/// A cluster that runs its own NFD (`externalNfd`), with the operator installed with
/// `nfd.enabled=false` as on OpenShift: the chart deploys no NFD, the run passes, and NFD's
/// labels still on the GPU node after the uninstall are not counted as operator leftovers.
#[test]
fn a_cluster_managed_nfd_is_not_an_operator_leftover() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    let out = run_command(&root().join("plans/local.yaml"), &reports)
        .args([
            "--set",
            "suites=[gpu-stack, teardown]",
            "--set",
            "target.local.fixture=fixtures/clusters/external-nfd.yaml",
            "--set",
            "operator.values.nfd.enabled=false",
        ])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let r = results(&run_dir(&reports));
    let c = cases(&r);
    assert!(
        !c.iter()
            .any(|(n, _, _)| n.contains("node-feature-discovery")),
        "the chart deployed NFD: {c:#?}"
    );
    let verified = r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "verified-empty/gpu-worker-1")
        .expect("teardown case of the GPU node");
    assert_eq!(verified["status"], "passed", "{verified}");
    let detail = verified["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("feature.node.kubernetes.io/pci-10de.present=true")
            && !detail.contains("nvidia.com/gpu.product"),
        "{detail}"
    );
}

/// A finished run: its exit code, its testcases (`(suite/name, status, message)`), its output.
type Finished = (Option<i32>, Vec<(String, String, String)>, String);

/// Runs `plan` once per `(name, args)` at the same time, reports under `dir/<name>`; returns
/// each run, in order.
fn side_by_side(dir: &Path, plan: &Path, runs: &[(&str, Vec<String>)]) -> Vec<Finished> {
    let children: Vec<_> = runs
        .iter()
        .map(|(name, args)| {
            let reports = dir.join(name);
            let child = run_command(plan, &reports)
                .args(args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn run");
            (reports, child)
        })
        .collect();
    children
        .into_iter()
        .map(|(reports, child)| {
            let out = child.wait_with_output().expect("wait");
            (
                out.status.code(),
                cases(&results(&run_dir(&reports))),
                text(&out),
            )
        })
        .collect()
}

/// Time-slicing from the plan's device plugin config (`devicePlugin.config`, created by the
/// chart): 4 replicas pass labels and allocatable; the same plan on a node whose device plugin
/// never takes the config up fails both, the expectation coming from the config and not from
/// the node; a renaming config (`renameByDefault`) runs its workload on `nvidia.com/gpu.shared`.
#[test]
fn time_slicing_is_expected_from_the_plan_config() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = root().join("plans/local.yaml");
    let overlay = |name: &str, rename: bool| {
        let path = tmp.path().join(format!("{name}-values.yaml"));
        let rename = if rename {
            "renameByDefault: true\n    "
        } else {
            ""
        };
        let config = format!(
            "version: v1\nsharing:\n  timeSlicing:\n    {rename}resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n"
        );
        let values = serde_json::json!({
            "operator": {"values": {"devicePlugin": {"config": {
                "name": "time-slicing-config",
                "default": "ts",
                "create": true,
                "data": {"ts": config},
            }}}}
        });
        std::fs::write(&path, serde_json::to_string(&values).expect("json")).expect("write");
        path
    };
    let args = |name: &str, fixture: &str, rename: bool| {
        let sets = [
            "suites=[gpu-stack]".to_string(),
            format!("target.local.fixture=fixtures/clusters/{fixture}"),
            "timeouts.step=15s".to_string(),
        ];
        let mut a = vec![
            "-f".to_string(),
            overlay(name, rename).display().to_string(),
        ];
        a.extend(sets.into_iter().flat_map(|v| ["--set".to_string(), v]));
        a
    };
    let runs = vec![
        ("shared", args("shared", "seed.yaml", false)),
        (
            "ignored",
            args("ignored", "faults/sharing-not-applied.yaml", false),
        ),
        ("renamed", args("renamed", "seed.yaml", true)),
    ];
    let outcomes = side_by_side(tmp.path(), &plan, &runs);
    let (code, c, out) = &outcomes[0];
    assert_eq!(*code, Some(0), "{out}");
    for case in [
        "gpu-stack/labels/gpu-worker-1",
        "gpu-stack/allocatable/gpu-worker-1",
        "gpu-stack/workload/gpu-worker-1",
    ] {
        assert!(
            c.iter().any(|(n, s, _)| n == case && s == "passed"),
            "{case} did not pass: {out}"
        );
    }
    let (code, c, out) = &outcomes[1];
    assert_eq!(*code, Some(1), "{out}");
    let failed = |name: &str| {
        c.iter()
            .find(|(n, s, _)| n == name && s == "failed")
            .map(|(_, _, m)| m.clone())
            .unwrap_or_else(|| panic!("{name} did not fail: {out}"))
    };
    let alloc = failed("gpu-stack/allocatable/gpu-worker-1");
    assert!(
        alloc.starts_with("gpu-worker-1: capacity nvidia.com/gpu is \"1\", expected \"4\""),
        "{alloc}"
    );
    let labels = failed("gpu-stack/labels/gpu-worker-1");
    assert!(
        labels.starts_with(
            "gpu-worker-1: nvidia.com/gpu.product is \"Tesla-V100-SXM2-16GB\", expected \"Tesla-V100-SXM2-16GB-SHARED\""
        ),
        "{labels}"
    );
    let (code, c, out) = &outcomes[2];
    assert_eq!(*code, Some(0), "{out}");
    for case in [
        "gpu-stack/allocatable/gpu-worker-1",
        "gpu-stack/workload/gpu-worker-1/gpu.shared",
    ] {
        assert!(
            c.iter().any(|(n, s, _)| n == case && s == "passed"),
            "{case} did not pass: {out}"
        );
    }
}

/// MIG faults on the p5 under mixed all-balanced: one H100 fallen off the bus fails
/// allocatable per profile (14 of 16 1g.10gb) and labels (7 of 8 GPUs); a mig-manager that
/// cannot apply the layout fails labels and allocatable naming the config.
#[test]
fn mig_faults_fail_naming_node_config_and_counts() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = root().join("plans/local.yaml");
    let runs: Vec<(&str, Vec<String>)> = ["mig-gpu-missing", "mig-config-failed"]
        .iter()
        .map(|name| {
            let sets = [
                "suites=[gpu-stack]".to_string(),
                format!("target.local.fixture=fixtures/clusters/faults/{name}.yaml"),
                "operator.values.mig.strategy=mixed".to_string(),
                "operator.values.migManager.config.default=all-balanced".to_string(),
                "timeouts.step=15s".to_string(),
            ];
            (
                *name,
                sets.into_iter()
                    .flat_map(|v| ["--set".to_string(), v])
                    .collect(),
            )
        })
        .collect();
    let outcomes = side_by_side(tmp.path(), &plan, &runs);
    let message = |c: &[(String, String, String)], case: &str, out: &str| {
        c.iter()
            .find(|(n, s, _)| n == case && s == "failed")
            .map(|(_, _, m)| m.clone())
            .unwrap_or_else(|| panic!("{case} did not fail: {out}"))
    };
    let (code, c, out) = &outcomes[0];
    assert_eq!(*code, Some(1), "{out}");
    let alloc = message(c, "gpu-stack/allocatable/mig-worker-1", out);
    assert!(
        alloc.starts_with(
            "mig-worker-1: capacity nvidia.com/mig-1g.10gb is \"14\", expected \"16\""
        ),
        "{alloc}"
    );
    let labels = message(c, "gpu-stack/labels/mig-worker-1", out);
    assert!(
        labels.starts_with("mig-worker-1: nvidia.com/gpu.count is \"7\", expected \"8\""),
        "{labels}"
    );
    let (code, c, out) = &outcomes[1];
    assert_eq!(*code, Some(1), "{out}");
    for case in [
        "gpu-stack/labels/mig-worker-1",
        "gpu-stack/allocatable/mig-worker-1",
    ] {
        let m = message(c, case, out);
        assert!(
            m.contains("nvidia.com/mig.config.state is \"failed\"")
                && m.contains("nvidia.com/mig.config=all-balanced"),
            "{case}: {m}"
        );
    }
}

/// The nightly gate: three p4d runs, one with GPU 3 at 95% of its speed (a drop every floor and
/// the 10% straggler check let through). `compare` of the two
/// healthy runs finds every benchmark the same (exit 0); against the slowed run it reports
/// exactly GPU 3's benchmarks worse and exits with the regression code, writing Markdown and
/// JUnit.
#[test]
fn compare_flags_exactly_the_slowed_gpu() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let plan = root().join("plans/local.yaml");
    let p4d = std::fs::read_to_string(root().join("fixtures/clusters/p4d.yaml")).expect("p4d");
    let slow = tmp.path().join("p4d-slow.yaml");
    std::fs::write(
        &slow,
        format!(
            "{}faults:\n  - kind: slowGpu\n    node: gpu-worker-1\n    gpu: 3\n    factor: 0.95\n",
            p4d.replace("name: p4d", "name: p4d-slow")
        ),
    )
    .expect("write fixture");
    let args = |fixture: &str| -> Vec<String> {
        [
            "suites=[throughput]".to_string(),
            format!("target.local.fixture={fixture}"),
            "timeouts.step=60s".to_string(),
        ]
        .into_iter()
        .flat_map(|v| ["--set".to_string(), v])
        .collect()
    };
    let runs = vec![
        ("base", args("fixtures/clusters/p4d.yaml")),
        ("again", args("fixtures/clusters/p4d.yaml")),
        ("slow", args(&slow.display().to_string())),
    ];
    let outcomes = side_by_side(tmp.path(), &plan, &runs);
    assert_eq!(outcomes[0].0, Some(0), "{}", outcomes[0].2);
    let dir = |name: &str| run_dir(&tmp.path().join(name)).display().to_string();
    let same = gpuconform(&["compare", &dir("base"), &dir("again")]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same));
    assert!(
        text(&same).contains(" 0 worse, 0 inconclusive, 64 same, 0 better"),
        "{}",
        text(&same)
    );
    let out = tmp.path().join("cmp");
    let worse = gpuconform(&[
        "compare",
        &dir("base"),
        &dir("slow"),
        "--out",
        &out.display().to_string(),
    ]);
    assert_eq!(worse.status.code(), Some(5), "{}", text(&worse));
    let md = std::fs::read_to_string(out.join("compare.md")).expect("compare.md");
    let worse_ids: BTreeSet<String> = md
        .lines()
        .filter(|l| l.ends_with("| worse |"))
        .filter_map(|l| l.split('`').nth(1).map(str::to_string))
        .collect();
    let want: BTreeSet<String> = [
        "copy", "triad", "fp32Fma", "sgemm", "fp16Gemm", "bf16Gemm", "h2d", "d2h",
    ]
    .iter()
    .map(|m| format!("gpu-worker/A100-SXM4-40GB/gpu3/{m}"))
    .collect();
    assert_eq!(worse_ids, want, "{md}");
    assert!(
        md.contains(" 8 worse, 0 inconclusive, 56 same, 0 better"),
        "{md}"
    );
    let junit = std::fs::read_to_string(out.join("compare.junit.xml")).expect("junit");
    assert!(junit.contains("tests=\"64\" failures=\"8\""), "{junit}");
    let html = std::fs::read_to_string(out.join("compare.html")).expect("compare.html");
    assert_eq!(html.matches("<svg").count(), 64, "one plot per benchmark");
    // A metric's own threshold: host copies allowed 6%, so GPU 3's 5% slower h2d is the same.
    let lenient = gpuconform(&[
        "compare",
        &dir("base"),
        &dir("slow"),
        "--metric-threshold",
        "h2d=6",
    ]);
    assert_eq!(lenient.status.code(), Some(5), "{}", text(&lenient));
    assert!(
        text(&lenient).contains(" 7 worse, 0 inconclusive, 57 same, 0 better"),
        "{}",
        text(&lenient)
    );

    // The same gate inside a run: `--baseline` with the healthy run's reports folder.
    let reports = tmp.path().join("gated");
    let gated = run_command(&plan, &reports)
        .args(args(&slow.display().to_string()))
        .args(["--baseline", &tmp.path().join("base").display().to_string()])
        .output()
        .expect("run");
    assert_eq!(gated.status.code(), Some(5), "{}", text(&gated));
    assert!(
        text(&gated).contains("worse than the baseline: gpu-worker/A100-SXM4-40GB/gpu3/triad"),
        "{}",
        text(&gated)
    );
    let md = std::fs::read_to_string(run_dir(&reports).join("compare.md")).expect("compare.md");
    assert!(
        md.contains(" 8 worse, 0 inconclusive, 56 same, 0 better"),
        "{md}"
    );

    // The history of all four runs on one page.
    let page = tmp.path().join("trend.html").display().to_string();
    let dirs: Vec<String> = ["base", "again", "slow", "gated"]
        .iter()
        .map(|d| tmp.path().join(d).display().to_string())
        .collect();
    let mut a: Vec<&str> = vec!["trend", "--out", &page];
    a.extend(dirs.iter().map(String::as_str));
    let trend = gpuconform(&a);
    assert_eq!(trend.status.code(), Some(0), "{}", text(&trend));
    assert!(
        text(&trend).contains("4 runs, 64 benchmarks"),
        "{}",
        text(&trend)
    );
    let html = std::fs::read_to_string(&page).expect("trend.html");
    assert!(html.contains("<h2>gpu-worker/A100-SXM4-40GB/gpu3/triad</h2>"));
}

/// `helm template` of the shipped chart (release `gpuconform` in `gpuconform-tests`), with `args`.
fn chart(args: &[&str]) -> String {
    let out = Command::new(tool("helm"))
        .args([
            "template",
            "gpuconform",
            "charts/gpuconform",
            "-n",
            "gpuconform-tests",
        ])
        .args(args)
        .current_dir(root())
        .output()
        .expect("run helm");
    assert!(out.status.success(), "helm template: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// One rendered template as JSON.
fn chart_object(template: &str) -> serde_json::Value {
    serde_saphyr::from_str(&chart(&["--show-only", template])).expect("one YAML document")
}

/// The chart: `helm lint`; everything it renders is accepted by a real API server (server-side
/// dry-run apply); `deploy/cronjob/gpuconform.yaml` is it rendered with its defaults. Then the
/// binary runs exactly as the CronJob's container would — its args, the plan from its
/// ConfigMap, from a folder with no suites in it — with only the chart's ServiceAccount and
/// roles, through the in-cluster configuration (the token and CA in a ServiceAccount folder,
/// `KUBERNETES_SERVICE_HOST`/`_PORT` at the local API server, no kubeconfig anywhere): it
/// passes and leaves the summary ConfigMap saying so.
#[test]
fn the_chart_runs_as_its_cronjob_would_with_the_in_cluster_configuration() {
    let lint = Command::new(tool("helm"))
        .args(["lint", "--strict", "charts/gpuconform"])
        .current_dir(root())
        .output()
        .expect("helm lint");
    assert!(lint.status.success(), "{}", text(&lint));
    let rendered = chart(&[]);
    let generated = format!(
        "# Generated by `helm template gpuconform charts/gpuconform -n gpuconform-tests`; tests/run.rs\n# checks it is the chart's output. `kubectl apply -f` this (after setting the plan), or install the chart.\n{rendered}"
    );
    let deploy = root().join("deploy/cronjob/gpuconform.yaml");
    if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(deploy.parent().expect("parent")).expect("mkdir");
        std::fs::write(&deploy, &generated).expect("write");
    }
    assert_eq!(
        std::fs::read_to_string(&deploy)
            .expect("deploy/cronjob/gpuconform.yaml (GPUCONFORM_UPDATE_GOLDEN=1)"),
        generated,
        "the chart changed: regenerate deploy/cronjob/gpuconform.yaml"
    );
    // The chart's roles are the shipped verify-only roles, rule for rule.
    let shipped =
        std::fs::read_to_string(root().join("deploy/rbac/verify-only.yaml")).expect("rbac");
    let rules = |text: &str| -> Vec<String> {
        text.split("\n---\n")
            .filter(|d| {
                d.lines()
                    .any(|l| l == "kind: ClusterRole" || l == "kind: Role")
            })
            .map(|d| {
                let r = d.split("rules:\n").nth(1).unwrap_or_default();
                // The chart's tests Role adds the summary ConfigMap's rules at its end.
                r.split("  # The summary of the last run")
                    .next()
                    .unwrap_or_default()
                    .trim()
                    .to_string()
            })
            .collect()
    };
    let (chart_rules, shipped_rules) = (rules(&rendered), rules(&shipped));
    assert_eq!(chart_rules.len(), 3, "{chart_rules:#?}");
    assert_eq!(chart_rules, shipped_rules);

    let tmp = tempfile::tempdir().expect("tempdir");
    let (_down, admin) = owned_cluster(tmp.path());
    let must = |args: &[&str]| {
        let out = kubectl(&admin, args);
        assert!(out.status.success(), "kubectl {args:?}: {}", text(&out));
        out
    };
    must(&["create", "namespace", "gpuconform-tests"]);
    must(&[
        "label",
        "namespace",
        "gpuconform-tests",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    let all = tmp.path().join("chart.yaml");
    std::fs::write(&all, &rendered).expect("write");
    must(&[
        "apply",
        "--server-side",
        "--dry-run=server",
        "-f",
        &all.to_string_lossy(),
    ]);
    let access = tmp.path().join("access.yaml");
    std::fs::write(
        &access,
        chart(&[
            "--show-only",
            "templates/serviceaccount.yaml",
            "--show-only",
            "templates/rbac.yaml",
        ]),
    )
    .expect("write");
    must(&["apply", "-f", &access.to_string_lossy()]);

    // The pod's ServiceAccount folder, as the kubelet mounts it.
    let sa = tmp.path().join("serviceaccount");
    std::fs::create_dir_all(&sa).expect("mkdir");
    let token = must(&[
        "create",
        "token",
        "gpuconform",
        "-n",
        "gpuconform-tests",
        "--duration=1h",
    ]);
    std::fs::write(
        sa.join("token"),
        String::from_utf8_lossy(&token.stdout).trim(),
    )
    .expect("token");
    let view: serde_json::Value = serde_json::from_slice(
        &must(&["config", "view", "--raw", "--minify", "-o", "json"]).stdout,
    )
    .expect("kubeconfig json");
    let ca = view["clusters"][0]["cluster"]["certificate-authority-data"]
        .as_str()
        .expect("CA data");
    use base64::Engine as _;
    let ca = base64::engine::general_purpose::STANDARD
        .decode(ca)
        .expect("base64");
    std::fs::write(sa.join("ca.crt"), ca).expect("ca");
    std::fs::write(sa.join("namespace"), "gpuconform-tests").expect("namespace");
    let server = view["clusters"][0]["cluster"]["server"]
        .as_str()
        .expect("server");
    let (host, port) = server
        .trim_start_matches("https://")
        .rsplit_once(':')
        .expect("host:port");

    // The CronJob's container: its args, its plan file and reports volume moved into `pod/`.
    let pod = tmp.path().join("pod");
    let home = pod.join("home");
    std::fs::create_dir_all(&home).expect("mkdir");
    let plan = chart_object("templates/configmap.yaml")["data"]["plan.yaml"]
        .as_str()
        .expect("plan")
        .to_string();
    std::fs::write(pod.join("plan.yaml"), plan).expect("plan");
    let cronjob = chart_object("templates/cronjob.yaml");
    let container = &cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<String> = container["args"]
        .as_array()
        .expect("args")
        .iter()
        .filter_map(|a| a.as_str())
        .map(|a| {
            a.replace("/etc/gpuconform", &pod.to_string_lossy())
                .replace("/reports", &pod.join("reports").to_string_lossy())
        })
        .collect();
    assert_eq!(cronjob["spec"]["concurrencyPolicy"], "Forbid");
    let out = Command::new(bin())
        .args(&args)
        .current_dir(&home)
        .env_remove("KUBECONFIG")
        .env("HOME", &home)
        .env("XDG_CACHE_HOME", pod.join("cache"))
        .env("GPUCONFORM_TOOLS", tools_dir())
        .env("KUBERNETES_SERVICE_HOST", host)
        .env("KUBERNETES_SERVICE_PORT", port)
        .env("GPUCONFORM_SERVICEACCOUNT_DIR", &sa)
        .output()
        .expect("run gpuconform");
    assert_eq!(out.status.code(), Some(0), "{args:?}\n{}", text(&out));
    let r = results(&run_dir(&pod.join("reports")));
    assert_eq!(r["cluster"], host);
    assert!(pod.join("reports/gpuconform.prom").is_file());
    let cm: serde_json::Value = serde_json::from_slice(
        &must(&[
            "get",
            "configmap",
            "gpuconform-summary",
            "-n",
            "gpuconform-tests",
            "-o",
            "json",
        ])
        .stdout,
    )
    .expect("configmap json");
    assert_eq!(cm["data"]["success"], "true", "{cm:#}");
    assert_eq!(cm["data"]["runId"], r["runId"], "{cm:#}");
    assert!(
        cm["data"]["summary.md"]
            .as_str()
            .is_some_and(|s| s.contains("— passed")),
        "{cm:#}"
    );

    // `gpuconform retrieve` copies that run off the chart's claim. The claim is bound to a
    // volume holding the folder the run wrote, as a provisioner would; kwok plays the kubelet
    // and runs exec'd commands in that folder (a ClusterExec for the namespace).
    let reports = pod.join("reports");
    let installed = tmp.path().join("installed.yaml");
    std::fs::write(&installed, chart(&["--set", "suspend=true"])).expect("write");
    must(&["apply", "-f", &installed.to_string_lossy()]);
    let volume = tmp.path().join("volume.yaml");
    std::fs::write(
        &volume,
        format!(
            "apiVersion: v1\nkind: PersistentVolume\nmetadata:\n  name: gpuconform-reports-test\nspec:\n  capacity: {{storage: 2Gi}}\n  accessModes: [ReadWriteOnce]\n  persistentVolumeReclaimPolicy: Retain\n  claimRef: {{namespace: gpuconform-tests, name: gpuconform-reports}}\n  hostPath: {{path: {0}}}\n---\napiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterExec\nmetadata:\n  name: gpuconform-reports-volume\nspec:\n  selector: {{matchNamespaces: [gpuconform-tests]}}\n  execs:\n  - local: {{workDir: {0}}}\n",
            reports.display()
        ),
    )
    .expect("write");
    must(&["apply", "-f", &volume.to_string_lossy()]);
    let retrieve = |extra: &[&str]| {
        Command::new(bin())
            .args([
                "retrieve",
                "--kubeconfig",
                &admin.to_string_lossy(),
                "--out",
                &tmp.path().join("retrieved").to_string_lossy(),
                "--timeout",
                "90s",
            ])
            .args(extra)
            .output()
            .expect("run gpuconform retrieve")
    };
    let helpers = || {
        let out = must(&[
            "get",
            "pods",
            "-n",
            "gpuconform-tests",
            "-l",
            "app.kubernetes.io/component=retrieve",
            "-o",
            "name",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let out = retrieve(&[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let run_id = r["runId"].as_str().expect("runId");
    let files = |root: &Path| -> Vec<(String, u64)> {
        let mut found = Vec::new();
        let mut stack = vec![root.to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read dir") {
                let e = e.expect("entry");
                let meta = e.metadata().expect("metadata");
                if meta.is_dir() {
                    stack.push(e.path());
                } else {
                    let rel = e
                        .path()
                        .strip_prefix(root)
                        .expect("under")
                        .display()
                        .to_string();
                    found.push((rel, meta.len()));
                }
            }
        }
        found.sort();
        found
    };
    let copied = tmp.path().join("retrieved").join(run_id);
    let original = files(&reports.join(run_id));
    assert!(
        original.iter().any(|(f, _)| f == "junit.xml"),
        "{original:?}"
    );
    assert_eq!(files(&copied), original, "{}", text(&out));
    assert_eq!(helpers(), "", "the helper pod is deleted");
    // A second copy is refused (exit 2); a run that is not on the volume fails with tar's
    // words (exit 3); neither leaves its pod.
    let again = retrieve(&[]);
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));
    assert!(text(&again).contains("already exists"), "{}", text(&again));
    let missing = retrieve(&["--run", "20990101-000000-none", "--force"]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing));
    assert!(
        text(&missing).contains("20990101-000000-none"),
        "{}",
        text(&missing)
    );
    assert!(!tmp.path().join("retrieved/20990101-000000-none").exists());
    assert_eq!(
        helpers(),
        "",
        "the helper pod is deleted after a failure too"
    );
}

/// A step with `retries: 1` on a node whose label never comes: the check runs again on that
/// node only, the testcase still fails and carries its first attempt, and the JUnit shows it as
/// a `rerunFailure` and stays valid against the strict schema.
#[test]
fn a_retried_step_keeps_its_attempts_and_the_junit_stays_strict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let suites = tmp.path().join("suites");
    std::fs::create_dir_all(&suites).expect("mkdir");
    for name in ["gpu-stack", "teardown"] {
        let mut text =
            std::fs::read_to_string(root().join(format!("suites/{name}.yaml"))).expect("suite");
        if name == "gpu-stack" {
            let before = "  - name: labels\n    check: labels\n";
            assert!(text.contains(before), "{text}");
            text = text.replace(
                before,
                "  - name: labels\n    check: labels\n    retries: 1\n",
            );
        }
        std::fs::write(suites.join(format!("{name}.yaml")), text).expect("write suite");
    }
    let p = plan(
        tmp.path(),
        "retried",
        "fixtures/clusters/faults/missing-label.yaml",
        "25s",
        "10s",
    );
    let text_plan = std::fs::read_to_string(&p)
        .expect("plan")
        .replace("  - throughput\n", "");
    std::fs::write(&p, text_plan).expect("write plan");
    let reports = tmp.path().join("reports");
    let out = gpuconform(&[
        "run",
        &p.to_string_lossy(),
        "--reports",
        &reports.to_string_lossy(),
        "--suite-dir",
        &suites.to_string_lossy(),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains("retry 1 of 1"), "{}", text(&out));
    let dir = run_dir(&reports);
    let r = results(&dir);
    let labels = r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "labels/gpu-worker-1")
        .expect("labels case");
    assert_eq!(labels["status"], "failed", "{labels:#}");
    let attempts = labels["attempts"].as_array().expect("attempts");
    assert_eq!(attempts.len(), 1, "{labels:#}");
    assert!(
        attempts[0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("nvidia.com/gpu.product is missing")),
        "{labels:#}"
    );
    // Only the failed node's check ran again: the passing nodes carry no attempts.
    assert!(
        r["cases"]
            .as_array()
            .expect("cases")
            .iter()
            .filter(|c| c["name"] != "labels/gpu-worker-1")
            .all(|c| c.get("attempts").is_none()),
        "{r:#}"
    );
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit");
    assert_eq!(junit.matches("<rerunFailure").count(), 1, "{junit}");
    strict_junit(&dir.join("junit.xml"));
    let (_, failures, _, _) = junitparser(&dir.join("junit.xml"));
    assert_eq!(failures, 1);
}
