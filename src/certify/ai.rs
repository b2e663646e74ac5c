//! The CNCF Kubernetes AI Conformance checklist, filled in from what the run tested.
//!
//! The upstream templates (`fixtures/ai-conformance/`, with their source) are embedded; the
//! checklist of the cluster's Kubernetes minor version is filled in line by line, so every
//! `id`, `description` and `level` (and every comment) stays exactly as upstream has it. Only
//! `metadata` values and each requirement's `status`, `evidence` and `notes` are written.
//!
//! It never claims more than the run showed: a requirement is `Implemented` only when testcases
//! that evidence it ran and all passed, and its evidence lists exactly those testcases as
//! `file://junit.xml#<testsuite>/<testcase>`; what gpuconform does not test is `Not Implemented`
//! with a note saying so.

use crate::report::inventory::Inventory;
use crate::report::{Case, Status};

/// The embedded templates: `(Kubernetes minor version, text)`.
pub const TEMPLATES: &[(&str, &str)] = &[
    (
        "1.33",
        include_str!("../../fixtures/ai-conformance/AIConformance-1.33.yaml"),
    ),
    (
        "1.34",
        include_str!("../../fixtures/ai-conformance/AIConformance-1.34.yaml"),
    ),
    (
        "1.35",
        include_str!("../../fixtures/ai-conformance/AIConformance-1.35.yaml"),
    ),
    (
        "1.36",
        include_str!("../../fixtures/ai-conformance/AIConformance-1.36.yaml"),
    ),
];

/// The checklist's file name in a bundle for version `v` (`1.35`).
pub fn file_name(v: &str) -> String {
    format!("KubernetesAIConformance-{v}.yaml")
}

/// `1.35` for `v1.35.4`.
pub fn minor(kubernetes_version: &str) -> Option<String> {
    let v = kubernetes_version.trim_start_matches('v');
    let mut parts = v.split('.');
    let (a, b) = (parts.next()?, parts.next()?);
    let b: String = b.chars().take_while(char::is_ascii_digit).collect();
    (a.parse::<u32>().is_ok() && !b.is_empty()).then(|| format!("{a}.{b}"))
}

/// The template for a cluster's version, or why there is none.
pub fn template(kubernetes_version: &str) -> Result<(&'static str, &'static str), String> {
    let m = minor(kubernetes_version)
        .ok_or_else(|| format!("`{kubernetes_version}` is not a Kubernetes version"))?;
    TEMPLATES
        .iter()
        .find(|(v, _)| *v == m)
        .copied()
        .ok_or_else(|| {
            let known: Vec<&str> = TEMPLATES.iter().map(|(v, _)| *v).collect();
            format!(
                "no AI-conformance checklist for Kubernetes {m} in this gpuconform (it has {})",
                known.join(", ")
            )
        })
}

/// What goes into `metadata` (the plan's `certification:` section).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// `metadata.<key>` → value; keys the template has and this lacks are left empty.
    pub fields: Vec<(String, String)>,
}

/// What the run says about one requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// `Implemented`, `Partially Implemented` or `Not Implemented`.
    pub status: &'static str,
    /// `file://junit.xml#<suite>/<case>` of each passed testcase that evidences it.
    pub evidence: Vec<String>,
    /// Why, in a sentence.
    pub notes: String,
}

/// The anchor of a testcase in the bundle's JUnit.
pub fn anchor(c: &Case) -> String {
    format!("file://junit.xml#{}/{}", c.suite, c.name)
}

/// Nodes whose GPUs are shared (MIG devices, or replicas under time-slicing or MPS), by the
/// product name GFD publishes for them.
fn shared_nodes(inv: Option<&Inventory>) -> Vec<String> {
    inv.into_iter()
        .flat_map(|i| &i.nodes)
        .filter(|n| {
            n.gpu_product
                .as_deref()
                .is_some_and(|p| p.contains("-MIG-") || p.ends_with("-SHARED"))
                || n.mig_strategy.as_deref() == Some("mixed")
        })
        .map(|n| n.name.clone())
        .collect()
}

fn judge(evidence: Vec<&Case>, what: &str) -> Finding {
    let passed: Vec<&Case> = evidence
        .iter()
        .copied()
        .filter(|c| c.status == Status::Passed)
        .collect();
    let not: Vec<String> = evidence
        .iter()
        .filter(|c| c.status != Status::Passed)
        .map(|c| format!("{}/{}", c.suite, c.name))
        .collect();
    let status = match (passed.is_empty(), not.is_empty()) {
        (_, true) if !passed.is_empty() => "Implemented",
        (false, false) => "Partially Implemented",
        _ => "Not Implemented",
    };
    let notes = if evidence.is_empty() {
        format!("Not tested in this run: {what} had no testcases.")
    } else if not.is_empty() {
        format!(
            "gpuconform tested {what}: {} testcases passed.",
            passed.len()
        )
    } else {
        format!(
            "gpuconform tested {what}: {} passed, not passed: {}.",
            passed.len(),
            not.join(", ")
        )
    };
    Finding {
        status,
        evidence: passed.into_iter().map(anchor).collect(),
        notes,
    }
}

