//! `throughput`: `gpuconform-bench` pods on each GPU node — one requesting all its GPUs, or
//! on partitioned GPUs one per MIG device or profile ([`partition`]) — each pod's JSON
//! document read from its log through the API and checked against the contract (the devices it
//! must see, a MIG device of the right profile); then per GPU (or MIG device) × metric a
//! testcase with the value, the floor and the percentage of peak from the GPU performance table
//! ([`judge`], peaks scaled to a MIG device's share), and per GPU a straggler testcase (more
//! than `stragglerPercent` below the best of the same model, or MIG profile, in this run).
//!
//! A crashed bench pod fails its testcase with the exit code and the end of its log; a wrong
//! kernel result fails the metric's testcase (a wrong result is never a number).
//!
//! On a node the DRA driver serves, each bench pod gets its devices from a ResourceClaim of its
//! own name ([`super::claims`]): all whole GPUs of `gpu.nvidia.com`, or one MIG device of the
//! profile from `mig.nvidia.com`.

mod judge;
pub mod partition;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::alloc_mode::Mode;
use super::claims::{self, Modes};
use super::{Ctx, GpuNode, Outcome, left, no_nodes};
use crate::bench::{BenchReport, NodeBench};

use crate::gpu_stack::ours::{self, BENCH_LABEL};
use crate::gpu_stack::resources;
use crate::report::events::Event;
use crate::suite::Step;

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let settings = judge::Settings {
        straggler_pct: step.int("stragglerPercent").clamp(1, 90) as f64,
        max_cv_pct: step.int("maxCvPercent").clamp(1, 100) as f64,
        peak_margin_pct: step.int("peakMarginPercent").clamp(0, 100) as f64,
        allow_unknown_models: step.bool("allowUnknownModels"),
    };
    let repetitions = step.int("repetitions").clamp(3, 1000);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let mut out = Vec::new();
    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.client.clone());
    // Nodes of a gpuconform local cluster (kwok, played by the GPU simulator): the only place a
    // simulated bench document is acceptable.
    let mut simulated_nodes = std::collections::BTreeSet::new();
    let gpu_use = super::pods::gpu_use(ctx).await;
    let asked = super::asked::Asked::read(ctx).await;
    // A DRA node's pods get claims; its MIG devices are published one by one whatever the device
    // plugin's strategy, and the device plugin's sharing is not its.
    let modes = Modes::read(ctx).await;
    let held = claims::held(ctx).await;
    let dra_asked = super::asked::Asked {
        mig_strategy: "mixed".into(),
        plugin: None,
        mig_parted: asked.mig_parted.clone(),
    };
    let claim_api: Api<ResourceClaim> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    // What each bench claim is allocated, seen while its pod holds it.
    let allocations = nodes
        .iter()
        .any(|g| modes.decide(&g.name).mode == Mode::Dra)
        .then(|| {
            let selector = format!(
                "{}={},{}=throughput",
                ours::RUN_LABEL,
                ours::run_label(&ctx.run_id),
                ours::CHECK_LABEL
            );
            claims::Allocations::watch(claim_api.clone(), &selector)
        });
    // Pods whose devices come from a claim of the same name.
    let mut claimed: BTreeSet<String> = BTreeSet::new();
    // Pod name → the job it runs.
    let mut jobs: BTreeMap<String, partition::Job> = BTreeMap::new();
    for g in nodes {
        let Ok(n) = node_api.get(&g.name).await else {
            out.push(Outcome::fail(
                g.name.clone(),
                Some(&g.name),
                format!("{}: node not found", g.name),
                "",
            ));
            continue;
        };
        if n.labels().contains_key(ours::FIXTURE_LABEL) {
            simulated_nodes.insert(g.name.clone());
        }
        let gpu_sms = ctx
            .perf
            .models
            .get(g.model.perf_key(&g.model_key))
            .map(|p| p.sms);
        let decision = modes.decide(&g.name);
        if let Some(failed) = decision.ambiguity(g) {
            out.push(failed);
            continue;
        }
        let dra = decision.mode == Mode::Dra;
        let asked = if dra { &dra_asked } else { &asked };
        let planned = match partition::plan(&n, g, asked, gpu_sms) {
            partition::Plan::Skip(why) => {
                out.push(Outcome::skip(
                    g.name.clone(),
                    Some(&g.name),
                    format!("{}: {why}; nothing measured", g.name),
                ));
                continue;
            }
            partition::Plan::Jobs(j) => j,
        };
        // A node without what its pods request cannot run the bench; the allocatable check
        // reports that, this one says why it measured nothing.
        let have: BTreeMap<String, u64> = if dra {
            claims::usable(&g.name, modes.slices())
                .map(|(h, _)| h)
                .unwrap_or_default()
        } else {
            crate::gpu_stack::gpu_resources(&n)
                .into_iter()
                .map(|(k, (_, a))| (k, a))
                .collect()
        };
        let short: Vec<String> = planned
            .iter()
            .fold(BTreeMap::<&str, u64>::new(), |mut m, j| {
                *m.entry(j.resource.as_str()).or_insert(0) += j.count;
                m
            })
            .into_iter()
            .filter_map(|(res, need)| {
                let alloc = have.get(res).copied().unwrap_or(0);
                let what = if dra {
                    "usable in its DRA pool"
                } else {
                    "allocatable"
                };
                (alloc < need).then(|| format!("{alloc} {res} {what}, {need} needed"))
            })
            .collect();
        if !short.is_empty() {
            out.push(Outcome::skip(
                g.name.clone(),
                Some(&g.name),
                format!("{}: {}; nothing to measure", g.name, short.join(", ")),
            ));
            continue;
        }
        let need: u64 = planned
            .iter()
            .filter(|j| j.resource == resources::GPU)
            .map(|j| j.count)
            .sum();
        let busy = if dra {
            let all: u64 = planned.iter().map(|j| j.count).sum();
            claims::busy(held.as_ref(), &g.name, have.values().sum(), all)
        } else {
            super::pods::busy(gpu_use.as_ref(), &g.name, need)
        };
        if let Some(why) = busy {
            out.push(Outcome::skip(g.name.clone(), Some(&g.name), why));
            continue;
        }
        for job in planned {
            if dra {
                let want = BTreeMap::from([(job.resource.clone(), job.count)]);
                let labels = super::pods::labels(&ctx.run_id, "throughput");
                let made = match serde_json::from_value::<ResourceClaim>(claims::claim(
                    &job.pod, &labels, &want,
                )) {
                    Ok(c) => claim_api
                        .create(&PostParams::default(), &c)
                        .await
                        .map_err(|e| crate::errors::chain(&e)),
                    Err(e) => Err(e.to_string()),
                };
                if let Err(e) = made {
                    out.push(Outcome::error(
                        job.subject.clone(),
                        Some(&g.name),
                        format!("create claim {}: {e}", job.pod),
                    ));
                    continue;
                }
                claimed.insert(job.pod.clone());
            }
            match bench_pod(ctx, &job, repetitions, dra) {
                Ok(pod) => match pods.create(&PostParams::default(), &pod).await {
                    Ok(_) => {
                        jobs.insert(job.pod.clone(), job);
                    }
                    Err(e) => out.push(Outcome::error(
                        job.subject.clone(),
                        Some(&g.name),
                        format!("create bench pod {}: {e}", job.pod),
                    )),
                },
                Err(e) => out.push(Outcome::error(job.subject.clone(), Some(&g.name), e)),
            }
        }
    }

    // Watch until every bench pod has finished, or the deadline.
    let mut finished: BTreeMap<String, Pod> = BTreeMap::new();
    if jobs.is_empty() {
        release(&claim_api, &claimed).await;
        return out;
    }
    let cfg = watcher::Config::default().labels(&format!("{}={}", BENCH_LABEL.0, BENCH_LABEL.1));
    let stream = watcher(pods.clone(), cfg)
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    // A pod whose image will not come waits forever: it fails now, naming image and reason.
    let mut pull_failed: BTreeMap<String, String> = BTreeMap::new();
    let _ = tokio::time::timeout(left(deadline), async {
        while let Some(ev) = stream.next().await {
            if let Ok(p) = ev {
                let phase = p
                    .status
                    .as_ref()
                    .and_then(|s| s.phase.clone())
                    .unwrap_or_default();
                if phase == "Succeeded" || phase == "Failed" {
                    finished.insert(p.name_any(), p);
                } else if let Some(why) = super::pods::image_pull_failure(&p) {
                    pull_failed.insert(p.name_any(), why);
                }
                if jobs
                    .keys()
                    .all(|n| finished.contains_key(n) || pull_failed.contains_key(n))
                {
                    break;
                }
            }
        }
    })
    .await;

    let mut results: Vec<(GpuNode, partition::Job, BenchReport)> = Vec::new();
    for (pod_name, job) in &jobs {
        let node = &job.node;
        let subject = &job.subject;
        let Some(g) = nodes.iter().find(|g| &g.name == node) else {
            continue;
        };
        if let Some(why) = pull_failed.get(pod_name)
            && !finished.contains_key(pod_name)
        {
            out.push(Outcome::fail(
                subject.clone(),
                Some(node),
                format!("{node}: bench {why}"),
                why.clone(),
            ));
            let _ = pods.delete(pod_name, &DeleteParams::default()).await;
            continue;
        }
        let log = read_log(&pods, pod_name).await;
        let tail: String = log
            .lines()
            .rev()
            .take(5)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n");
        match finished.get(pod_name) {
            None => out.push(Outcome::fail(
                subject.clone(),
                Some(node),
                format!("{node}: the bench pod did not finish in time"),
                tail,
            )),
            Some(p) if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Failed") => {
                let term = p
                    .status
                    .as_ref()
                    .and_then(|s| s.container_statuses.as_ref())
                    .and_then(|c| c.first())
                    .and_then(|c| c.state.as_ref())
                    .and_then(|s| s.terminated.as_ref());
                let code = term.map_or(-1, |t| t.exit_code);
                let reason = term.and_then(|t| t.reason.clone()).unwrap_or_default();
                // Exit 1 (a kernel produced a wrong result) and exit 4 (a metric, GPU or peer
                // link failed) come with a document holding everything else: one failure must
                // not hide the others' verdicts. The failures are testcases of their own.
                let judged = [
                    crate::bench::exit::VERIFICATION_FAILED,
                    crate::bench::exit::PARTIAL,
                ];
                let partial = judged
                    .iter()
                    .any(|c| i32::from(*c) == code)
                    .then(|| BenchReport::parse(&log).ok())
                    .flatten()
                    .filter(|r| {
                        judge::contract(
                            r,
                            job,
                            g,
                            ctx.perf.models.get(g.model.perf_key(&g.model_key)),
                            simulated_nodes.contains(node),
                        )
                        .is_ok()
                    });
                if let Some(report) = partial {
                    let wrong: Vec<String> = report
                        .gpus
                        .iter()
                        .flat_map(|d| {
                            d.measurements
                                .iter()
                                .filter(|m| !m.verified)
                                .map(move |m| format!("gpu{} {}", d.device.index, m.metric.key()))
                        })
                        .collect();
                    let failed: Vec<String> = report
                        .gpus
                        .iter()
                        .filter(|d| !d.errors.is_empty())
                        .map(|d| format!("gpu{}", d.device.index))
                        .collect();
                    let what = if wrong.is_empty() {
                        format!("a partial document (errors on {})", failed.join(", "))
                    } else {
                        format!("a complete document with {} wrong result(s)", wrong.len())
                    };
                    let mut o = Outcome::pass(
                        subject.clone(),
                        Some(node),
                        format!(
                            "bench {} on {node}: exit {code}, {what}; every measurement is judged",
                            report.tool_version,
                        ),
                    );
                    o.warnings.push(if wrong.is_empty() {
                        format!(
                            "{subject}: the bench exited {code}: errors on {} (their testcases fail)",
                            failed.join(", ")
                        )
                    } else {
                        format!(
                            "{subject}: the bench exited {code}: wrong results in {} (their testcases fail)",
                            wrong.join(", ")
                        )
                    });
                    out.push(o);
                    results.push((g.clone(), job.clone(), report));
                } else {
                    out.push(Outcome::fail(
                        subject.clone(),
                        Some(node),
                        format!(
                            "{node}: the bench pod failed with exit code {code} ({reason}): {}",
                            log.lines().last().unwrap_or("no log")
                        ),
                        tail,
                    ));
                }
            }
            Some(_) => match BenchReport::parse(&log) {
                Ok(report) => match judge::contract(
                    &report,
                    job,
                    g,
                    ctx.perf.models.get(g.model.perf_key(&g.model_key)),
                    simulated_nodes.contains(node),
                ) {
                    Err(why) => out.push(Outcome::fail(
                        subject.clone(),
                        Some(node),
                        format!("{subject}: {why}"),
                        tail,
                    )),
                    Ok(()) => {
                        match measured_claimed(allocations.as_ref(), &claimed, &modes, job, &report)
                        {
                            Err(why) => out.push(Outcome::fail(
                                subject.clone(),
                                Some(node),
                                format!("{subject}: {why}"),
                                tail,
                            )),
                            Ok(seen) => {
                                out.push(Outcome::pass(
                                    subject.clone(),
                                    Some(node),
                                    format!(
                                        "bench {} on {node}{}: {} device(s) ({}), driver {}{}",
                                        report.tool_version,
                                        if report.simulated { " (simulated)" } else { "" },
                                        report.gpus.len(),
                                        job.mig.as_ref().map_or_else(
                                            || "whole GPUs".to_string(),
                                            |m| format!("MIG {}", m.profile.name)
                                        ),
                                        report.driver_version,
                                        seen.map(|s| format!("; the claim's GPUs: {s}"))
                                            .unwrap_or_default()
                                    ),
                                ));
                                results.push((g.clone(), job.clone(), report));
                            }
                        }
                    }
                },
                Err(e) => out.push(Outcome::fail(
                    subject.clone(),
                    Some(node),
                    format!("{node}: bench output unreadable: {e}"),
                    tail,
                )),
            },
        }
        let _ = pods
            .delete(pod_name, &DeleteParams::default().grace_period(0))
            .await;
    }

    // Each claim goes once its pod has (its pod was deleted above).
    release(&claim_api, &claimed).await;
    out.extend(judge::all(ctx.perf, &settings, &results));
    for (g, job, r) in results {
        ctx.emit(Event::Bench(NodeBench {
            node: g.name.clone(),
            instance_type: g.instance_type.clone(),
            model_key: g.model_key.clone(),
            group: job.group.clone(),
            mig_unit: job
                .mig
                .as_ref()
                .and_then(|_| job.subject.rsplit('/').next().map(str::to_string)),
            report: r,
        }));
    }
    out
}

