//! One reconcile pass of the GPU simulator: from what the API shows now (nodes, pods, daemon
//! sets, config maps, the ClusterPolicy) to the changes the real GPU stack would make next.
//!
//! The pass is level-triggered and pure apart from its memory of timers: each stage of the stack
//! acts on a node only once its precondition has held for the stage's delay, and only through the
//! precondition a real cluster has — GFD labels need a Ready GFD pod on the node, resources need a
//! Ready device plugin pod, and so on. A crash-looping GFD therefore means no GFD labels, exactly
//! as on a real cluster.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::apps::v1::DaemonSet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use kube::ResourceExt;
use kube::api::DynamicObject;
use serde_json::{Value, json};

use super::config::{self, Policy};
use super::labels::{self, Labels, MigLayout, NodeGpus};
use crate::catalog::Catalog;
use crate::fixture::{ClusterFixture, Fault};
use crate::gpu_stack::operator::CRDS as OPERATOR_CRDS;
use crate::gpu_stack::{gpu_resources, kwok_managed, nfd, pod_ready};

/// How long each stage takes once its precondition holds. Real stacks take minutes (driver
/// build); these keep the ordering and the visible intermediate states at test speed.
#[derive(Debug, Clone)]
pub struct Delays {
    /// NFD worker Ready → NFD labels.
    pub nfd: Duration,
    /// NFD PCI label → operator labels.
    pub operator: Duration,
    /// GFD pod Ready → GFD labels.
    pub gfd: Duration,
    /// Device plugin pod Ready → resources.
    pub device_plugin: Duration,
    /// `nvidia.com/mig.config` changed → mig-manager done.
    pub mig: Duration,
    /// Operand pod Running → first crash of a crash-looping operand.
    pub first_crash: Duration,
    /// Longest back-off between two crashes.
    pub max_backoff: Duration,
}

impl Default for Delays {
    fn default() -> Self {
        Self {
            nfd: Duration::from_millis(800),
            operator: Duration::from_millis(400),
            gfd: Duration::from_millis(800),
            device_plugin: Duration::from_millis(800),
            mig: Duration::from_millis(1500),
            first_crash: Duration::from_millis(500),
            max_backoff: Duration::from_secs(16),
        }
    }
}

/// A change to make through the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set (`Some`) or remove (`None`) node labels.
    Labels {
        /// Node name.
        node: String,
        /// Label changes.
        changes: BTreeMap<String, Option<String>>,
    },
    /// Set extended resources in the node's status: name → (capacity, allocatable).
    Resources {
        /// Node name.
        node: String,
        /// Resource values.
        values: BTreeMap<String, (u64, u64)>,
    },
    /// Replace the ClusterPolicy's status.
    PolicyStatus {
        /// Object name.
        name: String,
        /// The new status.
        status: Value,
    },
    /// Replace a pod's status (the simulator plays its kubelet).
    PodStatus {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The new status.
        status: Value,
    },
    /// The node's kubelet stops: kwok releases it and its Ready condition turns Unknown.
    StopNode {
        /// Node name.
        node: String,
    },
    /// Give a pod a log: write `lines` to `file` (CRI format) and point kwok at it with a
    /// `Logs` object for the pod's container.
    PodLog {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Container name.
        container: String,
        /// Log file kwok serves.
        file: std::path::PathBuf,
        /// The log, one entry per line.
        lines: Vec<String>,
    },
    /// Delete these CRDs (the cleanup-crd hook's work).
    DeleteCrds(Vec<String>),
    /// Record an event.
    Event(EventSpec),
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    /// Namespace of the event (`default` for nodes).
    pub namespace: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// UID of the object.
    pub uid: String,
    /// Event reason.
    pub reason: String,
    /// Event message.
    pub message: String,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Reporting component.
    pub source: String,
}

/// What the API shows, from the simulator's watches.
pub struct Snapshot<'a> {
    /// All nodes.
    pub nodes: &'a [Arc<Node>],
    /// All pods.
    pub pods: &'a [Arc<Pod>],
    /// All daemon sets.
    pub daemonsets: &'a [Arc<DaemonSet>],
    /// All config maps.
    pub config_maps: &'a [Arc<ConfigMap>],
    /// The ClusterPolicy, if the chart is installed.
    pub policy: Option<&'a DynamicObject>,
}

#[derive(Debug, Clone)]
struct MigState {
    config: String,
    since: Instant,
    outcome: Option<Result<MigLayout, String>>,
}

