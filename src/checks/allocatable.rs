//! `allocatable`: capacity and allocatable GPU resources equal what the node is expected to
//! have — `nvidia.com/gpu` = its expected GPUs; under MIG the devices of the layout the node is
//! asked for × its expected GPUs ([`super::mig`]), falling back to the node's count labels only
//! for a config mig-parted's defaults do not define; then × the replicas of the sharing config
//! it gets, under the renamed resource where the config renames ([`super::sharing`]) — and a
//! pod requesting all of them is placed on the node by the scheduler.
//!
//! A node the DRA driver serves ([`super::claims`]) is judged by its pool instead: its untainted
//! devices, by kind (whole GPUs, or MIG devices by profile), equal what its expectation and MIG
//! layout say, and a pod with a claim for all of them is placed there. Devices other claims
//! hold make the scheduling part skip, as GPUs other pods hold do on a device-plugin node.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, ResourceExt};

use super::alloc_mode::Mode;
use super::asked::Asked;
use super::claims::{self, Modes};
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
    // Each node is judged in its own allocation mode: device-plugin nodes by their extended
    // resources (watched until right or the deadline), DRA nodes by their pools (once settled).
    let modes = Modes::read(ctx).await;
    let (dra_nodes, plugin_nodes): (Vec<GpuNode>, Vec<GpuNode>) = nodes
        .iter()
        .cloned()
        .partition(|g| modes.decide(&g.name).mode == Mode::Dra);
    let last = super::watch_nodes(ctx, &plugin_nodes, deadline, |n, g| {
        problems(n, g, &asked).is_empty()
    })
    .await;
    let sizes: BTreeMap<String, usize> = dra_nodes
        .iter()
        .filter_map(|g| {
            let want = claims::expected(modes.node(&g.name)?, g, ctx).ok()?;
            Some((g.name.clone(), want.values().sum::<u64>() as usize))
        })
        .collect();
    let modes = if sizes.is_empty() {
        modes
    } else {
        let slices = claims::settled(ctx, &sizes, deadline).await;
        modes.with_slices(slices)
    };

    let mut out = Vec::new();
    // Free GPUs per node, listed once, for the scheduling part.
    let (gpu_use, held) = if step.bool("schedule") {
        (super::pods::gpu_use(ctx).await, claims::held(ctx).await)
    } else {
        (None, None)
    };
    for g in nodes {
        let decision = modes.decide(&g.name);
        if let Some(failed) = decision.ambiguity(g) {
            out.push(failed);
            continue;
        }
        let outcome = match decision.mode {
            Mode::Dra => {
                let node = modes.node(&g.name);
                dra_case(step, ctx, g, node, &modes, held.as_ref(), deadline).await
            }
            Mode::DevicePlugin => {
                let node = last.get(&g.name).and_then(Option::as_ref);
                plugin_case(step, ctx, g, node, &asked, gpu_use.as_ref(), deadline).await
            }
        };
        out.push(outcome);
    }
    out
}

/// A device-plugin node: capacity and allocatable against the expectation, then a pod
/// requesting all of them.
async fn plugin_case(
    step: &Step,
    ctx: &Ctx<'_>,
    g: &GpuNode,
    node: Option<&Node>,
    asked: &Asked,
    gpu_use: Option<&crate::preflight::GpuUse>,
    deadline: Instant,
) -> Outcome {
    let Some(node) = node else {
        return Outcome::fail(
            g.name.clone(),
            Some(&g.name),
            format!("{}: node not found", g.name),
            "",
        );
    };
    let detail: Vec<String> = gpu_resources(node)
        .iter()
        .map(|(k, (c, a))| format!("{k}: capacity {c}, allocatable {a}"))
        .collect();
    let detail = detail.join("\n");
    let found = problems(node, g, asked);
    if let Some(first) = found.first() {
        return Outcome::fail(
            g.name.clone(),
            Some(&g.name),
            first.clone(),
            format!("{detail}\n{}", found.join("\n")),
        );
    }
    if !step.bool("schedule") {
        return Outcome::pass(g.name.clone(), Some(&g.name), detail);
    }
    // The problems were none, so the expectation exists.
    let want: BTreeMap<String, u64> = expected(node, g, asked)
        .unwrap_or_default()
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .collect();
    let need = want.get(resources::GPU).copied().unwrap_or(0);
    if let Some(why) = super::pods::busy(gpu_use, &g.name, need) {
        return Outcome::skip(g.name.clone(), Some(&g.name), format!("{why}: {detail}"));
    }
    scheduled_case(ctx, g, &want, false, detail, deadline).await
}

/// `whole GPUs` / `MIG 3g.20gb devices`: a kind of device in words.
fn kind_words(kind: &str) -> String {
    match kind.strip_prefix(resources::MIG_PREFIX) {
        Some(p) => format!("MIG {p} devices"),
        None => "whole GPUs".into(),
    }
}

