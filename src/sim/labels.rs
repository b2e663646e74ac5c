//! What each part of the GPU stack publishes about a node: pure functions from the node's GPUs and
//! the stack's configuration to labels and extended resources.
//!
//! The forms follow the real components: NFD's `feature.node.kubernetes.io/*`, the operator's
//! `nvidia.com/gpu.present` and `nvidia.com/gpu.deploy.*`, GPU Feature Discovery's
//! `nvidia.com/gpu.*`, `nvidia.com/cuda.*` and `nvidia.com/mig.*` (README of
//! NVIDIA/k8s-device-plugin, `internal/lm`), and the device plugin's resource names and counts
//! under time-slicing and the MIG strategies.

use std::collections::BTreeMap;

use crate::catalog::GpuModel;
use crate::fixture::Hardware;

/// Labels as a sorted map.
pub type Labels = BTreeMap<String, String>;

/// The NFD label that marks an NVIDIA PCI device (vendor 10de), as the operator's bundled NFD
/// config produces it.
pub use crate::gpu_stack::nfd::PCI_LABEL as NFD_PCI_LABEL;

/// Operands the operator enables per node for the `container` workload config
/// (`nvidia.com/gpu.deploy.<operand>`); `mig-manager` is added on MIG-capable nodes.
pub const DEPLOY_OPERANDS: &[&str] = &[
    "driver",
    "gpu-feature-discovery",
    "container-toolkit",
    "device-plugin",
    "dcgm",
    "dcgm-exporter",
    "node-status-exporter",
    "operator-validator",
];

/// How the device plugin and GFD present MIG devices (chart `mig.strategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigStrategy {
    /// MIG is ignored.
    None,
    /// All GPUs of a node have the same MIG profile; MIG devices are `nvidia.com/gpu`.
    Single,
    /// Each profile is its own resource, `nvidia.com/mig-<profile>`.
    Mixed,
}

impl MigStrategy {
    /// From the chart value; unknown values are `None` (what the device plugin does with a typo
    /// is fail, which the ClusterPolicy's CRD validation prevents on a real cluster).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "none" => Some(Self::None),
            "single" => Some(Self::Single),
            "mixed" => Some(Self::Mixed),
            _ => None,
        }
    }

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Single => "single",
            Self::Mixed => "mixed",
        }
    }
}

/// GPU sharing configured through the device plugin's config (`sharing.timeSlicing` or
/// `sharing.mps`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sharing {
    /// `time-slicing` or `mps`.
    pub strategy: String,
    /// Replicas per GPU.
    pub replicas: u32,
    /// The resource is renamed to `nvidia.com/gpu.shared` (no `-SHARED` product suffix then).
    pub renamed: bool,
}

/// The MIG layout mig-manager applied to a node's GPUs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigLayout {
    /// MIG mode off: whole GPUs.
    Disabled,
    /// Instances per GPU, by profile name.
    Profiles(BTreeMap<String, u32>),
}

/// The GPUs of a node, from the instance catalog.
#[derive(Debug, Clone, Copy)]
pub struct NodeGpus<'a> {
    /// What the machine is (its DMI product name gives GFD's `gpu.machine`).
    pub hardware: &'a Hardware,
    /// The GPU model.
    pub model: &'a GpuModel,
    /// GPUs on the node.
    pub count: u32,
}

/// Stack-wide settings the labels and resources depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackConfig {
    /// `driver.version` of the chart, e.g. `595.91.07`; on a node, the driver it runs.
    pub driver_version: String,
    /// `driver.enabled`: whether the operator runs its driver DaemonSet.
    pub driver_enabled: bool,
    /// `mig.strategy`.
    pub mig_strategy: MigStrategy,
}

/// The layout a `nvidia.com/mig.config` value selects, from mig-parted's default config
/// (`all-disabled`, `all-balanced`, `all-<profile>`); an error for names it does not define.
pub fn mig_layout(model: &GpuModel, config: &str) -> Result<MigLayout, String> {
    if config == "all-disabled" {
        return Ok(MigLayout::Disabled);
    }
    if !model.mig_capable() {
        return Err(format!("{} does not support MIG", model.product));
    }
    if config == "all-balanced" {
        return Ok(MigLayout::Profiles(model.mig_all_balanced.clone()));
    }
    if let Some(profile) = config.strip_prefix("all-")
        && let Some(p) = model.mig_profiles.iter().find(|p| p.name == profile)
    {
        return Ok(MigLayout::Profiles(BTreeMap::from([(
            p.name.clone(),
            p.max_instances,
        )])));
    }
    Err(format!(
        "mig config `{config}` is not defined for {}",
        model.product
    ))
}

