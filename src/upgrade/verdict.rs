//! From what the watch saw to what the run reports: the upgrade section's timeline, the
//! findings in words that name node and state, and the `upgrade` suite's testcases — one for
//! the helm change, one per GPU node, one for the upgrade policy. Pure, table-tested.

use std::collections::BTreeMap;

use super::timeline::{self, Finding, Policy};
use super::watch::{End, Seen};
use crate::gpu_stack::upgrade::State;
use crate::report::upgrade::{NodeTimeline, Span, Watched};
use crate::report::{Case, Status};

/// The suite of the upgrade's testcases (JUnit testsuite `upgrade`).
pub const SUITE: &str = "upgrade";
/// Their check kind.
pub const CHECK: &str = "driver-upgrade";

/// A finding in one line, naming the node and the state.
pub fn describe(f: &Finding, state_before_failed: &BTreeMap<String, State>) -> String {
    match f {
        Finding::Stuck {
            node,
            state,
            seconds,
        } => format!("{node}: stuck in {} for {seconds:.1} s", state.label()),
        Finding::Failed { node } => match state_before_failed.get(node) {
            Some(s) => format!("{node}: upgrade-failed in {}", s.label()),
            None => format!("{node}: upgrade-failed"),
        },
        Finding::FlippedToDone { node, at } => format!(
            "{node}: flipped from upgrade-failed to upgrade-done at {at:.1} s without its driver pod restarting: nothing was upgraded (gpu-operator #2549)"
        ),
        Finding::TooMany {
            limit,
            allowed,
            seen,
            at,
        } => format!(
            "{} nodes out at once at {at:.1} s ({}); {limit} allows {allowed}",
            seen.len(),
            seen.join(", ")
        ),
        Finding::Unfinished { node, state } => format!(
            "{node}: not finished, last seen in {}{}",
            state.label(),
            if *state == State::UpgradeRequired {
                " (waiting for its turn)"
            } else {
                ""
            }
        ),
    }
}

/// The judged upgrade: the report's section and the findings.
pub fn judged(seen: &Seen, policy: &Policy) -> (Watched, Vec<Finding>) {
    let findings = timeline::judge(&seen.observations, seen.end, policy);
    let segs = timeline::segments(&seen.observations, seen.end);
    let before_failed: BTreeMap<String, State> = segs
        .iter()
        .filter_map(|(n, v)| {
            let k = v.iter().rposition(|s| s.state == State::UpgradeFailed)?;
            Some((n.clone(), v.get(k.checked_sub(1)?)?.state))
        })
        .collect();
    let mut per_state: BTreeMap<String, f64> = BTreeMap::new();
    let nodes = segs
        .iter()
        .map(|(node, v)| {
            for s in v.iter().filter(|s| !s.state.terminal()) {
                *per_state.entry(s.state.label().to_string()).or_default() += s.until - s.from;
            }
            NodeTimeline {
                node: node.clone(),
                spans: v
                    .iter()
                    .map(|s| Span {
                        state: s.state.label().into(),
                        from: s.from,
                        until: s.until,
                    })
                    .collect(),
                last_state: v.last().map_or("", |s| s.state.label()).into(),
            }
        })
        .collect();
    per_state.remove("");
    let (_, worst) = timeline::sweep(&seen.observations);
    let [most_upgrading, most_unavailable] = worst.map(|w| w.map_or(0, |(set, _)| set.len()));
    // A node stuck in a state is unfinished too; saying it once is enough.
    let stuck: Vec<&str> = findings
        .iter()
        .filter_map(|f| match f {
            Finding::Stuck { node, .. } => Some(node.as_str()),
            _ => None,
        })
        .collect();
    let mut lines: Vec<String> = findings
        .iter()
        .filter(
            |f| !matches!(f, Finding::Unfinished { node, .. } if stuck.contains(&node.as_str())),
        )
        .map(|f| describe(f, &before_failed))
        .collect();
    for (node, state, skip) in &seen.never_started {
        lines.push(never_started(node, *state, *skip));
    }
    (
        Watched {
            seconds: seen.end,
            max_parallel: policy.max_parallel,
            max_unavailable: policy.max_unavailable,
            state_deadline_seconds: policy.state_deadline,
            nodes,
            seconds_per_state: per_state,
            most_upgrading,
            most_unavailable,
            findings: lines,
            interrupted: seen.how == End::Interrupted,
        },
        findings,
    )
}

