//! `gpuconform run`: resolve the plan, its suites, the catalog, the fixture and the tools — all
//! before anything starts, so a bad file never leaves a cluster behind — then hand over to the
//! runner and report.

use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::cli::{RunArgs, UpgradeArgs};
use crate::errors::ExpectedError;
use crate::fixture::ClusterFixture;
use crate::output::Printer;
use crate::plan::{Plan, Target};
use crate::report::terminal::Terminal;
use crate::runner::{self, RunSettings};
use crate::target::TargetFlags;
use crate::target::local::tools::Tools;

/// `gpuconform upgrade`: a run with the upgrade between a baseline and an after pass. A plan
/// that may not change the operator (verify-only), or a driver that is not a version, or the
/// driver the plan already asks for, is refused before anything starts.
pub async fn upgrade(args: UpgradeArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let bad = |what: &str, why: String| {
        ExpectedError::Inputs(vec![crate::input::InputError::file(Path::new(what), why)])
    };
    let to = args.to.trim().to_string();
    if crate::gpu_stack::driver::DriverVersion::parse(&to).is_none() {
        return Err(bad(
            &format!("--to {to}"),
            "not a driver version such as 580.95.05".into(),
        ));
    }
    if args.state_timeout.is_zero() || args.timeout.is_zero() {
        return Err(bad(
            "--state-timeout/--upgrade-timeout",
            "must be longer than 0s".into(),
        ));
    }
    let settings = crate::upgrade::Settings {
        to,
        chart_version: args.chart_version,
        rollback_on_failure: args.rollback_on_failure,
        state_timeout: args.state_timeout,
        timeout: args.timeout,
    };
    run(args.run, Mode::Upgrade(settings), printer).await
}

/// What a run is for.
pub enum Mode {
    /// `gpuconform run`.
    Plain,
    /// `gpuconform upgrade`: the upgrade between a baseline and an after pass.
    Upgrade(crate::upgrade::Settings),
    /// `gpuconform certify`: the strict profile first, the bundle after.
    Certify(super::certify::Options),
}

/// The plan to load: the file named; for the default `plans/local.yaml` outside a clone (no
/// such file here), the built-in default plan written out into the cache.
fn plan_file(named: &Path) -> Result<PathBuf, ExpectedError> {
    if named != Path::new(crate::builtin::DEFAULT_PLAN) || named.is_file() {
        return Ok(named.to_path_buf());
    }
    let cache = crate::builtin::cache_dir();
    crate::builtin::default_plan(&cache).map_err(|e| {
        ExpectedError::Inputs(vec![crate::input::InputError::file(
            &cache,
            format!("cannot write the built-in default plan there: {e}"),
        )])
    })
}

