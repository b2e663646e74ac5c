//! What GPU sharing a node is asked for, from what the plan gives the operator and never from
//! the node: the device plugin's config files (k8s-device-plugin `api/config/v1`, the
//! `sharing.timeSlicing` and `sharing.mps` sections), picked per node as the plugin's config
//! manager does — the node's `nvidia.com/device-plugin.config` label, else
//! `devicePlugin.config.default`, else the only config there is.
//!
//! The configs come from the plan's `operator.values.devicePlugin.config.data` when the chart
//! creates the ConfigMap (`create: true`), else from the ConfigMap the plan names (one its
//! owner created, read from the cluster: a request, not a result), else — verify-only — from
//! the ConfigMap the ClusterPolicy names. The node's replicas, resource names and sharing
//! labels are then only observed against this.
//!
//! This parser is the checks' own: the simulator has another, so that a misreading of the
//! format in one is caught by the other.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::DynamicObject;
use serde::Deserialize;

use super::Ctx;
use crate::gpu_stack::{asks, operator};
use crate::plan::OperatorMode;

/// The device plugin's configs a run's nodes choose from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginConfigs {
    /// Where they were read (for messages).
    pub source: String,
    /// `devicePlugin.config.default`.
    pub default: Option<String>,
    /// Config name → file; `Err` when the ConfigMap could not be read (the device plugin could
    /// not start either).
    pub configs: Result<BTreeMap<String, String>, String>,
}

/// How replicas of a GPU are handed out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// `sharing.timeSlicing`.
    TimeSlicing,
    /// `sharing.mps`.
    Mps,
}

impl Strategy {
    /// GFD's `nvidia.com/gpu.sharing-strategy` value.
    pub fn label(self) -> &'static str {
        match self {
            Strategy::TimeSlicing => "time-slicing",
            Strategy::Mps => "mps",
        }
    }
}

/// One resource the config replicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replicated {
    /// The resource as the device plugin would name it unshared (`nvidia.com/gpu`,
    /// `nvidia.com/mig-1g.5gb`).
    pub name: String,
    /// Replicas per device.
    pub replicas: u64,
    /// The name the replicas are advertised under when renamed (`rename`, or
    /// `<name>.shared` with `renameByDefault`).
    pub rename: Option<String>,
}

/// The sharing one node gets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Share {
    /// The config's name (its key in the ConfigMap).
    pub config: String,
    /// Time-slicing or MPS.
    pub strategy: Strategy,
    /// The replicated resources (replicas > 1 only: one replica is no sharing).
    pub resources: Vec<Replicated>,
    /// A container asking for more than one replica is refused at admission.
    pub fail_requests_greater_than_one: bool,
}

impl Share {
    /// The replication of `resource`, if the config shares it.
    pub fn of(&self, resource: &str) -> Option<&Replicated> {
        self.resources.iter().find(|r| r.name == resource)
    }

    /// `time-slicing config ts (ConfigMap gpu-operator/plugin-config)`, for messages.
    pub fn describe(&self, source: &str) -> String {
        format!(
            "{} config {} from {source}",
            self.strategy.label(),
            self.config
        )
    }
}

impl PluginConfigs {
    /// The sharing the node with these labels gets: `Ok(None)` for none, `Err` for a config
    /// the device plugin could not load (it would not start on the node).
    pub fn for_node(&self, labels: &BTreeMap<String, String>) -> Result<Option<Share>, String> {
        let configs = self.configs.as_ref().map_err(Clone::clone)?;
        let key = match labels.get(asks::PLUGIN_CONFIG).or(self.default.as_ref()) {
            Some(k) => k.clone(),
            None if configs.len() == 1 => configs.keys().next().cloned().unwrap_or_default(),
            None => return Ok(None),
        };
        let Some(text) = configs.get(&key) else {
            let known: Vec<&str> = configs.keys().map(String::as_str).collect();
            return Err(format!(
                "device plugin config `{key}` is not in {} (it has: {})",
                self.source,
                known.join(", ")
            ));
        };
        parse(&key, text)
            .map_err(|e| format!("device plugin config `{key}` in {}: {e}", self.source))
    }
}

