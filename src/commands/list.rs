//! `gpuconform list`: the suites with their steps, and the check kinds with their parameters.

use crate::cli::ListArgs;
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::output::Printer;
use crate::suite::{CheckKind, Suite, known_suites};

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
