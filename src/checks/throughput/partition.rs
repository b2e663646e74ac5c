//! Which bench pods one node gets, under what the run asked (never what the node shows):
//! - whole GPUs: one pod requesting all of them, as on any GPU node;
//! - MIG single: one pod per MIG device (`nvidia.com/gpu: 1` each — inside a container CUDA
//!   shows one MIG device per process, so one pod cannot measure them all);
//! - MIG mixed: one pod per profile (`nvidia.com/mig-<profile>: 1`), and one for the whole GPUs
//!   a custom layout leaves next to them;
//! - time-slicing on a one-GPU node: one pod holding one replica, judged as the whole GPU (the
//!   GPU runs only that pod's work while no other pod holds a replica — the check skips the node
//!   otherwise); on several GPUs the device plugin may hand out replicas of the same GPU, and MPS
//!   caps each client's share of the SMs, so those nodes are skipped with the reason.
//!
//! A MIG device is judged against the model's peaks scaled to its share of the GPU (NVIDIA's
//! MIG user guide: a GPU instance owns its compute slices' SMs and its memory slices' share of
//! the memory controllers and L2): compute metrics × the profile's SMs over the GPU's; memory
//! bandwidth × memory slices / 8, the slices read from the profile's name (`<c>g.<m>gb`: `m`
//! over the full profile's memory, in eighths). Host transfers share the GPU's PCIe link with
//! every other instance and are not judged on a MIG device.

use k8s_openapi::api::core::v1::Node;

use super::super::asked::Asked;
use super::super::mig::MigExpectation;
use super::super::{GpuNode, sharing};
use crate::catalog::{GpuModel, MigProfile};
use crate::gpu_stack::resources;

/// One bench pod to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    /// The node.
    pub node: String,
    /// Pod name (a DNS label).
    pub pod: String,
    /// The pod's testcase, and for a MIG device the prefix of its metric testcases.
    pub subject: String,
    /// The resource requested, and how many.
    pub resource: String,
    /// How many of `resource`.
    pub count: u64,
    /// The devices the bench must see.
    pub devices: u32,
    /// The MIG device measured, if one is.
    pub mig: Option<MigShare>,
    /// The node's pool (its pool label), else its instance type, else its name: the start of
    /// its benchmarks' identities.
    pub group: String,
}

/// A MIG device's share of its GPU.
#[derive(Debug, Clone, PartialEq)]
pub struct MigShare {
    /// The profile.
    pub profile: MigProfile,
    /// Its SMs over the GPU's.
    pub compute: f64,
    /// Its memory slices over 8.
    pub bandwidth: f64,
    /// Its memory slices.
    pub memory_slices: u32,
}

/// The node's bench pods, or why it gets none.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Run these.
    Jobs(Vec<Job>),
    /// Measure nothing, for this reason.
    Skip(String),
}

/// The bench pods for `g`; `gpu_sms` is the whole GPU's SM count from the performance table.
pub fn plan(node: &Node, g: &GpuNode, asked: &Asked, gpu_sms: Option<u32>) -> Plan {
    match plan_jobs(node, g, asked, gpu_sms) {
        Plan::Jobs(mut jobs) => {
            let group = group_of(node, g);
            for j in &mut jobs {
                j.group = group.clone();
            }
            Plan::Jobs(jobs)
        }
        skip => skip,
    }
}

/// What names the node's kind across runs: a pool label, else the instance type, else the node.
fn group_of(node: &Node, g: &GpuNode) -> String {
    use kube::ResourceExt;
    let labels = node.labels();
    crate::plan::expect::POOL_LABELS
        .iter()
        .find_map(|k| labels.get(*k).filter(|v| !v.is_empty()).cloned())
        .or_else(|| labels.get("node.kubernetes.io/instance-type").cloned())
        .unwrap_or_else(|| g.name.clone())
}

