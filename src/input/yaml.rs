//! Location-aware YAML loading on top of serde-saphyr.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A value and where it was in its file: serde-saphyr's `Spanned`, wrapped so that the plan
/// and suite types can describe themselves as JSON Schema (the orphan rule forbids implementing
/// schemars' trait on serde-saphyr's type). A `Spanned<T>`'s schema is `T`'s: the location is
/// the parser's, not the file's.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Spanned<T> {
    /// The value.
    pub value: T,
    /// Where it is used (an alias's use, for an aliased value).
    pub referenced: serde_saphyr::Location,
    /// Where it is written.
    pub defined: serde_saphyr::Location,
}

impl<'de, T: serde::Deserialize<'de>> serde::Deserialize<'de> for Spanned<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<T>::deserialize(d)?;
        Ok(Self {
            value: s.value,
            referenced: s.referenced,
            defined: s.defined,
        })
    }
}

impl<T: schemars::JsonSchema> schemars::JsonSchema for Spanned<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }

    fn schema_name() -> std::borrow::Cow<'static, str> {
        T::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        T::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        T::json_schema(generator)
    }
}

/// A problem with an input file: where it is and what is wrong.
///
/// Rendered as `file:line:column: field: message`, the form editors and CI annotations link to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputError {
    /// The file, as the user named it.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<u32>,
    /// 1-based column, when known.
    pub column: Option<u32>,
    /// Dotted path of the field (`pools[1].count`), when known.
    pub field: Option<String>,
    /// What is wrong, as a lowercase fragment.
    pub message: String,
}

impl InputError {
    /// An error about a whole file (unreadable, empty).
    pub fn file(file: &Path, message: impl Into<String>) -> Self {
        Self {
            file: file.to_path_buf(),
            line: None,
            column: None,
            field: None,
            message: message.into(),
        }
    }

    /// An error about one value, located by its span.
    pub fn at<T>(
        file: &Path,
        value: &Spanned<T>,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let loc = value.referenced;
        let known = loc.line() > 0;
        Self {
            file: file.to_path_buf(),
            line: known.then(|| loc.line() as u32),
            column: known.then(|| loc.column() as u32),
            field: Some(field.into()),
            message: message.into(),
        }
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
            if let Some(column) = self.column {
                write!(f, ":{column}")?;
            }
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// Reads and parses a YAML file into `T`.
pub fn load_yaml<T: DeserializeOwned>(file: &Path) -> Result<T, InputError> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| InputError::file(file, format!("cannot read file: {e}")))?;
    parse_yaml(file, &text)
}

/// Parses YAML text that came from `file` (the name is only used in errors).
pub fn parse_yaml<T: DeserializeOwned>(file: &Path, text: &str) -> Result<T, InputError> {
    if text.trim().is_empty() {
        return Err(InputError::file(file, "file is empty"));
    }
    let mut path = None;
    let result = serde_saphyr::with_deserializer_from_str(text, |de| {
        serde_path_to_error::deserialize(de).map_err(|e| {
            path = Some(e.path().to_string());
            e.into_inner()
        })
    });
    result.map_err(|e| {
        let location = e.location();
        // The parser's own rendering carries a snippet and a location prefix; we print our own
        // location, so keep only the first line of the bare message.
        let rendered = e.without_snippet().to_string();
        let mut message = strip_location_prefix(rendered.lines().next().unwrap_or("invalid yaml"));
        let mut field = path
            .map(|p| clean_path(&p))
            .filter(|p| !p.is_empty() && p != ".");
        // A key given twice: name the key, not the parser's option that would allow it.
        if let Some(key) = duplicate_key(&message) {
            field = field.map(|f| match f.strip_suffix(".?") {
                Some(parent) => format!("{parent}.{key}"),
                None => f,
            });
            message = format!("`{key}` is given twice");
        }
        InputError {
            file: file.to_path_buf(),
            line: location.map(|l| l.line() as u32).filter(|l| *l > 0),
            column: location.map(|l| l.column() as u32).filter(|c| *c > 0),
            field,
            message,
        }
    })
}

/// The key of serde-saphyr's "duplicate mapping key: K, set DuplicateKeyPolicy …" message.
fn duplicate_key(message: &str) -> Option<String> {
    let rest = message.strip_prefix("duplicate mapping key: ")?;
    let key = rest.split(", set DuplicateKeyPolicy").next()?.trim();
    (!key.is_empty()).then(|| key.to_string())
}

/// Drops the inner fields of [`Spanned`] wrappers (`count.value` → `count`) from a serde path.
/// Input types therefore never name a field `value`.
fn clean_path(path: &str) -> String {
    path.replace(".value", "")
}

/// serde-saphyr prefixes messages with `error: line N column M: `; drop it (we print our own).
fn strip_location_prefix(message: &str) -> String {
    let mut rest = message.trim();
    rest = rest.strip_prefix("error:").unwrap_or(rest).trim_start();
    if let Some(after) = rest.strip_prefix("line ")
        && let Some(idx) = after.find(": ")
        && after[..idx]
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c.is_alphabetic())
    {
        rest = &after[idx + 2..];
    }
    // Some messages end with their own location; the error prints one already.
    match rest.rfind(" at line ") {
        Some(idx) if rest[idx..].contains("column") => rest[..idx].to_string(),
        _ => rest.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Doc {
        #[allow(dead_code)]
        name: String,
        #[allow(dead_code)]
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        #[allow(dead_code)]
        count: u32,
    }

    fn err(text: &str) -> InputError {
        match parse_yaml::<Doc>(Path::new("f.yaml"), text) {
            Err(e) => e,
            Ok(d) => panic!("expected an error, got {d:?}"),
        }
    }

    #[test]
    fn type_error_names_line_and_field() {
        let e = err("name: a\nitems:\n  - count: 1\n  - count: lots\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert_eq!(e.field.as_deref(), Some("items[1].count"), "{e}");
        assert!(e.to_string().starts_with("f.yaml:4:"), "{e}");
    }

    #[test]
    fn unknown_key_is_an_error() {
        let e = err("name: a\nitems: []\nextra: 1\n");
        assert_eq!(e.line, Some(3), "{e}");
        assert!(e.message.contains("extra"), "{e}");
    }

    #[test]
    fn duplicate_key_names_the_key() {
        let e = err("name: a\nitems:\n  - count: 1\n    count: 2\n");
        assert_eq!(e.message, "`count` is given twice", "{e}");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(!e.to_string().contains("DuplicateKeyPolicy"), "{e}");
    }

    #[test]
    fn syntax_error_has_a_line() {
        let e = err("name: a\nitems: [\n");
        assert!(e.line.is_some(), "{e}");
    }

    #[test]
    fn empty_file_is_an_error() {
        let e = err("  \n");
        assert_eq!(e.message, "file is empty");
    }
}
