//! The runner: provision → install operator → suites → diagnostics → teardown, teardown deferred
//! from the moment provisioning starts.
//!
//! Teardown runs on success, failure, timeout, SIGINT and SIGTERM. A first signal stops the
//! step in progress (the rest are recorded as skipped) and goes to teardown; a second one aborts
//! teardown, which then says what it leaves behind. The runner only emits events; reporters fold
//! them (terminal progress, the run record the report files are rendered from).

pub mod diagnostics;
pub mod events;
pub mod target;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Instant;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{DeleteParams, PostParams};
use tokio::sync::watch;

use crate::catalog::Catalog;
use crate::checks::{self, Ctx, InstallRecord, Outcome};
use crate::exit_codes;
use crate::fixture::ClusterFixture;
use crate::helm::Helm;
use crate::k8s::wait;
use crate::local::tools::Tools;
use crate::plan::{Plan, Target};
use crate::report::{Case, Phase, RunRecord, Status};
use crate::suite::Suite;
use events::{Event, Recorder, Reporter};
use target::{Cluster, TargetFlags};

/// Everything a run needs, resolved from flags and files.
pub struct RunSettings {
    /// The plan.
    pub plan: Plan,
    /// Its suites, in order.
    pub suites: Vec<Suite>,
    /// Expectations.
    pub catalog: Catalog,
    /// The local fixture, for the local target.
    pub fixture: Option<ClusterFixture>,
    /// The tool cache (local target; also where helm is taken from when present).
    pub tools: Option<Tools>,
    /// `--kubeconfig`/`--context`.
    pub flags: TargetFlags,
    /// Run id.
    pub run_id: String,
    /// `reports/<run-id>`.
    pub dir: PathBuf,
    /// The GPU performance table.
    pub perf: crate::bench::model::PerfTable,
}

/// Counts SIGINT/SIGTERM; the runner watches the count.
pub fn interrupt_counter() -> watch::Receiver<u32> {
    use tokio::signal::unix::{SignalKind, signal};
    let (tx, rx) = watch::channel(0u32);
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    tokio::spawn(async move {
        let (Ok(mut int), Ok(mut term)) = handlers else {
            // No handlers: never report an interrupt (dropping the sender would look like one).
            std::future::pending::<()>().await;
            drop(tx);
            return;
        };
        loop {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            tx.send_modify(|n| *n += 1);
        }
    });
    rx
}

struct Emitter<'a> {
    recorder: Recorder,
    others: Vec<&'a mut dyn Reporter>,
}

impl Emitter<'_> {
    fn emit(&mut self, e: Event) {
        self.recorder.on(&e);
        for r in &mut self.others {
            r.on(&e);
        }
    }
}

