//! `gpuconform retrieve`: copies a finished in-cluster run's reports off the volume the chart's
//! CronJob writes them to (sonobuoy's `retrieve`). The CronJob's pod is gone when the run is
//! over, so a short-lived pod mounts the same claim read-only, `tar` streams the run's folder
//! out through `pods/exec`, and the pod is deleted whatever happens.
//!
//! Everything here is pure (what the pod is, where the folder is, which entries are safe to
//! write); `commands::retrieve` does the calls.

pub mod unpack;

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod, PodSpec};

/// The name of the chart's reports volume in the CronJob's pod template.
pub const REPORTS_VOLUME: &str = "reports";
/// The helper pod's one container.
pub const CONTAINER: &str = "retrieve";
/// The label every helper pod carries, to find one a killed retrieve left behind.
pub const LABEL: (&str, &str) = ("app.kubernetes.io/component", "retrieve");

/// Every way a retrieve fails; [`RetrieveError::exit_code`] maps each to a documented code.
#[derive(Debug, thiserror::Error)]
pub enum RetrieveError {
    /// The `--run` flag.
    #[error("read --run")]
    Flag(#[source] SourceError),
    /// The chart's CronJob is not there.
    #[error("find cronjob {namespace}/{name} (the chart's; check --namespace and --release)")]
    NoCronJob {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The summary ConfigMap is not there (no run has finished).
    #[error(
        "find configmap {namespace}/{name}: no in-cluster run has finished yet (or pass --run)"
    )]
    NoSummary {
        /// Namespace.
        namespace: String,
        /// Name.
        name: String,
    },
    /// The CronJob or the summary does not say where the reports are.
    #[error("find the reports")]
    Source(#[from] SourceError),
    /// A call to the cluster failed or a wait timed out.
    #[error(transparent)]
    Cluster(#[from] crate::k8s::K8sError),
    /// The helper pod ended or failed before the copy.
    #[error("start helper pod {pod}: it is {phase}, not running: {why}")]
    PodNotRunning {
        /// The pod.
        pod: String,
        /// Its phase.
        phase: String,
        /// Its containers' waiting or terminated reasons.
        why: String,
    },
    /// `tar` in the helper did not succeed (no such run, most often).
    #[error("copy the run with tar in helper pod {pod}: {message}{}", if .stderr.is_empty() { String::new() } else { format!(" ({})", .stderr.trim()) })]
    Tar {
        /// The pod.
        pod: String,
        /// The exec status message.
        message: String,
        /// What tar printed.
        stderr: String,
    },
    /// The archive was larger than any run folder should be.
    #[error("copy run {run}: the archive is over {limit_mib} MiB; copy it with kubectl instead")]
    TooLarge {
        /// The run.
        run: String,
        /// The cap.
        limit_mib: u64,
    },
    /// The stream could not be written out.
    #[error("write the run folder")]
    Unpack(#[from] unpack::UnpackError),
    /// A signal stopped it (the helper pod was deleted).
    #[error("copy the run: interrupted by {0} (the helper pod was deleted)")]
    Interrupted(&'static str),
}

impl RetrieveError {
    /// The process exit code (`exit_codes`).
    pub fn exit_code(&self) -> u8 {
        use crate::exit_codes::{INFRA_ERROR, INPUT_ERROR, INTERRUPTED};
        match self {
            Self::Flag(_) | Self::NoCronJob { .. } | Self::NoSummary { .. } => INPUT_ERROR,
            Self::Unpack(unpack::UnpackError::Exists(_)) => INPUT_ERROR,
            Self::Interrupted(_) => INTERRUPTED,
            _ => INFRA_ERROR,
        }
    }
}

/// Why the cluster's objects do not say where the reports are.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SourceError {
    /// The CronJob's pod template mounts no claim named `reports`.
    #[error(
        "cronjob {0} has no `{REPORTS_VOLUME}` volume from a PersistentVolumeClaim (is it the chart's?)"
    )]
    NoClaim(String),
    /// No container of the pod template mounts it.
    #[error("cronjob {0}: no container mounts the `{REPORTS_VOLUME}` volume")]
    NoMount(String),
    /// The summary ConfigMap has no `runId`.
    #[error("configmap {0} has no runId: no in-cluster run has finished yet")]
    NoRun(String),
    /// A run id that cannot be one folder's name.
    #[error("`{0}` is not a run id (letters, digits, `.`, `_`, `-`; not starting with `-` or `.`)")]
    BadRunId(String),
}

/// Where the CronJob keeps its reports, and where its pods may run (a ReadWriteOnce claim is
/// attached to one node at a time: the helper goes where the run went).
#[derive(Debug, Clone, PartialEq)]
pub struct Source {
    /// The PersistentVolumeClaim.
    pub claim: String,
    /// Where the run's container mounts it (the `--reports` folder).
    pub mount: String,
    /// The pod template's scheduling: node selector, tolerations, affinity.
    pub scheduling: PodSpec,
}

/// Reads the reports claim, its mount path and the scheduling constraints from the CronJob.
pub fn source(cronjob: &CronJob) -> Result<Source, SourceError> {
    let name = cronjob.metadata.name.clone().unwrap_or_default();
    let spec = cronjob
        .spec
        .as_ref()
        .and_then(|s| s.job_template.spec.as_ref())
        .and_then(|j| j.template.spec.as_ref());
    let Some(spec) = spec else {
        return Err(SourceError::NoClaim(name));
    };
    let claim = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == REPORTS_VOLUME)
        .and_then(|v| v.persistent_volume_claim.as_ref())
        .map(|c| c.claim_name.clone())
        .ok_or_else(|| SourceError::NoClaim(name.clone()))?;
    let mount = spec
        .containers
        .iter()
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .find(|m| m.name == REPORTS_VOLUME)
        .map(|m| m.mount_path.clone())
        .ok_or(SourceError::NoMount(name))?;
    Ok(Source {
        claim,
        mount,
        scheduling: PodSpec {
            node_selector: spec.node_selector.clone(),
            tolerations: spec.tolerations.clone(),
            affinity: spec.affinity.clone(),
            ..PodSpec::default()
        },
    })
}

