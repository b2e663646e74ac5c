//! The runner: provision → install operator → suites → diagnostics → teardown, teardown owed
//! from the moment provisioning starts.
//!
//! Teardown runs on success, failure, timeout, SIGINT and SIGTERM. A first signal stops the
//! step in progress (the rest are recorded as skipped) and goes to teardown; a second one aborts
//! teardown, which then says what it leaves behind. The runner only emits events; reporters fold
//! them (terminal progress, and [`Recorder`], the run record the report files are rendered from).
//! What a target does (provision, cost, teardown) is in [`crate::target`], the operator install
//! and its removal in [`crate::operator`], the suite scheduler in [`suite`].

pub mod diagnostics;
mod inventory;
mod phase;
mod retry;
pub mod suite;
mod upgrade;

use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::operator::helm::Helm;
use crate::operator::{self, Install, InstallRecord};
use crate::plan::{Plan, Target};
use crate::report::events::{Event, Recorder, Reporter, RunEnd, RunStart};
use crate::report::{Phase, RunRecord};
use crate::signals::{self, Interrupts};
use crate::suite::Suite;
use crate::target::local::tools::Tools;
use crate::target::{self, Cluster, TargetFlags};

/// Everything a run needs, resolved from flags and files.
pub struct RunSettings {
    /// The plan.
    pub plan: Plan,
    /// Its suites, in order.
    pub suites: Vec<Suite>,
    /// The instance catalog: what each GPU node is expected to have.
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
    /// The cluster's state and credentials, outside the reports ([`target::state_dir`]).
    pub state_dir: PathBuf,
    /// The GPU performance table.
    pub perf: crate::bench::model::PerfTable,
    /// What runs beside a local cluster (the GPU simulator).
    pub companion: Option<std::sync::Arc<dyn crate::target::local::Companion>>,
    /// `gpuconform upgrade`: the driver to move to, between a baseline and an after pass.
    pub upgrade: Option<crate::upgrade::Settings>,
}

/// Sends each event to the recorder and to every other reporter.
pub(crate) struct Emitter<'a> {
    recorder: Recorder,
    others: Vec<&'a mut dyn Reporter>,
}

impl Emitter<'_> {
    pub(crate) fn emit(&mut self, e: Event) {
        self.recorder.on(&e);
        for r in &mut self.others {
            r.on(&e);
        }
    }

    fn phase(&mut self, name: &str, ok: bool, message: String, since: Instant) {
        self.emit(Event::PhaseFinished(Phase {
            name: name.into(),
            ok,
            message,
            seconds: since.elapsed().as_secs_f64(),
        }));
    }
}

