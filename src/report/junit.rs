//! `junit.xml` with quick-junit: one testsuite per suite (plus one for the run's phases), one
//! testcase per check × node with classname = suite and unique names, run metadata as
//! properties, the check's detail in system-out. Kept to what Jenkins, GitLab and GitHub
//! reporters read.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use super::{RunRecord, Status};

/// The JUnit document for a run.
pub fn render(record: &RunRecord) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("gpuconform {}", record.run_id));
    report.set_time(Duration::from_secs_f64(record.seconds.max(0.0)));
    let props = properties(record);

    // The phases, like nextest's setup scripts: provisioning or teardown trouble is visible in
    // the same report as the checks.
    let mut phases = TestSuite::new("phases");
    phases.add_properties(props.clone());
    for p in &record.phases {
        let status = if p.ok {
            TestCaseStatus::success()
        } else {
            let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
            s.set_message(p.message.clone());
            s
        };
        let mut case = TestCase::new(p.name.clone(), status);
        case.set_classname("phases");
        case.set_time(Duration::from_secs_f64(p.seconds.max(0.0)));
        case.set_system_out(p.message.clone());
        phases.add_test_case(case);
    }
    phases.set_time(Duration::from_secs_f64(
        record
            .phases
            .iter()
            .map(|p| p.seconds.max(0.0))
            .sum::<f64>(),
    ));
    report.add_test_suite(phases);

    for suite in record.suites() {
        let mut ts = TestSuite::new(suite.clone());
        ts.add_properties(props.clone());
        // A step's cases share its duration; count each step once.
        let mut steps: std::collections::BTreeMap<&str, f64> = std::collections::BTreeMap::new();
        for c in record.cases.iter().filter(|c| c.suite == suite) {
            steps.insert(&c.step, c.seconds);
            let status = match c.status {
                Status::Passed => TestCaseStatus::success(),
                Status::Failed | Status::Error => {
                    let kind = if c.status == Status::Failed {
                        NonSuccessKind::Failure
                    } else {
                        NonSuccessKind::Error
                    };
                    let mut s = TestCaseStatus::non_success(kind);
                    if let Some(m) = &c.message {
                        s.set_message(m.clone());
                    }
                    s.set_type(c.check.clone());
                    // The layer first, so a reader of the JUnit alone sees where it broke.
                    match c.layer {
                        Some(l) => s.set_description(format!("layer: {}\n{}", l.word(), c.detail)),
                        None => s.set_description(c.detail.clone()),
                    };
                    s
                }
                Status::Skipped => {
                    let mut s = TestCaseStatus::skipped();
                    if let Some(m) = &c.message {
                        s.set_message(m.clone());
                    }
                    s
                }
            };
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(suite.clone());
            case.set_time(Duration::from_secs_f64(c.seconds.max(0.0)));
            let mut out = c.detail.clone();
            for w in &c.warnings {
                out.push_str(&format!("\nwarning: {w}"));
            }
            for d in &c.diagnostics {
                out.push_str(&format!("\ndiagnostics: {d}"));
            }
            if !out.is_empty() {
                case.set_system_out(out);
            }
            ts.add_test_case(case);
        }
        ts.set_time(Duration::from_secs_f64(steps.values().sum::<f64>()));
        report.add_test_suite(ts);
    }
    report.to_string()
}

fn properties(r: &RunRecord) -> Vec<Property> {
    [
        ("run-id", r.run_id.clone()),
        ("plan", r.plan.clone()),
        ("cluster", r.cluster.clone()),
        ("kubernetes-version", r.kubernetes_version.clone()),
        ("operator-chart", r.operator_chart.clone()),
        ("operator-chart-version", r.operator_chart_version.clone()),
        ("driver-version", r.driver_version.clone()),
        ("gpu-models", r.gpu_models.join("; ")),
        // Whether the throughput numbers were measured or come from the simulator's model:
        // a dashboard must never mix the two.
        (
            "benchmarks",
            match (
                r.benchmarks.is_empty(),
                r.benchmarks.iter().any(|b| b.simulated),
            ) {
                (true, _) => "none".to_string(),
                (false, true) => "simulated".to_string(),
                (false, false) => "measured".to_string(),
            },
        ),
    ]
    .into_iter()
    .map(|(k, v)| Property::new(k, v))
    .collect()
}
