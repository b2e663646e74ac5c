//! `junit.xml` with quick-junit: one testsuite per suite (plus one for the run's phases), one
//! testcase per check × node with classname = suite and unique names, run metadata as
//! properties, the check's detail in system-out with an `[[ATTACHMENT|…]]` line per
//! diagnostics file, each testcase's share of its step's time, retried steps' earlier attempts
//! as flaky or rerun elements. Valid against the strict schema Jenkins' xUnit plugin validates
//! with (`tests/data/junit/junit-10.xsd`) and read by junitparser, GitLab and GitHub reporters.

use std::time::Duration;

use quick_junit::{
    NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestRerun, TestSuite,
};

use super::{RunRecord, Status};

/// The JUnit document for a run.
pub fn render(record: &RunRecord) -> Result<String, quick_junit::SerializeError> {
    let mut report = Report::new(format!("gpuconform {}", record.run_id));
    report.set_time(Duration::from_secs_f64(record.seconds.max(0.0)));
    let props = properties(record);

    // The phases, like nextest's setup scripts: provisioning or teardown trouble is visible in
    // the same report as the checks.
    let started = chrono::DateTime::parse_from_rfc3339(&record.started_at).ok();
    let mut phases = TestSuite::new("phases");
    phases.add_properties(props.clone());
    if let Some(t) = started {
        phases.set_timestamp(t);
    }
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
        if let Some(t) = started {
            ts.set_timestamp(t);
        }
        let mut total = 0.0;
        for c in record.cases.iter().filter(|c| c.suite == suite) {
            total += c.seconds.max(0.0);
            let mut status = match c.status {
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
            // Earlier attempts of a retried step: flakyFailure before a pass, rerunFailure
            // after the failure that stood (Surefire's elements, which the strict schema has).
            for a in &c.attempts {
                let kind = if a.status == Status::Error {
                    NonSuccessKind::Error
                } else {
                    NonSuccessKind::Failure
                };
                let mut rerun = TestRerun::new(kind);
                rerun.set_type(c.check.clone());
                if let Some(m) = &a.message {
                    rerun.set_message(m.clone());
                }
                rerun.set_system_out(a.detail.clone());
                status.add_rerun(rerun);
            }
            let mut case = TestCase::new(c.name.clone(), status);
            case.set_classname(suite.clone());
            case.set_time(Duration::from_secs_f64(c.seconds.max(0.0)));
            let mut out = c.detail.clone();
            for w in &c.warnings {
                out.push_str(&format!("\nwarning: {w}"));
            }
            // Jenkins' JUnit attachments plugin reads `[[ATTACHMENT|path]]` lines; the path is
            // relative to the folder junit.xml is in.
            for d in &c.diagnostics {
                out.push_str(&format!("\ndiagnostics: {d}\n[[ATTACHMENT|{d}]]"));
            }
            if !out.is_empty() {
                case.set_system_out(out);
            }
            ts.add_test_case(case);
        }
        ts.set_time(Duration::from_secs_f64(total));
        report.add_test_suite(ts);
    }
    report.to_string().map(|x| strict(&x))
}

/// The document as the strict JUnit schema (Jenkins xUnit's `junit-10.xsd`) takes it: that
/// schema has no `skipped` count on `<testsuites>` (each `<testsuite>` keeps its own), which
/// quick-junit always writes.
fn strict(xml: &str) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml.to_string();
    };
    let end = xml[start..].find('>').map_or(xml.len(), |e| start + e);
    let tag = &xml[start..end];
    let Some(at) = tag.find(" skipped=\"") else {
        return xml.to_string();
    };
    let close = tag[at + 10..]
        .find('"')
        .map_or(tag.len(), |q| at + 10 + q + 1);
    format!("{}{}{}", &xml[..start + at], &tag[close..], &xml[end..])
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
