//! Every API permission a run needs, with the reason, derived from the plan: its operator mode,
//! the check kinds its suites use and whether the test namespace exists. `--dry-run` and the
//! start of every run against an existing cluster check them with SelfSubjectAccessReviews, so
//! a missing right is named up front instead of surfacing as a timeout. `deploy/rbac/` grants
//! exactly the verify-only part (a test reads it back).

use std::collections::BTreeSet;

use crate::plan::OperatorMode;
use crate::suite::CheckKind;

/// Where a permission applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    /// Cluster-wide (or a cluster-scoped resource).
    Cluster,
    /// The operator's namespace.
    Operator,
    /// The test namespace.
    Tests,
}

/// One permission: verb on group/resource[/subresource] in a scope, and who needs it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Need {
    /// Where.
    pub scope: Scope,
    /// API group (`""` is core).
    pub group: &'static str,
    /// Resource (plural).
    pub resource: &'static str,
    /// Subresource (`log`), or `""`.
    pub subresource: &'static str,
    /// Verb.
    pub verb: &'static str,
    /// Which check or phase needs it.
    pub why: &'static str,
    /// Only diagnostics need it: missing, the run goes on with less evidence.
    pub optional: bool,
}

impl Need {
    /// `batch/jobs`, `pods/log`, `nodes`.
    pub fn resource_name(&self) -> String {
        let mut s = String::new();
        if !self.group.is_empty() {
            s.push_str(self.group);
            s.push('/');
        }
        s.push_str(self.resource);
        if !self.subresource.is_empty() {
            s.push('/');
            s.push_str(self.subresource);
        }
        s
    }
}

const fn need(
    scope: Scope,
    group: &'static str,
    resource: &'static str,
    verbs: &'static [&'static str],
    why: &'static str,
) -> (
    Scope,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
) {
    (scope, group, resource, verbs, why)
}

type Row = (
    Scope,
    &'static str,
    &'static str,
    &'static [&'static str],
    &'static str,
);

use Scope::{Cluster, Operator, Tests};

/// What every run needs.
const RUN: &[Row] = &[
    need(Cluster, "", "nodes", &["list"], "GPU node discovery"),
    need(
        Cluster,
        "",
        "namespaces",
        &["get"],
        "test namespace, install record",
    ),
    need(
        Operator,
        "",
        "secrets",
        &["list"],
        "finding the helm release",
    ),
];

/// The test namespace when the run creates it (and deletes it at teardown).
const CREATE_TESTS: &[Row] = &[need(
    Cluster,
    "",
    "namespaces",
    &["create", "delete", "list", "watch"],
    "test namespace made and removed by the run",
)];

/// The test namespace when it exists: the run removes its own pods and Jobs in it.
const IN_TESTS: &[Row] = &[
    need(
        Tests,
        "",
        "pods",
        &["list", "delete"],
        "removing the run's pods",
    ),
    need(
        Tests,
        "batch",
        "jobs",
        &["list", "delete"],
        "removing the run's Jobs",
    ),
];

/// A failed testcase's diagnostics (optional: without them the report says less).
const DIAGNOSTICS: &[Row] = &[
    need(Cluster, "", "events", &["list"], "diagnostics"),
    need(Cluster, "", "nodes", &["get"], "diagnostics"),
    need(
        Cluster,
        "nvidia.com",
        "clusterpolicies",
        &["get"],
        "diagnostics",
    ),
    need(Operator, "", "pods", &["list"], "diagnostics"),
    need(Operator, "", "pods/log", &["get"], "diagnostics"),
    need(Cluster, "", "pods", &["list"], "free GPUs per node"),
];

