//! The catalog: what GPU models are and what the GPU stack reports about them, and what each
//! cloud's instance types are made of.
//!
//! Two kinds of data, in separate files embedded in the binary:
//! - `fixtures/catalog/gpu-models.yaml`: per GPU model the product label names GFD publishes
//!   (current and older driver spellings), PCI device IDs, memory as NVML reports it (the nominal
//!   value and the range real drivers report), compute capability, family as GFD names it per
//!   version, MIG profiles and the performance-table key;
//! - `fixtures/catalog/instance-types/{aws,gke,azure}.yaml`: per cloud, the instance types with
//!   vCPUs, memory and which GPU model how many times, each entry with its source.
//!
//! `--catalog FILE` (repeatable) merges more files of the same schema over the embedded ones, in
//! order: `mode: extend` (the default) adds entries and replaces same-named ones, `mode: replace`
//! starts from nothing. Every command that reads the catalog resolves it the same way, so plan
//! validation, the local cluster and the checks agree. A check's expectation comes from here or
//! from the plan, never from the node it judges.

mod validate;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::input::{InputError, load_yaml, parse_yaml};

/// The embedded files, in merge order, with the names errors use for them.
pub const EMBEDDED: [(&str, &str); 4] = [
    (
        "fixtures/catalog/gpu-models.yaml",
        include_str!("../../fixtures/catalog/gpu-models.yaml"),
    ),
    (
        "fixtures/catalog/instance-types/aws.yaml",
        include_str!("../../fixtures/catalog/instance-types/aws.yaml"),
    ),
    (
        "fixtures/catalog/instance-types/gke.yaml",
        include_str!("../../fixtures/catalog/instance-types/gke.yaml"),
    ),
    (
        "fixtures/catalog/instance-types/azure.yaml",
        include_str!("../../fixtures/catalog/instance-types/azure.yaml"),
    ),
];

/// One catalog file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct CatalogFile {
    version: u32,
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    gpu_models: BTreeMap<String, GpuModel>,
    #[serde(default)]
    instance_types: BTreeMap<Cloud, BTreeMap<String, InstanceType>>,
}

/// How a `--catalog` file combines with what came before it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    /// Adds entries; an entry with a known name replaces the earlier one.
    #[default]
    Extend,
    /// Drops everything before this file.
    Replace,
}

/// GPU models and instance types, merged from the embedded files and any `--catalog` files.
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// GPU models by key (e.g. `V100-SXM2-16GB`).
    pub gpu_models: BTreeMap<String, GpuModel>,
    /// Instance types of every cloud by name (`p3.2xlarge`, `a3-highgpu-8g`,
    /// `Standard_ND96isr_H100_v5`); names do not collide across clouds.
    pub instance_types: BTreeMap<String, InstanceType>,
    /// The files merged, in order.
    pub files: Vec<PathBuf>,
}

/// One GPU model as the GPU stack reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuModel {
    /// `nvidia.com/gpu.product` as GPU Feature Discovery writes it on a current driver (NVML
    /// name, spaces → `-`). The simulator publishes this one.
    pub product: String,
    /// Other spellings real drivers report (older drivers dropped the `NVIDIA ` prefix, for
    /// example); the labels check accepts them too.
    #[serde(default)]
    pub product_aliases: Vec<String>,
    /// PCI device IDs (vendor 10de), `0x20b0` style.
    #[serde(default)]
    pub pci_device_ids: Vec<String>,
    /// Memory per GPU in MiB as a current driver reports it (`nvidia.com/gpu.memory`).
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// The lowest and highest memory real drivers report for this model (ECC on or off on GDDR
    /// parts, driver-to-driver differences); `[memoryMiB, memoryMiB]` when absent.
    #[serde(default, rename = "memoryRangeMiB")]
    pub memory_range_mib: Option<[u64; 2]>,
    /// CUDA compute capability, `major.minor`.
    pub compute_capability: String,
    /// GFD's architecture family on current versions (`volta`, `turing`, `ampere`,
    /// `ada-lovelace`, `hopper`, `blackwell`).
    pub family: String,
    /// Names older GFD versions use for this model's family (`ampere` for Ada on GFD before
    /// `ada-lovelace` existed); accepted too.
    #[serde(default)]
    pub family_aliases: Vec<String>,
    /// MIG profiles, empty when the GPU is not MIG-capable.
    #[serde(default)]
    pub mig_profiles: Vec<MigProfile>,
    /// The GPU Operator's default `all-balanced` MIG layout: profile → instances per GPU.
    #[serde(default)]
    pub mig_all_balanced: BTreeMap<String, u32>,
    /// Key of the model in the GPU performance table (default: the model's own key).
    #[serde(default)]
    pub perf_key: Option<String>,
    /// Where the numbers come from.
    pub source: String,
    /// The file it was read from, for messages.
    #[serde(skip)]
    pub file: PathBuf,
}