/// Runs a plan (with an upgrade in it, for `gpuconform upgrade`; under the certification
/// profile, for `gpuconform certify`); the exit code is the run's.
pub async fn run(args: RunArgs, mode: Mode, printer: &Printer) -> Result<u8, ExpectedError> {
    let (upgrade, certify) = match mode {
        Mode::Plain => (None, None),
        Mode::Upgrade(u) => (Some(u), None),
        Mode::Certify(c) => (None, Some(c)),
    };
    let catalog = Catalog::resolve(&args.catalog)?;
    if let Some(ns) = &args.namespace
        && !crate::plan::is_dns_label(ns)
    {
        return Err(ExpectedError::Inputs(vec![crate::input::InputError::file(
            std::path::Path::new(&format!("--namespace {ns}")),
            "not a namespace name (a DNS label: lowercase letters, digits, `-`)",
        )]));
    }
    let plan_file = plan_file(&args.plan)?;
    let plan = Plan::load(&plan_file, &args.layers(), &args.suite_dir, &catalog)?;
    if let Some(up) = &upgrade {
        let refuse = |why: String| {
            ExpectedError::Inputs(vec![crate::input::InputError::file(&plan.file, why)])
        };
        if plan.operator.mode == crate::plan::OperatorMode::Existing {
            return Err(refuse(
                "operator.mode: existing is verify-only and never changes the operator; `upgrade` needs `mode: install` (with `adopt: true` for a release already there)".into(),
            ));
        }
        if plan.operator.driver_version().as_deref() == Some(up.to.as_str()) {
            return Err(refuse(format!(
                "operator.values.driver.version is already {}: nothing to upgrade",
                up.to
            )));
        }
    }
    // A baseline that cannot be read is bad input: said before anything starts.
    let baseline = match &args.baseline {
        Some(b) => Some(crate::compare::load(b, true)?),
        None => None,
    };
    let compare_settings = plan.compare.clone();
    if let Some(url) = &args.pushgateway {
        crate::report::push::parse(url).map_err(|e| {
            crate::input::InputError::file(Path::new("--pushgateway"), e.to_string())
        })?;
    }
    let summary_place = match &args.summary_configmap {
        Some(f) => Some(super::summary::place(f, &plan).map_err(|why| {
            crate::input::InputError::file(Path::new(&format!("--summary-configmap {f}")), why)
        })?),
        None => None,
    };
    let summary_plan = summary_place.as_ref().map(|_| plan.clone());
    let mut errors = Vec::new();
    let mut suites = Vec::new();
    for name in &plan.suites {
        match crate::suite::resolve(&args.suite_dir, name) {
            Some(Ok(s)) => suites.push(s),
            Some(Err(e)) => errors.extend(e),
            // Plan::load checked every name resolves.
            None => {}
        }
    }
    if let Some(c) = &certify {
        errors.extend(c.check_inputs(&plan, &suites));
    }
    if !errors.is_empty() {
        return Err(ExpectedError::Inputs(errors));
    }
    let (fixture, tools) = match &plan.target {
        Target::Local { fixture } => {
            let f = ClusterFixture::load(fixture, &catalog)?;
            let dir = args.tools.clone().unwrap_or_else(Tools::default_dir);
            let t = Tools::locate(&dir).map_err(crate::target::local::LocalError::from)?;
            (Some(f), Some(t))
        }
        Target::Kubeconfig { .. } | Target::Aws(_) => {
            let dir = args.tools.clone().unwrap_or_else(Tools::default_dir);
            (None, Tools::locate(&dir).ok())
        }
    };
    let run_id = args.run_id.clone().unwrap_or_else(|| {
        let base = format!(
            "{}-{}",
            plan.name,
            chrono::Utc::now().format("%Y%m%d-%H%M%S")
        );
        // A dry run creates nothing, not even its state folder.
        if args.dry_run {
            base
        } else {
            claim_run_id(&base)
        }
    });
    let flags = TargetFlags {
        kubeconfig: args.kubeconfig.clone(),
        context: args.context.clone(),
    };
    // The runner takes `flags`; the summary ConfigMap is written with the same ones after it.
    let summary_flags = flags.clone();
    if args.dry_run {
        if let Some(up) = &upgrade {
            printer.warn(format!(
                "dry run: the checks below are the baseline's; the upgrade to {} is not rehearsed",
                up.to
            ));
        }
        let d = super::dry_run::DryRun {
            plan: &plan,
            suites: &suites,
            catalog: &catalog,
            tools: tools.as_ref(),
            flags: &flags,
            run_id: &run_id,
        };
        return Ok(super::dry_run::dry_run(d, printer).await);
    }
    let dir = args
        .reports
        .clone()
        .unwrap_or_else(|| plan.reports.clone())
        .join(&run_id);
    // The bundle needs the plan and suites as run, after the runner has them.
    let as_run = certify.as_ref().map(|_| (plan.clone(), suites.clone()));
    let settings = RunSettings {
        plan,
        suites,
        catalog,
        fixture,
        tools,
        flags,
        state_dir: crate::target::state_dir(&run_id),
        run_id,
        dir: dir.clone(),
        perf: crate::bench::model::PerfTable::embedded()?,
        companion: Some(std::sync::Arc::new(super::simulator::GpuSimulator)),
        upgrade,
    };
    // A file that cannot be created is bad input, said before anything starts.
    let mut stream = match &args.events {
        Some(p) => Some(crate::report::stream::EventStream::create(p).map_err(|e| {
            crate::input::InputError::file(p, format!("cannot write the events file: {e}"))
        })?),
        None => None,
    };
    let interrupts = crate::signals::listen();
    let mut terminal = Terminal::new(*printer);
    let mut log = crate::report::log::EventLog::default();
    let state_dir = settings.state_dir.clone();
    let mut reporters: Vec<&mut dyn crate::report::events::Reporter> =
        vec![&mut terminal, &mut log];
    if let Some(s) = &mut stream {
        reporters.push(s);
    }
    let record = runner::run(settings, reporters, interrupts).await;
    drop(terminal);
    // The folder claimed for the run id stays empty on targets that keep no state (an existing
    // cluster): remove it then (`remove_dir` leaves a folder that has something in it).
    let _ = std::fs::remove_dir(&state_dir);
    let (passed, failed, errors, skipped) = record.counts();
    printer.result(format!(
        "{}: {passed} passed, {failed} failed, {errors} errors, {skipped} skipped; exit {}",
        record.run_id, record.exit_code
    ));
    printer.result(format!("report: {}", dir.join("summary.md").display()));
    for l in &record.leftovers {
        printer.warn(format!("left behind: {l}"));
    }
    let code = if let (Some(c), Some((plan, suites))) = (&certify, &as_run) {
        c.seal(&dir, &record, plan, suites, printer)
    } else if let Some(base) = baseline {
        against_baseline(&base, &dir, record.exit_code, &compare_settings, printer)
    } else {
        record.exit_code
    };
    // With the process's own exit code: a regression against the baseline is not a success.
    let metrics = crate::report::metrics::now_text(&record, code, args.metrics.as_deref());
    if let Some(path) = &args.metrics {
        match crate::report::metrics::write_text(path, &metrics) {
            Ok(()) => printer.result(format!("metrics: {}", path.display())),
            Err(e) => printer.warn(format!("write metrics to {}: {e}", path.display())),
        }
    }
    if let Some(url) = &args.pushgateway {
        match crate::report::push::push(url, &record.plan, &metrics) {
            Ok(()) => printer.result(format!("metrics pushed: {url}")),
            Err(e) => printer.warn(crate::errors::chain(&e)),
        }
    }
    if let Some(s) = &stream {
        printer.result(format!("events: {}", s.path().display()));
    }
    if let (Some(place), Some(plan)) = (&summary_place, &summary_plan) {
        let data = super::summary::data(&record, code, &dir);
        match super::summary::write(place, plan, &summary_flags, data).await {
            Ok(()) => printer.result(format!(
                "summary: configmap {}/{}",
                place.namespace, place.name
            )),
            Err(e) => printer.warn(format!(
                "write the summary to configmap {}/{}: {}",
                place.namespace,
                place.name,
                crate::errors::chain(e.as_ref())
            )),
        }
    }
    Ok(code)
}

