//! Overrides over a plan: `-f overlay.yaml` files and `--set path=value` arguments, merged the
//! way helm merges values (maps merge key by key, anything else is replaced; later wins).
//!
//! The merge works on a YAML tree that remembers where every key and value came from, and
//! writes the merged document one entry per line with a table from each line to its origin.
//! The plan is then parsed and validated from that text as usual, and every error is moved back
//! to the file and line (or the `--set` argument) the offending value came from — so a bad
//! override is reported exactly like a bad plan.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use granit_parser::{Event, Parser, ScalarStyle};

use super::InputError;

/// One override, in the order it applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layer {
    /// A YAML file merged over the plan (`-f`).
    File(PathBuf),
    /// A `path=value` assignment (`--set`); the value is YAML (`[a, b]`, `"1.0"`).
    Set(String),
}

/// Where a key or value came from: a source (the plan, an overlay, a `--set` argument) and,
/// for files, its 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Origin {
    source: usize,
    line: u32,
    column: u32,
}

#[derive(Debug, Clone)]
struct Item {
    origin: Origin,
    node: Node,
}

#[derive(Debug, Clone)]
enum Node {
    /// A scalar as parsed, and whether it was plain (so `1` stays a number and `"1"` a string).
    Scalar {
        text: String,
        plain: bool,
    },
    Seq(Vec<Item>),
    Map(Vec<Entry>),
}

#[derive(Debug, Clone)]
struct Entry {
    key: String,
    key_origin: Origin,
    value: Item,
}

/// A merged document: its text, and for each line where it came from.
#[derive(Debug)]
pub struct Merged {
    /// The merged YAML.
    pub text: String,
    lines: Vec<Origin>,
    sources: Vec<Layer>,
}

impl Merged {
    /// Moves an error found in the merged text to the file and line, or the `--set` argument,
    /// that the value on that line came from.
    pub fn locate(&self, mut e: InputError) -> InputError {
        let Some(origin) = e
            .line
            .and_then(|l| self.lines.get((l as usize).saturating_sub(1)))
        else {
            return e;
        };
        match &self.sources[origin.source] {
            Layer::File(p) => {
                e.file = p.clone();
                e.line = Some(origin.line);
                e.column = Some(origin.column);
            }
            Layer::Set(arg) => {
                e.file = set_name(arg);
                e.line = None;
                e.column = None;
            }
        }
        e
    }
}

/// How a `--set` argument is named in errors, in place of a file.
fn set_name(arg: &str) -> PathBuf {
    PathBuf::from(format!("--set {arg}"))
}

/// Merges `layers` over the plan in `base`, in order.
pub fn merge(base: &Path, layers: &[Layer]) -> Result<Merged, InputError> {
    let mut sources = vec![Layer::File(base.to_path_buf())];
    let mut root = parse_file(base, 0)?;
    if !matches!(root.node, Node::Map(_)) {
        return Err(InputError::file(base, "a plan must be a mapping"));
    }
    for layer in layers {
        let source = sources.len();
        sources.push(layer.clone());
        match layer {
            Layer::File(path) => {
                let over = parse_file(path, source)?;
                if !matches!(over.node, Node::Map(_)) {
                    return Err(InputError::file(path, "an overlay must be a mapping"));
                }
                merge_into(&mut root, over);
            }
            Layer::Set(arg) => {
                set(&mut root, arg, source).map_err(|m| InputError::file(&set_name(arg), m))?
            }
        }
    }
    let mut out = Writer::default();
    if let Node::Map(entries) = &root.node {
        out.map(entries, 0);
    }
    Ok(Merged {
        text: out.text,
        lines: out.lines,
        sources,
    })
}

fn parse_file(path: &Path, source: usize) -> Result<Item, InputError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| InputError::file(path, format!("cannot read file: {e}")))?;
    if text.trim().is_empty() {
        return Err(InputError::file(path, "file is empty"));
    }
    parse(&text, source).map_err(|(line, column, message)| InputError {
        file: path.to_path_buf(),
        line: Some(line),
        column: Some(column),
        field: None,
        message,
    })
}

type ParseError = (u32, u32, String);