/// Runs a plan; always returns the record (with its exit code) and writes the reports.
pub async fn run(
    settings: RunSettings,
    reporters: Vec<&mut dyn Reporter>,
    mut interrupts: watch::Receiver<u32>,
) -> RunRecord {
    let started = Instant::now();
    let plan = &settings.plan;
    let record = RunRecord {
        schema_version: crate::report::RESULTS_SCHEMA_VERSION,
        run_id: settings.run_id.clone(),
        plan: plan.name.clone(),
        plan_file: plan.file.display().to_string(),
        started_at: chrono::Utc::now().to_rfc3339(),
        seconds: 0.0,
        cluster: String::new(),
        kubernetes_version: String::new(),
        operator_chart: match &plan.operator.repo {
            Some(r) => format!("{} ({r})", plan.operator.chart),
            None => plan.operator.chart.clone(),
        },
        operator_chart_version: plan.operator.version.clone().unwrap_or_default(),
        driver_version: plan.operator.driver_version().unwrap_or_default(),
        gpu_models: Vec::new(),
        benchmarks: Vec::new(),
        instance_use: None,
        phases: Vec::new(),
        cases: Vec::new(),
        leftovers: Vec::new(),
        interrupted: false,
        exit_code: exit_codes::OK,
    };
    let mut em = Emitter {
        recorder: Recorder { record },
        others: reporters,
    };
    let _ = std::fs::create_dir_all(&settings.dir);
    em.emit(Event::RunStarted {
        run_id: settings.run_id.clone(),
        plan: plan.name.clone(),
        dir: settings.dir.display().to_string(),
    });

    // Provision. The local target stops what it started by itself if this fails; so does the
    // aws target, which first says what the run will cost.
    if let Target::Aws(spec) = &plan.target
        && let Ok(prices) = crate::aws::cost::PriceTable::embedded()
    {
        let hours = (plan.timeouts.provision + plan.timeouts.install + plan.timeouts.teardown)
            .as_secs_f64()
            / 3600.0
            + plan.suites.len() as f64 * plan.timeouts.step.as_secs_f64() / 3600.0;
        em.emit(Event::Note(prices.estimate_line(spec, hours)));
    }
    em.emit(Event::PhaseStarted("provision".into()));
    let t = Instant::now();
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: String| {
        if let Ok(mut v) = lines.lock() {
            v.push(l);
        }
    };
    let provisioned = {
        let work = target::provision(
            &plan.target,
            &settings.flags,
            &settings.catalog,
            settings.fixture.as_ref(),
            settings.tools.as_ref(),
            &settings.dir,
            plan.timeouts.provision,
            &progress,
        );
        tokio::select! {
            r = work => Some(r),
            _ = interrupts.changed(), if !matches!(plan.target, Target::Local { .. }) => None,
        }
    };
    for line in lines.lock().map(|v| v.clone()).unwrap_or_default() {
        em.emit(Event::Note(line));
    }
    let mut infra_failed = false;
    let mut cluster = match provisioned {
        Some(Ok(c)) => {
            em.emit(Event::PhaseFinished(Phase {
                name: "provision".into(),
                ok: true,
                message: format!("{} (Kubernetes {})", c.name, c.version),
                seconds: t.elapsed().as_secs_f64(),
            }));
            c
        }
        failed => {
            let (msg, interrupted) = match failed {
                Some(Err(e)) => {
                    let interrupted = matches!(
                        e,
                        target::TargetError::Local(crate::local::LocalError::Interrupted(_))
                    );
                    (crate::errors::chain(&e), interrupted)
                }
                _ => ("interrupted".to_string(), true),
            };
            // An interrupted EC2 provisioning may already have instances: remove them by tag.
            let mut left = Vec::new();
            if interrupted && let Target::Aws(spec) = &plan.target {
                let client = crate::aws::ec2::client(&spec.region).await;
                let deadline = Instant::now() + plan.timeouts.teardown;
                left =
                    crate::aws::ec2::teardown(&client, &settings.run_id, deadline, &|_| {}).await;
            }
            em.emit(Event::PhaseFinished(Phase {
                name: "provision".into(),
                ok: false,
                message: msg,
                seconds: t.elapsed().as_secs_f64(),
            }));
            let mut record = em.recorder.record;
            record.interrupted = interrupted;
            record.leftovers = left;
            record.exit_code = if interrupted {
                exit_codes::INTERRUPTED
            } else {
                exit_codes::INFRA_ERROR
            };
            record.seconds = started.elapsed().as_secs_f64();
            write_reports(&settings, &record, &mut em.others);
            return record;
        }
    };
    em.recorder.record.cluster = cluster.name.clone();
    em.recorder.record.kubernetes_version = cluster.version.clone();
    if let Some(k) = settings
        .dir
        .join("kubeconfig")
        .exists()
        .then(|| settings.dir.join("kubeconfig"))
    {
        em.emit(Event::Note(format!("kubeconfig: {}", k.display())));
    }

    let helm = Helm {
        bin: settings
            .tools
            .as_ref()
            .map(|t| t.bin("helm"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("helm")),
        kubeconfig: cluster.kubeconfig.clone(),
        context: cluster.context.clone(),
    };
    let test_namespace = format!("gpuconform-{}", short_id(&settings.run_id));

    // Everything between provision and teardown; a signal ends it early.
    let mut install = InstallRecord::default();
    let mut interrupted = false;
    let gpu_nodes = match checks::gpu_nodes(&cluster.client, &settings.catalog).await {
        Ok(n) => n,
        Err(e) => {
            infra_failed = true;
            em.emit(Event::Warning(format!("list nodes: {e}")));
            Vec::new()
        }
    };
    if gpu_nodes.is_empty() && !infra_failed {
        em.emit(Event::Warning(
            "no GPU nodes: no node's instance type is a GPU type in the instance catalog".into(),
        ));
    }
    let mut models: BTreeSet<String> = BTreeSet::new();
    for g in &gpu_nodes {
        models.insert(g.describe());
    }
    em.recorder.record.gpu_models = models.into_iter().collect();

    // Install.
    em.emit(Event::PhaseStarted("install".into()));
    let t = Instant::now();
    let installed = tokio::select! {
        r = install_operator(&settings, &cluster, &helm, &test_namespace, &mut install) => Some(r),
        _ = interrupts.changed() => None,
    };
    match installed {
        Some(Ok(msg)) => em.emit(Event::PhaseFinished(Phase {
            name: "install".into(),
            ok: true,
            message: msg,
            seconds: t.elapsed().as_secs_f64(),
        })),
        other => {
            interrupted = other.is_none();
            infra_failed = !interrupted;
            em.emit(Event::PhaseFinished(Phase {
                name: "install".into(),
                ok: false,
                message: match other {
                    Some(Err(e)) => e,
                    _ => "interrupted".into(),
                },
                seconds: t.elapsed().as_secs_f64(),
            }));
        }
    }
    em.recorder.record.operator_chart_version = install.chart_version.clone();

    // Suites.
    if !infra_failed && !interrupted {
        em.emit(Event::PhaseStarted("suites".into()));
        let t = Instant::now();
        let mut diag = Diagnostics::default();
        let bench_store = std::sync::Mutex::new(Vec::new());
        let ctx = Ctx {
            perf: &settings.perf,
            bench: &bench_store,
            client: cluster.client.clone(),
            catalog: &settings.catalog,
            plan,
            gpu_nodes: gpu_nodes.clone(),
            test_namespace: test_namespace.clone(),
            helm: &helm,
            install: &install,
            run_dir: settings.dir.clone(),
        };
        for suite in &settings.suites {
            interrupted |= run_suite(suite, &ctx, &mut em, &mut interrupts, &mut diag).await;
        }
        em.emit(Event::PhaseFinished(Phase {
            name: "suites".into(),
            ok: !interrupted,
            message: if interrupted {
                "interrupted".into()
            } else {
                format!("{} suites", settings.suites.len())
            },
            seconds: t.elapsed().as_secs_f64(),
        }));

        let stored = bench_store.lock().map(|v| v.clone()).unwrap_or_default();
        em.recorder.record.benchmarks = crate::report::bench::rows(&stored, &settings.perf);
        if diag.count > 0 {
            em.emit(Event::PhaseFinished(Phase {
                name: "diagnostics".into(),
                ok: true,
                message: format!(
                    "collected for {} failed testcases right after their step, see diagnostics/",
                    diag.count
                ),
                seconds: diag.seconds,
            }));
        }
    }

    // Teardown, always.
    em.emit(Event::PhaseStarted("teardown".into()));
    let t = Instant::now();
    // Only a second signal aborts teardown: the first one (now or earlier) lets it finish.
    let already = *interrupts.borrow_and_update();
    let abort_after = already.max(1);
    let is_local = cluster.local.is_some();
    let is_aws = cluster.aws.is_some();
    let (leftovers, instance_use) = {
        let work = teardown(&settings, &mut cluster, &helm, &test_namespace, &install);
        tokio::pin!(work);
        tokio::select! {
            l = &mut work => l,
            _ = wait_for_more(&mut interrupts, abort_after) => {
                let mut left = vec![format!(
                    "teardown aborted by a second signal: release {} in namespace {} and namespace {} may remain",
                    plan.operator.release, plan.operator.namespace, test_namespace
                )];
                if is_local {
                    left.push(format!(
                        "the local cluster in {} may still run: stop it with `gpuconform local down --dir {}`",
                        settings.dir.join("cluster").display(),
                        settings.dir.join("cluster").display()
                    ));
                }
                if is_aws {
                    left.push(format!(
                        "EC2 instances of run {} may still run: `gpuconform sweep --run-id {} --yes`",
                        settings.run_id, settings.run_id
                    ));
                }
                (left, None)
            }
        }
    };
    em.emit(Event::PhaseFinished(Phase {
        name: "teardown".into(),
        ok: leftovers.is_empty(),
        message: if leftovers.is_empty() {
            "everything the run created is gone".into()
        } else {
            format!("left behind: {}", leftovers.join("; "))
        },
        seconds: t.elapsed().as_secs_f64(),
    }));

    let mut record = em.recorder.record;
    record.leftovers = leftovers;
    record.instance_use = instance_use;
    record.interrupted = interrupted || *interrupts.borrow() > 0;
    let interrupted = record.interrupted;
    let (_, failed, errors, _) = record.counts();
    record.exit_code = if interrupted {
        exit_codes::INTERRUPTED
    } else if infra_failed {
        exit_codes::INFRA_ERROR
    } else if !record.leftovers.is_empty() {
        exit_codes::TEARDOWN_INCOMPLETE
    } else if failed + errors > 0 {
        exit_codes::CHECKS_FAILED
    } else {
        exit_codes::OK
    };
    record.seconds = started.elapsed().as_secs_f64();
    write_reports(&settings, &record, &mut em.others);
    record
}

async fn wait_for_more(rx: &mut watch::Receiver<u32>, already: u32) {
    loop {
        if *rx.borrow() > already {
            return;
        }
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

fn write_reports(settings: &RunSettings, record: &RunRecord, others: &mut [&mut dyn Reporter]) {
    let e = match crate::report::write_all(&settings.dir, record) {
        Ok(()) => Event::Note(format!(
            "reports: {}/{{junit.xml,results.json,summary.md}}",
            settings.dir.display()
        )),
        Err(e) => Event::Warning(format!("write reports to {}: {e}", settings.dir.display())),
    };
    for r in others {
        r.on(&e);
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn k3s_toolkit_values_are_added_unless_set() {
        let mut v = serde_json::json!({"driver": {"version": "580.95.05"}});
        super::k3s_toolkit_values(&mut v);
        assert_eq!(
            v["toolkit"]["env"][1]["value"],
            "/run/k3s/containerd/containerd.sock"
        );
        let mut own = serde_json::json!({"toolkit": {"env": []}});
        super::k3s_toolkit_values(&mut own);
        assert_eq!(own["toolkit"]["env"], serde_json::json!([]));
    }
}

/// `abcd1234` from `local-20261128-133701`: the timestamp digits, for namespace names.
fn short_id(run_id: &str) -> String {
    let digits: String = run_id.chars().filter(char::is_ascii_digit).collect();
    let tail = digits.len().saturating_sub(8);
    digits[tail..].to_string()
}

async fn install_operator(
    settings: &RunSettings,
    cluster: &Cluster,
    helm: &Helm,
    test_namespace: &str,
    install: &mut InstallRecord,
) -> Result<String, String> {
    let plan = &settings.plan;
    let values = settings.dir.join("operator-values.yaml");
    let mut chart_values = plan.operator.values.clone();
    if matches!(plan.target, Target::Aws(_)) {
        k3s_toolkit_values(&mut chart_values);
    }
    // JSON is YAML; helm reads it as a values file.
    let text = serde_json::to_string_pretty(&chart_values).map_err(|e| e.to_string())?;
    std::fs::write(&values, text).map_err(|e| format!("write {}: {e}", values.display()))?;
    install.preexisting = matches!(helm.status(&plan.operator).await, Ok(Some(_)));
    helm.install(&plan.operator, &values, plan.timeouts.install)
        .await
        .map_err(|e| e.to_string())?;
    if let Ok(Some((_, chart))) = helm.status(&plan.operator).await {
        install.chart_version = chart;
    }
    let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
    install.namespace_uid = namespaces
        .get_opt(&plan.operator.namespace)
        .await
        .ok()
        .flatten()
        .and_then(|n| n.metadata.uid);
    let crds: Api<CustomResourceDefinition> = Api::all(cluster.client.clone());
    install.crd_uid = crds
        .get_opt(crate::gpu_stack::operator::POLICY_CRD)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.metadata.uid);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": test_namespace, "labels": {crate::gpu_stack::ours::MANAGED_BY.0: crate::gpu_stack::ours::MANAGED_BY.1}},
    }))
    .map_err(|e| e.to_string())?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(e) => return Err(format!("create namespace {test_namespace}: {e}")),
    }
    Ok(format!(
        "helm release {} ({}) in namespace {}{}; test namespace {test_namespace}",
        plan.operator.release,
        if install.chart_version.is_empty() {
            "?"
        } else {
            &install.chart_version
        },
        plan.operator.namespace,
        if install.preexisting {
            " (it existed before this run: upgraded, and left in place by teardown)"
        } else {
            ""
        }
    ))
}