#[derive(Debug, Clone)]
struct CrashState {
    restarts: i32,
    next: Instant,
    last: chrono::DateTime<chrono::Utc>,
}

/// The simulator's memory between passes.
pub struct World {
    fixture: ClusterFixture,
    catalog: Arc<Catalog>,
    delays: Delays,
    since: HashMap<(String, &'static str), Instant>,
    gfd_timestamp: HashMap<String, i64>,
    mig: HashMap<String, MigState>,
    crash: HashMap<String, CrashState>,
    policy_seen: Option<Instant>,
    stopped: HashSet<String>,
    /// Set by the watch on Jobs when the cleanup-crd hook runs.
    pub cleanup_crd_requested: bool,
    /// Set by the watch on Jobs when NFD's prune hook runs.
    pub prune_requested: bool,
}

/// The label kwok manages pods by: operand pods carry `app=<daemonset>`.
const APP: &str = "app";
const DEVICE_PLUGIN: &str = "nvidia-device-plugin-daemonset";
const GFD: &str = "gpu-feature-discovery";
const MIG_MANAGER: &str = "nvidia-mig-manager";

impl World {
    /// Memory for a cluster made from `fixture`.
    pub fn new(fixture: ClusterFixture, catalog: Catalog, delays: Delays) -> Self {
        Self {
            fixture,
            catalog: Arc::new(catalog),
            delays,
            since: HashMap::new(),
            gfd_timestamp: HashMap::new(),
            mig: HashMap::new(),
            crash: HashMap::new(),
            policy_seen: None,
            stopped: HashSet::new(),
            cleanup_crd_requested: false,
            prune_requested: false,
        }
    }

