//! Preflight: what a run would do on an existing cluster and whether it can, found without
//! changing anything (`gpuconform run --dry-run`). The API server and its version, every
//! permission the plan needs (SelfSubjectAccessReviews), the GPU nodes with the expectation each
//! got and its free GPUs, the operator release and what the mode will do with it, the test
//! namespace and its Pod Security level, the bench image.
//!
//! Gathering talks to the cluster; [`Report::render`] and [`Report::exit_code`] are pure, so
//! the output is golden-tested and the verdict table-tested.

pub mod permissions;

use std::collections::BTreeSet;
use std::fmt::Write as _;

use k8s_openapi::api::authorization::v1::SelfSubjectAccessReview;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{ListParams, PostParams};
use kube::{Api, Client};

use crate::exit_codes;
use crate::gpu_stack::{self, resources};
use crate::operator::helm::Release;
use crate::plan::{OperatorMode, Plan};
use permissions::{Need, Scope};

/// One permission and the answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    /// What is needed.
    pub need: Need,
    /// The namespace it was asked for (`None`: cluster-wide).
    pub namespace: Option<String>,
    /// Allowed; `Err`: the review itself failed.
    pub allowed: Result<bool, String>,
}

impl Permission {
    /// `create batch/jobs (gpuconform-tests), for the workload check`.
    pub fn describe(&self) -> String {
        format!(
            "{} {} ({}), for the {}",
            self.need.verb,
            self.need.resource_name(),
            self.namespace.as_deref().unwrap_or("cluster-wide"),
            self.need.why
        )
    }
}

/// A GPU node as the run would see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Node name.
    pub name: String,
    /// The expectation it got (`p3.2xlarge: 1× Tesla-V100-SXM2-16GB`), or why it has none (the
    /// run fails a testcase naming it).
    pub expectation: Result<String, String>,
    /// GPUs allocatable and in use by pods, when known.
    pub gpus: Result<(u64, u64), String>,
}

/// Everything a dry run found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// Plan name and file.
    pub plan: String,
    /// The API server's address.
    pub server: String,
    /// Its version, or why it did not answer.
    pub version: Result<String, String>,
    /// The operator's mode and release settings.
    pub mode: OperatorMode,
    /// `adopt: true`.
    pub adopt: bool,
    /// `release` in `namespace`.
    pub release: (String, String),
    /// The release found (`Err`: helm failed).
    pub found: Result<Option<Release>, String>,
    /// Test namespace name, and its Pod Security enforce level when it exists.
    pub test_namespace: (String, Option<Option<String>>),
    /// The permissions.
    pub permissions: Vec<Permission>,
    /// GPU nodes (`Err`: listing failed).
    pub nodes: Result<Vec<NodeRow>, String>,
    /// The bench image, when a suite measures throughput.
    pub bench_image: Option<String>,
}

impl Report {
    /// What stops the run, each with its exit code: 2 for what the plan asks and the cluster's
    /// state forbids, 3 for what the cluster or the credentials lack.
    pub fn blockers(&self) -> Vec<(u8, String)> {
        let mut out = Vec::new();
        if let Err(e) = &self.version {
            out.push((exit_codes::INFRA_ERROR, format!("API server: {e}")));
            return out;
        }
        let (release, ns) = &self.release;
        match (&self.found, self.mode) {
            (Err(e), _) => out.push((exit_codes::INFRA_ERROR, format!("helm: {e}"))),
            (Ok(None), OperatorMode::Existing) => out.push((
                exit_codes::INPUT_ERROR,
                format!("verify-only, but there is no release {release} in namespace {ns}"),
            )),
            (Ok(Some(_)), OperatorMode::Install) if !self.adopt => out.push((
                exit_codes::INPUT_ERROR,
                format!(
                    "release {release} already exists in {ns}: set `operator.mode: existing` (verify-only) or `operator.adopt: true`"
                ),
            )),
            _ => {}
        }
        for p in &self.permissions {
            match &p.allowed {
                Ok(true) => {}
                _ if p.need.optional => {}
                Ok(false) => out.push((
                    exit_codes::INFRA_ERROR,
                    format!("missing permission: {}", p.describe()),
                )),
                Err(e) => out.push((
                    exit_codes::INFRA_ERROR,
                    format!("permission unknown ({e}): {}", p.describe()),
                )),
            }
        }
        out
    }

    /// 0 when the run could proceed; else the first blocker's code (2 before 3: a plan to fix
    /// first).
    pub fn exit_code(&self) -> u8 {
        self.blockers()
            .iter()
            .map(|(c, _)| *c)
            .min()
            .unwrap_or(exit_codes::OK)
    }

