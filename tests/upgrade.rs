//! Tier 2: `gpuconform upgrade` end to end on the local cluster, four single-T4 GPU nodes with
//! the chart's upgrade policy (maxParallelUpgrades 1, maxUnavailable 25%): a healthy upgrade
//! one node at a time, each upgrade fault with its verdict, a rollback, SIGINT in the middle of
//! the upgrade, and the inputs refused before anything starts.

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const TO: &str = "595.91.07";

/// `gpuconform upgrade --to 595.91.07` on `fixture` with short deadlines, reports in `reports`.
fn upgrade(reports: &Path, fixture: &str, extra: &[&str]) -> Command {
    let mut cmd = Command::new(bin());
    // Deadlines wide enough for several clusters on 2 cores; a state takes about 1 s.
    cmd.args(["upgrade", "--to", TO, "--state-timeout", "20s"])
        .args(["--upgrade-timeout", "3m", "--reports"])
        .arg(reports)
        .arg("--set")
        .arg(format!("target.local.fixture={fixture}"))
        .args(extra)
        .current_dir(root())
        .env("GPUCONFORM_TOOLS", tools_dir())
        .env_remove("KUBECONFIG");
    cmd
}

/// `suite/name` → `(status, message)`.
fn cases(r: &serde_json::Value) -> BTreeMap<String, (String, String)> {
    r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .map(|c| {
            let s = |k: &str| c[k].as_str().unwrap_or_default().to_string();
            (
                format!("{}/{}", s("suite"), s("name")),
                (s("status"), s("message")),
            )
        })
        .collect()
}

fn failed(r: &serde_json::Value) -> Vec<String> {
    cases(r)
        .into_iter()
        .filter(|(_, (s, _))| s == "failed" || s == "error")
        .map(|(n, _)| n)
        .collect()
}

/// Each node's spans as `(state, from, until)`.
fn spans(r: &serde_json::Value) -> BTreeMap<String, Vec<(String, f64, f64)>> {
    r["upgrade"]["watched"]["nodes"]
        .as_array()
        .expect("watched nodes")
        .iter()
        .map(|n| {
            let v = n["spans"]
                .as_array()
                .expect("spans")
                .iter()
                .map(|s| {
                    (
                        s["state"].as_str().unwrap_or_default().to_string(),
                        s["from"].as_f64().unwrap_or_default(),
                        s["until"].as_f64().unwrap_or_default(),
                    )
                })
                .collect();
            (n["node"].as_str().unwrap_or_default().to_string(), v)
        })
        .collect()
}

/// From cordon to uncordon: the node is out of scheduling.
fn out_of_scheduling(state: &str) -> bool {
    !matches!(
        state,
        "" | "upgrade-required" | "upgrade-done" | "upgrade-failed"
    )
}