    /// One pass: the actions to take now and when the next timer is due.
    pub fn reconcile(
        &mut self,
        snap: &Snapshot<'_>,
        now: Instant,
    ) -> (Vec<Action>, Option<Instant>) {
        let mut out = Vec::new();
        let mut wake: Option<Instant> = None;
        let policy = snap.policy.map(|p| {
            let spec = p.data.get("spec").cloned().unwrap_or(Value::Null);
            (p.name_any(), config::policy(&spec))
        });
        if policy.is_some() {
            if self.policy_seen.is_none() {
                self.policy_seen = Some(now);
            }
        } else {
            self.policy_seen = None;
        }
        let namespace = operator_namespace(snap);

        if std::mem::take(&mut self.cleanup_crd_requested) {
            out.push(Action::DeleteCrds(
                OPERATOR_CRDS.iter().map(|s| (*s).to_string()).collect(),
            ));
        }
        let prune = std::mem::take(&mut self.prune_requested)
            && !self.fixture.faults.contains(&Fault::LeftoverLabels);

        let mut crash_targets: Vec<(String, String, String)> = self
            .fixture
            .faults
            .iter()
            .filter_map(|f| match f {
                Fault::CrashLoop { node, operand } => Some((
                    node.clone(),
                    operand.clone(),
                    "fatal error: simulated crash (fixture fault)".to_string(),
                )),
                _ => None,
            })
            .collect();

        let catalog = Arc::clone(&self.catalog);
        for node in snap.nodes {
            let name = node.name_any();
            if self.stopped.contains(&name) || !kwok_managed(node) {
                continue;
            }
            let current = node.labels().clone();
            let mut want = current.clone();
            let gpus = node_gpus(&catalog, node);

            if prune {
                want.retain(|k, _| !prunable(k));
            }

            // NFD: kernel, OS and PCI labels, once its worker runs on the node.
            let nfd_ready = policy.is_some()
                && snap.pods.iter().any(|p| {
                    on_node(p, &name)
                        && label_is(p, "app.kubernetes.io/name", "node-feature-discovery")
                        && label_is(p, "role", "worker")
                        && pod_ready(p)
                });
            if self.due(&name, "nfd", nfd_ready, self.delays.nfd, now, &mut wake) {
                let info = node.status.as_ref().and_then(|s| s.node_info.as_ref());
                let os = info.map(|i| i.os_image.as_str()).unwrap_or_default();
                let kernel = info.map(|i| i.kernel_version.as_str()).unwrap_or_default();
                want.extend(labels::nfd_labels(os, kernel, gpus.is_some()));
                // The operator decides on what NFD published, faults included.
                self.label_faults(&name, &mut want);
            }

            // The operator: GPU node labels once NFD has found the GPU.
            let gpu_node = policy.is_some() && nfd::has_nvidia_pci(&want);
            if let Some((_, pol)) = &policy
                && self.due(
                    &name,
                    "operator",
                    gpu_node,
                    self.delays.operator,
                    now,
                    &mut wake,
                )
            {
                let mig_capable = want
                    .get("nvidia.com/mig.capable")
                    .is_some_and(|v| v == "true");
                want.extend(labels::operator_labels(mig_capable));
                if mig_capable && !want.contains_key("nvidia.com/mig.config") {
                    want.insert(
                        "nvidia.com/mig.config".into(),
                        pol.mig_config_default.clone(),
                    );
                }
            }

            // mig-manager: applies the layout named by nvidia.com/mig.config.
            let layout = self.mig_manager(
                snap,
                node,
                &name,
                gpus.as_ref(),
                &mut want,
                now,
                &mut wake,
                &mut out,
            );

            // Device plugin sharing config for this node.
            let sharing = match &policy {
                Some((_, pol)) => self.sharing(snap, pol, namespace.as_deref(), &want),
                None => Ok(None),
            };
            if let Err(why) = &sharing
                && gpus.is_some()
            {
                crash_targets.push((name.clone(), DEVICE_PLUGIN.into(), why.clone()));
            }
            let sharing = sharing.unwrap_or(None);

            // GFD: the GPU labels, once its pod is Ready on the node.
            if let (Some(g), Some((_, pol))) = (gpus.as_ref(), &policy) {
                let ready = operand_ready(snap, &name, GFD);
                if self.due(&name, "gfd", ready, self.delays.gfd, now, &mut wake) {
                    let ts = *self
                        .gfd_timestamp
                        .entry(name.clone())
                        .or_insert_with(|| chrono::Utc::now().timestamp());
                    let g = g.as_node_gpus();
                    want.extend(labels::gfd_labels(
                        &g,
                        &pol.stack,
                        &layout,
                        sharing.as_ref(),
                        ts,
                    ));
                } else {
                    self.gfd_timestamp.remove(&name);
                }
            }

            self.label_faults(&name, &mut want);

            let changes = diff(&current, &want);
            if !changes.is_empty() {
                out.push(Action::Labels {
                    node: name.clone(),
                    changes,
                });
            }

            // Device plugin: extended resources while its pod is Ready; zero once it is gone.
            self.resources(
                snap,
                node,
                &name,
                gpus.as_ref(),
                &policy,
                &layout,
                sharing.as_ref(),
                now,
                &mut wake,
                &mut out,
            );

            // A kubelet that dies some time after the install.
            for fault in self.fixture.faults_on(&name) {
                if let (Fault::NodeNotReady { after, .. }, Some(seen)) = (fault, self.policy_seen) {
                    let at = seen + *after;
                    if now >= at {
                        self.stopped.insert(name.clone());
                        out.push(Action::StopNode { node: name.clone() });
                    } else {
                        wake = earliest(wake, at);
                    }
                }
            }
        }

        self.crash_loops(snap, &crash_targets, now, &mut wake, &mut out);
        if let Some((name, _)) = &policy {
            self.policy_status(snap, name, namespace.as_deref(), &mut out);
        }
        (out, wake)
    }

    /// Label faults: the last word, as a broken component would have it.
    fn label_faults(&self, node: &str, want: &mut Labels) {
        for fault in self.fixture.faults_on(node) {
            match fault {
                Fault::MissingLabel { label, .. } => {
                    want.remove(label);
                }
                Fault::LabelValue { label, value, .. } if want.contains_key(label) => {
                    want.insert(label.clone(), value.clone());
                }
                _ => {}
            }
        }
    }

