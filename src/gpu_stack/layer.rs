//! The layers of a GPU node's stack a failure can belong to, and the attribution of a failed
//! testcase to one of them — what a reviewer (or the on-call engineer) asks first: is it the
//! driver, the container runtime hook, the device plugin, the operator, the node, or the
//! workload? (NVIDIA's ai-cloud-validation attributes its failures the same way.)
//!
//! Attribution reads what every testcase has: its check kind, its name (which names the operand
//! for the operator's DaemonSets and restarts) and its message. The operand names are the GPU
//! Operator's published DaemonSet and container names.

use serde::{Deserialize, Serialize};

/// A layer of the stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Layer {
    /// The kernel driver and its libraries (driver DaemonSet or host driver, NVML, CUDA init).
    Driver,
    /// The NVIDIA Container Toolkit and the container runtime (the hook, CDI, RuntimeClass).
    ContainerRuntime,
    /// Whatever advertises and allocates GPUs: the device plugin, GPU Feature Discovery, a DRA
    /// driver.
    DevicePlugin,
    /// The GPU Operator and its other operands (ClusterPolicy, NFD, validator, MIG manager,
    /// DCGM exporter, the upgrade controller) and its install or removal.
    Operator,
    /// The node and its kubelet (NotReady, no expectation, not schedulable).
    Node,
    /// The GPU workload itself: a pod that got its GPU but computed wrong or too slowly.
    Workload,
}

impl Layer {
    /// The word reports use (`container-runtime`).
    pub fn word(self) -> &'static str {
        match self {
            Self::Driver => "driver",
            Self::ContainerRuntime => "container-runtime",
            Self::DevicePlugin => "device-plugin",
            Self::Operator => "operator",
            Self::Node => "node",
            Self::Workload => "workload",
        }
    }
}

/// Operand names (DaemonSet or container name parts) and their layer; the first match wins,
/// so the more specific names come first.
const OPERANDS: &[(&str, Layer)] = &[
    ("container-toolkit", Layer::ContainerRuntime),
    ("toolkit-validation", Layer::ContainerRuntime),
    ("driver-validation", Layer::Driver),
    ("driver", Layer::Driver),
    ("device-plugin", Layer::DevicePlugin),
    ("gpu-feature-discovery", Layer::DevicePlugin),
    ("dra-", Layer::DevicePlugin),
    ("plugin-validation", Layer::DevicePlugin),
];

/// Words in a message that point at a layer below the check's own, whatever the check.
const SYMPTOMS: &[(&str, Layer)] = &[
    ("nvidia-container-cli", Layer::ContainerRuntime),
    ("RunContainerError", Layer::ContainerRuntime),
    ("CreateContainerError", Layer::ContainerRuntime),
    ("runtimeclass", Layer::ContainerRuntime),
    ("no runtime for", Layer::ContainerRuntime),
    ("insufficient nvidia.com/", Layer::DevicePlugin),
    ("unexpectedadmissionerror", Layer::DevicePlugin),
    ("cuda_error_no_device", Layer::Driver),
    ("insufficient_driver", Layer::Driver),
    ("nvml", Layer::Driver),
    ("notready", Layer::Node),
    ("not ready", Layer::Node),
];