/// Time spent on diagnostics and for how many cases.
#[derive(Default)]
struct Diagnostics {
    count: usize,
    seconds: f64,
}

/// On k3s the container toolkit must edit k3s's containerd, not the system one: the GPU
/// Operator's documented toolkit settings for k3s, unless the plan sets `toolkit.env` itself.
fn k3s_toolkit_values(values: &mut serde_json::Value) {
    let Some(obj) = values.as_object_mut() else {
        return;
    };
    let toolkit = obj
        .entry("toolkit")
        .or_insert_with(|| serde_json::json!({}));
    let Some(toolkit) = toolkit.as_object_mut() else {
        return;
    };
    toolkit.entry("env").or_insert_with(|| {
        serde_json::json!([
            {"name": "CONTAINERD_CONFIG", "value": "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"},
            {"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd/containerd.sock"},
            {"name": "CONTAINERD_RUNTIME_CLASS", "value": "nvidia"},
            {"name": "CONTAINERD_SET_AS_DEFAULT", "value": "true"},
        ])
    });
}

/// Runs one suite; `true` when interrupted. Diagnostics for a failed testcase are collected
/// right after its step, before a later step (or teardown) changes the cluster.
async fn run_suite(
    suite: &Suite,
    ctx: &Ctx<'_>,
    em: &mut Emitter<'_>,
    interrupts: &mut watch::Receiver<u32>,
    diag: &mut Diagnostics,
) -> bool {
    // Per step: whether it failed as a whole, and the nodes it failed on.
    let mut results: BTreeMap<String, (bool, BTreeSet<String>)> = BTreeMap::new();
    let mut interrupted = *interrupts.borrow() > 0;
    let all_nodes: Vec<String> = ctx.gpu_nodes.iter().map(|n| n.name.clone()).collect();
    let steps = suite
        .steps
        .iter()
        .map(|s| (s, false))
        .chain(suite.finally.iter().map(|s| (s, true)));
    for (step, is_finally) in steps {
        let per_node = checks::per_node(&step.check);
        let emit_all = |em: &mut Emitter<'_>, outcomes: Vec<Outcome>, seconds: f64| {
            for o in outcomes {
                em.emit(Event::Case(case(suite, step, o, seconds)));
            }
        };
        if interrupted && !is_finally {
            emit_all(
                em,
                vec![Outcome::skip(step.name.clone(), None, "run interrupted")],
                0.0,
            );
            continue;
        }
        // `needs`: a failed cluster-wide step skips this one; per-node failures skip those nodes.
        let mut skip_reason = None;
        let mut skipped_nodes: BTreeMap<String, String> = BTreeMap::new();
        for need in &step.needs {
            match results.get(need) {
                Some((true, _)) | None => {
                    skip_reason = Some(format!("needs `{need}`, which did not pass"));
                }
                Some((false, nodes)) => {
                    for n in nodes {
                        skipped_nodes
                            .insert(n.clone(), format!("needs `{need}`, which failed on {n}"));
                    }
                }
            }
        }
        if let Some(why) = skip_reason.filter(|_| !is_finally) {
            let outcomes = if per_node {
                all_nodes
                    .iter()
                    .map(|n| Outcome::skip(n.clone(), Some(n), why.clone()))
                    .collect()
            } else {
                vec![Outcome::skip(step.name.clone(), None, why)]
            };
            results.insert(step.name.clone(), (true, BTreeSet::new()));
            emit_all(em, outcomes, 0.0);
            continue;
        }
        em.emit(Event::StepStarted {
            suite: suite.name.clone(),
            step: step.name.clone(),
            check: step.check.clone(),
        });
        let timeout = step.timeout.unwrap_or(if step.check == "operator" {
            ctx.plan.timeouts.install
        } else {
            ctx.plan.timeouts.step
        });
        let t = Instant::now();
        let deadline = t + timeout;
        let only: Vec<String> = all_nodes
            .iter()
            .filter(|n| !skipped_nodes.contains_key(*n))
            .cloned()
            .collect();
        // A signal that came in between steps counts too; after an interrupt only a further
        // signal stops a `finally` step.
        let current = *interrupts.borrow_and_update();
        if current > 0 && !interrupted && !is_finally {
            interrupted = true;
            emit_all(
                em,
                vec![Outcome::skip(step.name.clone(), None, "run interrupted")],
                0.0,
            );
            continue;
        }
        let seen = if is_finally { current } else { 0 };
        let outcomes = tokio::select! {
            o = checks::run(step, ctx, deadline, &only) => Some(o),
            _ = wait_for_more(interrupts, seen) => None,
        };
        let seconds = t.elapsed().as_secs_f64();
        let Some(mut outcomes) = outcomes else {
            interrupted = true;
            emit_all(
                em,
                vec![Outcome::skip(
                    step.name.clone(),
                    None,
                    "interrupted while running",
                )],
                seconds,
            );
            results.insert(step.name.clone(), (true, BTreeSet::new()));
            continue;
        };
        if per_node {
            for (n, why) in &skipped_nodes {
                outcomes.push(Outcome::skip(n.clone(), Some(n), why.clone()));
            }
        }
        let bad = |o: &Outcome| matches!(o.status, Status::Failed | Status::Error);
        let mut failed_nodes: BTreeSet<String> = skipped_nodes.keys().cloned().collect();
        let newly: BTreeSet<String> = outcomes
            .iter()
            .filter(|o| bad(o))
            .filter_map(|o| o.node.clone())
            .collect();
        failed_nodes.extend(newly);
        // A per-node step fails as a whole when it has nothing to show or a cluster-wide
        // outcome (no GPU nodes at all) failed.
        let whole = if per_node {
            outcomes.is_empty() || outcomes.iter().any(|o| bad(o) && o.node.is_none())
        } else {
            outcomes.iter().any(bad)
        };
        results.insert(step.name.clone(), (whole, failed_nodes));
        let namespaces = [
            ctx.plan.operator.namespace.as_str(),
            ctx.test_namespace.as_str(),
        ];
        for o in outcomes {
            let mut c = case(suite, step, o, seconds);
            if matches!(c.status, Status::Failed | Status::Error) {
                let t = Instant::now();
                if let Some(rel) =
                    diagnostics::collect(&ctx.client, &ctx.run_dir, &c, &namespaces).await
                {
                    c.diagnostics.push(rel);
                }
                diag.count += 1;
                diag.seconds += t.elapsed().as_secs_f64();
            }
            em.emit(Event::Case(c));
        }
    }
    interrupted
}

