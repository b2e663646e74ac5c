//! The GPU Operator's driver upgrade controller (NVIDIA's k8s-operator-libs, `pkg/upgrade`) for
//! kwok nodes. When the ClusterPolicy asks for a driver other than the one a node's driver pod
//! runs and `driver.upgradePolicy.autoUpgrade` is on, the controller walks the node through the
//! states of [`State::ORDER`] with the policy's parallelism ([`crate::sim::upgrade::step`]) and
//! does each state's work through the API as the real one does: it cordons the node, deletes
//! the old driver pod and the validator pod (whose init containers validate a driver once) (the driver DaemonSet's `OnDelete` strategy then gives the node a pod of
//! the new template, through the real DaemonSet controller), waits for the new pod and for the
//! validator, and uncordons the node (unless it was unschedulable before the upgrade).
//!
//! What a node runs is read from its Ready driver pod's image tag, so a chart change alone
//! changes nothing until the pod is replaced; GFD's driver labels and the bench's driver follow
//! the node only once it is out of the upgrade (`upgrade-done`), as GFD relabels after the
//! driver restart. Nodes whose driver is in sync get `upgrade-done`, as the controller labels
//! them. A node in `upgrade-failed` goes back to `uncordon-required` once its driver pod is in
//! sync, Ready and validated (after a rollback, or a failure that was not the driver's), and to
//! `upgrade-required` when another driver is asked for than the one it failed to get. Every
//! unschedulable node counts against `maxUnavailable`, a failed one left cordoned too.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;

use crate::fixture::Fault;
use crate::gpu_stack::pod_ready;
use crate::gpu_stack::upgrade::{STATE_LABEL, State, resolve_max_unavailable};
use crate::sim::config::Policy;
use crate::sim::upgrade::{NodeFault, Policy as Limits, step};
use crate::sim::world::{
    APP, Action, DRIVER, EventSpec, Snapshot, World, earliest, label_is, node_gpus,
};

/// The operator validator DaemonSet.
const VALIDATOR: &str = "nvidia-operator-validator";

/// The controller's memory between passes.
#[derive(Debug, Default)]
pub(in crate::sim) struct UpgradeMemory {
    /// Each GPU node's state.
    pub(in crate::sim) states: BTreeMap<String, State>,
    /// When it entered that state.
    entered: HashMap<String, Instant>,
    /// Nodes that were unschedulable before the controller cordoned them (left cordoned).
    initially_unschedulable: HashSet<String>,
    /// Nodes the controller cordoned itself (a node it left cordoned after a failure is not
    /// "unschedulable before" when it tries again).
    cordoned_by_us: HashSet<String>,
    /// The next reconcile.
    next_tick: Option<Instant>,
    /// The driver each node ran when first seen (a `validationFails` fault bites on any other).
    first_driver: HashMap<String, String>,
    /// The driver GFD shows on each node.
    labeled: HashMap<String, String>,
    /// The driver each failed node failed to get: a new attempt starts only for another one.
    failed_for: HashMap<String, String>,
}

/// How long a state's work takes at least, in reconcile periods: pod deletion and drain evict
/// workloads, validation runs the validator's CUDA and plugin checks; the driver pod's restart
/// takes as long as the new pod needs to become Ready.
fn periods(state: State) -> u32 {
    match state {
        State::PodDeletionRequired | State::DrainRequired | State::ValidationRequired => 2,
        _ => 1,
    }
}

/// The version a driver pod runs: its image tag without the OS suffix
/// (`nvcr.io/nvidia/driver:580.95.05-ubuntu22.04` → `580.95.05`).
fn image_version(pod: &Pod) -> Option<String> {
    let image = pod.spec.as_ref()?.containers.first()?.image.as_deref()?;
    let (_, tag) = image.rsplit_once(':')?;
    Some(tag.split('-').next().unwrap_or(tag).to_string())
}

fn driver_pods<'a>(snap: &'a Snapshot<'_>, node: &'a str) -> impl Iterator<Item = &'a Pod> + 'a {
    snap.pods_on(node)
        .iter()
        .copied()
        .filter(|p| label_is(p, APP, DRIVER))
}

/// The driver a node runs: the version of its Ready driver pod.
pub(in crate::sim) fn loaded_driver(snap: &Snapshot<'_>, node: &str) -> Option<String> {
    driver_pods(snap, node)
        .find(|p| pod_ready(p) && p.metadata.deletion_timestamp.is_none())
        .and_then(image_version)
}

/// Whether the operator validator's pod on `node` is Ready: the driver it runs is validated.
fn validator_ready(snap: &Snapshot<'_>, node: &str) -> bool {
    snap.pods_on(node)
        .iter()
        .any(|p| label_is(p, APP, VALIDATOR) && pod_ready(p))
}

fn unschedulable(node: &Node) -> bool {
    node.spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false)
}

