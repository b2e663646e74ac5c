//! What ships beside the binary: the image Dockerfiles (hadolint, every file they copy exists,
//! the helm/kubectl pins agree with scripts/install-tools, non-root), and the shell completions
//! and man page the binary generates.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn dockerfiles() -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(root().join("images"))
        .expect("images/")
        .flatten()
        .map(|e| e.path().join("Dockerfile"))
        .filter(|p| p.is_file())
        .collect();
    out.sort();
    out
}

/// `ARG NAME=value` and `NAME=value` pins of a file.
fn pin(text: &str, name: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim().trim_start_matches("ARG ").trim();
        l.strip_prefix(&format!("{name}=")).map(str::to_string)
    })
}

#[test]
fn dockerfiles_lint_and_copy_only_what_exists() {
    let files = dockerfiles();
    assert_eq!(files.len(), 2, "{files:?}");
    let hadolint = tools_dir().join("venv/bin/hadolint");
    assert!(
        hadolint.is_file(),
        "no hadolint in the test venv: run scripts/install-tools"
    );
    for f in &files {
        let out = Command::new(&hadolint)
            .arg(f)
            .output()
            .expect("run hadolint");
        assert!(
            out.status.success(),
            "hadolint {}:\n{}",
            f.display(),
            text(&out)
        );
        let body = std::fs::read_to_string(f).expect("Dockerfile");
        let mut last_user = None;
        for line in body.lines() {
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.first().copied() {
                Some("COPY") if !words.iter().any(|w| w.starts_with("--from=")) => {
                    // Every source (all but the last word) is in the build context: the repo.
                    for src in &words[1..words.len() - 1] {
                        if *src == "." {
                            continue;
                        }
                        assert!(
                            root().join(src).exists(),
                            "{}: COPY {src}: no such file in the repository",
                            f.display()
                        );
                    }
                }
                Some("FROM") => {
                    assert!(
                        words
                            .get(1)
                            .is_some_and(|i| i.contains(':') && !i.ends_with(":latest")),
                        "{}: `{line}`: pin the base image",
                        f.display()
                    );
                    last_user = None;
                }
                Some("USER") => last_user = words.get(1).map(|u| u.to_string()),
                _ => {}
            }
        }
        let user =
            last_user.unwrap_or_else(|| panic!("{}: the final stage sets no USER", f.display()));
        let uid: u32 = user
            .split(':')
            .next()
            .and_then(|u| u.parse().ok())
            .unwrap_or_else(|| panic!("{}: USER {user} is not numeric", f.display()));
        assert_ne!(uid, 0, "{}: runs as root", f.display());
    }
}

#[test]
fn the_image_ships_the_tools_the_tests_pin() {
    let install =
        std::fs::read_to_string(root().join("scripts/install-tools")).expect("install-tools");
    let image =
        std::fs::read_to_string(root().join("images/gpuconform/Dockerfile")).expect("Dockerfile");
    for name in ["LAYER_PACKAGE", "HELM_SHA256", "KUBECTL_SHA256"] {
        let want = pin(&install, name).unwrap_or_else(|| panic!("{name} not in install-tools"));
        assert_eq!(pin(&image, name).as_deref(), Some(want.as_str()), "{name}");
    }
    let dockerignore =
        std::fs::read_to_string(root().join(".dockerignore")).expect(".dockerignore");
    for ignored in ["target", "reports", ".git"] {
        assert!(
            dockerignore.lines().any(|l| l.trim() == ignored),
            "{ignored} not ignored"
        );
    }
}