    /// The report as printed.
    pub fn render(&self) -> String {
        let mark = |ok: bool| if ok { "✓" } else { "✗" };
        let mut s = String::new();
        let _ = writeln!(s, "dry run of plan {}: nothing was changed", self.plan);
        match &self.version {
            Ok(v) => {
                let _ = writeln!(s, "✓ API server {} answers: Kubernetes {v}", self.server);
            }
            Err(e) => {
                let _ = writeln!(s, "✗ API server {}: {e}", self.server);
            }
        }
        let (release, ns) = &self.release;
        let line = match (&self.found, self.mode) {
            (Err(e), _) => format!("✗ helm release {release} in {ns}: unknown ({e})"),
            (Ok(Some(r)), OperatorMode::Existing) => format!(
                "✓ helm release {release} ({}, revision {}) in {ns}: verify-only, left as it is",
                r.chart, r.revision
            ),
            (Ok(Some(r)), OperatorMode::Install) if self.adopt => format!(
                "✓ helm release {release} ({}, revision {}) in {ns}: adopted, upgraded with its own values plus the plan's, rolled back to revision {} at teardown",
                r.chart, r.revision, r.revision
            ),
            (Ok(Some(r)), OperatorMode::Install) => format!(
                "✗ helm release {release} ({}, revision {}) in {ns}: exists, and the plan would install it (refused)",
                r.chart, r.revision
            ),
            (Ok(None), OperatorMode::Existing) => {
                format!("✗ helm release {release} in {ns}: absent, nothing to verify")
            }
            (Ok(None), OperatorMode::Install) => {
                format!(
                    "✓ helm release {release} in {ns}: absent, installed by the run and uninstalled at teardown"
                )
            }
        };
        let _ = writeln!(s, "{line}");
        let (tn, state) = &self.test_namespace;
        let _ = match state {
            Some(level) => writeln!(
                s,
                "✓ test namespace {tn}: exists (Pod Security enforce: {}), used as it is, only the run's pods and Jobs removed",
                level.as_deref().unwrap_or("not set")
            ),
            None => writeln!(
                s,
                "✓ test namespace {tn}: absent, created by the run (Pod Security enforce: restricted) and deleted at teardown"
            ),
        };
        if let Some(image) = &self.bench_image {
            let _ = writeln!(s, "✓ bench image {image}");
        }
        match &self.nodes {
            Ok(nodes) => {
                let _ = writeln!(s, "{} GPU nodes: {}", mark(!nodes.is_empty()), nodes.len());
                for n in nodes {
                    let expectation = match &n.expectation {
                        Ok(e) => e.clone(),
                        Err(e) => {
                            let _ = writeln!(s, "  ✗ {}  {e}", n.name);
                            continue;
                        }
                    };
                    let gpus = match &n.gpus {
                        Ok((alloc, used)) => {
                            format!("{} of {alloc} GPUs free", alloc.saturating_sub(*used))
                        }
                        Err(e) => format!("free GPUs unknown ({e})"),
                    };
                    let _ = writeln!(s, "    {}  {expectation}  {gpus}", n.name);
                }
            }
            Err(e) => {
                let _ = writeln!(s, "✗ GPU nodes: {e}");
            }
        }
        let _ = writeln!(s, "permissions (SelfSubjectAccessReview):");
        let width = self
            .permissions
            .iter()
            .map(|p| p.need.resource_name().len())
            .max()
            .unwrap_or(0);
        for p in &self.permissions {
            let m = match &p.allowed {
                Ok(true) => "✓",
                Ok(false) if p.need.optional => "!",
                _ => "✗",
            };
            let _ = writeln!(
                s,
                "  {m} {:<6} {:<width$}  {:<18}  {}{}",
                p.need.verb,
                p.need.resource_name(),
                p.namespace.as_deref().unwrap_or("(cluster)"),
                p.need.why,
                match &p.allowed {
                    Err(e) => format!(" (review failed: {e})"),
                    Ok(false) if p.need.optional => " (optional)".into(),
                    _ => String::new(),
                }
            );
        }
        let blockers = self.blockers();
        if blockers.is_empty() {
            let _ = writeln!(s, "the run can proceed (exit 0)");
        } else {
            let _ = writeln!(s, "the run would stop (exit {}):", self.exit_code());
            for (_, b) in blockers {
                let _ = writeln!(s, "  - {b}");
            }
        }
        s
    }
}

/// Asks the API server whether the client may do each of `needs`.
pub async fn review(
    client: &Client,
    needs: Vec<Need>,
    operator_ns: &str,
    tests_ns: &str,
) -> Vec<Permission> {
    let api: Api<SelfSubjectAccessReview> = Api::all(client.clone());
    let asks = needs.into_iter().map(|need| {
        let api = api.clone();
        let namespace = match need.scope {
            Scope::Cluster => None,
            Scope::Operator => Some(operator_ns.to_string()),
            Scope::Tests => Some(tests_ns.to_string()),
        };
        async move {
            let body = serde_json::json!({
                "apiVersion": "authorization.k8s.io/v1",
                "kind": "SelfSubjectAccessReview",
                "spec": {"resourceAttributes": {
                    "group": need.group,
                    "resource": need.resource,
                    "subresource": need.subresource,
                    "verb": need.verb,
                    "namespace": namespace.clone().unwrap_or_default(),
                }},
            });
            let allowed = match serde_json::from_value::<SelfSubjectAccessReview>(body) {
                Err(e) => Err(e.to_string()),
                Ok(r) => match api.create(&PostParams::default(), &r).await {
                    Ok(r) => Ok(r.status.is_some_and(|s| s.allowed)),
                    Err(e) => Err(e.to_string()),
                },
            };
            Permission {
                need,
                namespace,
                allowed,
            }
        }
    });
    futures::future::join_all(asks).await
}

