//! The `kubeconfig` target: a cluster that exists before the run and stays after it, resolved
//! like kubectl (file, context, `$KUBECONFIG`, `~/.kube/config`, in-cluster).

use std::path::PathBuf;
use std::time::Duration;

use super::{Cluster, Kind};

/// The kubeconfig could not be loaded or the API did not answer.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The kubeconfig file could not be read.
    #[error("connect to the cluster: read {}: {cause}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        cause: kube::config::KubeconfigError,
    },
    /// No usable configuration.
    // kube's errors print their own causes: they are part of the message, not a source, so
    // the chain does not repeat them.
    #[error("connect to the cluster: {0}")]
    Config(Box<dyn std::error::Error + Send + Sync>),
    /// A ServiceAccount file of the in-cluster configuration could not be read.
    #[error("connect to the cluster: in-cluster configuration: {what} {}", path.display())]
    InCluster {
        /// What was read.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The API server did not answer.
    #[error("connect to the cluster at {server}: {cause}")]
    Api {
        /// The API server's address.
        server: String,
        /// Why (kube's errors print their own causes).
        cause: kube::Error,
    },
    /// The API server did not answer in time.
    #[error("connect to the cluster at {server}: the API server did not answer in {seconds} s")]
    Timeout {
        /// The API server's address.
        server: String,
        /// The time limit.
        seconds: u64,
    },
}

/// The kubeconfig file to read, in kubectl's order: the `--kubeconfig` flag, then
/// `$KUBECONFIG` (`None` here: kube reads and merges its list itself), then the plan's
/// `target.kubeconfig.path`, then (`None`) `~/.kube/config`, then the in-cluster config.
pub fn kubeconfig_path(
    flag: Option<&PathBuf>,
    env: Option<&std::ffi::OsStr>,
    plan: Option<&PathBuf>,
) -> Option<PathBuf> {
    if let Some(f) = flag {
        return Some(f.clone());
    }
    if env.is_some_and(|e| !e.is_empty()) {
        return None;
    }
    plan.cloned()
}

/// The kubeconfig to use: `path` and `context` as given, except in a pod (none given, no
/// kubeconfig anywhere, the service's address in the environment), where it is the
/// in-cluster configuration's kubeconfig ([`super::in_cluster::kubeconfig`]).
pub fn with_in_cluster(
    path: Option<PathBuf>,
    context: Option<String>,
) -> Result<(Option<PathBuf>, Option<String>), ConnectError> {
    if path.is_none() && context.is_none() && super::in_cluster::applies() {
        let k = super::in_cluster::kubeconfig(
            &super::in_cluster::dir(),
            &super::in_cluster::cache_dir(),
        )?;
        return Ok((Some(k), None));
    }
    Ok((path, context))
}

/// Connects with the given kubeconfig and context (None: kubectl's default resolution).
pub async fn connect(
    path: Option<PathBuf>,
    context: Option<String>,
    timeout: Duration,
) -> Result<Cluster, ConnectError> {
    let (path, context) = with_in_cluster(path, context)?;
    let config = load_config(path.as_ref(), context.as_ref()).await?;
    connect_with(config, path, context, timeout).await
}

/// Connects with a configuration already loaded from `path` and `context` (kept for helm).
pub async fn connect_with(
    config: kube::Config,
    path: Option<PathBuf>,
    context: Option<String>,
    timeout: Duration,
) -> Result<Cluster, ConnectError> {
    let name = config.cluster_url.host().unwrap_or("cluster").to_string();
    let server = config.cluster_url.to_string();
    let api = |cause| ConnectError::Api {
        server: server.clone(),
        cause,
    };
    let client = kube::Client::try_from(config).map_err(api)?;
    let version = tokio::time::timeout(timeout, client.apiserver_version())
        .await
        .map_err(|_| ConnectError::Timeout {
            server: server.clone(),
            seconds: timeout.as_secs(),
        })?
        .map_err(api)?;
    Ok(Cluster {
        client,
        kubeconfig: path,
        context,
        name,
        version: version.git_version,
        kind: Kind::Existing,
    })
}

/// The client configuration from a kubeconfig and context, as kubectl resolves them.
pub async fn load_config(
    path: Option<&PathBuf>,
    context: Option<&String>,
) -> Result<kube::Config, ConnectError> {
    let context = context.cloned();
    let options = kube::config::KubeConfigOptions {
        context: context.clone(),
        ..Default::default()
    };
    let boxed = |e: kube::config::KubeconfigError| ConnectError::Config(Box::new(e));
    let config = match path {
        Some(p) => {
            let kc =
                kube::config::Kubeconfig::read_from(p).map_err(|cause| ConnectError::Read {
                    path: p.clone(),
                    cause,
                })?;
            kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .map_err(boxed)?
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .map_err(boxed)?,
        None => kube::Config::infer()
            .await
            .map_err(|e| ConnectError::Config(Box::new(e)))?,
    };
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;

    #[test]
    fn kubeconfig_precedence_is_kubectls() {
        let flag = PathBuf::from("flag");
        let plan = PathBuf::from("plan");
        let env = OsStr::new("a:b");
        let rows = [
            (Some(&flag), Some(env), Some(&plan), Some("flag")),
            (None, Some(env), Some(&plan), None),
            (None, Some(OsStr::new("")), Some(&plan), Some("plan")),
            (None, None, Some(&plan), Some("plan")),
            (None, None, None, None),
        ];
        for (f, e, p, want) in rows {
            assert_eq!(
                kubeconfig_path(f, e, p),
                want.map(PathBuf::from),
                "{f:?} {e:?} {p:?}"
            );
        }
    }
}
