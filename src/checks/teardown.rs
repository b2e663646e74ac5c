//! `uninstall` and `teardown`: remove the operator the way users do (`helm uninstall`, then the
//! namespace), and verify the cluster is back to empty — release, namespace (by UID), the
//! ClusterPolicy CRD when the plan set `operator.cleanupCRD`, the harness's test pods, and GPU
//! resources on every GPU node. Leftover labels are reported: the operator's own bookkeeping
//! labels (`gpu.present`, `gpu.deploy.*`; gpu-operator#1391) as the plan says (warning by
//! default), feature labels that still claim GPUs (`gpu.product`, `gpu.count`, the NFD PCI
//! label) always as a failure, because they attract GPU workloads to nodes without GPUs.

use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, ListParams};
use kube::{Api, ResourceExt};

use super::{Ctx, Outcome, left};
use crate::gpu_stack::operator::POLICY_CRD;
use crate::gpu_stack::{gfd, gpu_resources};
use crate::k8s::wait;
use crate::plan::Leftovers;

/// `helm uninstall --wait`, then delete the operator namespace and wait for it to go.
pub async fn uninstall(ctx: &Ctx<'_>, deadline: Instant) -> Vec<Outcome> {
    // A release the run did not install is never removed (verify-only, adopted, pre-existing).
    if let Some(why) = ctx.install.not_ours() {
        return vec![Outcome::skip("uninstall", None, why)];
    }
    let spec = &ctx.plan.operator;
    let mut detail = String::new();
    match ctx.helm.status(spec).await {
        Ok(Some(_)) => match ctx.helm.uninstall(spec, left(deadline)).await {
            Ok(out) => detail.push_str(out.trim()),
            Err(e) => return vec![Outcome::fail("uninstall", None, e.to_string(), "")],
        },
        Ok(None) => detail.push_str("release already absent"),
        Err(e) => return vec![Outcome::error("uninstall", None, e.to_string())],
    }
    let ns: Api<Namespace> = Api::all(ctx.client.clone());
    match ns.delete(&spec.namespace, &DeleteParams::default()).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 404 => {}
        Err(e) => {
            return vec![Outcome::error(
                "uninstall",
                None,
                format!("delete namespace {}: {e}", spec.namespace),
            )];
        }
    }
    match wait::deleted(
        ns,
        &spec.namespace,
        None,
        "the operator namespace to be deleted",
        left(deadline),
    )
    .await
    {
        Ok(()) => {
            detail.push_str(&format!("\nnamespace {} deleted", spec.namespace));
            vec![Outcome::pass("uninstall", None, detail)]
        }
        Err(e) => vec![Outcome::fail(
            "uninstall",
            None,
            format!("namespace {}: {e}", spec.namespace),
            detail,
        )],
    }
}