/// Runs a plan; always returns the record (with its exit code) and writes the reports.
pub async fn run(
    settings: RunSettings,
    reporters: Vec<&mut dyn Reporter>,
    mut interrupts: Interrupts,
) -> RunRecord {
    let started = Instant::now();
    let plan = &settings.plan;
    let mut em = Emitter {
        recorder: Recorder::new(settings.perf.clone()),
        others: reporters,
    };
    let _ = std::fs::create_dir_all(&settings.dir);
    em.emit(Event::RunStarted(RunStart {
        run_id: settings.run_id.clone(),
        plan: plan.name.clone(),
        plan_file: plan.file.display().to_string(),
        dir: settings.dir.display().to_string(),
        started_at: chrono::Utc::now().to_rfc3339(),
        operator_chart: match &plan.operator.repo {
            Some(r) => format!("{} ({r})", plan.operator.chart),
            None => plan.operator.chart.clone(),
        },
        operator_chart_version: plan.operator.version.clone().unwrap_or_default(),
        driver_version: plan.operator.driver_version().unwrap_or_default(),
    }));

    // Provision. The local target stops what it started by itself if this fails; so does the
    // aws target, which first says what the run will cost.
    if let Some(note) = target::cost_note(plan) {
        em.emit(Event::Note(note));
    }
    // The state folder holds credentials: only its owner may read it.
    if !matches!(plan.target, Target::Kubeconfig { .. }) {
        use std::os::unix::fs::DirBuilderExt as _;
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&settings.state_dir)
        {
            em.emit(Event::Warning(format!(
                "create {}: {e}",
                settings.state_dir.display()
            )));
        }
    }
    em.emit(Event::PhaseStarted("provision".into()));
    let t = Instant::now();
    let lines = std::sync::Mutex::new(Vec::<String>::new());
    let progress = |l: String| {
        if let Ok(mut v) = lines.lock() {
            v.push(l);
        }
    };
    let inputs = target::Inputs {
        flags: &settings.flags,
        catalog: &settings.catalog,
        fixture: settings.fixture.as_ref(),
        tools: settings.tools.as_ref(),
        run_dir: &settings.dir,
        state_dir: &settings.state_dir,
        run_id: &settings.run_id,
        plan: &plan.name,
        timeout: plan.timeouts.provision,
        companion: settings.companion.clone(),
    };
    let provisioned = {
        let work = target::provision(&plan.target, &inputs, &progress);
        // The local target watches signals itself and stops what it started.
        tokio::select! {
            r = work => Some(r),
            _ = signals::beyond(&mut interrupts, 0), if !matches!(plan.target, Target::Local { .. }) => None,
        }
    };
    for line in lines.lock().map(|v| v.clone()).unwrap_or_default() {
        em.emit(Event::Note(line));
    }
    let cluster = match provisioned {
        Some(Ok(c)) => {
            em.phase(
                "provision",
                true,
                format!("{} (Kubernetes {})", c.name, c.version),
                t,
            );
            c
        }
        failed => {
            let (msg, interrupted) = match failed {
                Some(Err(e)) => (crate::errors::chain(&e), e.is_interrupted()),
                _ => ("interrupted".to_string(), true),
            };
            let leftovers = if interrupted {
                target::sweep_interrupted(&plan.target, &settings.run_id, plan.timeouts.teardown)
                    .await
            } else {
                Vec::new()
            };
            // A cluster that did not come up: its logs go with the reports, its keys and
            // kubeconfigs are deleted; its state file stays for `gpuconform local down`.
            target::discard_credentials(&settings.state_dir, &settings.dir);
            em.phase("provision", false, msg, t);
            return finish(
                &settings,
                em,
                RunEnd {
                    interrupted,
                    refused: false,
                    infra_failed: !interrupted,
                    leftovers,
                    instance_use: None,
                    seconds: started.elapsed().as_secs_f64(),
                },
            );
        }
    };
    em.emit(Event::ClusterReady {
        name: cluster.name.clone(),
        kubernetes_version: cluster.version.clone(),
    });
    // A cluster the run made: its admin kubeconfig, outside the reports, while it runs.
    if let Some(kubeconfig) = cluster
        .kubeconfig
        .as_ref()
        .filter(|_| cluster.created_by_run())
    {
        em.emit(Event::Note(format!(
            "kubeconfig (until teardown): {}",
            kubeconfig.display()
        )));
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
    let test_namespace = plan.test_namespace_name(&settings.run_id);
    // The cluster goes into teardown by value; the operator steps keep their own client.
    let client = cluster.client.clone();
    let install_to = Install {
        plan,
        run_dir: &settings.dir,
        client: &client,
        helm: &helm,
        test_namespace: &test_namespace,
        run_id: &settings.run_id,
        k3s: cluster.is_ec2(),
    };

    // Everything between provision and teardown; a signal ends it early.
    let mut install = InstallRecord::default();
    let mut interrupted = false;
    let mut infra_failed = false;
    let mut refused = false;
    let discovery = match cluster.gpu_nodes(&settings.catalog, &plan.expect).await {
        Ok(d) => d,
        Err(e) => {
            infra_failed = true;
            em.emit(Event::Warning(format!("list nodes: {e}")));
            target::Discovery::default()
        }
    };
    // On a cluster the run did not create, every permission the plan needs is asked first: a
    // missing one is named now, before anything changes, instead of timing out in a check.
    if !cluster.created_by_run() && !infra_failed {
        em.emit(Event::PhaseStarted("permissions".into()));
        let t = Instant::now();
        let exists = crate::preflight::test_namespace_state(&client, &test_namespace)
            .await
            .is_ok_and(|s| s.is_some());
        let asked = tokio::select! {
            p = crate::preflight::permissions(&client, plan, &settings.suites, &test_namespace, exists) => Some(p),
            _ = signals::beyond(&mut interrupts, 0) => None,
        };
        match asked {
            None => {
                interrupted = true;
                em.phase("permissions", false, "interrupted".into(), t);
            }
            Some(perms) => {
                let missing = crate::preflight::missing(&perms);
                if missing.is_empty() {
                    let msg = format!(
                        "{} permissions allowed (SelfSubjectAccessReview)",
                        perms.len()
                    );
                    em.phase("permissions", true, msg, t);
                } else {
                    infra_failed = true;
                    let msg = format!(
                        "missing permissions, nothing was changed (see deploy/rbac/): {}",
                        missing.join("; ")
                    );
                    em.phase("permissions", false, msg, t);
                }
            }
        }
    }

    // Install.
    em.emit(Event::PhaseStarted("install".into()));
    let t = Instant::now();
    let installed = if infra_failed || interrupted {
        Some(Err(None))
    } else {
        tokio::select! {
            r = operator::install(&install_to, &mut install) => Some(r.map_err(Some)),
            _ = signals::beyond(&mut interrupts, 0) => None,
        }
    };
    let install_ok = matches!(installed, Some(Ok(_)));
    match installed {
        Some(Err(None)) => em.phase("install", false, "not started".into(), t),
        Some(Ok(msg)) => em.phase("install", true, msg, t),
        other => {
            interrupted = other.is_none();
            let msg = match other {
                Some(Err(Some(e))) => {
                    // A refusal is the plan's problem (exit 2), anything else the harness's.
                    refused = e.is_refusal();
                    infra_failed = !refused;
                    crate::errors::chain(&e)
                }
                _ => "interrupted".into(),
            };
            em.phase("install", false, msg, t);
        }
    }
    em.emit(Event::Installed {
        chart_version: install.chart_version.clone(),
    });

    // GPU nodes are judged by what the cluster shows once the stack runs: before the install a
    // fresh node has no NFD or GFD labels yet, so the list is read again after it.
    let mut listed = Vec::new();
    let discovery = if install_ok {
        let t = Instant::now();
        let ready = tokio::select! {
            r = operator::settle::policy_ready(&client, plan.timeouts.install) => r,
            _ = signals::beyond(&mut interrupts, 0) => { interrupted = true; false }
        };
        if !ready && !interrupted {
            em.emit(Event::Warning(format!(
                "the ClusterPolicy was not ready within {} of the install; GPU nodes are read as they are",
                humantime::format_duration(plan.timeouts.install)
            )));
        } else if ready {
            em.emit(Event::Note(format!(
                "ClusterPolicy ready after {:.1}s; reading GPU nodes",
                t.elapsed().as_secs_f64()
            )));
        }
        match cluster
            .gpu_nodes_listed(&settings.catalog, &plan.expect)
            .await
        {
            Ok((d, nodes)) => {
                listed = nodes;
                d
            }
            Err(e) => {
                em.emit(Event::Warning(format!("list nodes after install: {e}")));
                discovery
            }
        }
    } else {
        discovery
    };
    report_discovery(&mut em, &discovery, infra_failed);
    let gpu_nodes = discovery.nodes;
    // What is tested, read once the stack is ready and before a suite can remove it.
    if install_ok && !interrupted && !listed.is_empty() {
        match inventory::read(&client, &plan.operator.namespace, &gpu_nodes, &listed).await {
            Ok(inv) => em.emit(Event::Inventory(inv)),
            Err(e) => em.emit(Event::Warning(format!("inventory: {e}"))),
        }
    }

    drop(listed);

    // Suites (under `upgrade`: baseline, the upgrade, the suites again, the verdict).
    if !infra_failed && !interrupted && !refused {
        let pass = phase::Pass {
            client: &cluster.client,
            catalog: &settings.catalog,
            perf: &settings.perf,
            helm: &helm,
            test_namespace: &test_namespace,
            run_id: &settings.run_id,
            run_dir: &settings.dir,
        };
        interrupted |= match &settings.upgrade {
            None => {
                pass.run(
                    "suites",
                    plan,
                    gpu_nodes,
                    &install,
                    &settings.suites,
                    &mut em,
                    &mut interrupts,
                )
                .await
            }
            Some(up) => {
                let u = upgrade::Upgrade {
                    pass: &pass,
                    plan,
                    suites: &settings.suites,
                    settings: up,
                    gpu_nodes: &gpu_nodes,
                };
                u.run(&mut install, &mut em, &mut interrupts).await
            }
        };
    }

    // Teardown, always. The reports are written first, so a run killed during teardown (CI
    // kills the tree a few seconds after its second signal) still leaves them.
    if let Err(e) = crate::report::write_all(&settings.dir, &em.recorder.snapshot()) {
        em.emit(Event::Warning(format!(
            "write reports to {}: {e}",
            settings.dir.display()
        )));
    }
    em.emit(Event::PhaseStarted("teardown".into()));
    let t = Instant::now();
    // CI cancels with SIGINT and then SIGTERM a few seconds later (GitHub Actions: 7.5 s):
    // neither may abort the teardown the first one started. A third signal does.
    let abort_after = interrupts.borrow_and_update().count.max(2);
    let mut aborted = vec![format!(
        "teardown aborted by a third signal: release {} in namespace {} and namespace {} may remain",
        plan.operator.release, plan.operator.namespace, test_namespace
    )];
    aborted.extend(cluster.abort_notes(&settings.state_dir, &settings.run_id));
    let (leftovers, instance_use) = {
        let work = teardown(&install_to, &install, cluster, &settings.state_dir);
        tokio::pin!(work);
        tokio::select! {
            l = &mut work => l,
            _ = signals::beyond(&mut interrupts, abort_after) => (aborted, None),
        }
    };
    let message = if leftovers.is_empty() {
        "everything the run created is gone".into()
    } else {
        format!("left behind: {}", leftovers.join("; "))
    };
    em.phase("teardown", leftovers.is_empty(), message, t);
    let interrupted = interrupted || interrupts.borrow().count > 0;
    finish(
        &settings,
        em,
        RunEnd {
            interrupted,
            refused,
            infra_failed,
            leftovers,
            instance_use,
            seconds: started.elapsed().as_secs_f64(),
        },
    )
}