/// The healthy upgrade: exit 0; four phases as testsuites; the timeline shows the nodes one
/// at a time, every node done; the suites after expect and find the new driver; the benchmarks
/// compare the same; the report has the upgrade section and its SVG timeline.
#[test]
fn a_healthy_upgrade_goes_one_node_at_a_time_and_passes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    let out = upgrade(&reports, "fixtures/clusters/upgrade-four.yaml", &[])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let dir = run_dir(&reports);
    let r = results(&dir);
    assert_eq!(r["exitCode"], 0);
    assert_eq!(r["driverVersion"], TO);
    let c = cases(&r);
    for want in [
        "baseline/gpu-stack/labels/gpu-1",
        "baseline/throughput/bench/gpu-4/gpu0/copy",
        "upgrade/helm",
        "upgrade/node/gpu-1",
        "upgrade/node/gpu-4",
        "upgrade/policy",
        "after/gpu-stack/labels/gpu-3",
        "after/throughput/bench/gpu-2/gpu0/triad",
        "verdict/benchmarks",
        "teardown/verified-empty/release",
    ] {
        assert_eq!(
            c.get(want).map(|(s, _)| s.as_str()),
            Some("passed"),
            "{want}: {c:#?}"
        );
    }
    assert!(failed(&r).is_empty(), "{:?}", failed(&r));
    let u = &r["upgrade"];
    assert_eq!(u["from"], "580.95.05");
    assert_eq!(u["to"], TO);
    assert_eq!(u["watched"]["mostUpgrading"], 1);
    assert_eq!(u["watched"]["maxParallel"], 1);
    assert_eq!(u["watched"]["maxUnavailable"], 1);
    assert_eq!(u["baseline"].as_array().map(Vec::len), Some(4 * 7));
    let timeline = spans(&r);
    assert_eq!(timeline.len(), 4);
    // Every node went through the controller's states to done, and no two were out at once.
    let mut out: Vec<(f64, f64, &str)> = Vec::new();
    for (node, v) in &timeline {
        let states: Vec<&str> = v.iter().map(|s| s.0.as_str()).collect();
        for s in [
            "upgrade-required",
            "cordon-required",
            "drain-required",
            "pod-restart-required",
            "validation-required",
            "uncordon-required",
        ] {
            assert!(states.contains(&s), "{node} never in {s}: {states:?}");
        }
        assert_eq!(states.last(), Some(&"upgrade-done"), "{node}: {states:?}");
        let first = v.iter().find(|s| out_of_scheduling(&s.0)).expect("cordon");
        let last = v
            .iter()
            .rev()
            .find(|s| out_of_scheduling(&s.0))
            .expect("uncordon");
        out.push((first.1, last.2, node));
    }
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    for w in out.windows(2) {
        assert!(
            w[0].1 <= w[1].0,
            "{} and {} out at once: {out:?}",
            w[0].2,
            w[1].2
        );
    }
    let compared = u["comparison"].as_array().expect("comparison");
    assert_eq!(compared.len(), 7, "{compared:#?}");
    assert!(compared.iter().all(|c| c["verdict"] != "worse"));
    let md = std::fs::read_to_string(dir.join("summary.md")).expect("summary.md");
    assert!(
        md.contains("## Driver upgrade 580.95.05 → 595.91.07\n"),
        "{md}"
    );
    let html = std::fs::read_to_string(dir.join("report.html")).expect("report.html");
    assert!(html.contains("aria-label=\"upgrade timeline\""), "{html}");
    let drawn: usize = timeline.values().map(Vec::len).sum();
    let svg = html
        .split("aria-label=\"upgrade timeline\"")
        .nth(1)
        .and_then(|rest| rest.split("</svg>").next())
        .expect("timeline svg");
    assert_eq!(svg.matches("<rect").count(), drawn, "one bar per state");
    // The JUnit has each phase as its own testsuites.
    let junit = std::fs::read_to_string(dir.join("junit.xml")).expect("junit.xml");
    for suite in [
        "baseline/gpu-stack",
        "upgrade",
        "after/gpu-stack",
        "verdict",
        "teardown",
    ] {
        assert!(
            junit.contains(&format!("<testsuite name=\"{suite}\"")),
            "{suite} missing from junit.xml"
        );
    }
}

/// Each fault gives its verdict naming node and state: stuck (exit 6), failed in drain then
/// rolled back with the old driver verified on every node (exit 6), validation failing on the
/// new driver (exit 6), a failed node flipped to done (exit 6), and a throughput regression on
/// the new driver (exit 5, the slowed metric named, nothing else failing). The runs go side by
/// side.
#[test]
fn upgrade_faults_give_their_verdict() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let runs: Vec<(&str, Vec<&str>)> = vec![
        ("upgrade-stuck", vec![]),
        ("upgrade-failed", vec!["--rollback-on-failure"]),
        ("validation-fails", vec![]),
        ("driver-regression", vec![]),
        ("upgrade-flips", vec![]),
    ];
    let children: Vec<_> = runs
        .iter()
        .map(|(name, extra)| {
            let reports = tmp.path().join(name);
            let mut args = extra.clone();
            let id = format!("upgrade-{name}");
            args.extend(["--run-id", id.as_str()]);
            let child = upgrade(
                &reports,
                &format!("fixtures/clusters/faults/{name}.yaml"),
                &args,
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
            (*name, reports, child)
        })
        .collect();
    for (name, reports, child) in children {
        let out = child.wait_with_output().expect("wait");
        let r = results(&run_dir(&reports));
        let c = cases(&r);
        let msg = |k: &str| c.get(k).map(|(_, m)| m.clone()).unwrap_or_default();
        let bad = failed(&r);
        match name {
            "upgrade-stuck" => {
                assert_eq!(out.status.code(), Some(6), "{}", text(&out));
                assert!(
                    msg("upgrade/node/gpu-2").starts_with("gpu-2: stuck in drain-required for "),
                    "{c:#?}"
                );
                assert_eq!(
                    msg("upgrade/node/gpu-3"),
                    "gpu-3: not finished, last seen in upgrade-required (waiting for its turn)"
                );
                assert!(!bad.contains(&"upgrade/node/gpu-1".to_string()), "{bad:?}");
                // A failed upgrade is not measured again.
                assert!(!c.keys().any(|k| k.starts_with("after/")), "{c:#?}");
            }
            "upgrade-failed" => {
                assert_eq!(out.status.code(), Some(6), "{}", text(&out));
                assert_eq!(
                    msg("upgrade/node/gpu-3"),
                    "gpu-3: upgrade-failed in drain-required"
                );
                assert_eq!(
                    c.get("upgrade/rollback").map(|(s, _)| s.as_str()),
                    Some("passed"),
                    "{c:#?}"
                );
                assert!(
                    r["upgrade"]["rollback"]
                        .as_str()
                        .is_some_and(|m| m.contains("driver 580.95.05 on all 4 GPU nodes")),
                    "{}",
                    r["upgrade"]
                );
            }
            "validation-fails" => {
                assert_eq!(out.status.code(), Some(6), "{}", text(&out));
                assert_eq!(
                    msg("upgrade/node/gpu-2"),
                    "gpu-2: upgrade-failed in validation-required"
                );
                assert!(!bad.contains(&"upgrade/node/gpu-1".to_string()), "{bad:?}");
            }
            "driver-regression" => {
                assert_eq!(out.status.code(), Some(5), "{}", text(&out));
                assert_eq!(bad, ["verdict/benchmarks"], "{c:#?}");
                let m = msg("verdict/benchmarks");
                assert!(
                    m.starts_with("worse under driver 595.91.07: gpu/T4/gpu0/copy ")
                        && m.ends_with("GB/s (-10.0%)"),
                    "{m}"
                );
                let worse: Vec<&str> = r["upgrade"]["comparison"]
                    .as_array()
                    .expect("comparison")
                    .iter()
                    .filter(|c| c["verdict"] == "worse")
                    .filter_map(|c| c["id"].as_str())
                    .collect();
                assert_eq!(worse, ["gpu/T4/gpu0/copy"]);
            }
            "upgrade-flips" => {
                assert_eq!(out.status.code(), Some(6), "{}", text(&out));
                let m = msg("upgrade/node/gpu-2");
                assert!(
                    m.contains("gpu-2: flipped from upgrade-failed to upgrade-done at ")
                        && m.contains("without its driver pod restarting"),
                    "{c:#?}"
                );
                assert_eq!(bad, ["upgrade/node/gpu-2"], "{c:#?}");
            }
            _ => unreachable!(),
        }
    }
}