/// Compares the finished run in `dir` with `base`; the run's exit code wins over a regression
/// (a failed check says more), a regression over a pass.
fn against_baseline(
    base: &crate::compare::Run,
    dir: &Path,
    code: u8,
    settings: &crate::compare::Settings,
    printer: &Printer,
) -> u8 {
    let result = crate::compare::load(dir, false)
        .and_then(|new| crate::compare::compare(base, &new, settings).map(|c| (new, c)));
    let (new, c) = match result {
        Ok(x) => x,
        Err(e) => {
            printer.warn(format!("baseline {}: {e}", base.path.display()));
            return if code == crate::exit_codes::OK {
                crate::exit_codes::INPUT_ERROR
            } else {
                code
            };
        }
    };
    let md = crate::compare::markdown(&c, base, &new, settings);
    let _ = std::fs::write(dir.join("compare.md"), &md);
    let _ = std::fs::write(dir.join("compare.junit.xml"), crate::compare::junit(&c));
    let _ = std::fs::write(
        dir.join("compare.html"),
        crate::compare::html::html(&c, base, &new, settings),
    );
    for w in &c.warnings {
        printer.warn(format!("software differs from the baseline: {w}"));
    }
    for r in c
        .rows
        .iter()
        .filter(|r| r.verdict == crate::compare::Verdict::Worse)
    {
        printer.warn(format!(
            "worse than the baseline: {} {:.2} → {:.2} {} ({:+.1}%)",
            r.id,
            r.base,
            r.new,
            r.unit,
            (r.ratio.ratio - 1.0) * 100.0
        ));
    }
    printer.result(format!(
        "baseline {}: {}",
        base.run_id,
        md.lines().nth(2).unwrap_or_default()
    ));
    if code == crate::exit_codes::OK && c.regressed() {
        crate::exit_codes::REGRESSION
    } else {
        code
    }
}

/// The default run id: `base`, or `base-2`, `base-3`, … when a run of the same plan started in
/// the same second already holds that state folder (CI matrices start runs together). Creating
/// the folder claims the id, so two runs never share one.
fn claim_run_id(base: &str) -> String {
    let root = crate::target::state_dir(base);
    if let Some(parent) = root.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    for n in 1..100 {
        let id = if n == 1 {
            base.to_string()
        } else {
            format!("{base}-{n}")
        };
        match std::fs::create_dir(crate::target::state_dir(&id)) {
            Ok(()) => return id,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            // Unwritable state root: the run reports that itself when it gets there.
            Err(_) => return id,
        }
    }
    base.to_string()
}
