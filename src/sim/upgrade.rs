//! The GPU Operator's driver-upgrade controller as the simulator will play it (k8s-operator-libs,
//! `pkg/upgrade`): every GPU node starts in `upgrade-required` when a new driver is asked for;
//! at each reconcile the controller admits nodes from `upgrade-required` into `cordon-required`
//! while fewer than `maxParallelUpgrades` are in progress (0: no limit) and the unavailable
//! nodes stay within `maxUnavailable`, and moves every node in progress one state on, through
//! wait-for-jobs, pod deletion, drain, the driver pod's restart, validation and uncordon to
//! `upgrade-done`. A node that fails leaves `upgrade-failed` and frees its slot.
//!
//! Pure and discrete: one reconcile per tick, nodes admitted in name order, so a test can say
//! what the cluster shows at any tick. The simulated world ([`crate::sim::world`]) calls
//! [`step`] on a timer and says when each state's work is over.

use std::collections::BTreeMap;

use crate::gpu_stack::upgrade::State;

/// The upgrade policy the controller follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// `maxParallelUpgrades` (0: no limit).
    pub max_parallel: u32,
    /// `maxUnavailable` as a node count (`None`: no limit).
    pub max_unavailable: Option<u32>,
}

/// How a node misbehaves during the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeFault {
    /// It never leaves this state (a driver that cannot unload: gpu-operator #2509).
    StuckIn(State),
    /// On reaching this state it fails (`upgrade-failed` at the next reconcile).
    FailsIn(State),
}

/// The states a node in progress walks, in the controller's order: from `cordon-required` to
/// `upgrade-done` (`upgrade-required` before, `upgrade-failed` aside).
fn walk() -> &'static [State] {
    &State::ORDER[1..9]
}

fn next(s: State) -> State {
    walk()
        .iter()
        .position(|w| *w == s)
        .and_then(|i| walk().get(i + 1))
        .copied()
        .unwrap_or(s)
}

/// Every node's state after each reconcile, `ticks` of them; entry 0 is the start (every node
/// `upgrade-required`). `cordoned` are nodes made unschedulable by someone else: they count
/// against `maxUnavailable` and are upgraded like the rest.
pub fn play(
    nodes: &[String],
    cordoned: &[String],
    faults: &BTreeMap<String, NodeFault>,
    policy: Policy,
    ticks: usize,
) -> Vec<BTreeMap<String, State>> {
    let mut now: BTreeMap<String, State> = nodes
        .iter()
        .map(|n| (n.clone(), State::UpgradeRequired))
        .collect();
    let mut out = vec![now.clone()];
    for _ in 0..ticks {
        now = step(&now, cordoned, faults, policy, &|_, _| true);
        out.push(now.clone());
    }
    out
}

