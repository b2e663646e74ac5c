//! Targets: where a run's cluster comes from, what it is, and how it goes away again.
//!
//! - `local` starts a local cluster (real control plane, kwok nodes, the GPU simulator) in the
//!   run's report folder and stops it at teardown;
//! - `aws` provisions EC2 node pools with k3s, removes them by tag at teardown, and says what the
//!   run costs;
//! - `kubeconfig` ([`existing`]) uses an existing cluster resolved like kubectl and leaves it
//!   running.
//!
//! A [`Cluster`] is one of the three ([`Kind`]); the runner asks it for its GPU nodes, its cost
//! note and its teardown, and never branches on the target itself.

pub mod aws;
pub mod existing;
pub mod gpu_nodes;
pub mod in_cluster;
pub mod local;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::plan::{Plan, Target};
use crate::report::InstanceUse;
pub use gpu_nodes::{Discovery, GpuNode, Unexpected};
use local::tools::Tools;
use local::{LocalCluster, LocalError, UpOptions};

/// Getting the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The local cluster did not start.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// EC2 provisioning or the k3s bootstrap failed (what was created was torn down).
    #[error(transparent)]
    Aws(#[from] aws::AwsError),
    /// The kubeconfig could not be loaded or the API did not answer.
    #[error(transparent)]
    Connect(#[from] existing::ConnectError),
    /// The local target was asked for without its fixture or tool cache.
    #[error("connect to the cluster: the local target needs its fixture and the tool cache")]
    LocalInputs,
}

impl TargetError {
    /// Whether a signal stopped provisioning.
    pub fn is_interrupted(&self) -> bool {
        matches!(self, Self::Local(LocalError::Interrupted(_)))
    }
}

/// Which kind of cluster a run has. There is one per run, so its size does not matter.
#[expect(clippy::large_enum_variant, reason = "one value per run")]
pub enum Kind {
    /// A local cluster this run started.
    Local(LocalCluster),
    /// EC2 instances this run provisioned.
    Aws(aws::AwsCluster),
    /// A cluster that was there before the run and stays after it.
    Existing,
}

/// A cluster for the run.
pub struct Cluster {
    /// Admin client.
    pub client: kube::Client,
    /// Kubeconfig file for helm (None: in-cluster / default resolution).
    pub kubeconfig: Option<PathBuf>,
    /// Context for helm.
    pub context: Option<String>,
    /// Name for reports.
    pub name: String,
    /// API server version.
    pub version: String,
    /// Local, EC2 or existing.
    pub kind: Kind,
}

/// Overrides from the command line (`--kubeconfig`, `--context`).
#[derive(Debug, Clone, Default)]
pub struct TargetFlags {
    /// Kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Context.
    pub context: Option<String>,
}

impl TargetFlags {
    /// The kubeconfig and context of a `kubeconfig` target: the flags over `$KUBECONFIG` over
    /// the plan's (kubectl's order, see [`existing::kubeconfig_path`]).
    pub fn resolve(
        &self,
        path: Option<&PathBuf>,
        context: Option<&String>,
    ) -> (Option<PathBuf>, Option<String>) {
        let env = std::env::var_os("KUBECONFIG");
        let path = existing::kubeconfig_path(self.kubeconfig.as_ref(), env.as_deref(), path);
        (path, self.context.clone().or_else(|| context.cloned()))
    }
}

/// What provisioning needs besides the plan's target.
pub struct Inputs<'a> {
    /// `--kubeconfig`/`--context`.
    pub flags: &'a TargetFlags,
    /// The instance catalog (local nodes are made from it).
    pub catalog: &'a Catalog,
    /// The local fixture.
    pub fixture: Option<&'a ClusterFixture>,
    /// The tool cache (local target).
    pub tools: Option<&'a Tools>,
    /// `reports/<run-id>`.
    pub run_dir: &'a Path,
    /// Where the cluster's state and credentials live, outside the reports
    /// ([`state_dir`]).
    pub state_dir: &'a Path,
    /// Run id (EC2 tags).
    pub run_id: &'a str,
    /// Plan name (EC2 tags).
    pub plan: &'a str,
    /// How long provisioning may take.
    pub timeout: Duration,
    /// What runs beside a local cluster (the GPU simulator).
    pub companion: Option<std::sync::Arc<dyn local::Companion>>,
}