/// Verifies that uninstalling left the cluster empty.
pub async fn verify(step: &crate::suite::Step, ctx: &Ctx<'_>, deadline: Instant) -> Vec<Outcome> {
    // Nothing was uninstalled, so there is no empty cluster to verify.
    if let Some(why) = ctx.install.not_ours() {
        return vec![Outcome::skip("release", None, why)];
    }
    let spec = &ctx.plan.operator;
    let mut out = Vec::new();
    match ctx.helm.status(spec).await {
        Ok(None) => out.push(Outcome::pass(
            "release",
            None,
            format!("release {} gone", spec.release),
        )),
        Ok(Some(crate::operator::helm::Release { status, .. })) => out.push(Outcome::fail(
            "release",
            None,
            format!(
                "helm release {} is still there ({status}), expected gone",
                spec.release
            ),
            "",
        )),
        Err(e) => out.push(Outcome::error("release", None, e.to_string())),
    }
    let ns: Api<Namespace> = Api::all(ctx.client.clone());
    let uid = ctx.install.namespace_uid.as_deref();
    match wait::deleted(
        ns,
        &spec.namespace,
        uid,
        "the operator namespace",
        left(deadline),
    )
    .await
    {
        Ok(()) => out.push(Outcome::pass(
            format!("namespace/{}", spec.namespace),
            None,
            format!("uid {} gone", uid.unwrap_or("?")),
        )),
        Err(e) => out.push(Outcome::fail(
            format!("namespace/{}", spec.namespace),
            None,
            format!("namespace {} still exists: {e}", spec.namespace),
            "",
        )),
    }
    if spec.cleanup_crds() {
        let crds: Api<CustomResourceDefinition> = Api::all(ctx.client.clone());
        let uid = ctx.install.crd_uid.as_deref();
        match wait::deleted(crds, POLICY_CRD, uid, "the ClusterPolicy CRD", left(deadline)).await {
            Ok(()) => out.push(Outcome::pass(format!("crd/{POLICY_CRD}"), None, "deleted by the cleanup-crd hook")),
            Err(_) => out.push(Outcome::fail(
                format!("crd/{POLICY_CRD}"),
                None,
                format!("crd {POLICY_CRD} still exists, expected deleted (the plan sets operator.cleanupCRD)"),
                "",
            )),
        }
    }
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    match pods
        .list(&ListParams::default().labels(&crate::gpu_stack::ours::run_selector(&ctx.run_id)))
        .await
    {
        Ok(l)
            if l.items
                .iter()
                .all(|p| p.metadata.deletion_timestamp.is_some()) =>
        {
            out.push(Outcome::pass(
                "test-pods",
                None,
                format!("no test pods left in {}", ctx.test_namespace),
            ));
        }
        Ok(l) => out.push(Outcome::fail(
            "test-pods",
            None,
            format!(
                "test pods left in {}: {}",
                ctx.test_namespace,
                l.items
                    .iter()
                    .map(ResourceExt::name_any)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            "",
        )),
        Err(e) => out.push(Outcome::error(
            "test-pods",
            None,
            format!("list test pods: {e}"),
        )),
    }

    // GPU resources and the labels that claim GPUs, watched until they are gone or the
    // deadline. Allocatable must be 0 at once; capacity may stay for the kubelet's grace period.
    let started = Instant::now();
    let grace = Duration::from_secs(u64::try_from(step.int("capacityGraceSeconds")).unwrap_or(0));
    let external = ctx.plan.operator.external_nfd();
    let last = super::watch_nodes(ctx, &ctx.gpu_nodes, deadline, |n, _| empty(n, external)).await;
    for g in &ctx.gpu_nodes {
        let Some(node) = last.get(&g.name).and_then(Option::as_ref) else {
            out.push(Outcome::error(
                g.name.clone(),
                Some(&g.name),
                format!("{}: node not seen", g.name),
            ));
            continue;
        };
        let (fails, warns) = node_verdict(
            node,
            &g.name,
            external,
            ctx.plan.leftover_labels,
            grace,
            started.elapsed(),
        );
        let detail = node
            .labels()
            .iter()
            .filter(|(k, _)| {
                k.starts_with("nvidia.com/") || k.starts_with("feature.node.kubernetes.io/")
            })
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("\n");
        let mut o = match fails.first() {
            None => Outcome::pass(g.name.clone(), Some(&g.name), detail),
            Some(f) => Outcome::fail(
                g.name.clone(),
                Some(&g.name),
                f.clone(),
                format!("{}\n\n{detail}", fails.join("\n")),
            ),
        };
        o.warnings = warns;
        out.push(o);
    }
    out
}

/// The labels that claim GPUs: left behind they attract GPU workloads to nodes without GPUs.
const CLAIMS: &[&str] = &[
    gfd::PRODUCT,
    gfd::COUNT,
    gfd::MEMORY,
    "feature.node.kubernetes.io/pci-10de.present",
    "feature.node.kubernetes.io/pci-0302_10de.present",
    "feature.node.kubernetes.io/pci-0300_10de.present",
];

/// Whether a label claims GPUs the operator put there: with a cluster-managed NFD
/// (`nfd.enabled=false`) NFD's own PCI labels are the cluster's, true after the uninstall too.
fn claims(key: &str, external_nfd: bool) -> bool {
    CLAIMS.contains(&key) && !(external_nfd && key.starts_with("feature.node.kubernetes.io/"))
}

/// Nothing left to wait for: no GPU capacity or allocatable, no label claiming GPUs.
fn empty(node: &Node, external_nfd: bool) -> bool {
    gpu_resources(node)
        .values()
        .all(|(c, a)| *c == 0 && *a == 0)
        && !node.labels().keys().any(|k| claims(k, external_nfd))
}

/// What is left on a node after uninstall: failures and warnings. `waited` is how long the
/// check watched (at most the time since uninstall). Allocatable must be 0 at once (no plugin
/// serves the devices); capacity may stay while the kubelet's grace period for a gone device
/// plugin runs (`endpointStopGracePeriod`, 5 min), so it fails only once `waited` exceeds
/// `grace`, and before that it is a warning saying the check could not wait long enough.
pub fn node_verdict(
    node: &Node,
    name: &str,
    external_nfd: bool,
    leftovers: Leftovers,
    grace: Duration,
    waited: Duration,
) -> (Vec<String>, Vec<String>) {
    let mut fails = Vec::new();
    let mut warns = Vec::new();
    for (res, (cap, alloc)) in gpu_resources(node) {
        if alloc > 0 {
            fails.push(format!(
                "{name}: allocatable {res} is still {alloc} after uninstall, expected 0 (no device plugin serves it)"
            ));
        } else if cap > 0 && waited >= grace {
            fails.push(format!(
                "{name}: capacity {res} is still {cap} {}s after uninstall, expected 0 once the kubelet's device grace period ({}s) has passed",
                waited.as_secs(),
                grace.as_secs()
            ));
        } else if cap > 0 {
            warns.push(format!(
                "{name}: capacity {res} is still {cap}; the kubelet keeps a gone device plugin's capacity for up to {}s and the step ended after {}s: give the step a timeout above the grace period to see it drop",
                grace.as_secs(),
                waited.as_secs()
            ));
        }
    }
    let labels = node.labels();
    let claims: Vec<&str> = labels
        .keys()
        .map(String::as_str)
        .filter(|k| claims(k, external_nfd))
        .collect();
    if !claims.is_empty() {
        fails.push(format!(
            "{name}: feature labels left after uninstall: {} (they still claim GPUs; expected pruned)",
            claims.join(", ")
        ));
    }
    let bookkeeping: Vec<&str> = labels
        .keys()
        .map(String::as_str)
        .filter(|k| k.starts_with("nvidia.com/") && !claims.contains(k))
        .collect();
    if !bookkeeping.is_empty() {
        let msg = format!(
            "{name}: {} nvidia.com labels left after uninstall: {}",
            bookkeeping.len(),
            bookkeeping.join(", ")
        );
        match leftovers {
            Leftovers::Warn => warns.push(msg),
            Leftovers::Fail => fails.push(msg),
        }
    }
    (fails, warns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(labels: serde_json::Value, cap: &str, alloc: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n", "labels": labels},
            "status": {"capacity": {"nvidia.com/gpu": cap}, "allocatable": {"nvidia.com/gpu": alloc}},
        }))
        .expect("node")
    }

    #[test]
    fn capacity_may_stay_for_the_grace_period_allocatable_may_not() {
        let grace = Duration::from_secs(300);
        let s = Duration::from_secs;
        let bare = serde_json::json!({});
        // (capacity, allocatable, waited, failures, warnings)
        let rows = [
            ("0", "0", s(1), 0, 0),
            ("8", "0", s(60), 0, 1),
            ("8", "0", s(301), 1, 0),
            ("8", "8", s(1), 1, 0),
            ("0", "1", s(1), 1, 0),
        ];
        for (cap, alloc, waited, f, w) in rows {
            let (fails, warns) = node_verdict(
                &node(bare.clone(), cap, alloc),
                "n",
                false,
                Leftovers::Warn,
                grace,
                waited,
            );
            assert_eq!(
                (fails.len(), warns.len()),
                (f, w),
                "{cap}/{alloc} after {waited:?}: {fails:?} {warns:?}"
            );
        }
        let (fails, _) = node_verdict(
            &node(bare, "8", "0"),
            "n",
            false,
            Leftovers::Warn,
            grace,
            s(400),
        );
        assert_eq!(
            fails[0],
            "n: capacity nvidia.com/gpu is still 8 400s after uninstall, expected 0 once the kubelet's device grace period (300s) has passed"
        );
    }

    #[test]
    fn claims_fail_bookkeeping_follows_the_plan() {
        let l = serde_json::json!({"nvidia.com/gpu.product": "Tesla-T4", "nvidia.com/gpu.present": "true"});
        let n = node(l, "0", "0");
        let z = Duration::ZERO;
        let (fails, warns) = node_verdict(&n, "n", false, Leftovers::Warn, z, z);
        assert_eq!((fails.len(), warns.len()), (1, 1), "{fails:?} {warns:?}");
        assert!(fails[0].contains("nvidia.com/gpu.product"), "{fails:?}");
        let (fails, _) = node_verdict(&n, "n", false, Leftovers::Fail, z, z);
        assert_eq!(fails.len(), 2);
        assert!(!empty(&n, false));
        // NFD's PCI label, left by a cluster-managed NFD, is the cluster's, not a leftover.
        let l = serde_json::json!({"feature.node.kubernetes.io/pci-10de.present": "true"});
        let n = node(l, "0", "0");
        assert_eq!(
            node_verdict(&n, "n", false, Leftovers::Warn, z, z).0.len(),
            1
        );
        assert!(
            node_verdict(&n, "n", true, Leftovers::Warn, z, z)
                .0
                .is_empty()
        );
        assert!(empty(&n, true) && !empty(&n, false));
    }
}
