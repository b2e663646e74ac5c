//! What a run says while it works, and the fold that turns it into the run record.
//!
//! These types are the interface between the runner and the reporters: the runner only emits
//! events; the terminal reporter prints progress, and [`Recorder`] folds every event into the
//! [`RunRecord`] the report files are rendered from. The record is built from events alone and
//! its exit code is a function of the folded record ([`RunRecord::decide_exit_code`]), so what the
//! files say and what the process returns cannot disagree.

use super::{Case, InstanceUse, Phase, RunRecord};
use crate::bench::NodeBench;
use crate::bench::model::PerfTable;

/// What is known when a run starts: the plan's identity and what it asks to install.
#[derive(Debug, Clone, Default)]
pub struct RunStart {
    /// Run id.
    pub run_id: String,
    /// Plan name.
    pub plan: String,
    /// Plan file.
    pub plan_file: String,
    /// Report folder.
    pub dir: String,
    /// RFC 3339.
    pub started_at: String,
    /// Operator chart (and its repository).
    pub operator_chart: String,
    /// The chart version the plan pins (empty: latest).
    pub operator_chart_version: String,
    /// The plan's `driver.version` (empty: the chart's default).
    pub driver_version: String,
}

/// How a run ended.
#[derive(Debug, Clone, Default)]
pub struct RunEnd {
    /// A signal interrupted the run.
    pub interrupted: bool,
    /// The plan asked for something the cluster's state forbids (installing over a release that
    /// is already there, verifying one that is not); nothing was changed.
    pub refused: bool,
    /// The harness could not do its part (provisioning, install, listing nodes).
    pub infra_failed: bool,
    /// What teardown could not remove.
    pub leftovers: Vec<String>,
    /// Cloud instances used (aws target).
    pub instance_use: Option<InstanceUse>,
    /// Wall time of the run.
    pub seconds: f64,
}

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run began.
    RunStarted(RunStart),
    /// A phase began.
    PhaseStarted(String),
    /// A phase ended.
    PhaseFinished(Phase),
    /// The cluster is there.
    ClusterReady {
        /// Name for reports (`local/seed`, `aws/us-east-1`, the API host).
        name: String,
        /// API server version.
        kubernetes_version: String,
    },
    /// The GPU nodes found, described per node type (`p3.2xlarge: 1× Tesla-V100-SXM2-16GB`).
    GpuNodesFound(Vec<String>),
    /// The operator install finished (successfully or not).
    Installed {
        /// The chart version helm reported (empty when unknown).
        chart_version: String,
    },
    /// A suite step began.
    StepStarted {
        /// Suite.
        suite: String,
        /// Step.
        step: String,
        /// Check kind.
        check: String,
    },
    /// A testcase has its outcome.
    Case(Case),
    /// One node's bench document, for the benchmark reports.
    Bench(NodeBench),
    /// `upgrade`: the baseline is done and the new driver is asked for; the benchmarks so far
    /// are the baseline's.
    UpgradeStarted {
        /// The driver before.
        from: String,
        /// The driver asked for.
        to: String,
    },
    /// `upgrade`: the watch of the nodes ended, with its findings.
    UpgradeWatched {
        /// What was seen and judged.
        watched: super::upgrade::Watched,
        /// The upgrade did not complete.
        failed: bool,
    },
    /// `upgrade`: `--rollback-on-failure` ran.
    UpgradeRolledBack(String),
    /// `upgrade`: the baseline's benchmarks against the new driver's.
    UpgradeCompared {
        /// Per identity, worst first.
        rows: Vec<super::upgrade::Compared>,
        /// At least one is worse.
        regressed: bool,
    },
    /// What was tested, read from the cluster before teardown.
    Inventory(super::inventory::Inventory),
    /// A line worth showing (what teardown removed, where the kubeconfig is).
    Note(String),
    /// A warning worth showing.
    Warning(String),
    /// The run is over.
    RunFinished(RunEnd),
}

