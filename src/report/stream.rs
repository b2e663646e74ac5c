//! `run --events FILE`: every runner event as one JSON object per line, written as it happens,
//! for tools that follow a run (a CI dashboard, a log shipper) without parsing the terminal.
//!
//! Each line is an envelope `{"schema", "seq", "time", "type", "data"}`; `schema` is
//! [`SCHEMA`] and changes only with an incompatible change (fields are only ever added within
//! one version). `schemas/events.schema.json` describes every type; `docs/events.md` the
//! contract. The reporter never stops a run: a line that cannot be written is dropped.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Value, json};

use super::events::{Event, Reporter};

/// The envelope's `schema` value.
pub const SCHEMA: &str = "gpuconform.events/v1";

/// Every `type` an event line can have, in the order [`Event`] declares them.
pub const TYPES: &[&str] = &[
    "run_started",
    "phase_started",
    "phase_finished",
    "cluster_ready",
    "gpu_nodes_found",
    "installed",
    "step_started",
    "case",
    "bench",
    "upgrade_started",
    "upgrade_watched",
    "upgrade_rolled_back",
    "upgrade_compared",
    "inventory",
    "note",
    "warning",
    "run_finished",
];

/// `(type, data)` of one event.
pub fn payload(event: &Event) -> (&'static str, Value) {
    let val = |v: Result<Value, serde_json::Error>| v.unwrap_or(Value::Null);
    match event {
        Event::RunStarted(s) => (
            "run_started",
            json!({
                "run_id": s.run_id, "plan": s.plan, "plan_file": s.plan_file, "dir": s.dir,
                "started_at": s.started_at, "operator_chart": s.operator_chart,
                "operator_chart_version": s.operator_chart_version,
                "driver_version": s.driver_version,
            }),
        ),
        Event::PhaseStarted(p) => ("phase_started", json!({ "name": p })),
        Event::PhaseFinished(p) => ("phase_finished", val(serde_json::to_value(p))),
        Event::ClusterReady {
            name,
            kubernetes_version,
        } => (
            "cluster_ready",
            json!({ "name": name, "kubernetes_version": kubernetes_version }),
        ),
        Event::GpuNodesFound(types) => ("gpu_nodes_found", json!({ "node_types": types })),
        Event::Installed { chart_version } => {
            ("installed", json!({ "chart_version": chart_version }))
        }
        Event::StepStarted { suite, step, check } => (
            "step_started",
            json!({ "suite": suite, "step": step, "check": check }),
        ),
        Event::Case(c) => ("case", val(serde_json::to_value(c))),
        Event::Bench(nb) => (
            "bench",
            json!({
                "node": nb.node, "instance_type": nb.instance_type, "model_key": nb.model_key,
                "group": nb.group, "mig_unit": nb.mig_unit,
                "report": val(serde_json::to_value(&nb.report)),
            }),
        ),
        Event::UpgradeStarted { from, to } => {
            ("upgrade_started", json!({ "from": from, "to": to }))
        }
        Event::UpgradeWatched { watched, failed } => (
            "upgrade_watched",
            json!({ "watched": val(serde_json::to_value(watched)), "failed": failed }),
        ),
        Event::UpgradeRolledBack(m) => ("upgrade_rolled_back", json!({ "message": m })),
        Event::UpgradeCompared { rows, regressed } => (
            "upgrade_compared",
            json!({ "rows": val(serde_json::to_value(rows)), "regressed": regressed }),
        ),
        Event::Inventory(inv) => ("inventory", val(serde_json::to_value(inv))),
        Event::Note(m) => ("note", json!({ "message": m })),
        Event::Warning(m) => ("warning", json!({ "message": m })),
        Event::RunFinished(end) => (
            "run_finished",
            json!({
                "interrupted": end.interrupted, "refused": end.refused,
                "infra_failed": end.infra_failed, "leftovers": end.leftovers,
                "instance_use": val(serde_json::to_value(&end.instance_use)),
                "seconds": end.seconds,
            }),
        ),
    }
}

/// One line (without its newline).
pub fn line(seq: u64, time: &str, event: &Event) -> String {
    let (kind, data) = payload(event);
    json!({ "schema": SCHEMA, "seq": seq, "time": time, "type": kind, "data": data }).to_string()
}

/// The reporter: writes to its file from the first event on.
pub struct EventStream {
    path: PathBuf,
    file: Option<std::fs::File>,
    seq: u64,
}

impl EventStream {
    /// Creates (truncates) `path`; the error names the file.
    pub fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)?;
        }
        let file = std::fs::File::create(path)?;
        Ok(Self {
            path: path.to_path_buf(),
            file: Some(file),
            seq: 0,
        })
    }

    /// Where it writes.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Reporter for EventStream {
    fn on(&mut self, event: &Event) {
        let Some(f) = &mut self.file else {
            return;
        };
        self.seq += 1;
        let now = chrono::Utc::now()
            .format("%Y-%m-%dT%H:%M:%S%.3fZ")
            .to_string();
        let mut text = line(self.seq, &now, event);
        text.push('\n');
        // One write per line, so a reader following the file never sees half an event.
        if f.write_all(text.as_bytes()).is_err() {
            self.file = None;
        }
    }
}

#[cfg(test)]
mod tests;
