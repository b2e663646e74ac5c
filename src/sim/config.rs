//! The GPU stack's configuration as the real operator reads it: the `cluster-policy` spec the
//! chart rendered, and the device plugin's config file from the ConfigMap it names.
//!
//! Reading the rendered objects rather than the chart's values keeps the simulator honest: a
//! value only takes effect if the chart actually passes it on, as on a real cluster.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use super::labels::{MigStrategy, Sharing, StackConfig};

/// What the ClusterPolicy spec says, with the real chart's defaults for absent fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Driver version and MIG strategy.
    pub stack: StackConfig,
    /// `devicePlugin.config.name`: the ConfigMap with device plugin configs.
    pub plugin_config_map: Option<String>,
    /// `devicePlugin.config.default`: the config a node gets without the
    /// `nvidia.com/device-plugin.config` label.
    pub plugin_config_default: Option<String>,
    /// `migManager.config.default`: the `nvidia.com/mig.config` the operator gives MIG-capable nodes.
    pub mig_config_default: String,
    /// `driver.upgradePolicy`, when it turns the upgrade controller on (`autoUpgrade: true`).
    pub upgrade: Option<UpgradePolicy>,
}

/// `driver.upgradePolicy` as the upgrade controller reads it (k8s-operator-libs
/// `api/upgrade/v1alpha1`: `maxParallelUpgrades` defaults to 1, `maxUnavailable` to `25%`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpgradePolicy {
    /// `maxParallelUpgrades` (0: no limit).
    pub max_parallel: u32,
    /// `maxUnavailable`: a count or a percentage of the GPU nodes.
    pub max_unavailable: String,
}

fn upgrade_policy(spec: &Value) -> Option<UpgradePolicy> {
    let p = spec.pointer("/driver/upgradePolicy")?;
    if p.get("autoUpgrade").and_then(Value::as_bool) != Some(true) {
        return None;
    }
    Some(UpgradePolicy {
        max_parallel: p
            .get("maxParallelUpgrades")
            .and_then(Value::as_u64)
            .and_then(|n| u32::try_from(n).ok())
            .unwrap_or(1),
        max_unavailable: match p.get("maxUnavailable") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => "25%".into(),
        },
    })
}

/// Reads the spec of a ClusterPolicy object.
pub fn policy(spec: &Value) -> Policy {
    let s = |path: &[&str]| -> Option<String> {
        let mut v = spec;
        for p in path {
            v = v.get(p)?;
        }
        v.as_str().map(str::to_string).filter(|s| !s.is_empty())
    };
    Policy {
        stack: StackConfig {
            driver_version: s(&["driver", "version"]).unwrap_or_else(|| "595.91.07".into()),
            driver_enabled: spec
                .pointer("/driver/enabled")
                .and_then(Value::as_bool)
                .unwrap_or(true),
            mig_strategy: s(&["mig", "strategy"])
                .and_then(|m| MigStrategy::parse(&m))
                .unwrap_or(MigStrategy::Single),
        },
        plugin_config_map: s(&["devicePlugin", "config", "name"]),
        plugin_config_default: s(&["devicePlugin", "config", "default"]),
        mig_config_default: s(&["migManager", "config", "default"])
            .unwrap_or_else(|| "all-disabled".into()),
        upgrade: upgrade_policy(spec),
    }
}

/// The device plugin's config file (k8s-device-plugin `api/config/v1`), the parts that change
/// what a node advertises.
#[derive(Debug, Clone, Deserialize)]
struct PluginConfig {
    version: String,
    #[serde(default)]
    sharing: Option<SharingConfig>,
}

#[derive(Debug, Clone, Deserialize)]
struct SharingConfig {
    #[serde(default, rename = "timeSlicing")]
    time_slicing: Option<SharingSpec>,
    #[serde(default)]
    mps: Option<SharingSpec>,
}

#[derive(Debug, Clone, Deserialize)]
struct SharingSpec {
    #[serde(default, rename = "renameByDefault")]
    rename_by_default: bool,
    #[serde(default)]
    resources: Vec<SharedResource>,
}

#[derive(Debug, Clone, Deserialize)]
struct SharedResource {
    name: String,
    replicas: i64,
    #[serde(default)]
    rename: Option<String>,
}

