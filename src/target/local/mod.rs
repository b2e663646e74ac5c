//! The local cluster: a real Kubernetes control plane on loopback with kwok playing the nodes.
//!
//! `up` starts etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok from the
//! tool cache inside a run folder, with a CA generated for this cluster, and creates the nodes of
//! a cluster fixture. Each step waits on the API for what it needs (readyz, CRD established,
//! leader leases, the default service account, every node Ready), with a deadline, and gives up
//! early if a component exits. Any failure or interrupt during `up` stops everything started so
//! far. [`down`] stops a cluster from its `state.json`, from any process, and checks that no
//! process and no port of it is left.
//!
//! While the cluster runs, a [`Companion`] (the GPU simulator, provided by the command layer so
//! that this target does not depend on it) plays the GPU Operator's stack for
//! its GPU nodes in the process that owns the components.

pub mod components;
pub mod nodes;
pub mod process;
pub mod state;
pub mod tools;

mod boot;
mod setup;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use futures::future::{self, Either};

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::k8s::K8sError;
use boot::Starting;
use process::{Child, ProcessRecord, Stopped};
use state::{ClusterDir, ClusterState};
use tools::{MissingTool, Tools};

/// Starting, using or stopping the local cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    /// A tool is not installed.
    #[error(transparent)]
    Tools(#[from] MissingTool),
    /// A cluster is already running in the run folder.
    #[error(
        "start a cluster in {}: one is already running there (run `gpuconform local down --dir {}` first)",
        dir.display(), dir.display()
    )]
    AlreadyRunning {
        /// The run folder.
        dir: PathBuf,
    },
    /// No cluster state in the run folder.
    #[error("find a local cluster in {}: no state.json there", dir.display())]
    NotRunning {
        /// The run folder.
        dir: PathBuf,
    },
    /// Preparing the run folder failed.
    #[error("prepare {}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Certificate generation failed.
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    /// A process could not be started.
    #[error(transparent)]
    Process(#[from] process::ProcessError),
    /// A component exited during startup.
    #[error("start the cluster: {component} exited ({status}); last lines of {}:\n{tail}", log.display())]
    ComponentExited {
        /// Which.
        component: String,
        /// Exit status.
        status: String,
        /// Its log.
        log: PathBuf,
        /// The end of its log.
        tail: String,
    },
    /// The API server never answered ready.
    #[error("start the cluster: the API server was not ready within {}: {last}; see {}", humantime::format_duration(*limit), log.display())]
    ApiNotReady {
        /// The deadline.
        limit: Duration,
        /// The last answer or error.
        last: String,
        /// The API server log.
        log: PathBuf,
    },
    /// An API call or wait failed.
    #[error(transparent)]
    Api(#[from] K8sError),
    /// Interrupted by a signal; what was started has been stopped.
    #[error("start the cluster: interrupted by {0}")]
    Interrupted(&'static str),
}

/// Options of `up`.
#[derive(Clone)]
pub struct UpOptions {
    /// The run folder.
    pub dir: PathBuf,
    /// Deadline for the whole startup.
    pub timeout: Duration,
    /// What runs beside the cluster while it is up (the GPU simulator); none: bare nodes.
    pub companion: Option<std::sync::Arc<dyn Companion>>,
}

/// Something that runs beside a ready local cluster for as long as it is up: the GPU simulator.
/// The target only hosts it; `commands` provides it, so `target` does not import `sim`.
pub trait Companion: Send + Sync {
    /// Starts it against the ready cluster.
    fn start(
        &self,
        client: kube::Client,
        fixture: &ClusterFixture,
        catalog: &Catalog,
        dir: &ClusterDir,
    ) -> Box<dyn Running>;
}

/// A started [`Companion`].
pub trait Running: Send {
    /// Stops it and waits for it (before the cluster's processes stop).
    fn stop(self: Box<Self>) -> futures::future::BoxFuture<'static, ()>;
}

/// A running local cluster started by this process.
pub struct LocalCluster {
    /// The run folder.
    pub dir: ClusterDir,
    /// What is recorded in `state.json`.
    pub state: ClusterState,
    /// An admin client.
    pub client: kube::Client,
    children: Vec<Child>,
    companion: Option<Box<dyn Running>>,
}

/// What stopping a cluster did.
#[derive(Debug, Clone, Default)]
pub struct StopReport {
    /// Per process: name, pid, outcome.
    pub processes: Vec<(String, i32, Stopped)>,
    /// Ports still listening afterwards.
    pub ports_left: Vec<u16>,
}

impl StopReport {
    /// Whether anything is left behind.
    pub fn is_clean(&self) -> bool {
        self.ports_left.is_empty()
            && self
                .processes
                .iter()
                .all(|(_, _, s)| !matches!(s, Stopped::Left(_)))
    }

    /// What is left, as one line per item.
    pub fn leftovers(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .processes
            .iter()
            .filter_map(|(_, _, s)| match s {
                Stopped::Left(why) => Some(why.clone()),
                _ => None,
            })
            .collect();
        out.extend(
            self.ports_left
                .iter()
                .map(|p| format!("127.0.0.1:{p} still listening")),
        );
        out
    }
}

impl LocalCluster {
    /// Starts a cluster for `fixture`. `progress` receives one line per step.
    pub async fn up(
        fixture: &ClusterFixture,
        catalog: &Catalog,
        tools: &Tools,
        opts: &UpOptions,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<Self, LocalError> {
        let dir = ClusterDir::new(&opts.dir);
        if let Ok(Some(old)) = dir.read_state()
            && (old.processes.iter().any(process::is_ours)
                || old.supervisor.as_ref().is_some_and(process::is_ours))
        {
            return Err(LocalError::AlreadyRunning {
                dir: opts.dir.clone(),
            });
        }
        let started = Instant::now();
        let interrupted = crate::signals::first();
        let mut interrupted = std::pin::pin!(interrupted);
        let mut attempt = 0;
        let (outcome, starting) = loop {
            attempt += 1;
            let mut starting = Starting {
                dir: dir.clone(),
                children: Vec::new(),
            };
            let outcome = {
                let work = starting.run(fixture, catalog, tools, opts, started, progress);
                let work = std::pin::pin!(work);
                match future::select(work, interrupted.as_mut()).await {
                    Either::Left((r, _)) => r,
                    Either::Right((sig, _)) => Err(LocalError::Interrupted(sig)),
                }
            };
            // Ports are chosen before the components bind them; if another program took one in
            // between, start again on fresh ports rather than fail.
            let clash = matches!(
                &outcome,
                Err(LocalError::ComponentExited { tail, .. }) if tail.contains("address already in use")
            );
            if clash && attempt < 3 {
                progress("a chosen port was taken meanwhile; starting again on other ports".into());
                let records: Vec<ProcessRecord> =
                    starting.children.iter().map(|c| c.record.clone()).collect();
                stop_records(&records).await;
                continue;
            }
            break (outcome, starting);
        };
        match outcome {
            Ok((state, client)) => {
                // The GPU stack's stand-in runs as long as the cluster does.
                let companion = opts
                    .companion
                    .as_ref()
                    .map(|c| c.start(client.clone(), fixture, catalog, &dir));
                Ok(Self {
                    dir,
                    state,
                    client,
                    children: starting.children,
                    companion,
                })
            }
            Err(e) => {
                progress("stopping what was started".into());
                let records: Vec<ProcessRecord> =
                    starting.children.iter().map(|c| c.record.clone()).collect();
                let report = stop_records(&records).await;
                if report.is_clean() {
                    let _ = std::fs::remove_file(dir.state_file());
                } else {
                    // Keep state.json: it is what lets `local down` find and retry the leftovers.
                    progress(format!("left behind: {}", report.leftovers().join("; ")));
                }
                Err(e)
            }
        }
    }

    /// Stops every process of this cluster (reverse start order).
    pub async fn stop(mut self) -> StopReport {
        if let Some(companion) = self.companion.take() {
            companion.stop().await;
        }
        let report = stop_records(&self.state.processes).await;
        drop(self.children);
        if report.is_clean() {
            let _ = std::fs::remove_file(self.dir.state_file());
        }
        report
    }

    /// Waits until a component exits by itself (foreground mode watches this), or forever.
    pub async fn any_exit(&mut self) -> (String, String) {
        if self.children.is_empty() {
            return future::pending().await;
        }
        let waits = self.children.iter_mut().map(|c| {
            let name = c.record.name.clone();
            Box::pin(async move { (name, c.exited().await) })
        });
        future::select_all(waits).await.0
    }
}

/// Stops the cluster recorded in `dir` and removes its state file when nothing is left.
pub async fn down(dir: &std::path::Path) -> Result<StopReport, LocalError> {
    let (run, state) = recorded(dir)?;
    // The supervisor stops its components in order when asked; whatever it leaves (or all of
    // it, if it is gone) is stopped directly afterwards.
    let mut report = StopReport::default();
    if let Some(sup) = &state.supervisor {
        let outcome = process::stop(sup, process::STOP_GRACE * 3).await;
        report.processes.push((sup.name.clone(), sup.pid, outcome));
    }
    let rest = stop_records(&state.processes).await;
    report.processes.extend(rest.processes);
    report.ports_left = rest.ports_left;
    if report.is_clean() {
        let _ = std::fs::remove_file(run.state_file());
    }
    Ok(report)
}

/// The run folder and its recorded state; an error when there is none.
fn recorded(dir: &std::path::Path) -> Result<(ClusterDir, ClusterState), LocalError> {
    let run = ClusterDir::new(dir);
    let state = run
        .read_state()
        .map_err(|source| LocalError::Io {
            path: run.state_file(),
            source,
        })?
        .ok_or_else(|| LocalError::NotRunning {
            dir: dir.to_path_buf(),
        })?;
    Ok((run, state))
}

/// Set by `local up` in the background process it starts, so that process records itself.
pub const SUPERVISED_ENV: &str = "GPUCONFORM_SUPERVISED";

fn supervisor_record() -> Option<ProcessRecord> {
    std::env::var_os(SUPERVISED_ENV)?;
    Some(ProcessRecord {
        name: "gpuconform (supervisor)".into(),
        pid: i32::try_from(std::process::id()).ok()?,
        exe: std::env::current_exe().ok()?,
        ports: Vec::new(),
        log: PathBuf::new(),
    })
}

/// The state of the cluster in `dir` and which of its processes are alive.
pub fn status(
    dir: &std::path::Path,
) -> Result<(ClusterState, Vec<(ProcessRecord, bool)>), LocalError> {
    let (_, state) = recorded(dir)?;
    let alive = state
        .processes
        .iter()
        .map(|p| (p.clone(), process::is_ours(p)))
        .collect();
    Ok((state, alive))
}

async fn stop_records(records: &[ProcessRecord]) -> StopReport {
    let mut report = StopReport::default();
    for record in records.iter().rev() {
        let outcome = process::stop(record, process::STOP_GRACE).await;
        report
            .processes
            .push((record.name.clone(), record.pid, outcome));
    }
    report.ports_left = records
        .iter()
        .flat_map(|r| r.ports.iter().copied())
        .filter(|p| process::port_in_use(*p))
        .collect();
    report
}
