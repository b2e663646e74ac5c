//! After the install: wait (a watch on the ClusterPolicy, with a deadline) until the operator
//! reports `ready`. Only then have NFD and GFD labelled every GPU node, so only then does the
//! node list show which nodes have GPUs and what they are; a fresh node shows nothing before.

use std::time::Duration;

use kube::api::DynamicObject;
use kube::{Api, Client};

use crate::gpu_stack::operator::cluster_policy;

/// The ClusterPolicy's name, in the real chart and the fixture chart.
pub const POLICY_NAME: &str = "cluster-policy";

/// Whether a ClusterPolicy (if there is one) reports `status.state: ready`.
pub fn is_ready(policy: Option<&DynamicObject>) -> bool {
    policy
        .and_then(|o| o.data.pointer("/status/state"))
        .and_then(|s| s.as_str())
        == Some("ready")
}

/// Whether the ClusterPolicy reached `ready` within `limit` (a watch error or the deadline is
/// `false`: the operator check then reports why).
pub async fn policy_ready(client: &Client, limit: Duration) -> bool {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &cluster_policy());
    matches!(
        tokio::time::timeout(
            limit,
            kube::runtime::wait::await_condition(api, POLICY_NAME, is_ready)
        )
        .await,
        Ok(Ok(Some(_)))
    )
}
