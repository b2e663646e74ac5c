//! NVIDIA's DRA driver, its GPU kubelet plugin: once the plugin pod is Ready on a GPU node and
//! a driver is loaded, one ResourceSlice for the node's pool, as the plugin publishes it
//! (`kubernetes-sigs/dra-driver-nvidia-gpu` `cmd/gpu-kubelet-plugin/driver.go`
//! `publishResources`, `deviceinfo.go`, `mig.go`; the k8s 1.35 resourceslice controller):
//!
//! - driver `gpu.nvidia.com`, pool and `nodeName` the node's name, one slice per pool
//!   (`resourceSliceCount: 1`, generation 1), owned by the Node;
//! - a device `gpu-<minor>` per GPU with `type`, `uuid`, `productName`, `brand`,
//!   `architecture`, `cudaComputeCapability`, `driverVersion`, `cudaDriverVersion` (versions as
//!   semver: `580.95.05` publishes as `580.95.5`), `resource.kubernetes.io/pciBusID` and
//!   `pcieRoot`, `addressingMode`, and capacity `memory` in bytes;
//! - under MIG (static MIG: only the MIG devices that exist, not their parent) a device
//!   `gpu-<minor>-mig-<profile without dots>-<profile id>-<placement start>` per instance with
//!   `type: mig`, `uuid: MIG-…`, `parentUUID`, `profile`, the parent's product, architecture
//!   and versions, and capacities `multiprocessors`, `memory` and `memorySlice<i>`.
//!
//! A fatal XID taints the GPU and its MIG devices `gpu.nvidia.com/xid=<xid>:NoSchedule`, as the
//! plugin's NVML health monitor does (`cmd/gpu-kubelet-plugin/device_health.go`, `TaintKeyXID`).
//!
//! When the plugin stops the slice goes (the kubelet removes a plugin's slices when it
//! unregisters).

use std::time::Instant;

use serde_json::{Value, json};

use super::super::labels::{self, MigLayout};
use super::super::world::*;
use crate::fixture::Fault;

use crate::gpu_stack::dra::{DRIVER as DRIVER_NAME, PLUGIN, TAINT_XID};

/// The slice's name for `node` (the 1.35 controller adds a random suffix to `<node>-<driver>-`;
/// one fixed name keeps the simulator's writes idempotent).
pub(in crate::sim) fn slice_name(node: &str) -> String {
    format!("{node}-{DRIVER_NAME}")
}

/// `580.95.05` → `580.95.5`, `7.0` → `7.0.0`: how the plugin normalises versions (semver).
pub(in crate::sim) fn semver(v: &str) -> String {
    let mut parts: Vec<String> = v
        .split('.')
        .map(|p| {
            p.parse::<u64>()
                .map_or_else(|_| p.to_string(), |n| n.to_string())
        })
        .collect();
    while parts.len() < 3 {
        parts.push("0".into());
    }
    parts.join(".")
}

/// NVML's architecture name for GFD's family.
fn architecture(family: &str) -> String {
    match family {
        "ada-lovelace" => "Ada Lovelace".into(),
        f => {
            let mut c = f.chars();
            c.next()
                .map(|first| first.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        }
    }
}

/// A memory size as the plugin's binary quantity serialises it (`16Gi`, `4864Mi`).
fn quantity(mib: u64) -> String {
    if mib.is_multiple_of(1024) {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

/// A stable UUID for GPU `index` of `node` (`GPU-…`, or `MIG-…` for a MIG device).
fn uuid(prefix: &str, node: &str, index: u32, sub: u32) -> String {
    let h = node.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x1000_0000_01b3)
    });
    format!(
        "{prefix}-{:08x}-dra0-{index:04x}-{sub:04x}-{:012x}",
        h as u32,
        h >> 16
    )
}

/// The GPU instance profile id `nvidia-smi mig -lgip` shows, by slice count (A100/H100).
fn profile_id(profile: &str) -> u32 {
    match profile.split('g').next().unwrap_or_default() {
        "1" if profile.contains("+me") => 20,
        "1" => 19,
        "2" => 14,
        "3" => 9,
        "4" => 5,
        _ => 0,
    }
}

