//! Targets: where a run's cluster comes from, and how it goes away again.
//!
//! `local` starts a local cluster (with the GPU simulator) in the run's report folder and stops
//! it at teardown; `kubeconfig` uses an existing cluster resolved like kubectl (file, context,
//! `$KUBECONFIG`, `~/.kube/config`, in-cluster) and leaves it running.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::local::tools::Tools;
use crate::local::{LocalCluster, LocalError, UpOptions};
use crate::plan::Target;

/// Getting the cluster failed.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The local cluster did not start.
    #[error(transparent)]
    Local(#[from] LocalError),
    /// EC2 provisioning or the k3s bootstrap failed (what was created was torn down).
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    /// The kubeconfig could not be loaded or the API did not answer.
    #[error("connect to the cluster: {0}")]
    Connect(String),
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
    /// The local cluster, when this run started one.
    pub local: Option<LocalCluster>,
    /// The EC2 cluster, when this run provisioned one.
    pub aws: Option<crate::aws::AwsCluster>,
}

/// Overrides from the command line (`--kubeconfig`, `--context`).
#[derive(Debug, Clone, Default)]
pub struct TargetFlags {
    /// Kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Context.
    pub context: Option<String>,
}

/// Provisions (or connects to) the cluster.
#[expect(
    clippy::too_many_arguments,
    reason = "the resolved inputs of one phase"
)]
pub async fn provision(
    target: &Target,
    flags: &TargetFlags,
    catalog: &Catalog,
    fixture: Option<&ClusterFixture>,
    tools: Option<&Tools>,
    run_dir: &Path,
    timeout: Duration,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Cluster, TargetError> {
    match (target, fixture, tools) {
        (Target::Local { .. }, Some(fixture), Some(tools)) => {
            let opts = UpOptions {
                dir: run_dir.join("cluster"),
                timeout,
            };
            let local = LocalCluster::up(fixture, catalog, tools, &opts, progress).await?;
            let kubeconfig = local.dir.kubeconfig();
            // The kubeconfig goes next to the reports, where the design promises it.
            let _ = std::fs::copy(&kubeconfig, run_dir.join("kubeconfig"));
            Ok(Cluster {
                client: local.client.clone(),
                kubeconfig: Some(kubeconfig),
                context: None,
                name: format!("local/{}", fixture.name),
                version: local.state.kubernetes_version.clone(),
                local: Some(local),
                aws: None,
            })
        }
        (Target::Aws(spec), _, _) => {
            let run_id = run_dir
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default();
            let plan = run_id.rsplitn(3, '-').last().unwrap_or("plan").to_string();
            let aws = crate::aws::up(spec, &plan, &run_id, run_dir, timeout, progress).await?;
            let client = match crate::k8s::client_from_kubeconfig(&aws.kubeconfig).await {
                Ok(c) => c,
                Err(e) => {
                    let left = aws.down(progress).await;
                    return Err(TargetError::Aws(crate::aws::AwsError {
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
                kubeconfig: Some(aws.kubeconfig.clone()),
                context: None,
                name: format!("aws/{}", spec.region),
                version,
                local: None,
                aws: Some(aws),
            })
        }
        (Target::Local { .. }, _, _) => Err(TargetError::Connect(
            "the local target needs its fixture and the tool cache".into(),
        )),
        (Target::Kubeconfig { path, context }, _, _) => {
            let path = flags.kubeconfig.clone().or_else(|| path.clone());
            let context = flags.context.clone().or_else(|| context.clone());
            let options = kube::config::KubeConfigOptions {
                context: context.clone(),
                ..Default::default()
            };
            let config = match &path {
                Some(p) => {
                    let kc = kube::config::Kubeconfig::read_from(p)
                        .map_err(|e| TargetError::Connect(format!("read {}: {e}", p.display())))?;
                    kube::Config::from_custom_kubeconfig(kc, &options)
                        .await
                        .map_err(|e| TargetError::Connect(e.to_string()))?
                }
                None if context.is_some() => kube::Config::from_kubeconfig(&options)
                    .await
                    .map_err(|e| TargetError::Connect(e.to_string()))?,
                None => kube::Config::infer()
                    .await
                    .map_err(|e| TargetError::Connect(e.to_string()))?,
            };
            let name = config.cluster_url.host().unwrap_or("cluster").to_string();
            let client =
                kube::Client::try_from(config).map_err(|e| TargetError::Connect(e.to_string()))?;
            let version = tokio::time::timeout(timeout, client.apiserver_version())
                .await
                .map_err(|_| TargetError::Connect("the API server did not answer in time".into()))?
                .map_err(|e| TargetError::Connect(e.to_string()))?;
            Ok(Cluster {
                client,
                kubeconfig: path,
                context,
                name,
                version: version.git_version,
                local: None,
                aws: None,
            })
        }
    }
}
