//! `gpuconform lint`: every plan, suite and fixture validated, every error with file:line:field.

use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::cli::LintArgs;
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::fixture::ClusterFixture;
use crate::input::InputError;
use crate::output::Printer;
use crate::plan::Plan;
use crate::suite::Suite;

/// Checks every file; all errors are printed, exit 2 if there are any.
pub fn lint(args: LintArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let files = if args.files.is_empty() {
        default_files()
    } else {
        args.files.clone()
    };
    let catalog = Catalog::resolve(&args.catalog)?;
    let mut errors: Vec<InputError> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let kind = kind_of(f, &text);
        let found = match kind {
            "suite" => Suite::load(f).err().unwrap_or_default(),
            "plan" => Plan::load(f, &[], &args.suite_dir, &catalog)
                .err()
                .into_iter()
                .collect(),
            "fixture" => ClusterFixture::load(f, &catalog)
                .err()
                .into_iter()
                .collect(),
            _ => vec![InputError::file(
                f,
                "not a plan (`target:`), suite (`steps:`) or cluster fixture (`pools:`)",
            )],
        };
        if found.is_empty() {
            printer.progress(format!("ok    {} ({kind})", f.display()));
        }
        errors.extend(found);
    }
    if errors.is_empty() {
        printer.result(format!("{} files, no errors", files.len()));
        Ok(exit_codes::OK)
    } else {
        Err(ExpectedError::Inputs(errors))
    }
}

fn kind_of(path: &Path, text: &str) -> &'static str {
    let has = |k: &str| text.lines().any(|l| l.starts_with(k));
    if has("steps:") || path.components().any(|c| c.as_os_str() == "suites") {
        "suite"
    } else if has("target:") {
        "plan"
    } else if has("pools:") {
        "fixture"
    } else {
        "unknown"
    }
}

fn default_files() -> Vec<PathBuf> {
    let mut out = Vec::new();
    for dir in [
        "plans",
        "suites",
        "fixtures/clusters",
        "fixtures/clusters/faults",
    ] {
        if let Ok(entries) = std::fs::read_dir(dir) {
            let mut v: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .collect();
            v.sort();
            out.extend(v);
        }
    }
    out
}
