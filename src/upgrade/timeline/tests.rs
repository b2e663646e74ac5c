//! Timelines as the upgrade controller writes them, judged: a healthy rolling upgrade, a node
//! stuck, failed, or flipped to done, and a policy broken.

use super::*;

/// The happy path: everything in the controller's order up to `upgrade-done`.
fn walk() -> &'static [State] {
    &State::ORDER[..9]
}

fn obs(node: &str, at: f64, state: State) -> Observation {
    Observation {
        node: node.into(),
        at,
        unschedulable: state.unavailable(),
        state,
    }
}

/// `nodes` nodes, all `upgrade-required` at 0, then each walks the states 10 s apart, the next
/// node starting when the previous is done (maxParallelUpgrades 1).
fn rolling(nodes: usize) -> (Vec<Observation>, f64) {
    let mut out = Vec::new();
    let mut t = 0.0;
    for n in 0..nodes {
        out.push(obs(&format!("gpu-{n}"), 0.0, State::UpgradeRequired));
    }
    for n in 0..nodes {
        for s in &walk()[1..] {
            t += 10.0;
            out.push(obs(&format!("gpu-{n}"), t, *s));
        }
    }
    (out, t + 5.0)
}

fn policy() -> Policy {
    Policy {
        max_parallel: 1,
        max_unavailable: Some(1),
        state_deadline: 60.0,
    }
}

#[test]
fn a_rolling_upgrade_one_node_at_a_time_passes() {
    let (o, end) = rolling(4);
    assert_eq!(judge(&o, end, &policy()), Vec::<Finding>::new());
    let segs = segments(&o, end);
    assert_eq!(segs["gpu-3"].len(), 9);
    assert_eq!(walk().last(), Some(&State::UpgradeDone));
    // gpu-3 waited its turn for 240 s: the policy at work, not a stuck node.
    assert_eq!(segs["gpu-3"][0].until, 250.0);
}

#[test]
fn a_stuck_node_a_failure_and_a_flip_are_named() {
    let (mut o, end) = rolling(2);
    // gpu-1 never leaves drain-required: later observations dropped, end pushed out.
    o.retain(|x| !(x.node == "gpu-1" && x.at > 120.0));
    let f = judge(&o, end + 100.0, &policy());
    assert!(
        f.iter().any(|x| matches!(x, Finding::Stuck { node, state: State::DrainRequired, seconds } if node == "gpu-1" && *seconds > 100.0)),
        "{f:#?}"
    );
    assert!(f.contains(&Finding::Unfinished {
        node: "gpu-1".into(),
        state: State::DrainRequired
    }));
    // gpu-0 fails validation, then the label flips to done with nothing in between.
    let mut o = vec![obs("gpu-0", 0.0, State::UpgradeRequired)];
    o.push(obs("gpu-0", 10.0, State::ValidationRequired));
    o.push(obs("gpu-0", 20.0, State::UpgradeFailed));
    let f = judge(&o, 30.0, &policy());
    assert_eq!(
        f,
        [Finding::Failed {
            node: "gpu-0".into()
        }]
    );
    o.push(obs("gpu-0", 25.0, State::UpgradeDone));
    let f = judge(&o, 30.0, &policy());
    assert_eq!(
        f,
        [Finding::FlippedToDone {
            node: "gpu-0".into(),
            at: 25.0
        }]
    );
}

#[test]
fn failed_then_done_is_a_flip_unless_the_driver_pod_restarted_in_between() {
    let base = || {
        vec![
            obs("gpu-0", 0.0, State::UpgradeRequired),
            obs("gpu-0", 10.0, State::ValidationRequired),
            obs("gpu-0", 20.0, State::UpgradeFailed),
        ]
    };
    // Through uncordon-required only: the controller relabelled, nothing was upgraded.
    let mut o = base();
    o.push(obs("gpu-0", 30.0, State::UncordonRequired));
    o.push(obs("gpu-0", 31.0, State::UpgradeDone));
    assert_eq!(
        judge(&o, 40.0, &policy()),
        [Finding::FlippedToDone {
            node: "gpu-0".into(),
            at: 31.0
        }]
    );
    // A new attempt restarted the driver pod: a recovery, not a flip.
    let mut o = base();
    for (t, s) in [
        (30.0, State::PodRestartRequired),
        (35.0, State::ValidationRequired),
        (38.0, State::UncordonRequired),
        (39.0, State::UpgradeDone),
    ] {
        o.push(obs("gpu-0", t, s));
    }
    assert_eq!(judge(&o, 40.0, &policy()), Vec::<Finding>::new());
}

#[test]
fn waiting_with_a_free_slot_is_stuck() {
    // Two nodes, maxParallelUpgrades 2: gpu-1 waits in upgrade-required while a slot is free.
    let o = vec![
        obs("gpu-0", 0.0, State::UpgradeRequired),
        obs("gpu-1", 0.0, State::UpgradeRequired),
        obs("gpu-0", 10.0, State::CordonRequired),
        obs("gpu-0", 20.0, State::UpgradeDone),
    ];
    let p = Policy {
        max_parallel: 2,
        ..policy()
    };
    let f = judge(&o, 200.0, &p);
    assert!(
        f.iter().any(|x| matches!(x, Finding::Stuck { node, state: State::UpgradeRequired, .. } if node == "gpu-1")),
        "{f:#?}"
    );
}

#[test]
fn more_nodes_out_at_once_than_the_policy_allows() {
    let o = vec![
        obs("gpu-0", 0.0, State::CordonRequired),
        obs("gpu-1", 1.0, State::DrainRequired),
        obs("gpu-2", 2.0, State::UpgradeRequired),
        obs("gpu-0", 5.0, State::UpgradeDone),
        obs("gpu-1", 6.0, State::UpgradeDone),
        obs("gpu-2", 7.0, State::UpgradeDone),
    ];
    let f = judge(&o, 10.0, &policy());
    let too_many: Vec<&Finding> = f
        .iter()
        .filter(|x| matches!(x, Finding::TooMany { .. }))
        .collect();
    assert_eq!(too_many.len(), 2, "{f:#?}");
    assert!(matches!(
        too_many[0],
        Finding::TooMany { limit: "maxParallelUpgrades", allowed: 1, seen, at } if seen == &["gpu-0", "gpu-1"] && *at == 1.0
    ));
    // A node cordoned by someone else counts against maxUnavailable, not against parallelism.
    let mut o = rolling(1).0;
    o.push(Observation {
        node: "gpu-9".into(),
        at: 0.0,
        state: State::UpgradeDone,
        unschedulable: true,
    });
    let f = judge(&o, 100.0, &policy());
    assert!(
        f.iter().any(|x| matches!(
            x,
            Finding::TooMany {
                limit: "maxUnavailable",
                ..
            }
        )),
        "{f:#?}"
    );
    assert!(!f.iter().any(|x| matches!(
        x,
        Finding::TooMany {
            limit: "maxParallelUpgrades",
            ..
        }
    )));
}

#[test]
fn max_unavailable_resolves_like_the_operator() {
    let table = [
        ("1", 8, Some(1)),
        ("25%", 8, Some(2)),
        ("25%", 5, Some(2)),
        ("100%", 3, Some(3)),
        ("0%", 4, Some(0)),
        ("x%", 4, None),
        ("", 4, None),
    ];
    for (v, n, want) in table {
        assert_eq!(resolve_max_unavailable(v, n), want, "{v} of {n}");
    }
}
