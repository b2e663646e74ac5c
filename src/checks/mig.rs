//! What MIG devices a node must offer, from what was asked — the MIG strategy the plan
//! installs the operator with (`mig.strategy`, the chart's default `single`), the layout the
//! node is asked for (`nvidia.com/mig.config`: mig-parted's named configs `all-disabled`,
//! `all-balanced`, `all-<profile>`) — and the catalog's profiles of the node's expected GPU
//! model. Never from the node's own MIG counts: a node that lost a GPU or half-applied a layout
//! must not pass against itself.

use std::collections::BTreeMap;

use super::GpuNode;
use crate::gpu_stack::resources;

/// The expected MIG resources, or why none can be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MigExpectation {
    /// MIG is not in play: whole GPUs.
    Off,
    /// Resource name → count on the node.
    Devices(BTreeMap<String, u64>),
    /// A config name mig-parted's default config does not define (a custom config from the
    /// plan's ConfigMap is not read yet): the caller falls back to what the node says.
    Unknown(String),
    /// A layout the strategy cannot serve (several profiles under `single`).
    Invalid(String),
}

/// The MIG devices `g` must offer under `strategy` with layout `config`.
pub fn expected(strategy: &str, config: Option<&str>, g: &GpuNode) -> MigExpectation {
    let Some(config) = config.filter(|c| *c != "all-disabled") else {
        return MigExpectation::Off;
    };
    if strategy == "none" || !g.model.mig_capable() {
        return MigExpectation::Off;
    }
    let layout: BTreeMap<String, u32> = if config == "all-balanced" {
        g.model.mig_all_balanced.clone()
    } else if let Some(p) = config
        .strip_prefix("all-")
        .and_then(|name| g.model.mig_profiles.iter().find(|p| p.name == name))
    {
        BTreeMap::from([(p.name.clone(), p.max_instances)])
    } else {
        return MigExpectation::Unknown(config.to_string());
    };
    if layout.is_empty() {
        return MigExpectation::Unknown(config.to_string());
    }
    let gpus = u64::from(g.count);
    match strategy {
        "mixed" => MigExpectation::Devices(
            layout
                .iter()
                .map(|(p, n)| {
                    (
                        format!("{}{p}", resources::MIG_PREFIX),
                        u64::from(*n) * gpus,
                    )
                })
                .collect(),
        ),
        _ if layout.len() == 1 => MigExpectation::Devices(BTreeMap::from([(
            resources::GPU.to_string(),
            layout.values().map(|n| u64::from(*n) * gpus).sum(),
        )])),
        _ => MigExpectation::Invalid(format!(
            "mig.config {config} has {} profiles, the single strategy needs one",
            layout.len()
        )),
    }
}

/// The profile of an `all-<profile>` layout on `g`'s model (the only layouts the single
/// strategy serves), if `config` is one.
pub fn single_profile<'g>(
    config: Option<&str>,
    g: &'g GpuNode,
) -> Option<&'g crate::catalog::MigProfile> {
    let name = config?.strip_prefix("all-")?;
    g.model.mig_profiles.iter().find(|p| p.name == name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;

    fn node(model: &str, count: u32) -> GpuNode {
        let c = Catalog::embedded().expect("catalog");
        GpuNode {
            name: "n".into(),
            instance_type: "t".into(),
            model_key: model.into(),
            model: c.gpu_models[model].clone(),
            count,
            expectation: "e".into(),
            driver: None,
        }
    }

    #[test]
    fn layouts_times_gpus() {
        let a100 = node("A100-SXM4-40GB", 8);
        let d = |pairs: &[(&str, u64)]| {
            MigExpectation::Devices(pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect())
        };
        let rows = [
            ("single", Some("all-1g.5gb"), d(&[("nvidia.com/gpu", 56)])),
            ("single", Some("all-7g.40gb"), d(&[("nvidia.com/gpu", 8)])),
            (
                "mixed",
                Some("all-balanced"),
                d(&[
                    ("nvidia.com/mig-1g.5gb", 16),
                    ("nvidia.com/mig-2g.10gb", 8),
                    ("nvidia.com/mig-3g.20gb", 8),
                ]),
            ),
            ("mixed", Some("all-disabled"), MigExpectation::Off),
            ("mixed", None, MigExpectation::Off),
            ("none", Some("all-1g.5gb"), MigExpectation::Off),
            (
                "single",
                Some("all-balanced"),
                MigExpectation::Invalid(
                    "mig.config all-balanced has 3 profiles, the single strategy needs one".into(),
                ),
            ),
            (
                "mixed",
                Some("custom-a"),
                MigExpectation::Unknown("custom-a".into()),
            ),
            (
                "mixed",
                Some("all-1g.10gb"),
                MigExpectation::Unknown("all-1g.10gb".into()),
            ),
        ];
        for (strategy, config, want) in rows {
            assert_eq!(
                expected(strategy, config, &a100),
                want,
                "{strategy} {config:?}"
            );
        }
        // A GPU without MIG has no MIG devices whatever is asked.
        assert_eq!(
            expected("mixed", Some("all-balanced"), &node("T4", 1)),
            MigExpectation::Off
        );
    }
}
