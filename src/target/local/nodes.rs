//! Node objects for a cluster fixture: what a freshly booted cloud node looks like to the API.
//!
//! Labels, taints, capacity and node info are what a kubelet and the AWS cloud controller would
//! publish for that instance type: well-known labels, CPU and memory from the catalog, allocatable
//! after the EKS AMI's kubelet reservations, and no GPU labels or GPU resources (publishing those
//! is the GPU Operator's job). The nodes carry kwok's annotation so kwok, and nothing else, plays
//! their kubelet.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus, NodeSystemInfo, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::api::ObjectMeta;

use crate::catalog::{Catalog, Cloud};
use crate::fixture::{ClusterFixture, Role, node_name};
use crate::gpu_stack::ours::{FIXTURE_LABEL, KWOK_ANNOTATION, POOL_LABEL};

/// Pods per node (kubelet default `maxPods`).
pub const MAX_PODS: u64 = 110;
/// Root volume size in GiB (ephemeral-storage capacity).
pub const ROOT_VOLUME_GIB: u64 = 100;
/// Container runtime the nodes report.
pub const CONTAINER_RUNTIME: &str = "containerd://1.7.27";

/// What the cloud's node controller and managed node pools label a node with: the instance
/// type, region and zone on every cloud, and the pool and accelerator labels GKE and AKS add.
/// An on-prem machine carries none of them.
fn cloud_labels(
    fixture: &ClusterFixture,
    pool: &crate::fixture::Pool,
    catalog: &Catalog,
) -> BTreeMap<String, String> {
    let mut l = BTreeMap::new();
    if let Some(t) = &pool.hardware.instance_type {
        l.insert("node.kubernetes.io/instance-type".into(), t.clone());
        l.insert("beta.kubernetes.io/instance-type".into(), t.clone());
    }
    let has_gpu = pool.hardware.spec.gpu.is_some();
    match pool.hardware.spec.cloud {
        Cloud::OnPrem => return l,
        Cloud::Aws => {}
        Cloud::Gke => {
            l.insert("cloud.google.com/gke-nodepool".into(), pool.name.clone());
            l.insert("cloud.google.com/gke-os-distribution".into(), "cos".into());
            if let Some((_, count)) = catalog.gpu_of(&pool.hardware.spec)
                && let Some(acc) = &pool.hardware.spec.accelerator
            {
                l.insert("cloud.google.com/gke-accelerator".into(), acc.clone());
                l.insert(
                    "cloud.google.com/gke-accelerator-count".into(),
                    count.to_string(),
                );
                l.insert("cloud.google.com/gke-gpu".into(), "true".into());
            }
        }
        Cloud::Azure => {
            l.insert("kubernetes.azure.com/agentpool".into(), pool.name.clone());
            l.insert("agentpool".into(), pool.name.clone());
            l.insert("kubernetes.azure.com/mode".into(), "user".into());
            if has_gpu {
                l.insert("kubernetes.azure.com/accelerator".into(), "nvidia".into());
            }
        }
    }
    l.insert(
        "topology.kubernetes.io/region".into(),
        fixture.region.clone(),
    );
    l.insert("topology.kubernetes.io/zone".into(), pool.zone.clone());
    l
}

/// The provider ID each cloud's node controller sets; none on-prem.
fn provider_id(pool: &crate::fixture::Pool, name: &str, seed: u64) -> Option<String> {
    Some(match pool.hardware.spec.cloud {
        Cloud::Aws => format!("aws:///{}/i-{seed:017x}", pool.zone),
        Cloud::Gke => format!("gce://gpuconform-local/{}/{name}", pool.zone),
        Cloud::Azure => format!(
            "azure:///subscriptions/00000000-0000-0000-0000-000000000000/resourceGroups/mc_gpuconform/providers/Microsoft.Compute/virtualMachineScaleSets/aks-{}-vmss/virtualMachines/{}",
            pool.name,
            seed % 100
        ),
        Cloud::OnPrem => return None,
    })
}

