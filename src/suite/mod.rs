//! Suites: `suites/<name>.yaml`, an explicit ordered list of steps, each a check kind with its
//! parameters, `needs:` on earlier steps, and `finally:` steps that always run.
//!
//! Validation collects every problem in a file (for `gpuconform lint`), each with file, line and
//! field; `run` refuses a plan whose suites have any. The format is described by
//! `schemas/suite.schema.json` (generated from these types) for editors.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::input::{InputError, Spanned, load_yaml};

pub mod kinds;

pub use kinds::{CheckKind, Param, ParamDefault, ParamType};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSuite {
    /// The suite's name; must match its file name.
    #[schemars(regex(pattern = r"^[a-z0-9-]+$"))]
    name: Spanned<String>,
    /// What the suite checks.
    #[serde(default)]
    description: Option<String>,
    /// The steps, in order; each runs one check.
    #[schemars(length(min = 1))]
    steps: Spanned<Vec<RawStep>>,
    /// Steps that run after the others whatever happened (cleanup).
    #[serde(default)]
    finally: Vec<RawStep>,
}

/// One step: a check kind, what it needs, its parameters and limits.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawStep {
    /// Unique within the suite.
    #[schemars(regex(pattern = r"^[a-z0-9-]+$"))]
    name: Spanned<String>,
    /// The check kind (`gpuconform list` shows each with its parameters).
    #[schemars(schema_with = "kinds::check_schema")]
    check: Spanned<String>,
    /// Earlier steps that must have passed.
    #[serde(default)]
    needs: Vec<Spanned<String>>,
    /// The check's parameters (`gpuconform list` names them; `lint` checks them).
    #[serde(default, rename = "with")]
    params: BTreeMap<String, Spanned<serde_json::Value>>,
    /// A duration such as `90s`; overrides the plan's step timeout.
    #[serde(default)]
    timeout: Option<Spanned<String>>,
    /// Run a failed testcase's check again (its node only) up to this many times; one that
    /// passes on a retry is reported flaky. Not for uninstall or throughput.
    #[serde(default)]
    #[schemars(range(min = 0, max = 3))]
    retries: Option<Spanned<i64>>,
}

/// The JSON Schema of suite files (`schemas/suite.schema.json`).
pub fn schema() -> serde_json::Value {
    crate::input::schema::root::<RawSuite>(
        "https://gpuconform.dev/schema/suite.json",
        "gpuconform suite",
        "An ordered list of steps; each runs a check. Generated from gpuconform's types; `gpuconform lint` checks the same and more (needs, parameters per check) with file, line and field.",
    )
}

/// One step.
#[derive(Debug, Clone, PartialEq)]
pub struct Step {
    /// Unique within the suite.
    pub name: String,
    /// Check kind.
    pub check: CheckKind,
    /// Steps (earlier in the suite) that must have passed.
    pub needs: Vec<String>,
    /// Parameters for the check.
    pub params: BTreeMap<String, serde_json::Value>,
    /// Overrides the plan's step timeout.
    pub timeout: Option<Duration>,
    /// How many more times a failed testcase's check runs (on its node only) before it counts
    /// as failed; one that passes on a retry is reported flaky (0: no retries).
    pub retries: u32,
}

/// The most `retries:` a step may have: a check that needs more is broken, not flaky.
pub const MAX_RETRIES: i64 = 3;

impl Step {
    /// An integer parameter, or its default from the kind's table.
    pub fn int(&self, key: &str) -> i64 {
        match self.params.get(key).and_then(serde_json::Value::as_i64) {
            Some(v) => v,
            None => match self.check.param(key).map(|p| p.default) {
                Some(ParamDefault::Int(d)) => d,
                _ => 0,
            },
        }
    }
    /// A boolean parameter, or its default from the kind's table.
    pub fn bool(&self, key: &str) -> bool {
        match self.params.get(key).and_then(serde_json::Value::as_bool) {
            Some(v) => v,
            None => matches!(
                self.check.param(key).map(|p| p.default),
                Some(ParamDefault::Bool(true))
            ),
        }
    }
    /// A string parameter, or its default from the kind's table.
    pub fn str(&self, key: &str) -> String {
        match self.params.get(key).and_then(serde_json::Value::as_str) {
            Some(v) => v.to_string(),
            None => match self.check.param(key).map(|p| p.default) {
                Some(ParamDefault::Str(d)) => d.to_string(),
                _ => String::new(),
            },
        }
    }
}

