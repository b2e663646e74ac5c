//! `allocatable`: capacity and allocatable GPU resources equal what the node is expected to
//! have — `nvidia.com/gpu` = its expected GPUs; under MIG the devices of the layout the node is
//! asked for × its expected GPUs ([`super::mig`]), falling back to the node's count labels only
//! for a config mig-parted's defaults do not define; then × the replicas of the sharing config
//! it gets, under the renamed resource where the config renames ([`super::sharing`]) — and a
//! pod requesting all of them is placed on the node by the scheduler.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use super::asked::Asked;
use super::mig::MigExpectation;
use super::{Ctx, GpuNode, Outcome, left, no_nodes, sharing};
use crate::gpu_stack::{gfd, gpu_resources, resources};
use crate::suite::Step;

/// Expected GPU resources of a node: name → count (0: must be 0 or absent), or why none can
/// be given.
pub fn expected(node: &Node, g: &GpuNode, asked: &Asked) -> Result<BTreeMap<String, u64>, String> {
    let share = asked.share(node)?;
    let unshared = match asked.mig(node, g) {
        MigExpectation::Devices(mut d) => {
            // Under mixed every GPU of an `all-*` layout is MIG-enabled: no whole GPUs left.
            if asked.mig_strategy == "mixed" {
                d.entry(resources::GPU.to_string()).or_insert(0);
            }
            d
        }
        MigExpectation::Invalid(why) => return Err(why),
        MigExpectation::Unknown(config) => observed_mig(node, &config)?,
        MigExpectation::Off => BTreeMap::from([(resources::GPU.to_string(), u64::from(g.count))]),
    };
    Ok(sharing::apply(share.as_ref(), unshared))
}

/// For a MIG config mig-parted's defaults do not define (a custom one): what the node's count
/// labels say, the one place the node speaks for itself — the layout is not known here.
fn observed_mig(node: &Node, config: &str) -> Result<BTreeMap<String, u64>, String> {
    let labels = node.labels();
    let mut out = BTreeMap::new();
    for (k, (cap, _)) in gpu_resources(node) {
        if k.starts_with(resources::MIG_PREFIX) && cap > 0 {
            let count = labels
                .get(&format!("{k}.count"))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            out.insert(k, count);
        }
    }
    if out.is_empty() {
        let count = labels
            .get(gfd::COUNT)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        out.insert(resources::GPU.to_string(), count);
    }
    if out.values().any(|c| *c == 0) {
        return Err(format!(
            "cannot tell how many devices MIG config {config} gives (not one of mig-parted's default configs, and the node's count labels are missing or 0)"
        ));
    }
    Ok(out)
}

/// Mismatches of capacity and allocatable against what is expected, and a MIG layout not
/// (yet) applied.
pub fn problems(node: &Node, g: &GpuNode, asked: &Asked) -> Vec<String> {
    let have = gpu_resources(node);
    let mut out = super::labels::mig_problems(node, g);
    let want = match expected(node, g, asked) {
        Ok(w) => w,
        Err(why) => {
            out.push(format!("{}: {why} ({})", g.name, g.describe()));
            return out;
        }
    };
    for (name, want) in want {
        let (cap, alloc) = have.get(&name).copied().unwrap_or((0, 0));
        let shown = |v: u64| {
            if have.contains_key(&name) {
                format!("\"{v}\"")
            } else {
                "missing".into()
            }
        };
        let expected = if want == 0 {
            "\"0\" or absent".to_string()
        } else {
            format!("\"{want}\"")
        };
        if cap != want {
            out.push(format!(
                "{}: capacity {name} is {}, expected {expected} ({})",
                g.name,
                shown(cap),
                g.describe()
            ));
        }
        if alloc != want {
            out.push(format!(
                "{}: allocatable {name} is {}, expected {expected} ({})",
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
    // The MIG strategy and sharing the plan asks for (or says the cluster runs with).
    let asked = Asked::read(ctx).await;
    let last = super::watch_nodes(ctx, nodes, deadline, |n, g| {
        problems(n, g, &asked).is_empty()
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
        let found = problems(node, g, &asked);
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
        let want: BTreeMap<String, u64> = expected(node, g, &asked)
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, n)| *n > 0)
            .collect();
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
