//! `allocatable`: capacity and allocatable GPU resources equal what the node is expected to
//! have — `nvidia.com/gpu` = GPUs × time-slicing replicas; under MIG the devices of the layout
//! the node is asked for × its expected GPUs ([`super::mig`]), falling back to the node's
//! count labels only for a config mig-parted's defaults do not define — and a pod requesting
//! all of them is placed on the node by the scheduler.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use super::{Ctx, GpuNode, Outcome, left, no_nodes};
use crate::gpu_stack::{gfd, gpu_resources, resources};
use crate::suite::Step;

/// Expected GPU resources of a node under MIG strategy `strategy`: name → count, or why none
/// can be given.
pub fn expected(node: &Node, g: &GpuNode, strategy: &str) -> Result<BTreeMap<String, u64>, String> {
    let labels = node.labels();
    match super::mig::expected(
        strategy,
        labels.get("nvidia.com/mig.config").map(String::as_str),
        g,
    ) {
        super::mig::MigExpectation::Devices(d) => return Ok(d),
        super::mig::MigExpectation::Invalid(why) => return Err(why),
        super::mig::MigExpectation::Off | super::mig::MigExpectation::Unknown(_) => {}
    }
    Ok(observed_layout(node, g))
}

/// Whole GPUs × replicas, or — for a MIG config whose layout is not known here — what the
/// node's count labels say.
fn observed_layout(node: &Node, g: &GpuNode) -> BTreeMap<String, u64> {
    let labels = node.labels();
    let have = gpu_resources(node);
    let mig: BTreeMap<String, u64> = have
        .iter()
        .filter(|(k, (cap, _))| k.starts_with(resources::MIG_PREFIX) && *cap > 0)
        .map(|(k, _)| {
            let count = labels
                .get(&format!("{k}.count"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            (k.clone(), count)
        })
        .collect();
    if !mig.is_empty() {
        return mig;
    }
    let replicas: u64 = labels
        .get(gfd::REPLICAS)
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let product = labels.get(gfd::PRODUCT).cloned().unwrap_or_default();
    let count = if product.contains("-MIG-") {
        labels
            .get(gfd::COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0)
    } else {
        u64::from(g.count) * replicas
    };
    let name = if have.get(resources::GPU_SHARED).is_some_and(|(c, _)| *c > 0) {
        resources::GPU_SHARED
    } else {
        resources::GPU
    };
    BTreeMap::from([(name.to_string(), count)])
}

/// Mismatches of capacity and allocatable against `expected`.
pub fn problems(node: &Node, g: &GpuNode, strategy: &str) -> Vec<String> {
    let have = gpu_resources(node);
    let mut out = Vec::new();
    let want = match expected(node, g, strategy) {
        Ok(w) => w,
        Err(why) => return vec![format!("{}: {why} ({})", g.name, g.describe())],
    };
    for (name, want) in want {
        if want == 0 {
            // Never pass a node by expecting nothing of it.
            out.push(format!(
                "{}: cannot tell how many {name} to expect (its count label is missing or 0) ({})",
                g.name,
                g.describe()
            ));
            continue;
        }
        let (cap, alloc) = have.get(&name).copied().unwrap_or((0, 0));
        let shown = |v: u64| {
            if have.contains_key(&name) {
                format!("\"{v}\"")
            } else {
                "missing".into()
            }
        };
        if cap != want {
            out.push(format!(
                "{}: capacity {name} is {}, expected \"{want}\" ({})",
                g.name,
                shown(cap),
                g.describe()
            ));
        }
        if alloc != want {
            out.push(format!(
                "{}: allocatable {name} is {}, expected \"{want}\" ({})",
                g.name,
                shown(alloc),
                g.describe()
            ));
        }
    }
    out
}

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    // The strategy the plan installs (or says the cluster runs) with; the chart's default.
    let strategy = ctx.plan.operator.mig_strategy();
    let last = super::watch_nodes(ctx, nodes, deadline, |n, g| {
        problems(n, g, &strategy).is_empty()
    })
    .await;

    let mut out = Vec::new();
    // Free GPUs per node, listed once, for the scheduling part.
    let gpu_use = if step.bool("schedule") {
        super::pods::gpu_use(ctx).await
    } else {
        None
    };
    for g in nodes {
        let Some(node) = last.get(&g.name).and_then(Option::as_ref) else {
            out.push(Outcome::fail(
                g.name.clone(),
                Some(&g.name),
                format!("{}: node not found", g.name),
                "",
            ));
            continue;
        };
        let detail: Vec<String> = gpu_resources(node)
            .iter()
            .map(|(k, (c, a))| format!("{k}: capacity {c}, allocatable {a}"))
            .collect();
        let detail = detail.join("\n");
        let found = problems(node, g, &strategy);
        if let Some(first) = found.first() {
            out.push(Outcome::fail(
                g.name.clone(),
                Some(&g.name),
                first.clone(),
                format!("{detail}\n{}", found.join("\n")),
            ));
            continue;
        }
        if !step.bool("schedule") {
            out.push(Outcome::pass(g.name.clone(), Some(&g.name), detail));
            continue;
        }
        // The problems were none, so the expectation exists.
        let want = expected(node, g, &strategy).unwrap_or_default();
        let need = want
            .get(crate::gpu_stack::resources::GPU)
            .copied()
            .unwrap_or(0);
        if let Some(why) = super::pods::busy(gpu_use.as_ref(), &g.name, need) {
            out.push(Outcome::skip(
                g.name.clone(),
                Some(&g.name),
                format!("{why}: {detail}"),
            ));
            continue;
        }
        match schedule_all(ctx, g, &want, deadline).await {
            Ok(()) => out.push(Outcome::pass(
                g.name.clone(),
                Some(&g.name),
                format!(
                    "{detail}\na pod requesting all of them was scheduled on {}",
                    g.name
                ),
            )),
            Err(why) => out.push(Outcome::fail(
                g.name.clone(),
                Some(&g.name),
                format!(
                    "{}: a pod requesting {} was not scheduled there: {why}",
                    g.name,
                    fmt_request(&want)
                ),
                detail,
            )),
        }
    }
    out
}

fn fmt_request(want: &BTreeMap<String, u64>) -> String {
    want.iter()
        .map(|(k, v)| format!("{k}: {v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Creates a pod pinned (by hostname label) to the node requesting `want`, waits until the
/// scheduler places it or gives up, then deletes it.
async fn schedule_all(
    ctx: &Ctx<'_>,
    g: &GpuNode,
    want: &BTreeMap<String, u64>,
    deadline: Instant,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let name = format!("allocatable-{}", g.name);
    let limits: BTreeMap<String, String> = want
        .iter()
        .map(|(k, v)| (k.clone(), v.to_string()))
        .collect();
    let mut spec = serde_json::json!({
        "restartPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": g.name},
        "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{"name": "hold", "image": "registry.k8s.io/pause:3.10", "resources": {"limits": limits}}],
    });
    super::pods::restricted(&mut spec, None);
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": super::pods::labels(&ctx.run_id, "allocatable")},
        "spec": spec,
    }))
    .map_err(|e| e.to_string())?;
    pods.create(&PostParams::default(), &pod)
        .await
        .map_err(|e| format!("create pod: {e}"))?;
    let scheduled = |p: Option<&Pod>| {
        p.and_then(|p| p.status.as_ref())
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|c| {
                c.iter()
                    .any(|c| c.type_ == "PodScheduled" && c.status == "True")
            })
    };
    let waited = tokio::time::timeout(
        left(deadline),
        kube::runtime::wait::await_condition(pods.clone(), &name, scheduled),
    )
    .await;
    let result = match waited {
        Ok(Ok(Some(_))) => Ok(()),
        _ => {
            let why = pods
                .get_opt(&name)
                .await
                .ok()
                .flatten()
                .and_then(|p| p.status)
                .and_then(|s| s.conditions)
                .and_then(|c| c.into_iter().find(|c| c.type_ == "PodScheduled"))
                .and_then(|c| c.message)
                .unwrap_or_else(|| "not scheduled before the deadline".into());
            Err(why)
        }
    };
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    result
}

#[cfg(test)]
mod tests;
