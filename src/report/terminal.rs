//! Progress on the terminal: a spinner for the step in progress when stderr is a terminal,
//! plain timestamped lines otherwise (CI logs). Failures are printed with their message as they
//! happen, so a long run's log tells what broke without opening the report.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Status;
use super::events::{Event, Reporter};
use crate::output::Printer;

/// The terminal reporter.
pub struct Terminal {
    printer: Printer,
    started: Instant,
    spinner: Option<ProgressBar>,
    tty: bool,
}

impl Terminal {
    /// A reporter writing through `printer`.
    pub fn new(printer: Printer) -> Self {
        Self {
            printer,
            started: Instant::now(),
            spinner: None,
            tty: std::io::stderr().is_terminal() && !printer.is_quiet(),
        }
    }

    fn line(&self, text: String) {
        let stamped = format!("[{:>7.1}s] {text}", self.started.elapsed().as_secs_f64());
        match &self.spinner {
            Some(pb) => pb.println(stamped),
            None => self.printer.progress(stamped),
        }
    }

    fn spin(&mut self, text: String) {
        if !self.tty {
            self.line(text);
            return;
        }
        let pb = self.spinner.get_or_insert_with(|| {
            let pb = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} [{elapsed_precise}] {msg}") {
                pb.set_style(style);
            }
            pb.enable_steady_tick(Duration::from_millis(120));
            pb
        });
        pb.set_message(text);
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if let Some(pb) = self.spinner.take() {
            pb.finish_and_clear();
        }
    }
}

impl Reporter for Terminal {
    fn on(&mut self, event: &Event) {
        match event {
            Event::RunStarted(s) => {
                let (run_id, plan, dir) = (&s.run_id, &s.plan, &s.dir);
                self.line(format!("run {run_id} (plan {plan}), reports in {dir}"));
            }
            Event::PhaseStarted(p) => self.spin(format!("{p}…")),
            Event::PhaseFinished(p) => {
                let state = if p.ok { "done" } else { "FAILED" };
                self.line(format!(
                    "{} {state} in {:.1}s: {}",
                    p.name, p.seconds, p.message
                ));
            }
            Event::StepStarted { suite, step, check } => {
                self.spin(format!("{suite}/{step} ({check})…"));
            }
            Event::Case(c) => {
                let (tag, msg) = match c.status {
                    Status::Passed if !c.warnings.is_empty() => ("WARN", c.warnings.join("; ")),
                    Status::Passed => ("PASS", String::new()),
                    Status::Failed => ("FAIL", c.message.clone().unwrap_or_default()),
                    Status::Error => ("ERROR", c.message.clone().unwrap_or_default()),
                    Status::Skipped => ("SKIP", c.message.clone().unwrap_or_default()),
                };
                let sep = if msg.is_empty() { "" } else { ": " };
                if c.status == Status::Passed && c.warnings.is_empty() && self.printer.is_quiet() {
                    return;
                }
                let text = format!("{tag:<5} {}/{}{sep}{msg}", c.suite, c.name);
                if matches!(c.status, Status::Failed | Status::Error) {
                    if let Some(pb) = &self.spinner {
                        pb.println(&text);
                    } else {
                        self.printer.error(&text);
                    }
                } else {
                    self.line(text);
                }
            }
            Event::Note(n) => self.line(n.clone()),
            Event::UpgradeStarted { from, to } => {
                self.line(format!("driver upgrade {from} → {to}: baseline done"));
            }
            Event::UpgradeRolledBack(what) => self.line(format!("rollback: {what}")),
            Event::Warning(w) => {
                if let Some(pb) = &self.spinner {
                    pb.println(format!("warning: {w}"));
                } else {
                    self.printer.warn(w);
                }
            }
            // Shown through the phase lines and the report files.
            Event::ClusterReady { .. }
            | Event::GpuNodesFound(_)
            | Event::Installed { .. }
            | Event::Bench(_)
            | Event::Inventory(_)
            | Event::UpgradeWatched { .. }
            | Event::UpgradeCompared { .. }
            | Event::RunFinished(_) => {}
        }
    }
}
