//! mig-manager and sharing: the MIG layout a node's `nvidia.com/mig.config` label asks for,
//! applied after the mig-manager pod has been Ready for its delay (`mig.config.state`
//! pending → success, or failed for a layout the GPU cannot take); and the device plugin's
//! time-slicing / MPS config for the node, read from the rendered ClusterPolicy's ConfigMap.

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::super::config::{self, Policy};
use super::super::labels::{self, Labels, MigLayout};
use super::super::world::*;
use crate::fixture::Fault;

impl World {
    #[expect(
        clippy::too_many_arguments,
        reason = "one stage of the pass, kept beside the others"
    )]
    pub(in crate::sim) fn mig_manager(
        &mut self,
        snap: &Snapshot<'_>,
        node: &Node,
        name: &str,
        gpus: Option<&OwnedGpus<'_>>,
        want: &mut Labels,
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
    ) -> MigLayout {
        let (Some(g), Some(config)) = (gpus, want.get("nvidia.com/mig.config").cloned()) else {
            self.mig.remove(name);
            return MigLayout::Disabled;
        };
        if !operand_ready(snap, name, MIG_MANAGER) {
            // Without mig-manager the last applied layout stays on the GPUs.
            return match self.mig.get(name).and_then(|m| m.outcome.clone()) {
                Some(Ok(layout)) => layout,
                _ => MigLayout::Disabled,
            };
        }
        let state = self
            .mig
            .entry(name.to_string())
            .and_modify(|m| {
                if m.config != config {
                    *m = MigState {
                        config: config.clone(),
                        since: now,
                        outcome: None,
                    };
                }
            })
            .or_insert_with(|| MigState {
                config: config.clone(),
                since: now,
                outcome: None,
            });
        if state.outcome.is_none() {
            if now >= state.since + self.delays.mig {
                let held = config != "all-disabled"
                    && self
                        .fixture
                        .faults_on(name)
                        .any(|f| matches!(f, Fault::MigConfigFailed { .. }));
                let outcome = if held {
                    Err("error setting MIG mode on GPU 0: In use by another client".to_string())
                } else {
                    labels::mig_layout(g.model, &config)
                };
                if let Err(why) = &outcome {
                    out.push(Action::Event(EventSpec {
                        namespace: "default".into(),
                        kind: "Node".into(),
                        name: name.to_string(),
                        uid: node.uid().unwrap_or_default(),
                        reason: "MigConfigFailed".into(),
                        message: format!("nvidia-mig-manager: {why}"),
                        warning: true,
                        source: "nvidia-mig-manager".into(),
                    }));
                }
                state.outcome = Some(outcome);
            } else {
                *wake = earliest(*wake, state.since + self.delays.mig);
            }
        }
        let (label, layout) = match &state.outcome {
            None => ("pending", MigLayout::Disabled),
            Some(Ok(layout)) => ("success", layout.clone()),
            Some(Err(_)) => ("failed", MigLayout::Disabled),
        };
        want.insert("nvidia.com/mig.config.state".into(), label.into());
        layout
    }

    pub(in crate::sim) fn sharing(
        &self,
        snap: &Snapshot<'_>,
        pol: &Policy,
        namespace: Option<&str>,
        want: &Labels,
    ) -> Result<Option<labels::Sharing>, String> {
        let Some(cm_name) = &pol.plugin_config_map else {
            return Ok(None);
        };
        let cm = snap
            .config_maps
            .iter()
            .find(|c| c.name_any() == *cm_name && c.namespace().as_deref() == namespace);
        let Some(cm) = cm else {
            return Err(format!(
                "unable to load config: configmap `{cm_name}` not found"
            ));
        };
        let data = cm.data.clone().unwrap_or_default();
        config::sharing_for(
            &data,
            want.get("nvidia.com/device-plugin.config")
                .map(String::as_str),
            pol.plugin_config_default.as_deref(),
        )
    }
}