/// A validated suite.
#[derive(Debug, Clone)]
pub struct Suite {
    /// Where it was read from.
    pub file: PathBuf,
    /// Suite name (the JUnit testsuite and classname).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Steps in order.
    pub steps: Vec<Step>,
    /// Steps that run after the others whatever happened.
    pub finally: Vec<Step>,
}

impl Suite {
    /// Reads a suite; all problems at once.
    pub fn load(file: &Path) -> Result<Self, Vec<InputError>> {
        let raw: RawSuite = load_yaml(file).map_err(|e| vec![e])?;
        validate(file, raw)
    }
}

/// The suite `name`: `dir/<name>.yaml` when that file is there (a user's suite, or one edited
/// in a clone), else the built-in one of that name; `None` when neither exists.
pub fn resolve(dir: &Path, name: &str) -> Option<Result<Suite, Vec<InputError>>> {
    let file = dir.join(format!("{name}.yaml"));
    if file.is_file() {
        return Some(Suite::load(&file));
    }
    let text = crate::builtin::suite(name)?;
    let file = crate::builtin::label(&format!("suites/{name}.yaml"));
    Some(
        crate::input::parse_yaml(&file, text)
            .map_err(|e| vec![e])
            .and_then(|raw| validate(&file, raw)),
    )
}

/// Whether [`resolve`] finds a suite `name`.
pub fn exists(dir: &Path, name: &str) -> bool {
    dir.join(format!("{name}.yaml")).is_file() || crate::builtin::suite(name).is_some()
}

/// Suite names in a folder and the built-in ones, sorted, each once.
pub fn known_suites(dir: &Path) -> Vec<String> {
    let mut out = on_disk(dir);
    out.extend(crate::builtin::SUITES.iter().map(|(n, _)| n.to_string()));
    out.sort();
    out.dedup();
    out
}

