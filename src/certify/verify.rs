//! `gpuconform verify BUNDLE`: what a reviewer checks of a certification bundle. Every file's
//! hash against `SHA256SUMS` (and no file unlisted), the signature over it when a public key is
//! given, and the bundle's self-consistency: the JUnit's testcases and outcomes are the ones
//! `results.json` records, no testcase was skipped, simulated results are declared as such in
//! `PRODUCT.yaml`, and the driver `PRODUCT.yaml` names is the one the run recorded; then the
//! cross-checks of [`super::consistency`] (versions, inventory, the AI-conformance checklist,
//! credentials). Each problem names its file (and field).

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

use super::sign;
use super::sums::{self, SIG, SUMS};

/// What a verification found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Each problem, naming its file (and field).
    pub problems: Vec<String>,
    /// Things a reviewer should know that are not problems (a signature not checked).
    pub notes: Vec<String>,
}

/// `(testcases, failed, errors, skipped)` per testsuite of a `junit.xml`, phases left out.
pub fn junit_counts(xml: &str) -> BTreeMap<String, (usize, usize, usize, usize)> {
    let mut out = BTreeMap::new();
    for chunk in xml.split("<testsuite ").skip(1) {
        let name = chunk
            .split_once("name=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(n, _)| {
                n.replace("&amp;", "&")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
            })
            .unwrap_or_default();
        if name == "phases" {
            continue;
        }
        let body = chunk.split("</testsuite>").next().unwrap_or(chunk);
        let n = |tag: &str| body.matches(tag).count();
        out.insert(
            name,
            (n("<testcase "), n("<failure"), n("<error"), n("<skipped")),
        );
    }
    out
}

/// The same counts from `results.json`'s cases.
pub fn results_counts(results: &Value) -> BTreeMap<String, (usize, usize, usize, usize)> {
    let mut out: BTreeMap<String, (usize, usize, usize, usize)> = BTreeMap::new();
    for c in results["cases"].as_array().into_iter().flatten() {
        let e = out
            .entry(c["suite"].as_str().unwrap_or_default().to_string())
            .or_default();
        e.0 += 1;
        match c["status"].as_str() {
            Some("failed") => e.1 += 1,
            Some("error") => e.2 += 1,
            Some("skipped") => e.3 += 1,
            _ => {}
        }
    }
    out
}

fn read_json(dir: &Path, file: &str, problems: &mut Vec<String>) -> Option<Value> {
    let text = std::fs::read_to_string(dir.join(file))
        .map_err(|e| problems.push(format!("{file}: cannot be read: {e}")))
        .ok()?;
    serde_json::from_str(&text)
        .map_err(|e| problems.push(format!("{file}: not JSON: {e}")))
        .ok()
}

/// Verifies the bundle folder `dir`; with `key`, its signature too.
pub fn verify(dir: &Path, key: Option<&Path>) -> Verdict {
    let mut v = Verdict {
        problems: sums::check(dir),
        ..Verdict::default()
    };
    let signature = std::fs::read(dir.join(SIG)).ok();
    match (key, signature) {
        (Some(k), Some(sig)) => {
            let message = std::fs::read(dir.join(SUMS)).unwrap_or_default();
            match sign::verify(k, &message, &sig) {
                Ok(true) => {}
                Ok(false) => v.problems.push(format!(
                    "{SIG}: the signature over {SUMS} does not verify with {}",
                    k.display()
                )),
                Err(e) => v.problems.push(format!("--key {e}")),
            }
        }
        (Some(_), None) => v.problems.push(format!(
            "{SIG}: missing, and a key was given to check it with"
        )),
        (None, Some(_)) => v.notes.push(format!(
            "{SIG}: present, not checked (give --key with the signer's public key)"
        )),
        (None, None) => v.notes.push("the bundle is not signed".into()),
    }
    let results = read_json(dir, "results.json", &mut v.problems);
    let junit = std::fs::read_to_string(dir.join("junit.xml"))
        .map_err(|e| v.problems.push(format!("junit.xml: cannot be read: {e}")))
        .ok();
    if let (Some(r), Some(j)) = (&results, &junit) {
        let (from_junit, from_results) = (junit_counts(j), results_counts(r));
        for suite in from_junit.keys().chain(from_results.keys()) {
            let (a, b) = (from_junit.get(suite), from_results.get(suite));
            if a != b {
                let show = |c: Option<&(usize, usize, usize, usize)>| {
                    c.map_or("absent".to_string(), |(n, f, e, s)| {
                        format!("{n} testcases, {f} failed, {e} errors, {s} skipped")
                    })
                };
                let p = format!(
                    "junit.xml testsuite {suite}: {} but results.json cases: {}",
                    show(a),
                    show(b)
                );
                if !v.problems.contains(&p) {
                    v.problems.push(p);
                }
            }
        }
    }
    let product = std::fs::read_to_string(dir.join("PRODUCT.yaml"))
        .map_err(|e| {
            v.problems
                .push(format!("PRODUCT.yaml: cannot be read: {e}"))
        })
        .ok()
        .and_then(|t| {
            serde_saphyr::from_str::<Value>(&t)
                .map_err(|e| v.problems.push(format!("PRODUCT.yaml: not YAML: {e}")))
                .ok()
        });
    if let Some(r) = &results {
        for (i, c) in r["cases"].as_array().into_iter().flatten().enumerate() {
            if c["status"] == "skipped" {
                v.problems.push(format!(
                    "results.json cases[{i}]: {}/{} was skipped ({}); a certification runs every testcase",
                    c["suite"].as_str().unwrap_or_default(),
                    c["name"].as_str().unwrap_or_default(),
                    c["message"].as_str().unwrap_or("no reason given")
                ));
            }
        }
        let simulated = r["benchmarks"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|b| b["simulated"] == true)
            || r["cluster"]
                .as_str()
                .is_some_and(|c| c.starts_with("local/"));
        if let Some(p) = &product {
            if simulated && p["simulated"] != true {
                v.problems.push(
                    "PRODUCT.yaml simulated: the results come from the GPU simulator (a local cluster), but PRODUCT.yaml does not say `simulated: true`".into(),
                );
            }
            let recorded = r["driverVersion"].as_str().unwrap_or_default();
            let declared = p["driverVersion"].as_str().unwrap_or_default();
            if declared != recorded {
                v.problems.push(format!(
                    "PRODUCT.yaml driverVersion: \"{declared}\", but results.json driverVersion is \"{recorded}\""
                ));
            }
        }
    }
    if let (Some(r), Some(j), Some(p)) = (&results, &junit, &product) {
        for p in super::consistency::check(dir, r, j, p) {
            if !v.problems.contains(&p) {
                v.problems.push(p);
            }
        }
    }
    v
}