/// Memory slices a profile takes (of 8).
fn slices(profile: &str) -> u32 {
    match profile.split('g').next().unwrap_or_default() {
        "1" => 1,
        "2" => 2,
        "3" | "4" => 4,
        _ => 8,
    }
}

/// The slice's spec for a node with these GPUs running `driver`.
pub(in crate::sim) fn slice_spec(
    node: &str,
    gpus: &labels::NodeGpus<'_>,
    product_name: &str,
    driver: &str,
    layout: &MigLayout,
) -> Value {
    let m = gpus.model;
    let cuda = driver
        .split('.')
        .next()
        .and_then(|d| d.parse().ok())
        .and_then(labels::cuda_for_driver)
        .map(|(a, b)| format!("{a}.{b}.0"))
        .unwrap_or_default();
    let brand = if ["GeForce", "GTX", "RTX"]
        .iter()
        .any(|b| m.product.contains(b))
    {
        "GeForce"
    } else {
        "Nvidia"
    };
    let common = |i: u32| {
        json!({
            "productName": {"string": product_name},
            "brand": {"string": brand},
            "architecture": {"string": architecture(&m.family)},
            "cudaComputeCapability": {"version": semver(&m.compute_capability)},
            "driverVersion": {"version": semver(driver)},
            "cudaDriverVersion": {"version": cuda},
            "resource.kubernetes.io/pciBusID": {"string": format!("0000:{:02x}:00.0", 0x10 + i * 0x10)},
            "resource.kubernetes.io/pcieRoot": {"string": format!("pci0000:{:02x}", 0x10 + i * 0x10)},
            "addressingMode": {"string": "None"},
        })
    };
    let mut devices = Vec::new();
    for i in 0..gpus.count {
        let parent = uuid("GPU", node, i, 0);
        match layout {
            MigLayout::Profiles(p) if !p.is_empty() => {
                let mut start = 0;
                let mut sub = 0;
                for (profile, n) in p {
                    let Some(mp) = m.mig_profiles.iter().find(|x| &x.name == profile) else {
                        continue;
                    };
                    for _ in 0..*n {
                        let mut attrs = common(i);
                        attrs["type"] = json!({"string": "mig"});
                        attrs["uuid"] = json!({"string": uuid("MIG", node, i, sub + 1)});
                        attrs["parentUUID"] = json!({"string": parent});
                        attrs["profile"] = json!({"string": profile});
                        let mut capacity = json!({
                            "multiprocessors": {"value": mp.multiprocessors.to_string()},
                            "memory": {"value": quantity(mp.memory_mib)},
                        });
                        for s in start..start + slices(profile) {
                            capacity[format!("memorySlice{s}")] = json!({"value": "1"});
                        }
                        let name = format!(
                            "gpu-{i}-mig-{}-{}-{start}",
                            profile.replace('.', "").replace('+', "-"),
                            profile_id(profile)
                        );
                        devices
                            .push(json!({"name": name, "attributes": attrs, "capacity": capacity}));
                        start += slices(profile);
                        sub += 1;
                    }
                }
            }
            _ => {
                let mut attrs = common(i);
                attrs["type"] = json!({"string": "gpu"});
                attrs["uuid"] = json!({"string": parent});
                devices.push(json!({
                    "name": format!("gpu-{i}"),
                    "attributes": attrs,
                    "capacity": {"memory": {"value": quantity(m.memory_mib)}},
                }));
            }
        }
    }
    json!({
        "driver": DRIVER_NAME,
        "nodeName": node,
        "pool": {"name": node, "generation": 1, "resourceSliceCount": 1},
        "devices": devices,
    })
}

