//! Run results and their renderings: the results model the runner's events fold into, and the
//! files written from it into `reports/<run-id>/` — `junit.xml`, `results.json`, `summary.md`.
//!
//! Everything is rendered from one [`RunRecord`], so the JUnit, the JSON and the summary never
//! disagree.

pub mod bench;
pub mod events;
pub mod inventory;
pub mod junit;
pub mod log;
pub mod metrics;
pub mod push;
pub mod stream;
pub mod summary;
pub mod terminal;
pub mod upgrade;

use std::path::Path;

use serde::Serialize;

/// Text escaped for HTML, SVG and XML attributes and content (`&`, `<`, `>`, `"`): the one
/// escape every HTML page and JUnit file gpuconform writes by hand uses.
pub fn escape_markup(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Version of the `results.json` format; bump on incompatible changes.
pub const RESULTS_SCHEMA_VERSION: u32 = 1;

/// Outcome of one testcase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The check held.
    Passed,
    /// The check did not hold.
    Failed,
    /// The check could not be carried out (an API error, a timeout of the harness itself).
    Error,
    /// Not run: a step it needs failed, or the run was interrupted.
    Skipped,
}

/// One testcase: a check on one node (or on the cluster).
#[derive(Debug, Clone, Serialize)]
pub struct Case {
    /// Suite name (JUnit classname).
    pub suite: String,
    /// Step name.
    pub step: String,
    /// Check kind.
    pub check: String,
    /// Unique name within the suite: `<step>/<node or subject>`.
    pub name: String,
    /// The node, for per-node cases.
    pub node: Option<String>,
    /// Outcome.
    pub status: Status,
    /// One line: node, observed and expected value.
    pub message: Option<String>,
    /// Everything the check saw (JUnit system-out).
    pub detail: String,
    /// Things worth knowing that do not fail the case.
    pub warnings: Vec<String>,
    /// Seconds spent.
    pub seconds: f64,
    /// Diagnostics files, relative to the run folder.
    pub diagnostics: Vec<String>,
    /// For a failure or error: the layer of the stack it belongs to (set by the fold).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub layer: Option<crate::gpu_stack::layer::Layer>,
    /// The earlier attempts of a step with `retries:`, oldest first; the case's own status is
    /// the last attempt's. A passed case with attempts is flaky.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attempts: Vec<Attempt>,
}

/// One earlier attempt of a retried testcase.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Attempt {
    /// Failed or error (a passing attempt ends the retries).
    pub status: Status,
    /// Its one line.
    pub message: Option<String>,
    /// What the check saw then.
    pub detail: String,
    /// Seconds it took.
    pub seconds: f64,
}

impl Case {
    /// Passed, but only after failing first.
    pub fn flaky(&self) -> bool {
        self.status == Status::Passed && !self.attempts.is_empty()
    }
}

/// Cloud instances a run used (aws target).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceUse {
    /// Instance type → instance-hours.
    pub instance_hours: std::collections::BTreeMap<String, f64>,
    /// At the on-demand prices of `fixtures/catalog/ec2-prices.yaml`.
    pub estimated_usd: f64,
}

/// One phase of the run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// provision, install, suites, diagnostics, teardown.
    pub name: String,
    /// Whether it completed.
    pub ok: bool,
    /// What happened.
    pub message: String,
    /// Seconds spent.
    pub seconds: f64,
}

