//! `gpuconform list`: the suites with their steps, and the check kinds with their parameters.

use crate::cli::{Format, ListArgs};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::output::Printer;
use crate::suite::{CheckKind, known_suites, resolve};

/// Lists suites with their steps, and the check kinds.
pub fn list(args: ListArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    if args.output == Format::Json {
        printer.json(&json(&args));
        return Ok(exit_codes::OK);
    }
    for name in known_suites(&args.suite_dir) {
        let Some(loaded) = resolve(&args.suite_dir, &name) else {
            continue;
        };
        match loaded {
            Ok(s) => {
                printer.result(format!(
                    "suite {name}: {} ({})",
                    s.description.unwrap_or_default(),
                    s.file.display()
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
                args.suite_dir.join(format!("{name}.yaml")).display()
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

/// `list -o json`: every suite with its file and steps (a suite that does not validate carries
/// its errors instead), and every check kind with its parameters.
fn json(args: &ListArgs) -> serde_json::Value {
    use serde_json::json;
    let suites: Vec<serde_json::Value> = known_suites(&args.suite_dir)
        .into_iter()
        .filter_map(|name| {
            let loaded = resolve(&args.suite_dir, &name)?;
            Some(match loaded {
                Ok(s) => {
                    let step = |st: &crate::suite::Step, finally: bool| {
                        json!({"name": st.name, "check": st.check.to_string(), "needs": st.needs, "finally": finally})
                    };
                    let steps: Vec<_> = s
                        .steps
                        .iter()
                        .map(|st| step(st, false))
                        .chain(s.finally.iter().map(|st| step(st, true)))
                        .collect();
                    json!({"name": name, "description": s.description, "file": s.file.display().to_string(), "steps": steps})
                }
                Err(e) => json!({"name": name, "errors": e.iter().map(ToString::to_string).collect::<Vec<_>>()}),
            })
        })
        .collect();
    let checks: Vec<serde_json::Value> = CheckKind::ALL
        .iter()
        .map(|k| {
            let params: Vec<_> = k
                .params()
                .iter()
                .map(
                    |p| json!({"name": p.name, "about": p.about, "default": p.default.to_string()}),
                )
                .collect();
            json!({"name": k.name(), "about": k.about(), "params": params})
        })
        .collect();
    json!({"suites": suites, "checks": checks})
}