/// A DRA node: the usable (untainted) devices of its pool against the expectation, then a
/// claim for all of them, allocated for a pod on the node.
async fn dra_case(
    step: &Step,
    ctx: &Ctx<'_>,
    g: &GpuNode,
    node: Option<&Node>,
    modes: &Modes,
    held: Option<&BTreeMap<String, Vec<String>>>,
    deadline: Instant,
) -> Outcome {
    let fail =
        |msg: String, detail: String| Outcome::fail(g.name.clone(), Some(&g.name), msg, detail);
    let Some(node) = node else {
        return fail(format!("{}: node not found", g.name), String::new());
    };
    let want = match claims::expected(node, g, ctx) {
        Ok(w) => w,
        Err(why) => {
            return fail(
                format!("{}: {why} ({})", g.name, g.describe()),
                String::new(),
            );
        }
    };
    let (have, tainted) = match claims::usable(&g.name, modes.slices()) {
        Ok(h) => h,
        Err(why) => {
            return fail(
                format!("{}: DRA pool {}: {why} ({})", g.name, g.name, g.describe()),
                String::new(),
            );
        }
    };
    let mut detail: Vec<String> = have
        .iter()
        .map(|(k, n)| format!("DRA pool {}: {n} usable {}", g.name, kind_words(k)))
        .collect();
    if !tainted.is_empty() {
        detail.push(format!("tainted: {}", tainted.join(", ")));
    }
    let detail = detail.join("\n");
    let mut found = Vec::new();
    let kinds: std::collections::BTreeSet<&String> = want.keys().chain(have.keys()).collect();
    for kind in kinds {
        let w = want.get(kind).copied().unwrap_or(0);
        let h = have.get(kind).copied().unwrap_or(0);
        if w != h {
            let why = if tainted.is_empty() {
                String::new()
            } else {
                format!("; tainted: {}", tainted.join(", "))
            };
            found.push(format!(
                "{}: DRA pool {} has {h} usable {}, expected {w} ({}){why}",
                g.name,
                g.name,
                kind_words(kind),
                g.describe()
            ));
        }
    }
    if let Some(first) = found.first() {
        return fail(first.clone(), format!("{detail}\n{}", found.join("\n")));
    }
    if !step.bool("schedule") {
        return Outcome::pass(g.name.clone(), Some(&g.name), detail);
    }
    let want: BTreeMap<String, u64> = want.into_iter().filter(|(_, n)| *n > 0).collect();
    let total: u64 = want.values().sum();
    if let Some(why) = claims::busy(held, &g.name, total, total) {
        return Outcome::skip(g.name.clone(), Some(&g.name), format!("{why}: {detail}"));
    }
    scheduled_case(ctx, g, &want, true, detail, deadline).await
}

/// The scheduling part's outcome: a pod asking for all of `want` is placed on the node.
async fn scheduled_case(
    ctx: &Ctx<'_>,
    g: &GpuNode,
    want: &BTreeMap<String, u64>,
    dra: bool,
    detail: String,
    deadline: Instant,
) -> Outcome {
    let how = if dra {
        "a claim for"
    } else {
        "a pod requesting"
    };
    match schedule_all(ctx, g, want, dra, deadline).await {
        Ok(()) => Outcome::pass(
            g.name.clone(),
            Some(&g.name),
            format!("{detail}\n{how} all of them was scheduled on {}", g.name),
        ),
        Err(why) => Outcome::fail(
            g.name.clone(),
            Some(&g.name),
            format!(
                "{}: {how} {} was not scheduled there: {why}",
                g.name,
                fmt_request(want)
            ),
            detail,
        ),
    }
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
    dra: bool,
    deadline: Instant,
) -> Result<(), String> {
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let claims_api: Api<ResourceClaim> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let name = format!("allocatable-{}", g.name);
    let labels = super::pods::labels(&ctx.run_id, "allocatable");
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
    if dra {
        let claim: ResourceClaim = serde_json::from_value(claims::claim(&name, &labels, want))
            .map_err(|e| e.to_string())?;
        claims_api
            .create(&PostParams::default(), &claim)
            .await
            .map_err(|e| format!("create claim: {}", crate::errors::chain(&e)))?;
        claims::attach(&mut spec, claims::Source::Claim(&name));
    }
    let pod: Pod = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": spec,
    }))
    .map_err(|e| e.to_string())?;
    if let Err(e) = pods.create(&PostParams::default(), &pod).await {
        if dra {
            let _ = claims_api.delete(&name, &DeleteParams::default()).await;
        }
        return Err(format!("create pod: {e}"));
    }
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
    if dra {
        // The claim goes once its pod has (a claim reserved for a pod is kept until it is gone).
        let _ =
            crate::k8s::wait::deleted(pods.clone(), &name, None, "allocatable pod", left(deadline))
                .await;
        let _ = claims_api.delete(&name, &DeleteParams::default()).await;
    }
    result
}

#[cfg(test)]
mod tests;
