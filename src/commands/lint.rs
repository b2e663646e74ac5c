//! `gpuconform lint` and `gpuconform list`.

use std::path::{Path, PathBuf};

use crate::catalog::Catalog;
use crate::cli::{LintArgs, ListArgs};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::fixture::ClusterFixture;
use crate::input::InputError;
use crate::output::Printer;
use crate::plan::Plan;
use crate::suite::{CheckKind, Suite, known_suites};

/// Checks every file; all errors are printed, exit 2 if there are any.
pub fn lint(args: LintArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let files = if args.files.is_empty() {
        default_files()
    } else {
        args.files.clone()
    };
    let catalog = Catalog::embedded()?;
    let mut errors: Vec<InputError> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        let kind = kind_of(f, &text);
        let found = match kind {
            "suite" => Suite::load(f).err().unwrap_or_default(),
            "plan" => Plan::load(f, &args.suite_dir, &catalog)
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

/// Lists suites with their steps, and the check kinds.
pub fn list(args: ListArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    for name in known_suites(&args.suite_dir) {
        let path = args.suite_dir.join(format!("{name}.yaml"));
        match Suite::load(&path) {
            Ok(s) => {
                printer.result(format!(
                    "suite {name}: {}",
                    s.description.unwrap_or_default()
                ));
                for st in &s.steps {
                    let needs = if st.needs.is_empty() {
                        String::new()
                    } else {
                        format!(" (needs {})", st.needs.join(", "))
                    };
                    printer.result(format!("  {:<16} {}{needs}", st.name, st.check));
                }
                for st in &s.finally {
                    printer.result(format!("  {:<16} {} (finally)", st.name, st.check));
                }
            }
            Err(e) => printer.warn(format!(
                "suite {name}: {} errors, run `gpuconform lint {}`",
                e.len(),
                path.display()
            )),
        }
    }
    printer.result("checks:");
    for kind in CheckKind::ALL {
        printer.result(format!("  {:<12} {}", kind.name(), kind.about()));
        for p in kind.params() {
            // A long default (an image) is named in the meaning instead.
            let default = match p.default {
                crate::suite::ParamDefault::Str(_) => String::new(),
                d => format!(" (default {d})"),
            };
            printer.result(format!("    with.{}: {}{default}", p.name, p.about));
        }
    }
    Ok(exit_codes::OK)
}