/// For a bench pod with a claim of whole GPUs: whether the bench measured exactly the GPUs
/// the claim was allocated (by UUID). MIG devices are not compared: what CUDA calls a MIG
/// device's UUID depends on the API version the bench uses.
fn measured_claimed(
    allocations: Option<&claims::Allocations>,
    claimed: &BTreeSet<String>,
    modes: &Modes,
    job: &partition::Job,
    report: &BenchReport,
) -> Result<Option<String>, String> {
    if !claimed.contains(&job.pod) || job.mig.is_some() {
        return Ok(None);
    }
    let Some(allocated) = allocations.and_then(|a| a.get(&job.pod)) else {
        return Err(format!(
            "claim {} was not seen allocated while its pod ran",
            job.pod
        ));
    };
    let measured: Vec<&str> = report.gpus.iter().map(|d| d.device.uuid.as_str()).collect();
    claims::same_gpus(
        &claims::allocated_uuids(&allocated, modes.slices()),
        &measured,
    )
}

/// Deletes the claims of this step's bench pods (the API keeps one that is still reserved for
/// a pod until that pod is gone).
async fn release(api: &Api<ResourceClaim>, claimed: &BTreeSet<String>) {
    for name in claimed {
        let _ = api.delete(name, &DeleteParams::default()).await;
    }
}