/// One reconcile: every node in progress whose state's work is over (`done(node, state)`: the
/// simulated world says whether the driver pod restarted, validation passed, the state's time
/// ran out) moves one state on, then nodes waiting in `upgrade-required` are admitted while the
/// policy leaves room. Nodes in other states (not looked at, done, failed) stay.
pub fn step(
    now: &BTreeMap<String, State>,
    cordoned: &[String],
    faults: &BTreeMap<String, NodeFault>,
    policy: Policy,
    done: &dyn Fn(&str, State) -> bool,
) -> BTreeMap<String, State> {
    let mut after = now.clone();
    for (node, state) in now {
        if !state.unavailable() {
            continue;
        }
        let moved = match faults.get(node) {
            Some(NodeFault::StuckIn(s)) if s == state => *state,
            Some(NodeFault::FailsIn(s)) if s == state => State::UpgradeFailed,
            _ if done(node, *state) => next(*state),
            _ => *state,
        };
        after.insert(node.clone(), moved);
    }
    // Admission counts what was in progress when the reconcile began, as the controller's
    // state snapshot does: a slot freed in this reconcile is taken at the next one.
    let was = |n: &String| now.get(n).is_some_and(|b| b.unavailable());
    let busy =
        |m: &BTreeMap<String, State>| m.iter().filter(|(n, s)| was(n) || s.unavailable()).count();
    let unavailable = |m: &BTreeMap<String, State>| {
        m.iter()
            .filter(|(n, s)| was(n) || s.unavailable() || cordoned.contains(n))
            .count()
    };
    let waiting: Vec<String> = after
        .iter()
        .filter(|(_, s)| **s == State::UpgradeRequired)
        .map(|(n, _)| n.clone())
        .collect();
    for node in waiting {
        let room = policy.max_parallel == 0 || busy(&after) < policy.max_parallel as usize;
        // A node cordoned already adds nothing to the unavailable count when admitted.
        let extra = usize::from(!cordoned.contains(&node));
        let within = policy
            .max_unavailable
            .is_none_or(|m| unavailable(&after) + extra <= m as usize);
        if room && within {
            after.insert(node, State::CordonRequired);
        }
    }
    after
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("gpu-{i}")).collect()
    }

    fn in_progress(m: &BTreeMap<String, State>) -> usize {
        m.values().filter(|s| s.unavailable()).count()
    }

    #[test]
    fn one_node_at_a_time_until_all_are_done() {
        let p = Policy {
            max_parallel: 1,
            max_unavailable: None,
        };
        let ticks = play(&names(4), &[], &BTreeMap::new(), p, 4 * 9);
        assert!(ticks.iter().all(|m| in_progress(m) <= 1));
        // Admitted at one reconcile, done seven later; the slot it frees is taken at the next.
        assert_eq!(ticks[8]["gpu-0"], State::UpgradeDone);
        assert_eq!(ticks[8]["gpu-1"], State::UpgradeRequired);
        assert_eq!(ticks[9]["gpu-1"], State::CordonRequired);
        assert_eq!(ticks[9]["gpu-3"], State::UpgradeRequired);
        assert_eq!(ticks[31]["gpu-3"], State::UncordonRequired);
        assert!(
            ticks[32].values().all(|s| *s == State::UpgradeDone),
            "{:?}",
            ticks[32]
        );
        // With no limit every node goes at once.
        let all = play(
            &names(4),
            &[],
            &BTreeMap::new(),
            Policy {
                max_parallel: 0,
                ..p
            },
            8,
        );
        assert_eq!(in_progress(&all[1]), 4);
        assert!(all[8].values().all(|s| *s == State::UpgradeDone));
    }

    #[test]
    fn a_stuck_node_holds_its_slot_and_a_failed_one_frees_it() {
        let p = Policy {
            max_parallel: 1,
            max_unavailable: None,
        };
        let stuck = BTreeMap::from([(
            "gpu-0".to_string(),
            NodeFault::StuckIn(State::DrainRequired),
        )]);
        let t = play(&names(2), &[], &stuck, p, 40);
        assert_eq!(t[40]["gpu-0"], State::DrainRequired);
        assert_eq!(
            t[40]["gpu-1"],
            State::UpgradeRequired,
            "no slot while gpu-0 is stuck"
        );
        let failing = BTreeMap::from([(
            "gpu-0".to_string(),
            NodeFault::FailsIn(State::ValidationRequired),
        )]);
        let t = play(&names(2), &[], &failing, p, 20);
        assert_eq!(t[20]["gpu-0"], State::UpgradeFailed);
        assert_eq!(t[20]["gpu-1"], State::UpgradeDone);
    }

    #[test]
    fn max_unavailable_counts_nodes_cordoned_by_others() {
        // Two parallel slots, but one node out already and maxUnavailable 2: one more at a time.
        let p = Policy {
            max_parallel: 2,
            max_unavailable: Some(2),
        };
        let cordoned = vec!["gpu-3".to_string()];
        let t = play(&names(4), &cordoned, &BTreeMap::new(), p, 40);
        for m in &t {
            let out = m
                .iter()
                .filter(|(n, s)| s.unavailable() || cordoned.contains(n))
                .count();
            assert!(out <= 2, "{m:?}");
        }
        assert!(
            t[40].values().all(|s| *s == State::UpgradeDone),
            "{:?}",
            t[40]
        );
    }
}
