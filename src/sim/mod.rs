//! The GPU simulator: a controller that plays the GPU Operator's stack for kwok nodes.
//!
//! On a real cluster Node Feature Discovery, the operator, GPU Feature Discovery, the device
//! plugin and mig-manager turn a fresh GPU node into a labelled node with schedulable
//! `nvidia.com/gpu`. On the local cluster this controller does their part, through the same API
//! objects, once the (fixture) operator chart is installed: while no ClusterPolicy exists the
//! GPU nodes stay bare. The chart's DaemonSets still get their pods from the real DaemonSet
//! controller and kwok; the simulator acts on a node only when the matching pod is Ready there.
//!
//! Watches (kube-runtime reflectors) feed a level-triggered pass ([`world::World::reconcile`])
//! which returns the changes to make and the next timer; nothing here sleeps and polls.
//! Fixture faults change what the stack does (see [`crate::fixture::Fault`]).
//! Every action is written to `logs/gpu-simulator.log` in the run folder.

mod action;
mod apply;
pub mod bench;
pub mod config;
pub mod labels;
pub mod probe;
mod stages;
#[cfg(test)]
mod tests;
pub mod upgrade;
pub mod world;

use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{FutureExt as _, Stream, StreamExt, stream};
use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::api::DynamicObject;
use kube::runtime::reflector::{self, Store};
use kube::runtime::utils::Backoff;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client, ResourceExt};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use world::{Delays, Snapshot, World};

/// A running simulator.
pub struct Handle {
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Handle {
    /// Stops the controller and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), &mut self.task).await;
        self.task.abort();
    }
}

/// The simulator's action log.
#[derive(Clone)]
pub struct SimLog(Arc<Mutex<Option<std::fs::File>>>);

impl SimLog {
    /// Appends to `path` (no log if it cannot be opened).
    pub fn open(path: &Path) -> Self {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .ok();
        Self(Arc::new(Mutex::new(file)))
    }

    /// Writes one timestamped line.
    pub fn line(&self, text: impl AsRef<str>) {
        if let Ok(mut guard) = self.0.lock()
            && let Some(f) = guard.as_mut()
        {
            let ts = chrono::Utc::now().format("%H:%M:%S%.3f");
            let _ = writeln!(f, "{ts} {}", text.as_ref());
        }
    }
}

/// Starts the simulator for a cluster made from `fixture`.
/// Bench pods' logs are written under `pod_logs`, where kwok reads them.
pub fn spawn(
    client: Client,
    fixture: ClusterFixture,
    catalog: Catalog,
    log: SimLog,
    pod_logs: std::path::PathBuf,
) -> Handle {
    let (stop, stopped) = oneshot::channel();
    let player = bench::BenchPlayer::new(fixture.clone(), Arc::new(catalog.clone()), pod_logs);
    let world = World::new(fixture, catalog, Delays::default());
    let task = tokio::spawn(run(client, world, player, log, stopped));
    Handle {
        stop: Some(stop),
        task,
    }
}

/// What woke the loop.
enum Trigger {
    /// Some watched object changed.
    Changed,
    /// A Job appeared or changed: `(name, uid)`.
    Job(String, String),
    /// A watch failed (it retries by itself).
    WatchError(String),
}

/// Retries a failed watch quickly: the ClusterPolicy watch fails until the chart installs its
/// CRD, and an install should be seen within a second, not after a 30 s back-off.
struct QuickBackoff(u32);

impl Iterator for QuickBackoff {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        self.0 = (self.0 + 1).min(4);
        Some(Duration::from_millis(250) * self.0)
    }
}

impl Backoff for QuickBackoff {
    fn reset(&mut self) {
        self.0 = 0;
    }
}

fn reflect<K>(api: Api<K>, cfg: watcher::Config) -> (Store<K>, impl Stream<Item = Trigger> + Send)
where
    K: kube::Resource<DynamicType = ()>
        + Clone
        + std::fmt::Debug
        + serde::de::DeserializeOwned
        + Send
        + Sync
        + 'static,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, cfg))
        .backoff(QuickBackoff(0))
        .map(|e| match e {
            Ok(_) => Trigger::Changed,
            Err(e) => Trigger::WatchError(e.to_string()),
        });
    (store, events)
}

/// Takes in one trigger; whether a pass is needed for it (a failed watch retries by itself).
fn note(
    trigger: Trigger,
    world: &mut World,
    jobs_seen: &mut std::collections::HashSet<String>,
    last_error: &mut String,
    log: &SimLog,
) -> bool {
    match trigger {
        Trigger::Job(name, uid) => {
            // Each hook run is a new Job object: act once per UID.
            if jobs_seen.insert(uid) {
                if name == "gpu-operator-cleanup-crd" {
                    log.line("cleanup-crd hook job: deleting the operator CRDs");
                    world.cleanup_crd_requested = true;
                } else if name.ends_with("node-feature-discovery-prune") {
                    log.line("NFD prune hook job: removing feature labels");
                    world.prune_requested = true;
                }
            }
            true
        }
        Trigger::WatchError(e) => {
            if e != *last_error {
                log.line(format!("watch error (retrying): {e}"));
                *last_error = e;
            }
            false
        }
        Trigger::Changed => true,
    }
}

