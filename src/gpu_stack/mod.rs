//! The names of the GPU stack on the Kubernetes API, in one neutral place: the label keys Node
//! Feature Discovery, GPU Feature Discovery and the GPU Operator write, the `nvidia.com/*`
//! resource names the device plugin advertises, the operator's CRDs and the ClusterPolicy kind,
//! predicates over pods and nodes, and gpuconform's own labels.
//!
//! Both the checks and the GPU simulator import this module, and it imports neither: the checks
//! share *names* with the simulator, never its model of what the stack does. A name belongs
//! here when it is part of a published interface (a label, a resource, a CRD); what values a
//! component writes under it is the simulator's business, and what values are right is the
//! checks'.

pub mod dra;
pub mod driver;
pub mod layer;
pub mod probe;
pub mod upgrade;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use kube::api::{ApiResource, GroupVersionKind};

/// Node Feature Discovery's labels (`feature.node.kubernetes.io/*`).
pub mod nfd {
    use std::collections::BTreeMap;

    /// Prefix of every NFD label.
    pub const PREFIX: &str = "feature.node.kubernetes.io/";
    /// The PCI label for vendor 10de as the operator's bundled NFD config writes it.
    pub const PCI_LABEL: &str = "feature.node.kubernetes.io/pci-10de.present";
    /// Every form of the NVIDIA PCI label the operator accepts as "has an NVIDIA GPU": the
    /// vendor-only form and the class+vendor forms (3D controller 0302, VGA 0300) that NFD
    /// writes with other `deviceLabelFields`.
    pub const PCI_LABELS: &[&str] = &[
        PCI_LABEL,
        "feature.node.kubernetes.io/pci-0302_10de.present",
        "feature.node.kubernetes.io/pci-0300_10de.present",
    ];
    /// Full kernel version.
    pub const KERNEL_VERSION_FULL: &str = "feature.node.kubernetes.io/kernel-version.full";
    /// OS id from os-release.
    pub const OS_RELEASE_ID: &str = "feature.node.kubernetes.io/system-os_release.ID";
    /// OS version from os-release.
    pub const OS_RELEASE_VERSION_ID: &str =
        "feature.node.kubernetes.io/system-os_release.VERSION_ID";

    /// Whether a node carries any of the NVIDIA PCI labels with the value `true`.
    pub fn has_nvidia_pci(labels: &BTreeMap<String, String>) -> bool {
        PCI_LABELS
            .iter()
            .any(|k| labels.get(*k).is_some_and(|v| v == "true"))
    }
}

/// GPU Feature Discovery's labels (`nvidia.com/gpu.*`, `nvidia.com/cuda.*`, `nvidia.com/mig.*`).
pub mod gfd {
    /// Product name (`Tesla-V100-SXM2-16GB`; `-SHARED` under sharing, `-MIG-<profile>` under
    /// MIG single).
    pub const PRODUCT: &str = "nvidia.com/gpu.product";
    /// GPUs (or MIG devices under MIG single).
    pub const COUNT: &str = "nvidia.com/gpu.count";
    /// Memory per device in MiB.
    pub const MEMORY: &str = "nvidia.com/gpu.memory";
    /// Time-slicing / MPS replicas.
    pub const REPLICAS: &str = "nvidia.com/gpu.replicas";
    /// Architecture family (`volta`, `ampere`, …).
    pub const FAMILY: &str = "nvidia.com/gpu.family";
    /// Compute capability, major.
    pub const COMPUTE_MAJOR: &str = "nvidia.com/gpu.compute.major";
    /// Compute capability, minor.
    pub const COMPUTE_MINOR: &str = "nvidia.com/gpu.compute.minor";
    /// Whether the GPUs can be partitioned with MIG.
    pub const MIG_CAPABLE: &str = "nvidia.com/mig.capable";
    /// How the GPUs are shared: `none`, `time-slicing` or `mps` (GFD v0.15 and later).
    pub const SHARING_STRATEGY: &str = "nvidia.com/gpu.sharing-strategy";
    /// Whether MPS sharing is in effect (`true`, only then).
    pub const MPS_CAPABLE: &str = "nvidia.com/mps.capable";
    /// The system or instance type GFD reads from DMI (`DGX-A100`, `p3.2xlarge`).
    pub const MACHINE: &str = "nvidia.com/gpu.machine";
    /// The MIG strategy the device plugin and GFD run with (`none`, `single`, `mixed`).
    pub const MIG_STRATEGY: &str = "nvidia.com/mig.strategy";
    /// CUDA driver API version, current name (`12.8`).
    pub const CUDA_RUNTIME_FULL: &str = "nvidia.com/cuda.runtime-version.full";
    /// CUDA driver API version, deprecated names: major, minor.
    pub const CUDA_RUNTIME_DEPRECATED: [&str; 2] = [
        "nvidia.com/cuda.runtime.major",
        "nvidia.com/cuda.runtime.minor",
    ];
    /// Driver version, current name (`580.95.05`).
    pub const DRIVER_VERSION_FULL: &str = "nvidia.com/cuda.driver-version.full";
    /// Driver version, deprecated names: major, minor, revision.
    pub const DRIVER_DEPRECATED: [&str; 3] = [
        "nvidia.com/cuda.driver.major",
        "nvidia.com/cuda.driver.minor",
        "nvidia.com/cuda.driver.rev",
    ];
}

