//! The real `helm` CLI, pointed at the run's cluster: install, status and uninstall of the GPU
//! Operator release. The harness installs charts the way users do, so chart hooks, CRDs and
//! values behave exactly as in production.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::plan::OperatorSpec;

/// helm failed.
#[derive(Debug, thiserror::Error)]
#[error("helm {action}: {message}")]
pub struct HelmError {
    /// What was attempted.
    pub action: String,
    /// helm's stderr (last lines) or the spawn error.
    pub message: String,
}

/// Whether helm failed mapping the chart's objects because the API server did not serve the
/// kind of a CRD the chart itself had just created (helm/helm#6332: discovery lags the CRD's
/// Established condition on a busy API server). helm stores no release in that case.
pub fn crd_race(e: &HelmError) -> bool {
    e.message
        .contains("unable to build kubernetes objects from release manifest")
        && e.message.contains("no matches for kind")
}

/// A release as `helm list` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Release {
    /// `deployed`, `failed`, `pending-install`, ...
    pub status: String,
    /// Chart and version, `gpu-operator-v26.7.0`.
    pub chart: String,
    /// Revision number.
    pub revision: u64,
}

/// How to run helm against one cluster.
#[derive(Debug, Clone)]
pub struct Helm {
    /// The helm binary.
    pub bin: PathBuf,
    /// Kubeconfig file.
    pub kubeconfig: Option<PathBuf>,
    /// Context in it.
    pub context: Option<String>,
}

impl Helm {
    fn command(&self) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(&self.bin);
        if let Some(k) = &self.kubeconfig {
            c.arg("--kubeconfig").arg(k);
        }
        if let Some(ctx) = &self.context {
            c.arg("--kube-context").arg(ctx);
        }
        // Its own process group: a Ctrl-C in the terminal reaches gpuconform, which decides
        // (stop the step, then teardown), and does not kill helm in the middle of a hook.
        c.process_group(0);
        c.kill_on_drop(true);
        c
    }

    async fn output(&self, action: &str, args: &[String]) -> Result<String, HelmError> {
        let out = self
            .command()
            .args(args)
            .output()
            .await
            .map_err(|e| HelmError {
                action: action.into(),
                message: format!("cannot run {}: {e}", self.bin.display()),
            })?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).to_string())
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            Err(HelmError {
                action: action.into(),
                message: tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            })
        }
    }

    /// `helm upgrade --install` with the values file; does not wait for readiness (the
    /// operator check does, by watching the ClusterPolicy). `reuse_values`: keep the release's
    /// own values and apply the file over them (adopting a release the run did not install).
    pub async fn install(
        &self,
        spec: &OperatorSpec,
        values: &Path,
        timeout: Duration,
        reuse_values: bool,
    ) -> Result<String, HelmError> {
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            "--install".into(),
            spec.release.clone(),
            spec.chart.clone(),
            "--namespace".into(),
            spec.namespace.clone(),
            "--create-namespace".into(),
            "--values".into(),
            values.display().to_string(),
            "--timeout".into(),
            format!("{}s", timeout.as_secs().max(1)),
        ];
        if let Some(repo) = &spec.repo {
            args.extend(["--repo".into(), repo.clone()]);
        }
        if let Some(v) = &spec.version {
            args.extend(["--version".into(), v.clone()]);
        }
        if reuse_values {
            args.push("--reuse-values".into());
        }
        self.output("upgrade --install", &args).await
    }

    /// Asks the release for another driver: `helm upgrade --reuse-values --set-string
    /// driver.version=…`, keeping every other value the release has. With a new chart version
    /// the release's values are laid over the new chart's defaults instead
    /// (`--reset-then-reuse-values`, helm ≥ 3.14): `--reuse-values` would drop the new chart's
    /// new defaults. No `--wait`: the upgrade controller's work is watched node by node.
    pub async fn set_driver(
        &self,
        spec: &OperatorSpec,
        driver: &str,
        chart_version: Option<&str>,
        timeout: Duration,
    ) -> Result<String, HelmError> {
        let mut args: Vec<String> = vec![
            "upgrade".into(),
            spec.release.clone(),
            spec.chart.clone(),
            "--namespace".into(),
            spec.namespace.clone(),
            "--set-string".into(),
            format!("driver.version={driver}"),
            "--timeout".into(),
            format!("{}s", timeout.as_secs().max(1)),
        ];
        if let Some(repo) = &spec.repo {
            args.extend(["--repo".into(), repo.clone()]);
        }
        if let Some(v) = chart_version.or(spec.version.as_deref()) {
            args.extend(["--version".into(), v.to_string()]);
        }
        args.push(if chart_version.is_some() {
            "--reset-then-reuse-values".into()
        } else {
            "--reuse-values".into()
        });
        self.output("upgrade --reuse-values", &args).await
    }

    /// The release's status, chart and revision, `None` if absent.
    /// Half-done releases (`pending-install`, `uninstalling`, ...) count as present: helm 3 lists
    /// only deployed and failed ones by default, so every status is asked for explicitly.
    pub async fn status(&self, spec: &OperatorSpec) -> Result<Option<Release>, HelmError> {
        let args: Vec<String> = vec![
            "list".into(),
            "--namespace".into(),
            spec.namespace.clone(),
            "--filter".into(),
            format!("^{}$", spec.release),
            "--deployed".into(),
            "--failed".into(),
            "--pending".into(),
            "--superseded".into(),
            "--uninstalling".into(),
            "--output".into(),
            "json".into(),
        ];
        let out = self.output("list", &args).await?;
        let list: serde_json::Value = serde_json::from_str(&out).map_err(|e| HelmError {
            action: "list".into(),
            message: format!("unreadable output: {e}"),
        })?;
        Ok(list.as_array().and_then(|a| {
            a.iter()
                .find(|r| r["name"] == spec.release.as_str())
                .map(|r| Release {
                    status: r["status"].as_str().unwrap_or_default().to_string(),
                    chart: r["chart"].as_str().unwrap_or_default().to_string(),
                    // helm 3 lists the revision as a string, helm 4 as a number.
                    revision: r["revision"]
                        .as_u64()
                        .or_else(|| r["revision"].as_str().and_then(|s| s.parse().ok()))
                        .unwrap_or(0),
                })
        }))
    }

    /// `helm rollback RELEASE REVISION --wait`: back to the revision the run found.
    pub async fn rollback(
        &self,
        spec: &OperatorSpec,
        revision: u64,
        timeout: Duration,
    ) -> Result<String, HelmError> {
        let args: Vec<String> = vec![
            "rollback".into(),
            spec.release.clone(),
            revision.to_string(),
            "--namespace".into(),
            spec.namespace.clone(),
            // No --wait, as at install: a crash-looping operand would hold it until the timeout.
            "--timeout".into(),
            format!("{}s", timeout.as_secs().max(1)),
        ];
        self.output("rollback", &args).await
    }

    /// `helm uninstall --wait`.
    pub async fn uninstall(
        &self,
        spec: &OperatorSpec,
        timeout: Duration,
    ) -> Result<String, HelmError> {
        let args: Vec<String> = vec![
            "uninstall".into(),
            spec.release.clone(),
            "--namespace".into(),
            spec.namespace.clone(),
            "--wait".into(),
            "--timeout".into(),
            format!("{}s", timeout.as_secs().max(1)),
        ];
        self.output("uninstall", &args).await
    }
}
