//! `verify`'s cross-checks between a bundle's files beyond the counts: the versions
//! `PRODUCT.yaml` declares against `results.json`, the JUnit's properties and every inventory
//! node; every inventory node has testcases; operand images carry digests on real GPUs; a
//! simulated bundle is titled so; the AI-conformance checklist keeps the upstream template and
//! each of its evidence anchors names a passed testcase of `junit.xml`; no credential anywhere.

use std::collections::BTreeMap;
use std::path::Path;

use quick_junit::{Report, TestCaseStatus};
use serde_json::Value;

use super::{ai, bundle, scan};
use crate::report::inventory::Inventory;

fn s(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
}

/// The problems across `results.json`, `junit.xml`, `PRODUCT.yaml` and `inventory.json`.
pub fn check(dir: &Path, results: &Value, junit: &str, product: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let report = match Report::deserialize_from_str(junit) {
        Ok(r) => Some(r),
        Err(e) => {
            out.push(format!("junit.xml: not JUnit XML: {e}"));
            None
        }
    };
    // The run's properties, as the JUnit's first testsuite carries them.
    let props: BTreeMap<String, String> = report
        .iter()
        .flat_map(|r| r.test_suites.first())
        .flat_map(|t| &t.properties)
        .map(|p| (p.name.to_string(), p.value.to_string()))
        .collect();
    for (field, prop, results_field) in [
        ("driverVersion", "driver-version", "driverVersion"),
        (
            "kubernetesVersion",
            "kubernetes-version",
            "kubernetesVersion",
        ),
        (
            "operatorChartVersion",
            "operator-chart-version",
            "operatorChartVersion",
        ),
    ] {
        let declared = s(&product[field]);
        if let Some(p) = props.get(prop)
            && p != declared
        {
            out.push(format!(
                "PRODUCT.yaml {field}: \"{declared}\", but junit.xml property {prop} is \"{p}\""
            ));
        }
        // The driver against results.json is verify's own first check.
        let recorded = s(&results[results_field]);
        if field != "driverVersion" && recorded != declared {
            out.push(format!(
                "PRODUCT.yaml {field}: \"{declared}\", but results.json {results_field} is \"{recorded}\""
            ));
        }
    }
    let simulated = product["simulated"] == true;
    if simulated && !s(&product["title"]).starts_with(bundle::NOT_A_CERTIFICATION) {
        out.push(format!(
            "PRODUCT.yaml title: a simulated bundle's title starts with \"{}\"",
            bundle::NOT_A_CERTIFICATION
        ));
    }
    match std::fs::read_to_string(dir.join("inventory.json")) {
        Err(e) => out.push(format!("inventory.json: cannot be read: {e}")),
        Ok(text) => match serde_json::from_str::<Inventory>(&text) {
            Err(e) => out.push(format!("inventory.json: not an inventory: {e}")),
            Ok(inv) => out.extend(inventory(&inv, results, product, simulated)),
        },
    }
    if let Some(r) = &report {
        out.extend(checklists(dir, r));
    }
    out.extend(scan::tree(dir));
    out
}

fn inventory(inv: &Inventory, results: &Value, product: &Value, simulated: bool) -> Vec<String> {
    let mut out = Vec::new();
    let declared = s(&product["driverVersion"]);
    let cases: Vec<&Value> = results["cases"].as_array().into_iter().flatten().collect();
    if inv.nodes.is_empty() {
        out.push("inventory.json nodes: no GPU node".into());
    }
    for (i, n) in inv.nodes.iter().enumerate() {
        let shown = n.driver.as_deref().unwrap_or("none");
        if shown != declared {
            out.push(format!(
                "inventory.json nodes[{i}] ({}) driver: \"{shown}\", but PRODUCT.yaml driverVersion is \"{declared}\"",
                n.name
            ));
        }
        if !cases.iter().any(|c| s(&c["node"]) == n.name) {
            out.push(format!(
                "inventory.json nodes[{i}] ({}): no testcase in results.json for this node",
                n.name
            ));
        }
        if n.simulated && !simulated {
            out.push(format!(
                "inventory.json nodes[{i}] ({}): a simulated node, but PRODUCT.yaml does not say `simulated: true`",
                n.name
            ));
        }
    }
    // A real kubelet reports the digest it runs; the simulator's does not.
    if !simulated {
        for (i, p) in inv.operands.iter().enumerate() {
            for c in p
                .containers
                .iter()
                .filter(|c| !c.image_id.contains("sha256:"))
            {
                out.push(format!(
                    "inventory.json operands[{i}] ({}) container {}: no image digest for {}",
                    p.name, c.name, c.image
                ));
            }
        }
    }
    out
}

/// Every `KubernetesAIConformance-*.yaml`: the template's requirements unchanged, statuses
/// from the checklist's list, evidence anchors on passed testcases.
fn checklists(dir: &Path, junit: &Report) -> Vec<String> {
    let mut out = Vec::new();
    let passed: Vec<String> = junit
        .test_suites
        .iter()
        .flat_map(|t| {
            t.test_cases
                .iter()
                .filter(|c| matches!(c.status, TestCaseStatus::Success { .. }))
                .map(move |c| format!("{}/{}", &*t.name, &*c.name))
        })
        .collect();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !(name.starts_with("KubernetesAIConformance-") && name.ends_with(".yaml")) {
            continue;
        }
        let doc = std::fs::read_to_string(e.path())
            .map_err(|e| e.to_string())
            .and_then(|t| serde_saphyr::from_str::<Value>(&t).map_err(|e| e.to_string()));
        let doc = match doc {
            Ok(d) => d,
            Err(e) => {
                out.push(format!("{name}: not YAML: {e}"));
                continue;
            }
        };
        let version = s(&doc["metadata"]["kubernetesVersion"]);
        match ai::template(version) {
            Err(e) => out.push(format!("{name} metadata.kubernetesVersion: {e}")),
            Ok((_, t)) => {
                let want = serde_saphyr::from_str::<Value>(t).map(|t| ai::requirements(&t));
                if want.ok().as_ref() != Some(&ai::requirements(&doc)) {
                    out.push(format!(
                        "{name} spec: the requirements' ids, descriptions or levels differ from the upstream checklist for {version}"
                    ));
                }
            }
        }
        for (section, reqs) in doc["spec"].as_object().into_iter().flatten() {
            for (i, r) in reqs.as_array().into_iter().flatten().enumerate() {
                let at = format!("{name} spec.{section}[{i}] ({})", s(&r["id"]));
                let status = s(&r["status"]);
                if ![
                    "Implemented",
                    "Not Implemented",
                    "Partially Implemented",
                    "N/A",
                ]
                .contains(&status)
                {
                    out.push(format!(
                        "{at} status: \"{status}\" is not a checklist status"
                    ));
                }
                for ev in r["evidence"].as_array().into_iter().flatten() {
                    let Some(anchor) = s(ev).strip_prefix("file://junit.xml#") else {
                        continue;
                    };
                    if !passed.iter().any(|p| p == anchor) {
                        out.push(format!(
                            "{at} evidence: {} names no passed testcase of junit.xml",
                            s(ev)
                        ));
                    }
                }
            }
        }
    }
    out
}
