//! Progress on the terminal: a spinner for the step in progress when stderr is a terminal,
//! plain timestamped lines otherwise (CI logs). Failures are printed with their message as they
//! happen, so a long run's log tells what broke without opening the report. Passing testcases
//! get a line each up to [`PASS_LINES`] per step; the rest are counted in one line when the
//! step ends (a 5,000-node labels step is one screen, not 5,000 lines; the reports have all).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Status;
use super::events::{Event, Reporter};
use crate::output::Printer;

/// Passing testcases shown one per line in each step.
pub const PASS_LINES: usize = 20;

/// The terminal reporter.
pub struct Terminal {
    printer: Printer,
    started: Instant,
    spinner: Option<ProgressBar>,
    tty: bool,
    /// The step whose passes are being counted: `suite/step`, lines shown, passes folded.
    passes: Option<(String, usize, usize)>,
}

impl Terminal {
    /// A reporter writing through `printer`.
    pub fn new(printer: Printer) -> Self {
        Self {
            printer,
            started: Instant::now(),
            spinner: None,
            tty: std::io::stderr().is_terminal() && !printer.is_quiet(),
            passes: None,
        }
    }

    /// Whether a plain pass of `step` gets its own line (counting it either way).
    fn pass_shown(&mut self, step: String) -> bool {
        if self.passes.as_ref().is_none_or(|(s, _, _)| *s != step) {
            self.fold_passes();
            self.passes = Some((step, 0, 0));
        }
        let Some((_, shown, folded)) = self.passes.as_mut() else {
            return true;
        };
        if *shown < PASS_LINES {
            *shown += 1;
            true
        } else {
            *folded += 1;
            false
        }
    }

    /// The line for the passes a step did not show.
    fn fold_passes(&mut self) {
        if let Some((step, _, folded)) = self.passes.take().filter(|p| p.2 > 0) {
            self.line(format!(
                "PASS  {step}: {folded} more testcases passed (every one is in junit.xml and results.json)"
            ));
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
                self.fold_passes();
                let state = if p.ok { "done" } else { "FAILED" };
                self.line(format!(
                    "{} {state} in {:.1}s: {}",
                    p.name, p.seconds, p.message
                ));
            }
            Event::StepStarted { suite, step, check } => {
                self.fold_passes();
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
                let plain = c.status == Status::Passed && c.warnings.is_empty();
                if plain && self.printer.is_quiet() {
                    return;
                }
                if plain && !self.pass_shown(format!("{}/{}", c.suite, c.step)) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Verbosity;
    use crate::report::Case;

    fn case(step: &str, node: usize, status: Status) -> Event {
        Event::Case(Case {
            suite: "gpu-stack".into(),
            step: step.into(),
            check: "labels".into(),
            name: format!("{step}/node-{node}"),
            node: Some(format!("node-{node}")),
            status,
            message: (status != Status::Passed).then(|| "wrong".into()),
            detail: String::new(),
            warnings: Vec::new(),
            seconds: 0.0,
            diagnostics: Vec::new(),
            attempts: Vec::new(),
            layer: None,
        })
    }

    #[test]
    fn passes_beyond_the_cap_are_counted_per_step_and_failures_always_shown() {
        let mut t = Terminal::new(Printer::new(Verbosity::Normal));
        for n in 0..PASS_LINES + 5 {
            t.on(&case("labels", n, Status::Passed));
        }
        // A failure is never folded, and does not count as a pass.
        t.on(&case("labels", 999, Status::Failed));
        assert_eq!(
            t.passes,
            Some(("gpu-stack/labels".to_string(), PASS_LINES, 5))
        );
        // The next step starts its own count (the fold line was written).
        t.on(&Event::StepStarted {
            suite: "gpu-stack".into(),
            step: "allocatable".into(),
            check: "allocatable".into(),
        });
        assert_eq!(t.passes, None);
        t.on(&case("allocatable", 0, Status::Passed));
        assert_eq!(t.passes, Some(("gpu-stack/allocatable".to_string(), 1, 0)));
    }
}