    /// Whether the stage's precondition has held for `delay`; remembers when it started to hold.
    fn due(
        &mut self,
        node: &str,
        stage: &'static str,
        holds: bool,
        delay: Duration,
        now: Instant,
        wake: &mut Option<Instant>,
    ) -> bool {
        let key = (node.to_string(), stage);
        if !holds {
            self.since.remove(&key);
            return false;
        }
        let at = *self.since.entry(key).or_insert(now) + delay;
        if now >= at {
            true
        } else {
            *wake = earliest(*wake, at);
            false
        }
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one stage of the pass, kept beside the others"
    )]
    fn mig_manager(
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
                let outcome = labels::mig_layout(g.model, &config);
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

    fn sharing(
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

    #[expect(
        clippy::too_many_arguments,
        reason = "one stage of the pass, kept beside the others"
    )]
    fn resources(
        &mut self,
        snap: &Snapshot<'_>,
        node: &Node,
        name: &str,
        gpus: Option<&OwnedGpus<'_>>,
        policy: &Option<(String, Policy)>,
        layout: &MigLayout,
        sharing: Option<&labels::Sharing>,
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
    ) {
        let have: BTreeMap<String, (u64, u64)> = gpu_resources(node);
        let mut want: BTreeMap<String, (u64, u64)> =
            have.keys().map(|k| (k.clone(), (0, 0))).collect();
        let ready = gpus.is_some() && operand_ready(snap, name, DEVICE_PLUGIN);
        if self.due(
            name,
            "device-plugin",
            ready,
            self.delays.device_plugin,
            now,
            wake,
        ) && let (Some(g), Some((_, pol))) = (gpus, policy)
        {
            let unhealthy = self
                .fixture
                .faults_on(name)
                .find_map(|f| match f {
                    Fault::UnhealthyGpus { count, .. } => Some(*count),
                    _ => None,
                })
                .unwrap_or(0);
            let g = g.as_node_gpus();
            for (res, cap, alloc) in
                labels::device_plugin_resources(&g, &pol.stack, layout, sharing, unhealthy)
            {
                want.insert(res, (cap, alloc));
            }
        }
        // Kubelet reports a resource whose plugin went away as 0, not absent.
        want.retain(|k, v| have.contains_key(k) || *v != (0, 0));
        if want != have {
            out.push(Action::Resources {
                node: name.to_string(),
                values: want,
            });
        }
    }

    fn crash_loops(
        &mut self,
        snap: &Snapshot<'_>,
        targets: &[(String, String, String)],
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
    ) {
        let mut live = HashSet::new();
        for (node, operand, why) in targets {
            let Some(pod) = snap.pods.iter().find(|p| {
                on_node(p, node)
                    && label_is(p, APP, operand)
                    && p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            }) else {
                continue;
            };
            let uid = pod.uid().unwrap_or_default();
            live.insert(uid.clone());
            let first = now + self.delays.first_crash;
            let state = self.crash.entry(uid).or_insert_with(|| CrashState {
                restarts: 0,
                next: first,
                last: chrono::Utc::now(),
            });
            if now < state.next {
                *wake = earliest(*wake, state.next);
                continue;
            }
            state.restarts += 1;
            // Kubelet's back-off doubles from 10s to 5 minutes; scaled down here.
            let factor = 1u32 << u32::try_from(state.restarts.clamp(0, 5)).unwrap_or(5);
            let backoff = (Duration::from_millis(500) * factor).min(self.delays.max_backoff);
            state.next = now + backoff;
            *wake = earliest(*wake, state.next);
            let started = state.last;
            state.last = chrono::Utc::now();
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .unwrap_or_default();
            let backoff_label = format!("{}s", (10u64 << state.restarts.clamp(0, 5)).min(300));
            out.push(Action::PodStatus {
                namespace: pod.namespace().unwrap_or_default(),
                name: pod.name_any(),
                status: crash_status(
                    pod,
                    &container,
                    state.restarts,
                    &backoff_label,
                    started,
                    state.last,
                ),
            });
            out.push(Action::Event(EventSpec {
                namespace: pod.namespace().unwrap_or_default(),
                kind: "Pod".into(),
                name: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                reason: "BackOff".into(),
                message: format!(
                    "Back-off restarting failed container {} in pod {}: {why}",
                    container.0,
                    pod.name_any()
                ),
                warning: true,
                source: "kubelet".into(),
            }));
        }
        self.crash.retain(|uid, _| live.contains(uid));
    }

    fn policy_status(
        &self,
        snap: &Snapshot<'_>,
        name: &str,
        namespace: Option<&str>,
        out: &mut Vec<Action>,
    ) {
        let (ready, reason, message) = self.policy_readiness(snap, namespace);
        let current = snap.policy.and_then(|p| p.data.get("status"));
        let state = if ready { "ready" } else { "notReady" };
        let same = current.is_some_and(|s| {
            s.get("state").and_then(Value::as_str) == Some(state)
                && s.get("conditions")
                    .and_then(Value::as_array)
                    .and_then(|c| c.iter().find(|c| c["type"] == "Ready"))
                    .is_some_and(|c| {
                        c["reason"] == reason.as_str() && c["message"] == message.as_str()
                    })
        });
        if same {
            return;
        }
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let generation = snap.policy.and_then(|p| p.metadata.generation).unwrap_or(1);
        let status = json!({
            "state": state,
            "namespace": namespace.unwrap_or("gpu-operator"),
            "conditions": [
                {
                    "type": "Ready",
                    "status": if ready { "True" } else { "False" },
                    "reason": reason,
                    "message": message,
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                },
                {
                    "type": "Error",
                    "status": "False",
                    "reason": if ready { "Ready" } else { reason.as_str() },
                    "message": "",
                    "lastTransitionTime": now,
                    "observedGeneration": generation,
                },
            ],
        });
        out.push(Action::PolicyStatus {
            name: name.to_string(),
            status,
        });
    }