/// What the run shows for requirement `id`.
pub fn finding(id: &str, cases: &[Case], inv: Option<&Inventory>) -> Finding {
    let of = |checks: &[&str]| -> Vec<&Case> {
        cases
            .iter()
            .filter(|c| checks.contains(&c.check.as_str()))
            .collect()
    };
    match id {
        // The operator's testcases of the driver, the toolkit and the validator that checks
        // both (not its metrics or MIG operands), every node's driver labels, a CUDA workload.
        "driver_runtime_management" => judge(
            of(&["operator", "labels", "workload"])
                .into_iter()
                .filter(|c| {
                    c.check != "operator"
                        || ["driver", "toolkit", "validator", "clusterpolicy"]
                            .iter()
                            .any(|w| c.name.contains(w))
                })
                .collect(),
            "the driver and container runtime (the operator's driver and toolkit DaemonSets, the driver version each GPU node's labels show against the expected one, a CUDA workload through the runtime on every GPU node)",
        ),
        "gpu_sharing" => {
            let shared = shared_nodes(inv);
            let evidence: Vec<&Case> = of(&["labels", "allocatable"])
                .into_iter()
                .filter(|c| c.node.as_ref().is_some_and(|n| shared.contains(n)))
                .collect();
            if shared.is_empty() {
                return Finding {
                    status: "Not Implemented",
                    evidence: Vec::new(),
                    notes: "Not tested in this run: no GPU node shares its GPUs (no MIG devices, no time-slicing or MPS replicas).".into(),
                };
            }
            judge(
                evidence,
                "GPU sharing (MIG devices or replicas published and allocatable as schedulable resources on the sharing nodes)",
            )
        }
        "dra_support" => judge(
            of(&["dra"]),
            "Dynamic Resource Allocation (resource.k8s.io/v1 served, the DRA driver's DeviceClasses, every GPU node's pool complete with its expected devices and attributes, claims allocated by the scheduler and released, allocation mode decided per node)",
        ),
        "secure_accelerator_access" => judge(
            of(&["secure-access"]),
            "secure accelerator access (on every GPU node a pod that asks for a GPU sees exactly one, a pod that asks for none sees none, and only the container that asks sees it; the probe's exact ACCELERATOR_COUNT line)",
        ),
        _ => Finding {
            status: "Not Implemented",
            evidence: Vec::new(),
            notes:
                "Outside what gpuconform tests (the GPU stack); evidence must come from elsewhere."
                    .into(),
        },
    }
}

/// A YAML double-quoted scalar.
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// The template filled in: `metadata` from `meta` (with `kubernetesVersion` as the template
/// has it), and every requirement's `status`, `evidence` and `notes` from the run.
pub fn fill(template: &str, meta: &Metadata, cases: &[Case], inv: Option<&Inventory>) -> String {
    let mut out = String::new();
    let mut in_metadata = false;
    let mut id: Option<String> = None;
    for line in template.lines() {
        let indent = line.len() - line.trim_start().len();
        let pad = &line[..indent];
        let body = line.trim_start();
        if indent == 0 && !body.is_empty() && !body.starts_with('#') {
            in_metadata = body == "metadata:";
        }
        if in_metadata
            && indent > 0
            && let Some((key, _)) = body.split_once(':')
            && key != "kubernetesVersion"
        {
            let value = meta
                .fields
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
                .unwrap_or_default();
            out.push_str(&format!("{pad}{key}: {}\n", quoted(value)));
            continue;
        }
        if let Some(rest) = body.strip_prefix("- id:") {
            id = Some(rest.trim().to_string());
        }
        let field = body.split_once(':').map(|(k, _)| k);
        match (field, &id) {
            (Some("status"), Some(i)) => {
                let f = finding(i, cases, inv);
                out.push_str(&format!("{pad}status: {}\n", quoted(f.status)));
            }
            (Some("evidence"), Some(i)) => {
                let f = finding(i, cases, inv);
                if f.evidence.is_empty() {
                    out.push_str(&format!("{pad}evidence: []\n"));
                } else {
                    out.push_str(&format!("{pad}evidence:\n"));
                    for e in &f.evidence {
                        out.push_str(&format!("{pad}  - {}\n", quoted(e)));
                    }
                }
            }
            (Some("notes"), Some(i)) => {
                let f = finding(i, cases, inv);
                out.push_str(&format!("{pad}notes: {}\n", quoted(&f.notes)));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// `(section, id, description, level)` of every requirement, in order.
pub fn requirements(doc: &serde_json::Value) -> Vec<(String, String, String, String)> {
    let mut out = Vec::new();
    let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
    if let Some(spec) = doc["spec"].as_object() {
        for (section, reqs) in spec {
            for r in reqs.as_array().into_iter().flatten() {
                out.push((
                    section.clone(),
                    s(&r["id"]),
                    s(&r["description"]),
                    s(&r["level"]),
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
