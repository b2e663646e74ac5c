//! The printer: the one place that writes to stdout and stderr.
//!
//! Results a script may parse go to stdout; progress, notes and errors go to stderr. `--quiet`
//! silences progress but never errors, so a CI log always says why a run failed.

use std::io::Write;

/// How chatty the terminal output is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verbosity {
    /// Errors and results only.
    Quiet,
    /// Progress lines as well.
    Normal,
}

/// Owns stdout and stderr for the whole process.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    verbosity: Verbosity,
}

impl Printer {
    /// A printer with the given verbosity.
    pub fn new(verbosity: Verbosity) -> Self {
        Self { verbosity }
    }

    /// Whether progress is silenced (passed on to a supervisor process).
    pub fn is_quiet(&self) -> bool {
        self.verbosity == Verbosity::Quiet
    }

    /// A progress line on stderr (dropped under `--quiet`).
    pub fn progress(&self, line: impl AsRef<str>) {
        if self.verbosity == Verbosity::Normal {
            Self::write(&mut std::io::stderr().lock(), line.as_ref());
        }
    }

    /// A warning on stderr, shown even under `--quiet`.
    pub fn warn(&self, line: impl AsRef<str>) {
        Self::write(
            &mut std::io::stderr().lock(),
            &format!("warning: {}", line.as_ref()),
        );
    }

    /// An error block on stderr, shown even under `--quiet`.
    pub fn error(&self, text: impl AsRef<str>) {
        Self::write(&mut std::io::stderr().lock(), text.as_ref());
    }

    /// A JSON document on stdout (`-o json`), pretty-printed, shown even under `--quiet`.
    pub fn json(&self, value: &serde_json::Value) {
        let text = serde_json::to_string_pretty(value).unwrap_or_else(|_| "null".into());
        Self::write(&mut std::io::stdout().lock(), &text);
    }

    /// A result line on stdout (what scripts read).
    pub fn result(&self, line: impl AsRef<str>) {
        Self::write(&mut std::io::stdout().lock(), line.as_ref());
    }

    fn write(out: &mut impl Write, line: &str) {
        // A closed pipe (`gpuconform ... | head`) is not worth a panic or an error exit.
        let _ = writeln!(out, "{line}");
    }
}
