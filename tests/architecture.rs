//! Tier 0: the import rules of `docs/architecture.md`, read from the source. A room may only
//! import the rooms below it; in particular the verifiers (checks, runner, report, target,
//! operator) never borrow from the GPU simulator they must catch out, and the simulator knows
//! nothing of the cluster it runs in.

use std::path::{Path, PathBuf};

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).expect("read src").flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `crate::<room>` a file names, outside comments.
fn imports(file: &Path) -> Vec<(usize, String)> {
    let text = std::fs::read_to_string(file).expect("read");
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.split("//").next().unwrap_or_default();
        let mut rest = code;
        while let Some(at) = rest.find("crate::") {
            let tail = &rest[at + "crate::".len()..];
            let room: String = tail
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            out.push((i + 1, room));
            rest = tail;
        }
    }
    out
}

/// The room a file is in: `checks` for `src/checks/labels.rs`, `gpu_stack` for `src/gpu_stack.rs`.
fn room_of(file: &Path) -> String {
    let rel = file.strip_prefix(src()).expect("under src");
    let first = rel.components().next().expect("a component");
    first
        .as_os_str()
        .to_string_lossy()
        .trim_end_matches(".rs")
        .to_string()
}

/// `(room, rooms it must not import, why)`.
const RULES: &[(&str, &[&str], &str)] = &[
    (
        "checks",
        &["sim", "runner", "commands"],
        "checks verify the stack; they share only names (gpu_stack) with the simulator",
    ),
    (
        "runner",
        &["sim", "commands"],
        "the runner drives checks and targets, never the simulator",
    ),
    (
        "report",
        &["sim", "runner", "checks", "target", "operator", "commands"],
        "report owns the events and the record; it renders, it does not reach up",
    ),
    (
        "target",
        &["sim", "checks", "runner", "commands"],
        "targets provide clusters; they do not judge them, and host the simulator only as a Companion",
    ),
    (
        "preflight",
        &["sim", "checks", "runner", "commands"],
        "preflight asks the cluster; it judges nothing and runs nothing",
    ),
    (
        "operator",
        &["sim", "checks", "runner", "target", "commands"],
        "the operator room installs and removes; it knows no target",
    ),
    (
        "sim",
        &[
            "target", "checks", "runner", "report", "operator", "commands", "upgrade",
        ],
        "the simulator imitates the real stack; it knows neither the local cluster nor the checks",
    ),
    (
        "gpu_stack",
        &[
            "sim", "checks", "runner", "report", "target", "operator", "commands", "catalog",
            "plan",
        ],
        "the neutral vocabulary imports none of the rooms that use it",
    ),
    (
        "bench",
        &[
            "sim", "checks", "runner", "report", "target", "operator", "commands",
        ],
        "the bench binary's contract stands alone",
    ),
    (
        "plan",
        &["target", "runner", "checks", "sim", "commands"],
        "resolved input sits below everything that acts on it",
    ),
    (
        "suite",
        &["target", "runner", "checks", "sim", "commands"],
        "resolved input sits below everything that acts on it",
    ),
    (
        "certify",
        &["sim", "checks", "runner", "target", "operator", "commands"],
        "a bundle is checked from its files alone, never from the cluster or the simulator",
    ),
    (
        "retrieve",
        &["sim", "checks", "runner", "target", "operator", "commands"],
        "retrieve copies a run folder out; it judges nothing and provisions nothing",
    ),
    (
        "upgrade",
        &["sim", "commands"],
        "the upgrade workflow watches the real controller's states, never the simulator's",
    ),
];

#[test]
fn rooms_import_only_what_they_may() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    assert!(
        files.len() > 40,
        "expected the source tree, found {} files",
        files.len()
    );
    let mut broken = Vec::new();
    for f in &files {
        let room = room_of(f);
        let Some((_, banned, why)) = RULES.iter().find(|(r, _, _)| *r == room) else {
            continue;
        };
        for (line, imported) in imports(f) {
            if banned.contains(&imported.as_str()) {
                broken.push(format!(
                    "{}:{line}: `{room}` imports `crate::{imported}` ({why})",
                    f.strip_prefix(env!("CARGO_MANIFEST_DIR"))
                        .unwrap_or(f)
                        .display()
                ));
            }
        }
    }
    assert!(
        broken.is_empty(),
        "import rules broken:\n{}",
        broken.join("\n")
    );
}

/// A file that reaches for `super::super::…` out of its room hides an import from the rule
/// above; rooms talk through `crate::` paths.
#[test]
fn the_rule_sees_every_import() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    for f in &files {
        let text = std::fs::read_to_string(f).expect("read");
        let depth = f
            .strip_prefix(src())
            .expect("under src")
            .components()
            .count();
        // `super::super` from src/room/sub/file.rs stays inside the room.
        let escape = "super::".repeat(depth);
        assert!(
            depth < 2 || !text.contains(&escape),
            "{}: leaves its room through `{escape}`",
            f.display()
        );
    }
}

/// Files stay small enough to read in one sitting. `bench/cuda.rs` is the one exception: all
/// of the in-pod `unsafe` sits behind one `#![expect(unsafe_code)]` there, and splitting it
/// would spread that exception over several files.
#[test]
fn no_file_over_600_lines() {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let exceptions = ["bench/cuda.rs"];
    let mut long = Vec::new();
    for f in &files {
        let rel = f
            .strip_prefix(src())
            .expect("under src")
            .display()
            .to_string();
        let lines = std::fs::read_to_string(f).expect("read").lines().count();
        if lines > 600 && !exceptions.contains(&rel.as_str()) {
            long.push(format!("src/{rel}: {lines} lines"));
        }
    }
    assert!(
        long.is_empty(),
        "split these along their concerns:\n{}",
        long.join("\n")
    );
}
