//! `throughput`: one `gpuconform-bench` pod per GPU node (pinned to the node, requesting all its
//! GPUs), its JSON document read from the pod log through the API and checked against the
//! contract; then per GPU × metric a testcase with the value, the floor and the percentage of
//! peak from the GPU performance table, and per GPU a straggler testcase (a GPU more than
//! `stragglerPercent` below the best GPU of the same model in this run, on any metric).
//!
//! A crashed bench pod fails its node's testcase with the exit code and the end of its log; a
//! wrong kernel result fails the metric's testcase (a wrong result is never a number).

use std::collections::BTreeMap;
use std::time::Instant;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{DeleteParams, LogParams, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, ResourceExt};

use super::{Ctx, GpuNode, Outcome, left, no_nodes};
use crate::bench::model::GpuPerf;
use crate::bench::{BenchReport, Metric, NodeBench};

use crate::gpu_stack::ours::{self, BENCH_LABEL};
use crate::gpu_stack::resources;
use crate::report::events::Event;
use crate::suite::Step;

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let straggler_pct = step.int("stragglerPercent").clamp(1, 90) as f64;
    let repetitions = step.int("repetitions").clamp(3, 1000);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let mut out = Vec::new();
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let node_api: Api<k8s_openapi::api::core::v1::Node> = Api::all(ctx.client.clone());
    // Nodes of a gpuconform local cluster (kwok, played by the GPU simulator): the only place a
    // simulated bench document is acceptable.
    let mut simulated_nodes = std::collections::BTreeSet::new();
    let gpu_use = super::pods::gpu_use(ctx).await;
    let asked = super::asked::Asked::read(ctx).await;
    for g in nodes {
        // A node without allocatable GPUs cannot run the bench; the allocatable check reports
        // that, this one says why it measured nothing.
        if let Ok(n) = node_api.get(&g.name).await {
            if n.labels().contains_key(ours::FIXTURE_LABEL) {
                simulated_nodes.insert(g.name.clone());
            }
            // Partitioned GPUs (MIG devices, time-sliced or MPS replicas) would be judged
            // against whole-GPU floors: not measured, said so (and a suite of such skips fails
            // as nothing checked).
            if let Some(why) = partitioned(&n, g, &asked) {
                out.push(Outcome::skip(
                    g.name.clone(),
                    Some(&g.name),
                    format!(
                        "{}: {why}; throughput is measured on whole, unshared GPUs only",
                        g.name
                    ),
                ));
                continue;
            }
            let alloc = crate::gpu_stack::gpu_resources(&n)
                .get(resources::GPU)
                .map_or(0, |r| r.1);
            if alloc < u64::from(g.count) {
                out.push(Outcome::skip(
                    g.name.clone(),
                    Some(&g.name),
                    format!(
                        "{}: {alloc} of {} GPUs allocatable, nothing to measure",
                        g.name, g.count
                    ),
                ));
                continue;
            }
        }
        if let Some(why) = super::pods::busy(gpu_use.as_ref(), &g.name, u64::from(g.count)) {
            out.push(Outcome::skip(g.name.clone(), Some(&g.name), why));
            continue;
        }
        let name = format!("bench-{}", g.name);
        let mut labels = super::pods::labels(&ctx.run_id, "throughput");
        labels[BENCH_LABEL.0] = BENCH_LABEL.1.into();
        let mut spec = serde_json::json!({
            "restartPolicy": "Never",
            "nodeSelector": {"kubernetes.io/hostname": g.name},
            "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
            "containers": [{
                "name": "bench",
                "image": ctx.plan.bench_image,
                "args": ["--repetitions", repetitions.to_string()],
                "env": [{"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
                "resources": {"limits": {resources::GPU: g.count.to_string()}},
            }],
        });
        // The bench image runs as its own non-root user (images/bench/Dockerfile).
        super::pods::restricted(&mut spec, None);
        let pod: Pod = match serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": spec,
        })) {
            Ok(p) => p,
            Err(e) => {
                out.push(Outcome::error(g.name.clone(), Some(&g.name), e.to_string()));
                continue;
            }
        };
        match pods.create(&PostParams::default(), &pod).await {
            Ok(_) => {
                names.insert(name, g.name.clone());
            }
            Err(e) => out.push(Outcome::error(
                g.name.clone(),
                Some(&g.name),
                format!("create bench pod {name}: {e}"),
            )),
        }
    }

    // Watch until every bench pod has finished, or the deadline.
    let mut finished: BTreeMap<String, Pod> = BTreeMap::new();
    if names.is_empty() {
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
                if names
                    .keys()
                    .all(|n| finished.contains_key(n) || pull_failed.contains_key(n))
                {
                    break;
                }
            }
        }
    })
    .await;

    let mut results: Vec<(GpuNode, BenchReport)> = Vec::new();
    for (pod_name, node) in &names {
        let Some(g) = nodes.iter().find(|g| &g.name == node) else {
            continue;
        };
        if let Some(why) = pull_failed.get(pod_name)
            && !finished.contains_key(pod_name)
        {
            out.push(Outcome::fail(
                node.clone(),
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
                node.clone(),
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
                out.push(Outcome::fail(
                    node.clone(),
                    Some(node),
                    format!(
                        "{node}: the bench pod failed with exit code {code} ({reason}): {}",
                        log.lines().last().unwrap_or("no log")
                    ),
                    tail,
                ));
            }
            Some(_) => match BenchReport::parse(&log) {
                Ok(report) if report.gpus.len() != g.count as usize => out.push(Outcome::fail(
                    node.clone(),
                    Some(node),
                    format!("{node}: the bench saw {} GPUs, expected {} ({})", report.gpus.len(), g.count, g.describe()),
                    tail,
                )),
                Ok(report) if report.simulated && !simulated_nodes.contains(node) => out.push(Outcome::fail(
                    node.clone(),
                    Some(node),
                    format!("{node}: the bench printed simulated results on a real cluster (is the image running --simulate?)"),
                    tail,
                )),
                Ok(report) => {
                    out.push(Outcome::pass(
                        node.clone(),
                        Some(node),
                        format!(
                            "bench {} on {node}{}: {} GPUs, driver {}",
                            report.tool_version,
                            if report.simulated { " (simulated)" } else { "" },
                            report.gpus.len(),
                            report.driver_version
                        ),
                    ));
                    results.push((g.clone(), report));
                }
                Err(e) => out.push(Outcome::fail(
                    node.clone(),
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

    // Per GPU × metric against the floors, then stragglers within each model.
    let mut best: BTreeMap<(String, Metric), f64> = BTreeMap::new();
    for (g, r) in &results {
        for gpu in &r.gpus {
            for m in gpu.measurements.iter().filter(|m| m.verified) {
                let e = best.entry((g.model_key.clone(), m.metric)).or_insert(0.0);
                *e = e.max(m.summary.median);
            }
        }
    }
    for (g, r) in &results {
        let perf = ctx.perf.models.get(g.model.perf_key(&g.model_key));
        for gpu in &r.gpus {
            let who = format!("{} gpu{}", g.name, gpu.device.index);
            for e in &gpu.errors {
                out.push(Outcome::fail(
                    format!("{}/gpu{}/errors", g.name, gpu.device.index),
                    Some(&g.name),
                    format!("{who}: {e}"),
                    "",
                ));
            }
            for m in &gpu.measurements {
                out.push(metric_outcome(ctx, g, gpu.device.index, m, perf));
            }
            // A metric the GPU has hardware for must have been measured.
            for metric in Metric::ALL {
                let expected = perf.is_some_and(|p| p.peak(metric).is_some());
                if expected && !gpu.measurements.iter().any(|m| m.metric == metric) {
                    out.push(Outcome::fail(
                        format!("{}/gpu{}/{}", g.name, gpu.device.index, metric.key()),
                        Some(&g.name),
                        format!("{who}: {} was not measured", metric.key()),
                        "",
                    ));
                }
            }
            if let Some(p) = perf {
                out.extend(peer_outcomes(ctx, g, gpu.device.index, r, p));
            }
            let slow: Vec<String> = gpu
                .measurements
                .iter()
                .filter(|m| m.verified)
                .filter_map(|m| {
                    let b = best
                        .get(&(g.model_key.clone(), m.metric))
                        .copied()
                        .unwrap_or(0.0);
                    let below = if b > 0.0 {
                        (1.0 - m.summary.median / b) * 100.0
                    } else {
                        0.0
                    };
                    (below > straggler_pct).then(|| {
                        format!(
                            "{} {:.1} {} is {below:.0}% below the best {} in this run ({b:.1})",
                            m.metric.key(),
                            m.summary.median,
                            m.metric.unit(),
                            g.model.product
                        )
                    })
                })
                .collect();
            let subject = format!("{}/gpu{}/straggler", g.name, gpu.device.index);
            match slow.first() {
                None => out.push(Outcome::pass(
                    subject,
                    Some(&g.name),
                    format!(
                        "within {straggler_pct}% of the best {} on every metric",
                        g.model.product
                    ),
                )),
                Some(first) => out.push(Outcome::fail(
                    subject,
                    Some(&g.name),
                    format!("{who}: {first}"),
                    slow.join("\n"),
                )),
            }
        }
    }
    for (g, r) in results {
        ctx.emit(Event::Bench(NodeBench {
            node: g.name.clone(),
            instance_type: g.instance_type.clone(),
            model_key: g.model_key.clone(),
            report: r,
        }));
    }
    out
}

/// Why `node`'s GPUs are not whole, unshared GPUs under what the run asked, if they are not.
fn partitioned(
    node: &k8s_openapi::api::core::v1::Node,
    g: &GpuNode,
    asked: &super::asked::Asked,
) -> Option<String> {
    let labels = node.labels();
    if !matches!(asked.mig(node, g), super::mig::MigExpectation::Off) {
        let config = labels
            .get(crate::gpu_stack::asks::MIG_CONFIG)
            .cloned()
            .unwrap_or_default();
        return Some(format!(
            "its GPUs are split into MIG devices (mig.config {config}, strategy {})",
            asked.mig_strategy
        ));
    }
    match asked.share(node) {
        Ok(Some(share)) => Some(format!(
            "its GPUs are shared ({})",
            share.describe(asked.plugin_source())
        )),
        Ok(None) => None,
        Err(e) => Some(e),
    }
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

fn metric_outcome(
    ctx: &Ctx<'_>,
    g: &GpuNode,
    index: u32,
    m: &crate::bench::Measurement,
    perf: Option<&GpuPerf>,
) -> Outcome {
    let subject = format!("{}/gpu{index}/{}", g.name, m.metric.key());
    let who = format!("{} gpu{index}", g.name);
    let unit = m.metric.unit();
    let stats = format!(
        "median {:.2} {unit}, p5 {:.2}, p95 {:.2}, cv {:.2}%, {} samples, size {}",
        m.summary.median,
        m.summary.p5,
        m.summary.p95,
        m.summary.cv * 100.0,
        m.summary.samples,
        m.size
    );
    if !m.verified {
        return Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} produced a wrong result; its {:.1} {unit} does not count",
                m.metric.key(),
                m.summary.median
            ),
            stats,
        );
    }
    let Some(perf) = perf else {
        // Nothing to judge against: not a pass.
        return Outcome::skip(
            subject,
            Some(&g.name),
            format!(
                "{stats}; the performance table has no entry for {}: not judged",
                g.model_key
            ),
        );
    };
    let Some((perf, peak)) = perf.peak(m.metric).map(|pk| (perf, pk)) else {
        return Outcome::pass(
            subject,
            Some(&g.name),
            format!("{stats}\nno peak for this metric in the performance table; not judged"),
        );
    };
    let floor_frac = ctx.perf.floor(perf, m.metric.key());
    let floor = floor_frac * peak;
    let pct = m.summary.median / peak * 100.0;
    let detail = format!(
        "{stats}\npeak {peak} {unit}, floor {floor:.1} {unit} ({:.0}% of peak), measured {pct:.1}% of peak",
        floor_frac * 100.0
    );
    if m.summary.median >= floor {
        Outcome::pass(subject, Some(&g.name), detail)
    } else {
        Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} is {:.1} {unit}, expected at least {floor:.1} {unit} ({:.0}% of the {} peak {peak}; measured {pct:.1}%)",
                m.metric.key(),
                m.summary.median,
                floor_frac * 100.0,
                g.model.product
            ),
            detail,
        )
    }
}

