//! What a driver upgrade did, from the node states observed while it ran: each node's segments
//! of time per state, and the verdicts a platform engineer needs — a node stuck in a state past
//! its deadline, a node that failed, a node that flipped from `upgrade-failed` to `upgrade-done`
//! without going through the upgrade again (gpu-operator #2549), and more nodes taken out of
//! scheduling at once than the plan's `driver.upgradePolicy` allows (`maxParallelUpgrades`,
//! `maxUnavailable`). Pure: the watch feeds it observations, the tests feed it tables.

use std::collections::BTreeMap;

use crate::gpu_stack::upgrade::State;

/// One node's state at one moment (seconds since the upgrade began).
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Node name.
    pub node: String,
    /// Seconds since the upgrade began.
    pub at: f64,
    /// The state label's value.
    pub state: State,
    /// `spec.unschedulable`.
    pub unschedulable: bool,
}

/// A stretch of time a node spent in one state.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    /// The state.
    pub state: State,
    /// From (seconds).
    pub from: f64,
    /// Until (seconds; the end of the watch for the last one).
    pub until: f64,
}

/// What the plan's upgrade policy allows, resolved to node counts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// Nodes upgraded at once (`maxParallelUpgrades`; 0 is no limit, as in the operator).
    pub max_parallel: u32,
    /// Nodes unavailable at once (`maxUnavailable`, resolved by [`resolve_max_unavailable`]).
    pub max_unavailable: Option<u32>,
    /// Longest a node may stay in one non-final state, seconds.
    pub state_deadline: f64,
}

/// A verdict on the upgrade.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// A node stayed in a state past the deadline (still there, or until it moved on).
    Stuck {
        /// Node.
        node: String,
        /// The state.
        state: State,
        /// For how long, seconds.
        seconds: f64,
    },
    /// A node ended in `upgrade-failed`.
    Failed {
        /// Node.
        node: String,
    },
    /// A node went from `upgrade-failed` to `upgrade-done` without its driver pod restarting
    /// in between: nothing was upgraded.
    FlippedToDone {
        /// Node.
        node: String,
        /// When, seconds.
        at: f64,
    },
    /// More nodes upgrading or unschedulable at once than allowed.
    TooMany {
        /// `maxParallelUpgrades` or `maxUnavailable`.
        limit: &'static str,
        /// Allowed.
        allowed: u32,
        /// Seen.
        seen: Vec<String>,
        /// When, seconds.
        at: f64,
    },
    /// A node the watch never saw reach a final state.
    Unfinished {
        /// Node.
        node: String,
        /// Its last state.
        state: State,
    },
}

/// Each node's segments, from observations in any order.
pub fn segments(obs: &[Observation], end: f64) -> BTreeMap<String, Vec<Segment>> {
    let mut by_node: BTreeMap<String, Vec<&Observation>> = BTreeMap::new();
    for o in obs {
        by_node.entry(o.node.clone()).or_default().push(o);
    }
    by_node
        .into_iter()
        .map(|(node, mut v)| {
            v.sort_by(|a, b| a.at.total_cmp(&b.at));
            let mut segs: Vec<Segment> = Vec::new();
            for o in v {
                match segs.last_mut() {
                    Some(last) if last.state == o.state => {}
                    Some(last) => {
                        last.until = o.at;
                        segs.push(Segment {
                            state: o.state,
                            from: o.at,
                            until: o.at,
                        });
                    }
                    None => segs.push(Segment {
                        state: o.state,
                        from: o.at,
                        until: o.at,
                    }),
                }
            }
            if let Some(last) = segs.last_mut() {
                last.until = end.max(last.from);
            }
            (node, segs)
        })
        .collect()
}

pub use crate::gpu_stack::upgrade::resolve_max_unavailable;

/// Seconds of `seg` during which the controller had room to start another node: a node waits
/// in `upgrade-required` while others take the `maxParallelUpgrades` slots or the
/// `maxUnavailable` budget (a failed node left cordoned takes it too), and that wait is the
/// policy working, not the node stuck.
fn waiting_with_room(
    seg: &Segment,
    moments: &[(f64, usize, usize)],
    end: f64,
    cap: usize,
    cap_unavailable: usize,
) -> f64 {
    let mut total = 0.0;
    for (k, (t, busy, out)) in moments.iter().enumerate() {
        let next = moments.get(k + 1).map_or(end, |m| m.0);
        let overlap = next.min(seg.until) - t.max(seg.from);
        if overlap > 0.0 && *busy < cap && *out < cap_unavailable {
            total += overlap;
        }
    }
    total
}

