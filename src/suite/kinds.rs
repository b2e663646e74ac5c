//! The check kinds, written once: name, what each verifies, its parameters with their types and
//! defaults, whether it reports per node, and its default time limit. Suite validation, the
//! schema test, `gpuconform list`, the check dispatch and the scheduler all read this table.

use std::time::Duration;

use crate::plan::Timeouts;

/// Parameter types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamType {
    /// Integer.
    Int,
    /// Boolean.
    Bool,
    /// String.
    Str,
}

/// A parameter's default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamDefault {
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// A string.
    Str(&'static str),
}

impl std::fmt::Display for ParamDefault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::Bool(b) => write!(f, "{b}"),
            Self::Str(s) => f.write_str(s),
        }
    }
}

/// One parameter of a check kind (`with.<name>` in a suite).
#[derive(Debug, Clone, Copy)]
pub struct Param {
    /// Name.
    pub name: &'static str,
    /// Type.
    pub ty: ParamType,
    /// Used when the step does not set it.
    pub default: ParamDefault,
    /// Meaning.
    pub about: &'static str,
}

/// The default image of the `workload` check: the CUDA vectorAdd sample, the GPU Operator
/// e2e's smoke image.
pub const WORKLOAD_IMAGE: &str = "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04";

/// The default image of the `dra` check's pods: they only hold their claims.
pub const DRA_IMAGE: &str = "registry.k8s.io/pause:3.10";

/// The default image of the `secure-access` probe (the AI-conformance suite's).
pub const PROBE_IMAGE: &str = "ubuntu:22.04";

/// A check kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckKind {
    /// Operator health.
    Operator,
    /// NFD/GFD/operator labels.
    Labels,
    /// GPU capacity and allocatable.
    Allocatable,
    /// A GPU pod completes.
    Workload,
    /// CUDA throughput in pods.
    Throughput,
    /// GPUs through Dynamic Resource Allocation.
    Dra,
    /// Only pods that ask for a GPU see one.
    SecureAccess,
    /// helm uninstall.
    Uninstall,
    /// The cluster is back to empty.
    Teardown,
}

impl CheckKind {
    /// Every kind, in the order `list` shows them.
    pub const ALL: [CheckKind; 9] = [
        Self::Operator,
        Self::Labels,
        Self::Allocatable,
        Self::Workload,
        Self::Throughput,
        Self::Dra,
        Self::SecureAccess,
        Self::Uninstall,
        Self::Teardown,
    ];

