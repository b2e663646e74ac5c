//! Asking for GPUs the way each node hands them out: a DRA claim on a node the DRA driver
//! serves, a device-plugin limit elsewhere ([`super::alloc_mode`]).
//!
//! The allocatable, workload and throughput checks say what they need in the device plugin's
//! words — `nvidia.com/gpu: 4`, `nvidia.com/mig-3g.20gb: 1`, the names their expectations are
//! written in. On a DRA node this module turns those into ResourceClaim requests of the DRA
//! driver's DeviceClasses (`gpu.nvidia.com`; `mig.nvidia.com` with a CEL selector on the
//! profile), reads what the node's pool offers in the same words, and expects of a DRA node
//! what its expectation and MIG layout say ([`super::dra_judge::want`]). Sharing configs are
//! the device plugin's: a DRA node's devices are counted unshared (the DRA driver shares
//! through a claim's configuration, not by advertising replicas).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaim, ResourceSlice};
use kube::api::ListParams;
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::alloc_mode::{self, Mode};
use super::{Ctx, GpuNode, dra_judge};
use crate::gpu_stack::dra::{self, attr};
use crate::gpu_stack::resources;

/// The pod-level name of the claim a check's pod uses.
pub const POD_CLAIM: &str = "gpus";

/// The cluster's allocation objects, read once per check.
pub struct Modes {
    nodes: Vec<Node>,
    classes: Vec<DeviceClass>,
    slices: Vec<ResourceSlice>,
}

/// How one node is asked for devices, and whether that is in doubt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The mechanism to ask through.
    pub mode: Mode,
    /// Two mechanisms could answer (a named problem; checks fail closed on it). A node that
    /// neither serves is not ambiguous: its requests will fail on their own, saying why.
    pub ambiguous: Option<String>,
}

impl Decision {
    /// The node's failed testcase when two mechanisms could answer (checks fail closed).
    pub fn ambiguity(&self, g: &GpuNode) -> Option<super::Outcome> {
        let why = self.ambiguous.as_ref()?;
        Some(super::Outcome::fail(
            g.name.clone(),
            Some(&g.name),
            format!("allocation mode: {why}"),
            "",
        ))
    }
}

impl Modes {
    /// Lists nodes, DeviceClasses and the DRA driver's ResourceSlices (the DRA objects are
    /// optional: a cluster that does not serve them is a device-plugin cluster).
    pub async fn read(ctx: &Ctx<'_>) -> Self {
        let nodes = Api::<Node>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let classes = Api::<DeviceClass>::all(ctx.client.clone())
            .list(&ListParams::default())
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let slices = Api::<ResourceSlice>::all(ctx.client.clone())
            .list(&ListParams::default().fields(&format!("spec.driver={}", dra::DRIVER)))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        Self {
            nodes,
            classes,
            slices,
        }
    }

    /// The same objects with newer slices.
    pub fn with_slices(self, slices: Vec<ResourceSlice>) -> Self {
        Self { slices, ..self }
    }

    /// The node object, as listed.
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name_any() == name)
    }

    /// The DRA driver's slices.
    pub fn slices(&self) -> &[ResourceSlice] {
        &self.slices
    }

    /// How `node` is asked. A node neither mechanism serves is asked through DRA when the DRA
    /// driver has published for it (or the cluster has its DeviceClass and the node advertises
    /// no `nvidia.com` resource at all), else through the device plugin.
    pub fn decide(&self, node: &str) -> Decision {
        match alloc_mode::one(&self.nodes, node, &self.classes, &self.slices) {
            Ok(mode) => Decision {
                mode,
                ambiguous: None,
            },
            Err(p) if p.neither => {
                let published = self
                    .slices
                    .iter()
                    .any(|s| s.spec.node_name.as_deref() == Some(node));
                let class = self.classes.iter().any(|c| c.name_any() == dra::GPU_CLASS);
                let advertises = self.node(node).is_some_and(|n| {
                    crate::gpu_stack::gpu_resources(n)
                        .keys()
                        .any(|k| k.starts_with(resources::PREFIX))
                });
                let mode = if published || (class && !advertises) {
                    Mode::Dra
                } else {
                    Mode::DevicePlugin
                };
                Decision {
                    mode,
                    ambiguous: None,
                }
            }
            Err(p) => Decision {
                mode: Mode::DevicePlugin,
                ambiguous: Some(p.message),
            },
        }
    }
}

