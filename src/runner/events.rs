//! What the runner says while it works. Reporters fold these events: the terminal reporter
//! prints progress, the recorder builds the [`RunRecord`] the report files are rendered from.

use crate::report::{Case, Phase, RunRecord};

/// One thing that happened.
#[derive(Debug, Clone)]
pub enum Event {
    /// The run began.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Plan name.
        plan: String,
        /// Report folder.
        dir: String,
    },
    /// A phase began.
    PhaseStarted(String),
    /// A phase ended.
    PhaseFinished(Phase),
    /// A suite step began.
    StepStarted {
        /// Suite.
        suite: String,
        /// Step.
        step: String,
        /// Check kind.
        check: String,
    },
    /// A testcase has its outcome.
    Case(Case),
    /// A line worth showing (what teardown removed, where the kubeconfig is).
    Note(String),
    /// A warning worth showing.
    Warning(String),
}

/// Something that folds events.
pub trait Reporter {
    /// Takes one event.
    fn on(&mut self, event: &Event);
}

/// Folds events into the run's record.
pub struct Recorder {
    /// The record so far.
    pub record: RunRecord,
}

impl Reporter for Recorder {
    fn on(&mut self, event: &Event) {
        match event {
            Event::PhaseFinished(p) => self.record.phases.push(p.clone()),
            Event::Case(c) => self.record.cases.push(c.clone()),
            _ => {}
        }
    }
}