/// Builds the tree of one YAML document (aliases resolved).
fn parse(text: &str, source: usize) -> Result<Item, ParseError> {
    let mut anchors: HashMap<usize, Item> = HashMap::new();
    // Open collections: the item being built, its anchor and, for maps, a key waiting for its
    // value.
    type Open = (Item, usize, Option<(String, Origin)>);
    let mut stack: Vec<Open> = Vec::new();
    let mut done: Option<Item> = None;
    for event in Parser::new_from_str(text) {
        let (event, span) = event.map_err(|e| {
            let m = e.marker();
            (m.line() as u32, m.col() as u32 + 1, e.to_string())
        })?;
        let origin = Origin {
            source,
            line: span.start.line() as u32,
            column: span.start.col() as u32 + 1,
        };
        let (item, anchor) = match event {
            Event::Scalar(value, style, anchor, tag) => {
                let quoted_tag = tag.as_ref().is_some_and(|t| t.suffix() == "str");
                let plain = style == ScalarStyle::Plain && !quoted_tag;
                let node = Node::Scalar {
                    text: value.into_owned(),
                    plain,
                };
                (Item { origin, node }, anchor)
            }
            Event::Alias(id) => match anchors.get(&id) {
                Some(item) => (item.clone(), 0),
                None => return Err((origin.line, origin.column, "unknown alias".into())),
            },
            Event::SequenceStart(_, anchor, _) => {
                let node = Node::Seq(Vec::new());
                stack.push((Item { origin, node }, anchor, None));
                continue;
            }
            Event::MappingStart(_, anchor, _) => {
                let node = Node::Map(Vec::new());
                stack.push((Item { origin, node }, anchor, None));
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some((item, anchor, _)) => (item, anchor),
                None => return Err((origin.line, origin.column, "unbalanced document".into())),
            },
            Event::DocumentStart(..) if done.is_some() => {
                return Err((origin.line, origin.column, "one document only".into()));
            }
            _ => continue,
        };
        if anchor != 0 {
            anchors.insert(anchor, item.clone());
        }
        match stack.last_mut() {
            None => done = Some(item),
            Some((parent, _, pending)) => match &mut parent.node {
                Node::Seq(items) => items.push(item),
                Node::Map(entries) => match pending.take() {
                    None => match item.node {
                        Node::Scalar { text, .. } => *pending = Some((text, item.origin)),
                        _ => {
                            return Err((
                                item.origin.line,
                                item.origin.column,
                                "only scalar keys are supported".into(),
                            ));
                        }
                    },
                    Some((key, key_origin)) => {
                        // A key given twice: the later one wins, as in helm's values.
                        entries.retain(|e| e.key != key);
                        entries.push(Entry {
                            key,
                            key_origin,
                            value: item,
                        });
                    }
                },
                Node::Scalar { .. } => {}
            },
        }
    }
    done.ok_or((1, 1, "no document".into()))
}

fn merge_into(base: &mut Item, over: Item) {
    match (&mut base.node, over.node) {
        (Node::Map(entries), Node::Map(over_entries)) => {
            for o in over_entries {
                match entries.iter_mut().find(|e| e.key == o.key) {
                    Some(e) => merge_into(&mut e.value, o.value),
                    None => entries.push(o),
                }
            }
        }
        (_, node) => {
            *base = Item {
                origin: over.origin,
                node,
            }
        }
    }
}

/// A step of a `--set` path: a key, or an index into a list.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    Key(String),
    Index(usize),
}

/// Splits `a.b[1].c` into steps; `\.` is a dot inside a key (`nvidia\.com/gpu`).
fn steps(path: &str) -> Result<Vec<Step>, String> {
    let mut out = Vec::new();
    let mut key = String::new();
    let mut chars = path.chars().peekable();
    let finish = |key: &mut String, out: &mut Vec<Step>| {
        if !key.is_empty() {
            out.push(Step::Key(std::mem::take(key)));
        }
    };
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&'.') => {
                key.push('.');
                chars.next();
            }
            '.' => {
                if key.is_empty() && !matches!(out.last(), Some(Step::Index(_))) {
                    return Err(format!("empty key in `{path}`"));
                }
                finish(&mut key, &mut out);
            }
            '[' => {
                finish(&mut key, &mut out);
                let digits: String = chars.by_ref().take_while(|c| *c != ']').collect();
                let i = digits
                    .parse()
                    .map_err(|_| format!("`[{digits}]` in `{path}` is not a list index"))?;
                out.push(Step::Index(i));
            }
            c => key.push(c),
        }
    }
    if key.is_empty() && !matches!(out.last(), Some(Step::Index(_))) {
        return Err(format!("empty key in `{path}`"));
    }
    finish(&mut key, &mut out);
    Ok(out)
}