/// What a DRA node's pool must offer, in the device plugin's words: `nvidia.com/gpu: <GPUs>`,
/// or under a MIG layout `nvidia.com/mig-<profile>: <devices>` (with `nvidia.com/gpu: 0`).
pub fn expected(node: &Node, g: &GpuNode, ctx: &Ctx<'_>) -> Result<BTreeMap<String, u64>, String> {
    let w = dra_judge::want(node, g, ctx.plan.expect_driver.as_ref())?;
    Ok(expected_of(&w))
}

fn expected_of(w: &dra_judge::Want) -> BTreeMap<String, u64> {
    if !w.mig {
        return BTreeMap::from([(resources::GPU.to_string(), w.devices as u64)]);
    }
    let mut out: BTreeMap<String, u64> = w
        .profiles
        .iter()
        .map(|(p, n)| (format!("{}{p}", resources::MIG_PREFIX), *n))
        .collect();
    out.insert(resources::GPU.to_string(), 0);
    out
}

/// What `node`'s complete pool offers, in the device plugin's words, counting only devices
/// without a NoSchedule or NoExecute taint; and the tainted devices, named with their taints.
pub fn usable(
    node: &str,
    slices: &[ResourceSlice],
) -> Result<(BTreeMap<String, u64>, Vec<String>), String> {
    let mine: Vec<&ResourceSlice> = slices
        .iter()
        .filter(|s| s.spec.driver == dra::DRIVER && s.spec.node_name.as_deref() == Some(node))
        .collect();
    let pool = dra_judge::complete(&mine)?;
    let mut counts = BTreeMap::new();
    let mut tainted = Vec::new();
    for d in pool.iter().flat_map(|s| s.spec.devices.iter().flatten()) {
        let blocking: Vec<String> = d
            .taints
            .iter()
            .flatten()
            .filter(|t| t.effect == "NoSchedule" || t.effect == "NoExecute")
            .map(|t| {
                format!(
                    "{}={}:{}",
                    t.key,
                    t.value.as_deref().unwrap_or_default(),
                    t.effect
                )
            })
            .collect();
        if !blocking.is_empty() {
            tainted.push(format!("{} ({})", d.name, blocking.join(", ")));
            continue;
        }
        let string = |name: &str| {
            d.attributes
                .as_ref()
                .and_then(|a| a.get(name))
                .and_then(|a| a.string.clone())
        };
        let kind = match (string(attr::TYPE).as_deref(), string(attr::PROFILE)) {
            (Some("mig"), Some(profile)) => format!("{}{profile}", resources::MIG_PREFIX),
            _ => resources::GPU.to_string(),
        };
        *counts.entry(kind).or_insert(0) += 1;
    }
    Ok((counts, tainted))
}

/// The requests of a claim for `want` (kind → count; kinds with 0 are left out): one request
/// per kind, whole GPUs from `gpu.nvidia.com`, MIG devices from `mig.nvidia.com` of the profile.
pub fn requests(want: &BTreeMap<String, u64>) -> Vec<Value> {
    want.iter()
        .filter(|(_, n)| **n > 0)
        .map(|(kind, n)| match kind.strip_prefix(resources::MIG_PREFIX) {
            Some(profile) => {
                let name: String = format!("mig-{profile}")
                    .chars()
                    .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                    .collect();
                json!({"name": name, "exactly": {
                    "deviceClassName": dra::MIG_CLASS,
                    "allocationMode": "ExactCount",
                    "count": n,
                    "selectors": [{"cel": {"expression": format!(
                        "device.attributes[\"{}\"].{} == \"{profile}\"", dra::DRIVER, attr::PROFILE
                    )}}],
                }})
            }
            None => json!({"name": "gpu", "exactly": {
                "deviceClassName": dra::GPU_CLASS,
                "allocationMode": "ExactCount",
                "count": n,
            }}),
        })
        .collect()
}

/// A ResourceClaim named `name` for `want`.
pub fn claim(name: &str, labels: &Value, want: &BTreeMap<String, u64>) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "labels": labels},
        "spec": {"devices": {"requests": requests(want)}},
    })
}

/// A ResourceClaimTemplate named `name` for `want` (each pod made from it gets its own claim,
/// deleted with the pod).
pub fn template(name: &str, labels: &Value, want: &BTreeMap<String, u64>) -> Value {
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaimTemplate",
        "metadata": {"name": name, "labels": labels},
        "spec": {"metadata": {"labels": labels}, "spec": {"devices": {"requests": requests(want)}}},
    })
}