/// Peer copies from one GPU: one testcase per destination against the link floor (a median
/// over destinations would hide one slow link).
fn peer_outcomes(
    ctx: &Ctx<'_>,
    g: &GpuNode,
    index: u32,
    r: &BenchReport,
    perf: &GpuPerf,
) -> Vec<Outcome> {
    let peak = perf.peer_peak();
    let floor_frac = ctx.perf.floor(perf, "peer");
    let floor = floor_frac * peak;
    r.peers
        .iter()
        .filter(|p| p.from == index)
        .map(|p| {
            let subject = format!("{}/peer/gpu{}-gpu{}", g.name, p.from, p.to);
            let detail = format!(
                "median {:.1} GB/s, p5 {:.1}, p95 {:.1}; floor {floor:.1} GB/s ({:.0}% of {peak})",
                p.summary.median,
                p.summary.p5,
                p.summary.p95,
                floor_frac * 100.0
            );
            if !p.verified {
                Outcome::fail(subject, Some(&g.name), format!("{} gpu{} → gpu{}: the copy delivered wrong data", g.name, p.from, p.to), detail)
            } else if p.summary.median < floor {
                Outcome::fail(
                    subject,
                    Some(&g.name),
                    format!("{} gpu{} → gpu{}: {:.1} GB/s, expected at least {floor:.1} GB/s ({:.0}% of {peak})", g.name, p.from, p.to, p.summary.median, floor_frac * 100.0),
                    detail,
                )
            } else {
                Outcome::pass(subject, Some(&g.name), detail)
            }
        })
        .collect()
}