/// The required permissions not granted, as `verb resource (namespace), for the why`.
pub fn missing(perms: &[Permission]) -> Vec<String> {
    perms
        .iter()
        .filter(|p| !p.need.optional && p.allowed != Ok(true))
        .map(Permission::describe)
        .collect()
}

/// The check kinds the suites use.
pub fn kinds(suites: &[crate::suite::Suite]) -> BTreeSet<&'static str> {
    suites
        .iter()
        .flat_map(|s| s.steps.iter().chain(&s.finally))
        .map(|st| st.check.name())
        .collect()
}

/// The permissions a run of `plan` needs on this cluster, reviewed; `tests_exist` from the
/// cluster.
pub async fn permissions(
    client: &Client,
    plan: &Plan,
    suites: &[crate::suite::Suite],
    tests_ns: &str,
    tests_exist: bool,
) -> Vec<Permission> {
    let needs = permissions::needs(plan.operator.mode, &kinds(suites), tests_exist);
    review(client, needs, &plan.operator.namespace, tests_ns).await
}

/// The test namespace's Pod Security enforce level: `None` when it does not exist.
pub async fn test_namespace_state(
    client: &Client,
    name: &str,
) -> Result<Option<Option<String>>, kube::Error> {
    let api: Api<Namespace> = Api::all(client.clone());
    Ok(api.get_opt(name).await?.map(|ns| {
        ns.metadata
            .labels
            .and_then(|l| l.get(gpu_stack::POD_SECURITY_ENFORCE).cloned())
    }))
}

/// Per node: allocatable GPUs and those pods hold.
pub type GpuUse = std::collections::BTreeMap<String, (u64, u64)>;

/// Every node's allocatable GPUs and those the pods on it hold (requests of pods not finished
/// and not being deleted; the pods of run `own_run` do not count: they are the checks' own and
/// go before the next step needs the GPUs). One node list and one pod list, whatever the size
/// of the cluster.
pub async fn gpu_use(client: &Client, own_run: Option<&str>) -> Result<GpuUse, kube::Error> {
    use crate::k8s::list::list_all;
    let nodes: Api<Node> = Api::all(client.clone());
    // In pages, each object reduced at once to its GPU numbers: the whole cluster's pods are
    // read here.
    let mut out: GpuUse = list_all(&nodes, ListParams::default(), |n| {
        let alloc = gpu_stack::gpu_resources(&n)
            .get(resources::GPU)
            .map_or(0, |(_, a)| *a);
        (kube::ResourceExt::name_any(&n), (alloc, 0))
    })
    .await?
    .into_iter()
    .collect();
    let pods: Api<Pod> = Api::all(client.clone());
    let lp = ListParams::default().fields("status.phase!=Succeeded,status.phase!=Failed");
    let own = own_run.map(gpu_stack::ours::run_label);
    let held = list_all(&pods, lp, |p| {
        let theirs = own.as_ref().is_none_or(|own| {
            p.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(gpu_stack::ours::RUN_LABEL))
                != Some(own)
        });
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        match (theirs, &p.metadata.deletion_timestamp, node) {
            (true, None, Some(node)) => Some((node, gpus_in_use(std::slice::from_ref(&p)))),
            _ => None,
        }
    })
    .await?;
    for (node, gpus) in held.into_iter().flatten() {
        if let Some(entry) = out.get_mut(&node) {
            entry.1 += gpus;
        }
    }
    Ok(out)
}

/// `nvidia.com/gpu` held by pods that are not finished (the scheduler's view: a container's
/// request, or its limit when it gives none; init containers run first, so the larger of the
/// two sums counts, as in the scheduler).
pub fn gpus_in_use(pods: &[Pod]) -> u64 {
    let gpu = |c: &k8s_openapi::api::core::v1::Container| -> u64 {
        let r = c.resources.as_ref();
        let q = r
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(resources::GPU))
            .or_else(|| {
                r.and_then(|r| r.limits.as_ref())
                    .and_then(|m| m.get(resources::GPU))
            });
        q.and_then(|q| q.0.parse().ok()).unwrap_or(0)
    };
    pods.iter()
        .filter(|p| {
            let phase = p.status.as_ref().and_then(|s| s.phase.as_deref());
            !matches!(phase, Some("Succeeded" | "Failed"))
        })
        .filter_map(|p| p.spec.as_ref())
        .map(|s| {
            let main: u64 = s.containers.iter().map(gpu).sum();
            let init = s
                .init_containers
                .iter()
                .flatten()
                .map(gpu)
                .max()
                .unwrap_or(0);
            main.max(init)
        })
        .sum()
}

#[cfg(test)]
mod tests;