/// All nodes of a fixture, in creation order. The address every node reports is loopback, where
/// kwok serves the kubelet API (logs) for all of them.
pub fn nodes(fixture: &ClusterFixture, catalog: &Catalog, kubelet_version: &str) -> Vec<Node> {
    let mut out = Vec::new();
    for pool in &fixture.pools {
        let instance = &pool.hardware.spec;
        for i in 1..=pool.count {
            let name = node_name(&pool.name, i);
            let seed = fnv(&format!("{}/{}", fixture.name, name));
            let mut labels = BTreeMap::from([
                ("kubernetes.io/hostname".into(), name.clone()),
                ("kubernetes.io/os".into(), "linux".into()),
                ("kubernetes.io/arch".into(), "amd64".into()),
                ("beta.kubernetes.io/os".into(), "linux".into()),
                ("beta.kubernetes.io/arch".into(), "amd64".into()),
                (POOL_LABEL.into(), pool.name.clone()),
                (FIXTURE_LABEL.into(), fixture.name.clone()),
            ]);
            labels.extend(cloud_labels(fixture, pool, catalog));
            let mut taints = Vec::new();
            if pool.role == Role::ControlPlane {
                labels.insert(
                    "node-role.kubernetes.io/control-plane".into(),
                    String::new(),
                );
                taints.push(Taint {
                    key: "node-role.kubernetes.io/control-plane".into(),
                    effect: "NoSchedule".into(),
                    ..Taint::default()
                });
            }
            labels.extend(pool.labels.clone());
            let memory_ki = instance.memory_mib * 1024;
            let (alloc_cpu_m, alloc_mem_ki) = allocatable(instance.vcpus, memory_ki);
            let storage_ki = ROOT_VOLUME_GIB * 1024 * 1024;
            let capacity = resources(
                format!("{}", instance.vcpus),
                format!("{memory_ki}Ki"),
                format!("{storage_ki}Ki"),
            );
            let allocatable = resources(
                format!("{alloc_cpu_m}m"),
                format!("{alloc_mem_ki}Ki"),
                // Kubelet's default nodefs eviction threshold keeps 10% free.
                format!("{}", storage_ki * 1024 / 10 * 9),
            );
            out.push(Node {
                metadata: ObjectMeta {
                    name: Some(name.clone()),
                    labels: Some(labels),
                    annotations: Some(BTreeMap::from([
                        (KWOK_ANNOTATION.0.into(), KWOK_ANNOTATION.1.into()),
                        ("node.alpha.kubernetes.io/ttl".into(), "0".into()),
                        (
                            "volumes.kubernetes.io/controller-managed-attach-detach".into(),
                            "true".into(),
                        ),
                    ])),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    provider_id: provider_id(pool, &name, seed),
                    taints: (!taints.is_empty()).then_some(taints),
                    ..NodeSpec::default()
                }),
                status: Some(NodeStatus {
                    capacity: Some(capacity),
                    allocatable: Some(allocatable),
                    addresses: Some(vec![
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: "127.0.0.1".into(),
                        },
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: name.clone(),
                        },
                    ]),
                    node_info: Some(NodeSystemInfo {
                        architecture: "amd64".into(),
                        boot_id: uuid_like(seed ^ 0xb007),
                        container_runtime_version: CONTAINER_RUNTIME.into(),
                        kernel_version: fixture.kernel_version.clone(),
                        // Deprecated and empty on real kubelets; kwok would fill in its own version.
                        kube_proxy_version: kubelet_version.into(),
                        kubelet_version: kubelet_version.into(),
                        machine_id: format!("{:016x}{:016x}", seed, seed.rotate_left(17)),
                        operating_system: "linux".into(),
                        os_image: fixture.os_image.clone(),
                        system_uuid: format!("ec2{}", &uuid_like(seed)[3..]),
                        ..NodeSystemInfo::default()
                    }),
                    ..NodeStatus::default()
                }),
            });
        }
    }
    out
}

fn resources(cpu: String, memory: String, storage: String) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".into(), Quantity(cpu)),
        ("memory".into(), Quantity(memory)),
        ("ephemeral-storage".into(), Quantity(storage)),
        ("pods".into(), Quantity(MAX_PODS.to_string())),
        ("hugepages-1Gi".into(), Quantity("0".into())),
        ("hugepages-2Mi".into(), Quantity("0".into())),
    ])
}

/// Allocatable `(cpu millicores, memory KiB)` after the EKS AMI bootstrap's reservations:
/// kube-reserved CPU of 6% of the first core, 1% of the second, 0.5% of the next two and 0.25%
/// of the rest; kube-reserved memory of 255 MiB + 11 MiB per pod; a 100 MiB eviction threshold.
pub fn allocatable(vcpus: u32, memory_ki: u64) -> (u64, u64) {
    let cores = u64::from(vcpus);
    let mut reserved_m10 = 0u64; // tenths of a millicore
    for core in 1..=cores {
        reserved_m10 += match core {
            1 => 600,
            2 => 100,
            3 | 4 => 50,
            _ => 25,
        };
    }
    let cpu = cores * 1000 - reserved_m10.div_ceil(10);
    let reserved_mem_ki = (255 + 11 * MAX_PODS + 100) * 1024;
    (cpu, memory_ki.saturating_sub(reserved_mem_ki))
}

