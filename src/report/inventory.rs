//! The run's inventory (`inventory.json`): what was tested, as the cluster showed it just before
//! teardown. Per GPU node its name, system or instance type, the expectation it was judged
//! against, the GPU model, count and memory GFD published, driver and CUDA versions, MIG mode,
//! the kubelet and runtime, and the GPUs' UUIDs as the bench pods read them through NVML; per
//! operand pod of the operator's namespace, each container's image and the digest the kubelet
//! reports (`imageID`). A certification bundle carries it; `verify` checks the bundle's other
//! files against it.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use serde::{Deserialize, Serialize};

use crate::gpu_stack::{driver, gfd, ours};

/// The inventory.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Inventory {
    /// RFC 3339.
    pub collected_at: String,
    /// GPU nodes, by name.
    pub nodes: Vec<NodeInventory>,
    /// Pods of the operator's namespace, by name.
    pub operands: Vec<OperandPod>,
}

/// What the run expected of a GPU node (from its discovery).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    /// Node name.
    pub name: String,
    /// Where the expectation comes from (`expect[0] (plans/p.yaml:12)`, `instance type …`).
    pub expectation: String,
    /// Expected product.
    pub product: String,
    /// Expected GPUs.
    pub count: u32,
}

/// One GPU node.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeInventory {
    /// Node name.
    pub name: String,
    /// `node.kubernetes.io/instance-type`.
    pub instance_type: Option<String>,
    /// What GFD reads from DMI (`nvidia.com/gpu.machine`).
    pub system: Option<String>,
    /// Where the run's expectation for it came from.
    pub expectation: String,
    /// The expected GPU product and count.
    pub expected: String,
    /// `nvidia.com/gpu.product`.
    pub gpu_product: Option<String>,
    /// `nvidia.com/gpu.count`.
    pub gpu_count: Option<u32>,
    /// `nvidia.com/gpu.memory` (MiB).
    pub gpu_memory_mib: Option<u64>,
    /// The driver the node's labels show.
    pub driver: Option<String>,
    /// The CUDA driver API version the node's labels show.
    pub cuda: Option<String>,
    /// `nvidia.com/mig.strategy`.
    pub mig_strategy: Option<String>,
    /// `nvidia.com/mig.config` (the layout asked for).
    pub mig_config: Option<String>,
    /// `nvidia.com/mig.config.state`.
    pub mig_config_state: Option<String>,
    /// Kubelet version.
    pub kubelet: String,
    /// Container runtime (`containerd://2.1.4`).
    pub container_runtime: String,
    /// OS image and kernel.
    pub os: String,
    /// A local-cluster node: its GPUs are simulated.
    pub simulated: bool,
    /// The GPUs the bench pods saw (empty when the throughput suite did not run).
    pub gpus: Vec<GpuDevice>,
}

/// One GPU as a bench pod saw it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuDevice {
    /// CUDA device index in the pod.
    pub index: u32,
    /// `GPU-…`.
    pub uuid: String,
    /// The device's name.
    pub name: String,
}

/// One operand pod.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OperandPod {
    /// Pod name.
    pub name: String,
    /// The node it runs on.
    pub node: Option<String>,
    /// Pod phase.
    pub phase: String,
    /// Containers and init containers, in spec order.
    pub containers: Vec<ContainerImage>,
}

/// A container's image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerImage {
    /// Container name.
    pub name: String,
    /// The image the spec asks for.
    pub image: String,
    /// The image the kubelet reports running (`…@sha256:…`); empty when it reports none.
    pub image_id: String,
}

fn label<T: std::str::FromStr>(labels: &BTreeMap<String, String>, key: &str) -> Option<T> {
    labels.get(key).and_then(|v| v.parse().ok())
}

