//! ClusterPolicy status: `state` and the `Ready` condition with the operator's own reasons,
//! from whether every operand DaemonSet is available and every GPU node is served.

use std::sync::Arc;

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::super::world::*;
use crate::fixture::Fault;
use crate::gpu_stack::{gpu_resources, kwok_managed, nfd};

impl World {
    pub(in crate::sim) fn policy_status(
        &self,
        snap: &Snapshot<'_>,
        name: &str,
        namespace: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let (ready, reason, message) = self.policy_readiness(snap, namespace);
        let current = snap.policy.and_then(|p| p.data.get("status"));
        let state = if ready { "ready" } else { "notReady" };
        let same = current.is_some_and(|s| {
            s.get("state").and_then(Value::as_str) == Some(state)
                && s.get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .is_some_and(|c| {
                        c["reason"] == reason.as_str() && c["message"] == message.as_str()
                    })
        });
        if same {
            return;
        }
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let generation = snap.policy.and_then(|p| p.metadata.generation).unwrap_or(1);
        let status = json!({
            "state": state,
            "namespace": namespace.unwrap_or("gpu-operator"),
            "conditions": [
                {
                    "type": "Ready",
                    "status": if ready { "True" } else { "False" },
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                },
                {
                    "type": "Error",
                    "status": "False",
                    "reason": if ready { "Ready" } else { reason.as_str() },
                    "message": "",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                },
            ],
        });
        out.push(Action::PolicyStatus {
            name: name.to_string(),
            status,
        });
    }

    /// `(ready, reason, message)` the operator would report.
    pub(in crate::sim) fn policy_readiness(
        &self,
        snap: &Snapshot<'_>,
        namespace: Option<&str>,
    ) -> (bool, String, String) {
        for f in &self.fixture.faults {
            if let Fault::ClusterPolicyNotReady { reason, message } = f {
                return (false, reason.clone(), message.clone());
            }
        }
        let device_plugin = snap
            .policy
            .and_then(|p| p.data.pointer("/spec/devicePlugin/enabled"))
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(true);
        let dra_plugin = snap
            .daemonsets
            .iter()
            .any(|d| d.name_any() == crate::gpu_stack::dra::PLUGIN);
        let gpu_nodes: Vec<&Arc<Node>> = snap
            .nodes
            .iter()
            .filter(|n| nfd::has_nvidia_pci(n.labels()))
            .collect();
        if gpu_nodes.is_empty() {
            let any_nfd = snap.nodes.iter().any(|n| {
                n.labels()
                    .contains_key("feature.node.kubernetes.io/kernel-version.full")
            });
            return if any_nfd {
                (
                    false,
                    "NoGPUNodes".into(),
                    "no GPU nodes found in the cluster".into(),
                )
            } else {
                (
                    false,
                    "NFDLabelsMissing".into(),
                    "NFD labels missing in the cluster: install NFD or enable nfd in the chart"
                        .into(),
                )
            };
        }
        // The operator labels GPU nodes before its DaemonSets can target them, and the
        // validator's plugin check waits for the device plugin to register: until both hold on
        // every GPU node the operands are not ready, whatever the (still empty) DaemonSets say.
        for n in &gpu_nodes {
            let labels = n.labels();
            if labels.get("nvidia.com/gpu.present").map(String::as_str) != Some("true") {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!("node {} is not labelled for operands yet", n.name_any()),
                );
            }
            // GFD decides MIG capability, which decides whether mig-manager must run there.
            if kwok_managed(n) && !labels.contains_key("nvidia.com/mig.capable") {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!(
                        "gpu-feature-discovery has not labelled node {} yet",
                        n.name_any()
                    ),
                );
            }
            if labels.get("nvidia.com/mig.capable").map(String::as_str) == Some("true")
                && !labels.contains_key("nvidia.com/gpu.deploy.mig-manager")
            {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!("node {} is not labelled for mig-manager yet", n.name_any()),
                );
            }
            // Without the device plugin (the DRA stack) there is no GPU resource to wait for;
            // the DRA driver's kubelet plugin has registered once the node's slice is there.
            if kwok_managed(n) && !device_plugin {
                let published = snap
                    .slices
                    .iter()
                    .any(|s| s.spec.node_name.as_deref() == Some(n.name_any().as_str()));
                if dra_plugin && !published {
                    return (
                        false,
                        "OperandNotReady".into(),
                        format!(
                            "{}: no ResourceSlice published for node {} yet",
                            crate::gpu_stack::dra::PLUGIN,
                            n.name_any()
                        ),
                    );
                }
                continue;
            }
            if kwok_managed(n) && gpu_resources(n).values().all(|(cap, _)| *cap == 0) {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!(
                        "nvidia-operator-validator: no GPU resource registered on node {} yet",
                        n.name_any()
                    ),
                );
            }
        }
        let mut operands: Vec<&Arc<DaemonSet>> = snap
            .daemonsets
            .iter()
            .filter(|d| {
                d.namespace().as_deref() == namespace
                    && d.labels()
                        .get("app.kubernetes.io/part-of")
                        .map(String::as_str)
                        == Some("gpu-operator")
            })
            .collect();
        operands.sort_by_key(|d| d.name_any());
        if operands.is_empty() {
            return (
                false,
                "OperandNotReady".into(),
                "no operand daemonsets yet".into(),
            );
        }
        for ds in operands {
            let selector = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default();
            let expected = snap
                .nodes
                .iter()
                .filter(|n| selector.iter().all(|(k, v)| n.labels().get(k) == Some(v)))
                .count();
            let status = ds.status.as_ref();
            let desired = status.map_or(0, |s| s.desired_number_scheduled);
            let available = status.and_then(|s| s.number_available).unwrap_or(0);
            let observed = status.and_then(|s| s.observed_generation);
            let current = observed.is_some() && observed == ds.metadata.generation;
            let expected = i32::try_from(expected).unwrap_or(i32::MAX);
            if !current || desired != expected || available < desired {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!(
                        "{} is not ready: {available} of {expected} pods available",
                        ds.name_any()
                    ),
                );
            }
        }
        (
            true,
            "Reconciled".into(),
            "ClusterPolicy is ready as all resources have been successfully reconciled".into(),
        )
    }
}