/// Reads the configs the run's nodes choose from; `None` when no sharing is configured.
pub async fn requested(ctx: &Ctx<'_>) -> Option<PluginConfigs> {
    let op = &ctx.plan.operator;
    let cfg = op.values.pointer("/devicePlugin/config");
    let text = |key: &str| {
        cfg.and_then(|c| c.get(key))
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let create = cfg
        .and_then(|c| c.get("create"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    if create && let Some(data) = cfg.and_then(|c| c.get("data")) {
        return Some(from_plan(data, text("default")));
    }
    let (name, default) = match text("name") {
        Some(name) => (name, text("default")),
        None if op.mode == OperatorMode::Existing => from_policy(ctx).await?,
        None => return None,
    };
    let source = format!("ConfigMap {}/{name}", op.namespace);
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &op.namespace);
    let configs = match api.get_opt(&name).await {
        Ok(Some(cm)) => Ok(cm.data.unwrap_or_default()),
        Ok(None) => Err(format!("{source} does not exist")),
        Err(e) => Err(format!("{source} could not be read: {e}")),
    };
    Some(PluginConfigs {
        source,
        default,
        configs,
    })
}

/// The configs the plan's values give the chart to create.
pub fn from_plan(data: &serde_json::Value, default: Option<String>) -> PluginConfigs {
    let source = "operator.values.devicePlugin.config.data".to_string();
    let configs = match data.as_object() {
        Some(map) => map
            .iter()
            .map(|(k, v)| match v.as_str() {
                Some(s) => Ok((k.clone(), s.to_string())),
                None => Err(format!("{source}.{k} is not a string")),
            })
            .collect(),
        None => Err(format!("{source} is not a mapping")),
    };
    PluginConfigs {
        source,
        default,
        configs,
    }
}

/// `devicePlugin.config` of the ClusterPolicy already on the cluster (verify-only runs).
async fn from_policy(ctx: &Ctx<'_>) -> Option<(String, Option<String>)> {
    let api: Api<DynamicObject> = Api::all_with(ctx.client.clone(), &operator::cluster_policy());
    let list = api.list(&Default::default()).await.ok()?;
    let spec = list
        .items
        .first()?
        .data
        .get("spec")?
        .get("devicePlugin")?
        .get("config")?;
    let s = |k: &str| {
        spec.get(k)
            .and_then(serde_json::Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    Some((s("name")?, s("default")))
}

#[derive(Deserialize)]
struct File {
    version: String,
    #[serde(default)]
    sharing: Option<RawSharing>,
}

#[derive(Deserialize)]
struct RawSharing {
    #[serde(default, rename = "timeSlicing")]
    time_slicing: Option<RawSpec>,
    #[serde(default)]
    mps: Option<RawSpec>,
}

#[derive(Deserialize)]
struct RawSpec {
    #[serde(default, rename = "renameByDefault")]
    rename_by_default: bool,
    #[serde(default, rename = "failRequestsGreaterThanOne")]
    fail_requests_greater_than_one: Option<bool>,
    #[serde(default)]
    resources: Vec<RawResource>,
}

#[derive(Deserialize)]
struct RawResource {
    name: String,
    replicas: i64,
    #[serde(default)]
    rename: Option<String>,
    #[serde(default)]
    devices: Option<Devices>,
}

/// `devices: all` (the default) or a list of indices / UUIDs.
#[derive(Deserialize)]
#[serde(untagged)]
#[expect(dead_code, reason = "only which form the field takes matters")]
enum Devices {
    All(String),
    Some(Vec<serde::de::IgnoredAny>),
}

/// Parses one config file. Sharing only some of a node's GPUs (a `devices` list) is refused:
/// how many of each resource that leaves depends on which GPUs the indices name.
pub fn parse(config: &str, text: &str) -> Result<Option<Share>, String> {
    let file: File = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if file.version != "v1" {
        return Err(format!("unknown version `{}`, expected `v1`", file.version));
    }
    let Some(sharing) = file.sharing else {
        return Ok(None);
    };
    let (strategy, spec) = match (sharing.time_slicing, sharing.mps) {
        (Some(_), Some(_)) => return Err("time-slicing and MPS cannot both be set".into()),
        (Some(t), None) => (Strategy::TimeSlicing, t),
        (None, Some(m)) => (Strategy::Mps, m),
        (None, None) => return Ok(None),
    };
    let mut resources = Vec::new();
    for r in &spec.resources {
        if r.replicas < 1 {
            return Err(format!(
                "{}: replicas must be at least 1, got {}",
                r.name, r.replicas
            ));
        }
        match &r.devices {
            None => {}
            Some(Devices::All(a)) if a == "all" => {}
            Some(_) => {
                return Err(format!(
                    "{}: sharing only some devices (`devices:` other than `all`) is not supported by gpuconform's expectations",
                    r.name
                ));
            }
        }
        // MPS serves whole GPUs only (device plugin v0.15).
        if strategy == Strategy::Mps && r.name != crate::gpu_stack::resources::GPU {
            return Err(format!("{}: MPS shares only nvidia.com/gpu", r.name));
        }
        if r.replicas == 1 {
            continue;
        }
        let rename = r
            .rename
            .clone()
            .filter(|n| !n.is_empty())
            .or_else(|| spec.rename_by_default.then(|| format!("{}.shared", r.name)));
        resources.push(Replicated {
            name: r.name.clone(),
            replicas: r.replicas.unsigned_abs(),
            rename,
        });
    }
    if resources.is_empty() {
        return Ok(None);
    }
    Ok(Some(Share {
        config: config.to_string(),
        strategy,
        resources,
        // The device plugin forces it on for MPS (v0.15.0 release notes).
        fail_requests_greater_than_one: strategy == Strategy::Mps
            || spec.fail_requests_greater_than_one.unwrap_or(false),
    }))
}

/// The resources a node advertises under `share`, from what it would advertise unshared:
/// each replicated resource × its replicas, under its new name when renamed (the old name
/// then must be 0 or absent).
pub fn apply(share: Option<&Share>, unshared: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let Some(share) = share else {
        return unshared;
    };
    let mut out = BTreeMap::new();
    for (name, count) in unshared {
        match share.of(&name) {
            None => {
                *out.entry(name).or_insert(0) += count;
            }
            Some(r) => match &r.rename {
                None => {
                    *out.entry(name).or_insert(0) += count * r.replicas;
                }
                Some(new) => {
                    *out.entry(new.clone()).or_insert(0) += count * r.replicas;
                    out.entry(name).or_insert(0);
                }
            },
        }
    }
    out
}

#[cfg(test)]
mod tests;
