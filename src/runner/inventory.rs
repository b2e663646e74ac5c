//! The inventory of what is tested, read once the stack is ready: the GPU nodes the run judged
//! (from the node list discovery read at the same moment) and the operator namespace's pods
//! ([`crate::report::inventory`] turns the objects into it).

use std::time::Duration;

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::Api;
use kube::api::ListParams;

use crate::report::inventory::{self, Expected, Inventory};
use crate::target::GpuNode;

/// How long the pod list may take: the inventory must not hold up the suites.
const DEADLINE: Duration = Duration::from_secs(20);

/// Lists the `namespace`'s pods and builds the inventory of `gpu_nodes` from `nodes`.
pub async fn read(
    client: &kube::Client,
    namespace: &str,
    gpu_nodes: &[GpuNode],
    nodes: &[Node],
) -> Result<Inventory, String> {
    let api = Api::<Pod>::namespaced(client.clone(), namespace);
    // In pages, each pod reduced to its inventory entry at once: the operator's namespace
    // holds about eight pods per GPU node.
    let listed =
        crate::k8s::list::list_all(&api, ListParams::default(), |p| inventory::operand(&p));
    let operands = tokio::time::timeout(DEADLINE, listed)
        .await
        .map_err(|_| format!("no answer within {}s", DEADLINE.as_secs()))?
        .map_err(|e| format!("list pods in {namespace}: {}", crate::errors::chain(&e)))?;
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
        nodes,
        operands,
        &expected,
        &chrono::Utc::now().to_rfc3339(),
    ))
}