/// helm installing, upgrading, rolling back or uninstalling the chart: a sample of what it
/// creates (the chart's RBAC means cluster-admin in practice, see deploy/rbac/install.yaml).
const INSTALL: &[Row] = &[
    need(
        Cluster,
        "",
        "namespaces",
        &["create", "delete"],
        "helm install, uninstall",
    ),
    need(
        Cluster,
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        &["create", "get", "list", "watch"],
        "helm install (CRDs), teardown check",
    ),
    need(
        Cluster,
        "rbac.authorization.k8s.io",
        "clusterroles",
        &["create", "delete"],
        "helm install (the chart's RBAC)",
    ),
    need(
        Cluster,
        "rbac.authorization.k8s.io",
        "clusterrolebindings",
        &["create", "delete"],
        "helm install (the chart's RBAC)",
    ),
    need(
        Cluster,
        "nvidia.com",
        "clusterpolicies",
        &["create", "patch", "delete"],
        "helm install (ClusterPolicy)",
    ),
    need(
        Operator,
        "",
        "secrets",
        &["create", "get", "update", "delete"],
        "helm release records",
    ),
    need(
        Operator,
        "",
        "serviceaccounts",
        &["create", "delete"],
        "helm install",
    ),
    need(
        Operator,
        "apps",
        "deployments",
        &["create", "patch", "delete"],
        "helm install (the operator)",
    ),
    need(
        Operator,
        "apps",
        "daemonsets",
        &["create", "patch", "delete"],
        "helm install (NFD)",
    ),
    need(
        Operator,
        "batch",
        "jobs",
        &["create", "list", "watch", "delete"],
        "helm hooks",
    ),
];

/// What each check kind needs (uninstall and teardown only when the run installed).
fn for_kind(kind: CheckKind, mode: OperatorMode) -> &'static [Row] {
    const OPERATOR: &[Row] = &[
        need(
            Cluster,
            "nvidia.com",
            "clusterpolicies",
            &["get", "list", "watch"],
            "operator check",
        ),
        need(Operator, "apps", "daemonsets", &["list"], "operator check"),
        need(Operator, "", "pods", &["list"], "operator check"),
    ];
    const LABELS: &[Row] = &[need(
        Cluster,
        "",
        "nodes",
        &["list", "watch"],
        "labels check",
    )];
    const ALLOCATABLE: &[Row] = &[
        need(
            Cluster,
            "",
            "nodes",
            &["list", "watch"],
            "allocatable check",
        ),
        need(
            Tests,
            "",
            "pods",
            &["create", "get", "list", "watch", "delete"],
            "allocatable check",
        ),
    ];
    const WORKLOAD: &[Row] = &[
        need(
            Tests,
            "batch",
            "jobs",
            &["create", "list", "watch", "delete"],
            "workload check",
        ),
        need(Tests, "", "pods", &["list"], "workload check"),
    ];
    const THROUGHPUT: &[Row] = &[
        need(Cluster, "", "nodes", &["get"], "throughput check"),
        need(
            Tests,
            "",
            "pods",
            &["create", "list", "watch", "delete"],
            "throughput check",
        ),
        need(Tests, "", "pods/log", &["get"], "throughput check"),
    ];
    const DRA: &[Row] = &[
        need(
            Cluster,
            "resource.k8s.io",
            "deviceclasses",
            &["list"],
            "dra check",
        ),
        need(
            Cluster,
            "resource.k8s.io",
            "resourceslices",
            &["list", "watch"],
            "dra check",
        ),
        need(Cluster, "", "nodes", &["list"], "dra check"),
        need(
            Tests,
            "resource.k8s.io",
            "resourceclaims",
            &["create", "get", "list", "watch", "delete"],
            "dra check",
        ),
        need(
            Tests,
            "",
            "pods",
            &["create", "get", "list", "watch", "delete"],
            "dra check",
        ),
    ];
    const SECURE_ACCESS: &[Row] = &[
        need(Cluster, "", "nodes", &["list"], "secure-access check"),
        need(
            Cluster,
            "resource.k8s.io",
            "deviceclasses",
            &["list"],
            "secure-access check (allocation mode)",
        ),
        need(
            Cluster,
            "resource.k8s.io",
            "resourceslices",
            &["list"],
            "secure-access check (allocation mode)",
        ),
        need(
            Tests,
            "resource.k8s.io",
            "resourceclaims",
            &["create", "delete"],
            "secure-access check",
        ),
        need(
            Tests,
            "",
            "pods",
            &["create", "get", "list", "watch", "delete"],
            "secure-access check",
        ),
        need(Tests, "", "pods/log", &["get"], "secure-access check"),
    ];
    const TEARDOWN: &[Row] = &[
        need(
            Cluster,
            "",
            "namespaces",
            &["list", "watch"],
            "uninstall/teardown check",
        ),
        need(Tests, "", "pods", &["list"], "teardown check"),
    ];
    match (kind, mode) {
        (CheckKind::Operator, _) => OPERATOR,
        (CheckKind::Labels, _) => LABELS,
        (CheckKind::Allocatable, _) => ALLOCATABLE,
        (CheckKind::Workload, _) => WORKLOAD,
        (CheckKind::Throughput, _) => THROUGHPUT,
        (CheckKind::Dra, _) => DRA,
        (CheckKind::SecureAccess, _) => SECURE_ACCESS,
        // Verify-only skips them before any API call.
        (CheckKind::Uninstall | CheckKind::Teardown, OperatorMode::Existing) => &[],
        (CheckKind::Uninstall | CheckKind::Teardown, OperatorMode::Install) => TEARDOWN,
    }
}