fn plan_jobs(node: &Node, g: &GpuNode, asked: &Asked, gpu_sms: Option<u32>) -> Plan {
    let whole = |count: u64, resource: &str| Job {
        node: g.name.clone(),
        pod: format!("bench-{}", g.name),
        subject: g.name.clone(),
        resource: resource.to_string(),
        count,
        devices: u32::try_from(count).unwrap_or(u32::MAX),
        mig: None,
        group: String::new(),
    };
    let share = match asked.share(node) {
        Ok(s) => s,
        Err(e) => return Plan::Skip(e),
    };
    match asked.mig(node, g) {
        MigExpectation::Off => {}
        MigExpectation::Unknown(config) => {
            return Plan::Skip(format!(
                "its GPUs are split by MIG config {config}, whose layout is not known here"
            ));
        }
        MigExpectation::Invalid(why) => return Plan::Skip(why),
        MigExpectation::Devices(devices) => {
            if share.is_some() {
                return Plan::Skip(format!(
                    "its MIG devices are shared ({}); a shared device's throughput depends on its other users",
                    share
                        .as_ref()
                        .map(|s| s.describe(asked.plugin_source()))
                        .unwrap_or_default()
                ));
            }
            return mig_jobs(node, g, asked, &devices, gpu_sms);
        }
    }
    match share {
        None => Plan::Jobs(vec![whole(u64::from(g.count), resources::GPU)]),
        Some(s) if s.strategy == sharing::Strategy::Mps => Plan::Skip(format!(
            "its GPUs are shared with MPS ({}), which caps each client's share of the SMs",
            s.describe(asked.plugin_source())
        )),
        Some(s) if g.count > 1 => Plan::Skip(format!(
            "its {} GPUs are time-sliced ({}); replicas cannot be pinned to distinct GPUs",
            g.count,
            s.describe(asked.plugin_source())
        )),
        Some(s) => {
            let resource = s
                .of(resources::GPU)
                .and_then(|r| r.rename.clone())
                .unwrap_or_else(|| resources::GPU.to_string());
            Plan::Jobs(vec![whole(1, &resource)])
        }
    }
}

fn mig_jobs(
    node: &Node,
    g: &GpuNode,
    asked: &Asked,
    devices: &std::collections::BTreeMap<String, u64>,
    gpu_sms: Option<u32>,
) -> Plan {
    let Some(gpu_sms) = gpu_sms else {
        return Plan::Skip(format!(
            "the performance table has no entry for {}: MIG devices cannot be scaled",
            g.model_key
        ));
    };
    let mut jobs = Vec::new();
    if asked.mig_strategy == "single" {
        let Some(profile) = asked.single_profile(node, g) else {
            return Plan::Skip("its MIG layout has no single profile".into());
        };
        let n = devices.get(resources::GPU).copied().unwrap_or(0);
        for i in 0..n {
            jobs.push(Job {
                node: g.name.clone(),
                pod: format!("bench-{}-mig{i}", g.name),
                subject: format!("{}/mig{i}", g.name),
                resource: resources::GPU.to_string(),
                count: 1,
                devices: 1,
                mig: Some(share_of(profile, &g.model, gpu_sms)),
                group: String::new(),
            });
        }
        return Plan::Jobs(jobs);
    }
    for (resource, n) in devices {
        if *n == 0 {
            continue;
        }
        if resource == resources::GPU {
            jobs.push(Job {
                node: g.name.clone(),
                pod: format!("bench-{}", g.name),
                subject: g.name.clone(),
                resource: resource.clone(),
                count: *n,
                devices: u32::try_from(*n).unwrap_or(u32::MAX),
                mig: None,
                group: String::new(),
            });
            continue;
        }
        let name = resource.trim_start_matches(resources::MIG_PREFIX);
        let Some(profile) = g.model.mig_profiles.iter().find(|p| p.name == name) else {
            continue;
        };
        jobs.push(Job {
            node: g.name.clone(),
            pod: pod_name(&g.name, name),
            subject: format!("{}/mig-{name}", g.name),
            resource: resource.clone(),
            count: 1,
            devices: 1,
            mig: Some(share_of(profile, &g.model, gpu_sms)),
            group: String::new(),
        });
    }
    Plan::Jobs(jobs)
}

/// `bench-<node>-mig-1g-5gb`, a DNS label.
fn pod_name(node: &str, profile: &str) -> String {
    let short: String = profile
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let mut name = format!("bench-{node}-mig-{short}");
    name.truncate(63);
    name.trim_end_matches('-').to_string()
}

/// A profile's share of its GPU: SMs over the GPU's, memory slices (eighths) from its name.
pub fn share_of(profile: &MigProfile, model: &GpuModel, gpu_sms: u32) -> MigShare {
    let gb = |name: &str| -> Option<f64> {
        name.split_once("g.")?
            .1
            .strip_suffix("gb")?
            .parse::<f64>()
            .ok()
    };
    let full = model
        .mig_profiles
        .iter()
        .filter_map(|p| gb(&p.name))
        .fold(0.0_f64, f64::max);
    let slices = match gb(&profile.name) {
        Some(m) if full > 0.0 => ((m / full) * 8.0).round().clamp(1.0, 8.0) as u32,
        _ => 8,
    };
    MigShare {
        profile: profile.clone(),
        compute: f64::from(profile.multiprocessors) / f64::from(gpu_sms.max(1)),
        bandwidth: f64::from(slices) / 8.0,
        memory_slices: slices,
    }
}

#[cfg(test)]
mod tests;