impl World {
    /// The driver GFD labels `node` with: the one it runs, except while the node is in the
    /// upgrade (GFD relabels once the new driver is validated).
    pub(in crate::sim) fn gfd_driver(
        &mut self,
        snap: &Snapshot<'_>,
        node: &str,
        fallback: &str,
    ) -> String {
        let mid = self
            .upgrade
            .states
            .get(node)
            .is_some_and(|s| s.unavailable() || *s == State::UpgradeRequired);
        if mid && let Some(l) = self.upgrade.labeled.get(node) {
            return l.clone();
        }
        let d = loaded_driver(snap, node).unwrap_or_else(|| fallback.to_string());
        self.upgrade.labeled.insert(node.to_string(), d.clone());
        d
    }

    /// The driver the bench reports on `node` (NVML's, the one loaded).
    pub(in crate::sim) fn bench_driver(&self, snap: &Snapshot<'_>, node: &str) -> Option<String> {
        loaded_driver(snap, node)
    }

    /// One pass of the upgrade controller.
    pub(in crate::sim) fn upgrade_controller(
        &mut self,
        snap: &Snapshot<'_>,
        policy: &Policy,
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
        crash_targets: &mut Vec<(String, String, String)>,
    ) {
        let desired = policy.stack.driver_version.clone();
        // Nodes whose driver the operator deploys.
        let nodes: Vec<&Node> = snap
            .nodes
            .iter()
            .map(AsRef::as_ref)
            .filter(|n| {
                policy.stack.driver_enabled
                    && !self.stopped.contains(&n.name_any())
                    && node_gpus(&self.fixture, &self.catalog, n)
                        .is_some_and(|g| g.host_driver.is_none())
            })
            .collect();
        for node in &nodes {
            let name = node.name_any();
            let loaded = loaded_driver(snap, &name);
            if let Some(l) = &loaded {
                self.upgrade
                    .first_driver
                    .entry(name.clone())
                    .or_insert_with(|| l.clone());
            }
            // The validator fails under any driver but the first.
            let validation_fails = self
                .fixture
                .faults_on(&name)
                .any(|f| matches!(f, Fault::ValidationFails { .. }));
            if validation_fails
                && let (Some(l), Some(first)) = (&loaded, self.upgrade.first_driver.get(&name))
                && l != first
            {
                crash_targets.push((
                    name.clone(),
                    VALIDATOR.into(),
                    format!("driver {l}: CUDA validation failed (fixture fault)"),
                ));
            }
        }
        let Some(limits) = &policy.upgrade else {
            return;
        };
        // Nodes not in the upgrade: in sync → done; out of sync → required.
        for node in &nodes {
            let name = node.name_any();
            let Some(loaded) = loaded_driver(snap, &name) else {
                continue;
            };
            let state = self.upgrade.states.get(&name).copied();
            let retry = state == Some(State::UpgradeFailed)
                && self.upgrade.failed_for.get(&name) != Some(&desired)
                && loaded != desired;
            let next = match state {
                None | Some(State::Unknown | State::UpgradeDone) if loaded != desired => {
                    State::UpgradeRequired
                }
                None | Some(State::Unknown) => State::UpgradeDone,
                Some(State::UpgradeFailed) if retry => State::UpgradeRequired,
                _ => continue,
            };
            if state != Some(next) {
                self.upgrade.states.insert(name.clone(), next);
                self.upgrade.entered.insert(name, now);
                // Marked in this reconcile, admitted at a later one (the controller works from
                // the state it read when the reconcile began).
                let later = now + self.delays.upgrade_reconcile;
                if self.upgrade.next_tick.is_none_or(|t| t <= now) {
                    self.upgrade.next_tick = Some(later);
                }
            }
        }
        let working = self
            .upgrade
            .states
            .values()
            .any(|s| s.unavailable() || *s == State::UpgradeRequired);
        if working
            && let Some(at) = self.upgrade.next_tick
            && now >= at
        {
            self.tick(snap, &nodes, limits, &desired, now, out);
        }
        if working && let Some(at) = self.upgrade.next_tick {
            *wake = earliest(*wake, at.max(now + Duration::from_millis(10)));
        }
        // The state label, as the controller writes it.
        for node in &nodes {
            let name = node.name_any();
            if let Some(s) = self.upgrade.states.get(&name)
                && node.labels().get(STATE_LABEL).map(String::as_str) != Some(s.label())
            {
                out.push(Action::Labels {
                    node: name,
                    changes: BTreeMap::from([(STATE_LABEL.to_string(), Some(s.label().into()))]),
                });
            }
        }
    }