fn case(suite: &Suite, step: &crate::suite::Step, o: Outcome, seconds: f64) -> Case {
    let name = if o.subject == step.name {
        step.name.clone()
    } else {
        format!("{}/{}", step.name, o.subject)
    };
    Case {
        suite: suite.name.clone(),
        step: step.name.clone(),
        check: step.check.clone(),
        name,
        node: o.node,
        status: o.status,
        message: o.message,
        detail: o.detail,
        warnings: o.warnings,
        seconds,
        diagnostics: Vec::new(),
    }
}

/// Removes what the run created; returns what could not be removed.
async fn teardown(
    settings: &RunSettings,
    cluster: &mut Cluster,
    helm: &Helm,
    test_namespace: &str,
    install: &InstallRecord,
) -> (Vec<String>, Option<crate::report::InstanceUse>) {
    let plan = &settings.plan;
    let limit = plan.timeouts.teardown;
    let mut left = Vec::new();
    let mut used = None;
    // The operator, if the teardown suite did not already remove it — and only if this run
    // installed it: a release that was there before belongs to someone else. A cluster this run
    // created goes entirely, so its release does not matter.
    let ours = cluster.local.is_some() || cluster.aws.is_some();
    match helm.status(&plan.operator).await {
        _ if cluster.aws.is_some() => {}
        Ok(Some(_)) if install.preexisting => {}
        Ok(Some(_)) => {
            if let Err(e) = helm.uninstall(&plan.operator, limit).await {
                left.push(format!("helm release {}: {e}", plan.operator.release));
            }
        }
        Ok(None) => {}
        Err(e) if !ours => left.push(format!(
            "helm release {}: unknown ({e})",
            plan.operator.release
        )),
        Err(_) => {}
    }
    // On an existing cluster the namespaces must go; a local or EC2 cluster goes entirely.
    if cluster.local.is_none() && cluster.aws.is_none() {
        let namespaces: Api<Namespace> = Api::all(cluster.client.clone());
        let mut ours = vec![test_namespace];
        if !install.preexisting {
            ours.push(plan.operator.namespace.as_str());
        }
        for ns in ours {
            match namespaces.delete(ns, &DeleteParams::default()).await {
                Ok(_) => {
                    if let Err(e) =
                        wait::deleted(namespaces.clone(), ns, None, "namespace deletion", limit)
                            .await
                    {
                        left.push(format!("namespace {ns}: {e}"));
                    }
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => left.push(format!("namespace {ns}: {e}")),
            }
        }
    }
    if let Some(aws) = cluster.aws.take() {
        let progress = |_: String| {};
        left = aws.down(&progress).await;
        let hours = aws.instance_hours();
        let prices = crate::aws::cost::PriceTable::embedded().ok();
        let usd: f64 = hours
            .iter()
            .map(|(t, h)| {
                prices
                    .as_ref()
                    .and_then(|p| p.prices.get(t))
                    .copied()
                    .unwrap_or(0.0)
                    * h
            })
            .sum();
        used = Some(crate::report::InstanceUse {
            instance_hours: hours.into_iter().collect(),
            estimated_usd: usd,
        });
    }
    // A local cluster goes entirely, whatever was left inside it.
    if let Some(local) = cluster.local.take() {
        let etcd = local.dir.etcd();
        let report = local.stop().await;
        left = report.leftovers();
        if report.is_clean() {
            // The logs stay with the reports; the database is of no use once the cluster is gone.
            let _ = std::fs::remove_dir_all(etcd);
        }
    }
    (left, used)
}
