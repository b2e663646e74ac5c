//! The cluster's GPU nodes, and what the instance catalog says each one has.
//!
//! Read once from the node list (no GET per node). Today a node is a GPU node when its
//! `node.kubernetes.io/instance-type` is a GPU type in the catalog.

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

/// GPU nodes of the cluster by the catalog: nodes whose instance type has GPUs.
pub async fn discover(client: &Client, catalog: &Catalog) -> Result<Vec<GpuNode>, kube::Error> {
    let nodes: Api<Node> = Api::all(client.clone());
    let mut out = Vec::new();
    for n in nodes.list(&Default::default()).await? {
        let Some(ty) = n.labels().get("node.kubernetes.io/instance-type").cloned() else {
            continue;
        };
        let Some(instance) = catalog.instance(&ty) else {
            continue;
        };
        let Some(gpu) = &instance.gpu else { continue };
        let Some(model) = catalog.gpu_models.get(&gpu.model) else {
            continue;
        };
        out.push(GpuNode {
            name: n.name_any(),
            instance_type: ty,
            model_key: gpu.model.clone(),
            model: model.clone(),
            count: gpu.count,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