/// NFD's labels: every node gets kernel and OS labels; GPU nodes also get the PCI vendor label.
pub fn nfd_labels(os_image: &str, kernel: &str, has_gpu: bool) -> Labels {
    let mut l = Labels::new();
    l.insert(
        "feature.node.kubernetes.io/kernel-version.full".into(),
        kernel.into(),
    );
    let numeric: Vec<&str> = kernel
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .collect();
    for (i, part) in ["major", "minor", "revision"].iter().enumerate() {
        if let Some(v) = numeric.get(i) {
            l.insert(
                format!("feature.node.kubernetes.io/kernel-version.{part}"),
                (*v).into(),
            );
        }
    }
    // `Ubuntu 22.04.5 LTS` → ID ubuntu, VERSION_ID 22.04, as /etc/os-release has them.
    let mut words = os_image.split_whitespace();
    if let Some(id) = words.next() {
        l.insert(
            "feature.node.kubernetes.io/system-os_release.ID".into(),
            id.to_ascii_lowercase(),
        );
    }
    if let Some(version) = words.next() {
        let parts: Vec<&str> = version.split('.').collect();
        let version_id = parts.iter().take(2).copied().collect::<Vec<_>>().join(".");
        l.insert(
            "feature.node.kubernetes.io/system-os_release.VERSION_ID".into(),
            version_id,
        );
        if let Some(major) = parts.first() {
            l.insert(
                "feature.node.kubernetes.io/system-os_release.VERSION_ID.major".into(),
                (*major).into(),
            );
        }
        if let Some(minor) = parts.get(1) {
            l.insert(
                "feature.node.kubernetes.io/system-os_release.VERSION_ID.minor".into(),
                (*minor).into(),
            );
        }
    }
    if has_gpu {
        l.insert(NFD_PCI_LABEL.into(), "true".into());
    }
    l
}

/// The operator's node labels for a GPU node with the `container` workload config, over the
/// node's labels `have`. A `gpu.deploy.*` label that already has a value keeps it, as the
/// operator leaves it (the driver manager sets `gpu.deploy.driver=pre-installed` on a node with
/// a host driver; gpu-operator `controllers/state_manager.go`, `addGPUStateLabels`).
pub fn operator_labels(mig_capable: bool, have: &Labels) -> Labels {
    let mut l = Labels::new();
    l.insert("nvidia.com/gpu.present".into(), "true".into());
    l.insert("nvidia.com/gpu.workload.config".into(), "container".into());
    let mut deploy = |key: String| {
        let v = have
            .get(&key)
            .filter(|v| !v.is_empty())
            .cloned()
            .unwrap_or_else(|| "true".into());
        l.insert(key, v);
    };
    for op in DEPLOY_OPERANDS {
        deploy(format!("nvidia.com/gpu.deploy.{op}"));
    }
    if mig_capable {
        deploy("nvidia.com/gpu.deploy.mig-manager".into());
    }
    l
}

/// The driver a GPU node runs: the host's, whatever the chart says (GFD reads the loaded
/// driver through NVML), else the operator's container driver when `driver.enabled`, else none
/// — then nothing can talk to the GPUs and GFD and the device plugin never come up.
pub fn node_driver(cfg: &StackConfig, host_driver: Option<&str>) -> Option<String> {
    match host_driver {
        Some(h) => Some(h.to_string()),
        None if cfg.driver_enabled => Some(cfg.driver_version.clone()),
        None => None,
    }
}

/// The CUDA version a driver branch supports (what GFD reports as `cuda.runtime-version`):
/// the "CUDA toolkit and minimum driver versions" table of the CUDA release notes.
pub fn cuda_for_driver(driver_major: u32) -> Option<(u32, u32)> {
    Some(match driver_major {
        595.. => (13, 2),
        590..=594 => (13, 1),
        580..=589 => (13, 0),
        575..=579 => (12, 9),
        570..=574 => (12, 8),
        565..=569 => (12, 7),
        560..=564 => (12, 6),
        555..=559 => (12, 5),
        550..=554 => (12, 4),
        545..=549 => (12, 3),
        535..=544 => (12, 2),
        530..=534 => (12, 1),
        525..=529 => (12, 0),
        520..=524 => (11, 8),
        515..=519 => (11, 7),
        510..=514 => (11, 6),
        470..=509 => (11, 4),
        _ => return None,
    })
}

