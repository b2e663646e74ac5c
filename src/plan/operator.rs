//! The plan's `operator:` section: which chart, where, with which values, and what the run may
//! do with a release that is already there (`mode`, `adopt`).

use std::path::Path;

use serde::Deserialize;

use super::Target;
use crate::input::{InputError, Spanned};

/// The real GPU Operator chart, used when a plan names none.
pub const NVIDIA_CHART: &str = "gpu-operator";
/// NVIDIA's Helm repository.
pub const NVIDIA_REPO: &str = "https://helm.ngc.nvidia.com/nvidia";

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawOperator {
    #[serde(default)]
    chart: Option<Spanned<String>>,
    #[serde(default)]
    repo: Option<Spanned<String>>,
    #[serde(default)]
    version: Option<String>,
    #[serde(default)]
    namespace: Option<Spanned<String>>,
    #[serde(default)]
    release: Option<Spanned<String>>,
    #[serde(default)]
    values: Option<serde_json::Value>,
    #[serde(default)]
    mode: Option<Spanned<String>>,
    #[serde(default)]
    adopt: Option<Spanned<bool>>,
}

/// The GPU Operator chart and how to install it.
#[derive(Debug, Clone, PartialEq)]
pub struct OperatorSpec {
    /// Chart: a path to a chart folder, `repo/name`, or the chart name in `repo`.
    pub chart: String,
    /// Chart repository URL (`helm --repo`).
    pub repo: Option<String>,
    /// Chart version.
    pub version: Option<String>,
    /// Namespace, created when missing and deleted at uninstall.
    pub namespace: String,
    /// Helm release name.
    pub release: String,
    /// Chart values (written to a values file for helm).
    pub values: serde_json::Value,
    /// Install the operator, or verify the one already there.
    pub mode: OperatorMode,
    /// `install` onto a cluster that already has the release: upgrade it with its own values
    /// plus the plan's, and roll back to the previous revision at teardown.
    pub adopt: bool,
}

/// What a run does with the GPU Operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperatorMode {
    /// Install (or, with `adopt`, upgrade) the chart; the default for every target.
    Install,
    /// Verify-only: nothing is installed, upgraded or uninstalled; the checks read what is
    /// already there.
    Existing,
}

impl OperatorSpec {
    /// `driver.version` from the values, if set.
    pub fn driver_version(&self) -> Option<String> {
        self.values.pointer("/driver/version").and_then(|v| {
            v.as_str()
                .map(str::to_string)
                .or_else(|| Some(v.to_string()))
        })
    }

    /// `mig.strategy` from the values, else the chart's default `single`.
    pub fn mig_strategy(&self) -> String {
        self.values
            .pointer("/mig/strategy")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("single")
            .to_string()
    }

    /// Whether the chart deploys no NFD (`nfd.enabled=false`): the cluster runs its own.
    pub fn external_nfd(&self) -> bool {
        self.values
            .pointer("/nfd/enabled")
            .and_then(serde_json::Value::as_bool)
            == Some(false)
    }

    /// Whether `operator.cleanupCRD` is set, so the CRDs must be gone after uninstall.
    pub fn cleanup_crds(&self) -> bool {
        self.values
            .pointer("/operator/cleanupCRD")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }
}

/// Validates the section; `name` is the plan's name (where a bad `values` is reported).
pub(super) fn validate(
    file: &Path,
    raw: Option<&RawOperator>,
    name: &Spanned<String>,
    target: &Target,
) -> Result<OperatorSpec, InputError> {
    let op = raw.cloned().unwrap_or(RawOperator {
        chart: None,
        repo: None,
        version: None,
        namespace: None,
        release: None,
        values: None,
        mode: None,
        adopt: None,
    });
    let mode = match &op.mode {
        None => OperatorMode::Install,
        Some(m) if m.value == "install" => OperatorMode::Install,
        Some(m) if m.value == "existing" => {
            if !matches!(target, Target::Kubeconfig { .. }) {
                return Err(InputError::at(
                    file,
                    m,
                    "operator.mode",
                    "`existing` verifies an operator already on the cluster; it needs a `kubeconfig` target (a cluster the run creates has none)",
                ));
            }
            OperatorMode::Existing
        }
        Some(m) => {
            return Err(InputError::at(
                file,
                m,
                "operator.mode",
                format!(
                    "unknown mode `{}`, expected `install` or `existing`",
                    m.value
                ),
            ));
        }
    };
    let adopt = match &op.adopt {
        Some(a) if a.value && mode == OperatorMode::Existing => {
            return Err(InputError::at(
                file,
                a,
                "operator.adopt",
                "`adopt` upgrades an existing release; verify-only (`mode: existing`) never changes it",
            ));
        }
        Some(a) => a.value,
        None => false,
    };
    // No chart named: the real one from NVIDIA's repository.
    let (chart, repo) = match (&op.chart, &op.repo) {
        (None, None) => (NVIDIA_CHART.to_string(), Some(NVIDIA_REPO.to_string())),
        (None, Some(r)) => (NVIDIA_CHART.to_string(), Some(r.value.clone())),
        (Some(c), r) => (
            super::expand(file, c, "operator.chart")?,
            r.as_ref().map(|r| r.value.clone()),
        ),
    };
    if let Some(c) = &op.chart {
        let chart_is_path = chart.starts_with('.')
            || chart.starts_with('/')
            || c.value.starts_with('~')
            || chart.starts_with("fixtures/");
        if chart_is_path && op.repo.is_none() && !Path::new(&chart).join("Chart.yaml").is_file() {
            return Err(InputError::at(
                file,
                c,
                "operator.chart",
                format!("no chart at `{chart}` (no Chart.yaml there)"),
            ));
        }
    }
    if let Some(repo) = &op.repo
        && !(repo.value.starts_with("https://")
            || repo.value.starts_with("http://")
            || repo.value.starts_with("oci://"))
    {
        return Err(InputError::at(
            file,
            repo,
            "operator.repo",
            format!("`{}` is not a chart repository URL", repo.value),
        ));
    }
    let dns = |s: &Spanned<String>, field: &str| -> Result<String, InputError> {
        let ok = !s.value.is_empty()
            && s.value.len() <= 63
            && s.value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(s.value.clone())
        } else {
            Err(InputError::at(
                file,
                s,
                field,
                format!("`{}` is not a DNS label", s.value),
            ))
        }
    };
    let namespace = match &op.namespace {
        Some(n) => dns(n, "operator.namespace")?,
        None => "gpu-operator".into(),
    };
    let release = match &op.release {
        Some(r) => dns(r, "operator.release")?,
        None => "gpu-operator".into(),
    };
    let values = op.values.clone().unwrap_or(serde_json::json!({}));
    if !values.is_object() {
        return Err(InputError::at(
            file,
            name,
            "operator.values",
            "values must be a mapping",
        ));
    }
    Ok(OperatorSpec {
        chart,
        repo,
        version: op.version.clone(),
        namespace,
        release,
        values,
        mode,
        adopt,
    })
}
