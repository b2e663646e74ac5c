//! Custom MIG layouts: mig-parted's config file (NVIDIA/mig-parted `api/spec/v1`, the
//! `mig-configs` the operator's mig-manager reads) as the plan gives it — the chart's
//! `migManager.config.data` (`config.yaml`) when it creates the ConfigMap, else the ConfigMap
//! `migManager.config.name` names, read from the cluster (a request: its owner wrote it).
//!
//! A config is a list of entries, each selecting GPUs (`devices: all` or indices, narrowed by
//! `device-filter`, PCI `0x<device><vendor>` ids) and giving them MIG on or off and the MIG
//! devices per GPU. The checks' own reading: the simulator plays only mig-parted's default
//! configs.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use serde::Deserialize;

use super::{Ctx, GpuNode};

/// The custom MIG configs the plan asks mig-manager to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigPartedConfigs {
    /// Where they were read (for messages).
    pub source: String,
    /// The file's text, or why it could not be read.
    pub text: Result<String, String>,
}

/// The MIG devices per GPU of one node under a custom config: `None` for a GPU with MIG off.
pub type PerGpu = Vec<Option<BTreeMap<String, u32>>>;

/// Reads the plan's custom MIG configs; `None` when the plan names none (the operator's
/// default config, whose layouts [`super::mig`] knows).
pub async fn requested(ctx: &Ctx<'_>) -> Option<MigPartedConfigs> {
    let op = &ctx.plan.operator;
    let from_plan = op.values.pointer("/migManager/config").cloned();
    // Verify-only with nothing in the plan: what the ClusterPolicy already on the cluster asks.
    let cfg = match from_plan {
        Some(c) => c,
        None if op.mode == crate::plan::OperatorMode::Existing => policy_config(ctx).await?,
        None => return None,
    };
    let create = cfg.get("create").and_then(serde_json::Value::as_bool) == Some(true);
    if create && let Some(data) = cfg.get("data") {
        let source = "operator.values.migManager.config.data".to_string();
        let text = data
            .get("config.yaml")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
            .ok_or_else(|| format!("{source} has no `config.yaml` string"));
        return Some(MigPartedConfigs { source, text });
    }
    let name = cfg
        .get("name")
        .and_then(serde_json::Value::as_str)
        .filter(|n| !n.is_empty() && *n != "default-mig-parted-config")?;
    let source = format!("ConfigMap {}/{name}", op.namespace);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &op.namespace);
    let text = match api.get_opt(name).await {
        Ok(Some(cm)) => cm
            .data
            .and_then(|d| d.get("config.yaml").cloned())
            .ok_or_else(|| format!("{source} has no `config.yaml`")),
        Ok(None) => Err(format!("{source} does not exist")),
        Err(e) => Err(format!("{source} could not be read: {e}")),
    };
    Some(MigPartedConfigs { source, text })
}

/// `spec.migManager.config` of the ClusterPolicy on the cluster.
async fn policy_config(ctx: &Ctx<'_>) -> Option<serde_json::Value> {
    let api: Api<kube::api::DynamicObject> = Api::all_with(
        ctx.client.clone(),
        &crate::gpu_stack::operator::cluster_policy(),
    );
    let list = api.list(&Default::default()).await.ok()?;
    list.items
        .first()?
        .data
        .pointer("/spec/migManager/config")
        .cloned()
}

#[derive(Deserialize)]
struct File {
    version: String,
    #[serde(rename = "mig-configs")]
    mig_configs: BTreeMap<String, Vec<Entry>>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default, rename = "device-filter")]
    device_filter: Option<OneOrMany>,
    devices: Devices,
    #[serde(rename = "mig-enabled")]
    mig_enabled: bool,
    #[serde(default, rename = "mig-devices")]
    mig_devices: BTreeMap<String, u32>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Devices {
    All(String),
    Indices(Vec<u32>),
}

