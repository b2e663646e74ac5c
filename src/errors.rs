//! The errors that reach the user, each mapped to a documented exit code, and the one place they
//! are rendered.

use std::error::Error as _;

use crate::exit_codes;
use crate::input::InputError;
use crate::local::LocalError;
use crate::output::Printer;

/// Every way a command can fail.
#[derive(Debug, thiserror::Error)]
pub enum ExpectedError {
    /// A file the user gave is wrong.
    #[error(transparent)]
    Input(#[from] InputError),
    /// The local cluster failed.
    #[error(transparent)]
    Local(LocalError),
    /// Stopping left something behind.
    #[error("stop everything: left behind:\n  {}", .0.join("\n  "))]
    TeardownIncomplete(Vec<String>),
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
            Self::Input(_) => exit_codes::INPUT_ERROR,
            Self::Local(LocalError::Interrupted(_)) => exit_codes::INTERRUPTED,
            Self::Local(LocalError::AlreadyRunning { .. } | LocalError::NotRunning { .. }) => {
                exit_codes::INPUT_ERROR
            }
            Self::Local(_) => exit_codes::INFRA_ERROR,
            Self::TeardownIncomplete(_) => exit_codes::TEARDOWN_INCOMPLETE,
        }
    }

    /// Prints `error: failed to <top>` and one `caused by:` line per source.
    pub fn render(&self, printer: &Printer) {
        let mut text = match self {
            // Input errors are already a complete `file:line:col: ...` sentence.
            Self::Input(e) => format!("error: {e}"),
            other => format!("error: failed to {other}"),
        };
        let mut source = self.source();
        // `transparent` variants share their inner error's source chain; skip the duplicate.
        if matches!(self, Self::Input(_) | Self::Local(_)) {
            source = source.and_then(|s| s.source());
        }
        while let Some(cause) = source {
            text.push_str(&format!("\n  caused by: {cause}"));
            source = cause.source();
        }
        printer.error(text);
    }
}