impl World {
    /// The node's slice while the kubelet plugin is Ready there; none once it is gone.
    #[expect(
        clippy::too_many_arguments,
        reason = "one stage of the pass, kept beside the others"
    )]
    pub(in crate::sim) fn dra(
        &mut self,
        snap: &Snapshot<'_>,
        name: &str,
        gpus: Option<&OwnedGpus<'_>>,
        driver: Option<&String>,
        layout: &MigLayout,
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
    ) {
        let ready = gpus.is_some() && driver.is_some() && operand_ready(snap, name, PLUGIN);
        let have = snap
            .slices
            .iter()
            .find(|s| s.spec.node_name.as_deref() == Some(name) && s.spec.driver == DRIVER_NAME);
        if !self.due(name, "dra", ready, self.delays.device_plugin, now, wake) {
            if let Some(s) = have {
                out.push(Action::Slice {
                    name: s.metadata.name.clone().unwrap_or_else(|| slice_name(name)),
                    node: name.to_string(),
                    spec: None,
                });
            }
            return;
        }
        let (Some(g), Some(driver)) = (gpus, driver) else {
            return;
        };
        let product_name = self.nvml_name(g.model);
        let mut want = slice_spec(name, &g.as_node_gpus(), &product_name, driver, layout);
        for f in self.fixture.faults_on(name) {
            match f {
                Fault::DraIncompletePool { .. } => want["pool"]["resourceSliceCount"] = json!(2),
                Fault::DraAttribute {
                    attribute, value, ..
                } => {
                    for d in want["devices"].as_array_mut().into_iter().flatten() {
                        // The same value type the plugin writes under this name.
                        let ty = d["attributes"][attribute.as_str()]
                            .as_object()
                            .and_then(|o| o.keys().next().cloned())
                            .unwrap_or_else(|| "string".into());
                        d["attributes"][attribute.as_str()] = json!({ty: value});
                    }
                }
                Fault::TaintedDevice { gpu, xid, .. } => {
                    let whole = format!("gpu-{gpu}");
                    let migs = format!("gpu-{gpu}-mig-");
                    for d in want["devices"].as_array_mut().into_iter().flatten() {
                        let name = d["name"].as_str().unwrap_or_default().to_string();
                        if name == whole || name.starts_with(&migs) {
                            d["taints"] =
                                json!([{"key": TAINT_XID, "value": xid, "effect": "NoSchedule"}]);
                        }
                    }
                }
                _ => {}
            }
        }
        let same = have
            .and_then(|s| serde_json::to_value(&s.spec).ok())
            .is_some_and(|v| same_spec(&v, &want));
        if !same {
            out.push(Action::Slice {
                name: slice_name(name),
                node: name.to_string(),
                spec: Some(want),
            });
        }
    }

    /// The name NVML reports for a model (the performance table's first CUDA device name), else
    /// GFD's product with its dashes back to spaces.
    fn nvml_name(&self, model: &crate::catalog::GpuModel) -> String {
        let key = self
            .catalog
            .model_by_product(&model.product)
            .map(|(k, _)| k.to_string())
            .unwrap_or_default();
        self.perf
            .as_ref()
            .and_then(|p| p.models.get(model.perf_key(&key)))
            .and_then(|m| m.names.first().cloned())
            .unwrap_or_else(|| model.product.replace('-', " "))
    }
}

/// Whether a stored spec holds what the plugin would publish (the API server adds defaults
/// such as `allNodes: false`, so only the fields the plugin writes are compared).
fn same_spec(have: &Value, want: &Value) -> bool {
    // The API server stamps each taint's `timeAdded`.
    let mut have = have.clone();
    for d in have["devices"].as_array_mut().into_iter().flatten() {
        let taints = d.get_mut("taints").and_then(Value::as_array_mut);
        for t in taints.into_iter().flatten() {
            if let Some(t) = t.as_object_mut() {
                t.remove("timeAdded");
            }
        }
    }
    ["driver", "nodeName", "pool", "devices"]
        .iter()
        .all(|k| have.get(*k) == want.get(*k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_sizes_are_written_as_the_plugin_writes_them() {
        assert_eq!(semver("580.95.05"), "580.95.5");
        assert_eq!(semver("580.126.20"), "580.126.20");
        assert_eq!(semver("7.0"), "7.0.0");
        assert_eq!(quantity(16384), "16Gi");
        assert_eq!(quantity(4864), "4864Mi");
        assert_eq!(architecture("ada-lovelace"), "Ada Lovelace");
        assert_eq!(architecture("hopper"), "Hopper");
        assert_eq!(profile_id("1g.5gb"), 19);
        assert_eq!(profile_id("3g.20gb"), 9);
        assert_eq!(profile_id("7g.40gb"), 0);
        assert_ne!(uuid("GPU", "a", 0, 0), uuid("GPU", "a", 1, 0));
        assert_ne!(uuid("GPU", "a", 0, 0), uuid("GPU", "b", 0, 0));
    }
}
