//! `operator`: the helm release is deployed, the ClusterPolicy reaches `ready`, every operand
//! DaemonSet has all its pods available, and no operand container on a GPU node restarted more
//! than `maxRestarts` times (the GPU Operator e2e's own criteria).

use std::time::Instant;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, ResourceExt};

use super::{Ctx, Outcome, left};
use crate::suite::Step;

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, deadline: Instant) -> Vec<Outcome> {
    let mut out = Vec::new();
    let spec = &ctx.plan.operator;
    match ctx.helm.status(spec).await {
        Ok(Some(crate::operator::helm::Release { status, chart, .. })) if status == "deployed" => {
            out.push(Outcome::pass(
                "release",
                None,
                format!("{} {chart} deployed", spec.release),
            ));
        }
        Ok(Some(crate::operator::helm::Release { status, chart, .. })) => out.push(Outcome::fail(
            "release",
            None,
            format!(
                "helm release {} ({chart}) is {status}, expected deployed",
                spec.release
            ),
            "",
        )),
        Ok(None) => out.push(Outcome::fail(
            "release",
            None,
            format!(
                "helm release {} not found in namespace {}, expected deployed",
                spec.release, spec.namespace
            ),
            "",
        )),
        Err(e) => out.push(Outcome::error("release", None, e.to_string())),
    }

    // The ClusterPolicy: wait (watch) until ready or the deadline.
    let api: Api<DynamicObject> = Api::all_with(
        ctx.client.clone(),
        &crate::gpu_stack::operator::cluster_policy(),
    );
    let is_ready = |o: Option<&DynamicObject>| {
        o.and_then(|o| o.data.pointer("/status/state"))
            .and_then(|s| s.as_str())
            == Some("ready")
    };
    let waited = tokio::time::timeout(
        left(deadline),
        kube::runtime::wait::await_condition(api.clone(), "cluster-policy", is_ready),
    )
    .await;
    let current = api.get_opt("cluster-policy").await;
    match (waited, current) {
        (Ok(Ok(Some(_))), _) => out.push(Outcome::pass(
            "clusterpolicy",
            None,
            "cluster-policy state ready",
        )),
        (_, Ok(Some(cp))) => {
            let state = cp
                .data
                .pointer("/status/state")
                .and_then(|s| s.as_str())
                .unwrap_or("(none)")
                .to_string();
            let ready = cp
                .data
                .pointer("/status/conditions")
                .and_then(|c| c.as_array())
                .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                .map(|c| {
                    format!(
                        "{}: {}",
                        c["reason"].as_str().unwrap_or(""),
                        c["message"].as_str().unwrap_or("")
                    )
                })
                .unwrap_or_default();
            out.push(Outcome::fail(
                "clusterpolicy",
                None,
                format!("clusterpolicy cluster-policy state is \"{state}\", expected \"ready\" ({ready})"),
                serde_json::to_string_pretty(cp.data.get("status").unwrap_or(&serde_json::Value::Null)).unwrap_or_default(),
            ));
        }
        (_, Ok(None)) => out.push(Outcome::fail(
            "clusterpolicy",
            None,
            "clusterpolicy cluster-policy does not exist, expected state \"ready\"",
            "",
        )),
        (_, Err(e)) => out.push(Outcome::error(
            "clusterpolicy",
            None,
            format!("read clusterpolicy: {e}"),
        )),
    }

    // Operand DaemonSets in the operator namespace.
    let ds_api: Api<DaemonSet> = Api::namespaced(ctx.client.clone(), &spec.namespace);
    match ds_api.list(&ListParams::default()).await {
        Ok(list) => {
            for ds in list.items {
                let name = ds.name_any();
                let s = ds.status.clone().unwrap_or_default();
                let available = s.number_available.unwrap_or(0);
                let desired = s.desired_number_scheduled;
                let subject = format!("daemonset/{name}");
                let detail = format!(
                    "desired {desired}, ready {}, available {available}",
                    s.number_ready
                );
                if desired > 0 && available >= desired {
                    out.push(Outcome::pass(subject, None, detail));
                } else if desired == 0 && !gpu_only(&ds) {
                    out.push(Outcome::fail(
                        subject,
                        None,
                        format!("daemonset {name} schedules no pods, expected one per node"),
                        detail,
                    ));
                } else if desired == 0 {
                    out.push(Outcome::pass(
                        subject,
                        None,
                        format!("{detail} (no node selected, e.g. no MIG-capable node)"),
                    ));
                } else {
                    out.push(Outcome::fail(
                        subject,
                        None,
                        format!("daemonset {name} has {available} of {desired} pods available, expected {desired}"),
                        detail,
                    ));
                }
            }
        }
        Err(e) => out.push(Outcome::error(
            "daemonsets",
            None,
            format!("list daemonsets: {e}"),
        )),
    }

    // Restarts of operand containers, per GPU node.
    let max = step.int("maxRestarts");
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &spec.namespace);
    let list = match pods.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            out.push(Outcome::error(
                "restarts",
                None,
                format!("list operand pods: {e}"),
            ));
            return out;
        }
    };
    for node in &ctx.gpu_nodes {
        let mut worst: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        for p in list
            .iter()
            .filter(|p| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&node.name))
        {
            for c in p
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.clone())
                .unwrap_or_default()
            {
                seen.push(format!(
                    "{}/{}: {} restarts",
                    p.name_any(),
                    c.name,
                    c.restart_count
                ));
                if i64::from(c.restart_count) > max {
                    worst.push(format!(
                        "{}: container {} of {} restarted {} times, expected at most {max}",
                        node.name,
                        c.name,
                        p.name_any(),
                        c.restart_count
                    ));
                }
            }
        }
        let subject = format!("restarts/{}", node.name);
        match worst.first() {
            None => out.push(Outcome::pass(subject, Some(&node.name), seen.join("\n"))),
            Some(first) => out.push(Outcome::fail(
                subject,
                Some(&node.name),
                first.clone(),
                seen.join("\n"),
            )),
        }
    }
    out
}

/// Operands placed only on GPU nodes (by a `nvidia.com/gpu.deploy.*` selector) may select none.
fn gpu_only(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.as_ref())
        .is_some_and(|sel| sel.keys().any(|k| k.starts_with("nvidia.com/")))
}