/// Picks and parses the device plugin config for a node: the key named by the node's
/// `nvidia.com/device-plugin.config` label, else the policy's default, else the only key.
/// `Ok(None)` means no sharing; `Err` is what the device plugin would die with.
pub fn sharing_for(
    data: &BTreeMap<String, String>,
    node_choice: Option<&str>,
    default: Option<&str>,
) -> Result<Option<Sharing>, String> {
    let key = match node_choice.or(default) {
        Some(k) => k.to_string(),
        None if data.len() == 1 => data.keys().next().cloned().unwrap_or_default(),
        None => return Ok(None),
    };
    let Some(text) = data.get(&key) else {
        return Err(format!("unable to load config: no config named `{key}`"));
    };
    parse_sharing(text).map_err(|e| format!("unable to load config `{key}`: {e}"))
}

/// Parses one config file.
pub fn parse_sharing(text: &str) -> Result<Option<Sharing>, String> {
    let cfg: PluginConfig = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
    if cfg.version != "v1" {
        return Err(format!("unknown version `{}`", cfg.version));
    }
    let Some(sharing) = cfg.sharing else {
        return Ok(None);
    };
    let (strategy, spec) = match (sharing.time_slicing, sharing.mps) {
        (Some(_), Some(_)) => return Err("time-slicing and MPS cannot be combined".into()),
        (Some(t), None) => ("time-slicing", t),
        (None, Some(m)) => ("mps", m),
        (None, None) => return Ok(None),
    };
    let Some(gpu) = spec.resources.iter().find(|r| r.name == "nvidia.com/gpu") else {
        return Ok(None);
    };
    if gpu.replicas < 1 {
        return Err(format!(
            "number of replicas must be >= 1, got {}",
            gpu.replicas
        ));
    }
    Ok(Some(Sharing {
        strategy: strategy.into(),
        replicas: u32::try_from(gpu.replicas).map_err(|e| e.to_string())?,
        renamed: spec.rename_by_default || gpu.rename.is_some(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TS: &str = "version: v1\nsharing:\n  timeSlicing:\n    resources:\n      - name: nvidia.com/gpu\n        replicas: 4\n";

    #[test]
    fn reads_the_rendered_policy() {
        let spec = serde_json::json!({
            "driver": {"version": "580.95.05"},
            "mig": {"strategy": "mixed"},
            "devicePlugin": {"config": {"name": "plugin-config", "default": "ts"}},
        });
        let p = policy(&spec);
        assert_eq!(p.stack.driver_version, "580.95.05");
        assert_eq!(p.stack.mig_strategy, MigStrategy::Mixed);
        assert_eq!(p.plugin_config_map.as_deref(), Some("plugin-config"));
        assert_eq!(p.mig_config_default, "all-disabled");
    }

    #[test]
    fn time_slicing_config() {
        let s = parse_sharing(TS).expect("valid").expect("sharing");
        assert_eq!(s.replicas, 4);
        assert_eq!(s.strategy, "time-slicing");
        assert!(!s.renamed);
        let renamed = TS.replace(
            "timeSlicing:\n",
            "timeSlicing:\n    renameByDefault: true\n",
        );
        assert!(parse_sharing(&renamed).expect("valid").expect("s").renamed);
    }

    #[test]
    fn node_label_picks_the_config() {
        let data = BTreeMap::from([
            ("ts".to_string(), TS.to_string()),
            ("none".to_string(), "version: v1\n".to_string()),
        ]);
        assert!(sharing_for(&data, None, Some("ts")).expect("ok").is_some());
        assert!(
            sharing_for(&data, Some("none"), Some("ts"))
                .expect("ok")
                .is_none()
        );
        assert!(sharing_for(&data, Some("nope"), None).is_err());
        assert!(sharing_for(&data, None, None).expect("ok").is_none());
    }

    #[test]
    fn bad_configs_are_errors() {
        assert!(parse_sharing("version: v2\n").is_err());
        assert!(parse_sharing(&TS.replace("replicas: 4", "replicas: 0")).is_err());
        assert!(parse_sharing("not: [valid").is_err());
    }
}