fn never_started(node: &str, state: State, skip: bool) -> String {
    let shown = if state == State::Unknown {
        "no upgrade state".to_string()
    } else {
        state.label().to_string()
    };
    format!(
        "{node}: the upgrade controller never took the node up (stayed {shown}){}",
        if skip {
            format!(
                ": it carries {}=true",
                crate::gpu_stack::upgrade::SKIP_LABEL
            )
        } else {
            ": is driver.upgradePolicy.autoUpgrade on?".to_string()
        }
    )
}

/// A testcase of the `upgrade` suite: `step` (`helm`, `node`, `policy`, `rollback`) and, for
/// per-node cases, the node: `upgrade/node/gpu-1`.
pub fn case(step: &str, node: Option<&str>, status: Status, message: Option<String>) -> Case {
    Case {
        suite: SUITE.into(),
        step: step.into(),
        check: CHECK.into(),
        name: match node {
            Some(n) => format!("{step}/{n}"),
            None => step.into(),
        },
        node: node.map(str::to_string),
        status,
        message,
        detail: String::new(),
        warnings: Vec::new(),
        seconds: 0.0,
        diagnostics: Vec::new(),
        attempts: Vec::new(),
        layer: None,
    }
}

/// One testcase per GPU node and one for the policy; `Skipped` when a signal stopped the watch
/// (the section still shows each node's last state).
pub fn cases(nodes: &[String], seen: &Seen, watched: &Watched, findings: &[Finding]) -> Vec<Case> {
    let mut out = Vec::new();
    let interrupted = seen.how == End::Interrupted;
    for node in nodes {
        let mine: Vec<&String> = watched
            .findings
            .iter()
            .filter(|l| l.starts_with(&format!("{node}: ")))
            .collect();
        let timeline = watched.nodes.iter().find(|n| &n.node == node);
        let last = timeline.map_or("", |t| t.last_state.as_str());
        let (status, message) = if interrupted {
            (
                Status::Skipped,
                Some(format!("interrupted; {node} was in {last}")),
            )
        } else if !mine.is_empty() {
            let joined: Vec<&str> = mine.iter().map(|s| s.as_str()).collect();
            (Status::Failed, Some(joined.join("; ")))
        } else if last != State::UpgradeDone.label() {
            (
                Status::Failed,
                Some(format!("{node}: not upgraded, last seen in {last}")),
            )
        } else {
            (Status::Passed, None)
        };
        let mut c = case("node", Some(node), status, message);
        if let Some(t) = timeline {
            let steps: Vec<String> = t
                .spans
                .iter()
                .map(|s| format!("{} {:.1}-{:.1} s", s.state, s.from, s.until))
                .collect();
            c.detail = steps.join("\n");
        }
        out.push(c);
    }
    let too_many: Vec<String> = findings
        .iter()
        .filter(|f| matches!(f, Finding::TooMany { .. }))
        .map(|f| describe(f, &BTreeMap::new()))
        .collect();
    let (status, message) = if interrupted {
        (Status::Skipped, Some("interrupted".to_string()))
    } else if too_many.is_empty() {
        (Status::Passed, None)
    } else {
        (Status::Failed, Some(too_many.join("; ")))
    };
    let mut c = case("policy", None, status, message);
    c.detail = format!(
        "at most {} node(s) upgrading at once, at most {} unschedulable; maxParallelUpgrades {}, maxUnavailable {}",
        watched.most_upgrading,
        watched.most_unavailable,
        watched.max_parallel,
        watched
            .max_unavailable
            .map_or("no limit".to_string(), |m| m.to_string())
    );
    out.push(c);
    out
}

