//! `operator`: the helm release is deployed, the ClusterPolicy reaches `ready`, every operand
//! DaemonSet's rollout is complete, and no operand container on a GPU node restarted more than
//! `maxRestarts` times since the run began (the GPU Operator e2e's own criteria; restarts from
//! before the run, on a cluster that was already there, are not this run's finding).

use std::time::Instant;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DynamicObject, ListParams};
use kube::{Api, ResourceExt};

use super::{Ctx, Outcome, left};
use crate::operator::settle::{POLICY_NAME, is_ready};
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
    let waited = tokio::time::timeout(
        left(deadline),
        kube::runtime::wait::await_condition(api.clone(), POLICY_NAME, is_ready),
    )
    .await;
    let current = api.get_opt(POLICY_NAME).await;
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
                let subject = format!("daemonset/{name}");
                match rollout(&ds) {
                    Rollout::Complete(detail) => out.push(Outcome::pass(subject, None, detail)),
                    Rollout::NoneSelected(detail) => out.push(Outcome::pass(
                        subject,
                        None,
                        format!("{detail} (no node selected, e.g. no MIG-capable node)"),
                    )),
                    Rollout::Incomplete(why, detail) => out.push(Outcome::fail(
                        subject,
                        None,
                        format!("daemonset {name} {why}"),
                        detail,
                    )),
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
    // In pages, each pod reduced to its containers' restart counts and grouped by node: the
    // namespace holds about eight pods per GPU node.
    let listed = crate::k8s::list::list_all(&pods, ListParams::default(), |p| {
        let node = p.spec.as_ref().and_then(|s| s.node_name.clone());
        let restarts = Restarts {
            key: p.metadata.uid.clone().unwrap_or_default(),
            pod: p.name_any(),
            containers: p
                .status
                .and_then(|s| s.container_statuses)
                .unwrap_or_default()
                .into_iter()
                .map(|c| (c.name, c.restart_count))
                .collect(),
        };
        (node, restarts)
    });
    let mut by_node: std::collections::BTreeMap<String, Vec<Restarts>> = Default::default();
    match listed.await {
        Ok(listed) => {
            for (node, r) in listed {
                if let Some(node) = node {
                    by_node.entry(node).or_default().push(r);
                }
            }
        }
        Err(e) => {
            out.push(Outcome::error(
                "restarts",
                None,
                format!("list operand pods: {e}"),
            ));
            return out;
        }
    }
    for node in &ctx.gpu_nodes {
        let mut worst: Vec<String> = Vec::new();
        let mut seen = Vec::new();
        for p in by_node.get(&node.name).into_iter().flatten() {
            for (container, count) in &p.containers {
                let key = format!("{}/{container}", p.key);
                let since = restarts_since(*count, ctx.install.restarts_at_start.get(&key));
                seen.push(format!(
                    "{}/{container}: {since} restarts since the run began ({count} in all)",
                    p.pod
                ));
                if i64::from(since) > max {
                    worst.push(format!(
                        "{}: container {container} of {} restarted {since} times since the run began, expected at most {max}",
                        node.name, p.pod,
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

/// What the restarts judgement reads of one operand pod.
struct Restarts {
    /// The pod's UID: a restarted pod is a new one, its counts start again.
    key: String,
    pod: String,
    /// Each container's name and restart count.
    containers: Vec<(String, i32)>,
}

/// Restarts of a container since the run began: all of them for a pod the run did not see at
/// its start (a new pod UID), none when the count went down (it cannot, for one container of
/// one pod; a stale baseline must not make a negative count).
fn restarts_since(now: i32, at_start: Option<&i32>) -> i32 {
    (now - at_start.copied().unwrap_or(0)).max(0)
}

/// Where a DaemonSet's rollout stands.
#[derive(Debug, PartialEq, Eq)]
enum Rollout {
    /// Every pod of the current generation is scheduled and available.
    Complete(String),
    /// A GPU-only operand that selects no node.
    NoneSelected(String),
    /// Not (yet) complete: why, and the counts.
    Incomplete(String, String),
}

/// A DaemonSet counts as ready only when its rollout is complete, as `kubectl rollout status`
/// judges it: the controller has seen the current spec (`observedGeneration`), every scheduled
/// pod runs it (`updatedNumberScheduled`), and all are available (`numberAvailable`, no
/// `numberUnavailable`). Available pods of an old generation — an upgrade half done — are not
/// ready.
fn rollout(ds: &DaemonSet) -> Rollout {
    let s = ds.status.clone().unwrap_or_default();
    let desired = s.desired_number_scheduled;
    let available = s.number_available.unwrap_or(0);
    let updated = s.updated_number_scheduled.unwrap_or(0);
    let unavailable = s.number_unavailable.unwrap_or(0);
    let generation = ds.metadata.generation.unwrap_or(0);
    let observed = s.observed_generation.unwrap_or(0);
    let detail = format!(
        "desired {desired}, updated {updated}, ready {}, available {available}, unavailable {unavailable}; generation {generation}, observed {observed}",
        s.number_ready
    );
    if observed < generation {
        return Rollout::Incomplete(
            format!("has generation {generation}, the controller has seen {observed}"),
            detail,
        );
    }
    if desired == 0 {
        return if gpu_only(ds) {
            Rollout::NoneSelected(detail)
        } else {
            Rollout::Incomplete("schedules no pods, expected one per node".into(), detail)
        };
    }
    if updated < desired {
        return Rollout::Incomplete(
            format!(
                "has {updated} of {desired} pods updated to its current spec, expected {desired}"
            ),
            detail,
        );
    }
    if available < desired || unavailable > 0 {
        return Rollout::Incomplete(
            format!("has {available} of {desired} pods available, expected {desired}"),
            detail,
        );
    }
    Rollout::Complete(detail)
}

/// Operands placed only on GPU nodes (by a `nvidia.com/gpu.deploy.*` selector) may select none.
fn gpu_only(ds: &DaemonSet) -> bool {
    ds.spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|s| s.node_selector.as_ref())
        .is_some_and(|sel| sel.keys().any(|k| k.starts_with("nvidia.com/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(generation: i64, status: serde_json::Value, gpu_only: bool) -> DaemonSet {
        let selector = if gpu_only {
            serde_json::json!({"nvidia.com/gpu.deploy.mig-manager": "true"})
        } else {
            serde_json::json!({})
        };
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "d", "generation": generation},
            "spec": {
                "selector": {"matchLabels": {"app": "d"}},
                "template": {"metadata": {"labels": {"app": "d"}}, "spec": {"containers": [], "nodeSelector": selector}},
            },
            "status": status,
        }))
        .expect("daemonset")
    }

    fn st(
        desired: i32,
        updated: i32,
        available: i32,
        unavailable: i32,
        observed: i64,
    ) -> serde_json::Value {
        serde_json::json!({
            "currentNumberScheduled": desired, "desiredNumberScheduled": desired,
            "numberMisscheduled": 0, "numberReady": available,
            "updatedNumberScheduled": updated, "numberAvailable": available,
            "numberUnavailable": unavailable, "observedGeneration": observed,
        })
    }

    #[test]
    fn restarts_count_from_the_start_of_the_run() {
        let rows = [
            (7, Some(7), 0),
            (9, Some(7), 2),
            (3, None, 3),
            (1, Some(4), 0),
            (0, None, 0),
        ];
        for (now, start, want) in rows {
            assert_eq!(restarts_since(now, start.as_ref()), want, "{now} {start:?}");
        }
    }

    #[test]
    fn a_daemonset_is_ready_only_when_its_rollout_is_complete() {
        let rows = [
            (ds(2, st(3, 3, 3, 0, 2), false), "complete"),
            (ds(3, st(3, 3, 3, 0, 2), false), "has generation 3"),
            (ds(2, st(3, 1, 3, 0, 2), false), "1 of 3 pods updated"),
            (ds(2, st(3, 3, 2, 1, 2), false), "2 of 3 pods available"),
            (ds(2, st(3, 3, 3, 1, 2), false), "3 of 3 pods available"),
            (ds(1, st(0, 0, 0, 0, 1), false), "schedules no pods"),
            (ds(1, st(0, 0, 0, 0, 1), true), "none selected"),
        ];
        for (d, want) in rows {
            let got = rollout(&d);
            let ok = match (&got, want) {
                (Rollout::Complete(_), "complete") => true,
                (Rollout::NoneSelected(_), "none selected") => true,
                (Rollout::Incomplete(why, _), w) => why.contains(w),
                _ => false,
            };
            assert!(ok, "want {want}, got {got:?}");
        }
    }
}