/// Ends the run: the last event, then the report files from the folded record.
fn finish(settings: &RunSettings, mut em: Emitter<'_>, end: RunEnd) -> RunRecord {
    em.emit(Event::RunFinished(end));
    let record = em.recorder.into_record();
    let e = match crate::report::write_all(&settings.dir, &record) {
        Ok(()) => Event::Note(format!(
            "reports: {}/{{junit.xml,results.json,summary.md}}",
            settings.dir.display()
        )),
        Err(e) => Event::Warning(format!("write reports to {}: {e}", settings.dir.display())),
    };
    for r in &mut em.others {
        r.on(&e);
    }
    record
}

/// A failing testcase of GPU-node discovery (suite `gpu-nodes`): a GPU node without an
/// expectation, or a plan `expect` entry that selects no node.
fn discovery_case(
    subject: &str,
    node: Option<&str>,
    message: String,
    detail: String,
) -> crate::report::Case {
    crate::report::Case {
        suite: "gpu-nodes".into(),
        step: "discovery".into(),
        check: "discovery".into(),
        name: format!("discovery/{subject}"),
        node: node.map(str::to_string),
        status: crate::report::Status::Failed,
        message: Some(message),
        detail,
        warnings: Vec::new(),
        seconds: 0.0,
        diagnostics: Vec::new(),
        attempts: Vec::new(),
        layer: None,
    }
}

