//! The device plugin: capacity and allocatable of the node's `nvidia.com/*` resources once the
//! device plugin pod is Ready there, as the plugin advertises them (MIG strategy, sharing,
//! unhealthy GPUs count in capacity but not in allocatable).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;

use super::super::config::Policy;
use super::super::labels::{self, MigLayout};
use super::super::world::*;
use crate::fixture::Fault;
use crate::gpu_stack::gpu_resources;

impl World {
    #[expect(
        clippy::too_many_arguments,
        reason = "one stage of the pass, kept beside the others"
    )]
    pub(in crate::sim) fn resources(
        &mut self,
        snap: &Snapshot<'_>,
        node: &Node,
        name: &str,
        gpus: Option<&OwnedGpus<'_>>,
        policy: &Option<(String, Policy)>,
        layout: &MigLayout,
        sharing: Option<&labels::Sharing>,
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
    ) {
        let have: BTreeMap<String, (u64, u64)> = gpu_resources(node);
        // No plugin serving: allocatable drops to 0 at once; the kubelet keeps the devices in
        // capacity until the plugin's grace period has passed (kubelet devicemanager
        // `endpointStopGracePeriod`, 5 min; the fixture's `deviceCapacityGrace`), then 0.
        let gone = *self.plugin_gone.entry(name.to_string()).or_insert(now);
        let kept = self
            .fixture
            .faults_on(name)
            .any(|f| matches!(f, Fault::CapacityKept { .. }));
        let grace_ends = gone + self.fixture.device_capacity_grace;
        let in_grace = kept || now < grace_ends;
        let mut want: BTreeMap<String, (u64, u64)> = have
            .iter()
            .map(|(k, (cap, _))| (k.clone(), (if in_grace { *cap } else { 0 }, 0)))
            .collect();
        if in_grace && !kept && have.values().any(|(c, _)| *c > 0) {
            *wake = earliest(*wake, grace_ends);
        }
        // No driver on the node: the plugin cannot enumerate GPUs and advertises nothing.
        let has_driver = match (gpus, policy) {
            (Some(g), Some((_, pol))) => labels::node_driver(&pol.stack, g.host_driver).is_some(),
            _ => false,
        };
        let ready = has_driver && operand_ready(snap, name, DEVICE_PLUGIN);
        if self.due(
            name,
            "device-plugin",
            ready,
            self.delays.device_plugin,
            now,
            wake,
        ) && let (Some(g), Some((_, pol))) = (gpus, policy)
        {
            self.plugin_gone.remove(name);
            let unhealthy = self
                .fixture
                .faults_on(name)
                .find_map(|f| match f {
                    Fault::UnhealthyGpus { count, .. } => Some(*count),
                    _ => None,
                })
                .unwrap_or(0);
            let g = g.as_node_gpus();
            want.clear();
            for k in have.keys() {
                want.insert(k.clone(), (0, 0));
            }
            for (res, cap, alloc) in
                labels::device_plugin_resources(&g, &pol.stack, layout, sharing, unhealthy)
            {
                want.insert(res, (cap, alloc));
            }
        }
        // Kubelet reports a resource whose plugin went away as 0, not absent.
        want.retain(|k, v| have.contains_key(k) || *v != (0, 0));
        if want != have {
            out.push(Action::Resources {
                node: name.to_string(),
                values: want,
            });
        }
    }
}