/// The inventory of `expected` GPU nodes (others in `nodes` are left out) and the `operands`
/// of the operator's namespace (each pod read by [`operand`]).
pub fn collect(
    nodes: &[Node],
    mut operands: Vec<OperandPod>,
    expected: &[Expected],
    now: &str,
) -> Inventory {
    let mut out = Inventory {
        collected_at: now.to_string(),
        ..Inventory::default()
    };
    // By name: thousands of expected nodes each looked up in thousands of listed ones.
    let by_name: BTreeMap<&str, &Node> = nodes
        .iter()
        .filter_map(|n| Some((n.metadata.name.as_deref()?, n)))
        .collect();
    for e in expected {
        let Some(n) = by_name.get(e.name.as_str()) else {
            continue;
        };
        let l = n.labels();
        let info = n.status.as_ref().and_then(|s| s.node_info.as_ref());
        let cuda = l.get(gfd::CUDA_RUNTIME_FULL).cloned().or_else(|| {
            let [a, b] = gfd::CUDA_RUNTIME_DEPRECATED.map(|k| l.get(k));
            Some(format!("{}.{}", a?, b?))
        });
        out.nodes.push(NodeInventory {
            name: e.name.clone(),
            instance_type: l
                .get("node.kubernetes.io/instance-type")
                .or_else(|| l.get("beta.kubernetes.io/instance-type"))
                .cloned(),
            system: l.get(gfd::MACHINE).cloned(),
            expectation: e.expectation.clone(),
            expected: format!("{}× {}", e.count, e.product),
            gpu_product: l.get(gfd::PRODUCT).cloned(),
            gpu_count: label(l, gfd::COUNT),
            gpu_memory_mib: label(l, gfd::MEMORY),
            driver: driver::from_labels(l),
            cuda,
            mig_strategy: l.get(gfd::MIG_STRATEGY).cloned(),
            mig_config: l.get(crate::gpu_stack::asks::MIG_CONFIG).cloned(),
            mig_config_state: l.get(crate::gpu_stack::asks::MIG_CONFIG_STATE).cloned(),
            kubelet: info.map(|i| i.kubelet_version.clone()).unwrap_or_default(),
            container_runtime: info
                .map(|i| i.container_runtime_version.clone())
                .unwrap_or_default(),
            os: info
                .map(|i| format!("{} ({})", i.os_image, i.kernel_version))
                .unwrap_or_default(),
            simulated: l.contains_key(ours::FIXTURE_LABEL),
            gpus: Vec::new(),
        });
    }
    out.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    operands.sort_by(|a, b| a.name.cmp(&b.name));
    out.operands = operands;
    out
}

/// What the inventory keeps of one operand pod: where it runs, its phase, and each
/// container's image as asked and as run.
pub fn operand(p: &Pod) -> OperandPod {
    let spec = p.spec.as_ref();
    let statuses: Vec<_> = p
        .status
        .iter()
        .flat_map(|s| {
            s.init_container_statuses
                .iter()
                .flatten()
                .chain(s.container_statuses.iter().flatten())
        })
        .collect();
    let containers = spec
        .into_iter()
        .flat_map(|s| s.init_containers.iter().flatten().chain(&s.containers))
        .map(|c| ContainerImage {
            name: c.name.clone(),
            image: c.image.clone().unwrap_or_default(),
            image_id: statuses
                .iter()
                .find(|s| s.name == c.name)
                .map(|s| s.image_id.clone())
                .unwrap_or_default(),
        })
        .collect();
    OperandPod {
        name: p.name_any(),
        node: spec.and_then(|s| s.node_name.clone()),
        phase: p
            .status
            .as_ref()
            .and_then(|s| s.phase.clone())
            .unwrap_or_default(),
        containers,
    }
}

