//! The inventory read from the cluster just before teardown: the GPU nodes the run judged and
//! the operator namespace's pods ([`crate::report::inventory`] turns the objects into it).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::report::inventory::{self, Expected, Inventory};
use crate::target::GpuNode;

/// How long the two lists may take: the inventory must not hold up teardown.
const DEADLINE: Duration = Duration::from_secs(20);

/// Lists nodes and the `namespace`'s pods and builds the inventory of `gpu_nodes`.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    gpu_nodes: &[GpuNode],
) -> Result<Inventory, String> {
    let lists = async {
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list nodes: {}", crate::errors::chain(&e)))?;
        let pods = Api::<Pod>::namespaced(client.clone(), namespace)
            .list(&ListParams::default())
            .await
            .map_err(|e| format!("list pods in {namespace}: {}", crate::errors::chain(&e)))?;
        Ok::<_, String>((nodes.items, pods.items))
    };
    let (nodes, pods) = tokio::time::timeout(DEADLINE, lists)
        .await
        .map_err(|_| format!("no answer within {}s", DEADLINE.as_secs()))??;
    let expected: Vec<Expected> = gpu_nodes
        .iter()
        .map(|g| Expected {
            name: g.name.clone(),
            expectation: g.expectation.clone(),
            product: g.model.product.clone(),
            count: g.count,
        })
        .collect();
    Ok(inventory::collect(
        &nodes,
        &pods,
        &expected,
        &chrono::Utc::now().to_rfc3339(),
    ))
}
