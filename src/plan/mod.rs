//! Plan files: what one `gpuconform run` does — where the cluster comes from, which GPU
//! Operator chart to install with which values, which suites to run, the time limits, and where
//! the reports go.
//!
//! Parsing keeps locations; every value error names the file, line and field. Relative paths in a
//! plan are relative to the plan file's folder's repository root when run from there, i.e. to the
//! current directory, like kubectl's `-f`.

pub mod aws;
mod certification;
mod compare;
pub mod driver;
pub mod expect;
mod namespace;
mod operator;
pub mod starter;

pub use certification::Certification;
pub use namespace::{TestNamespace, default_test_namespace, is_dns_label};

pub use operator::{NVIDIA_CHART, NVIDIA_REPO, OperatorMode, OperatorSpec};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::input::{InputError, Layer, Spanned, load_yaml, parse_yaml};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPlan {
    /// The plan's name (reports, metrics and the summary name it).
    name: Spanned<String>,
    /// What the plan is for.
    #[serde(default)]
    description: Option<String>,
    /// Where the cluster comes from: exactly one of `local`, `kubeconfig`, `aws`.
    target: RawTarget,
    /// The GPU Operator chart, its values, and whether the run installs it or verifies an
    /// existing one (`mode: existing`).
    #[serde(default)]
    operator: Option<operator::RawOperator>,
    /// The suites to run, in order: built-in names or files in `--suite-dir`.
    suites: Spanned<Vec<Spanned<String>>>,
    /// Time limits, as durations (`90s`, `10m`).
    #[serde(default)]
    timeouts: RawTimeouts,
    /// Where the run folders go (default `reports`).
    #[serde(default)]
    reports: Option<Spanned<String>>,
    /// What teardown looks for.
    #[serde(default)]
    teardown: RawTeardown,
    /// The CUDA bench's image.
    #[serde(default)]
    bench: RawBench,
    /// The namespace of the harness's own pods (default: one per run).
    #[serde(default)]
    test_namespace: Option<RawTestNamespace>,
    /// What each GPU node group must have, from the owner (not from the node): selector, GPU
    /// product, count and optionally the driver.
    #[serde(default)]
    expect: Vec<expect::RawExpect>,
    /// The driver every GPU node must run: `version`, `branch` or `any`.
    #[serde(default)]
    expect_driver: Option<Spanned<driver::RawDriver>>,
    /// Let a suite that checked no node pass (off: a suite that checked nothing fails).
    #[serde(default)]
    allow_nothing_checked: bool,
    /// How benchmarks are compared with a baseline run.
    #[serde(default)]
    compare: compare::RawCompare,
    /// The vendor certification's product and profile (`gpuconform certify`).
    #[serde(default)]
    certification: Option<certification::RawCertification>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTestNamespace {
    #[serde(default)]
    name: Option<Spanned<String>>,
    #[serde(default)]
    labels: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    annotations: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawBench {
    #[serde(default)]
    image: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTarget {
    /// A local cluster started for the run (real control plane, kwok nodes, GPU simulator).
    #[serde(default)]
    local: Option<RawLocal>,
    #[serde(default)]
    kubeconfig: Option<RawKubeconfig>,
    #[serde(default)]
    aws: Option<crate::plan::aws::RawAws>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawLocal {
    /// The cluster fixture file the local cluster is built from.
    fixture: Spanned<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawKubeconfig {
    /// The kubeconfig file (default: kubectl's: `$KUBECONFIG`, `~/.kube/config`, in-cluster).
    #[serde(default)]
    path: Option<Spanned<String>>,
    #[serde(default)]
    context: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTimeouts {
    #[serde(default)]
    provision: Option<Spanned<String>>,
    #[serde(default)]
    install: Option<Spanned<String>>,
    #[serde(default)]
    step: Option<Spanned<String>>,
    #[serde(default)]
    teardown: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTeardown {
    #[serde(default)]
    leftover_labels: Option<Spanned<String>>,
}

/// The JSON Schema of plan files (`schemas/plan.schema.json`).
pub fn schema() -> serde_json::Value {
    crate::input::schema::root::<RawPlan>(
        "https://gpuconform.dev/schema/plan.json",
        "gpuconform plan",
        "What one `gpuconform run` does: the cluster, the GPU Operator, the suites, the expectations, the limits. Generated from gpuconform's types; `gpuconform lint` checks more (values, the catalog) with file, line and field.",
    )
}

/// Where the cluster comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A local cluster started for the run from a cluster fixture.
    Local {
        /// The fixture file.
        fixture: PathBuf,
    },
    /// Node pools on EC2 with k3s, provisioned and torn down by the run.
    Aws(crate::plan::aws::AwsSpec),
    /// An existing cluster: kubeconfig path and context, as kubectl resolves them (`None` path:
    /// `$KUBECONFIG`, then `~/.kube/config`, then in-cluster config).
    Kubeconfig {
        /// Kubeconfig file.
        path: Option<PathBuf>,
        /// Context name.
        context: Option<String>,
    },
}

/// How leftover labels after uninstall count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftovers {
    /// Reported, the testcase passes.
    Warn,
    /// The testcase fails.
    Fail,
}

/// Time limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timeouts {
    /// Getting a ready cluster.
    pub provision: Duration,
    /// Installing the operator until the ClusterPolicy is ready.
    pub install: Duration,
    /// One suite step.
    pub step: Duration,
    /// The teardown phase.
    pub teardown: Duration,
}

/// A validated plan.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Where it was read from.
    pub file: PathBuf,
    /// Plan name (part of the run id).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Where the cluster comes from.
    pub target: Target,
    /// The operator chart.
    pub operator: OperatorSpec,
    /// Suite names, in run order (`suites/<name>.yaml`).
    pub suites: Vec<String>,
    /// Time limits.
    pub timeouts: Timeouts,
    /// Report root folder.
    pub reports: PathBuf,
    /// How operator labels left after uninstall count.
    pub leftover_labels: Leftovers,
    /// The `gpuconform-bench` image the throughput suite runs.
    pub bench_image: String,
    /// Where the harness's own pods go.
    pub test_namespace: TestNamespace,
    /// The owner's expectations for GPU nodes, before the catalog's instance types.
    pub expect: Vec<expect::Expect>,
    /// The driver every GPU node must run unless its `expect` entry says otherwise.
    pub expect_driver: Option<driver::DriverRule>,
    /// A suite whose every per-node case was skipped passes (default: it fails).
    pub allow_nothing_checked: bool,
    /// How `run --baseline` compares (`compare:`; the defaults without it).
    pub compare: crate::compare::Settings,
    /// Who certifies what (`certification:`), for `gpuconform certify`.
    pub certification: Option<Certification>,
    /// The plan as run: the file's text, or the document its overrides made.
    pub source: String,
}

/// The bench image when a plan names none (built from `images/bench/Dockerfile`).
pub const DEFAULT_BENCH_IMAGE: &str = "ghcr.io/gpuconform/gpuconform-bench:0.1.0";

impl Plan {
    /// Reads and validates a plan with `layers` (`-f`, `--set`) merged over it, in order.
    /// `suite_dir` is where suite names must resolve; instance types (the `aws:` pools) are
    /// checked against `catalog`, the one the command resolved. An error in an override names
    /// the overlay's file and line, or the `--set` argument.
    pub fn load(
        file: &Path,
        layers: &[Layer],
        suite_dir: &Path,
        catalog: &crate::catalog::Catalog,
    ) -> Result<Self, InputError> {
        if layers.is_empty() {
            let raw: RawPlan = load_yaml(file)?;
            let mut plan = Self::validate(file, raw, suite_dir, catalog)?;
            plan.source = std::fs::read_to_string(file).unwrap_or_default();
            return Ok(plan);
        }
        let merged = crate::input::layers::merge(file, layers)?;
        let raw: RawPlan = parse_yaml(file, &merged.text).map_err(|e| merged.locate(e))?;
        let mut plan =
            Self::validate(file, raw, suite_dir, catalog).map_err(|e| merged.locate(e))?;
        plan.source = merged.text.clone();
        // Where each `expect` entry and driver expectation came from, in the plan or an overlay.
        let place = |file: &mut PathBuf, line: &mut Option<u32>| {
            let at = merged.locate(InputError {
                line: *line,
                ..InputError::file(file, "")
            });
            (*file, *line) = (at.file, at.line);
        };
        for e in &mut plan.expect {
            place(&mut e.file, &mut e.line);
            if let Some(d) = &mut e.driver {
                place(&mut d.file, &mut d.line);
            }
        }
        if let Some(d) = &mut plan.expect_driver {
            place(&mut d.file, &mut d.line);
        }
        Ok(plan)
    }

    fn validate(
        file: &Path,
        raw: RawPlan,
        suite_dir: &Path,
        catalog: &crate::catalog::Catalog,
    ) -> Result<Self, InputError> {
        let name = &raw.name;
        if name.value.is_empty()
            || !name
                .value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(InputError::at(
                file,
                name,
                "name",
                format!(
                    "`{}` is not a DNS label (lowercase letters, digits, `-`)",
                    name.value
                ),
            ));
        }
        let target = match (&raw.target.local, &raw.target.kubeconfig, &raw.target.aws) {
            (None, None, Some(aws)) => Target::Aws(crate::plan::aws::validate(file, aws, catalog)?),
            (Some(local), None, None) => {
                let fixture = PathBuf::from(expand(file, &local.fixture, "target.local.fixture")?);
                if !fixture.is_file() {
                    return Err(InputError::at(
                        file,
                        &local.fixture,
                        "target.local.fixture",
                        format!("no fixture file `{}`", local.fixture.value),
                    ));
                }
                Target::Local { fixture }
            }
            (None, Some(k), None) => Target::Kubeconfig {
                path: match &k.path {
                    Some(p) => Some(PathBuf::from(expand(file, p, "target.kubeconfig.path")?)),
                    None => None,
                },
                context: k.context.clone(),
            },
            _ => {
                return Err(InputError::at(
                    file,
                    &raw.name,
                    "target",
                    "give exactly one target: `local`, `kubeconfig` or `aws`",
                ));
            }
        };

        let operator = operator::validate(file, raw.operator.as_ref(), &raw.name, &target)?;

        if raw.suites.value.is_empty() {
            return Err(InputError::at(
                file,
                &raw.suites,
                "suites",
                "at least one suite is needed",
            ));
        }
        let mut suites = Vec::new();
        for (i, s) in raw.suites.value.iter().enumerate() {
            if !crate::suite::exists(suite_dir, &s.value) {
                let known = crate::suite::known_suites(suite_dir);
                return Err(InputError::at(
                    file,
                    s,
                    format!("suites[{i}]"),
                    format!(
                        "no suite `{}` in {} or built in (known: {})",
                        s.value,
                        suite_dir.display(),
                        known.join(", ")
                    ),
                ));
            }
            if suites.contains(&s.value) {
                return Err(InputError::at(
                    file,
                    s,
                    format!("suites[{i}]"),
                    format!("suite `{}` is listed twice", s.value),
                ));
            }
            suites.push(s.value.clone());
        }

        let t = &raw.timeouts;
        let dur = |v: &Option<Spanned<String>>,
                   field: &str,
                   default: u64|
         -> Result<Duration, InputError> {
            match v {
                None => Ok(Duration::from_secs(default)),
                Some(s) => match humantime::parse_duration(&s.value) {
                    Ok(d) if !d.is_zero() => Ok(d),
                    Ok(_) => Err(InputError::at(file, s, field, "must be more than 0s")),
                    Err(e) => Err(InputError::at(
                        file,
                        s,
                        field,
                        format!("`{}` is not a duration such as 90s or 5m: {e}", s.value),
                    )),
                },
            }
        };
        let timeouts = Timeouts {
            provision: dur(&t.provision, "timeouts.provision", 300)?,
            install: dur(&t.install, "timeouts.install", 600)?,
            step: dur(&t.step, "timeouts.step", 300)?,
            teardown: dur(&t.teardown, "timeouts.teardown", 300)?,
        };
        let leftover_labels = match &raw.teardown.leftover_labels {
            None => Leftovers::Warn,
            Some(s) if s.value == "warn" => Leftovers::Warn,
            Some(s) if s.value == "fail" => Leftovers::Fail,
            Some(s) => {
                return Err(InputError::at(
                    file,
                    s,
                    "teardown.leftoverLabels",
                    format!("`{}` is not `warn` or `fail`", s.value),
                ));
            }
        };
        let bench_image = match &raw.bench.image {
            Some(i) if i.value.trim().is_empty() || i.value.contains(char::is_whitespace) => {
                return Err(InputError::at(
                    file,
                    i,
                    "bench.image",
                    format!("`{}` is not an image reference", i.value),
                ));
            }
            Some(i) => i.value.clone(),
            None => DEFAULT_BENCH_IMAGE.to_string(),
        };
        let raw_ns = raw.test_namespace.clone().unwrap_or_default();
        if let Some(n) = &raw_ns.name
            && !is_dns_label(&n.value)
        {
            return Err(InputError::at(
                file,
                n,
                "testNamespace.name",
                format!("`{}` is not a namespace name (a DNS label)", n.value),
            ));
        }
        let test_namespace = TestNamespace {
            name: raw_ns.name.map(|n| n.value),
            labels: raw_ns.labels,
            annotations: raw_ns.annotations,
        };
        let expect = expect::validate(file, &raw.expect, catalog)?;
        let expect_driver = match &raw.expect_driver {
            Some(d) => {
                let line = d.referenced.line();
                Some(driver::validate(
                    file,
                    "expectDriver",
                    &d.value,
                    (line > 0).then_some(line as u32),
                )?)
            }
            None => None,
        };
        Ok(Self {
            expect,
            expect_driver,
            allow_nothing_checked: raw.allow_nothing_checked,
            compare: compare::validate(file, &raw.compare)?,
            certification: match &raw.certification {
                Some(c) => Some(certification::validate(file, c)?),
                None => None,
            },
            source: String::new(),
            test_namespace,
            file: file.to_path_buf(),
            name: raw.name.value,
            description: raw.description,
            target,
            operator,
            suites,
            timeouts,
            reports: match &raw.reports {
                Some(r) => PathBuf::from(expand(file, r, "reports")?),
                None => PathBuf::from("reports"),
            },
            leftover_labels,
            bench_image,
        })
    }
}

impl Plan {
    /// The test namespace: the plan's (or `--namespace`), else one named after the run.
    pub fn test_namespace_name(&self, run_id: &str) -> String {
        self.test_namespace
            .name
            .clone()
            .unwrap_or_else(|| default_test_namespace(run_id))
    }
}

/// A path from the plan with `~` and `$VARS` expanded; an unset variable names the field.
pub(crate) fn expand(file: &Path, s: &Spanned<String>, field: &str) -> Result<String, InputError> {
    crate::input::expand::expand(&s.value).map_err(|m| InputError::at(file, s, field, m))
}

#[cfg(test)]
mod tests;
