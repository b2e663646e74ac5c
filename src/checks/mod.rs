//! Checks: the Rust behind each suite step's `check:` kind, one file per kind.
//!
//! A check gets the cluster, the expectations (instance catalog, plan) and a deadline, waits
//! (watches, never sleep loops) for what it verifies, and returns one outcome per node (or per
//! cluster-wide subject). Failure messages name the node, the observed and the expected value.

pub mod alloc_mode;
pub mod allocatable;
pub mod asked;
pub mod claims;
pub mod dra;
pub mod dra_judge;
pub mod driver;
pub mod labels;
pub mod mig;
pub mod mig_parted;
pub mod operator;
pub mod pods;
pub mod secure_access;
pub mod sharing;
pub mod teardown;
pub mod throughput;
pub mod workload;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, ResourceExt};

use crate::catalog::Catalog;
use crate::operator::InstallRecord;
use crate::operator::helm::Helm;
use crate::plan::Plan;
use crate::report::Status;
use crate::report::events::Event;
use crate::suite::{CheckKind, Step};
pub use crate::target::GpuNode;

/// What a check works with.
pub struct Ctx<'a> {
    /// Admin client.
    pub client: Client,
    /// Expectations.
    pub catalog: &'a Catalog,
    /// The plan.
    pub plan: &'a Plan,
    /// GPU nodes with an expectation (from the catalog by instance type); those without one
    /// failed their discovery testcase and are not here.
    pub gpu_nodes: Vec<GpuNode>,
    /// Namespace for the harness's own pods.
    pub test_namespace: String,
    /// The run id (its pods carry it as a label).
    pub run_id: String,
    /// helm, pointed at the cluster.
    pub helm: &'a Helm,
    /// The run's state shared between steps (UIDs recorded at install).
    pub install: &'a InstallRecord,
    /// The run folder.
    pub run_dir: PathBuf,
    /// The GPU performance table (peaks, floors).
    pub perf: &'a crate::bench::model::PerfTable,
    /// Events a check has to tell besides its outcomes (bench documents); the runner passes
    /// them on to the reporters after the step.
    pub events: tokio::sync::mpsc::UnboundedSender<Event>,
}

impl Ctx<'_> {
    /// Passes an event on to the reporters (after the step).
    pub fn emit(&self, event: Event) {
        // The runner holds the receiver for the whole suites phase.
        let _ = self.events.send(event);
    }
}

/// One result of a check.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Subject: the node name or a cluster-wide subject (`clusterpolicy`, `daemonset/x`).
    pub subject: String,
    /// The node, for per-node outcomes.
    pub node: Option<String>,
    /// Passed, failed, error or skipped.
    pub status: Status,
    /// One line, for failures.
    pub message: Option<String>,
    /// Everything seen.
    pub detail: String,
    /// Non-failing findings.
    pub warnings: Vec<String>,
}

impl Outcome {
    /// A passing outcome.
    pub fn pass(subject: impl Into<String>, node: Option<&str>, detail: impl Into<String>) -> Self {
        Self {
            subject: subject.into(),
            node: node.map(str::to_string),
            status: Status::Passed,
            message: None,
            detail: detail.into(),
            warnings: Vec::new(),
        }
    }

    /// A failing outcome.
    pub fn fail(
        subject: impl Into<String>,
        node: Option<&str>,
        message: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Failed,
            message: Some(message.into()),
            ..Self::pass(subject, node, detail)
        }
    }

    /// An outcome that could not be determined.
    pub fn error(
        subject: impl Into<String>,
        node: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status: Status::Error,
            message: Some(message.into()),
            ..Self::pass(subject, node, "")
        }
    }

    /// Not run.
    pub fn skip(subject: impl Into<String>, node: Option<&str>, why: impl Into<String>) -> Self {
        Self {
            status: Status::Skipped,
            message: Some(why.into()),
            ..Self::pass(subject, node, "")
        }
    }
}

/// Runs one step's check. `only` limits per-node checks to these nodes (the rest were skipped
/// by a failed `needs`).
pub async fn run(step: &Step, ctx: &Ctx<'_>, deadline: Instant, only: &[String]) -> Vec<Outcome> {
    let nodes: Vec<GpuNode> = ctx
        .gpu_nodes
        .iter()
        .filter(|n| only.contains(&n.name))
        .cloned()
        .collect();
    match step.check {
        CheckKind::Operator => operator::run(step, ctx, deadline).await,
        CheckKind::Labels => labels::run(step, ctx, &nodes, deadline).await,
        CheckKind::Allocatable => allocatable::run(step, ctx, &nodes, deadline).await,
        CheckKind::Workload => workload::run(step, ctx, &nodes, deadline).await,
        CheckKind::Throughput => throughput::run(step, ctx, &nodes, deadline).await,
        CheckKind::Dra => dra::run(step, ctx, &nodes, deadline).await,
        CheckKind::SecureAccess => secure_access::run(step, ctx, &nodes, deadline).await,
        CheckKind::Uninstall => teardown::uninstall(ctx, deadline).await,
        CheckKind::Teardown => teardown::verify(step, ctx, deadline).await,
    }
}

