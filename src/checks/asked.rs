//! What the run asked of the GPU stack, read once per check: the MIG strategy the plan installs
//! the operator with, and the device plugin's sharing configs ([`super::sharing`]). Per node it
//! adds what the node's owner asked with labels (`nvidia.com/mig.config`,
//! `nvidia.com/device-plugin.config`). Checks judge the node's labels and resources against
//! this, never against the node's own counts.

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::mig::{self, MigExpectation};
use super::mig_parted::{self, MigPartedConfigs};
use super::sharing::{self, PluginConfigs, Share};
use super::{Ctx, GpuNode};
use crate::gpu_stack::asks;

/// The run's requests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    /// `mig.strategy` (the chart's default `single`).
    pub mig_strategy: String,
    /// The device plugin's configs, when the plan configures any.
    pub plugin: Option<PluginConfigs>,
    /// Custom mig-parted configs, when the plan gives mig-manager any.
    pub mig_parted: Option<MigPartedConfigs>,
}

impl Asked {
    /// Reads the requests of the run (the plan, and a ConfigMap the plan names).
    pub async fn read(ctx: &Ctx<'_>) -> Self {
        Self {
            mig_strategy: ctx.plan.operator.mig_strategy(),
            plugin: sharing::requested(ctx).await,
            mig_parted: mig_parted::requested(ctx).await,
        }
    }

    /// No sharing, MIG strategy `strategy` (tests, and nodes no plan configures).
    pub fn plain(strategy: &str) -> Self {
        Self {
            mig_strategy: strategy.to_string(),
            plugin: None,
            mig_parted: None,
        }
    }

    /// The sharing `node` gets; `Err` when its config cannot be loaded.
    pub fn share(&self, node: &Node) -> Result<Option<Share>, String> {
        match &self.plugin {
            None => Ok(None),
            Some(p) => p.for_node(node.labels()),
        }
    }

    /// The MIG devices `node` must offer: a layout of mig-parted's defaults, else one of the
    /// plan's custom configs.
    pub fn mig(&self, node: &Node, g: &GpuNode) -> MigExpectation {
        let known = mig::expected(
            &self.mig_strategy,
            node.labels().get(asks::MIG_CONFIG).map(String::as_str),
            g,
        );
        let (MigExpectation::Unknown(config), Some(custom)) = (&known, &self.mig_parted) else {
            return known;
        };
        if self.mig_strategy == "none" || !g.model.mig_capable() {
            return MigExpectation::Off;
        }
        match custom.layout(config, g) {
            Ok(None) => known,
            Ok(Some(per_gpu)) if per_gpu.iter().all(Option::is_none) => MigExpectation::Off,
            Ok(Some(per_gpu)) => {
                match mig_parted::resources(&self.mig_strategy, config, &per_gpu) {
                    Ok(d) => MigExpectation::Devices(d),
                    Err(why) => MigExpectation::Invalid(why),
                }
            }
            Err(why) => MigExpectation::Invalid(why),
        }
    }

    /// The one MIG profile every GPU of `node` is split into under the single strategy.
    pub fn single_profile<'g>(
        &self,
        node: &Node,
        g: &'g GpuNode,
    ) -> Option<&'g crate::catalog::MigProfile> {
        if self.mig_strategy != "single" {
            return None;
        }
        let config = node.labels().get(asks::MIG_CONFIG).map(String::as_str);
        if let Some(p) = mig::single_profile(config, g) {
            return Some(p);
        }
        // A custom config with one profile on every GPU.
        let per_gpu = self.mig_parted.as_ref()?.layout(config?, g).ok()??;
        let mut names = per_gpu.iter().flatten().flat_map(|l| l.keys());
        let first = names.next()?;
        if per_gpu.iter().any(Option::is_none) || names.any(|n| n != first) {
            return None;
        }
        g.model.mig_profiles.iter().find(|p| &p.name == first)
    }

    /// Where the sharing configs come from, for messages.
    pub fn plugin_source(&self) -> &str {
        self.plugin.as_ref().map_or("", |p| p.source.as_str())
    }
}

/// What the source of a recorded real node says its owner asked (tests of the checks).
#[cfg(test)]
pub fn of_real_node(r: &crate::fixture::real_nodes::RealNode) -> Asked {
    Asked {
        mig_strategy: r
            .truth
            .mig_strategy
            .clone()
            .unwrap_or_else(|| "single".into()),
        plugin: r.truth.plugin_configs.as_ref().map(|c| PluginConfigs {
            source: "the source's device plugin ConfigMap".into(),
            default: r.truth.plugin_default.clone(),
            configs: Ok(c.clone()),
        }),
        mig_parted: None,
    }
}