/// The GPU Operator's own node labels, kinds and CRDs.
pub mod operator {
    use super::{ApiResource, GroupVersionKind};

    /// The operator's "this node has an NVIDIA GPU" label.
    pub const GPU_PRESENT: &str = "nvidia.com/gpu.present";
    /// Whether the operator deploys its driver DaemonSet on the node: `true`, `false`, or
    /// `pre-installed` when it found a driver already installed on the host.
    pub const DEPLOY_DRIVER: &str = "nvidia.com/gpu.deploy.driver";
    /// The value of [`DEPLOY_DRIVER`] on a node with a host driver.
    pub const PRE_INSTALLED: &str = "pre-installed";
    /// The ClusterPolicy CRD.
    pub const POLICY_CRD: &str = "clusterpolicies.nvidia.com";
    /// The CRDs the chart's cleanup hook deletes (`/usr/bin/manage-crds delete`).
    pub const CRDS: &[&str] = &[
        POLICY_CRD,
        "nvidiadrivers.nvidia.com",
        "gpuclusters.nvidia.com",
    ];
    /// The label operand DaemonSets carry (`app.kubernetes.io/part-of=gpu-operator`).
    pub const PART_OF: (&str, &str) = ("app.kubernetes.io/part-of", "gpu-operator");

    /// The ClusterPolicy resource (`nvidia.com/v1`, cluster-scoped).
    pub fn cluster_policy() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("nvidia.com", "v1", "ClusterPolicy"),
            "clusterpolicies",
        )
    }
}

/// The labels a node's owner sets to ask the operator's components for a configuration.
pub mod asks {
    /// Which of the device plugin's configs (a key of its ConfigMap) the node gets.
    pub const PLUGIN_CONFIG: &str = "nvidia.com/device-plugin.config";
    /// The MIG layout mig-manager applies (a name in mig-parted's config).
    pub const MIG_CONFIG: &str = "nvidia.com/mig.config";
    /// mig-manager's progress applying it: `pending`, `rebooting`, `success`, `failed`.
    pub const MIG_CONFIG_STATE: &str = "nvidia.com/mig.config.state";
}

/// Extended resources the device plugin advertises.
pub mod resources {
    /// Prefix of every NVIDIA extended resource.
    pub const PREFIX: &str = "nvidia.com/";
    /// Whole GPUs (or replicas of them under sharing without renaming).
    pub const GPU: &str = "nvidia.com/gpu";
    /// Shared GPUs when sharing renames the resource.
    pub const GPU_SHARED: &str = "nvidia.com/gpu.shared";
    /// Prefix of MIG devices under the mixed strategy (`nvidia.com/mig-1g.5gb`).
    pub const MIG_PREFIX: &str = "nvidia.com/mig-";
}

/// gpuconform's own labels and marks, on what the harness and the local cluster create.
/// The Pod Security admission label that sets a namespace's enforced level.
pub const POD_SECURITY_ENFORCE: &str = "pod-security.kubernetes.io/enforce";