fn generated(args: &[&str]) -> String {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run gpuconform");
    assert!(out.status.success(), "{args:?}: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// bash parses the completion script, and it completes the subcommands and `run`'s flags.
#[test]
fn completions_parse_and_name_the_commands() {
    let script = generated(&["completions", "bash"]);
    let tmp = tempfile::tempdir().expect("tempdir");
    let path = tmp.path().join("gpuconform.bash");
    std::fs::write(&path, &script).expect("write");
    let out = Command::new("bash")
        .arg("-n")
        .arg(&path)
        .output()
        .expect("bash -n");
    assert!(out.status.success(), "bash -n: {}", text(&out));
    for word in ["init", "run", "--events", "--metrics", "compare"] {
        assert!(script.contains(word), "{word} not completed");
    }
    for shell in ["zsh", "fish"] {
        assert!(
            generated(&["completions", shell]).contains("gpuconform"),
            "{shell}"
        );
    }
}

/// One roff page per command; the top page names every subcommand.
#[test]
fn man_pages_cover_every_command() {
    let top = generated(&["man"]);
    assert!(
        top.starts_with(".ie") || top.contains(".TH gpuconform"),
        "{}",
        &top[..top.len().min(200)]
    );
    let tmp = tempfile::tempdir().expect("tempdir");
    generated(&["man", "--out", &tmp.path().to_string_lossy()]);
    for page in [
        "gpuconform.1",
        "gpuconform-run.1",
        "gpuconform-init.1",
        "gpuconform-local-status.1",
    ] {
        let text = std::fs::read_to_string(tmp.path().join(page))
            .unwrap_or_else(|e| panic!("{page}: {e}"));
        assert!(text.contains(".TH"), "{page}");
    }
}

/// The JUnit golden (what `report::junit` renders for a record with a failure, a rerun, a
/// flaky pass, a skip and an attachment) is valid against the strict schema Jenkins' xUnit
/// plugin validates with.
#[test]
fn the_junit_golden_is_valid_against_the_strict_schema() {
    let python = tools_dir().join("venv/bin/python");
    let script = r#"
import sys
from lxml import etree
schema = etree.XMLSchema(etree.parse(sys.argv[1]))
if not schema.validate(etree.parse(sys.argv[2])):
    sys.exit("\n".join(str(e) for e in schema.error_log))
"#;
    let out = Command::new(python)
        .arg("-c")
        .arg(script)
        .arg(root().join("tests/data/junit/junit-10.xsd"))
        .arg(root().join("tests/golden/junit.xml"))
        .output()
        .expect("run python");
    assert!(out.status.success(), "{}", text(&out));
    let golden = std::fs::read_to_string(root().join("tests/golden/junit.xml")).expect("golden");
    for element in [
        "<rerunFailure",
        "<flakyError",
        "[[ATTACHMENT|",
        "timestamp=",
    ] {
        assert!(
            golden.contains(element),
            "{element} not exercised by the golden"
        );
    }
}

/// Every shipped plan and suite names its generated schema on its first line (editors read
/// it) and validates against it with Python's jsonschema; a plan with an unknown key or a
/// string where a list belongs does not, so the check can fail.
#[test]
fn shipped_plans_and_suites_validate_against_their_generated_schemas() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cases = Vec::new();
    for (dir, kind) in [("plans", "plan"), ("suites", "suite")] {
        let schema = tmp.path().join(format!("{kind}.schema.json"));
        std::fs::write(&schema, generated(&["schema", kind])).expect("write schema");
        let shipped = std::fs::read_to_string(root().join(format!("schemas/{kind}.schema.json")))
            .expect("shipped schema");
        assert_eq!(
            shipped.trim_end(),
            generated(&["schema", kind]).trim_end(),
            "`gpuconform schema {kind}` is schemas/{kind}.schema.json"
        );
        let mut files: Vec<PathBuf> = std::fs::read_dir(root().join(dir))
            .expect("dir")
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        files.sort();
        assert!(files.len() >= 4, "{files:?}");
        for f in files {
            let text = std::fs::read_to_string(&f).expect("read");
            assert_eq!(
                text.lines().next(),
                Some(
                    format!("# yaml-language-server: $schema=../schemas/{kind}.schema.json")
                        .as_str()
                ),
                "{}",
                f.display()
            );
            let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("yaml");
            cases.push((f.display().to_string(), schema.clone(), doc, true));
        }
    }
    let plan = tmp.path().join("plan.schema.json");
    let bad = [
        serde_json::json!({"name": "x", "target": {"local": {"fixture": "f.yaml"}}, "suites": ["a"], "suits": []}),
        serde_json::json!({"name": "x", "target": {"local": {"fixture": "f.yaml"}}, "suites": "gpu-stack"}),
    ];
    for (i, doc) in bad.into_iter().enumerate() {
        cases.push((format!("bad-{i}"), plan.clone(), doc, false));
    }
    let suite = tmp.path().join("suite.schema.json");
    cases.push((
        "bad-check".into(),
        suite,
        serde_json::json!({"name": "x", "steps": [{"name": "a", "check": "lables"}]}),
        false,
    ));
    let input = tmp.path().join("cases.json");
    let list: Vec<serde_json::Value> = cases
        .iter()
        .map(|(name, schema, doc, ok)| {
            serde_json::json!({"name": name, "schema": schema, "doc": doc, "valid": ok})
        })
        .collect();
    std::fs::write(&input, serde_json::to_string(&list).expect("json")).expect("write");
    let script = r#"
import json, sys
from jsonschema import Draft202012Validator
wrong = []
for case in json.load(open(sys.argv[1])):
    schema = json.load(open(case["schema"]))
    Draft202012Validator.check_schema(schema)
    errors = [e.message for e in Draft202012Validator(schema).iter_errors(case["doc"])]
    if bool(errors) == case["valid"]:
        wrong.append(f'{case["name"]}: expected {"valid" if case["valid"] else "invalid"}, got {errors}')
print("\n".join(wrong))
sys.exit(1 if wrong else 0)
"#;
    let out = Command::new(tools_dir().join("venv/bin/python"))
        .args(["-c", script])
        .arg(&input)
        .output()
        .expect("run python");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