/// Adds the GPUs one node's bench document lists (a document per MIG device lists the
/// device it measured; a UUID is kept once).
pub fn add_gpus(inv: &mut Inventory, bench: &crate::bench::NodeBench) {
    let Some(n) = inv.nodes.iter_mut().find(|n| n.name == bench.node) else {
        return;
    };
    for g in &bench.report.gpus {
        if n.gpus.iter().any(|d| d.uuid == g.device.uuid) {
            continue;
        }
        n.gpus.push(GpuDevice {
            index: g.device.index,
            uuid: g.device.uuid.clone(),
            name: g.device.name.clone(),
        });
    }
    n.gpus.sort_by_key(|d| d.index);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A real node's labels (tests/data/real-nodes, with its source) as a Node object.
    fn real(file: &str) -> Node {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/real-nodes")
            .join(file);
        let text = std::fs::read_to_string(&path).expect("read");
        let doc: serde_json::Value = serde_saphyr::from_str(&text).expect("yaml");
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "gpu-1", "labels": doc["labels"]},
            "status": {"nodeInfo": {
                "kubeletVersion": "v1.31.4", "containerRuntimeVersion": "cri-o://1.31.4",
                "osImage": "Red Hat Enterprise Linux CoreOS", "kernelVersion": "5.14.0",
                "machineID": "", "systemUUID": "", "bootID": "", "kubeProxyVersion": "",
                "operatingSystem": "linux", "architecture": "amd64"
            }}
        }))
        .expect("node")
    }

    fn expected() -> Vec<Expected> {
        vec![Expected {
            name: "gpu-1".into(),
            expectation: "instance type g6.12xlarge".into(),
            product: "NVIDIA-L4".into(),
            count: 4,
        }]
    }

    #[test]
    fn real_node_labels_fill_the_inventory() {
        let node = real("aws-g6-12xlarge-l4-ocp421.yaml");
        let inv = collect(&[node], Vec::new(), &expected(), "t");
        let n = &inv.nodes[0];
        assert_eq!(n.instance_type.as_deref(), Some("g6.12xlarge"));
        assert_eq!(n.gpu_product.as_deref(), Some("NVIDIA-L4"));
        assert_eq!(n.gpu_count, Some(4));
        // The page's truth: driver 570.172.08, CUDA 12.8.
        assert_eq!(n.driver.as_deref(), Some("570.172.08"));
        assert_eq!(n.cuda.as_deref(), Some("12.8"));
        assert_eq!(n.kubelet, "v1.31.4");
        assert!(!n.simulated);
        assert_eq!(n.expected, "4× NVIDIA-L4");
    }

    #[test]
    fn nodes_without_an_expectation_are_left_out_and_digests_come_from_the_status() {
        let node = real("aws-g6-12xlarge-l4-ocp421.yaml");
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "nvidia-driver-daemonset-abcde"},
            "spec": {"nodeName": "gpu-1", "containers": [
                {"name": "nvidia-driver-ctr", "image": "nvcr.io/nvidia/driver:570.172.08-rhel9.6"}
            ], "initContainers": [{"name": "k8s-driver-manager", "image": "nvcr.io/nvidia/cloud-native/k8s-driver-manager:v0.8.0"}]},
            "status": {"phase": "Running", "containerStatuses": [{
                "name": "nvidia-driver-ctr", "image": "nvcr.io/nvidia/driver:570.172.08-rhel9.6",
                "imageID": "nvcr.io/nvidia/driver@sha256:0f1e", "ready": true, "restartCount": 0
            }]}
        }))
        .expect("pod");
        let mut e = expected();
        e.push(Expected {
            name: "gone".into(),
            ..e[0].clone()
        });
        let inv = collect(&[node], vec![operand(&pod)], &e, "t");
        assert_eq!(inv.nodes.len(), 1);
        let c = &inv.operands[0].containers;
        assert_eq!(c[0].name, "k8s-driver-manager");
        assert_eq!(c[0].image_id, "", "no status, no digest");
        assert_eq!(c[1].image_id, "nvcr.io/nvidia/driver@sha256:0f1e");
        assert_eq!(inv.operands[0].node.as_deref(), Some("gpu-1"));
    }
}
