//! `workload`: a pod requesting `nvidia.com/gpu: 1` runs to completion on every GPU node — the
//! GPU Operator e2e's vectorAdd smoke test, as a Job pinned to each node.

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::{Ctx, GpuNode, Outcome, left, no_nodes};
use crate::gpu_stack::{ours, resources};
use crate::suite::Step;

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let image = step.str("image");
    let jobs: Api<Job> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut out = Vec::new();
    let gpu_use = super::pods::gpu_use(ctx).await;
    for g in nodes {
        if let Some(why) = super::pods::busy(gpu_use.as_ref(), &g.name, 1) {
            out.push(Outcome::skip(g.name.clone(), Some(&g.name), why));
            continue;
        }
        let name = format!("smoke-{}", g.name);
        let labels = super::pods::labels(&ctx.run_id, "workload");
        let mut spec = serde_json::json!({
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": g.name},
            "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "cuda", "image": image, "resources": {"limits": {resources::GPU: "1"}}}],
        });
        // The CUDA sample images name no user: run them as a non-root one.
        super::pods::restricted(&mut spec, Some(super::pods::NON_ROOT_USER));
        let job: Job = match serde_json::from_value(serde_json::json!({
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "backoffLimit": 0,
                "template": {"metadata": {"labels": labels}, "spec": spec},
            },
        })) {
            Ok(j) => j,
            Err(e) => {
                out.push(Outcome::error(g.name.clone(), Some(&g.name), e.to_string()));
                continue;
            }
        };
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                names.insert(name, g.name.clone());
            }
            Err(e) => out.push(Outcome::error(
                g.name.clone(),
                Some(&g.name),
                format!("create job {name}: {e}"),
            )),
        }
    }

    // Watch the Jobs until each has finished or the deadline.
    let mut finished: BTreeMap<String, Job> = BTreeMap::new();
    let cfg = watcher::Config::default().labels(&format!("{}=workload", ours::CHECK_LABEL));
    let stream = watcher(jobs.clone(), cfg)
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    // The Jobs' pods too: one whose image will not come waits forever, so its Job fails now.
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let pod_cfg = watcher::Config::default().labels(&format!("{}=workload", ours::CHECK_LABEL));
    let pod_stream = watcher(pods.clone(), pod_cfg)
        .default_backoff()
        .applied_objects();
    let mut pod_stream = std::pin::pin!(pod_stream);
    let mut pull_failed: BTreeMap<String, String> = BTreeMap::new();
    let _ = tokio::time::timeout(left(deadline), async {
        loop {
            tokio::select! {
                ev = stream.next() => match ev {
                    Some(Ok(j)) => {
                        let s = j.status.clone().unwrap_or_default();
                        if s.succeeded.unwrap_or(0) > 0 || s.failed.unwrap_or(0) > 0 {
                            finished.insert(j.name_any(), j);
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
                ev = pod_stream.next() => match ev {
                    Some(Ok(p)) => {
                        if let (Some(why), Some(job)) =
                            (super::pods::image_pull_failure(&p), p.labels().get("job-name"))
                        {
                            pull_failed.insert(job.clone(), why);
                        }
                    }
                    Some(Err(_)) => {}
                    None => break,
                },
            }
            if names
                .keys()
                .all(|n| finished.contains_key(n) || pull_failed.contains_key(n))
            {
                break;
            }
        }
    })
    .await;

    for (job, node) in &names {
        let pod = pods
            .list(&ListParams::default().labels(&format!("job-name={job}")))
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next());
        let pod_state = pod
            .as_ref()
            .map(describe_pod)
            .unwrap_or_else(|| "no pod".into());
        let outcome = match finished.get(job) {
            None if pull_failed.contains_key(job) => {
                let why = pull_failed.get(job).cloned().unwrap_or_default();
                Outcome::fail(
                    node.clone(),
                    Some(node),
                    format!("{node}: smoke {why}"),
                    pod_state.clone(),
                )
            }
            Some(j) if j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0 => {
                Outcome::pass(
                    node.clone(),
                    Some(node),
                    format!("job {job}: pod completed ({pod_state})"),
                )
            }
            Some(_) => Outcome::fail(
                node.clone(),
                Some(node),
                format!(
                    "{node}: smoke pod requesting nvidia.com/gpu: 1 failed ({pod_state}), expected Succeeded"
                ),
                pod_state.clone(),
            ),
            None => Outcome::fail(
                node.clone(),
                Some(node),
                format!(
                    "{node}: smoke pod requesting nvidia.com/gpu: 1 did not complete in time ({pod_state}), expected Succeeded"
                ),
                pod_state.clone(),
            ),
        };
        out.push(outcome);
        let dp = DeleteParams {
            propagation_policy: Some(PropagationPolicy::Background),
            ..DeleteParams::default()
        };
        let _ = jobs.delete(job, &dp).await;
    }
    out
}

/// `Pending: 0/3 nodes are available: ...` or `Succeeded`.
fn describe_pod(p: &Pod) -> String {
    let s = p.status.clone().unwrap_or_default();
    let phase = s.phase.unwrap_or_else(|| "Unknown".into());
    let why = s
        .conditions
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.status != "True" && c.message.is_some())
        .and_then(|c| c.message);
    match why {
        Some(w) => format!("{phase}: {w}"),
        None => phase,
    }
}