/// SIGINT while nodes are being upgraded: the run stops watching, writes each node's last
/// state, tears down, exits 130.
#[test]
fn sigint_mid_upgrade_reports_each_node_and_tears_down() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    let mut child = upgrade(&reports, "fixtures/clusters/upgrade-four.yaml", &[])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let started = Instant::now();
    let mut seen = String::new();
    loop {
        let line = rx
            .recv_timeout(Duration::from_secs(240))
            .unwrap_or_else(|_| panic!("the upgrade never started:\n{seen}"));
        seen.push_str(&line);
        seen.push('\n');
        if line.contains("upgrade policy:") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{seen}");
    }
    // The first node is on its way: a reconcile is 0.4 s, a node takes about 4 s.
    std::thread::sleep(Duration::from_millis(2500));
    let cancelled = cancel_like_ci(&mut child, |_| false, Duration::from_secs(90));
    seen.extend(rx.try_iter().map(|l| l + "\n"));
    let Some((status, _, _)) = cancelled else {
        panic!("still running 90 s after SIGINT:\n{seen}");
    };
    assert_eq!(status.code(), Some(130), "{seen}");
    let r = results(&run_dir(&reports));
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["finished"], true);
    let w = &r["upgrade"]["watched"];
    assert_eq!(w["interrupted"], true, "{w}");
    let nodes = w["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 4, "{w}");
    assert!(
        nodes
            .iter()
            .any(|n| n["lastState"] != "upgrade-done" && n["lastState"] != ""),
        "no node was mid-upgrade: {w}"
    );
    let c = cases(&r);
    assert_eq!(
        c.get("upgrade/node/gpu-1").map(|(s, _)| s.as_str()),
        Some("skipped"),
        "{c:#?}"
    );
    let teardown = r["phases"]
        .as_array()
        .expect("phases")
        .iter()
        .find(|p| p["name"] == "teardown")
        .cloned()
        .unwrap_or_default();
    assert_eq!(teardown["ok"], true, "{teardown}");
}

/// Refused before anything starts, exit 2: not a version, the driver the plan already asks
/// for, a verify-only plan.
#[test]
fn upgrade_inputs_are_checked_before_anything_starts() {
    let bad = gpuconform(&["upgrade", "--to", "latest"]);
    assert_eq!(bad.status.code(), Some(2), "{}", text(&bad));
    assert!(
        text(&bad).contains("not a driver version"),
        "{}",
        text(&bad)
    );
    let same = gpuconform(&["upgrade", "--to", "580.95.05"]);
    assert_eq!(same.status.code(), Some(2), "{}", text(&same));
    assert!(
        text(&same).contains("already 580.95.05: nothing to upgrade"),
        "{}",
        text(&same)
    );
    let verify = gpuconform(&["upgrade", "plans/verify.yaml", "--to", TO]);
    assert_eq!(verify.status.code(), Some(2), "{}", text(&verify));
    assert!(text(&verify).contains("verify-only"), "{}", text(&verify));
}
