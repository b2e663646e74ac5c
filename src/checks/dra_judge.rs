//! The pure half of the `dra` check: what a node's pool must hold (from its expectation and the
//! MIG layout asked of it, never from the slice), and the judgement of the slices it has.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use kube::ResourceExt;

use super::GpuNode;
use super::mig::{self, MigExpectation};
use crate::gpu_stack::dra::{self, attr};
use crate::gpu_stack::{asks, driver, gfd, resources};
use crate::plan::driver::{DriverExpect, DriverRule};

/// What a node's pool must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Want {
    /// Devices in the pool.
    pub devices: usize,
    /// They are MIG devices (of `profiles`), not whole GPUs.
    pub mig: bool,
    /// MIG profile → devices.
    pub profiles: BTreeMap<String, u64>,
    /// The driver the node must run.
    pub driver: Option<DriverRule>,
}

impl Want {
    /// The DeviceClass a claim for one of these devices names.
    pub fn class(&self) -> &'static str {
        if self.mig {
            dra::MIG_CLASS
        } else {
            dra::GPU_CLASS
        }
    }
}

/// The node's pool as its expectation and MIG layout say. The DRA driver publishes MIG
/// devices one by one whatever the device plugin's strategy, so the layout is read as `mixed`.
pub fn want(node: &Node, g: &GpuNode, expect_driver: Option<&DriverRule>) -> Result<Want, String> {
    let driver = g.driver.clone().or_else(|| expect_driver.cloned());
    let config = node.labels().get(asks::MIG_CONFIG).map(String::as_str);
    match mig::expected("mixed", config, g) {
        MigExpectation::Off => Ok(Want {
            devices: g.count as usize,
            mig: false,
            profiles: BTreeMap::new(),
            driver,
        }),
        MigExpectation::Devices(d) => {
            let profiles: BTreeMap<String, u64> = d
                .into_iter()
                .filter_map(|(k, n)| {
                    k.strip_prefix(resources::MIG_PREFIX)
                        .map(|p| (p.to_string(), n))
                })
                .filter(|(_, n)| *n > 0)
                .collect();
            Ok(Want {
                devices: profiles.values().sum::<u64>() as usize,
                mig: true,
                profiles,
                driver,
            })
        }
        MigExpectation::Unknown(c) => Err(format!(
            "MIG config {c} is not one of mig-parted's defaults: its devices cannot be expected"
        )),
        MigExpectation::Invalid(why) => Err(why),
    }
}

/// `580.95.5` and `580.95.05` alike: the numbers of a dotted version.
fn numbers(v: &str) -> Vec<u64> {
    let mut n: Vec<u64> = v
        .split('.')
        .map(|p| p.parse().unwrap_or(u64::MAX))
        .collect();
    while n.len() > 1 && n.last() == Some(&0) {
        n.pop();
    }
    n
}

/// A quantity (`16Gi`, `4864Mi`, `17179869184`) in MiB.
pub fn mib(q: &str) -> Option<u64> {
    let (num, mult): (&str, f64) = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024f64.powi(3)),
        ("Ti", 1024f64.powi(4)),
    ]
    .iter()
    .find_map(|(s, m)| q.strip_suffix(s).map(|n| (n, *m)))
    .unwrap_or((q, 1.0));
    let v: f64 = num.parse().ok()?;
    Some((v * mult / (1024.0 * 1024.0)).round() as u64)
}

/// The pool's slices at its newest generation when the pool is complete, else `None`.
pub(super) fn complete<'a>(slices: &[&'a ResourceSlice]) -> Result<Vec<&'a ResourceSlice>, String> {
    let Some(newest_gen) = slices.iter().map(|s| s.spec.pool.generation).max() else {
        return Err("no ResourceSlice".into());
    };
    let newest: Vec<&ResourceSlice> = slices
        .iter()
        .copied()
        .filter(|s| s.spec.pool.generation == newest_gen)
        .collect();
    let want = newest
        .first()
        .map_or(0, |s| s.spec.pool.resource_slice_count);
    if newest.len() as i64 != want {
        return Err(format!(
            "pool {} is incomplete: {} of {want} slices at generation {newest_gen}",
            newest
                .first()
                .map(|s| s.spec.pool.name.as_str())
                .unwrap_or_default(),
            newest.len()
        ));
    }
    Ok(newest)
}

