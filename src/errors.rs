//! The errors that reach the user, each mapped to a documented exit code, and the one place they
//! are rendered.

use std::error::Error as _;

use crate::exit_codes;
use crate::input::InputError;
use crate::output::Printer;
use crate::target::local::LocalError;

/// Every way a command can fail.
#[derive(Debug, thiserror::Error)]
pub enum ExpectedError {
    /// A file the user gave is wrong.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The local cluster failed.
    #[error(transparent)]
    Local(LocalError),
    /// Several input problems (a plan and its suites), all reported.
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\nerror: "))]
    Inputs(Vec<InputError>),
    /// Stopping left something behind.
    #[error("stop everything: left behind:\n  {}", .0.join("\n  "))]
    TeardownIncomplete(Vec<String>),
    /// The cluster could not be reached (`init`).
    #[error(transparent)]
    Connect(#[from] crate::target::existing::ConnectError),
    /// The cluster did not answer a read (`init`).
    #[error(transparent)]
    Cluster(#[from] crate::k8s::K8sError),
    /// `retrieve` could not copy the run.
    #[error(transparent)]
    Retrieve(#[from] crate::retrieve::RetrieveError),
    /// Two runs could not be compared (unreadable, no benchmarks in common, other hardware).
    #[error(transparent)]
    Compare(#[from] crate::compare::CompareError),
}

impl From<LocalError> for ExpectedError {
    fn from(e: LocalError) -> Self {
        Self::Local(e)
    }
}

impl ExpectedError {
    /// The process exit code.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Input(_) | Self::Inputs(_) => exit_codes::INPUT_ERROR,
            Self::Local(LocalError::Interrupted(_)) => exit_codes::INTERRUPTED,
            Self::Local(LocalError::AlreadyRunning { .. } | LocalError::NotRunning { .. }) => {
                exit_codes::INPUT_ERROR
            }
            Self::Local(_) => exit_codes::INFRA_ERROR,
            Self::TeardownIncomplete(_) => exit_codes::TEARDOWN_INCOMPLETE,
            Self::Compare(_) => exit_codes::INPUT_ERROR,
            Self::Retrieve(e) => e.exit_code(),
            Self::Connect(_) | Self::Cluster(_) => exit_codes::INFRA_ERROR,
        }
    }

    /// Prints the error (see [`Self::rendered`]).
    pub fn render(&self, printer: &Printer) {
        printer.error(self.rendered());
    }

    /// `error: failed to <top>` and one `caused by:` line per source.
    pub fn rendered(&self) -> String {
        let mut text = match self {
            // Input errors are already a complete `file:line:col: ...` sentence.
            Self::Input(e) => format!("error: {e}"),
            Self::Inputs(_) => format!("error: {self}"),
            other => format!("error: failed to {other}"),
        };
        // `transparent` variants already hand over their inner error's sources.
        let mut source = self.source();
        while let Some(cause) = source {
            text.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        text
    }
}

/// An error and its sources on one line: `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_cause_is_shown() {
        let e = ExpectedError::from(LocalError::Io {
            path: "run/pki".into(),
            source: std::io::Error::other("disk full"),
        });
        assert_eq!(
            e.rendered(),
            "error: failed to prepare run/pki\n  caused by: disk full"
        );
        assert_eq!(e.exit_code(), exit_codes::INFRA_ERROR);
    }
}
