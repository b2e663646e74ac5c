//! A finished run in the Prometheus text exposition format (`gpuconform run --metrics FILE`),
//! for the node exporter's textfile collector or a Pushgateway: the way batch jobs report to
//! Prometheus. Everything comes from the folded run record, so the metrics say what the report
//! files say.
//!
//! Families (each labelled with the plan, so several plans can share one collector folder):
//! `gpuconform_run_info` (1, the run's identity in labels), `gpuconform_run_success`,
//! `gpuconform_run_exit_code`, `gpuconform_run_duration_seconds`,
//! `gpuconform_run_finished_timestamp_seconds`, `gpuconform_last_success_timestamp_seconds`
//! (the newest passing run's end; a failed run carries the previous file's value forward, so
//! "no success for a day" can be alerted on), `gpuconform_testcases` (count by status),
//! `gpuconform_testcase_status` (1 per testcase, its status a label), `gpuconform_bench_median`
//! and `gpuconform_bench_floor` (by benchmark identity, the unit a label).

use std::fmt::Write as _;
use std::path::Path;

use super::{RunRecord, Status};

const LAST_SUCCESS: &str = "gpuconform_last_success_timestamp_seconds";

/// One family being written: its help and type once, then its samples.
struct Family<'a> {
    out: &'a mut String,
}

impl<'a> Family<'a> {
    fn new(out: &'a mut String, name: &str, kind: &str, help: &str) -> Self {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        Self { out }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        let _ = write!(self.out, "{name}");
        if !labels.is_empty() {
            let body: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                .collect();
            let _ = write!(self.out, "{{{}}}", body.join(","));
        }
        let _ = writeln!(self.out, " {}", number(value));
    }
}

/// A label value as the text format quotes it: backslash, double quote and newline escaped.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// A sample value: integers without a fraction, others as Rust prints them (`NaN`, `+Inf`).
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

fn status_name(s: &Status) -> &'static str {
    match s {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Error => "error",
        Status::Skipped => "skipped",
    }
}

/// The metrics of `record`, which ended with `exit_code` at `finished_at` (Unix seconds);
/// `last_success`: the newest earlier passing run's end, when known.
pub fn render(
    record: &RunRecord,
    exit_code: u8,
    finished_at: f64,
    last_success: Option<f64>,
) -> String {
    let mut out = String::new();
    let plan = record.plan.as_str();
    let success = exit_code == crate::exit_codes::OK;
    let mut f = Family::new(
        &mut out,
        "gpuconform_run_info",
        "gauge",
        "The run's identity, in labels (always 1).",
    );
    f.sample(
        "gpuconform_run_info",
        &[
            ("plan", plan),
            ("run_id", &record.run_id),
            ("cluster", &record.cluster),
            ("kubernetes_version", &record.kubernetes_version),
            ("operator_chart", &record.operator_chart),
            ("operator_chart_version", &record.operator_chart_version),
            ("driver_version", &record.driver_version),
        ],
        1.0,
    );
    let run_gauges: [(&str, &str, f64); 4] = [
        (
            "gpuconform_run_success",
            "1 when the run passed (exit 0), else 0.",
            if success { 1.0 } else { 0.0 },
        ),
        (
            "gpuconform_run_exit_code",
            "The run's exit code (the README lists them).",
            f64::from(exit_code),
        ),
        (
            "gpuconform_run_duration_seconds",
            "Wall time of the run.",
            record.seconds,
        ),
        (
            "gpuconform_run_finished_timestamp_seconds",
            "When the run ended, Unix time.",
            finished_at,
        ),
    ];
    for (name, help, value) in run_gauges {
        Family::new(&mut out, name, "gauge", help).sample(name, &[("plan", plan)], value);
    }
    if let Some(t) = success.then_some(finished_at).or(last_success) {
        Family::new(
            &mut out,
            LAST_SUCCESS,
            "gauge",
            "When the newest passing run ended, Unix time.",
        )
        .sample(LAST_SUCCESS, &[("plan", plan)], t);
    }
    let (passed, failed, errors, skipped) = record.counts();
    let mut f = Family::new(
        &mut out,
        "gpuconform_testcases",
        "gauge",
        "Testcases of the run, by status.",
    );
    for (status, n) in [
        ("passed", passed),
        ("failed", failed),
        ("error", errors),
        ("skipped", skipped),
    ] {
        f.sample(
            "gpuconform_testcases",
            &[("plan", plan), ("status", status)],
            n as f64,
        );
    }
    let mut f = Family::new(
        &mut out,
        "gpuconform_testcase_status",
        "gauge",
        "One per testcase (1), its status in a label.",
    );
    for c in &record.cases {
        f.sample(
            "gpuconform_testcase_status",
            &[
                ("plan", plan),
                ("suite", &c.suite),
                ("step", &c.step),
                ("testcase", &c.name),
                ("node", c.node.as_deref().unwrap_or("")),
                ("status", status_name(&c.status)),
            ],
            1.0,
        );
    }
    type Pick = fn(&super::bench::BenchRow) -> Option<f64>;
    let bench: [(&str, &str, Pick); 2] = [
        (
            "gpuconform_bench_median",
            "Median of a benchmark's timed repetitions, in its unit.",
            |r| Some(r.median),
        ),
        (
            "gpuconform_bench_floor",
            "The floor a benchmark had to clear, in its unit.",
            |r| r.floor,
        ),
    ];
    if !record.benchmarks.is_empty() {
        for (name, help, pick) in bench {
            let mut f = Family::new(&mut out, name, "gauge", help);
            for r in &record.benchmarks {
                let Some(v) = pick(r) else { continue };
                let gpu = r.gpu.to_string();
                f.sample(
                    name,
                    &[
                        ("plan", plan),
                        ("id", &r.id),
                        ("node", &r.node),
                        ("gpu", &gpu),
                        ("model", &r.model),
                        ("metric", &r.metric),
                        ("unit", &r.unit),
                    ],
                    v,
                );
            }
        }
    }
    out
}

/// The last-success timestamp an earlier metrics file holds for `plan`, if any.
pub fn previous_success(text: &str, plan: &str) -> Option<f64> {
    let want = format!("{LAST_SUCCESS}{{plan=\"{}\"}} ", escape(plan));
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.trim().parse().ok())
}

/// Writes the metrics of a finished run to `path` the way the textfile collector needs: into a
/// temporary file beside it, then renamed over it, so a scrape never reads half a file. A failed
/// run keeps the last-success timestamp of the file it replaces.
pub fn write(path: &Path, record: &RunRecord, exit_code: u8) -> std::io::Result<()> {
    write_text(path, &now_text(record, exit_code, Some(path)))
}

/// The metrics of a run that ends now; `previous` is a metrics file whose last-success value a
/// failed run carries forward.
pub fn now_text(record: &RunRecord, exit_code: u8, previous: Option<&Path>) -> String {
    let finished_at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs_f64().floor())
        .unwrap_or_default();
    let previous = previous
        .and_then(|p| std::fs::read_to_string(p).ok())
        .and_then(|t| previous_success(&t, &record.plan));
    render(record, exit_code, finished_at, previous)
}

/// Replaces `path` with `text` atomically (written beside, then renamed).
pub fn write_text(path: &Path, text: &str) -> std::io::Result<()> {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "metrics".into());
    let tmp = path.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

#[cfg(test)]
mod tests;