/// The layer a failed testcase belongs to.
pub fn attribute(check: &str, name: &str, message: &str) -> Layer {
    let lower = message.to_ascii_lowercase();
    let symptom = SYMPTOMS
        .iter()
        .find(|(w, _)| lower.contains(&w.to_ascii_lowercase()))
        .map(|(_, l)| *l);
    let operand = |text: &str| {
        OPERANDS
            .iter()
            .find(|(w, _)| text.contains(w))
            .map(|(_, l)| *l)
    };
    match check {
        // The operator's DaemonSets and their restarts: the operand named is the layer.
        "operator" => operand(name)
            .or_else(|| operand(&lower))
            .unwrap_or(Layer::Operator),
        // GFD writes the product, count and memory labels; the driver labels are the driver's.
        "labels" if lower.contains("cuda.driver") => Layer::Driver,
        "labels" if lower.contains("feature.node.kubernetes.io") => Layer::Operator,
        "labels" | "allocatable" | "sharing" | "dra" => symptom.unwrap_or(Layer::DevicePlugin),
        "uninstall" | "teardown" => Layer::Operator,
        "discovery" => Layer::Node,
        // A node that did not take the new driver is the driver's; the release, the policy
        // and the rollback are the operator's.
        "driver-upgrade" if name.starts_with("node/") => Layer::Driver,
        "driver-upgrade" | "upgrade-compare" => Layer::Operator,
        // A workload that did not get its GPU, or whose container did not start, names the
        // layer below it in its message; one that ran and was wrong is the workload's.
        "workload" | "throughput" => symptom.unwrap_or(Layer::Workload),
        _ => symptom.unwrap_or(Layer::Operator),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_land_in_their_layer() {
        let rows = [
            (
                "operator",
                "daemonset/nvidia-driver-daemonset",
                "daemonset nvidia-driver-daemonset has 0 of 1 pods available, expected 1",
                Layer::Driver,
            ),
            (
                "operator",
                "daemonset/nvidia-container-toolkit-daemonset",
                "has 0 of 1 pods available",
                Layer::ContainerRuntime,
            ),
            (
                "operator",
                "daemonset/nvidia-device-plugin-daemonset",
                "",
                Layer::DevicePlugin,
            ),
            (
                "operator",
                "restarts/gpu-1",
                "gpu-1: container nvidia-device-plugin restarted 3 times",
                Layer::DevicePlugin,
            ),
            (
                "operator",
                "clusterpolicy",
                "clusterpolicy cluster-policy state is \"notReady\", expected \"ready\"",
                Layer::Operator,
            ),
            (
                "operator",
                "daemonset/nvidia-dcgm-exporter",
                "",
                Layer::Operator,
            ),
            (
                "labels",
                "labels/gpu-1",
                "gpu-1: nvidia.com/cuda.driver-version.full is \"570\", expected \"580.95.05\"",
                Layer::Driver,
            ),
            (
                "labels",
                "labels/gpu-1",
                "gpu-1: nvidia.com/gpu.count is \"0\", expected \"1\"",
                Layer::DevicePlugin,
            ),
            (
                "labels",
                "labels/gpu-1",
                "gpu-1: feature.node.kubernetes.io/pci-10de.present is missing",
                Layer::Operator,
            ),
            (
                "allocatable",
                "allocatable/gpu-1",
                "allocatable 0",
                Layer::DevicePlugin,
            ),
            (
                "workload",
                "workload/gpu-1",
                "pod Pending: 0/3 nodes are available: 1 Insufficient nvidia.com/gpu",
                Layer::DevicePlugin,
            ),
            (
                "workload",
                "workload/gpu-1",
                "RunContainerError: nvidia-container-cli: initialization error",
                Layer::ContainerRuntime,
            ),
            (
                "workload",
                "workload/gpu-1",
                "vectorAdd printed Test FAILED",
                Layer::Workload,
            ),
            (
                "throughput",
                "bench/gpu-1",
                "gpu0 fp32 9.1 TFLOP/s below the floor",
                Layer::Workload,
            ),
            (
                "throughput",
                "bench/gpu-1",
                "NVML: Driver/library version mismatch",
                Layer::Driver,
            ),
            (
                "dra",
                "dra/gpu-1",
                "gpu-1: pool gpu-1 is incomplete: 1 of 2 slices at generation 1",
                Layer::DevicePlugin,
            ),
            (
                "discovery",
                "discovery/gpu-9",
                "no expectation",
                Layer::Node,
            ),
            ("driver-upgrade", "node/gpu-1", "stuck", Layer::Driver),
            (
                "driver-upgrade",
                "policy",
                "2 nodes out at once",
                Layer::Operator,
            ),
            (
                "workload",
                "workload/gpu-1",
                "node gpu-1 is NotReady",
                Layer::Node,
            ),
            ("uninstall", "uninstall/release", "", Layer::Operator),
        ];
        for (check, name, message, want) in rows {
            assert_eq!(
                attribute(check, name, message),
                want,
                "{check} {name}: {message}"
            );
        }
    }
}
