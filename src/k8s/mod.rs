//! Thin helpers over kube-rs shared by the targets and the checks: building a client from a
//! kubeconfig file, and waits expressed as conditions with deadlines.

pub mod list;
pub mod node_meta;
pub mod wait;

use std::path::{Path, PathBuf};

use kube::config::{KubeConfigOptions, Kubeconfig};

/// Talking to the API server failed.
#[derive(Debug, thiserror::Error)]
pub enum K8sError {
    /// The kubeconfig could not be read or parsed.
    #[error("read kubeconfig {}", path.display())]
    Kubeconfig {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// The client could not be built from it.
    #[error("build a client from kubeconfig {}", path.display())]
    Client {
        /// Its path.
        path: PathBuf,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// An API call failed.
    #[error("{what}")]
    Api {
        /// The call, as a fragment (`create node gpu-worker-1`).
        what: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
    /// A wait ran past its deadline.
    #[error("wait for {what}: no success within {}", humantime::format_duration(*limit))]
    Timeout {
        /// What was awaited.
        what: String,
        /// The deadline it had.
        limit: std::time::Duration,
    },
    /// A watch broke in a way retries did not fix.
    #[error("watch {what}")]
    Watch {
        /// What was watched.
        what: String,
        /// Why.
        #[source]
        source: kube::runtime::wait::Error,
    },
}

impl K8sError {
    /// Wraps an API error with the call that failed.
    pub fn api(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Self {
        let what = what.into();
        move |source| Self::Api { what, source }
    }
}

/// A client for the cluster a kubeconfig file points at (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, K8sError> {
    let kubeconfig = Kubeconfig::read_from(path).map_err(|source| K8sError::Kubeconfig {
        path: path.to_path_buf(),
        source,
    })?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|source| K8sError::Kubeconfig {
            path: path.to_path_buf(),
            source,
        })?;
    kube::Client::try_from(config).map_err(|source| K8sError::Client {
        path: path.to_path_buf(),
        source,
    })
}