/// Everything about one run (`results.json`), folded from the run's events
/// ([`events::Recorder`]).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRecord {
    /// [`RESULTS_SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `<plan>-<timestamp>`.
    pub run_id: String,
    /// Plan name.
    pub plan: String,
    /// Plan file.
    pub plan_file: String,
    /// RFC 3339.
    pub started_at: String,
    /// Wall time of the run.
    pub seconds: f64,
    /// Cluster name.
    pub cluster: String,
    /// API server version.
    pub kubernetes_version: String,
    /// Operator chart and version.
    pub operator_chart: String,
    /// The chart version helm installed.
    pub operator_chart_version: String,
    /// `driver.version` of the plan.
    pub driver_version: String,
    /// GPU products per node type, e.g. `p3.2xlarge: 1× Tesla-V100-SXM2-16GB`.
    pub gpu_models: Vec<String>,
    /// Throughput measurements, one row per node × GPU × metric.
    pub benchmarks: Vec<bench::BenchRow>,
    /// EC2 instance-hours and their estimated cost (aws target).
    pub instance_use: Option<InstanceUse>,
    /// Phases in order.
    pub phases: Vec<Phase>,
    /// Testcases in order.
    pub cases: Vec<Case>,
    /// What teardown could not remove.
    pub leftovers: Vec<String>,
    /// The run was interrupted by a signal.
    pub interrupted: bool,
    /// The harness could not do its part (provisioning, install, listing nodes); the exit code
    /// says so, `results.json` shows it through the failed phase or warning.
    #[serde(skip)]
    pub infra_failed: bool,
    /// The plan was refused against this cluster (exit 2); the install phase says why.
    #[serde(skip)]
    pub refused: bool,
    /// The process exit code.
    pub exit_code: u8,
    /// The run ended and teardown is done: `false` in the reports written when teardown
    /// starts (a run killed during teardown still leaves them).
    pub finished: bool,
    /// `gpuconform upgrade`: the driver upgrade, its timeline and the before/after comparison.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upgrade: Option<upgrade::UpgradeReport>,
    /// What was tested, as the cluster showed it before teardown (`inventory.json`).
    #[serde(skip)]
    pub inventory: Option<inventory::Inventory>,
    /// Each bench pod's document as it printed it (`bench/<node>.json`).
    #[serde(skip)]
    pub bench_docs: Vec<crate::bench::NodeBench>,
}

impl RunRecord {
    /// The exit code this record calls for, in the documented order: interrupted, then a
    /// refused plan, then the harness's own failure, then what teardown left, then a failed
    /// upgrade, then failed checks, then a benchmark worse after an upgrade.
    pub fn decide_exit_code(&self) -> u8 {
        let (_, failed, errors, _) = self.counts();
        if self.interrupted {
            crate::exit_codes::INTERRUPTED
        } else if self.refused {
            crate::exit_codes::INPUT_ERROR
        } else if self.infra_failed {
            crate::exit_codes::INFRA_ERROR
        } else if !self.leftovers.is_empty() {
            crate::exit_codes::TEARDOWN_INCOMPLETE
        } else if self.upgrade.as_ref().is_some_and(|u| u.failed) {
            crate::exit_codes::UPGRADE_FAILED
        } else if self.cases.iter().any(|c| {
            matches!(c.status, Status::Failed | Status::Error) && c.check != upgrade::VERDICT_CHECK
        }) {
            crate::exit_codes::CHECKS_FAILED
        } else if failed + errors > 0 || self.upgrade.as_ref().is_some_and(|u| u.regressed) {
            crate::exit_codes::REGRESSION
        } else {
            crate::exit_codes::OK
        }
    }

    /// Counts by status: (passed, failed, errors, skipped).
    pub fn counts(&self) -> (usize, usize, usize, usize) {
        let n = |s: Status| self.cases.iter().filter(|c| c.status == s).count();
        (
            n(Status::Passed),
            n(Status::Failed),
            n(Status::Error),
            n(Status::Skipped),
        )
    }

    /// Suite names in first-seen order.
    pub fn suites(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for c in &self.cases {
            if !out.contains(&c.suite) {
                out.push(c.suite.clone());
            }
        }
        out
    }
}

/// Writes `junit.xml`, `results.json` and `summary.md` into `dir`, and appends the summary to
/// `$GITHUB_STEP_SUMMARY` when set.
pub fn write_all(dir: &Path, record: &RunRecord) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let junit = junit::render(record).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("junit.xml"), junit)?;
    let json = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(dir.join("results.json"), json + "\n")?;
    if !record.benchmarks.is_empty() {
        let bmf = serde_json::to_string_pretty(&bench::bmf(&record.benchmarks))
            .map_err(std::io::Error::other)?;
        std::fs::write(dir.join("bench.json"), bmf + "\n")?;
    }
    if !record.benchmarks.is_empty() || record.upgrade.is_some() {
        let mut page = bench::html(record);
        if let Some(u) = &record.upgrade {
            let at = page.rfind("</body>").unwrap_or(page.len());
            page.insert_str(at, &upgrade::html(u));
        }
        std::fs::write(dir.join("report.html"), page)?;
    }
    if let Some(inv) = &record.inventory {
        let json = serde_json::to_string_pretty(inv).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("inventory.json"), json + "\n")?;
    }
    write_bench_docs(dir, &record.bench_docs)?;
    let md = summary::render(record);
    std::fs::write(dir.join("summary.md"), &md)?;
    if !record.finished {
        return Ok(());
    }
    if let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        f.write_all(md.as_bytes())?;
    }
    Ok(())
}