/// Removes what the run created: the operator (when the run installed it) and the run's
/// namespaces, then the cluster itself when the run created it. Returns what could not be
/// removed and the cloud instances used.
async fn teardown(
    install_to: &Install<'_>,
    install: &InstallRecord,
    cluster: Cluster,
    state_dir: &Path,
) -> (Vec<String>, Option<crate::report::InstanceUse>) {
    let left = operator::remove(
        install_to,
        install,
        cluster.created_by_run(),
        cluster.is_ec2(),
    )
    .await;
    match cluster.teardown(state_dir, install_to.run_dir).await {
        // A cluster the run created goes entirely; what was left inside it does not matter.
        (Some(cluster_left), used) => (cluster_left, used),
        (None, used) => (left, used),
    }
}

/// The discovery testcases: a GPU node nothing has an expectation for fails by name (skipping
/// it would let a pool the catalog does not know pass unchecked), and so does an `expect` entry
/// that selects no node.
fn report_discovery(em: &mut Emitter<'_>, discovery: &target::Discovery, infra_failed: bool) {
    if discovery.nodes.is_empty() && discovery.unexpected.is_empty() && !infra_failed {
        em.emit(Event::Warning(
            "no GPU nodes: no node shows an NVIDIA GPU, and no node's instance type is a GPU type in the instance catalog".into(),
        ));
    }
    for u in &discovery.unexpected {
        em.emit(Event::Case(discovery_case(
            &u.name,
            Some(&u.name),
            u.message(),
            format!(
                "instance type: {}\nproduct label: {}",
                u.instance_type.as_deref().unwrap_or("none"),
                u.product.as_deref().unwrap_or("none")
            ),
        )));
    }
    for e in &discovery.unmatched {
        let msg = format!("plan {} selects no node: check its selector", e.describe());
        em.emit(Event::Case(discovery_case(
            &format!("expect[{}]", e.index),
            None,
            msg,
            String::new(),
        )));
    }
    let models: std::collections::BTreeSet<String> =
        discovery.nodes.iter().map(|g| g.describe()).collect();
    em.emit(Event::GpuNodesFound(models.into_iter().collect()));
}
