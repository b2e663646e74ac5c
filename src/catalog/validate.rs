//! Cross-references and value ranges the parser cannot see, checked once the files are merged
//! (an extension file may name a GPU model an earlier file defines). Errors name the file the
//! offending entry came from.

use super::{Catalog, Cloud};
use crate::input::InputError;

impl Catalog {
    pub(super) fn validate(&self) -> Result<(), InputError> {
        for (name, model) in &self.gpu_models {
            let bad = |what: String| InputError::file(&model.file, what);
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
            for product in std::iter::once(&model.product).chain(&model.product_aliases) {
                if product.is_empty() || product.contains(' ') {
                    return Err(bad(format!(
                        "gpu model `{name}`: product label `{product}` is empty or contains a space"
                    )));
                }
            }
            let (lo, hi) = model.memory_range();
            if model.memory_mib == 0 || lo > hi || !(lo..=hi).contains(&model.memory_mib) {
                return Err(bad(format!(
                    "gpu model `{name}`: memoryRangeMiB [{lo}, {hi}] must contain memoryMiB {}",
                    model.memory_mib
                )));
            }
            for id in &model.pci_device_ids {
                let hex = id.strip_prefix("0x").unwrap_or("");
                if hex.len() != 4 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad(format!(
                        "gpu model `{name}`: PCI device ID `{id}` is not `0x` and 4 hex digits"
                    )));
                }
            }
        }
        // One product spelling names one model, or a node's label could match two expectations.
        let mut owner = std::collections::BTreeMap::new();
        for (name, model) in &self.gpu_models {
            for product in std::iter::once(&model.product).chain(&model.product_aliases) {
                if let Some(other) = owner.insert(product.clone(), name.clone())
                    && &other != name
                {
                    return Err(InputError::file(
                        &model.file,
                        format!(
                            "product label `{product}` is given for gpu models `{other}` and `{name}`"
                        ),
                    ));
                }
            }
        }
        for (name, instance) in &self.instance_types {
            let bad = |what: String| InputError::file(&instance.file, what);
            if let Some(gpu) = &instance.gpu {
                if !self.gpu_models.contains_key(&gpu.model) {
                    let known: Vec<&str> = self.gpu_models.keys().map(String::as_str).collect();
                    return Err(bad(format!(
                        "instance type `{name}`: unknown gpu model `{}` (known: {})",
                        gpu.model,
                        known.join(", ")
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
            match (instance.cloud, instance.hypervisor) {
                (Cloud::Aws, None) => {
                    return Err(bad(format!(
                        "instance type `{name}`: an aws type needs `hypervisor: nitro` or `xen`"
                    )));
                }
                (Cloud::Gke | Cloud::Azure, Some(_)) => {
                    return Err(bad(format!(
                        "instance type `{name}`: `hypervisor` is only for aws types"
                    )));
                }
                _ => {}
            }
            if instance.accelerator.is_some() && instance.cloud != Cloud::Gke {
                return Err(bad(format!(
                    "instance type `{name}`: `accelerator` is only for gke types"
                )));
            }
        }
        Ok(())
    }
}