    /// `(ready, reason, message)` the operator would report.
    fn policy_readiness(
        &self,
        snap: &Snapshot<'_>,
        namespace: Option<&str>,
    ) -> (bool, String, String) {
        for f in &self.fixture.faults {
            if let Fault::ClusterPolicyNotReady { reason, message } = f {
                return (false, reason.clone(), message.clone());
            }
        }
        let gpu_nodes: Vec<&Arc<Node>> = snap
            .nodes
            .iter()
            .filter(|n| nfd::has_nvidia_pci(n.labels()))
            .collect();
        if gpu_nodes.is_empty() {
            let any_nfd = snap.nodes.iter().any(|n| {
                n.labels()
                    .contains_key("feature.node.kubernetes.io/kernel-version.full")
            });
            return if any_nfd {
                (
                    false,
                    "NoGPUNodes".into(),
                    "no GPU nodes found in the cluster".into(),
                )
            } else {
                (
                    false,
                    "NFDLabelsMissing".into(),
                    "NFD labels missing in the cluster: install NFD or enable nfd in the chart"
                        .into(),
                )
            };
        }
        // The operator labels GPU nodes before its DaemonSets can target them, and the
        // validator's plugin check waits for the device plugin to register: until both hold on
        // every GPU node the operands are not ready, whatever the (still empty) DaemonSets say.
        for n in &gpu_nodes {
            let labels = n.labels();
            if labels.get("nvidia.com/gpu.present").map(String::as_str) != Some("true") {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!("node {} is not labelled for operands yet", n.name_any()),
                );
            }
            // GFD decides MIG capability, which decides whether mig-manager must run there.
            if kwok_managed(n) && !labels.contains_key("nvidia.com/mig.capable") {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!(
                        "gpu-feature-discovery has not labelled node {} yet",
                        n.name_any()
                    ),
                );
            }
            if labels.get("nvidia.com/mig.capable").map(String::as_str) == Some("true")
                && !labels.contains_key("nvidia.com/gpu.deploy.mig-manager")
            {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!("node {} is not labelled for mig-manager yet", n.name_any()),
                );
            }
            if kwok_managed(n) && gpu_resources(n).values().all(|(cap, _)| *cap == 0) {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!(
                        "nvidia-operator-validator: no GPU resource registered on node {} yet",
                        n.name_any()
                    ),
                );
            }
        }
        let mut operands: Vec<&Arc<DaemonSet>> = snap
            .daemonsets
            .iter()
            .filter(|d| {
                d.namespace().as_deref() == namespace
                    && d.labels()
                        .get("app.kubernetes.io/part-of")
                        .map(String::as_str)
                        == Some("gpu-operator")
            })
            .collect();
        operands.sort_by_key(|d| d.name_any());
        if operands.is_empty() {
            return (
                false,
                "OperandNotReady".into(),
                "no operand daemonsets yet".into(),
            );
        }
        for ds in operands {
            let selector = ds
                .spec
                .as_ref()
                .and_then(|s| s.template.spec.as_ref())
                .and_then(|s| s.node_selector.clone())
                .unwrap_or_default();
            let expected = snap
                .nodes
                .iter()
                .filter(|n| selector.iter().all(|(k, v)| n.labels().get(k) == Some(v)))
                .count();
            let status = ds.status.as_ref();
            let desired = status.map_or(0, |s| s.desired_number_scheduled);
            let available = status.and_then(|s| s.number_available).unwrap_or(0);
            let observed = status.and_then(|s| s.observed_generation);
            let current = observed.is_some() && observed == ds.metadata.generation;
            let expected = i32::try_from(expected).unwrap_or(i32::MAX);
            if !current || desired != expected || available < desired {
                return (
                    false,
                    "OperandNotReady".into(),
                    format!(
                        "{} is not ready: {available} of {expected} pods available",
                        ds.name_any()
                    ),
                );
            }
        }
        (
            true,
            "Reconciled".into(),
            "ClusterPolicy is ready as all resources have been successfully reconciled".into(),
        )
    }
}