/// The outcome of a per-node check with no node to check: a failure when the cluster has no
/// GPU node the catalog knows (a GPU check that checks nothing must not pass), nothing when
/// every GPU node was skipped by a failed `needs` (the runner reports those).
pub fn no_nodes(ctx: &Ctx<'_>) -> Vec<Outcome> {
    if ctx.gpu_nodes.is_empty() {
        vec![Outcome::fail(
            "gpu-nodes",
            None,
            "no GPU nodes: no node's node.kubernetes.io/instance-type is a GPU instance type in the instance catalog",
            "",
        )]
    } else {
        Vec::new()
    }
}

/// Watches the GPU nodes until `ok` holds for every one of them or the deadline passes, and
/// returns the last state seen of each (`None`: never seen). Checks report on that state.
pub async fn watch_nodes(
    ctx: &Ctx<'_>,
    nodes: &[GpuNode],
    deadline: Instant,
    ok: impl Fn(&Node, &GpuNode) -> bool,
) -> std::collections::BTreeMap<String, Option<Node>> {
    watch_as(ctx, nodes, deadline, crate::k8s::list::lean_node, ok).await
}

/// [`watch_nodes`] for checks that judge only a node's metadata (labels, annotations): the
/// API server sends each node's metadata alone (`PartialObjectMetadata`), not its status —
/// on a real node the status (conditions, images, addresses) is most of the object, and at
/// thousands of nodes decoding and keeping it is most of the check's cost. The nodes handed
/// to `ok` and returned carry `metadata` only.
pub async fn watch_node_metadata(
    ctx: &Ctx<'_>,
    nodes: &[GpuNode],
    deadline: Instant,
    ok: impl Fn(&Node, &GpuNode) -> bool,
) -> std::collections::BTreeMap<String, Option<Node>> {
    // Metadata-only requests, decoded without managed fields (`k8s::node_meta`).
    let into_node = |m: crate::k8s::node_meta::NodeMeta| Node {
        metadata: m.metadata,
        ..Node::default()
    };
    watch_as(ctx, nodes, deadline, into_node, ok).await
}

/// Watches every node as `K` (the whole object or its metadata alone), each event turned
/// into a [`Node`] by `into_node`, until every node in `nodes` is `ok` or the deadline.
async fn watch_as<K>(
    ctx: &Ctx<'_>,
    nodes: &[GpuNode],
    deadline: Instant,
    into_node: impl Fn(K) -> Node,
    ok: impl Fn(&Node, &GpuNode) -> bool,
) -> std::collections::BTreeMap<String, Option<Node>>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
    K::DynamicType: Default,
{
    use futures::StreamExt as _;
    use kube::runtime::{WatchStreamExt as _, watcher};
    if nodes.is_empty() {
        return unseen(nodes);
    }
    let api: Api<K> = Api::all(ctx.client.clone());
    let stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .applied_objects()
        .map(|ev| ev.ok().map(&into_node));
    until_all_ok(stream, nodes, deadline, ok).await
}

fn unseen(nodes: &[GpuNode]) -> std::collections::BTreeMap<String, Option<Node>> {
    nodes.iter().map(|n| (n.name.clone(), None)).collect()
}

/// The loop of both watches: each event judges only its own node, so the set of nodes not yet
/// right shrinks and grows with them, and a list of thousands of nodes costs one judgement
/// per event, not one per node per event. A watch error (`None`) is skipped: the watcher
/// retries with its backoff until the deadline.
async fn until_all_ok(
    stream: impl futures::Stream<Item = Option<Node>>,
    nodes: &[GpuNode],
    deadline: Instant,
    ok: impl Fn(&Node, &GpuNode) -> bool,
) -> std::collections::BTreeMap<String, Option<Node>> {
    use futures::StreamExt as _;
    let mut last = unseen(nodes);
    let mut stream = std::pin::pin!(stream);
    let by_name: std::collections::BTreeMap<&str, &GpuNode> =
        nodes.iter().map(|g| (g.name.as_str(), g)).collect();
    let mut pending: std::collections::BTreeSet<String> =
        nodes.iter().map(|g| g.name.clone()).collect();
    let _ = tokio::time::timeout(left(deadline), async {
        while let Some(ev) = stream.next().await {
            let Some(n) = ev else { continue };
            let name = n.name_any();
            let Some(g) = by_name.get(name.as_str()) else {
                continue;
            };
            if ok(&n, g) {
                pending.remove(&name);
            } else {
                pending.insert(name.clone());
            }
            last.insert(name, Some(n));
            if pending.is_empty() {
                break;
            }
        }
    })
    .await;
    last
}

/// Time left until `deadline`.
pub fn left(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}
