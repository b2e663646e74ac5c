//! Tier 1: the permissions follow the plan, and the shipped verify-only RBAC grants them.

use super::*;

fn kinds(names: &[&'static str]) -> BTreeSet<&'static str> {
    names.iter().copied().collect()
}

fn has(needs: &[Need], scope: Scope, resource: &str, verb: &str) -> bool {
    needs
        .iter()
        .any(|n| n.scope == scope && n.resource_name() == resource && n.verb == verb)
}

#[test]
fn needs_follow_the_plan() {
    let all = kinds(&[
        "operator",
        "labels",
        "allocatable",
        "workload",
        "throughput",
        "uninstall",
        "teardown",
    ]);
    let verify = needs(OperatorMode::Existing, &all, true);
    assert!(has(&verify, Tests, "batch/jobs", "create"));
    assert!(has(&verify, Tests, "pods/log", "get"));
    assert!(
        !has(&verify, Cluster, "namespaces", "create"),
        "an existing test namespace"
    );
    assert!(!has(&verify, Cluster, "namespaces", "delete"));
    assert!(!verify.iter().any(|n| n.why.starts_with("helm install")));
    let made = needs(OperatorMode::Existing, &all, false);
    assert!(has(&made, Cluster, "namespaces", "create"));
    let install = needs(OperatorMode::Install, &all, false);
    assert!(has(
        &install,
        Cluster,
        "rbac.authorization.k8s.io/clusterroles",
        "create"
    ));
    assert!(has(&install, Cluster, "namespaces", "watch"));
    let labels_only = needs(OperatorMode::Existing, &kinds(&["labels"]), true);
    assert!(!has(&labels_only, Tests, "batch/jobs", "create"));
    assert!(!has(
        &labels_only,
        Cluster,
        "resource.k8s.io/resourceslices",
        "list"
    ));
    // A claim per DRA node, or a claim template for the workload's Job.
    assert!(has(
        &verify,
        Tests,
        "resource.k8s.io/resourceclaims",
        "create"
    ));
    assert!(has(
        &verify,
        Tests,
        "resource.k8s.io/resourceclaimtemplates",
        "delete"
    ));
    assert!(has(
        &verify,
        Cluster,
        "resource.k8s.io/resourceclaims",
        "list"
    ));
    let workload = needs(OperatorMode::Existing, &kinds(&["workload"]), true);
    assert!(!has(
        &workload,
        Tests,
        "resource.k8s.io/resourceclaims",
        "create"
    ));
    // One row per permission, diagnostics optional only where nothing else needs it.
    let mut seen = BTreeSet::new();
    for n in &verify {
        assert!(
            seen.insert((n.scope, n.resource_name(), n.verb)),
            "{n:?} twice"
        );
    }
    let pods_list = verify
        .iter()
        .find(|n| n.scope == Operator && n.resource == "pods" && n.verb == "list")
        .expect("pods list in the operator namespace");
    assert!(!pods_list.optional, "the operator check needs it");
}

/// The shipped verify-only RBAC grants every permission a verify-only run with the default
/// suites needs, in the namespaces it names (a small RBAC evaluator over the YAML).
#[test]
fn the_shipped_verify_only_rbac_grants_what_verify_only_needs() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rbac/verify-only.yaml");
    let text = std::fs::read_to_string(path).expect("deploy/rbac/verify-only.yaml");
    let docs: Vec<serde_json::Value> = serde_saphyr::from_str_multiple(&text).expect("yaml");
    // (namespace or None for a ClusterRole, group, resource, verb)
    let mut granted = BTreeSet::new();
    for d in &docs {
        let ns = match d["kind"].as_str() {
            Some("ClusterRole") => None,
            Some("Role") => d["metadata"]["namespace"].as_str().map(str::to_string),
            _ => continue,
        };
        for rule in d["rules"].as_array().into_iter().flatten() {
            let list = |k: &str| -> Vec<String> {
                rule[k]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            // A rule limited to some names does not grant list/watch of everything.
            let named = !list("resourceNames").is_empty();
            for g in list("apiGroups") {
                for r in list("resources") {
                    for v in list("verbs") {
                        if !(named && v != "get") {
                            granted.insert((ns.clone(), g.clone(), r.clone(), v));
                        }
                    }
                }
            }
        }
    }
    let all = kinds(&[
        "operator",
        "labels",
        "allocatable",
        "workload",
        "throughput",
        "dra",
        "secure-access",
        "uninstall",
        "teardown",
    ]);
    for n in needs(OperatorMode::Existing, &all, true) {
        let ns = match n.scope {
            Cluster => None,
            Operator => Some("gpu-operator".to_string()),
            Tests => Some("gpuconform-tests".to_string()),
        };
        let res = if n.subresource.is_empty() {
            n.resource.to_string()
        } else {
            format!("{}/{}", n.resource, n.subresource)
        };
        let key = |ns: Option<String>| (ns, n.group.to_string(), res.clone(), n.verb.to_string());
        assert!(
            granted.contains(&key(None)) || (ns.is_some() && granted.contains(&key(ns.clone()))),
            "deploy/rbac/verify-only.yaml does not grant {} {} in {ns:?} ({})",
            n.verb,
            n.resource_name(),
            n.why
        );
    }
}