fn fnv(s: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn uuid_like(seed: u64) -> String {
    let a = seed;
    let b = seed.rotate_left(29) ^ 0x9e37_79b9_7f4a_7c15;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn seed_nodes() -> Vec<Node> {
        let catalog = Catalog::embedded().expect("catalog");
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let fixture = ClusterFixture::load(&root.join("fixtures/clusters/seed.yaml"), &catalog)
            .expect("seed fixture");
        nodes(&fixture, &catalog, "v1.35.4")
    }

    #[test]
    fn seed_has_three_bare_nodes() {
        let nodes = seed_nodes();
        assert_eq!(nodes.len(), 3);
        for n in &nodes {
            let labels = n.metadata.labels.as_ref().expect("labels");
            assert!(
                labels.keys().all(|k| !k.starts_with("nvidia.com/")),
                "gpu label on a bare node"
            );
            let cap = n
                .status
                .as_ref()
                .and_then(|s| s.capacity.as_ref())
                .expect("capacity");
            assert!(!cap.contains_key("nvidia.com/gpu"));
        }
    }

    #[test]
    fn gpu_node_has_catalog_capacity_and_labels() {
        let nodes = seed_nodes();
        let gpu = nodes
            .iter()
            .find(|n| {
                n.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("node.kubernetes.io/instance-type"))
                    == Some(&"p3.2xlarge".to_string())
            })
            .expect("a p3.2xlarge node");
        let cap = gpu
            .status
            .as_ref()
            .and_then(|s| s.capacity.as_ref())
            .expect("capacity");
        assert_eq!(cap["cpu"].0, "8");
        assert_eq!(cap["memory"].0, format!("{}Ki", 62464 * 1024));
        let labels = gpu.metadata.labels.as_ref().expect("labels");
        assert_eq!(labels["topology.kubernetes.io/zone"], "us-west-2a");
    }

    /// Each cloud's node controller labels its nodes its way; an on-prem machine has none of it.
    #[test]
    fn nodes_carry_their_clouds_labels() {
        let catalog = Catalog::embedded().expect("catalog");
        let load = |f: &str| {
            let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(f);
            let fixture = ClusterFixture::load(&path, &catalog).expect("fixture");
            nodes(&fixture, &catalog, "v1.35.4")
        };
        let labels = |nodes: &[Node], name: &str| {
            nodes
                .iter()
                .find(|n| n.metadata.name.as_deref() == Some(name))
                .and_then(|n| n.metadata.labels.clone())
                .unwrap_or_else(|| panic!("node {name}"))
        };
        let clouds = load("fixtures/clusters/aks-gke.yaml");
        let aks = labels(&clouds, "nca100-1");
        assert_eq!(
            aks["node.kubernetes.io/instance-type"],
            "Standard_NC24ads_A100_v4"
        );
        assert_eq!(aks["kubernetes.azure.com/accelerator"], "nvidia");
        assert_eq!(aks["kubernetes.azure.com/agentpool"], "nca100");
        let system = labels(&clouds, "system-1");
        assert!(!system.contains_key("kubernetes.azure.com/accelerator"));
        let gke = labels(&clouds, "g2-1");
        assert_eq!(gke["cloud.google.com/gke-accelerator"], "nvidia-l4");
        assert_eq!(gke["cloud.google.com/gke-nodepool"], "g2");
        let onprem = load("fixtures/clusters/onprem.yaml");
        let dgx = labels(&onprem, "dgx-1");
        for k in [
            "node.kubernetes.io/instance-type",
            "topology.kubernetes.io/region",
        ] {
            assert!(!dgx.contains_key(k), "{k} on an on-prem node");
        }
        let dgx_node = onprem
            .iter()
            .find(|n| n.metadata.name.as_deref() == Some("dgx-1"))
            .expect("dgx-1");
        assert_eq!(
            dgx_node.spec.as_ref().and_then(|s| s.provider_id.clone()),
            None
        );
    }

    #[test]
    fn control_plane_is_tainted() {
        let nodes = seed_nodes();
        let cp = &nodes[0];
        let taints = cp
            .spec
            .as_ref()
            .and_then(|s| s.taints.as_ref())
            .expect("taints");
        assert_eq!(taints[0].key, "node-role.kubernetes.io/control-plane");
    }

    #[test]
    fn reservations_follow_the_eks_formula() {
        // 8 vCPUs: 60 + 10 + 5 + 5 + 4 × 2.5 = 90 millicores reserved.
        assert_eq!(allocatable(8, 0).0, 7910);
        // 1565 MiB reserved for 110 pods.
        assert_eq!(allocatable(1, 2_000_000).1, 2_000_000 - 1565 * 1024);
    }
}