/// What allocatable, workload and throughput add to ask through claims on a DRA node: the
/// allocation mode (DeviceClasses, the driver's slices), the devices other claims hold (every
/// namespace's claims), and their own claims or claim templates in the test namespace. Asked
/// for whatever the cluster's mode: which one it is is only known once the checks read it.
fn claims_for(kind: CheckKind) -> &'static [Row] {
    const MODE: [Row; 3] = [
        need(
            Cluster,
            "resource.k8s.io",
            "deviceclasses",
            &["list"],
            "allocation mode (device plugin or DRA)",
        ),
        need(
            Cluster,
            "resource.k8s.io",
            "resourceslices",
            &["list", "watch"],
            "allocation mode (device plugin or DRA)",
        ),
        need(
            Cluster,
            "resource.k8s.io",
            "resourceclaims",
            &["list"],
            "devices other claims hold",
        ),
    ];
    const CLAIM: &[Row] = &[
        MODE[0],
        MODE[1],
        MODE[2],
        need(
            Tests,
            "resource.k8s.io",
            "resourceclaims",
            &["create", "delete"],
            "a claim per DRA node (allocatable, throughput)",
        ),
    ];
    const TEMPLATE: &[Row] = &[
        MODE[0],
        MODE[1],
        MODE[2],
        need(
            Tests,
            "resource.k8s.io",
            "resourceclaimtemplates",
            &["create", "delete"],
            "the workload Job's claim template on a DRA node",
        ),
    ];
    match kind {
        CheckKind::Allocatable | CheckKind::Throughput => CLAIM,
        CheckKind::Workload => TEMPLATE,
        _ => &[],
    }
}

/// The permissions a run with this mode, these check kinds and this test namespace needs, one
/// per verb, without repeats (the first reason wins), in a stable order.
pub fn needs(mode: OperatorMode, kinds: &BTreeSet<&'static str>, tests_exist: bool) -> Vec<Need> {
    let mut rows: Vec<(&[Row], bool)> = vec![(RUN, false)];
    rows.push((if tests_exist { IN_TESTS } else { CREATE_TESTS }, false));
    if mode == OperatorMode::Install {
        rows.push((INSTALL, false));
    }
    for k in CheckKind::ALL {
        if kinds.contains(k.name()) {
            rows.push((for_kind(k, mode), false));
            rows.push((claims_for(k), false));
        }
    }
    rows.push((DIAGNOSTICS, true));
    let mut out: Vec<Need> = Vec::new();
    for (table, optional) in rows {
        for (scope, group, resource, verbs, why) in table {
            let (resource, subresource) = resource.split_once('/').unwrap_or((resource, ""));
            for verb in *verbs {
                let n = Need {
                    scope: *scope,
                    group,
                    resource,
                    subresource,
                    verb,
                    why,
                    optional,
                };
                let same = |o: &Need| {
                    (o.scope, o.group, o.resource, o.subresource, o.verb)
                        == (n.scope, n.group, n.resource, n.subresource, n.verb)
                };
                if !out.iter().any(same) {
                    out.push(n);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
