//! The certification profile: what a run must be for its bundle to certify anything. Checked
//! twice — on the plan and suites before anything starts (a plan that cannot certify is bad
//! input, exit 2, and no cluster is touched), and on the finished run (a skipped testcase, a
//! GPU node judged by the instance catalog's guess instead of the owner's expectation, or
//! simulated results fail certification).

use std::path::Path;

use crate::input::InputError;
use crate::plan::driver::DriverExpect;
use crate::plan::{OperatorMode, Plan, Target};
use crate::report::inventory::Inventory;
use crate::report::{RunRecord, Status};
use crate::suite::{CheckKind, Suite};

/// The checks a certification must run: the operator and its operands, the node labels, the
/// allocatable GPUs, a workload and the throughput bench on every GPU node.
pub const REQUIRED: &[CheckKind] = &[
    CheckKind::Operator,
    CheckKind::Labels,
    CheckKind::Allocatable,
    CheckKind::Workload,
    CheckKind::Throughput,
];

/// The fewest bench repetitions whose median is stable enough to certify (the bench's own
/// default is lower, for nightly runs).
pub const MIN_REPETITIONS: i64 = 10;

/// The profile's rules over the plan and its suites; every problem at once.
pub fn check_inputs(plan: &Plan, suites: &[Suite], allow_simulated: bool) -> Vec<InputError> {
    let file = plan.file.as_path();
    let mut out = Vec::new();
    let mut bad = |m: String| out.push(InputError::file(file, m));
    if plan.certification.is_none() {
        bad("certification: missing; PRODUCT.yaml needs vendorName, platformName, platformVersion and contactEmailAddress".into());
    }
    if matches!(plan.target, Target::Local { .. }) && !allow_simulated {
        bad("target.local: a local cluster's GPUs are simulated, so its results certify nothing; --allow-simulated writes a bundle marked \"not a certification: simulated\"".into());
    }
    let kinds: Vec<CheckKind> = suites
        .iter()
        .flat_map(|s| s.steps.iter().chain(&s.finally))
        .map(|s| s.check)
        .collect();
    let missing: Vec<&str> = REQUIRED
        .iter()
        .filter(|k| !kinds.contains(k))
        .map(|k| k.name())
        .collect();
    if !missing.is_empty() {
        bad(format!(
            "suites: a certification runs every required check; none of the plan's suites has {}",
            missing.join(", ")
        ));
    }
    if plan.expect.is_empty() {
        bad("expect: every GPU node needs an explicit expectation (GPU model and count per node group); the instance catalog's guess by instance type does not certify".into());
    }
    if plan.operator.mode == OperatorMode::Install {
        let local_chart = Path::new(&plan.operator.chart).is_dir();
        if plan.operator.version.is_none() && !local_chart {
            bad(format!(
                "operator.version: the chart {} must be pinned to a version",
                plan.operator.chart
            ));
        }
        if plan.operator.driver_version().is_none() {
            bad("operator.values.driver.version: the driver must be pinned".into());
        }
    }
    let exact = |r: &Option<crate::plan::driver::DriverRule>| {
        r.as_ref()
            .is_some_and(|r| matches!(r.expect, DriverExpect::Exact(_)))
    };
    let all_entries_exact = !plan.expect.is_empty() && plan.expect.iter().all(|e| exact(&e.driver));
    if !exact(&plan.expect_driver) && !all_entries_exact {
        bad("expectDriver: a certification expects one exact driver version (`expectDriver: {version: \"580.95.05\"}`), not a branch or any".into());
    }
    for s in suites {
        for step in s
            .steps
            .iter()
            .filter(|st| st.check == CheckKind::Throughput)
        {
            let n = step.int("repetitions");
            if n < MIN_REPETITIONS {
                out.push(InputError::file(
                    &s.file,
                    format!(
                        "steps.{}.with.repetitions: {n} repetitions; a certification needs at least {MIN_REPETITIONS} for a stable median",
                        step.name
                    ),
                ));
            }
        }
    }
    out
}

/// Whether the run's results come from the GPU simulator.
pub fn simulated(record: &RunRecord) -> bool {
    record.benchmarks.iter().any(|b| b.simulated)
        || record.bench_docs.iter().any(|d| d.report.simulated)
        || record
            .inventory
            .as_ref()
            .is_some_and(|i| i.nodes.iter().any(|n| n.simulated))
}

/// The profile's rules over the finished run: why it does not certify (empty: it does).
pub fn check_run(record: &RunRecord, allow_simulated: bool) -> Vec<String> {
    let mut out = Vec::new();
    if record.exit_code != crate::exit_codes::OK {
        out.push(format!(
            "the run did not pass (exit {}): {} of {} testcases failed or errored",
            record.exit_code,
            record.counts().1 + record.counts().2,
            record.cases.len()
        ));
    }
    for c in record.cases.iter().filter(|c| c.status == Status::Skipped) {
        out.push(format!(
            "{}/{} was skipped ({}); a certification runs every testcase",
            c.suite,
            c.name,
            c.message.as_deref().unwrap_or("no reason given")
        ));
    }
    if simulated(record) && !allow_simulated {
        out.push("the results come from the GPU simulator; without --allow-simulated they certify nothing".into());
    }
    match &record.inventory {
        None => out.push("no inventory: the cluster could not be read after the install".into()),
        Some(inv) => out.extend(inventory_problems(record, inv)),
    }
    out
}

fn inventory_problems(record: &RunRecord, inv: &Inventory) -> Vec<String> {
    let mut out = Vec::new();
    if inv.nodes.is_empty() {
        out.push("the inventory has no GPU node: nothing was certified".into());
    }
    for n in &inv.nodes {
        if !n.expectation.starts_with("expect[") {
            out.push(format!(
                "{}: judged by {}, not by an explicit `expect` entry of the plan",
                n.name, n.expectation
            ));
        }
        if !record
            .cases
            .iter()
            .any(|c| c.node.as_deref() == Some(n.name.as_str()))
        {
            out.push(format!("{}: a GPU node without any testcase", n.name));
        }
    }
    out
}
