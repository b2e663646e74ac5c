//! Driver expectations: which NVIDIA driver the GPU nodes must run, stated by the plan — per
//! `expect` entry (`expect[].driver`) or plan-wide (`expectDriver`) — as an exact version, a
//! branch, or any. The chart's `driver.version` is what the operator is asked to install, never
//! the expectation: with a host driver (`driver.enabled=false`, or a node the operator labels
//! `gpu.deploy.driver=pre-installed`) the node runs something else, and only the owner knows what.

use serde::Deserialize;

use crate::gpu_stack::driver::DriverVersion;
use crate::input::{InputError, Spanned};

/// `{version: …}`, `{branch: …}` or `{any: true}` as written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawDriver {
    #[serde(default)]
    version: Option<Spanned<String>>,
    #[serde(default)]
    branch: Option<Spanned<String>>,
    #[serde(default)]
    any: Option<Spanned<bool>>,
}

/// What driver a node must run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DriverExpect {
    /// Exactly this version, as the labels write it (`535.129.03`).
    Exact(String),
    /// Any release of this branch (`535`).
    Branch(u32),
    /// Any driver (the nodes of one expectation must still agree).
    Any,
}

/// An expectation and where it is written (kept as data, so an overlay's entry can be placed
/// in the overlay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverRule {
    /// The expectation.
    pub expect: DriverExpect,
    /// `expectDriver`, `expect[0].driver`; empty when the plan states none.
    pub field: String,
    /// The file it is written in.
    pub file: std::path::PathBuf,
    /// Its line there.
    pub line: Option<u32>,
}

impl DriverExpect {
    /// Whether a node showing driver `version` meets the expectation.
    pub fn accepts(&self, version: &str) -> bool {
        match self {
            Self::Exact(v) => v == version,
            Self::Branch(b) => DriverVersion::parse(version).is_some_and(|v| v.major == *b),
            Self::Any => true,
        }
    }

    /// `"535.129.03"`, `branch 535`, `any`.
    pub fn describe(&self) -> String {
        match self {
            Self::Exact(v) => format!("\"{v}\""),
            Self::Branch(b) => format!("branch {b} (\"{b}.*\")"),
            Self::Any => "any".into(),
        }
    }
}

impl DriverRule {
    /// No expectation anywhere: any driver.
    pub fn none() -> Self {
        Self {
            expect: DriverExpect::Any,
            field: String::new(),
            file: std::path::PathBuf::new(),
            line: None,
        }
    }

    /// `expectDriver (plans/p.yaml:3)`, or `no driver expectation in the plan`.
    pub fn origin(&self) -> String {
        match (self.field.as_str(), self.line) {
            ("", _) => "no driver expectation in the plan".into(),
            (f, Some(l)) => format!("{f} ({}:{l})", self.file.display()),
            (f, None) => format!("{f} ({})", self.file.display()),
        }
    }
}

/// Validates a driver expectation written at `field` (`expectDriver`, `expect[2].driver`);
/// `line` is where it is written, `file` the file it is in.
pub(super) fn validate(
    file: &std::path::Path,
    field: &str,
    raw: &RawDriver,
    line: Option<u32>,
) -> Result<DriverRule, InputError> {
    let given = [
        raw.version.is_some(),
        raw.branch.is_some(),
        raw.any.is_some(),
    ]
    .iter()
    .filter(|g| **g)
    .count();
    if given != 1 {
        return Err(InputError {
            file: file.to_path_buf(),
            line,
            column: None,
            field: Some(field.to_string()),
            message:
                "give exactly one of `version: \"535.129.03\"`, `branch: \"535\"` or `any: true`"
                    .into(),
        });
    }
    let expect = if let Some(v) = &raw.version {
        if DriverVersion::parse(&v.value).is_none() {
            return Err(InputError::at(
                file,
                v,
                format!("{field}.version"),
                format!(
                    "`{}` is not a driver version such as 535.129.03 (for a whole branch give `branch`)",
                    v.value
                ),
            ));
        }
        DriverExpect::Exact(v.value.clone())
    } else if let Some(b) = &raw.branch {
        match b.value.parse::<u32>() {
            Ok(n) if (100..10_000).contains(&n) => DriverExpect::Branch(n),
            _ => {
                return Err(InputError::at(
                    file,
                    b,
                    format!("{field}.branch"),
                    format!("`{}` is not a driver branch such as 535", b.value),
                ));
            }
        }
    } else {
        match &raw.any {
            Some(a) if a.value => DriverExpect::Any,
            Some(a) => {
                return Err(InputError::at(
                    file,
                    a,
                    format!("{field}.any"),
                    "`any: false` says nothing; give `version` or `branch`",
                ));
            }
            None => DriverExpect::Any,
        }
    };
    Ok(DriverRule {
        expect,
        field: field.to_string(),
        file: file.to_path_buf(),
        line,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<DriverRule, InputError> {
        let file = std::path::Path::new("p.yaml");
        let raw: RawDriver = crate::input::parse_yaml(file, text).expect("yaml");
        validate(file, "expectDriver", &raw, Some(3))
    }

    #[test]
    fn the_three_forms_and_what_they_accept() {
        let rows = [
            ("version: \"535.129.03\"", "535.129.03", true),
            ("version: \"535.129.03\"", "535.129.3", false),
            ("version: \"535.129.03\"", "550.54.15", false),
            ("branch: \"535\"", "535.230.02", true),
            ("branch: \"535\"", "550.54.15", false),
            ("branch: \"535\"", "garbage", false),
            ("any: true", "anything", true),
        ];
        for (text, shown, want) in rows {
            let r = parse(text).expect(text);
            assert_eq!(r.expect.accepts(shown), want, "{text} vs {shown}");
            assert_eq!(r.origin(), "expectDriver (p.yaml:3)");
        }
    }

    #[test]
    fn bad_forms_name_the_field() {
        let rows = [
            (
                "version: \"535\"",
                "expectDriver.version",
                "for a whole branch give `branch`",
            ),
            (
                "branch: \"r535\"",
                "expectDriver.branch",
                "not a driver branch",
            ),
            ("any: false", "expectDriver.any", "says nothing"),
            ("{}", "expectDriver", "exactly one of"),
            (
                "{version: \"535.1.2\", branch: \"535\"}",
                "expectDriver",
                "exactly one of",
            ),
        ];
        for (text, field, msg) in rows {
            let e = parse(text).expect_err(text);
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }
}
