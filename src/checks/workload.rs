//! `workload`: a pod requesting one GPU runs to completion on every GPU node — the GPU
//! Operator e2e's vectorAdd smoke test, as a Job pinned to each node — once per kind of GPU
//! resource the node is expected to offer (as [`super::allocatable`] expects them): `nvidia.com/gpu`, the renamed shared `nvidia.com/gpu.shared`, and
//! each MIG profile `nvidia.com/mig-<profile>` under the mixed strategy (requesting
//! `nvidia.com/gpu` there would never schedule). The testcase is the node for `nvidia.com/gpu`,
//! `<node>/<resource>` for the others. On a node the DRA driver serves, the Job's pod gets its
//! device from a ResourceClaimTemplate instead (one whole GPU of `gpu.nvidia.com`, or one MIG
//! device of the profile from `mig.nvidia.com`: [`super::claims`]).

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::ResourceClaimTemplate;
use kube::api::{DeleteParams, ListParams, PostParams, PropagationPolicy};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::alloc_mode::Mode;
use super::claims::{self, Modes};
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
    // Job name → (node, resource).
    let mut names: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
    let templates: Api<ResourceClaimTemplate> =
        Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let mut out = Vec::new();
    let gpu_use = super::pods::gpu_use(ctx).await;
    let seen: BTreeMap<String, k8s_openapi::api::core::v1::Node> =
        Api::<k8s_openapi::api::core::v1::Node>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items.into_iter().map(|n| (n.name_any(), n)).collect())
            .unwrap_or_default();
    // The kinds each node is expected to offer, from the plan's MIG and sharing configs and
    // the catalog (as `allocatable` expects them), never from what the node advertises.
    let asked = super::asked::Asked::read(ctx).await;
    // On a DRA node the Job's pod gets a claim from a template instead of a limit.
    let modes = Modes::read(ctx).await;
    let held = claims::held(ctx).await;
    let mut jobs_for = Vec::new();
    for g in nodes {
        let decision = modes.decide(&g.name);
        if let Some(failed) = decision.ambiguity(g) {
            out.push(failed);
            continue;
        }
        let dra = decision.mode == Mode::Dra;
        let want = match seen.get(&g.name) {
            Some(node) if dra => claims::expected(node, g, ctx),
            Some(node) => super::allocatable::expected(node, g, &asked),
            None => Err("node not found".into()),
        };
        match want {
            Ok(want) => {
                for kind in kinds(&want) {
                    jobs_for.push((g, kind, dra));
                }
            }
            Err(why) => out.push(Outcome::fail(
                g.name.clone(),
                Some(&g.name),
                format!("{}: {why} ({})", g.name, g.describe()),
                "",
            )),
        }
    }
    for (g, kind, dra) in jobs_for {
        let subject = subject(&g.name, &kind);
        let busy = if dra {
            let usable = claims::usable(&g.name, modes.slices())
                .map(|(h, _)| h.values().sum::<u64>())
                .unwrap_or(0);
            claims::busy(held.as_ref(), &g.name, usable, 1)
        } else if kind == resources::GPU {
            super::pods::busy(gpu_use.as_ref(), &g.name, 1)
        } else {
            None
        };
        if let Some(why) = busy {
            out.push(Outcome::skip(subject, Some(&g.name), why));
            continue;
        }
        let name = job_name(&g.name, &kind);
        let labels = super::pods::labels(&ctx.run_id, "workload");
        let mut spec = serde_json::json!({
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": g.name},
            "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{"name": "cuda", "image": image, "resources": {"limits": {kind.as_str(): "1"}}}],
        });
        // The CUDA sample images name no user: run them as a non-root one.
        super::pods::restricted(&mut spec, Some(super::pods::NON_ROOT_USER));
        if dra {
            let one = BTreeMap::from([(kind.clone(), 1)]);
            let made = serde_json::from_value::<ResourceClaimTemplate>(claims::template(
                &name, &labels, &one,
            ))
            .map_err(|e| e.to_string());
            let made = match made {
                Ok(t) => templates
                    .create(&PostParams::default(), &t)
                    .await
                    .map_err(|e| crate::errors::chain(&e)),
                Err(e) => Err(e),
            };
            if let Err(e) = made {
                out.push(Outcome::error(
                    subject,
                    Some(&g.name),
                    format!("create ResourceClaimTemplate {name}: {e}"),
                ));
                continue;
            }
            claims::attach(&mut spec, claims::Source::Template(&name));
        }
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
                out.push(Outcome::error(subject, Some(&g.name), e.to_string()));
                continue;
            }
        };
        match jobs.create(&PostParams::default(), &job).await {
            Ok(_) => {
                names.insert(name, (g.name.clone(), kind, dra));
            }
            Err(e) => out.push(Outcome::error(
                subject,
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

    for (job, (node, kind, dra)) in &names {
        let subject = subject(node, kind);
        let asking = if *dra {
            format!("with a DRA claim for 1 {kind}")
        } else {
            format!("requesting {kind}: 1")
        };
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
                    subject.clone(),
                    Some(node),
                    format!("{node}: smoke {why}"),
                    pod_state.clone(),
                )
            }
            Some(j) if j.status.as_ref().and_then(|s| s.succeeded).unwrap_or(0) > 0 => {
                Outcome::pass(
                    subject.clone(),
                    Some(node),
                    format!("job {job}: pod completed ({pod_state})"),
                )
            }
            Some(_) => Outcome::fail(
                subject.clone(),
                Some(node),
                format!("{node}: smoke pod {asking} failed ({pod_state}), expected Succeeded"),
                pod_state.clone(),
            ),
            None => Outcome::fail(
                subject.clone(),
                Some(node),
                format!(
                    "{node}: smoke pod {asking} did not complete in time ({pod_state}), expected Succeeded"
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
        if *dra {
            // Claims made from it are the pods' own and go with them.
            let _ = templates.delete(job, &DeleteParams::default()).await;
        }
    }
    out
}

/// The kinds of GPU resource a node is expected to offer (count > 0), `nvidia.com/gpu` first;
/// a node expected to offer none is still asked for `nvidia.com/gpu`, so its case fails
/// instead of vanishing.
pub fn kinds(want: &BTreeMap<String, u64>) -> Vec<String> {
    let mut out: Vec<String> = want
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, _)| k.clone())
        .collect();
    out.sort_by_key(|k| (k != resources::GPU, k.clone()));
    if out.is_empty() {
        out.push(resources::GPU.to_string());
    }
    out
}