/// The most nodes out at once by one count: who, and when (seconds).
pub type Peak = Option<(Vec<String>, f64)>;

/// One sweep in time order: after the observations of each moment, how many nodes were
/// upgrading (cordon to uncordon) and how many unschedulable (whoever cordoned them; each
/// node's latest observation is in force); and the largest set of each with its moment.
/// Returns every moment as `(seconds, upgrading, unschedulable)` and the two peaks.
pub fn sweep(obs: &[Observation]) -> (Vec<(f64, usize, usize)>, [Peak; 2]) {
    let mut ordered: Vec<&Observation> = obs.iter().collect();
    ordered.sort_by(|a, b| a.at.total_cmp(&b.at));
    let mut current: BTreeMap<&str, (State, bool)> = BTreeMap::new();
    let mut moments = Vec::new();
    let mut worst: [Peak; 2] = [None, None];
    for (k, o) in ordered.iter().enumerate() {
        current.insert(o.node.as_str(), (o.state, o.unschedulable));
        if ordered.get(k + 1).is_some_and(|n| n.at == o.at) {
            continue;
        }
        let upgrading: Vec<String> = current
            .iter()
            .filter(|(_, (s, _))| s.unavailable())
            .map(|(n, _)| (*n).to_string())
            .collect();
        let unavailable: Vec<String> = current
            .iter()
            .filter(|(_, (s, u))| s.unavailable() || *u)
            .map(|(n, _)| (*n).to_string())
            .collect();
        moments.push((o.at, upgrading.len(), unavailable.len()));
        for (i, set) in [upgrading, unavailable].into_iter().enumerate() {
            if worst[i].as_ref().is_none_or(|(w, _)| set.len() > w.len()) {
                worst[i] = Some((set, o.at));
            }
        }
    }
    (moments, worst)
}

/// Every verdict on a watched upgrade that ended at `end` seconds.
pub fn judge(obs: &[Observation], end: f64, policy: &Policy) -> Vec<Finding> {
    let segs = segments(obs, end);
    let (moments, worst) = sweep(obs);
    let cap = if policy.max_parallel == 0 {
        usize::MAX
    } else {
        policy.max_parallel as usize
    };
    let cap_unavailable = policy.max_unavailable.map_or(usize::MAX, |m| m as usize);
    let mut out = Vec::new();
    for (node, v) in &segs {
        for s in v
            .iter()
            .filter(|s| !s.state.terminal() && s.state != State::Unknown)
        {
            let counted = if s.state == State::UpgradeRequired {
                waiting_with_room(s, &moments, end, cap, cap_unavailable)
            } else {
                s.until - s.from
            };
            if counted > policy.state_deadline {
                out.push(Finding::Stuck {
                    node: node.clone(),
                    state: s.state,
                    seconds: counted,
                });
            }
        }
        // From failed to done without the driver pod restarting in between: nothing was
        // upgraded, the controller only relabelled (uncordon-required on the way counts as
        // nothing either).
        let mut failed_at: Option<usize> = None;
        for (k, seg) in v.iter().enumerate() {
            match seg.state {
                State::UpgradeFailed => failed_at = Some(k),
                State::PodRestartRequired => failed_at = None,
                State::UpgradeDone if failed_at.is_some() => {
                    out.push(Finding::FlippedToDone {
                        node: node.clone(),
                        at: seg.from,
                    });
                    failed_at = None;
                }
                _ => {}
            }
        }
        match v.last().map(|s| s.state) {
            Some(State::UpgradeFailed) => out.push(Finding::Failed { node: node.clone() }),
            Some(s) if !s.terminal() => out.push(Finding::Unfinished {
                node: node.clone(),
                state: s,
            }),
            _ => {}
        }
    }
    let limits = [
        (
            "maxParallelUpgrades",
            (policy.max_parallel > 0).then_some(policy.max_parallel),
        ),
        ("maxUnavailable", policy.max_unavailable),
    ];
    for ((limit, allowed), w) in limits.into_iter().zip(worst) {
        if let (Some(allowed), Some((seen, at))) = (allowed, w)
            && seen.len() > allowed as usize
        {
            out.push(Finding::TooMany {
                limit,
                allowed,
                seen,
                at,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests;
