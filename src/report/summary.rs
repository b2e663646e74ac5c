//! `summary.md`: what a person reads first (and what goes to `$GITHUB_STEP_SUMMARY`).

use super::{RunRecord, Status};

/// The Markdown summary of a run.
pub fn render(r: &RunRecord) -> String {
    let (passed, failed, errors, skipped) = r.counts();
    let flaky = r.cases.iter().filter(|c| c.flaky()).count();
    let verdict = if !r.finished {
        "teardown in progress (this report is rewritten when the run ends)"
    } else if r.interrupted {
        "interrupted"
    } else if failed + errors > 0 || r.phases.iter().any(|p| !p.ok) {
        "failed"
    } else {
        "passed"
    };
    let mut s = format!("# gpuconform {} — {verdict}\n\n", r.run_id);
    s.push_str(&format!(
        "| | |\n|---|---|\n| plan | `{}` |\n| cluster | {} (Kubernetes {}) |\n| operator | {} {} |\n| driver | {} |\n| GPUs | {} |\n| result | {passed} passed{}, {failed} failed, {errors} errors, {skipped} skipped in {:.0} s |\n| exit code | {} |\n\n",
        r.plan,
        r.cluster,
        r.kubernetes_version,
        r.operator_chart,
        r.operator_chart_version,
        if r.driver_version.is_empty() { "(chart default)" } else { &r.driver_version },
        if r.gpu_models.is_empty() { "none found".to_string() } else { r.gpu_models.join(", ") },
        if flaky > 0 { format!(" ({flaky} flaky)") } else { String::new() },
        r.seconds,
        r.exit_code,
    ));
    s.push_str("## Phases\n\n| phase | | seconds | |\n|---|---|---|---|\n");
    for p in &r.phases {
        s.push_str(&format!(
            "| {} | {} | {:.1} | {} |\n",
            p.name,
            if p.ok { "ok" } else { "**failed**" },
            p.seconds,
            escape(&p.message)
        ));
    }
    let bad: Vec<_> = r
        .cases
        .iter()
        .filter(|c| matches!(c.status, Status::Failed | Status::Error))
        .collect();
    if !bad.is_empty() {
        s.push_str("\n## Failures\n\n");
        for c in bad {
            s.push_str(&format!(
                "- **{}/{}**: {}",
                c.suite,
                c.name,
                escape(c.message.as_deref().unwrap_or("failed"))
            ));
            for d in &c.diagnostics {
                s.push_str(&format!(" ([{d}]({d}))"));
            }
            s.push('\n');
        }
    }
    s.push_str("\n## Testcases\n\n| suite | testcase | status | message |\n|---|---|---|---|\n");
    for c in &r.cases {
        let status = match c.status {
            Status::Passed if c.flaky() => "passed (**flaky**)",
            Status::Passed if !c.warnings.is_empty() => "passed (warning)",
            Status::Passed => "passed",
            Status::Failed => "**failed**",
            Status::Error => "**error**",
            Status::Skipped => "skipped",
        };
        let mut msg = c
            .message
            .clone()
            .or_else(|| c.warnings.first().cloned())
            .unwrap_or_default();
        // What the earlier attempts of a retried step said, so a flaky pass is not silent.
        if let Some(first) = c.attempts.first() {
            msg = format!(
                "{msg}{}after {} earlier attempt(s), the first: {}",
                if msg.is_empty() { "" } else { "; " },
                c.attempts.len(),
                first.message.as_deref().unwrap_or("failed")
            );
        }
        s.push_str(&format!(
            "| {} | {} | {status} | {} |\n",
            c.suite,
            c.name,
            escape(&msg)
        ));
    }
    if let Some(u) = &r.upgrade {
        s.push_str(&super::upgrade::markdown(u));
    }
    s.push_str(&super::bench::markdown(&r.benchmarks));
    if let Some(u) = &r.instance_use {
        let hours: Vec<String> = u
            .instance_hours
            .iter()
            .map(|(t, h)| format!("{t} {h:.2} h"))
            .collect();
        s.push_str(&format!(
            "\n## EC2 use\n\n{} — about {:.2} USD at on-demand prices\n",
            hours.join(", "),
            u.estimated_usd
        ));
    }
    if !r.leftovers.is_empty() {
        s.push_str("\n## Left behind by teardown\n\n");
        for l in &r.leftovers {
            s.push_str(&format!("- {}\n", escape(l)));
        }
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