pub mod ours {
    /// Every object the harness creates carries this label.
    pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "gpuconform");
    /// The label selector for [`MANAGED_BY`].
    pub const MANAGED_BY_SELECTOR: &str = "app.kubernetes.io/managed-by=gpuconform";
    /// Which check made a pod or Job.
    pub const CHECK_LABEL: &str = "gpuconform.io/check";
    /// Which run made a pod or Job (a shared test namespace may hold several runs' pods).
    pub const RUN_LABEL: &str = "gpuconform.io/run";
    /// Bench pods of the throughput check.
    pub const BENCH_LABEL: (&str, &str) = ("app.kubernetes.io/name", "gpuconform-bench");
    /// The annotation kwok selects the nodes it manages by (the local cluster's nodes).
    pub const KWOK_ANNOTATION: (&str, &str) = ("kwok.x-k8s.io/node", "fake");
    /// The fixture a local-cluster node came from: such a node's GPUs are simulated.
    pub const FIXTURE_LABEL: &str = "gpuconform.io/fixture";
    /// The fixture pool a local-cluster node came from.
    pub const POOL_LABEL: &str = "gpuconform.io/pool";

    /// The run id as a label value (at most 63 characters, alphanumeric at both ends).
    pub fn run_label(run_id: &str) -> String {
        let clean: String = run_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let start = clean.len().saturating_sub(63);
        clean[start..]
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_string()
    }

    /// The label selector for the pods and Jobs of run `run_id`.
    pub fn run_selector(run_id: &str) -> String {
        format!(
            "{},{}={}",
            MANAGED_BY_SELECTOR,
            RUN_LABEL,
            run_label(run_id)
        )
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn run_labels_are_valid_label_values() {
            let rows = [
                ("local-20261128-133701", "local-20261128-133701"),
                ("a b/c", "a-b-c"),
                ("-x-", "x"),
                (&"y".repeat(70), &"y".repeat(63)),
            ];
            for (id, want) in rows {
                assert_eq!(run_label(id), want, "{id}");
            }
        }
    }
}

/// `nvidia.com/*` extended resources in a node's status: name → (capacity, allocatable). A
/// quantity that is not a plain integer reads as 0 (extended resources are integers).
pub fn gpu_resources(node: &Node) -> BTreeMap<String, (u64, u64)> {
    let Some(status) = &node.status else {
        return BTreeMap::new();
    };
    let parse = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        q.0.parse::<u64>().unwrap_or(0)
    };
    let mut out = BTreeMap::new();
    for (k, v) in status.capacity.iter().flatten() {
        if k.starts_with(resources::PREFIX) {
            out.insert(k.clone(), (parse(v), 0));
        }
    }
    for (k, v) in status.allocatable.iter().flatten() {
        if k.starts_with(resources::PREFIX) {
            out.entry(k.clone()).or_insert((0, 0)).1 = parse(v);
        }
    }
    out
}

/// Whether kwok manages the node (a local-cluster node).
pub fn kwok_managed(node: &Node) -> bool {
    node.annotations()
        .get(ours::KWOK_ANNOTATION.0)
        .map(String::as_str)
        == Some(ours::KWOK_ANNOTATION.1)
}

/// The node a pod is bound to.
pub fn on_node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref())
}