/// Devices of each node's pool allocated to claims other than this run's: node → the claims
/// (`namespace/name`), one entry per device. `None` when claims cannot be listed.
pub async fn held(ctx: &Ctx<'_>) -> Option<BTreeMap<String, Vec<String>>> {
    let all: Api<ResourceClaim> = Api::all(ctx.client.clone());
    let list = all.list(&ListParams::default()).await.ok()?;
    let ours = crate::gpu_stack::ours::run_label(&ctx.run_id);
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for c in list.items {
        if c.labels().get(crate::gpu_stack::ours::RUN_LABEL) == Some(&ours) {
            continue;
        }
        let who = format!("{}/{}", c.namespace().unwrap_or_default(), c.name_any());
        let results = c
            .status
            .as_ref()
            .and_then(|s| s.allocation.as_ref())
            .and_then(|a| a.devices.as_ref())
            .and_then(|d| d.results.as_ref());
        for r in results
            .into_iter()
            .flatten()
            .filter(|r| r.driver == dra::DRIVER)
        {
            out.entry(r.pool.clone()).or_default().push(who.clone());
        }
    }
    Some(out)
}

/// Why a check that needs `needed` of the `usable` devices of `node`'s pool must skip it:
/// other claims hold too many. `None` when they are free or unknown.
pub fn busy(
    held: Option<&BTreeMap<String, Vec<String>>>,
    node: &str,
    usable: u64,
    needed: u64,
) -> Option<String> {
    let by = held?.get(node)?;
    let used = by.len() as u64;
    let free = usable.saturating_sub(used);
    let mut names = by.clone();
    names.dedup();
    (free < needed).then(|| {
        format!(
            "{node}: {used} of {usable} devices of DRA pool {node} are allocated to other claims ({}), {free} free; the check needs {needed}",
            names.join(", ")
        )
    })
}