/// GPU Feature Discovery's labels. `timestamp` is `nvidia.com/gfd.timestamp` (Unix seconds).
pub fn gfd_labels(
    gpus: &NodeGpus<'_>,
    cfg: &StackConfig,
    layout: &MigLayout,
    sharing: Option<&Sharing>,
    timestamp: i64,
) -> Labels {
    let mut l = Labels::new();
    let model = gpus.model;
    let set = |l: &mut Labels, k: &str, v: String| {
        l.insert(format!("nvidia.com/{k}"), v);
    };
    // Driver: `595.91.07` → major 595, minor 91, revision 07 (kept as written, like GFD).
    let mut parts = cfg.driver_version.split('.');
    let (major, minor, rev) = (
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
        parts.next().unwrap_or_default().to_string(),
    );
    set(&mut l, "cuda.driver.major", major.clone());
    set(&mut l, "cuda.driver.minor", minor.clone());
    set(&mut l, "cuda.driver.rev", rev.clone());
    set(&mut l, "cuda.driver-version.major", major.clone());
    set(&mut l, "cuda.driver-version.minor", minor);
    set(&mut l, "cuda.driver-version.revision", rev);
    set(
        &mut l,
        "cuda.driver-version.full",
        cfg.driver_version.clone(),
    );
    if let Some((cm, cn)) = major.parse().ok().and_then(cuda_for_driver) {
        set(&mut l, "cuda.runtime.major", cm.to_string());
        set(&mut l, "cuda.runtime.minor", cn.to_string());
        set(&mut l, "cuda.runtime-version.major", cm.to_string());
        set(&mut l, "cuda.runtime-version.minor", cn.to_string());
        set(&mut l, "cuda.runtime-version.full", format!("{cm}.{cn}"));
    }
    set(&mut l, "gfd.timestamp", timestamp.to_string());
    if let Some((cc_major, cc_minor)) = model.compute_capability_parts() {
        set(&mut l, "gpu.compute.major", cc_major.to_string());
        set(&mut l, "gpu.compute.minor", cc_minor.to_string());
    }
    set(&mut l, "gpu.family", model.family.clone());
    // GFD reads the DMI product name: the instance type on AWS Nitro, `HVM-domU` on Xen,
    // `Google-Compute-Engine` on GCE, `Virtual-Machine` on Azure, the server's name on-prem.
    set(&mut l, "gpu.machine", gpus.hardware.gfd_machine());
    set(&mut l, "gpu.mode", "compute".into());
    set(&mut l, "mig.capable", model.mig_capable().to_string());
    // GFD writes no strategy label for `none` (internal/lm `newMigStrategyLabeler`).
    if cfg.mig_strategy != MigStrategy::None {
        set(&mut l, "mig.strategy", cfg.mig_strategy.as_str().into());
    }
    let mps = sharing.is_some_and(|s| s.strategy == "mps" && s.replicas > 1);
    set(&mut l, "mps.capable", mps.to_string());
    set(&mut l, "vgpu.present", "false".into());

    let mig_active = match layout {
        MigLayout::Profiles(p) if cfg.mig_strategy != MigStrategy::None && !p.is_empty() => Some(p),
        _ => None,
    };
    let mut product = model.product.clone();
    let mut count = gpus.count;
    let mut memory = model.memory_mib;
    match mig_active {
        Some(profiles) if cfg.mig_strategy == MigStrategy::Single => {
            if let [(name, per_gpu)] = profiles.iter().collect::<Vec<_>>()[..]
                && let Some(p) = model.mig_profiles.iter().find(|p| &p.name == name)
            {
                product = format!("{}-MIG-{}", model.product, p.name);
                count = per_gpu * gpus.count;
                memory = p.memory_mib;
                set(&mut l, "gpu.multiprocessors", p.multiprocessors.to_string());
                let g = slices(&p.name);
                set(&mut l, "gpu.slices.gi", g.to_string());
                set(&mut l, "gpu.slices.ci", g.to_string());
            } else {
                // Single strategy needs one profile on every GPU; GFD marks anything else invalid,
                // with count, memory and replicas 0 and no sharing strategy.
                product = format!("{}-MIG-INVALID", model.product);
                count = 0;
                memory = 0;
            }
        }
        Some(profiles) => {
            for (name, per_gpu) in profiles {
                let Some(p) = model.mig_profiles.iter().find(|p| &p.name == name) else {
                    continue;
                };
                let prefix = format!("mig-{}", p.name);
                set(
                    &mut l,
                    &format!("{prefix}.count"),
                    (per_gpu * gpus.count).to_string(),
                );
                set(
                    &mut l,
                    &format!("{prefix}.memory"),
                    p.memory_mib.to_string(),
                );
                set(
                    &mut l,
                    &format!("{prefix}.multiprocessors"),
                    p.multiprocessors.to_string(),
                );
                let g = slices(&p.name);
                set(&mut l, &format!("{prefix}.slices.gi"), g.to_string());
                set(&mut l, &format!("{prefix}.slices.ci"), g.to_string());
                // GFD v0.15+: each MIG resource's own product, replicas and sharing strategy.
                set(
                    &mut l,
                    &format!("{prefix}.product"),
                    format!("{}-MIG-{}", model.product, p.name),
                );
                set(&mut l, &format!("{prefix}.replicas"), "1".into());
                set(&mut l, &format!("{prefix}.sharing-strategy"), "none".into());
            }
        }
        None => {}
    }
    let invalid = product.ends_with("-MIG-INVALID");
    let mixed_mig = mig_active.is_some() && cfg.mig_strategy == MigStrategy::Mixed;
    match sharing.filter(|_| mig_active.is_none()) {
        // The whole-GPU labels of GPUs in MIG mode carry no replicas (GFD's MIG-enabled
        // labeler: `TestMigStrategyNoneLabels`, "replicas is zero").
        _ if invalid => {
            set(&mut l, "gpu.replicas", "0".into());
            set(&mut l, "gpu.sharing-strategy", String::new());
        }
        _ if mixed_mig => {
            set(&mut l, "gpu.replicas", "0".into());
            set(&mut l, "gpu.sharing-strategy", "none".into());
        }
        Some(s) => {
            if s.replicas > 1 && !s.renamed {
                product.push_str("-SHARED");
            }
            set(&mut l, "gpu.replicas", s.replicas.to_string());
            set(&mut l, "gpu.sharing-strategy", s.strategy.clone());
        }
        None => {
            set(&mut l, "gpu.replicas", "1".into());
            set(&mut l, "gpu.sharing-strategy", "none".into());
        }
    }
    set(&mut l, "gpu.product", product);
    set(&mut l, "gpu.count", count.to_string());
    set(&mut l, "gpu.memory", memory.to_string());
    l
}