/// The pod that runs `job`; `dra`: its devices come from the claim of its own name.
fn bench_pod(
    ctx: &Ctx<'_>,
    job: &partition::Job,
    repetitions: i64,
    dra: bool,
) -> Result<Pod, String> {
    let mut labels = super::pods::labels(&ctx.run_id, "throughput");
    labels[BENCH_LABEL.0] = BENCH_LABEL.1.into();
    let mut spec = serde_json::json!({
        "restartPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": job.node},
        "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": [{
            "name": "bench",
            "image": ctx.plan.bench_image,
            "args": ["--repetitions", repetitions.to_string()],
            "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
            "resources": {"limits": {job.resource.as_str(): job.count.to_string()}},
        }],
    });
    // The bench image runs as its own non-root user (images/bench/Dockerfile).
    super::pods::restricted(&mut spec, None);
    if dra {
        claims::attach(&mut spec, claims::Source::Claim(&job.pod));
    }
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": job.pod, "labels": labels},
        "spec": spec,
    }))
    .map_err(|e| e.to_string())
}

/// The pod's log; one retry after a moment if it is not a bench document yet (the log source
/// of a just-finished container can lag its status by a beat).
async fn read_log(pods: &Api<Pod>, name: &str) -> String {
    let lp = LogParams {
        container: Some("bench".into()),
        ..LogParams::default()
    };
    let first = pods.logs(name, &lp).await.unwrap_or_default();
    if first.contains("\"schemaVersion\"") || first.contains("exit code") {
        return first;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    pods.logs(name, &lp).await.unwrap_or(first)
}
