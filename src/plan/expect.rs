//! The plan's `expect:` entries: what the cluster's owner knows about GPU nodes the instance
//! catalog cannot describe — an on-prem DGX, a cloud type no map knows. An entry selects nodes
//! (labels and/or a name pattern) and names a catalog GPU model and the count per node. Entries
//! come before the catalog's instance types when a node's expectation is resolved.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::input::{InputError, Spanned};

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawExpect {
    select: Spanned<RawSelect>,
    gpu: Spanned<String>,
    count: Spanned<i64>,
    #[serde(default)]
    driver: Option<Spanned<super::driver::RawDriver>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSelect {
    #[serde(default)]
    match_labels: BTreeMap<String, String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    pool: Option<String>,
}

/// One validated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expect {
    /// Its place in the plan (`expect[2]`).
    pub index: usize,
    /// The file it is written in (the plan, an overlay, or a `--set` argument), for messages.
    pub file: std::path::PathBuf,
    /// Its line there.
    pub line: Option<u32>,
    /// Labels a node must carry, all of them.
    pub match_labels: BTreeMap<String, String>,
    /// A node-name pattern (`*` matches any run of characters).
    pub name: Option<String>,
    /// A node-pool name, as any of the pool labels carry it ([`POOL_LABELS`]).
    pub pool: Option<String>,
    /// Catalog GPU model key.
    pub gpu: String,
    /// GPUs per node.
    pub count: u32,
    /// The driver these nodes must run, if the entry says.
    pub driver: Option<super::driver::DriverRule>,
}

/// The labels that name a node's pool on the platforms users run: EKS managed node groups,
/// Karpenter, GKE, AKS, and gpuconform's own clusters.
pub const POOL_LABELS: &[&str] = &[
    "eks.amazonaws.com/nodegroup",
    "karpenter.sh/nodepool",
    "cloud.google.com/gke-nodepool",
    "kubernetes.azure.com/agentpool",
    "agentpool",
    crate::gpu_stack::ours::POOL_LABEL,
];

impl Expect {
    /// Whether the entry selects a node with this name and these labels.
    pub fn selects(&self, name: &str, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.name.as_deref().is_none_or(|p| glob(p, name))
            && self.pool.as_deref().is_none_or(|p| {
                POOL_LABELS
                    .iter()
                    .any(|k| labels.get(*k).map(String::as_str) == Some(p))
            })
    }

    /// `expect[2] (plans/p.yaml:31)`.
    pub fn describe(&self) -> String {
        match self.line {
            Some(l) => format!("expect[{}] ({}:{l})", self.index, self.file.display()),
            None => format!("expect[{}] ({})", self.index, self.file.display()),
        }
    }
}

/// `*` matches any run of characters; everything else itself.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

/// Validates the entries against the catalog's GPU models.
pub(super) fn validate(
    file: &Path,
    raw: &[RawExpect],
    catalog: &crate::catalog::Catalog,
) -> Result<Vec<Expect>, InputError> {
    let mut out = Vec::new();
    for (i, e) in raw.iter().enumerate() {
        let sel = &e.select.value;
        if sel.match_labels.is_empty()
            && sel.name.as_deref().is_none_or(str::is_empty)
            && sel.pool.as_deref().is_none_or(str::is_empty)
        {
            return Err(InputError::at(
                file,
                &e.select,
                format!("expect[{i}].select"),
                "select nodes by `matchLabels`, `name` (a pattern such as `dgx-*`), `pool`, or several of them",
            ));
        }
        if !catalog.gpu_models.contains_key(&e.gpu.value) {
            let known: Vec<&str> = catalog.gpu_models.keys().map(String::as_str).collect();
            return Err(InputError::at(
                file,
                &e.gpu,
                format!("expect[{i}].gpu"),
                format!(
                    "unknown GPU model `{}` (known: {})",
                    e.gpu.value,
                    known.join(", ")
                ),
            ));
        }
        let count = match u32::try_from(e.count.value) {
            Ok(c) if (1..=64).contains(&c) => c,
            _ => {
                return Err(InputError::at(
                    file,
                    &e.count,
                    format!("expect[{i}].count"),
                    format!("count is {}, must be between 1 and 64", e.count.value),
                ));
            }
        };
        let line = e.select.referenced.line();
        let line = (line > 0).then_some(line as u32);
        let driver = match &e.driver {
            Some(d) => {
                let at = d.referenced.line();
                Some(super::driver::validate(
                    file,
                    &format!("expect[{i}].driver"),
                    &d.value,
                    (at > 0).then_some(at as u32).or(line),
                )?)
            }
            None => None,
        };
        out.push(Expect {
            index: i,
            file: file.to_path_buf(),
            line,
            match_labels: sel.match_labels.clone(),
            name: sel.name.clone().filter(|n| !n.is_empty()),
            pool: sel.pool.clone().filter(|n| !n.is_empty()),
            driver,
            gpu: e.gpu.value.clone(),
            count,
        });
    }
    shadowed(&out)?;
    Ok(out)
}

