//! How each GPU node's GPUs are allocated: by the device plugin (`nvidia.com/*` extended
//! resources) or by the DRA driver (a complete `gpu.nvidia.com` pool with an untainted
//! device). Deterministic and fail-closed, after the AI-conformance suite's detection
//! (`kubernetes-sigs/ai-conformance` `test/allocation_mode_test.go`): a node served by both
//! (one GPU could be handed out twice), a node served by neither, and a DeviceClass that maps
//! `nvidia.com/gpu` onto DRA while the device plugin also serves `nvidia.com/gpu` (which of the
//! two answers a request would not be deterministic) are each a named problem, never a guess.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceSlice};
use kube::ResourceExt;

use crate::gpu_stack::{dra, gpu_resources, resources};

/// A node's allocation mechanism.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The device plugin's extended resources.
    DevicePlugin,
    /// The DRA driver's ResourceSlices.
    Dra,
}

impl Mode {
    /// `device-plugin` or `dra`.
    pub fn word(self) -> &'static str {
        match self {
            Self::DevicePlugin => "device-plugin",
            Self::Dra => "dra",
        }
    }
}

/// Devices of `node` in a complete `gpu.nvidia.com` pool that carry no NoSchedule or NoExecute
/// taint (`None`: no complete pool).
fn dra_devices(node: &str, slices: &[ResourceSlice]) -> Option<usize> {
    let mine: Vec<&ResourceSlice> = slices
        .iter()
        .filter(|s| s.spec.driver == dra::DRIVER && s.spec.node_name.as_deref() == Some(node))
        .collect();
    let current = super::dra_judge::complete(&mine).ok()?;
    Some(
        current
            .iter()
            .flat_map(|s| s.spec.devices.iter().flatten())
            .filter(|d| {
                !d.taints
                    .iter()
                    .flatten()
                    .any(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            })
            .count(),
    )
}

/// Why a node's mode cannot be decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Neither mechanism serves the node (rather than two at once).
    pub neither: bool,
    /// What is wrong, naming the node.
    pub message: String,
}

/// One node's mode, or why it cannot be decided.
pub fn one(
    nodes: &[Node],
    name: &str,
    classes: &[DeviceClass],
    slices: &[ResourceSlice],
) -> Result<Mode, Problem> {
    let mapping: Vec<String> = classes
        .iter()
        .filter(|c| c.spec.extended_resource_name.as_deref() == Some(resources::GPU))
        .map(ResourceExt::name_any)
        .collect();
    let plugin: u64 = nodes
        .iter()
        .find(|n| n.name_any() == name)
        .map(|n| {
            gpu_resources(n)
                .into_iter()
                .filter(|(k, _)| k.starts_with(resources::PREFIX))
                .map(|(_, (_, alloc))| alloc)
                .sum()
        })
        .unwrap_or(0);
    let drad = dra_devices(name, slices).filter(|n| *n > 0);
    let problem = |neither: bool, message: String| Err(Problem { neither, message });
    match (plugin > 0, drad) {
        (true, Some(d)) => problem(
            false,
            format!(
                "{name}: its GPUs are served by the device plugin ({plugin} allocatable nvidia.com devices) and by the DRA driver (pool {name}, {d} devices): one GPU could be allocated twice"
            ),
        ),
        (false, None) => problem(
            true,
            format!(
                "{name}: neither the device plugin (no allocatable nvidia.com resource) nor the DRA driver (no complete {} pool with an untainted device) serves its GPUs",
                dra::DRIVER
            ),
        ),
        (true, None) if !mapping.is_empty() => problem(
            false,
            format!(
                "{name}: the device plugin serves {} here while DeviceClass {} maps it to DRA: which of the two answers a request is not deterministic",
                resources::GPU,
                mapping.join(", ")
            ),
        ),
        (true, None) => Ok(Mode::DevicePlugin),
        (false, Some(_)) => Ok(Mode::Dra),
    }
}