/// Something that folds events.
pub trait Reporter {
    /// Takes one event.
    fn on(&mut self, event: &Event);
}

/// Folds events into the run's record.
pub struct Recorder {
    record: RunRecord,
    perf: PerfTable,
}

impl Recorder {
    /// A recorder; bench documents are judged against `perf` (floors, peaks).
    pub fn new(perf: PerfTable) -> Self {
        Self {
            record: RunRecord::default(),
            perf,
        }
    }

    /// The record so far (the reports written before teardown starts).
    pub fn snapshot(&self) -> RunRecord {
        self.record.clone()
    }

    /// The record.
    pub fn into_record(self) -> RunRecord {
        self.record
    }
}

impl Reporter for Recorder {
    fn on(&mut self, event: &Event) {
        let r = &mut self.record;
        match event {
            Event::RunStarted(s) => {
                r.schema_version = super::RESULTS_SCHEMA_VERSION;
                r.run_id = s.run_id.clone();
                r.plan = s.plan.clone();
                r.plan_file = s.plan_file.clone();
                r.started_at = s.started_at.clone();
                r.operator_chart = s.operator_chart.clone();
                r.operator_chart_version = s.operator_chart_version.clone();
                r.driver_version = s.driver_version.clone();
            }
            Event::PhaseFinished(p) => r.phases.push(p.clone()),
            Event::ClusterReady {
                name,
                kubernetes_version,
            } => {
                r.cluster = name.clone();
                r.kubernetes_version = kubernetes_version.clone();
            }
            Event::GpuNodesFound(models) => r.gpu_models = models.clone(),
            Event::Installed { chart_version } => r.operator_chart_version = chart_version.clone(),
            Event::Case(c) => {
                let mut c = c.clone();
                if matches!(c.status, super::Status::Failed | super::Status::Error)
                    && c.layer.is_none()
                {
                    let message = c.message.as_deref().unwrap_or_default();
                    c.layer = Some(crate::gpu_stack::layer::attribute(
                        &c.check, &c.name, message,
                    ));
                }
                r.cases.push(c);
            }
            Event::Bench(nb) => {
                r.benchmarks
                    .extend(super::bench::rows(std::slice::from_ref(nb), &self.perf));
                if let Some(inv) = &mut r.inventory {
                    super::inventory::add_gpus(inv, nb);
                }
                r.bench_docs.push(nb.clone());
            }
            Event::Inventory(inv) => {
                let mut inv = inv.clone();
                for nb in &r.bench_docs {
                    super::inventory::add_gpus(&mut inv, nb);
                }
                r.inventory = Some(inv);
            }
            Event::RunFinished(end) => {
                r.interrupted = end.interrupted;
                r.refused = end.refused;
                r.infra_failed = end.infra_failed;
                r.leftovers = end.leftovers.clone();
                r.instance_use = end.instance_use.clone();
                r.seconds = end.seconds;
                r.exit_code = r.decide_exit_code();
                r.finished = true;
            }
            Event::UpgradeStarted { from, to } => {
                r.upgrade = Some(super::upgrade::UpgradeReport {
                    from: from.clone(),
                    to: to.clone(),
                    baseline: std::mem::take(&mut r.benchmarks),
                    ..Default::default()
                });
                r.driver_version = to.clone();
            }
            Event::UpgradeWatched { watched, failed } => {
                if let Some(u) = &mut r.upgrade {
                    u.watched = Some(watched.clone());
                    u.failed |= *failed;
                }
            }
            Event::UpgradeRolledBack(what) => {
                if let Some(u) = &mut r.upgrade {
                    u.rollback = Some(what.clone());
                }
            }
            Event::UpgradeCompared { rows, regressed } => {
                if let Some(u) = &mut r.upgrade {
                    u.comparison = rows.clone();
                    u.regressed = *regressed;
                }
            }
            Event::PhaseStarted(_)
            | Event::StepStarted { .. }
            | Event::Note(_)
            | Event::Warning(_) => {}
        }
    }
}
