//! `compare.md` and `compare.junit.xml`: the comparison as a table, worst first, and as one
//! JUnit testcase per benchmark so CI shows each regression by name.

use super::{Comparison, Run, Settings, Verdict};
use crate::report::escape_markup as esc;

/// The Markdown report: worst first.
pub fn markdown(c: &Comparison, base: &Run, new: &Run, s: &Settings) -> String {
    let rows = c.worst_first();
    let mut out = format!(
        "# gpuconform compare\n\nbase `{}`, new `{}`: {}\n\n",
        base.run_id,
        new.run_id,
        c.tally(s)
    );
    if !s.metric_thresholds.is_empty() {
        let own: Vec<String> = s
            .metric_thresholds
            .iter()
            .map(|(m, t)| format!("{m} {}%", t * 100.0))
            .collect();
        out.push_str(&format!("metric thresholds: {}\n\n", own.join(", ")));
    }
    for w in &c.warnings {
        out.push_str(&format!("> warning: software differs: {w}\n"));
    }
    out.push_str("\n| benchmark | base | new | change | interval | verdict |\n|---|---:|---:|---:|---|---|\n");
    for r in &rows {
        out.push_str(&format!(
            "| `{}` | {:.2} {} | {:.2} {} | {:+.1}% | {:+.1}% … {:+.1}% | {} |\n",
            r.id,
            r.base,
            r.unit,
            r.new,
            r.unit,
            (r.ratio.ratio - 1.0) * 100.0,
            (r.ratio.lo - 1.0) * 100.0,
            (r.ratio.hi - 1.0) * 100.0,
            r.verdict.word()
        ));
    }
    for (what, ids) in [("only in base", &c.only_base), ("only in new", &c.only_new)] {
        if !ids.is_empty() {
            out.push_str(&format!("\n{what}: {}\n", ids.join(", ")));
        }
    }
    out
}

/// JUnit: one testcase per benchmark, failed when worse.
pub fn junit(c: &Comparison) -> String {
    let failures = c
        .rows
        .iter()
        .filter(|r| r.verdict == Verdict::Worse)
        .count();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"gpuconform-compare\" tests=\"{}\" failures=\"{failures}\">\n  <testsuite name=\"compare\" tests=\"{}\" failures=\"{failures}\">\n",
        c.rows.len(),
        c.rows.len()
    );
    for r in &c.rows {
        let detail = format!(
            "{:.2} → {:.2} {} ({:+.1}%, interval {:+.1}% … {:+.1}%): {}",
            r.base,
            r.new,
            r.unit,
            (r.ratio.ratio - 1.0) * 100.0,
            (r.ratio.lo - 1.0) * 100.0,
            (r.ratio.hi - 1.0) * 100.0,
            r.verdict.word()
        );
        out.push_str(&format!(
            "    <testcase classname=\"compare\" name=\"{}\">",
            esc(&r.id)
        ));
        if r.verdict == Verdict::Worse {
            out.push_str(&format!("<failure message=\"{}\"/>", esc(&detail)));
        } else {
            out.push_str(&format!("<system-out>{}</system-out>", esc(&detail)));
        }
        out.push_str("</testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
