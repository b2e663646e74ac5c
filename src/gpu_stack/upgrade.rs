//! The GPU Operator's driver-upgrade controller as it shows on nodes: the per-node state label
//! and its values, as NVIDIA's k8s-operator-libs defines them (`pkg/upgrade/consts.go`, vendored
//! by gpu-operator; `UpgradeStateLabelKeyFmt = "nvidia.com/%s-driver-upgrade-state"` with the
//! driver name `gpu`). The controller walks each node through the states in [`State::ORDER`];
//! `node-maintenance-required` and `post-maintenance-required` replace cordon and drain when an
//! external maintenance operator does them; `upgrade-failed` is left only by a new attempt.

/// The node label holding the upgrade state.
pub const STATE_LABEL: &str = "nvidia.com/gpu-driver-upgrade-state";
/// A node label that keeps the controller off the node (`"true"`).
pub const SKIP_LABEL: &str = "nvidia.com/gpu-driver-upgrade.skip";
/// A pod label that keeps a pod from being drained.
pub const DRAIN_SKIP_POD_LABEL: &str = "nvidia.com/gpu-driver-upgrade-drain.skip";
/// Node annotation: whether the node was unschedulable before the upgrade cordoned it (the
/// controller leaves such a node cordoned afterwards).
pub const INITIAL_UNSCHEDULABLE_ANNOTATION: &str =
    "nvidia.com/gpu-driver-upgrade.node-initial-state.unschedulable";
/// Node annotation: when validation of the new driver started.
pub const VALIDATION_START_ANNOTATION: &str = "nvidia.com/gpu-driver-upgrade-validation-start-time";
/// Node annotation: an upgrade was requested for the node.
pub const REQUESTED_ANNOTATION: &str = "nvidia.com/gpu-driver-upgrade-requested";

/// One value of [`STATE_LABEL`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum State {
    /// The label is absent or empty: the controller has not looked at the node.
    Unknown,
    /// A new driver is pending for the node.
    UpgradeRequired,
    /// The node is to be cordoned.
    CordonRequired,
    /// Waiting for GPU jobs to finish (`waitForCompletion`).
    WaitForJobsRequired,
    /// GPU pods are to be deleted (`gpuPodDeletion`).
    PodDeletionRequired,
    /// The node is to be drained (`drain`).
    DrainRequired,
    /// An external maintenance operator is to cordon and drain.
    NodeMaintenanceRequired,
    /// The external maintenance is to be finished.
    PostMaintenanceRequired,
    /// The driver pod is to be restarted with the new driver.
    PodRestartRequired,
    /// The new driver is being validated.
    ValidationRequired,
    /// The node is to be uncordoned.
    UncordonRequired,
    /// Upgraded.
    UpgradeDone,
    /// The upgrade failed on this node.
    UpgradeFailed,
}

impl State {
    /// The happy path, in order (the maintenance-operator pair stands in for cordon…drain).
    pub const ORDER: [State; 10] = [
        State::UpgradeRequired,
        State::CordonRequired,
        State::WaitForJobsRequired,
        State::PodDeletionRequired,
        State::DrainRequired,
        State::PodRestartRequired,
        State::ValidationRequired,
        State::UncordonRequired,
        State::UpgradeDone,
        State::UpgradeFailed,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            State::Unknown => "",
            State::UpgradeRequired => "upgrade-required",
            State::CordonRequired => "cordon-required",
            State::WaitForJobsRequired => "wait-for-jobs-required",
            State::PodDeletionRequired => "pod-deletion-required",
            State::DrainRequired => "drain-required",
            State::NodeMaintenanceRequired => "node-maintenance-required",
            State::PostMaintenanceRequired => "post-maintenance-required",
            State::PodRestartRequired => "pod-restart-required",
            State::ValidationRequired => "validation-required",
            State::UncordonRequired => "uncordon-required",
            State::UpgradeDone => "upgrade-done",
            State::UpgradeFailed => "upgrade-failed",
        }
    }

    /// The state a label value names; `None` for a value the controller does not write.
    pub fn parse(value: &str) -> Option<State> {
        const ALL: [State; 13] = [
            State::Unknown,
            State::UpgradeRequired,
            State::CordonRequired,
            State::WaitForJobsRequired,
            State::PodDeletionRequired,
            State::DrainRequired,
            State::NodeMaintenanceRequired,
            State::PostMaintenanceRequired,
            State::PodRestartRequired,
            State::ValidationRequired,
            State::UncordonRequired,
            State::UpgradeDone,
            State::UpgradeFailed,
        ];
        ALL.into_iter().find(|s| s.label() == value.trim())
    }

    /// Whether a node in this state is taken out of scheduling by the controller (from cordon
    /// until uncordon).
    pub fn unavailable(self) -> bool {
        matches!(
            self,
            State::CordonRequired
                | State::WaitForJobsRequired
                | State::PodDeletionRequired
                | State::DrainRequired
                | State::NodeMaintenanceRequired
                | State::PostMaintenanceRequired
                | State::PodRestartRequired
                | State::ValidationRequired
                | State::UncordonRequired
        )
    }

    /// Whether the controller is done with the node, one way or the other.
    pub fn terminal(self) -> bool {
        matches!(self, State::UpgradeDone | State::UpgradeFailed)
    }
}

/// `maxUnavailable` as a count of `nodes`: an integer, or a percentage rounded up, as
/// k8s-operator-libs resolves it (`intstr.GetScaledValueFromIntOrPercent(…, roundUp=true)`).
pub fn resolve_max_unavailable(value: &str, nodes: u32) -> Option<u32> {
    let v = value.trim();
    match v.strip_suffix('%') {
        Some(p) => {
            let p: u32 = p.trim().parse().ok()?;
            Some((u64::from(p) * u64::from(nodes)).div_ceil(100) as u32)
        }
        None => v.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_round_trip() {
        for s in State::ORDER {
            assert_eq!(State::parse(s.label()), Some(s), "{s:?}");
        }
        assert_eq!(State::parse(""), Some(State::Unknown));
        assert_eq!(
            State::parse("node-maintenance-required"),
            Some(State::NodeMaintenanceRequired)
        );
        assert_eq!(State::parse("upgrade-done\n"), Some(State::UpgradeDone));
        assert_eq!(State::parse("upgraded"), None);
        assert!(State::DrainRequired.unavailable());
        assert!(!State::UpgradeRequired.unavailable());
        assert!(!State::UpgradeDone.unavailable());
        assert!(State::UpgradeFailed.terminal() && !State::ValidationRequired.terminal());
    }
}
