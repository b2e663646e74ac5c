//! Probe pods on simulated nodes: what the secure-access probe prints in each container, from
//! the devices that container was given — the DRA claims it references (their allocation, as
//! the scheduler wrote it) or the `nvidia.com/*` limits it asks the device plugin for. A
//! `leakyDevice` fault makes a container without devices see one, as a runtime that exposes
//! every device node to every container would.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::api::resource::v1::ResourceClaim;
use kube::ResourceExt;

use crate::gpu_stack::probe;
use crate::gpu_stack::resources;

/// Whether a pod is one of the probe's.
pub fn is_probe(p: &Pod) -> bool {
    p.labels()
        .get(crate::gpu_stack::ours::CHECK_LABEL)
        .map(String::as_str)
        == Some(probe::CHECK)
        && crate::gpu_stack::on_node_name(p).is_some()
}

/// The devices `(pool, device)` a container was allocated through the DRA claims it references
/// (named claims, or the pod's own claims made from a template); `None` while a claim it
/// references is not allocated in what the simulator has seen yet.
pub fn claimed(
    pod: &Pod,
    container: &Container,
    claims: &[Arc<ResourceClaim>],
) -> Option<Vec<(String, String)>> {
    let spec = pod.spec.as_ref()?;
    let ns = pod.namespace().unwrap_or_default();
    // A pod claim's name → the ResourceClaim behind it (named, or made from a template).
    let claim_of = |pod_claim: &str| -> Option<String> {
        let entry = spec
            .resource_claims
            .iter()
            .flatten()
            .find(|c| c.name == pod_claim)?;
        entry.resource_claim_name.clone().or_else(|| {
            pod.status
                .as_ref()?
                .resource_claim_statuses
                .iter()
                .flatten()
                .find(|s| s.name == pod_claim)?
                .resource_claim_name
                .clone()
        })
    };
    let mut out = Vec::new();
    let refs = container.resources.as_ref().and_then(|r| r.claims.as_ref());
    for rc in refs.into_iter().flatten() {
        let name = claim_of(&rc.name)?;
        let k = claims
            .iter()
            .find(|k| k.name_any() == name && k.namespace().as_deref() == Some(ns.as_str()))?;
        out.extend(crate::gpu_stack::dra::allocation(k)?);
    }
    Some(out)
}

/// Devices each container sees: `(container, count)` in spec order; `None` while a claim a
/// container references is not allocated in what the simulator has seen yet.
pub fn counts(pod: &Pod, claims: &[Arc<ResourceClaim>], leaky: bool) -> Option<Vec<(String, u32)>> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .map(|c| {
            let from_claims = u32::try_from(claimed(pod, c, claims)?.len()).unwrap_or(0);
            let from_limits: u32 = c
                .resources
                .as_ref()
                .and_then(|r| r.limits.as_ref())
                .into_iter()
                .flatten()
                .filter(|(k, _)| k.starts_with(resources::PREFIX))
                .filter_map(|(_, q)| q.0.parse::<u32>().ok())
                .sum();
            let mut n = from_claims + from_limits;
            if leaky && n == 0 {
                n = 1;
            }
            Some((c.name.clone(), n))
        })
        .collect()
}

/// The probe's log line for `n` devices.
pub fn line(n: u32) -> String {
    format!("{}{n}", probe::PREFIX)
}