/// The testcase of the helm change that asks for the new driver.
pub fn helm_case(result: &Result<String, String>, what: &str) -> Case {
    match result {
        Ok(_) => {
            let mut c = case("helm", None, Status::Passed, None);
            c.detail = what.to_string();
            c
        }
        Err(e) => case("helm", None, Status::Failed, Some(format!("{what}: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upgrade::timeline::Observation;

    fn obs(node: &str, at: f64, state: State) -> Observation {
        Observation {
            node: node.into(),
            at,
            state,
            unschedulable: state.unavailable() && state != State::CordonRequired,
        }
    }

    fn policy() -> Policy {
        Policy {
            max_parallel: 1,
            max_unavailable: Some(1),
            state_deadline: 30.0,
        }
    }

    fn seen(observations: Vec<Observation>, end: f64, how: End) -> Seen {
        Seen {
            observations,
            end,
            how,
            never_started: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn a_node_failed_in_drain_is_named_with_its_state_and_the_others_pass() {
        let o = vec![
            obs("a", 0.0, State::UpgradeDone),
            obs("b", 0.0, State::UpgradeDone),
            obs("a", 1.0, State::UpgradeRequired),
            obs("b", 1.0, State::UpgradeRequired),
            obs("a", 2.0, State::CordonRequired),
            obs("a", 3.0, State::DrainRequired),
            obs("a", 5.0, State::UpgradeFailed),
            obs("b", 6.0, State::CordonRequired),
            obs("b", 7.0, State::PodRestartRequired),
            obs("b", 9.0, State::UpgradeDone),
        ];
        let s = seen(o, 12.0, End::Finished);
        let (w, f) = judged(&s, &policy());
        assert_eq!(w.findings, ["a: upgrade-failed in drain-required"]);
        assert_eq!((w.most_upgrading, w.most_unavailable), (1, 1));
        assert_eq!(w.seconds_per_state["drain-required"], 2.0);
        let nodes = vec!["a".to_string(), "b".to_string()];
        let c = cases(&nodes, &s, &w, &f);
        let status: Vec<(&str, Status)> = c.iter().map(|c| (c.name.as_str(), c.status)).collect();
        assert_eq!(
            status,
            [
                ("node/a", Status::Failed),
                ("node/b", Status::Passed),
                ("policy", Status::Passed)
            ]
        );
        assert_eq!(
            c[0].message.as_deref(),
            Some("a: upgrade-failed in drain-required")
        );
    }

    #[test]
    fn two_nodes_out_under_a_limit_of_one_fail_the_policy_case() {
        let o = vec![
            obs("a", 0.0, State::UpgradeRequired),
            obs("b", 0.0, State::UpgradeRequired),
            obs("a", 1.0, State::DrainRequired),
            obs("b", 1.0, State::DrainRequired),
            obs("a", 2.0, State::UpgradeDone),
            obs("b", 2.0, State::UpgradeDone),
        ];
        let s = seen(o, 5.0, End::Finished);
        let (w, f) = judged(&s, &policy());
        let c = cases(&["a".into(), "b".into()], &s, &w, &f);
        let policy_case = c.last().expect("policy case");
        assert_eq!(policy_case.status, Status::Failed);
        assert!(
            policy_case
                .message
                .as_deref()
                .is_some_and(|m| m
                    .contains("2 nodes out at once at 1.0 s (a, b); maxParallelUpgrades allows 1")),
            "{policy_case:?}"
        );
    }

    #[test]
    fn an_interrupted_watch_skips_the_cases_and_keeps_each_last_state() {
        let o = vec![
            obs("a", 0.0, State::UpgradeRequired),
            obs("a", 1.0, State::DrainRequired),
        ];
        let s = seen(o, 2.0, End::Interrupted);
        let (w, f) = judged(&s, &policy());
        assert!(w.interrupted);
        assert_eq!(w.nodes[0].last_state, "drain-required");
        let c = cases(&["a".into()], &s, &w, &f);
        assert_eq!(c[0].status, Status::Skipped);
        assert_eq!(
            c[0].message.as_deref(),
            Some("interrupted; a was in drain-required")
        );
    }

    #[test]
    fn a_node_never_taken_up_says_why_it_may_be() {
        let mut s = seen(vec![obs("a", 0.0, State::UpgradeDone)], 40.0, End::Stuck);
        s.never_started = vec![("a".into(), State::UpgradeDone, true)];
        let (w, f) = judged(&s, &policy());
        assert_eq!(
            w.findings,
            [
                "a: the upgrade controller never took the node up (stayed upgrade-done): it carries nvidia.com/gpu-driver-upgrade.skip=true"
            ]
        );
        let c = cases(&["a".into()], &s, &w, &f);
        assert_eq!(c[0].status, Status::Failed);
    }
}
