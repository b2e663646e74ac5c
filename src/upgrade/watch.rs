//! Following a driver upgrade on the cluster: a watch on the nodes records every GPU node's
//! upgrade state label and `spec.unschedulable` as they change, from before the new driver is
//! asked for (the first list) until every node has been through the upgrade and reached a final
//! state, a node is stuck past its deadline, the whole upgrade's deadline passes, or a signal
//! stops it. The observations go to [`super::timeline::judge`]; nothing here judges.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};

use super::timeline::{Finding, Observation, Policy, judge};
use crate::gpu_stack::upgrade::{STATE_LABEL, State};

/// How the watch ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Every node went through the upgrade and is in a final state.
    Finished,
    /// A node stayed in a state past its deadline.
    Stuck,
    /// Nodes wait for their turn but none is in progress, for a state's deadline: the policy
    /// leaves no room (a failed node left cordoned takes the `maxUnavailable` budget).
    Blocked,
    /// The whole upgrade's deadline passed.
    TimedOut,
    /// A signal stopped it.
    Interrupted,
    /// The watch itself failed.
    WatchFailed,
    /// What should have started the upgrade (helm) failed.
    KickFailed,
}

/// What the watch saw.
#[derive(Debug, Clone)]
pub struct Seen {
    /// Every change of a node's state or schedulability, seconds from the watch's start.
    pub observations: Vec<Observation>,
    /// Seconds the watch ran.
    pub end: f64,
    /// Why it ended.
    pub how: End,
    /// Nodes the controller never took up: their state and whether they carry the skip label.
    pub never_started: Vec<(String, State, bool)>,
    /// The watch's error, when it failed.
    pub error: Option<String>,
}

fn state_of(node: &Node) -> (State, bool) {
    let state = node
        .labels()
        .get(STATE_LABEL)
        .and_then(|v| State::parse(v))
        .unwrap_or(State::Unknown);
    let unschedulable = node
        .spec
        .as_ref()
        .and_then(|s| s.unschedulable)
        .unwrap_or(false);
    (state, unschedulable)
}

/// The watch's memory: each node's last state, every change, who the controller took up.
struct Book<'a> {
    wanted: BTreeSet<&'a str>,
    t0: Instant,
    last: BTreeMap<String, (State, bool)>,
    observations: Vec<Observation>,
    took_up: BTreeSet<String>,
    skip: BTreeSet<String>,
}

impl Book<'_> {
    fn record(&mut self, node: &Node) {
        let name = node.name_any();
        if !self.wanted.contains(name.as_str()) {
            return;
        }
        if node
            .labels()
            .get(crate::gpu_stack::upgrade::SKIP_LABEL)
            .is_some_and(|v| v == "true")
        {
            self.skip.insert(name.clone());
        }
        let now = state_of(node);
        if self.last.get(&name) == Some(&now) {
            return;
        }
        if !now.0.terminal() && now.0 != State::Unknown {
            self.took_up.insert(name.clone());
        }
        self.last.insert(name.clone(), now);
        self.observations.push(Observation {
            node: name,
            at: self.t0.elapsed().as_secs_f64(),
            state: now.0,
            unschedulable: now.1,
        });
    }
}

/// How long every node must have stayed final before the watch ends: a node that flips from
/// `upgrade-failed` to `upgrade-done` does so right after failing.
const SETTLE: Duration = Duration::from_secs(3);

/// Watches `nodes` while `kick` (the helm upgrade, or the rollback) runs and after it; a `kick`
/// that failed (`kick_failed`) ends the watch. Returns what `kick` returned (`None` when the
/// watch ended before it did) and what was seen.
pub async fn follow<T>(
    client: Client,
    nodes: &[String],
    policy: &Policy,
    timeout: Duration,
    kick: impl Future<Output = T>,
    kick_failed: impl Fn(&T) -> bool,
    stop: impl Future<Output = ()>,
) -> (Option<T>, Seen) {
    let wanted: BTreeSet<&str> = nodes.iter().map(String::as_str).collect();
    let api: Api<Node> = Api::all(client);
    let mut stream = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let t0 = Instant::now();
    let mut book = Book {
        wanted,
        t0,
        last: BTreeMap::new(),
        observations: Vec::new(),
        took_up: BTreeSet::new(),
        skip: BTreeSet::new(),
    };
    // The first list: every node's state before the new driver is asked for.
    let mut error = None;
    loop {
        match stream.next().await {
            Some(Ok(watcher::Event::InitApply(n) | watcher::Event::Apply(n))) => {
                book.record(&n);
            }
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                error = Some(e.to_string());
                break;
            }
            None => break,
        }
    }
    tokio::pin!(kick);
    tokio::pin!(stop);
    let mut kicked: Option<T> = None;
    let deadline = tokio::time::Instant::from_std(t0 + timeout);
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let mut settled_since: Option<Instant> = None;
    let mut idle_since: Option<Instant> = None;
    let how = if error.is_some() {
        End::WatchFailed
    } else {
        loop {
            let mut ticked = false;
            tokio::select! {
                r = &mut kick, if kicked.is_none() => kicked = Some(r),
                ev = stream.next() => match ev {
                    Some(Ok(watcher::Event::Apply(n) | watcher::Event::InitApply(n))) => {
                        book.record(&n);
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => error = Some(e.to_string()),
                    None => break End::WatchFailed,
                },
                // The deadlines are judged against the clock, so the clock wakes the judge.
                _ = tick.tick() => ticked = true,
                () = &mut stop => break End::Interrupted,
                () = tokio::time::sleep_until(deadline) => break End::TimedOut,
            }
            match &kicked {
                None => continue,
                Some(k) if kick_failed(k) => break End::KickFailed,
                Some(_) => {}
            }
            let at = t0.elapsed().as_secs_f64();
            let all_final = book.wanted.iter().all(|n| {
                book.took_up.contains(*n) && book.last.get(*n).is_some_and(|(s, _)| s.terminal())
            });
            if all_final {
                let since = *settled_since.get_or_insert_with(Instant::now);
                if since.elapsed() >= SETTLE {
                    break End::Finished;
                }
            } else {
                settled_since = None;
            }
            // The deadlines are judged on the clock's tick, not on every node event: a large
            // cluster sends many, and judging sorts every observation.
            if !ticked {
                continue;
            }
            let waiting = book
                .last
                .values()
                .any(|(s, _)| *s == State::UpgradeRequired);
            let working = book.last.values().any(|(s, _)| s.unavailable());
            if waiting && !working {
                let since = *idle_since.get_or_insert_with(Instant::now);
                if since.elapsed().as_secs_f64() > policy.state_deadline {
                    break End::Blocked;
                }
            } else {
                idle_since = None;
            }
            if judge(&book.observations, at, policy)
                .iter()
                .any(|f| matches!(f, Finding::Stuck { .. }))
            {
                break End::Stuck;
            }
            // A node the controller never takes up is stuck where it is.
            let waited = at > policy.state_deadline;
            if waited && book.wanted.iter().any(|n| !book.took_up.contains(*n)) {
                break End::Stuck;
            }
        }
    };
    let never_started = book
        .wanted
        .iter()
        .filter(|n| !book.took_up.contains(**n))
        .map(|n| {
            let state = book.last.get(*n).map_or(State::Unknown, |(s, _)| *s);
            (n.to_string(), state, book.skip.contains(*n))
        })
        .collect();
    (
        kicked,
        Seen {
            observations: book.observations,
            end: t0.elapsed().as_secs_f64(),
            how,
            never_started,
            error,
        },
    )
}