/// Running, Ready and not being deleted.
pub fn pod_ready(pod: &Pod) -> bool {
    let Some(status) = &pod.status else {
        return false;
    };
    pod.metadata.deletion_timestamp.is_none()
        && status.phase.as_deref() == Some("Running")
        && status
            .conditions
            .as_ref()
            .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Whether a node shows an NVIDIA GPU, whatever its instance type: an NVIDIA PCI label from
/// NFD (any variant), the operator's `gpu.present`, GFD's product label, or `nvidia.com/gpu*` /
/// `nvidia.com/mig-*` capacity from a device plugin.
pub fn shows_nvidia_gpu(node: &Node) -> bool {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    if nfd::has_nvidia_pci(&labels)
        || labels
            .get(operator::GPU_PRESENT)
            .is_some_and(|v| v == "true")
        || labels.contains_key(gfd::PRODUCT)
    {
        return true;
    }
    let gpu_resource =
        |k: &String| k.starts_with(resources::GPU) || k.starts_with(resources::MIG_PREFIX);
    node.status.as_ref().is_some_and(|s| {
        s.capacity.iter().flatten().any(|(k, _)| gpu_resource(k))
            || s.allocatable.iter().flatten().any(|(k, _)| gpu_resource(k))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_nodes_are_seen_by_what_the_stack_publishes() {
        let node = |labels: serde_json::Value, capacity: serde_json::Value| -> Node {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "n", "labels": labels},
                "status": {"capacity": capacity},
            }))
            .expect("node")
        };
        let real = |file: &str| {
            let n = crate::fixture::real_nodes::load(file);
            node(
                serde_json::to_value(&n.labels).expect("labels"),
                serde_json::json!({}),
            )
        };
        let rows = [
            (real(crate::fixture::real_nodes::P3), true),
            (real(crate::fixture::real_nodes::G4DN), true),
            (
                node(
                    serde_json::json!({"feature.node.kubernetes.io/pci-0302_10de.present": "true"}),
                    serde_json::json!({}),
                ),
                true,
            ),
            (
                node(
                    serde_json::json!({"nvidia.com/gpu.present": "true"}),
                    serde_json::json!({}),
                ),
                true,
            ),
            (
                node(
                    serde_json::json!({}),
                    serde_json::json!({"nvidia.com/gpu": "8"}),
                ),
                true,
            ),
            (
                node(
                    serde_json::json!({}),
                    serde_json::json!({"nvidia.com/mig-1g.10gb": "7"}),
                ),
                true,
            ),
            (
                node(
                    serde_json::json!({"kubernetes.io/hostname": "cpu-1"}),
                    serde_json::json!({"cpu": "8"}),
                ),
                false,
            ),
            (
                node(
                    serde_json::json!({"feature.node.kubernetes.io/pci-10de.present": "false"}),
                    serde_json::json!({}),
                ),
                false,
            ),
        ];
        for (i, (n, want)) in rows.into_iter().enumerate() {
            assert_eq!(shows_nvidia_gpu(&n), want, "row {i}");
        }
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn every_pci_label_form_counts_only_when_true() {
        for key in nfd::PCI_LABELS {
            assert!(nfd::has_nvidia_pci(&labels(&[(key, "true")])), "{key}");
            assert!(!nfd::has_nvidia_pci(&labels(&[(key, "false")])), "{key}");
        }
        // Another vendor's device (Intel 8086) is not an NVIDIA GPU.
        assert!(!nfd::has_nvidia_pci(&labels(&[(
            "feature.node.kubernetes.io/pci-0300_8086.present",
            "true"
        )])));
    }

    #[test]
    fn gpu_resources_pairs_capacity_and_allocatable() {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "n"},
            "status": {
                "capacity": {"nvidia.com/gpu": "8", "cpu": "96", "nvidia.com/mig-1g.10gb": "7"},
                "allocatable": {"nvidia.com/gpu": "7", "cpu": "95"}
            }
        }))
        .expect("node");
        let r = gpu_resources(&node);
        assert_eq!(r.get("nvidia.com/gpu"), Some(&(8, 7)));
        assert_eq!(r.get("nvidia.com/mig-1g.10gb"), Some(&(7, 0)));
        assert!(!r.contains_key("cpu"));
    }

    #[test]
    fn pod_ready_needs_running_ready_and_not_deleting() {
        let pod = |phase: &str, ready: &str, deleting: bool| -> Pod {
            let mut v = serde_json::json!({
                "metadata": {"name": "p"},
                "spec": {"nodeName": "n", "containers": []},
                "status": {"phase": phase, "conditions": [{"type": "Ready", "status": ready}]}
            });
            if deleting {
                v["metadata"]["deletionTimestamp"] = "2026-12-01T00:00:00Z".into();
            }
            serde_json::from_value(v).expect("pod")
        };
        assert!(pod_ready(&pod("Running", "True", false)));
        assert!(!pod_ready(&pod("Running", "False", false)));
        assert!(!pod_ready(&pod("Pending", "True", false)));
        assert!(!pod_ready(&pod("Running", "True", true)));
        assert_eq!(on_node_name(&pod("Running", "True", false)), Some("n"));
    }
}