    fn tick(
        &mut self,
        snap: &Snapshot<'_>,
        nodes: &[&Node],
        limits: &crate::sim::config::UpgradePolicy,
        desired: &str,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        let period = self.delays.upgrade_reconcile;
        self.upgrade.next_tick = Some(now + period);
        let by_name: HashMap<String, &Node> = nodes.iter().map(|n| (n.name_any(), *n)).collect();
        // Unschedulable and not in progress (cordoned by someone else, or left cordoned by a
        // failed upgrade): counts against maxUnavailable, as the controller counts every
        // unschedulable node.
        let cordoned: Vec<String> = nodes
            .iter()
            .filter(|n| {
                unschedulable(n)
                    && !self
                        .upgrade
                        .states
                        .get(&n.name_any())
                        .is_some_and(|s| s.unavailable())
            })
            .map(|n| n.name_any())
            .collect();
        let mut faults: BTreeMap<String, NodeFault> = BTreeMap::new();
        for f in &self.fixture.faults {
            match f {
                Fault::UpgradeStuck { node, state } => {
                    faults.insert(node.clone(), NodeFault::StuckIn(*state));
                }
                Fault::UpgradeFails { node, state } => {
                    faults.insert(node.clone(), NodeFault::FailsIn(*state));
                }
                _ => {}
            }
        }
        // Validation that has not passed within the timeout fails the node.
        for (node, s) in &self.upgrade.states {
            if *s == State::ValidationRequired
                && self
                    .upgrade
                    .entered
                    .get(node)
                    .is_some_and(|t| now >= *t + self.delays.validation_timeout)
            {
                faults.insert(node.clone(), NodeFault::FailsIn(State::ValidationRequired));
            }
        }
        let policy = Limits {
            max_parallel: limits.max_parallel,
            max_unavailable: resolve_max_unavailable(&limits.max_unavailable, nodes.len() as u32),
        };
        let entered = self.upgrade.entered.clone();
        let done = |node: &str, state: State| -> bool {
            let long_enough = entered
                .get(node)
                .is_some_and(|t| now >= *t + period * periods(state));
            long_enough
                && match state {
                    State::PodRestartRequired => {
                        loaded_driver(snap, node).as_deref() == Some(desired)
                    }
                    State::ValidationRequired => validator_ready(snap, node),
                    _ => true,
                }
        };
        let before = self.upgrade.states.clone();
        let mut after = step(&before, &cordoned, &faults, policy, &done);
        // A failed node whose driver pod is in sync and Ready, and validated, is taken back to
        // uncordon (k8s-operator-libs' handling of failed nodes): after a rollback, or when the
        // failure was not the driver's (which is how a node flips from failed to done).
        for (name, state) in after.iter_mut() {
            if *state == State::UpgradeFailed
                && before.get(name) == Some(&State::UpgradeFailed)
                && loaded_driver(snap, name).as_deref() == Some(desired)
                && validator_ready(snap, name)
            {
                *state = State::UncordonRequired;
            }
        }
        for (name, state) in &after {
            let was = before.get(name).copied().unwrap_or(State::Unknown);
            if was == *state {
                continue;
            }
            self.upgrade.entered.insert(name.clone(), now);
            let node = by_name.get(name);
            match (was, *state) {
                (State::CordonRequired, _) => {
                    if node.is_some_and(|n| unschedulable(n))
                        && !self.upgrade.cordoned_by_us.contains(name)
                    {
                        self.upgrade.initially_unschedulable.insert(name.clone());
                    }
                    self.upgrade.cordoned_by_us.insert(name.clone());
                    out.push(Action::Schedulable {
                        node: name.clone(),
                        schedulable: false,
                    });
                }
                (_, State::PodRestartRequired) => {
                    // The validator checks the driver in its init containers, once: it is
                    // restarted with the driver so that it validates the new one.
                    let validators = snap
                        .pods_on(name)
                        .iter()
                        .copied()
                        .filter(|p| label_is(p, APP, VALIDATOR));
                    for p in driver_pods(snap, name).chain(validators) {
                        out.push(Action::DeletePod {
                            namespace: p.namespace().unwrap_or_default(),
                            name: p.name_any(),
                        });
                    }
                }
                (State::UncordonRequired, State::UpgradeDone)
                    if self.upgrade.cordoned_by_us.remove(name)
                        && !self.upgrade.initially_unschedulable.remove(name) =>
                {
                    out.push(Action::Schedulable {
                        node: name.clone(),
                        schedulable: true,
                    });
                }
                (_, State::UpgradeFailed) => {
                    self.upgrade
                        .failed_for
                        .insert(name.clone(), desired.to_string());
                    if let Some(n) = node {
                        out.push(Action::Event(EventSpec {
                            namespace: "default".into(),
                            kind: "Node".into(),
                            name: name.clone(),
                            uid: n.uid().unwrap_or_default(),
                            reason: "GPUDriverUpgrade".into(),
                            message: format!(
                                "Failed to upgrade the driver to {desired} in {}",
                                was.label()
                            ),
                            warning: true,
                            source: "gpu-operator".into(),
                        }));
                    }
                }
                _ => {}
            }
        }
        self.upgrade.states = after;
    }
}