/// Applies one `path=value` to the tree.
fn set(root: &mut Item, arg: &str, source: usize) -> Result<(), String> {
    let Some((path, value)) = arg.split_once('=') else {
        return Err("expected `path=value`, e.g. `operator.version=v25.3.0`".into());
    };
    let steps = steps(path)?;
    let origin = Origin {
        source,
        line: 0,
        column: 0,
    };
    let value = if value.trim().is_empty() {
        Item {
            origin,
            node: Node::Scalar {
                text: String::new(),
                plain: false,
            },
        }
    } else {
        let mut v = parse(value, source).map_err(|(_, _, m)| format!("value: {m}"))?;
        restamp(&mut v, origin);
        v
    };
    let mut at = root;
    let mut walked = String::new();
    for (i, step) in steps.iter().enumerate() {
        let last = i + 1 == steps.len();
        // `key: ~` (or empty) takes whatever the path puts under it, as in helm.
        if is_null(&at.node) {
            at.node = match step {
                Step::Key(_) => Node::Map(Vec::new()),
                Step::Index(_) => Node::Seq(Vec::new()),
            };
        }
        match step {
            Step::Key(k) => {
                if !walked.is_empty() {
                    walked.push('.');
                }
                walked.push_str(k);
                let Node::Map(entries) = &mut at.node else {
                    return Err(format!(
                        "cannot set `{k}`: the value it belongs to is not a mapping"
                    ));
                };
                let idx = match entries.iter().position(|e| e.key == *k) {
                    Some(idx) => idx,
                    None => {
                        // The last step's value is set below, after the walk.
                        let node = if last {
                            Node::Map(Vec::new())
                        } else if matches!(steps[i + 1], Step::Index(_)) {
                            Node::Seq(Vec::new())
                        } else {
                            Node::Map(Vec::new())
                        };
                        entries.push(Entry {
                            key: k.clone(),
                            key_origin: origin,
                            value: Item { origin, node },
                        });
                        entries.len() - 1
                    }
                };
                at = &mut entries[idx].value;
            }
            Step::Index(n) => {
                walked.push_str(&format!("[{n}]"));
                let Node::Seq(items) = &mut at.node else {
                    return Err(format!("`{walked}`: the value indexed is not a list"));
                };
                if *n > items.len() {
                    return Err(format!(
                        "`{walked}`: the list has {} items (index {} appends)",
                        items.len(),
                        items.len()
                    ));
                }
                if *n == items.len() {
                    items.push(Item {
                        origin,
                        node: Node::Map(Vec::new()),
                    });
                }
                at = &mut items[*n];
            }
        }
    }
    *at = value;
    Ok(())
}

fn is_null(node: &Node) -> bool {
    matches!(node, Node::Scalar { text, plain: true } if matches!(text.as_str(), "" | "~" | "null" | "Null" | "NULL"))
}

/// Marks every part of a `--set` value as coming from the argument.
fn restamp(item: &mut Item, origin: Origin) {
    item.origin = origin;
    match &mut item.node {
        Node::Scalar { .. } => {}
        Node::Seq(items) => items.iter_mut().for_each(|i| restamp(i, origin)),
        Node::Map(entries) => entries.iter_mut().for_each(|e| {
            e.key_origin = origin;
            restamp(&mut e.value, origin);
        }),
    }
}

/// Writes block YAML, one key or item per line, and records each line's origin.
#[derive(Default)]
struct Writer {
    text: String,
    lines: Vec<Origin>,
}

impl Writer {
    fn line(&mut self, indent: usize, body: &str, origin: Origin) {
        self.text.push_str(&" ".repeat(indent));
        self.text.push_str(body);
        self.text.push('\n');
        self.lines.push(origin);
    }

    fn map(&mut self, entries: &[Entry], indent: usize) {
        for e in entries {
            let key = scalar(&e.key, true);
            match &e.value.node {
                Node::Scalar { text, plain } => {
                    let body = format!("{key}: {}", scalar(text, *plain));
                    self.line(indent, &body, e.value.origin);
                }
                Node::Map(m) if m.is_empty() => {
                    self.line(indent, &format!("{key}: {{}}"), e.value.origin)
                }
                Node::Seq(s) if s.is_empty() => {
                    self.line(indent, &format!("{key}: []"), e.value.origin)
                }
                Node::Map(m) => {
                    self.line(indent, &format!("{key}:"), e.key_origin);
                    self.map(m, indent + 2);
                }
                Node::Seq(s) => {
                    self.line(indent, &format!("{key}:"), e.key_origin);
                    self.seq(s, indent + 2);
                }
            }
        }
    }

    fn seq(&mut self, items: &[Item], indent: usize) {
        for item in items {
            match &item.node {
                Node::Scalar { text, plain } => {
                    self.line(indent, &format!("- {}", scalar(text, *plain)), item.origin)
                }
                Node::Map(m) if m.is_empty() => self.line(indent, "- {}", item.origin),
                Node::Seq(s) if s.is_empty() => self.line(indent, "- []", item.origin),
                Node::Map(m) => {
                    self.line(indent, "-", item.origin);
                    self.map(m, indent + 2);
                }
                Node::Seq(s) => {
                    self.line(indent, "-", item.origin);
                    self.seq(s, indent + 2);
                }
            }
        }
    }
}

/// A scalar as YAML: a plain one as it was (its type is inferred again), anything else as a
/// double-quoted string (JSON's escapes are YAML's).
fn scalar(text: &str, plain: bool) -> String {
    if plain && text.is_empty() {
        return "~".into();
    }
    if plain && !text.contains('\n') && !text.starts_with(' ') && !text.ends_with(' ') {
        return text.to_string();
    }
    serde_json::to_string(text).unwrap_or_else(|_| format!("{text:?}"))
}

#[cfg(test)]
#[path = "layers_tests.rs"]
mod tests;