/// The device plugin's extended resources: `(name, capacity, allocatable)`. `unhealthy` GPUs
/// count in capacity but not in allocatable, as kubelet reports devices the plugin marked
/// unhealthy.
pub fn device_plugin_resources(
    gpus: &NodeGpus<'_>,
    cfg: &StackConfig,
    layout: &MigLayout,
    sharing: Option<&Sharing>,
    unhealthy: u32,
) -> Vec<(String, u64, u64)> {
    let total = u64::from(gpus.count);
    let healthy = u64::from(gpus.count.saturating_sub(unhealthy));
    let profiles = match layout {
        MigLayout::Profiles(p) if cfg.mig_strategy != MigStrategy::None && !p.is_empty() => Some(p),
        _ => None,
    };
    match profiles {
        Some(p) if cfg.mig_strategy == MigStrategy::Mixed => {
            let mut out = vec![("nvidia.com/gpu".to_string(), 0, 0)];
            for (name, per_gpu) in p {
                let n = u64::from(*per_gpu);
                out.push((format!("nvidia.com/mig-{name}"), n * total, n * healthy));
            }
            out
        }
        Some(p) => {
            let per_gpu = if p.len() == 1 {
                p.values().next().copied().map_or(0, u64::from)
            } else {
                0
            };
            vec![(
                "nvidia.com/gpu".to_string(),
                per_gpu * total,
                per_gpu * healthy,
            )]
        }
        None => {
            let (name, replicas) = match sharing {
                Some(s) if s.renamed => ("nvidia.com/gpu.shared", u64::from(s.replicas)),
                Some(s) => ("nvidia.com/gpu", u64::from(s.replicas)),
                None => ("nvidia.com/gpu", 1),
            };
            vec![(name.to_string(), total * replicas, healthy * replicas)]
        }
    }
}

/// GPU-instance slices of a profile: `3g.20gb` → 3.
fn slices(profile: &str) -> u32 {
    profile
        .split('g')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1)
}

#[cfg(test)]
#[path = "labels_tests.rs"]
mod tests;