/// Each bench document as `bench/<node>[-<device>].json` (`-2`, `-3` for a node measured
/// again, as an upgrade's after pass does).
fn write_bench_docs(dir: &Path, docs: &[crate::bench::NodeBench]) -> std::io::Result<()> {
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    for d in docs {
        let mut base = d.node.clone();
        if let Some(u) = &d.mig_unit {
            base = format!("{base}-{u}");
        }
        let n = seen.entry(base.clone()).or_default();
        *n += 1;
        let name = if *n == 1 {
            format!("{base}.json")
        } else {
            format!("{base}-{n}.json")
        };
        std::fs::create_dir_all(dir.join("bench"))?;
        let json = serde_json::to_string_pretty(&d.report).map_err(std::io::Error::other)?;
        std::fs::write(dir.join("bench").join(name), json + "\n")?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixed record: one failure with diagnostics, a warning, a skip, every phase.
    pub(crate) fn sample() -> RunRecord {
        let case =
            |step: &str, name: &str, node: Option<&str>, status: Status, message: Option<&str>| {
                Case {
                    suite: if step == "verified-empty" {
                        "teardown".into()
                    } else {
                        "gpu-stack".into()
                    },
                    step: step.into(),
                    check: step.into(),
                    name: name.into(),
                    node: node.map(str::to_string),
                    status,
                    message: message.map(str::to_string),
                    detail: format!("detail of {name}"),
                    warnings: Vec::new(),
                    seconds: 1.5,
                    diagnostics: Vec::new(),
                    attempts: Vec::new(),
                    layer: None,
                }
            };
        let mut failed = case(
            "labels",
            "labels/gpu-worker-1",
            Some("gpu-worker-1"),
            Status::Failed,
            Some(
                "gpu-worker-1: nvidia.com/gpu.count is \"0\", expected \"1\" (p3.2xlarge: 1× Tesla-V100-SXM2-16GB)",
            ),
        );
        failed
            .diagnostics
            .push("diagnostics/gpu-stack-labels-gpu-worker-1".into());
        failed.layer = Some(crate::gpu_stack::layer::Layer::DevicePlugin);
        // A step with `retries: 1`: the failure stood after its retry.
        failed.attempts.push(Attempt {
            status: Status::Failed,
            message: Some("gpu-worker-1: nvidia.com/gpu.count is missing".into()),
            detail: "first attempt".into(),
            seconds: 1.0,
        });
        let mut warned = case(
            "verified-empty",
            "verified-empty/gpu-worker-1",
            Some("gpu-worker-1"),
            Status::Passed,
            None,
        );
        // Passed on its retry: flaky.
        warned.attempts.push(Attempt {
            status: Status::Error,
            message: Some("list nodes: connection reset".into()),
            detail: "first attempt".into(),
            seconds: 0.5,
        });
        warned.warnings.push("gpu-worker-1: 2 nvidia.com labels left after uninstall: nvidia.com/gpu.present, nvidia.com/gpu.deploy.driver".into());
        RunRecord {
            schema_version: RESULTS_SCHEMA_VERSION,
            run_id: "local-20261128-120000".into(),
            plan: "local".into(),
            plan_file: "plans/local.yaml".into(),
            started_at: "2026-11-28T12:00:00+00:00".into(),
            seconds: 42.25,
            cluster: "local/seed".into(),
            kubernetes_version: "v1.35.4".into(),
            operator_chart: "fixtures/charts/gpu-operator".into(),
            operator_chart_version: "gpu-operator-26.7.0".into(),
            driver_version: "580.95.05".into(),
            gpu_models: vec!["p3.2xlarge: 1× Tesla-V100-SXM2-16GB".into()],
            benchmarks: Vec::new(),
            instance_use: None,
            phases: ["provision", "install", "suites", "teardown"]
                .iter()
                .map(|p| Phase {
                    name: (*p).into(),
                    ok: true,
                    message: format!("{p} ok"),
                    seconds: 2.0,
                })
                .collect(),
            cases: vec![
                case(
                    "operator",
                    "operator/clusterpolicy",
                    None,
                    Status::Passed,
                    None,
                ),
                failed,
                case(
                    "workload",
                    "workload/gpu-worker-1",
                    Some("gpu-worker-1"),
                    Status::Skipped,
                    Some("needs `allocatable`, which failed on gpu-worker-1"),
                ),
                warned,
            ],
            leftovers: Vec::new(),
            interrupted: false,
            infra_failed: false,
            refused: false,
            exit_code: 1,
            finished: true,
            upgrade: None,
            inventory: None,
            bench_docs: Vec::new(),
        }
    }

    fn golden(name: &str, actual: &str) {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/golden")
            .join(name);
        if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, actual).expect("write golden");
        }
        let want = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e} (GPUCONFORM_UPDATE_GOLDEN=1 writes it)",
                path.display()
            )
        });
        assert_eq!(
            actual, want,
            "{name} differs from the golden file (GPUCONFORM_UPDATE_GOLDEN=1 updates it)"
        );
    }

    #[test]
    fn junit_matches_golden() {
        golden("junit.xml", &junit::render(&sample()).expect("render"));
    }

    #[test]
    fn summary_matches_golden() {
        golden("summary.md", &summary::render(&sample()));
    }

    #[test]
    fn junit_parses_back_with_the_same_counts() {
        let xml = junit::render(&sample()).expect("render");
        let report = quick_junit::Report::deserialize_from_str(&xml).expect("parse back");
        assert_eq!(report.tests, 8);
        assert_eq!(report.failures, 1);
        assert_eq!(report.errors, 0);
    }

    /// The record is a pure fold: the sample's events give back the sample, and so the same
    /// golden files; the exit code comes from the folded record.
    #[test]
    fn events_fold_into_the_record() {
        use events::{Event, Recorder, Reporter, RunEnd, RunStart};
        let want = sample();
        let mut rec = Recorder::new(crate::bench::model::PerfTable::embedded().expect("perf"));
        let mut events = vec![
            Event::RunStarted(RunStart {
                run_id: want.run_id.clone(),
                plan: want.plan.clone(),
                plan_file: want.plan_file.clone(),
                dir: "reports/x".into(),
                started_at: want.started_at.clone(),
                operator_chart: want.operator_chart.clone(),
                operator_chart_version: String::new(),
                driver_version: want.driver_version.clone(),
            }),
            Event::ClusterReady {
                name: want.cluster.clone(),
                kubernetes_version: want.kubernetes_version.clone(),
            },
            Event::GpuNodesFound(want.gpu_models.clone()),
            Event::Installed {
                chart_version: want.operator_chart_version.clone(),
            },
            Event::Note("ignored by the record".into()),
        ];
        events.extend(want.phases.iter().cloned().map(Event::PhaseFinished));
        events.extend(want.cases.iter().cloned().map(Event::Case));
        events.push(Event::RunFinished(RunEnd {
            seconds: want.seconds,
            ..RunEnd::default()
        }));
        for e in &events {
            rec.on(e);
        }
        let got = rec.into_record();
        assert_eq!(got.exit_code, crate::exit_codes::CHECKS_FAILED);
        assert_eq!(
            junit::render(&got).expect("render"),
            junit::render(&want).expect("render")
        );
        assert_eq!(summary::render(&got), summary::render(&want));
        assert_eq!(
            serde_json::to_value(&got).expect("json"),
            serde_json::to_value(&want).expect("json")
        );
    }

    #[test]
    fn exit_code_order() {
        let mut r = sample();
        assert_eq!(r.decide_exit_code(), crate::exit_codes::CHECKS_FAILED);
        r.leftovers.push("namespace x".into());
        assert_eq!(r.decide_exit_code(), crate::exit_codes::TEARDOWN_INCOMPLETE);
        r.infra_failed = true;
        assert_eq!(r.decide_exit_code(), crate::exit_codes::INFRA_ERROR);
        r.refused = true;
        assert_eq!(r.decide_exit_code(), crate::exit_codes::INPUT_ERROR);
        r.interrupted = true;
        assert_eq!(r.decide_exit_code(), crate::exit_codes::INTERRUPTED);
        r.cases.retain(|c| c.status != Status::Failed);
        r.leftovers.clear();
        r.infra_failed = false;
        r.refused = false;
        r.interrupted = false;
        assert_eq!(r.decide_exit_code(), crate::exit_codes::OK);
    }
}