    /// The name in suite files.
    pub fn name(self) -> &'static str {
        match self {
            Self::Operator => "operator",
            Self::Labels => "labels",
            Self::Allocatable => "allocatable",
            Self::Workload => "workload",
            Self::Throughput => "throughput",
            Self::Dra => "dra",
            Self::SecureAccess => "secure-access",
            Self::Uninstall => "uninstall",
            Self::Teardown => "teardown",
        }
    }

    /// The kind of a suite file's `check:`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    /// What it verifies.
    pub fn about(self) -> &'static str {
        match self {
            Self::Operator => {
                "helm release deployed, ClusterPolicy ready, every operand DaemonSet available, no operand container restarted too often"
            }
            Self::Labels => {
                "NFD, operator and GFD labels on every GPU node, values consistent with the node's expectation (plan `expect` entry or catalog) and the driver the plan expects"
            }
            Self::Allocatable => {
                "capacity and allocatable GPU resources equal the expected count (on a DRA node: its pool's untainted devices); a pod requesting all of a node's GPUs (on a DRA node: a claim for all of them) is schedulable there"
            }
            Self::Workload => {
                "a pod requesting one GPU (on a DRA node: a claim from a ResourceClaimTemplate) runs to completion on every GPU node"
            }
            Self::Throughput => {
                "gpuconform-bench in a pod per GPU node (its GPUs by limit, or by a claim on a DRA node): per GPU and metric the value against the floor from the GPU performance table, and stragglers"
            }
            Self::Dra => {
                "resource.k8s.io/v1 served and the DRA driver's DeviceClasses there; each GPU node's pool complete with exactly its expected devices and their attributes (product, architecture, compute capability, memory, driver) agreeing with the expectation and GFD; a claim per node allocated by the scheduler from that node's pool and released when its pod goes; two claims get distinct devices; an unsatisfiable selector leaves its pod Pending; create/delete cycles leak nothing"
            }
            Self::SecureAccess => {
                "on every GPU node, with its allocation mode (DRA claim or device-plugin limit): a pod that asks for one GPU sees exactly one, a pod that asks for none sees none, and of two containers only the one that asks sees it (the probe's exact RESULT: ACCELERATOR_COUNT=N line)"
            }
            Self::Uninstall => {
                "helm uninstall of the operator release, then deletion of its namespace"
            }
            Self::Teardown => {
                "after uninstall: release, namespaces, CRDs (with cleanupCRD) and test pods gone; GPU allocatable 0 at once, capacity 0 once the kubelet's device grace period has passed; leftover labels reported"
            }
        }
    }

    /// Its parameters.
    pub fn params(self) -> &'static [Param] {
        use ParamDefault as D;
        use ParamType as T;
        match self {
            Self::Operator => &[Param {
                name: "maxRestarts",
                ty: T::Int,
                default: D::Int(1),
                about: "most restarts an operand container may have",
            }],
            Self::Labels => &[Param {
                name: "memoryTolerancePercent",
                ty: T::Int,
                default: D::Int(0),
                about: "how far gpu.memory may be below the lowest value the catalog has seen for the model",
            }],
            Self::Allocatable => &[Param {
                name: "schedule",
                ty: T::Bool,
                default: D::Bool(true),
                about: "also place a pod requesting every GPU of the node",
            }],
            Self::Workload => &[Param {
                name: "image",
                ty: T::Str,
                default: D::Str(WORKLOAD_IMAGE),
                about: "container image (default the CUDA vectorAdd sample)",
            }],
            Self::Throughput => &[
                Param {
                    name: "stragglerPercent",
                    ty: T::Int,
                    default: D::Int(10),
                    about: "a GPU this many percent below the best of its model fails",
                },
                Param {
                    name: "repetitions",
                    ty: T::Int,
                    default: D::Int(20),
                    about: "timed repetitions per metric",
                },
                Param {
                    name: "maxCvPercent",
                    ty: T::Int,
                    default: D::Int(5),
                    about: "a metric whose samples vary more than this (coefficient of variation) fails as unstable",
                },
                Param {
                    name: "peakMarginPercent",
                    ty: T::Int,
                    default: D::Int(5),
                    about: "a median this far above the datasheet peak fails as impossible",
                },
                Param {
                    name: "allowUnknownModels",
                    ty: T::Bool,
                    default: D::Bool(false),
                    about: "report GPUs the performance table has no entry for as unjudged instead of failing them",
                },
            ],
            Self::Teardown => &[Param {
                name: "capacityGraceSeconds",
                ty: T::Int,
                default: D::Int(300),
                about: "how long a kubelet may keep a gone device plugin's capacity (endpointStopGracePeriod, 5 min)",
            }],
            Self::Dra => &[
                Param {
                    name: "image",
                    ty: T::Str,
                    default: D::Str(DRA_IMAGE),
                    about: "the image of the pods that hold claims (they only need to run)",
                },
                Param {
                    name: "cycles",
                    ty: T::Int,
                    default: D::Int(3),
                    about: "claim create/delete cycles on one node that must leave no allocation behind",
                },
            ],
            Self::SecureAccess => &[Param {
                name: "image",
                ty: T::Str,
                default: D::Str(PROBE_IMAGE),
                about: "the probe's image (it needs a POSIX shell)",
            }],
            Self::Uninstall => &[],
        }
    }

    /// The parameter called `name`.
    pub fn param(self, name: &str) -> Option<&'static Param> {
        self.params().iter().find(|p| p.name == name)
    }

    /// Whether it reports per GPU node (so `needs` can skip single nodes).
    pub fn per_node(self) -> bool {
        matches!(
            self,
            Self::Labels | Self::Allocatable | Self::Workload | Self::Throughput
        )
    }

    /// Its time limit when the step sets none: the operator check waits for the whole stack
    /// to come up, so it gets the install limit; the uninstall waits for helm and the
    /// namespace's finalizers, so it gets the teardown limit (a short step limit, there,
    /// fails a good uninstall on a busy machine); the others the plan's step limit.
    pub fn default_timeout(self, t: &Timeouts) -> Duration {
        match self {
            Self::Operator => t.install,
            Self::Uninstall => t.teardown,
            _ => t.step,
        }
    }
}

impl std::fmt::Display for CheckKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The schema of a step's `check:` in `schemas/suite.schema.json`: one of the kinds' names.
pub fn check_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let names: Vec<&str> = CheckKind::ALL.iter().map(|k| k.name()).collect();
    schemars::json_schema!({"type": "string", "enum": names})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_defaults_have_their_type() {
        for k in CheckKind::ALL {
            assert_eq!(CheckKind::parse(k.name()), Some(k));
            for p in k.params() {
                let ok = matches!(
                    (p.ty, p.default),
                    (ParamType::Int, ParamDefault::Int(_))
                        | (ParamType::Bool, ParamDefault::Bool(_))
                        | (ParamType::Str, ParamDefault::Str(_))
                );
                assert!(ok, "{k}.{}: default of another type", p.name);
            }
        }
        assert_eq!(CheckKind::parse("labelz"), None);
    }

    #[test]
    fn limits_follow_what_a_check_waits_for() {
        let s = Duration::from_secs;
        let t = Timeouts {
            provision: s(1),
            install: s(2),
            step: s(3),
            teardown: s(4),
        };
        assert_eq!(CheckKind::Operator.default_timeout(&t), s(2));
        assert_eq!(CheckKind::Uninstall.default_timeout(&t), s(4));
        assert_eq!(CheckKind::Labels.default_timeout(&t), s(3));
        assert_eq!(CheckKind::Teardown.default_timeout(&t), s(3));
    }
}
