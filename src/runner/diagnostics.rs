//! Diagnostics for failed testcases, collected before teardown: the node (labels, conditions,
//! GPU resources), events about it and in the operator and test namespaces, the ClusterPolicy
//! status, and the logs of the operator's pods on the node. Written to
//! `diagnostics/<suite>-<case>/` and linked from the testcase.

use std::fmt::Write as _;
use std::path::Path;

use k8s_openapi::api::core::v1::{Event, Node, Pod};
use kube::api::{DynamicObject, ListParams, LogParams};
use kube::{Api, Client, ResourceExt};

use crate::report::Case;

/// Collects diagnostics for one failed case into `run_dir`; returns the folder, relative.
pub async fn collect(
    client: &Client,
    run_dir: &Path,
    case: &Case,
    namespaces: &[&str],
) -> Option<String> {
    let slug: String = format!("{}-{}", case.suite, case.name)
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let rel = format!("diagnostics/{slug}");
    let dir = run_dir.join(&rel);
    std::fs::create_dir_all(&dir).ok()?;

    if let Some(node) = &case.node {
        let nodes: Api<Node> = Api::all(client.clone());
        if let Ok(n) = nodes.get(node).await {
            let summary = serde_json::json!({
                "name": n.name_any(),
                "labels": n.metadata.labels,
                "taints": n.spec.as_ref().and_then(|s| s.taints.clone()),
                "conditions": n.status.as_ref().and_then(|s| s.conditions.clone()),
                "capacity": n.status.as_ref().and_then(|s| s.capacity.clone()),
                "allocatable": n.status.as_ref().and_then(|s| s.allocatable.clone()),
            });
            let _ = std::fs::write(
                dir.join("node.json"),
                serde_json::to_string_pretty(&summary).unwrap_or_default(),
            );
        }
    }

    let mut events = String::new();
    let mut scopes: Vec<(String, Api<Event>, ListParams)> = namespaces
        .iter()
        .map(|ns| {
            (
                format!("namespace {ns}"),
                Api::namespaced(client.clone(), ns),
                ListParams::default(),
            )
        })
        .collect();
    if let Some(node) = &case.node {
        scopes.push((
            format!("node {node}"),
            Api::all(client.clone()),
            ListParams::default().fields(&format!("involvedObject.name={node}")),
        ));
    }
    for (scope, api, lp) in scopes {
        let _ = writeln!(events, "## {scope}");
        if let Ok(list) = api.list(&lp).await {
            for e in list.items {
                let o = &e.involved_object;
                let _ = writeln!(
                    events,
                    "{} {} {}/{}: {}",
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    o.kind.clone().unwrap_or_default(),
                    o.name.clone().unwrap_or_default(),
                    e.message.unwrap_or_default()
                );
            }
        }
    }
    let _ = std::fs::write(dir.join("events.txt"), events);

    let cps: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &crate::gpu_stack::operator::cluster_policy(),
    );
    if let Ok(Some(cp)) = cps.get_opt("cluster-policy").await {
        let status = cp.data.get("status").cloned().unwrap_or_default();
        let _ = std::fs::write(
            dir.join("clusterpolicy-status.json"),
            serde_json::to_string_pretty(&status).unwrap_or_default(),
        );
    }

    // Logs of the operator's pods on the node (all of them for a cluster-wide case, bounded).
    if let Some(ns) = namespaces.first() {
        let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
        if let Ok(list) = pods.list(&ListParams::default()).await {
            let logs = dir.join("pod-logs");
            let mut n = 0;
            for p in list.items {
                let on_node = p.spec.as_ref().and_then(|s| s.node_name.as_deref());
                if case.node.is_some() && on_node != case.node.as_deref() {
                    continue;
                }
                if n >= 20 {
                    break;
                }
                n += 1;
                let _ = std::fs::create_dir_all(&logs);
                let lp = LogParams {
                    tail_lines: Some(200),
                    ..LogParams::default()
                };
                let text = match pods.logs(&p.name_any(), &lp).await {
                    Ok(t) => t,
                    Err(e) => format!("(no log: {e})"),
                };
                let status = serde_json::to_string_pretty(&p.status).unwrap_or_default();
                let _ = std::fs::write(
                    logs.join(format!("{}.log", p.name_any())),
                    format!("{text}\n--- status\n{status}\n"),
                );
            }
        }
    }
    Some(rel)
}