/// One MIG profile of a MIG-capable GPU.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct MigProfile {
    /// Profile name as in the resource name (`1g.5gb`).
    pub name: String,
    /// Memory of one instance in MiB as GFD labels it.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// Streaming multiprocessors of one instance.
    pub multiprocessors: u32,
    /// Most instances of this profile one GPU holds.
    pub max_instances: u32,
}

/// The cloud an instance type belongs to; an on-prem machine (only in cluster fixtures) has none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    /// Amazon EC2.
    #[default]
    Aws,
    /// Google Compute Engine / GKE.
    Gke,
    /// Azure virtual machines / AKS.
    Azure,
    /// A machine of the cluster owner's (no instance-type label).
    #[serde(skip)]
    OnPrem,
}

impl Cloud {
    /// `aws`, `gke`, `azure`, `on-prem`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Aws => "aws",
            Self::Gke => "gke",
            Self::Azure => "azure",
            Self::OnPrem => "on-prem",
        }
    }
}

/// One instance type (or, in a fixture, an on-prem machine).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceType {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// AWS only: `nitro` or `xen`; decides what GFD reports as `nvidia.com/gpu.machine`.
    #[serde(default)]
    pub hypervisor: Option<Hypervisor>,
    /// The GPUs, absent for CPU-only types.
    #[serde(default)]
    pub gpu: Option<InstanceGpu>,
    /// GKE only: the `cloud.google.com/gke-accelerator` value of its GPUs.
    #[serde(default)]
    pub accelerator: Option<String>,
    /// Where the numbers come from.
    pub source: String,
    /// The cloud (the section it is written in).
    #[serde(skip)]
    pub cloud: Cloud,
    /// The file it was read from, for messages.
    #[serde(skip)]
    pub file: PathBuf,
}

/// The virtualisation an AWS instance type runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// AWS Nitro: DMI product name is the instance type.
    Nitro,
    /// Xen (older types such as p2, p3): DMI product name is `HVM-domU`.
    Xen,
}

/// The GPUs of an instance type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceGpu {
    /// Key into [`Catalog::gpu_models`].
    pub model: String,
    /// GPUs per instance.
    pub count: u32,
}

impl GpuModel {
    /// Whether the GPU supports MIG (`nvidia.com/mig.capable`).
    pub fn mig_capable(&self) -> bool {
        !self.mig_profiles.is_empty()
    }

    /// `(major, minor)` of the compute capability.
    pub fn compute_capability_parts(&self) -> Option<(u32, u32)> {
        let (major, minor) = self.compute_capability.split_once('.')?;
        Some((major.parse().ok()?, minor.parse().ok()?))
    }

    /// The lowest and highest memory in MiB a real driver reports.
    pub fn memory_range(&self) -> (u64, u64) {
        self.memory_range_mib
            .map_or((self.memory_mib, self.memory_mib), |[lo, hi]| (lo, hi))
    }

    /// The model's key in the GPU performance table (`key` is its catalog key).
    pub fn perf_key<'a>(&'a self, key: &'a str) -> &'a str {
        self.perf_key.as_deref().unwrap_or(key)
    }

    /// Whether `product` is one of the model's spellings.
    pub fn is_product(&self, product: &str) -> bool {
        product == self.product || self.product_aliases.iter().any(|a| a == product)
    }

    /// Whether `family` is what some GFD version calls this model's family.
    pub fn is_family(&self, family: &str) -> bool {
        family == self.family || self.family_aliases.iter().any(|a| a == family)
    }
}