/// Devices in a complete pool (`None` while it is incomplete).
pub fn device_count(slices: &[&ResourceSlice]) -> Option<usize> {
    complete(slices).ok().map(|s| {
        s.iter()
            .map(|s| s.spec.devices.as_ref().map_or(0, Vec::len))
            .sum()
    })
}

fn string(d: &k8s_openapi::api::resource::v1::Device, name: &str) -> Option<String> {
    let a = d.attributes.as_ref()?.get(name)?;
    a.string.clone().or_else(|| a.version.clone())
}

/// Judges a node's slices: `Ok(detail)`, or `Err((message, detail))` naming node, device,
/// attribute, observed and expected value.
pub fn judge(
    node: &str,
    slices: &[&ResourceSlice],
    w: &Want,
    g: &GpuNode,
    labels: &BTreeMap<String, String>,
) -> Result<String, (String, String)> {
    let fail = |m: String, d: String| Err((format!("{node}: {m}"), d));
    if slices.is_empty() {
        return fail(
            format!(
                "no ResourceSlice of driver {} for this node (expected {} {} devices; is the DRA driver's kubelet plugin running here?)",
                dra::DRIVER,
                w.devices,
                if w.mig { "MIG" } else { "GPU" }
            ),
            String::new(),
        );
    }
    let newest = match complete(slices) {
        Ok(s) => s,
        Err(why) => return fail(why, String::new()),
    };
    let devices: Vec<&k8s_openapi::api::resource::v1::Device> = newest
        .iter()
        .flat_map(|s| s.spec.devices.iter().flatten())
        .collect();
    let listing: Vec<String> = devices
        .iter()
        .map(|d| {
            format!(
                "{} {} {}",
                d.name,
                string(d, attr::TYPE).unwrap_or_default(),
                string(d, attr::UUID).unwrap_or_default()
            )
        })
        .collect();
    let detail = format!(
        "pool {node}, {} devices:\n{}",
        devices.len(),
        listing.join("\n")
    );
    let kind = if w.mig { "mig" } else { "gpu" };
    if devices.len() != w.devices {
        return fail(
            format!(
                "the pool has {} devices, expected {} ({})",
                devices.len(),
                w.devices,
                g.describe()
            ),
            detail,
        );
    }
    let mut problems = Vec::new();
    let mut uuids = std::collections::BTreeSet::new();
    let mut profiles: BTreeMap<String, u64> = BTreeMap::new();
    let m = &g.model;
    let gfd_driver = driver::from_labels(labels);
    for d in &devices {
        let get = |a: &str| string(d, a).unwrap_or_default();
        let bad = |problems: &mut Vec<String>, a: &str, seen: String, want: String| {
            problems.push(format!("{} {a} is \"{seen}\", expected \"{want}\"", d.name));
        };
        if get(attr::TYPE) != kind {
            bad(&mut problems, attr::TYPE, get(attr::TYPE), kind.into());
        }
        // A device the driver took out of service: the scheduler will not allocate it.
        for t in d.taints.iter().flatten() {
            if t.effect == "NoSchedule" || t.effect == "NoExecute" {
                problems.push(format!(
                    "{} is tainted {}={}:{} (the scheduler allocates no claim to it)",
                    d.name,
                    t.key,
                    t.value.as_deref().unwrap_or_default(),
                    t.effect
                ));
            }
        }
        let uuid = get(attr::UUID);
        if uuid.is_empty() || !uuids.insert(uuid.clone()) {
            problems.push(format!("{} uuid \"{uuid}\" is empty or not unique", d.name));
        }
        let product = get(attr::PRODUCT_NAME);
        if !m.is_product(&product.replace(' ', "-")) {
            bad(
                &mut problems,
                attr::PRODUCT_NAME,
                product.clone(),
                m.product.replace('-', " "),
            );
        }
        let arch = get(attr::ARCHITECTURE)
            .to_ascii_lowercase()
            .replace(' ', "-");
        if arch != m.family && !m.family_aliases.contains(&arch) {
            bad(
                &mut problems,
                attr::ARCHITECTURE,
                get(attr::ARCHITECTURE),
                m.family.clone(),
            );
        }
        if numbers(&get(attr::COMPUTE_CAPABILITY)) != numbers(&m.compute_capability) {
            bad(
                &mut problems,
                attr::COMPUTE_CAPABILITY,
                get(attr::COMPUTE_CAPABILITY),
                m.compute_capability.clone(),
            );
        }
        let shown = get(attr::DRIVER_VERSION);
        let ok = match w.driver.as_ref().map(|r| &r.expect) {
            Some(DriverExpect::Exact(v)) => numbers(v) == numbers(&shown),
            Some(DriverExpect::Branch(b)) => numbers(&shown).first() == Some(&u64::from(*b)),
            Some(DriverExpect::Any) | None => !shown.is_empty(),
        };
        if !ok {
            let want = match w.driver.as_ref().map(|r| &r.expect) {
                Some(DriverExpect::Exact(v)) => v.clone(),
                Some(DriverExpect::Branch(b)) => format!("branch {b}"),
                _ => "a version".into(),
            };
            bad(&mut problems, attr::DRIVER_VERSION, shown.clone(), want);
        }
        if let Some(l) = &gfd_driver
            && numbers(l) != numbers(&shown)
        {
            problems.push(format!(
                "{} {} is \"{shown}\" but the node's GFD label {} says \"{l}\"",
                d.name,
                attr::DRIVER_VERSION,
                gfd::DRIVER_VERSION_FULL
            ));
        }
        if w.mig {
            *profiles.entry(get(attr::PROFILE)).or_default() += 1;
        } else {
            let memory = d
                .capacity
                .as_ref()
                .and_then(|c| c.get(dra::MEMORY))
                .and_then(|c| mib(&c.value.0));
            let [lo, hi] = m.memory_range_mib.unwrap_or([m.memory_mib, m.memory_mib]);
            if !memory.is_some_and(|v| (lo..=hi).contains(&v)) {
                problems.push(format!(
                    "{} capacity memory is {}, expected {lo}–{hi} MiB",
                    d.name,
                    memory.map_or("missing".into(), |v| format!("{v} MiB"))
                ));
            }
            if let Some(label) = labels.get(gfd::PRODUCT)
                && !label.ends_with("-SHARED")
                && label != &product.replace(' ', "-")
            {
                problems.push(format!(
                    "{} productName \"{product}\" but the node's GFD label {} says \"{label}\"",
                    d.name,
                    gfd::PRODUCT
                ));
            }
        }
    }
    if w.mig && profiles != w.profiles {
        problems.push(format!(
            "MIG devices by profile {profiles:?}, expected {:?}",
            w.profiles
        ));
    }
    match problems.first() {
        None => Ok(detail),
        Some(first) => fail(
            if problems.len() > 1 {
                format!("{first} (and {} more)", problems.len() - 1)
            } else {
                first.clone()
            },
            format!("{}\n\n{detail}", problems.join("\n")),
        ),
    }
}

/// The pool and device a claim was allocated (its first result).
pub fn allocated(c: &ResourceClaim) -> Option<(String, String)> {
    crate::gpu_stack::dra::allocation(c)?.into_iter().next()
}

#[cfg(test)]
mod tests;
