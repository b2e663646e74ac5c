//! The cluster's GPU nodes, and what the instance catalog says each one has.
//!
//! Read once from the node list (no GET per node). A node is a GPU node when its
//! `node.kubernetes.io/instance-type` is a GPU type in the catalog, or when it shows an NVIDIA
//! GPU whatever its type (an NVIDIA PCI label, `gpu.present`, GFD's product, `nvidia.com/gpu*`
//! capacity). A GPU node the catalog has no expectation for is not skipped silently: it is
//! [`Unexpected`], and the run fails a testcase naming it.

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, ResourceExt};

use crate::catalog::{Catalog, GpuModel};

/// A GPU node and what the catalog says it has.
#[derive(Debug, Clone)]
pub struct GpuNode {
    /// Node name.
    pub name: String,
    /// EC2 instance type.
    pub instance_type: String,
    /// GPU model key in the catalog.
    pub model_key: String,
    /// The model.
    pub model: GpuModel,
    /// GPUs on the node.
    pub count: u32,
}

impl GpuNode {
    /// `p3.2xlarge: 1× Tesla-V100-SXM2-16GB`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}: {}× {}",
            self.instance_type, self.count, self.model.product
        )
    }
}

/// A node that shows an NVIDIA GPU but has no expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexpected {
    /// Node name.
    pub name: String,
    /// Its instance type, if it has one.
    pub instance_type: Option<String>,
    /// GFD's product label, if published.
    pub product: Option<String>,
    /// The catalog knows the type, without GPUs.
    pub cpu_type: bool,
}

impl Unexpected {
    /// The failing testcase's message: which node, what it is, what to do.
    pub fn message(&self) -> String {
        let ty = self.instance_type.as_deref().unwrap_or("none");
        let product = self.product.as_deref().unwrap_or("not labelled");
        let why = if self.cpu_type {
            format!(
                "the instance catalog lists {ty} without GPUs, but the node shows an NVIDIA GPU"
            )
        } else {
            "the instance catalog has no entry for its type; give one with --catalog".into()
        };
        format!(
            "no expectation for node {}: instance type {ty}, product {product}; {why}",
            self.name
        )
    }
}

/// The cluster's GPU nodes: those with an expectation, and those without.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// GPU nodes and what the catalog says they have, by name.
    pub nodes: Vec<GpuNode>,
    /// GPU nodes nothing says anything about, by name.
    pub unexpected: Vec<Unexpected>,
}

/// Sorts the node list into GPU nodes with and without an expectation (CPU nodes are dropped).
pub fn classify(nodes: &[Node], catalog: &Catalog) -> Discovery {
    let mut out = Discovery::default();
    for n in nodes {
        let ty = n.labels().get("node.kubernetes.io/instance-type").cloned();
        let instance = ty.as_deref().and_then(|t| catalog.instance(t));
        let model = instance
            .and_then(|i| i.gpu.as_ref())
            .and_then(|g| catalog.gpu_models.get(&g.model).map(|m| (g, m)));
        match (model, &ty) {
            (Some((gpu, model)), Some(ty)) => out.nodes.push(GpuNode {
                name: n.name_any(),
                instance_type: ty.clone(),
                model_key: gpu.model.clone(),
                model: model.clone(),
                count: gpu.count,
            }),
            _ if crate::gpu_stack::shows_nvidia_gpu(n) => out.unexpected.push(Unexpected {
                name: n.name_any(),
                instance_type: ty.clone(),
                product: n.labels().get(crate::gpu_stack::gfd::PRODUCT).cloned(),
                cpu_type: instance.is_some_and(|i| i.gpu.is_none()),
            }),
            _ => {}
        }
    }
    out.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    out.unexpected.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The cluster's GPU nodes, from one node list.
pub async fn discover(client: &Client, catalog: &Catalog) -> Result<Discovery, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let list = nodes.list(&Default::default()).await?;
    Ok(classify(&list.items, catalog))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}}))
            .expect("node")
    }

    #[test]
    fn gpu_nodes_without_an_expectation_are_named_not_skipped() {
        let catalog = Catalog::embedded().expect("catalog");
        let p3 = crate::fixture::real_nodes::load(crate::fixture::real_nodes::P3);
        let mut real = serde_json::to_value(&p3.labels).expect("labels");
        // The source shows no instance-type label; the node had its type.
        real["node.kubernetes.io/instance-type"] = p3.instance_type.clone().into();
        let nodes = vec![
            node("p3", real.clone()),
            // An on-prem DGX: no instance type, GFD's labels only.
            node(
                "dgx-1",
                serde_json::json!({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.present": "true"}),
            ),
            // A type the catalog does not know (a GKE A3), seen by its PCI label.
            node(
                "gke-a3",
                serde_json::json!({"node.kubernetes.io/instance-type": "a3-highgpu-8g", "feature.node.kubernetes.io/pci-10de.present": "true"}),
            ),
            // A CPU type in the catalog that shows a GPU anyway.
            node(
                "odd",
                serde_json::json!({"node.kubernetes.io/instance-type": "m5.xlarge", "nvidia.com/gpu.present": "true"}),
            ),
            node(
                "cpu",
                serde_json::json!({"node.kubernetes.io/instance-type": "m5.xlarge"}),
            ),
        ];
        let d = classify(&nodes, &catalog);
        assert_eq!(
            d.nodes.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["p3"]
        );
        let names: Vec<&str> = d.unexpected.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["dgx-1", "gke-a3", "odd"]);
        let msgs: Vec<String> = d.unexpected.iter().map(Unexpected::message).collect();
        assert!(
            msgs[0].contains("node dgx-1: instance type none, product NVIDIA-A100-SXM4-80GB"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("instance type a3-highgpu-8g") && msgs[1].contains("no entry"),
            "{}",
            msgs[1]
        );
        assert!(
            msgs[2].contains("lists m5.xlarge without GPUs"),
            "{}",
            msgs[2]
        );
        // The real p3 with its instance type removed is no longer expected, but still seen.
        real.as_object_mut()
            .expect("map")
            .remove("node.kubernetes.io/instance-type");
        let d = classify(&[node("p3", real)], &catalog);
        assert!(d.nodes.is_empty());
        assert_eq!(
            d.unexpected[0].product.as_deref(),
            Some("Tesla-V100-SXM2-16GB")
        );
    }
}