/// The testcase: the node for whole GPUs, `<node>/<resource>` for the other kinds.
fn subject(node: &str, kind: &str) -> String {
    match kind.strip_prefix(resources::PREFIX) {
        _ if kind == resources::GPU => node.to_string(),
        Some(short) => format!("{node}/{short}"),
        None => format!("{node}/{kind}"),
    }
}

/// A Job name (a DNS label): `smoke-<node>` for whole GPUs, `smoke-<node>-<resource>` else.
fn job_name(node: &str, kind: &str) -> String {
    if kind == resources::GPU {
        return format!("smoke-{node}");
    }
    let short: String = kind
        .trim_start_matches(resources::PREFIX)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("smoke-{node}-{short}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn want(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
    }

    #[test]
    fn one_job_per_kind_of_gpu_resource() {
        let rows = [
            (want(&[("nvidia.com/gpu", 8)]), vec!["nvidia.com/gpu"]),
            (
                want(&[
                    ("nvidia.com/gpu", 0),
                    ("nvidia.com/mig-1g.5gb", 16),
                    ("nvidia.com/mig-3g.20gb", 8),
                ]),
                vec!["nvidia.com/mig-1g.5gb", "nvidia.com/mig-3g.20gb"],
            ),
            (
                want(&[("nvidia.com/gpu", 0), ("nvidia.com/gpu.shared", 4)]),
                vec!["nvidia.com/gpu.shared"],
            ),
            (want(&[]), vec!["nvidia.com/gpu"]),
        ];
        for (w, expect) in rows {
            assert_eq!(kinds(&w), expect, "{w:?}");
        }
        assert_eq!(
            subject("p4d-1", "nvidia.com/mig-1g.5gb"),
            "p4d-1/mig-1g.5gb"
        );
        assert_eq!(subject("p4d-1", "nvidia.com/gpu"), "p4d-1");
        assert_eq!(
            job_name("p4d-1", "nvidia.com/mig-1g.5gb"),
            "smoke-p4d-1-mig-1g-5gb"
        );
        assert_eq!(
            job_name("p4d-1", "nvidia.com/gpu.shared"),
            "smoke-p4d-1-gpu-shared"
        );
    }
}