/// Whether a bench measured exactly the whole GPUs its claim was allocated: `allocated` holds
/// each allocated device's name and the UUID the DRA driver published for it (NVML's, the
/// same one CUDA shows the container), `measured` the UUIDs in the bench's document. `Ok` gives
/// the detail (`gpu-0 GPU-…, gpu-2 GPU-…`), or `None` when there is nothing to compare: a
/// device published without a UUID. `Err` names the devices measured but not allocated, or
/// allocated but not measured: the numbers would belong to other GPUs.
pub fn same_gpus(
    allocated: &[(String, Option<String>)],
    measured: &[&str],
) -> Result<Option<String>, String> {
    if allocated
        .iter()
        .any(|(_, u)| u.as_deref().is_none_or(str::is_empty))
    {
        return Ok(None);
    }
    let uuid = |(_, u): &(String, Option<String>)| u.clone().unwrap_or_default();
    let want: std::collections::BTreeSet<String> = allocated.iter().map(uuid).collect();
    let got: std::collections::BTreeSet<String> = measured.iter().map(|u| u.to_string()).collect();
    let named = |(d, u): &(String, Option<String>)| format!("{d} {}", u.as_deref().unwrap_or(""));
    if want == got && allocated.len() == measured.len() {
        return Ok(Some(
            allocated.iter().map(named).collect::<Vec<_>>().join(", "),
        ));
    }
    let mut why = Vec::new();
    let extra: Vec<&String> = got.difference(&want).collect();
    if !extra.is_empty() {
        why.push(format!(
            "measured {} that its claim was not allocated",
            extra
                .iter()
                .map(|u| u.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let missing: Vec<String> = allocated
        .iter()
        .filter(|a| !got.contains(&uuid(a)))
        .map(named)
        .collect();
    if !missing.is_empty() {
        why.push(format!("did not measure allocated {}", missing.join(", ")));
    }
    if why.is_empty() {
        why.push(format!(
            "measured {} devices for {} allocated",
            measured.len(),
            allocated.len()
        ));
    }
    Err(format!("the bench {}", why.join("; ")))
}

/// Each allocated device `(pool, device)` with the UUID its pool's slices publish for it.
pub fn allocated_uuids(
    allocated: &[(String, String)],
    slices: &[ResourceSlice],
) -> Vec<(String, Option<String>)> {
    allocated
        .iter()
        .map(|(pool, device)| {
            let uuid = dra::device_string(slices, pool, device, attr::UUID).map(str::to_string);
            (device.clone(), uuid)
        })
        .collect()
}

/// Claim name → the devices `(pool, device)` it was last seen allocated.
type Seen = BTreeMap<String, Vec<(String, String)>>;

/// The allocations of a check's claims as they happen, from a watch started before its pods
/// run: the resourceclaim controller deallocates a claim once its pod is done, before the
/// check reads what the pod measured. The watch stops when this is dropped.
pub struct Allocations {
    seen: std::sync::Arc<std::sync::Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Allocations {
    /// Watches the claims in `api` that carry `labels` (a label selector).
    pub fn watch(api: Api<ResourceClaim>, labels: &str) -> Self {
        use futures::StreamExt;
        use kube::runtime::{WatchStreamExt, watcher};
        let seen = std::sync::Arc::new(std::sync::Mutex::new(BTreeMap::new()));
        let into = seen.clone();
        let cfg = watcher::Config::default().labels(labels);
        let task = tokio::spawn(async move {
            let events = watcher(api, cfg).default_backoff().applied_objects();
            let mut events = std::pin::pin!(events);
            while let Some(ev) = events.next().await {
                let Ok(claim) = ev else { continue };
                if let Some(a) = dra::allocation(&claim)
                    && let Ok(mut m) = into.lock()
                {
                    m.insert(claim.name_any(), a);
                }
            }
        });
        Self { seen, task }
    }

    /// The devices claim `name` was last seen allocated.
    pub fn get(&self, name: &str) -> Option<Vec<(String, String)>> {
        self.seen.lock().ok()?.get(name).cloned()
    }
}

impl Drop for Allocations {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Where a pod's claim comes from.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A ResourceClaim of this name.
    Claim(&'a str),
    /// A ResourceClaimTemplate of this name.
    Template(&'a str),
}

/// Makes the pod spec's first container use the claim instead of any `nvidia.com` limits.
pub fn attach(spec: &mut Value, source: Source<'_>) {
    spec["resourceClaims"] = match source {
        Source::Claim(n) => json!([{"name": POD_CLAIM, "resourceClaimName": n}]),
        Source::Template(n) => json!([{"name": POD_CLAIM, "resourceClaimTemplateName": n}]),
    };
    if let Some(c) = spec["containers"].get_mut(0) {
        if let Some(limits) = c["resources"]["limits"].as_object_mut() {
            limits.retain(|k, _| !k.starts_with(resources::PREFIX));
        }
        c["resources"]["claims"] = json!([{"name": POD_CLAIM}]);
    }
}

/// The DRA driver's slices once every node in `want` (node → devices its pool must hold) has a
/// complete pool of that size, or has published and stayed quiet for 10 s, or at the deadline:
/// whatever is there then is judged (a plugin publishes in one go; an incomplete pool does not
/// heal by waiting).
pub async fn settled(
    ctx: &Ctx<'_>,
    want: &BTreeMap<String, usize>,
    deadline: Instant,
) -> Vec<ResourceSlice> {
    let api: Api<ResourceSlice> = Api::all(ctx.client.clone());
    let ready = |items: &[ResourceSlice]| {
        want.iter().all(|(node, n)| {
            let mine: Vec<&ResourceSlice> = items
                .iter()
                .filter(|s| s.spec.node_name.as_deref() == Some(node.as_str()))
                .collect();
            dra_judge::device_count(&mine) == Some(*n)
        })
    };
    let published = |items: &[ResourceSlice]| {
        want.keys().all(|node| {
            items
                .iter()
                .any(|s| s.spec.node_name.as_deref() == Some(node.as_str()))
        })
    };
    const SETTLE: std::time::Duration = std::time::Duration::from_secs(10);
    // A store fed by a watch: every change is a new look; a quiet SETTLE is one too.
    let (store, writer) = kube::runtime::reflector::store();
    let cfg =
        kube::runtime::watcher::Config::default().fields(&format!("spec.driver={}", dra::DRIVER));
    let events = kube::runtime::reflector(writer, kube::runtime::watcher(api, cfg));
    futures::pin_mut!(events);
    let items = || {
        store
            .state()
            .iter()
            .map(|s| (**s).clone())
            .collect::<Vec<_>>()
    };
    let end = tokio::time::Instant::from_std(deadline);
    loop {
        let quiet = tokio::time::Instant::now() + SETTLE;
        tokio::select! {
            e = futures::StreamExt::next(&mut events) => match e {
                Some(_) => {
                    let now = items();
                    if ready(&now) {
                        return now;
                    }
                }
                None => return items(),
            },
            () = tokio::time::sleep_until(quiet.min(end)) => {
                let now = items();
                if published(&now) || tokio::time::Instant::now() >= end {
                    return now;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