/// Whether every node `b` selects is also selected by `a`: `a` asks for no more than `b`.
fn covers(a: &Expect, b: &Expect) -> bool {
    let labels = a
        .match_labels
        .iter()
        .all(|(k, v)| b.match_labels.get(k) == Some(v));
    let name = match (&a.name, &b.name) {
        (None, _) => true,
        (Some(p), Some(q)) => p == q || p == "*" || (!q.contains('*') && glob(p, q)),
        (Some(p), None) => p == "*",
    };
    let pool = a.pool.is_none() || a.pool == b.pool;
    labels && name && pool
}

/// Entries that select the same nodes for certain: a later entry every one of whose nodes an
/// earlier one also selects (or the other way round) can never give a node one expectation.
/// Overlaps that depend on the nodes (a label selector and a name pattern) fail at run time.
fn shadowed(entries: &[Expect]) -> Result<(), InputError> {
    for (j, b) in entries.iter().enumerate() {
        for a in &entries[..j] {
            if covers(a, b) || covers(b, a) {
                return Err(InputError {
                    file: b.file.clone(),
                    line: b.line,
                    column: None,
                    field: Some(format!("expect[{}].select", b.index)),
                    message: format!(
                        "selects the same nodes as {}: give each node one expectation",
                        a.describe()
                    ),
                });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_checked_with_line_and_field() {
        let catalog = crate::catalog::Catalog::embedded().expect("catalog");
        let file = Path::new("p.yaml");
        let parse = |text: &str| {
            let raw: Vec<RawExpect> = crate::input::parse_yaml(file, text).expect("yaml");
            validate(file, &raw, &catalog)
        };
        let ok = parse("- select: {name: \"dgx-*\"}\n  gpu: V100-SXM2-16GB\n  count: 8\n")
            .expect("valid");
        assert_eq!(ok[0].count, 8);
        assert_eq!(ok[0].describe(), "expect[0] (p.yaml:1)");
        let rows = [
            (
                "- select: {name: a}\n  gpu: A100-80\n  count: 8\n",
                2,
                "expect[0].gpu",
                "unknown GPU model `A100-80` (known: ",
            ),
            (
                "- select: {}\n  gpu: V100-SXM2-16GB\n  count: 8\n",
                1,
                "expect[0].select",
                "select nodes by",
            ),
            (
                "- select: {name: a}\n  gpu: V100-SXM2-16GB\n  count: 0\n",
                3,
                "expect[0].count",
                "between 1 and 64",
            ),
        ];
        for (text, line, field, msg) in rows {
            let e = parse(text).expect_err(field);
            assert_eq!(e.line, Some(line), "{e}");
            assert_eq!(e.field.as_deref(), Some(field), "{e}");
            assert!(e.message.contains(msg), "{e}");
        }
    }

    #[test]
    fn entries_that_surely_overlap_are_errors_at_their_line() {
        let catalog = crate::catalog::Catalog::embedded().expect("catalog");
        let file = Path::new("p.yaml");
        let parse = |text: &str| {
            let raw: Vec<RawExpect> = crate::input::parse_yaml(file, text).expect("yaml");
            validate(file, &raw, &catalog)
        };
        let entry = |sel: &str| format!("- select: {sel}\n  gpu: T4\n  count: 1\n");
        let rows = [
            // (first selector, second selector, overlap for certain)
            ("{name: \"dgx-*\"}", "{name: \"dgx-*\"}", true),
            ("{name: \"dgx-*\"}", "{name: dgx-7}", true),
            ("{matchLabels: {a: b}}", "{matchLabels: {a: b, c: d}}", true),
            (
                "{matchLabels: {a: b}, name: \"n-*\"}",
                "{matchLabels: {a: b}}",
                true,
            ),
            ("{pool: p1}", "{pool: p1, name: x}", true),
            ("{name: \"dgx-*\"}", "{name: \"hgx-*\"}", false),
            ("{matchLabels: {a: b}}", "{matchLabels: {a: c}}", false),
            // May overlap, depending on the nodes: left to the run.
            ("{matchLabels: {a: b}}", "{name: \"dgx-*\"}", false),
            ("{pool: p1}", "{pool: p2}", false),
        ];
        for (a, b, overlap) in rows {
            let r = parse(&format!("{}{}", entry(a), entry(b)));
            match (r, overlap) {
                (Ok(_), false) => {}
                (Err(e), true) => {
                    assert_eq!(e.line, Some(4), "{e}");
                    assert_eq!(e.field.as_deref(), Some("expect[1].select"), "{e}");
                    assert!(
                        e.message
                            .contains("selects the same nodes as expect[0] (p.yaml:1)"),
                        "{e}"
                    );
                }
                (r, _) => panic!("{a} / {b}: {r:?}"),
            }
        }
    }

    #[test]
    fn globs() {
        let rows = [
            ("dgx-*", "dgx-01", true),
            ("dgx-*", "xdgx-01", false),
            ("*-gpu-*", "pool-gpu-3", true),
            ("node", "node", true),
            ("node", "node-1", false),
            ("*", "anything", true),
            ("a*c", "abbc", true),
            ("a*c", "abbd", false),
        ];
        for (p, t, want) in rows {
            assert_eq!(glob(p, t), want, "{p} {t}");
        }
    }
}
