//! `uninstall` and `teardown`: remove the operator the way users do (`helm uninstall`, then the
//! namespace), and verify the cluster is back to empty — release, namespace (by UID), the
//! ClusterPolicy CRD when the plan set `operator.cleanupCRD`, the harness's test pods, and GPU
//! resources on every GPU node. Leftover labels are reported: the operator's own bookkeeping
//! labels (`gpu.present`, `gpu.deploy.*`; gpu-operator#1391) as the plan says (warning by
//! default), feature labels that still claim GPUs (`gpu.product`, `gpu.count`, the NFD PCI
//! label) always as a failure, because they attract GPU workloads to nodes without GPUs.

use std::time::Instant;

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
pub async fn verify(ctx: &Ctx<'_>, deadline: Instant) -> Vec<Outcome> {
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

    let nodes: Api<Node> = Api::all(ctx.client.clone());
    for g in &ctx.gpu_nodes {
        let node = match nodes.get(&g.name).await {
            Ok(n) => n,
            Err(e) => {
                out.push(Outcome::error(
                    g.name.clone(),
                    Some(&g.name),
                    format!("get node: {e}"),
                ));
                continue;
            }
        };
        let mut fails = Vec::new();
        let mut warns = Vec::new();
        for (res, (cap, alloc)) in gpu_resources(&node) {
            if cap > 0 || alloc > 0 {
                fails.push(format!("{}: {res} is still {alloc}/{cap} (allocatable/capacity), expected 0 after uninstall", g.name));
            }
        }
        let labels = node.labels();
        let claims: Vec<&String> = labels
            .keys()
            .filter(|k| {
                matches!(
                    k.as_str(),
                    gfd::PRODUCT
                        | gfd::COUNT
                        | gfd::MEMORY
                        | "feature.node.kubernetes.io/pci-10de.present"
                        | "feature.node.kubernetes.io/pci-0302_10de.present"
                        | "feature.node.kubernetes.io/pci-0300_10de.present"
                )
            })
            .collect();
        if !claims.is_empty() {
            fails.push(format!(
                "{}: feature labels left after uninstall: {} (they still claim GPUs; expected pruned)",
                g.name,
                claims.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            ));
        }
        let bookkeeping: Vec<&String> = labels
            .keys()
            .filter(|k| k.starts_with("nvidia.com/") && !claims.contains(k))
            .collect();
        if !bookkeeping.is_empty() {
            let msg = format!(
                "{}: {} nvidia.com labels left after uninstall: {}",
                g.name,
                bookkeeping.len(),
                bookkeeping
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            match ctx.plan.leftover_labels {
                Leftovers::Warn => warns.push(msg),
                Leftovers::Fail => fails.push(msg),
            }
        }
        let detail = labels
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