/// The run the summary ConfigMap names (the last one that finished).
pub fn last_run(summary: &ConfigMap) -> Result<String, SourceError> {
    let name = summary.metadata.name.clone().unwrap_or_default();
    let id = summary
        .data
        .as_ref()
        .and_then(|d| d.get("runId"))
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .ok_or(SourceError::NoRun(name))?;
    run_id(&id)
}

/// A run id safe to hand to `tar` as one relative folder name.
pub fn run_id(id: &str) -> Result<String, SourceError> {
    let ok = !id.is_empty()
        && !id.starts_with(['-', '.'])
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(id.to_string())
    } else {
        Err(SourceError::BadRunId(id.to_string()))
    }
}

/// The helper pod: the claim read-only at the run's mount path, that path as the working
/// directory (so the archive holds `<run-id>/…` only), a `sleep` that ends it by itself if
/// retrieve is killed before it deletes it, and the `restricted` Pod Security level the
/// chart's namespace enforces.
pub fn pod(name: &str, source: &Source, image: &str, lifetime_s: u32) -> Pod {
    let mut pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {
                LABEL.0: LABEL.1,
                "app.kubernetes.io/name": "gpuconform",
                "app.kubernetes.io/managed-by": "gpuconform",
            },
        },
        "spec": {
            "restartPolicy": "Never",
            "activeDeadlineSeconds": lifetime_s + 60,
            "terminationGracePeriodSeconds": 0,
            "automountServiceAccountToken": false,
            "securityContext": {
                "runAsNonRoot": true,
                "runAsUser": 65532,
                "runAsGroup": 65532,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [{
                "name": CONTAINER,
                "image": image,
                "command": ["sleep", lifetime_s.to_string()],
                "workingDir": source.mount,
                "securityContext": {
                    "allowPrivilegeEscalation": false,
                    "readOnlyRootFilesystem": true,
                    "capabilities": {"drop": ["ALL"]},
                },
                "resources": {
                    "requests": {"cpu": "10m", "memory": "16Mi"},
                    "limits": {"memory": "128Mi"},
                },
                "volumeMounts": [{"name": REPORTS_VOLUME, "mountPath": source.mount, "readOnly": true}],
            }],
            "volumes": [{
                "name": REPORTS_VOLUME,
                "persistentVolumeClaim": {"claimName": source.claim, "readOnly": true},
            }],
        },
    }))
    .unwrap_or_default();
    if let Some(spec) = pod.spec.as_mut() {
        spec.node_selector = source.scheduling.node_selector.clone();
        spec.tolerations = source.scheduling.tolerations.clone();
        spec.affinity = source.scheduling.affinity.clone();
    }
    pod
}

/// The command run in the helper: the run's folder as a tar stream on stdout.
pub fn tar_command(run: &str) -> Vec<String> {
    ["tar", "-cf", "-", run].map(str::to_string).to_vec()
}

#[cfg(test)]
mod tests;