/// Suite names in a folder.
fn on_disk(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let p = e.path();
                    (p.extension().is_some_and(|x| x == "yaml"))
                        .then(|| p.file_stem().map(|s| s.to_string_lossy().to_string()))
                        .flatten()
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

fn validate(file: &Path, raw: RawSuite) -> Result<Suite, Vec<InputError>> {
    let mut errors = Vec::new();
    let stem = file
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_default();
    if raw.name.value != stem {
        errors.push(InputError::at(
            file,
            &raw.name,
            "name",
            format!(
                "suite name `{}` must match the file name `{stem}`",
                raw.name.value
            ),
        ));
    }
    if raw.steps.value.is_empty() {
        errors.push(InputError::at(
            file,
            &raw.steps,
            "steps",
            "at least one step is needed",
        ));
    }
    let mut seen: Vec<String> = Vec::new();
    let mut steps = Vec::new();
    let mut finally = Vec::new();
    let groups = [
        ("steps", &raw.steps.value, false),
        ("finally", &raw.finally, true),
    ];
    for (group, list, is_finally) in groups {
        for (i, s) in list.iter().enumerate() {
            let field = |f: &str| format!("{group}[{i}].{f}");
            let name = &s.name.value;
            let ok_name = !name.is_empty()
                && name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
            if !ok_name {
                errors.push(InputError::at(
                    file,
                    &s.name,
                    field("name"),
                    format!("`{name}` is not a step name (lowercase letters, digits, `-`)"),
                ));
            }
            if seen.contains(name) {
                errors.push(InputError::at(
                    file,
                    &s.name,
                    field("name"),
                    format!("step `{name}` is defined twice"),
                ));
            }
            let kind = CheckKind::parse(&s.check.value);
            match kind {
                None => {
                    let known: Vec<&str> = CheckKind::ALL.iter().map(|k| k.name()).collect();
                    errors.push(InputError::at(
                        file,
                        &s.check,
                        field("check"),
                        format!(
                            "unknown check `{}` (known: {})",
                            s.check.value,
                            known.join(", ")
                        ),
                    ));
                }
                Some(k) => {
                    for (key, value) in &s.params {
                        match k.param(key) {
                            None => {
                                let known: Vec<&str> = k.params().iter().map(|p| p.name).collect();
                                errors.push(InputError::at(
                                    file,
                                    value,
                                    format!("{group}[{i}].with.{key}"),
                                    format!(
                                        "check `{k}` takes no parameter `{key}`{}",
                                        if known.is_empty() {
                                            String::new()
                                        } else {
                                            format!(" (it takes: {})", known.join(", "))
                                        }
                                    ),
                                ));
                            }
                            Some(p) => {
                                let ty = p.ty;
                                let ok = match ty {
                                    ParamType::Int => value.value.as_i64().is_some_and(|n| n >= 0),
                                    ParamType::Bool => value.value.is_boolean(),
                                    ParamType::Str => {
                                        value.value.as_str().is_some_and(|s| !s.is_empty())
                                    }
                                };
                                if !ok {
                                    let want = match ty {
                                        ParamType::Int => "a non-negative integer",
                                        ParamType::Bool => "true or false",
                                        ParamType::Str => "a non-empty string",
                                    };
                                    errors.push(InputError::at(
                                        file,
                                        value,
                                        format!("{group}[{i}].with.{key}"),
                                        format!("must be {want}, got {}", value.value),
                                    ));
                                }
                            }
                        }
                    }
                }
            }
            for (j, need) in s.needs.iter().enumerate() {
                if !seen.contains(&need.value) {
                    let why = if list.iter().any(|o| o.name.value == need.value)
                        || raw.finally.iter().any(|o| o.name.value == need.value)
                    {
                        "comes later; a step can only need earlier steps"
                    } else {
                        "is not a step of this suite"
                    };
                    errors.push(InputError::at(
                        file,
                        need,
                        format!("{group}[{i}].needs[{j}]"),
                        format!("`{}` {why}", need.value),
                    ));
                }
            }
            let timeout = match &s.timeout {
                None => None,
                Some(t) => match humantime::parse_duration(&t.value) {
                    Ok(d) if !d.is_zero() => Some(d),
                    _ => {
                        errors.push(InputError::at(
                            file,
                            t,
                            field("timeout"),
                            format!("`{}` is not a duration such as 90s", t.value),
                        ));
                        None
                    }
                },
            };
            let retries = match &s.retries {
                None => 0,
                Some(r) if kind == Some(CheckKind::Uninstall) => {
                    errors.push(InputError::at(
                        file,
                        r,
                        field("retries"),
                        "uninstall is an action, not a check: it is never retried",
                    ));
                    0
                }
                Some(r) if kind == Some(CheckKind::Throughput) => {
                    errors.push(InputError::at(
                        file,
                        r,
                        field("retries"),
                        "throughput is a measurement: a retry would report the better of two runs",
                    ));
                    0
                }
                Some(r) if (0..=MAX_RETRIES).contains(&r.value) => r.value as u32,
                Some(r) => {
                    errors.push(InputError::at(
                        file,
                        r,
                        field("retries"),
                        format!("`{}`: give 0 to {MAX_RETRIES}", r.value),
                    ));
                    0
                }
            };
            seen.push(name.clone());
            // An unknown kind is already an error; the step is not used then.
            let step = Step {
                name: name.clone(),
                check: kind.unwrap_or(CheckKind::Operator),
                needs: s.needs.iter().map(|n| n.value.clone()).collect(),
                params: s
                    .params
                    .iter()
                    .map(|(k, v)| (k.clone(), v.value.clone()))
                    .collect(),
                timeout,
                retries,
            };
            if is_finally {
                finally.push(step);
            } else {
                steps.push(step);
            }
        }
    }
    if errors.is_empty() {
        Ok(Suite {
            file: file.to_path_buf(),
            name: raw.name.value,
            description: raw.description,
            steps,
            finally,
        })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_yaml;

    fn check(text: &str) -> Result<Suite, Vec<InputError>> {
        let file = Path::new("suites/s.yaml");
        let raw: RawSuite = parse_yaml(file, text).map_err(|e| vec![e])?;
        validate(file, raw)
    }

    #[test]
    fn good_suite() {
        let s = check("name: s\nsteps:\n  - name: a\n    check: operator\n    with: {maxRestarts: 2}\n  - name: b\n    check: labels\n    needs: [a]\nfinally:\n  - name: c\n    check: uninstall\n").expect("valid");
        assert_eq!(s.steps.len(), 2);
        assert_eq!(s.steps[0].int("maxRestarts"), 2);
        assert_eq!(s.steps[1].int("memoryTolerancePercent"), 0, "the default");
        assert_eq!(s.finally[0].check, CheckKind::Uninstall);
    }

    #[test]
    fn retries_are_bounded_and_only_for_checks() {
        let s = check("name: s\nsteps:\n  - name: a\n    check: labels\n    retries: 2\n")
            .expect("valid");
        assert_eq!(s.steps[0].retries, 2);
        let errs = check("name: s\nsteps:\n  - name: a\n    check: labels\n    retries: 4\n  - name: b\n    check: throughput\n    retries: 1\nfinally:\n  - name: c\n    check: uninstall\n    retries: 1\n").expect_err("invalid");
        assert_errors(
            &errs,
            &[
                ("steps[0].retries", 5, "give 0 to 3"),
                ("steps[1].retries", 8, "measurement"),
                ("finally[0].retries", 12, "action"),
            ],
        );
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn every_error_is_reported() {
        let errs = check("name: t\nsteps:\n  - name: a\n    check: labelz\n    needs: [b]\n  - name: b\n    check: operator\n    with: {maxRestart: 1}\n  - name: b\n    check: workload\n    with: {image: 3}\n").expect_err("invalid");
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        let want = [
            ("name", 1, "must match the file name"),
            ("steps[0].check", 4, "unknown check `labelz`"),
            ("steps[0].needs[0]", 5, "comes later"),
            (
                "steps[1].with.maxRestart",
                8,
                "takes no parameter `maxRestart`",
            ),
            ("steps[2].name", 9, "defined twice"),
            ("steps[2].with.image", 11, "non-empty string"),
        ];
        assert_eq!(errs.len(), want.len(), "{text:#?}");
        assert_errors(&errs, &want);
    }

    /// Each `(field, line, words)` is an error of `errs` at that line saying those words.
    fn assert_errors(errs: &[InputError], want: &[(&str, u32, &str)]) {
        let text: Vec<String> = errs.iter().map(ToString::to_string).collect();
        for &(field, line, msg) in want {
            let e = errs
                .iter()
                .find(|e| e.field.as_deref() == Some(field))
                .unwrap_or_else(|| panic!("{field} missing: {text:#?}"));
            assert_eq!(e.line, Some(line), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }

    #[test]
    fn shipped_suites_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("suites");
        let mut n = 0;
        for name in known_suites(&dir) {
            if name == "schema" {
                continue;
            }
            Suite::load(&dir.join(format!("{name}.yaml")))
                .unwrap_or_else(|e| panic!("{name}: {e:?}"));
            n += 1;
        }
        assert!(n >= 2, "expected the shipped suites, found {n}");
    }

    /// `schemas/suite.schema.json` and `schemas/plan.schema.json` are what the types generate
    /// (regenerate with `GPUCONFORM_UPDATE_GOLDEN=1`).
    #[test]
    fn the_schema_files_are_generated_from_the_types() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        for (file, schema) in [
            ("schemas/suite.schema.json", schema()),
            ("schemas/plan.schema.json", crate::plan::schema()),
        ] {
            let text = crate::input::schema::pretty(&schema);
            if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
                std::fs::write(root.join(file), &text).expect("write schema");
            }
            let shipped = std::fs::read_to_string(root.join(file)).expect("schema file");
            assert_eq!(
                shipped, text,
                "{file} is stale: GPUCONFORM_UPDATE_GOLDEN=1 cargo test"
            );
        }
    }

    #[test]
    fn schema_names_every_check() {
        let schema = schema();
        assert_eq!(
            schema.pointer("/properties/steps/minItems"),
            Some(&serde_json::json!(1))
        );
        assert_eq!(
            schema.pointer("/$defs/Step/properties/retries/maximum"),
            Some(&serde_json::json!(3)),
            "{schema:#}"
        );
        let kinds = schema
            .pointer("/$defs/Step/properties/check/enum")
            .expect("check enum");
        for k in CheckKind::ALL {
            assert!(
                kinds
                    .as_array()
                    .is_some_and(|a| a.iter().any(|v| v == k.name())),
                "schema misses {k}"
            );
        }
        assert_eq!(
            kinds.as_array().map(Vec::len),
            Some(CheckKind::ALL.len()),
            "the schema names a kind gpuconform does not have"
        );
    }
}