/// Each GPU node's mode, or every problem found.
pub fn detect(
    nodes: &[Node],
    gpu_nodes: &[String],
    classes: &[DeviceClass],
    slices: &[ResourceSlice],
) -> Result<BTreeMap<String, Mode>, Vec<String>> {
    let mut modes = BTreeMap::new();
    let mut problems = Vec::new();
    for name in gpu_nodes {
        match one(nodes, name, classes, slices) {
            Ok(m) => {
                modes.insert(name.clone(), m);
            }
            Err(p) => problems.push(p.message),
        }
    }
    if problems.is_empty() {
        Ok(modes)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, gpus: u32) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"capacity": {"nvidia.com/gpu": gpus.to_string()}, "allocatable": {"nvidia.com/gpu": gpus.to_string()}}
        }))
        .expect("node")
    }

    fn slice(
        node: &str,
        count: i64,
        written: usize,
        devices: usize,
        taint: Option<&str>,
    ) -> Vec<ResourceSlice> {
        (0..written)
            .map(|i| {
                let devs: Vec<serde_json::Value> = (0..devices)
                    .map(|d| {
                        let mut v = serde_json::json!({"name": format!("gpu-{d}")});
                        if let Some(effect) = taint {
                            v["taints"] = serde_json::json!([{"key": "gpu.nvidia.com/xid", "value": "79", "effect": effect}]);
                        }
                        v
                    })
                    .collect();
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("{node}-gpu.nvidia.com-{i}")},
                    "spec": {"driver": "gpu.nvidia.com", "nodeName": node, "devices": devs,
                             "pool": {"name": node, "generation": 1, "resourceSliceCount": count}}
                }))
                .expect("slice")
            })
            .collect()
    }

    fn class(name: &str, extended: Option<&str>) -> DeviceClass {
        let mut spec = serde_json::json!({});
        if let Some(e) = extended {
            spec["extendedResourceName"] = serde_json::json!(e);
        }
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}, "spec": spec}))
            .expect("class")
    }

    #[test]
    fn modes_are_decided_per_node_and_ambiguity_fails_closed() {
        let g = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let gpu = class("gpu.nvidia.com", None);
        let mapped = class("gpu.nvidia.com", Some("nvidia.com/gpu"));
        // One DRA node, one device-plugin node: both decided.
        let nodes = [node("a", 0), node("b", 4)];
        let got = detect(
            &nodes,
            &g(&["a", "b"]),
            std::slice::from_ref(&gpu),
            &slice("a", 1, 1, 4, None),
        )
        .expect("decided");
        assert_eq!(
            got,
            BTreeMap::from([("a".into(), Mode::Dra), ("b".into(), Mode::DevicePlugin)])
        );
        let err =
            |r: Result<BTreeMap<String, Mode>, Vec<String>>| r.expect_err("problems").join("\n");
        // Both on one node.
        let e = err(detect(
            &[node("a", 4)],
            &g(&["a"]),
            std::slice::from_ref(&gpu),
            &slice("a", 1, 1, 4, None),
        ));
        assert!(e.contains("a: its GPUs are served by the device plugin (4 allocatable nvidia.com devices) and by the DRA driver (pool a, 4 devices)"), "{e}");
        // A class mapping nvidia.com/gpu while the plugin serves it.
        let e = err(detect(&[node("b", 4)], &g(&["b"]), &[mapped], &[]));
        assert!(
            e.contains("DeviceClass gpu.nvidia.com maps it to DRA"),
            "{e}"
        );
        // An incomplete pool, a pool of tainted devices, nothing at all: not served.
        for slices in [
            slice("a", 2, 1, 4, None),
            slice("a", 1, 1, 4, Some("NoSchedule")),
            Vec::new(),
        ] {
            let e = err(detect(
                &[node("a", 0)],
                &g(&["a"]),
                std::slice::from_ref(&gpu),
                &slices,
            ));
            assert!(e.contains("a: neither the device plugin"), "{e}");
        }
        // A taint that only informs (effect None) leaves the device usable.
        let ok = detect(
            &[node("a", 0)],
            &g(&["a"]),
            &[gpu],
            &slice("a", 1, 1, 4, Some("None")),
        )
        .expect("usable");
        assert_eq!(ok["a"], Mode::Dra);
    }
}