/// A node's GPUs, borrowed from the catalog.
struct OwnedGpus<'a> {
    instance_type: &'a str,
    instance: &'a crate::catalog::InstanceType,
    model: &'a crate::catalog::GpuModel,
    count: u32,
}

impl OwnedGpus<'_> {
    fn as_node_gpus(&self) -> NodeGpus<'_> {
        NodeGpus {
            instance_type: self.instance_type,
            instance: self.instance,
            model: self.model,
            count: self.count,
        }
    }
}

/// The GPUs of a node's instance type, `None` for CPU nodes.
fn node_gpus<'a>(catalog: &'a Catalog, node: &Node) -> Option<OwnedGpus<'a>> {
    let ty = node.labels().get("node.kubernetes.io/instance-type")?;
    let (ty_name, instance) = catalog.instance_types.get_key_value(ty)?;
    let (model, count) = catalog.gpu_of(instance)?;
    Some(OwnedGpus {
        instance_type: ty_name,
        instance,
        model,
        count,
    })
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

fn on_node(pod: &Pod, node: &str) -> bool {
    pod.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
}

fn label_is(pod: &Pod, key: &str, value: &str) -> bool {
    pod.labels().get(key).map(String::as_str) == Some(value)
}

fn operand_ready(snap: &Snapshot<'_>, node: &str, operand: &str) -> bool {
    snap.pods
        .iter()
        .any(|p| on_node(p, node) && label_is(p, APP, operand) && pod_ready(p))
}

/// The operator's namespace: where its operand DaemonSets live.
fn operator_namespace(snap: &Snapshot<'_>) -> Option<String> {
    snap.daemonsets
        .iter()
        .find(|d| {
            d.labels()
                .get("app.kubernetes.io/part-of")
                .map(String::as_str)
                == Some("gpu-operator")
        })
        .and_then(|d| d.namespace())
        .or_else(|| {
            snap.policy
                .and_then(|p| p.data.pointer("/status/namespace"))
                .and_then(Value::as_str)
                .map(str::to_string)
        })
}

/// Labels NFD's prune hook removes: its own and the GFD labels published through it. The
/// operator's own labels (`gpu.present`, `gpu.deploy.*`, MIG config) are not NFD's and stay.
fn prunable(key: &str) -> bool {
    if key.starts_with("feature.node.kubernetes.io/") {
        return true;
    }
    let Some(rest) = key.strip_prefix("nvidia.com/") else {
        return false;
    };
    !(rest == "gpu.present"
        || rest.starts_with("gpu.deploy.")
        || rest == "gpu.workload.config"
        || rest.starts_with("mig.config")
        || rest == "device-plugin.config"
        || rest.starts_with("gpu-driver-upgrade")
        || rest.starts_with("gpu-operator."))
}

fn diff(current: &BTreeMap<String, String>, want: &Labels) -> BTreeMap<String, Option<String>> {
    let mut changes = BTreeMap::new();
    for (k, v) in want {
        if current.get(k) != Some(v) {
            changes.insert(k.clone(), Some(v.clone()));
        }
    }
    for k in current.keys() {
        if !want.contains_key(k) {
            changes.insert(k.clone(), None);
        }
    }
    changes
}

/// The status a kubelet reports for a container in `CrashLoopBackOff`.
fn crash_status(
    pod: &Pod,
    (container, image): &(String, String),
    restarts: i32,
    backoff: &str,
    started: chrono::DateTime<chrono::Utc>,
    finished: chrono::DateTime<chrono::Utc>,
) -> Value {
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let not_ready = format!("containers with unready status: [{container}]");
    let old = pod.status.as_ref();
    let mut conditions = vec![
        json!({"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": not_ready, "lastTransitionTime": ts(finished)}),
        json!({"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "message": not_ready, "lastTransitionTime": ts(finished)}),
        json!({"type": "Initialized", "status": "True", "lastTransitionTime": ts(started)}),
    ];
    if let Some(c) = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(serde_json::to_value(c).unwrap_or(Value::Null));
    }
    json!({
        "phase": "Running",
        "conditions": conditions,
        "containerStatuses": [{
            "name": container,
            "image": image,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": restarts,
            "state": {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": format!("back-off {backoff} restarting failed container={container} pod={}", pod.name_any()),
            }},
            "lastState": {"terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": ts(started),
                "finishedAt": ts(finished),
            }},
        }],
    })
}
