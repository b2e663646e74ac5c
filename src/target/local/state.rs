//! The run folder of a local cluster and the state file in it.
//!
//! ```text
//! <dir>/state.json      what is running: pids, ports, API URL (written before `up` returns)
//! <dir>/kubeconfig      admin kubeconfig, certificates embedded (give it to kubectl and helm)
//! <dir>/pki/            CA, serving and client certificates, service-account key
//! <dir>/logs/<c>.log    each component's stdout and stderr
//! <dir>/etcd/           etcd's data
//! <dir>/kwok/           kwok's configuration and the simulated containers' log files
//! ```
//! `local down` and `local status` work from `state.json` alone, from any later process.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::process::ProcessRecord;

/// Format version of `state.json`.
pub const STATE_VERSION: u32 = 1;

/// The contents of `state.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterState {
    /// Format version.
    pub version: u32,
    /// Fixture name.
    pub cluster: String,
    /// Fixture file.
    pub fixture: PathBuf,
    /// API server URL.
    pub server: String,
    /// Kubernetes version of the control plane.
    pub kubernetes_version: String,
    /// When `up` started (RFC 3339).
    pub started_at: String,
    /// Seconds from start to ready.
    pub ready_seconds: f64,
    /// Node names created.
    pub nodes: Vec<String>,
    /// Processes in start order.
    pub processes: Vec<ProcessRecord>,
    /// The `gpuconform` process that started and supervises the components, when `local up`
    /// runs them in the background (stopping it stops them; they die with it).
    #[serde(default)]
    pub supervisor: Option<ProcessRecord>,
}

/// The paths inside a local cluster's folder (`reports/<run-id>/cluster` during a run).
#[derive(Debug, Clone)]
pub struct ClusterDir {
    /// The folder.
    pub root: PathBuf,
}

impl ClusterDir {
    /// A run folder at `root` (not created yet).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// `state.json`.
    pub fn state_file(&self) -> PathBuf {
        self.root.join("state.json")
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> PathBuf {
        self.root.join("kubeconfig")
    }

    /// Certificates and keys.
    pub fn pki(&self) -> PathBuf {
        self.root.join("pki")
    }

    /// Component logs.
    pub fn logs(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// A component's log file.
    pub fn log(&self, component: &str) -> PathBuf {
        self.logs().join(format!("{component}.log"))
    }

    /// etcd data.
    pub fn etcd(&self) -> PathBuf {
        self.root.join("etcd")
    }

    /// kwok configuration and simulated container logs.
    pub fn kwok(&self) -> PathBuf {
        self.root.join("kwok")
    }

    /// Reads `state.json`, `None` when there is none.
    pub fn read_state(&self) -> std::io::Result<Option<ClusterState>> {
        match std::fs::read_to_string(self.state_file()) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes `state.json` atomically (a reader never sees half a file).
    pub fn write_state(&self, state: &ClusterState) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        write_atomic(&self.state_file(), text.as_bytes())
    }
}

/// Writes a file through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// Writes a private file (keys): mode 0600.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)
}