/// Provisions (or connects to) the cluster.
pub async fn provision(
    target: &Target,
    i: &Inputs<'_>,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Cluster, TargetError> {
    match (target, i.fixture, i.tools) {
        (Target::Local { .. }, Some(fixture), Some(tools)) => {
            let opts = UpOptions {
                dir: i.state_dir.join("cluster"),
                timeout: i.timeout,
                companion: i.companion.clone(),
            };
            let local = LocalCluster::up(fixture, i.catalog, tools, &opts, progress).await?;
            let kubeconfig = local.dir.kubeconfig();
            Ok(Cluster {
                client: local.client.clone(),
                kubeconfig: Some(kubeconfig),
                context: None,
                name: format!("local/{}", fixture.name),
                version: local.state.kubernetes_version.clone(),
                kind: Kind::Local(local),
            })
        }
        (Target::Aws(spec), _, _) => {
            let cluster = aws::up(spec, i.plan, i.run_id, i.state_dir, i.timeout, progress).await?;
            let client = match crate::k8s::client_from_kubeconfig(&cluster.kubeconfig).await {
                Ok(c) => c,
                Err(e) => {
                    let left = cluster.down(progress).await;
                    return Err(TargetError::Aws(aws::AwsError {
                        message: e.to_string(),
                        left,
                    }));
                }
            };
            let version = client
                .apiserver_version()
                .await
                .map(|v| v.git_version)
                .unwrap_or_default();
            Ok(Cluster {
                client,
                kubeconfig: Some(cluster.kubeconfig.clone()),
                context: None,
                name: format!("aws/{}", spec.region),
                version,
                kind: Kind::Aws(cluster),
            })
        }
        (Target::Local { .. }, _, _) => Err(TargetError::LocalInputs),
        (Target::Kubeconfig { path, context }, _, _) => {
            let (path, context) = i.flags.resolve(path.as_ref(), context.as_ref());
            Ok(existing::connect(path, context, i.timeout).await?)
        }
    }
}

/// What an EC2 run will cost at most, said before anything is created (other targets: none).
pub fn cost_note(plan: &Plan) -> Option<String> {
    let Target::Aws(spec) = &plan.target else {
        return None;
    };
    let prices = aws::cost::PriceTable::embedded().ok()?;
    let t = &plan.timeouts;
    let hours = (t.provision + t.install + t.teardown).as_secs_f64() / 3600.0
        + plan.suites.len() as f64 * t.step.as_secs_f64() / 3600.0;
    Some(prices.estimate_line(spec, hours))
}

/// After an interrupted provisioning: an EC2 run may already have instances, so they are
/// removed by the run's tag; returns what is left. Other targets clean up by themselves.
pub async fn sweep_interrupted(target: &Target, run_id: &str, limit: Duration) -> Vec<String> {
    let Target::Aws(spec) = target else {
        return Vec::new();
    };
    let client = aws::ec2::client(&spec.region).await;
    aws::ec2::teardown(&client, run_id, Instant::now() + limit, &|_| {}).await
}

impl Cluster {
    /// The run created this cluster, so it goes entirely at teardown.
    pub fn created_by_run(&self) -> bool {
        !matches!(self.kind, Kind::Existing)
    }

    /// The cluster runs on EC2 instances this run provisioned.
    pub fn is_ec2(&self) -> bool {
        matches!(self.kind, Kind::Aws(_))
    }

    /// The cluster's GPU nodes, by the catalog.
    pub async fn gpu_nodes(
        &self,
        catalog: &Catalog,
        expects: &[crate::plan::expect::Expect],
    ) -> Result<gpu_nodes::Discovery, kube::Error> {
        gpu_nodes::discover(&self.client, catalog, expects).await
    }

    /// [`Self::gpu_nodes`] and the node list it was read from.
    pub async fn gpu_nodes_listed(
        &self,
        catalog: &Catalog,
        expects: &[crate::plan::expect::Expect],
    ) -> Result<(gpu_nodes::Discovery, Vec<k8s_openapi::api::core::v1::Node>), kube::Error> {
        gpu_nodes::discover_listed(&self.client, catalog, expects).await
    }