impl InstanceType {
    /// What GFD publishes as `nvidia.com/gpu.machine` on this type (`name` is its own name, or
    /// an on-prem machine's DMI product name): the DMI product name, sanitised — the type on AWS
    /// Nitro, `HVM-domU` on Xen, `Google-Compute-Engine` on GCE, `Virtual-Machine` on Azure.
    pub fn gfd_machine(&self, name: &str) -> String {
        match (self.cloud, self.hypervisor) {
            (Cloud::Aws, Some(Hypervisor::Xen)) => "HVM-domU".into(),
            (Cloud::Aws, _) => sanitise(name),
            (Cloud::Gke, _) => "Google-Compute-Engine".into(),
            (Cloud::Azure, _) => "Virtual-Machine".into(),
            (Cloud::OnPrem, _) => sanitise(name),
        }
    }
}

/// GFD's label-value sanitiser (k8s-device-plugin v0.16+, `internal/lm/machine-type.go`):
/// characters other than letters, digits, `-`, `_`, `.` and space are dropped, then each run of
/// spaces becomes one `-` (`DGXA100 920-23687-2531-001` → `DGXA100-920-23687-2531-001`).
pub fn sanitise(s: &str) -> String {
    let kept: String = s
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        .collect();
    kept.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

impl Catalog {
    /// The catalog embedded in the binary.
    pub fn embedded() -> Result<Self, InputError> {
        Self::resolve(&[])
    }

    /// The embedded catalog with `extra` files merged over it, in order, then validated.
    pub fn resolve(extra: &[PathBuf]) -> Result<Self, InputError> {
        let mut catalog = Catalog::default();
        for (name, text) in EMBEDDED {
            let file: CatalogFile = parse_yaml(Path::new(name), text)?;
            catalog.merge(Path::new(name), file)?;
        }
        for path in extra {
            let file: CatalogFile = load_yaml(path)?;
            catalog.merge(path, file)?;
        }
        catalog.validate()?;
        Ok(catalog)
    }

    fn merge(&mut self, path: &Path, file: CatalogFile) -> Result<(), InputError> {
        if file.version != 1 {
            return Err(InputError::file(
                path,
                format!(
                    "catalog version {} is not supported (expected 1)",
                    file.version
                ),
            ));
        }
        if file.mode == Mode::Replace {
            *self = Catalog::default();
        }
        self.files.push(path.to_path_buf());
        for (name, mut model) in file.gpu_models {
            model.file = path.to_path_buf();
            self.gpu_models.insert(name, model);
        }
        let mut seen = std::collections::BTreeSet::new();
        for (cloud, types) in file.instance_types {
            for (name, mut t) in types {
                if !seen.insert(name.clone()) {
                    return Err(InputError::file(
                        path,
                        format!("instance type `{name}` is listed under two clouds"),
                    ));
                }
                t.cloud = cloud;
                t.file = path.to_path_buf();
                self.instance_types.insert(name, t);
            }
        }
        Ok(())
    }

    /// The instance type, if the catalog knows it.
    pub fn instance(&self, name: &str) -> Option<&InstanceType> {
        self.instance_types.get(name)
    }

    /// The GPU model of an instance type, if it has GPUs.
    pub fn gpu_of(&self, instance: &InstanceType) -> Option<(&GpuModel, u32)> {
        let gpu = instance.gpu.as_ref()?;
        self.gpu_models.get(&gpu.model).map(|m| (m, gpu.count))
    }

    /// The GPU model whose product spelling this is, if any.
    pub fn model_by_product(&self, product: &str) -> Option<(&str, &GpuModel)> {
        self.gpu_models
            .iter()
            .find(|(_, m)| m.is_product(product))
            .map(|(k, m)| (k.as_str(), m))
    }

    /// Instance type names closest to `name`, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let family = name.split(['.', '-', '_']).next().unwrap_or(name);
        let mut same_family: Vec<&str> = self
            .instance_types
            .keys()
            .filter(|k| k.split(['.', '-', '_']).next() == Some(family))
            .map(String::as_str)
            .collect();
        if same_family.is_empty() {
            same_family = self
                .instance_types
                .keys()
                .filter(|k| k.chars().next() == name.chars().next())
                .map(String::as_str)
                .collect();
        }
        same_family.truncate(5);
        same_family
    }
}