async fn run(
    client: Client,
    mut world: World,
    mut player: bench::BenchPlayer,
    log: SimLog,
    mut stopped: oneshot::Receiver<()>,
) {
    let cfg = watcher::Config::default;
    let (nodes, node_events) = reflect(Api::<Node>::all(client.clone()), cfg());
    let (pods, pod_events) = reflect(Api::<Pod>::all(client.clone()), cfg());
    let (daemonsets, ds_events) = reflect(Api::<DaemonSet>::all(client.clone()), cfg());
    let (config_maps, cm_events) = reflect(Api::<ConfigMap>::all(client.clone()), cfg());
    let (slices, slice_events) = reflect(
        Api::<k8s_openapi::api::resource::v1::ResourceSlice>::all(client.clone()),
        cfg(),
    );
    let (claims, claim_events) = reflect(
        Api::<k8s_openapi::api::resource::v1::ResourceClaim>::all(client.clone()),
        cfg(),
    );

    let ar = crate::gpu_stack::operator::cluster_policy();
    let policy_writer = reflector::store::Writer::<DynamicObject>::new(ar.clone());
    let policies = policy_writer.as_reader();
    let policy_events = reflector::reflector(
        policy_writer,
        watcher(Api::<DynamicObject>::all_with(client.clone(), &ar), cfg()),
    )
    .backoff(QuickBackoff(0))
    // Errors are expected until the chart installs the CRD; either way, look again.
    .map(|_| Trigger::Changed);
    // Hook Jobs live for a moment; act on their appearance, not on the store.
    let job_events = watcher(Api::<Job>::all(client.clone()), cfg())
        .backoff(QuickBackoff(0))
        .map(|e| match e {
            Ok(watcher::Event::Apply(j) | watcher::Event::InitApply(j)) => {
                Trigger::Job(j.name_any(), j.uid().unwrap_or_default())
            }
            Ok(_) => Trigger::Changed,
            Err(e) => Trigger::WatchError(e.to_string()),
        });

    let mut triggers = stream::select_all(vec![
        node_events.boxed(),
        pod_events.boxed(),
        ds_events.boxed(),
        cm_events.boxed(),
        slice_events.boxed(),
        claim_events.boxed(),
        policy_events.boxed(),
        job_events.boxed(),
    ]);
    let actor = apply::Actor::new(client.clone(), log.clone());
    log.line("gpu simulator started; waiting for a ClusterPolicy");
    let mut wake: Option<Instant> = None;
    let mut jobs_seen = std::collections::HashSet::new();
    let mut last_error = String::new();
    loop {
        let timer = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at.into()).await,
                None => futures::future::pending().await,
            }
        };
        tokio::select! {
            _ = &mut stopped => break,
            trigger = triggers.next() => {
                let Some(first) = trigger else { break };
                // Every event already there goes into this one pass: the pass is level-triggered
                // (it reads the stores, not the events), and a pool of hundreds of nodes sends
                // thousands of pod updates in a burst, each of which would otherwise cost a
                // pass over every node.
                let mut ended = false;
                let mut changed = note(first, &mut world, &mut jobs_seen, &mut last_error, &log);
                while let Some(next) = triggers.next().now_or_never() {
                    match next {
                        Some(t) => changed |= note(t, &mut world, &mut jobs_seen, &mut last_error, &log),
                        None => {
                            ended = true;
                            break;
                        }
                    }
                }
                if ended {
                    break;
                }
                if !changed {
                    continue;
                }
            },
            () = timer => {}
        }
        let (n, p, d, c, pol, sl) = (
            nodes.state(),
            pods.state(),
            daemonsets.state(),
            config_maps.state(),
            policies.state(),
            slices.state(),
        );
        let cl = claims.state();
        let snap = Snapshot {
            nodes: &n,
            pods: &p,
            daemonsets: &d,
            config_maps: &c,
            policy: pol.first().map(|p| p.as_ref()),
            slices: &sl,
            claims: &cl,
            by_node: Default::default(),
        };
        let now = Instant::now();
        let (mut actions, mut next) = world.reconcile(&snap, now);
        let chart_driver = snap
            .policy
            .and_then(|p| p.data.pointer("/spec/driver/version"))
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        // What each node runs: its driver pod's version, else what the chart asks for.
        let driver = |node: &str| {
            world
                .bench_driver(&snap, node)
                .unwrap_or_else(|| chart_driver.clone())
        };
        actions.extend(player.reconcile(&snap, &driver, now, &mut next));
        wake = next;
        for action in actions {
            actor.apply(action).await;
        }
    }
    log.line("gpu simulator stopped");
}