impl MigPartedConfigs {
    /// The MIG devices of each of `g`'s expected GPUs under config `name`; `Ok(None)` when the
    /// file does not define `name`.
    pub fn layout(&self, name: &str, g: &GpuNode) -> Result<Option<PerGpu>, String> {
        let text = self.text.as_ref().map_err(Clone::clone)?;
        let file: File =
            serde_saphyr::from_str(text).map_err(|e| format!("{}: {e}", self.source))?;
        if file.version != "v1" {
            return Err(format!(
                "{}: unknown version `{}`, expected `v1`",
                self.source, file.version
            ));
        }
        let Some(entries) = file.mig_configs.get(name) else {
            return Ok(None);
        };
        let mut per_gpu: Vec<Option<Option<BTreeMap<String, u32>>>> = vec![None; g.count as usize];
        for (i, e) in entries.iter().enumerate() {
            if !filter_matches(e.device_filter.as_ref(), &g.model.pci_device_ids) {
                continue;
            }
            let indices: Vec<usize> = match &e.devices {
                Devices::All(a) if a == "all" => (0..per_gpu.len()).collect(),
                Devices::All(other) => {
                    return Err(format!(
                        "{}: mig-configs.{name}[{i}].devices is `{other}`, expected `all` or a list of indices",
                        self.source
                    ));
                }
                Devices::Indices(ix) => ix.iter().map(|&x| x as usize).collect(),
            };
            for ix in indices {
                let Some(slot) = per_gpu.get_mut(ix) else {
                    return Err(format!(
                        "{}: mig-configs.{name}[{i}] names GPU {ix}, the node has {} ({})",
                        self.source,
                        g.count,
                        g.describe()
                    ));
                };
                if e.mig_enabled {
                    for p in e.mig_devices.keys() {
                        if !g.model.mig_profiles.iter().any(|m| &m.name == p) {
                            return Err(format!(
                                "{}: mig-configs.{name}[{i}] asks for {p}, which {} has not",
                                self.source, g.model.product
                            ));
                        }
                    }
                    *slot = Some(Some(e.mig_devices.clone()));
                } else {
                    *slot = Some(None);
                }
            }
        }
        per_gpu
            .into_iter()
            .enumerate()
            .map(|(ix, s)| {
                s.ok_or_else(|| {
                    format!(
                        "{}: mig-configs.{name} leaves GPU {ix} of {} unconfigured",
                        self.source,
                        g.describe()
                    )
                })
            })
            .collect::<Result<PerGpu, String>>()
            .map(Some)
    }
}

/// Whether an entry's `device-filter` (none: every GPU) names the model's PCI device.
fn filter_matches(filter: Option<&OneOrMany>, ids: &[String]) -> bool {
    let wanted: Vec<String> = match filter {
        None => return true,
        Some(OneOrMany::One(s)) => vec![s.to_ascii_lowercase()],
        Some(OneOrMany::Many(v)) => v.iter().map(|s| s.to_ascii_lowercase()).collect(),
    };
    ids.iter().any(|id| {
        let device = id.trim_start_matches("0x").to_ascii_lowercase();
        wanted.contains(&format!("0x{device}10de"))
    })
}

/// The resources a node offers under `strategy` with these per-GPU layouts.
pub fn resources(
    strategy: &str,
    config: &str,
    per_gpu: &PerGpu,
) -> Result<BTreeMap<String, u64>, String> {
    let gpu = crate::gpu_stack::resources::GPU.to_string();
    let whole = per_gpu.iter().filter(|l| l.is_none()).count() as u64;
    let mut mig: BTreeMap<String, u64> = BTreeMap::new();
    for l in per_gpu.iter().flatten() {
        for (p, n) in l {
            *mig.entry(p.clone()).or_insert(0) += u64::from(*n);
        }
    }
    if strategy == "mixed" {
        let mut out: BTreeMap<String, u64> = mig
            .into_iter()
            .map(|(p, n)| (format!("{}{p}", crate::gpu_stack::resources::MIG_PREFIX), n))
            .collect();
        out.insert(gpu, whole);
        return Ok(out);
    }
    match (whole as usize, mig.len()) {
        (_, 0) => Ok(BTreeMap::from([(gpu, whole)])),
        (0, 1) => Ok(BTreeMap::from([(gpu, mig.values().sum())])),
        _ => Err(format!(
            "mig.config {config} mixes {} profile(s) and {whole} GPU(s) without MIG; the single strategy needs one profile on every GPU",
            mig.len()
        )),
    }
}

#[cfg(test)]
mod tests;
