//! The instance catalog: what an EC2 instance type is made of, and what the GPU stack should
//! report about it.
//!
//! Two tables, both data in `fixtures/catalog/instances.yaml` (embedded in the binary, and
//! replaceable with `--catalog`): GPU models (the product label GFD publishes, memory as NVML
//! reports it, compute capability, family, MIG profiles) and instance types (vCPUs, memory, which
//! GPU model and how many). Every entry carries the source of its numbers. The local cluster sizes
//! its nodes from it; the checks derive their expectations from it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::input::{InputError, load_yaml, parse_yaml};

/// The catalog shipped with the binary.
pub const EMBEDDED: &str = include_str!("../fixtures/catalog/instances.yaml");
/// The name errors use for the embedded catalog.
pub const EMBEDDED_NAME: &str = "fixtures/catalog/instances.yaml";

/// Instance types and GPU models, keyed by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Catalog {
    /// Format version of the file.
    pub version: u32,
    /// GPU models by key (e.g. `V100-SXM2-16GB`).
    pub gpu_models: BTreeMap<String, GpuModel>,
    /// Instance types by EC2 name (e.g. `p3.2xlarge`).
    pub instance_types: BTreeMap<String, InstanceType>,
}

/// One GPU model as the GPU stack reports it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuModel {
    /// `nvidia.com/gpu.product` as GPU Feature Discovery writes it (NVML name, spaces → `-`).
    pub product: String,
    /// Memory per GPU in MiB as NVML reports it (`nvidia.com/gpu.memory`).
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// CUDA compute capability, `major.minor`.
    pub compute_capability: String,
    /// GFD's architecture family (`volta`, `turing`, `ampere`, `ada-lovelace`, `hopper`).
    pub family: String,
    /// MIG profiles, empty when the GPU is not MIG-capable.
    #[serde(default)]
    pub mig_profiles: Vec<MigProfile>,
    /// The GPU Operator's default `all-balanced` MIG layout: profile → instances per GPU.
    #[serde(default)]
    pub mig_all_balanced: BTreeMap<String, u32>,
    /// Where the numbers come from.
    pub source: String,
}

/// One MIG profile of a MIG-capable GPU.
#[derive(Debug, Clone, Deserialize)]
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

/// One EC2 instance type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct InstanceType {
    /// Virtual CPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    #[serde(rename = "memoryMiB")]
    pub memory_mib: u64,
    /// `nitro` or `xen`; decides what GFD reports as `nvidia.com/gpu.machine`.
    pub hypervisor: Hypervisor,
    /// The GPUs, absent for CPU-only types.
    #[serde(default)]
    pub gpu: Option<InstanceGpu>,
    /// Where the numbers come from.
    pub source: String,
}

/// The virtualisation an instance type runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hypervisor {
    /// AWS Nitro: DMI product name is the instance type.
    Nitro,
    /// Xen (older types such as p3): DMI product name is `HVM-domU`.
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
}

impl Catalog {
    /// The catalog embedded in the binary.
    pub fn embedded() -> Result<Self, InputError> {
        let catalog: Catalog = parse_yaml(Path::new(EMBEDDED_NAME), EMBEDDED)?;
        catalog.validate(Path::new(EMBEDDED_NAME))?;
        Ok(catalog)
    }

    /// A catalog from a file.
    pub fn load(file: &Path) -> Result<Self, InputError> {
        let catalog: Catalog = load_yaml(file)?;
        catalog.validate(file)?;
        Ok(catalog)
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

    /// Instance type names closest to `name`, for "did you mean" hints.
    pub fn suggest(&self, name: &str) -> Vec<&str> {
        let family = name.split('.').next().unwrap_or(name);
        let mut same_family: Vec<&str> = self
            .instance_types
            .keys()
            .filter(|k| k.split('.').next() == Some(family))
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

    /// Cross-references and value ranges the parser cannot see.
    fn validate(&self, file: &Path) -> Result<(), InputError> {
        let bad = |what: String| InputError::file(file, what);
        for (name, model) in &self.gpu_models {
            if model.compute_capability_parts().is_none() {
                return Err(bad(format!(
                    "gpu model `{name}`: compute capability `{}` is not `major.minor`",
                    model.compute_capability
                )));
            }
            for profile in model.mig_all_balanced.keys() {
                if !model.mig_profiles.iter().any(|p| &p.name == profile) {
                    return Err(bad(format!(
                        "gpu model `{name}`: all-balanced layout names unknown profile `{profile}`"
                    )));
                }
            }
            if model.product.contains(' ') {
                return Err(bad(format!(
                    "gpu model `{name}`: product label `{}` contains a space",
                    model.product
                )));
            }
        }
        for (name, instance) in &self.instance_types {
            if let Some(gpu) = &instance.gpu {
                if !self.gpu_models.contains_key(&gpu.model) {
                    return Err(bad(format!(
                        "instance type `{name}`: unknown gpu model `{}`",
                        gpu.model
                    )));
                }
                if gpu.count == 0 {
                    return Err(bad(format!("instance type `{name}`: gpu count is 0")));
                }
            }
            if instance.vcpus == 0 || instance.memory_mib == 0 {
                return Err(bad(format!(
                    "instance type `{name}`: vcpus and memory must be positive"
                )));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_catalog_loads_and_cross_references() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        for required in [
            "m5.xlarge",
            "m5.2xlarge",
            "p3.2xlarge",
            "g4dn.xlarge",
            "p4d.24xlarge",
            "p5.48xlarge",
        ] {
            assert!(catalog.instance(required).is_some(), "{required} missing");
        }
    }

    #[test]
    fn seed_gpu_is_a_v100() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let p3 = catalog.instance("p3.2xlarge").expect("p3.2xlarge");
        let (model, count) = catalog.gpu_of(p3).expect("p3 has a gpu");
        assert_eq!(model.product, "Tesla-V100-SXM2-16GB");
        assert_eq!(count, 1);
        assert_eq!(model.family, "volta");
        assert!(!model.mig_capable());
    }

    #[test]
    fn p4d_has_eight_mig_capable_a100s() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let p4d = catalog.instance("p4d.24xlarge").expect("p4d");
        let (model, count) = catalog.gpu_of(p4d).expect("p4d has gpus");
        assert_eq!(count, 8);
        assert!(model.mig_capable());
        assert_eq!(model.compute_capability_parts(), Some((8, 0)));
    }

    #[test]
    fn suggestions_stay_in_the_family() {
        let catalog = Catalog::embedded().expect("embedded catalog");
        let s = catalog.suggest("p3.4xlarge");
        assert!(s.contains(&"p3.2xlarge"), "{s:?}");
    }

    #[test]
    fn unknown_gpu_model_is_rejected() {
        let text = "version: 1\ngpuModels: {}\ninstanceTypes:\n  x.large:\n    vcpus: 2\n    memoryMiB: 1024\n    hypervisor: nitro\n    gpu: {model: nope, count: 1}\n    source: test\n";
        let catalog: Catalog = parse_yaml(Path::new("c.yaml"), text).expect("parses");
        let err = catalog.validate(Path::new("c.yaml")).expect_err("invalid");
        assert!(err.message.contains("unknown gpu model `nope`"), "{err}");
    }
}