    /// What may remain when teardown is aborted, and how to remove it.
    pub fn abort_notes(&self, state_dir: &Path, run_id: &str) -> Vec<String> {
        match &self.kind {
            Kind::Local(_) => {
                let dir = state_dir.join("cluster");
                vec![format!(
                    "the local cluster in {} may still run: stop it with `gpuconform local down --dir {}`",
                    dir.display(),
                    dir.display()
                )]
            }
            Kind::Aws(_) => vec![format!(
                "EC2 instances of run {run_id} may still run: `gpuconform sweep --run-id {run_id} --yes`"
            )],
            Kind::Existing => Vec::new(),
        }
    }

    /// Removes the cluster if the run created it; returns what is left (`None`: an existing
    /// cluster, whose leftovers are the operator's) and the instances used. Once the cluster
    /// is gone its state folder (credentials included) goes too; a local cluster's logs move
    /// to the reports first.
    pub async fn teardown(
        self,
        state_dir: &Path,
        run_dir: &Path,
    ) -> (Option<Vec<String>>, Option<InstanceUse>) {
        match self.kind {
            Kind::Existing => (None, None),
            Kind::Aws(cluster) => {
                let left = cluster.down(&|_| {}).await;
                if left.is_empty() {
                    let _ = std::fs::remove_dir_all(state_dir);
                }
                let hours = cluster.instance_hours();
                let prices = aws::cost::PriceTable::embedded().ok();
                let usd: f64 = hours
                    .iter()
                    .map(|(t, h)| {
                        prices
                            .as_ref()
                            .and_then(|p| p.prices.get(t))
                            .copied()
                            .unwrap_or(0.0)
                            * h
                    })
                    .sum();
                let used = InstanceUse {
                    instance_hours: hours.into_iter().collect(),
                    estimated_usd: usd,
                };
                (Some(left), Some(used))
            }
            // A local cluster goes entirely, whatever was left inside it.
            Kind::Local(local) => {
                let logs = local.dir.logs();
                let report = local.stop().await;
                if report.is_clean() {
                    discard_state(state_dir, &logs, run_dir);
                }
                (Some(report.leftovers()), None)
            }
        }
    }
}

/// After the cluster is gone: its logs go to the reports (`cluster-logs/`); the database, the
/// keys and the kubeconfigs, of no use any more, are deleted.
pub fn discard_state(state_dir: &Path, logs: &Path, run_dir: &Path) {
    if logs.is_dir() {
        let to = run_dir.join("cluster-logs");
        if std::fs::rename(logs, &to).is_err() {
            copy_dir(logs, &to);
        }
    }
    let _ = std::fs::remove_dir_all(state_dir);
}

/// After a failed provisioning: the local cluster's logs are copied to the reports; its
/// certificates and keys and every kubeconfig in the state folder are deleted (the state file
/// stays, for `gpuconform local down`).
pub fn discard_credentials(state_dir: &Path, run_dir: &Path) {
    let cluster = local::state::ClusterDir::new(state_dir.join("cluster"));
    if cluster.logs().is_dir() {
        copy_dir(&cluster.logs(), &run_dir.join("cluster-logs"));
    }
    let _ = std::fs::remove_dir_all(cluster.pki());
    for dir in [state_dir.to_path_buf(), state_dir.join("cluster")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().contains("kubeconfig") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    // Nothing left in it (an EC2 run refused or torn down before its cluster): it goes too.
    let _ = std::fs::remove_dir(state_dir);
}

/// Copies the files of `from` into `to` (one level: log folders are flat), best effort.
fn copy_dir(from: &Path, to: &Path) {
    let _ = std::fs::create_dir_all(to);
    for e in std::fs::read_dir(from).into_iter().flatten().flatten() {
        let _ = std::fs::copy(e.path(), to.join(e.file_name()));
    }
}

/// Where a run's cluster state lives — a local cluster's certificates, keys and kubeconfigs, an
/// EC2 cluster's admin kubeconfig — kept out of the reports, which CI uploads as artifacts:
/// `$GPUCONFORM_STATE` or `~/.cache/gpuconform/runs`, then the run id. Removed once the
/// cluster is gone.
pub fn state_dir(run_id: &str) -> PathBuf {
    let root = match std::env::var_os("GPUCONFORM_STATE") {
        Some(dir) => PathBuf::from(dir),
        None => local::tools::Tools::default_dir()
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from(".cache/gpuconform"))
            .join("runs"),
    };
    root.join(run_id)
}
