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
use serde_json::Value;

use super::config::{self};
use super::labels::{self, Labels, MigLayout, NodeGpus};
use crate::catalog::Catalog;
use crate::fixture::{ClusterFixture, Fault};
use crate::gpu_stack::operator::{CRDS as OPERATOR_CRDS, DEPLOY_DRIVER, PART_OF, PRE_INSTALLED};
use crate::gpu_stack::{kwok_managed, nfd, pod_ready};

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
    /// One reconcile of the driver upgrade controller (each state takes one or two).
    pub upgrade_reconcile: Duration,
    /// How long the upgrade controller waits for validation before `upgrade-failed`.
    pub validation_timeout: Duration,
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
            upgrade_reconcile: Duration::from_millis(400),
            validation_timeout: Duration::from_secs(6),
        }
    }
}

pub use super::action::{Action, EventSpec};

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
    /// All ResourceSlices.
    pub slices: &'a [Arc<k8s_openapi::api::resource::v1::ResourceSlice>],
    /// All ResourceClaims.
    pub claims: &'a [Arc<k8s_openapi::api::resource::v1::ResourceClaim>],
    /// `pods` by the node they are bound to, built on first use ([`Self::pods_on`]).
    pub by_node: std::sync::OnceLock<HashMap<&'a str, Vec<&'a Pod>>>,
}

impl<'a> Snapshot<'a> {
    /// The pods bound to `node`. Each pass asks this for every node and several operands; a
    /// scan of every pod each time makes a pass nodes × pods (200 GPU nodes run 1,800 pods).
    pub fn pods_on(&self, node: &str) -> &[&'a Pod] {
        let pods = self.pods;
        self.by_node
            .get_or_init(|| {
                let mut m: HashMap<&'a str, Vec<&'a Pod>> = HashMap::new();
                for p in pods {
                    let p: &'a Pod = p.as_ref();
                    if let Some(n) = p.spec.as_ref().and_then(|s| s.node_name.as_deref()) {
                        m.entry(n).or_default().push(p);
                    }
                }
                m
            })
            .get(node)
            .map_or(&[], Vec::as_slice)
    }
}

#[derive(Debug, Clone)]
pub(in crate::sim) struct MigState {
    pub(in crate::sim) config: String,
    pub(in crate::sim) since: Instant,
    pub(in crate::sim) outcome: Option<Result<MigLayout, String>>,
}

#[derive(Debug, Clone)]
pub(in crate::sim) struct CrashState {
    pub(in crate::sim) restarts: i32,
    pub(in crate::sim) next: Instant,
    pub(in crate::sim) last: chrono::DateTime<chrono::Utc>,
}

/// The simulator's memory between passes.
pub struct World {
    pub(in crate::sim) fixture: Arc<ClusterFixture>,
    pub(in crate::sim) catalog: Arc<Catalog>,
    pub(in crate::sim) delays: Delays,
    pub(in crate::sim) since: HashMap<(String, &'static str), Instant>,
    pub(in crate::sim) gfd_timestamp: HashMap<String, i64>,
    pub(in crate::sim) mig: HashMap<String, MigState>,
    /// When each node's device plugin stopped serving (its capacity's grace period runs from
    /// then).
    pub(in crate::sim) plugin_gone: HashMap<String, Instant>,
    pub(in crate::sim) crash: HashMap<String, CrashState>,
    pub(in crate::sim) policy_seen: Option<Instant>,
    pub(in crate::sim) stopped: HashSet<String>,
    /// Set by the watch on Jobs when the cleanup-crd hook runs.
    pub cleanup_crd_requested: bool,
    /// Set by the watch on Jobs when NFD's prune hook runs.
    pub prune_requested: bool,
    /// The driver upgrade controller's memory.
    pub(in crate::sim) upgrade: super::stages::upgrade::UpgradeMemory,
    /// The GPU performance table: the names NVML reports for each model.
    pub(in crate::sim) perf: Option<crate::bench::model::PerfTable>,
}

/// The label kwok manages pods by: operand pods carry `app=<daemonset>`.
pub(in crate::sim) const APP: &str = "app";
pub(in crate::sim) const DEVICE_PLUGIN: &str = "nvidia-device-plugin-daemonset";
/// The operator's driver DaemonSet.
pub(in crate::sim) const DRIVER: &str = "nvidia-driver-daemonset";
pub(in crate::sim) const GFD: &str = "gpu-feature-discovery";
pub(in crate::sim) const MIG_MANAGER: &str = "nvidia-mig-manager";

impl World {
    /// Memory for a cluster made from `fixture`.
    pub fn new(fixture: ClusterFixture, catalog: Catalog, delays: Delays) -> Self {
        Self {
            fixture: Arc::new(fixture),
            catalog: Arc::new(catalog),
            delays,
            since: HashMap::new(),
            gfd_timestamp: HashMap::new(),
            mig: HashMap::new(),
            plugin_gone: HashMap::new(),
            crash: HashMap::new(),
            policy_seen: None,
            stopped: HashSet::new(),
            cleanup_crd_requested: false,
            prune_requested: false,
            upgrade: Default::default(),
            perf: crate::bench::model::PerfTable::embedded().ok(),
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
        let leftovers = self.fixture.faults.contains(&Fault::LeftoverLabels);
        let prune = std::mem::take(&mut self.prune_requested) && !leftovers;
        // A cluster-managed NFD keeps its own labels; the ones GFD published through it go once
        // no ClusterPolicy (and so no GFD) is left.
        let external_nfd = self.fixture.external_nfd;
        let prune_gfd = external_nfd && policy.is_none() && !leftovers;

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
        if let Some((_, pol)) = &policy {
            self.upgrade_controller(snap, pol, now, &mut wake, &mut out, &mut crash_targets);
        }

        let catalog = Arc::clone(&self.catalog);
        let fixture = Arc::clone(&self.fixture);
        for node in snap.nodes {
            let name = node.name_any();
            if self.stopped.contains(&name) || !kwok_managed(node) {
                continue;
            }
            let current = node.labels().clone();
            let mut want = current.clone();
            let gpus = node_gpus(&fixture, &catalog, node);

            if prune {
                want.retain(|k, _| !prunable(k));
            }
            if prune_gfd {
                want.retain(|k, _| !prunable(k) || k.starts_with(nfd::PREFIX));
            }

            // NFD: kernel, OS and PCI labels, once its worker runs on the node (or always, when
            // the cluster runs its own NFD).
            let nfd_ready = external_nfd
                || policy.is_some()
                    && snap.pods_on(&name).iter().any(|p| {
                        label_is(p, "app.kubernetes.io/name", "node-feature-discovery")
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
                let deploy = labels::operator_labels(mig_capable, &want);
                want.extend(deploy);
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
            // A device plugin that never took up its config shares nothing.
            let ignored = self
                .fixture
                .faults_on(&name)
                .any(|f| matches!(f, Fault::SharingNotApplied { .. }));
            let sharing = sharing.unwrap_or(None).filter(|_| !ignored);

            // The driver manager (the driver pod's init container) finds a host driver with
            // `chroot /host nvidia-smi`, labels the node pre-installed and the driver pod goes.
            if let (Some(g), Some((_, pol))) = (gpus.as_ref(), &policy)
                && g.host_driver.is_some()
                && pol.stack.driver_enabled
                && operand_ready(snap, &name, DRIVER)
            {
                want.insert(DEPLOY_DRIVER.into(), PRE_INSTALLED.into());
            }

            // GFD: the GPU labels, once its pod is Ready on the node and a driver is loaded.
            let driver = match (gpus.as_ref(), &policy) {
                (Some(g), Some((_, pol))) => {
                    labels::node_driver(&pol.stack, g.host_driver).map(|d| match g.host_driver {
                        Some(_) => d,
                        None => self.gfd_driver(snap, &name, &d),
                    })
                }
                _ => None,
            };
            if let (Some(g), Some((_, pol)), Some(driver)) = (gpus.as_ref(), &policy, &driver) {
                let ready = operand_ready(snap, &name, GFD);
                if self.due(&name, "gfd", ready, self.delays.gfd, now, &mut wake) {
                    let ts = *self
                        .gfd_timestamp
                        .entry(name.clone())
                        .or_insert_with(|| chrono::Utc::now().timestamp());
                    let g = g.as_node_gpus();
                    let stack = labels::StackConfig {
                        driver_version: driver.clone(),
                        ..pol.stack.clone()
                    };
                    want.extend(labels::gfd_labels(
                        &g,
                        &stack,
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

            // The DRA driver's kubelet plugin: the node's ResourceSlice.
            self.dra(
                snap,
                &name,
                gpus.as_ref(),
                driver.as_ref(),
                &layout,
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
    pub(in crate::sim) fn label_faults(&self, node: &str, want: &mut Labels) {
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
    pub(in crate::sim) fn due(
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
}

/// A node's GPUs: its fixture pool's hardware and the catalog's GPU model.
pub(in crate::sim) struct OwnedGpus<'a> {
    pub(in crate::sim) hardware: &'a crate::fixture::Hardware,
    pub(in crate::sim) model: &'a crate::catalog::GpuModel,
    pub(in crate::sim) count: u32,
    /// The driver installed on the host by the node image, if any.
    pub(in crate::sim) host_driver: Option<&'a str>,
}

impl OwnedGpus<'_> {
    pub(in crate::sim) fn as_node_gpus(&self) -> NodeGpus<'_> {
        NodeGpus {
            hardware: self.hardware,
            model: self.model,
            count: self.count,
        }
    }
}

/// The GPUs of a node, from its pool in the fixture (what the machine is made of, whatever
/// labels it carries); `None` for CPU nodes and nodes the fixture does not define.
pub(in crate::sim) fn node_gpus<'a>(
    fixture: &'a ClusterFixture,
    catalog: &'a Catalog,
    node: &Node,
) -> Option<OwnedGpus<'a>> {
    let pool = fixture.pool_of(&node.name_any())?;
    let gpu = pool.hardware.spec.gpu.as_ref()?;
    let model = catalog.gpu_models.get(&gpu.model)?;
    // GPUs fallen off the bus are not there for anyone on the node.
    let missing: u32 = fixture
        .faults_on(&node.name_any())
        .filter_map(|f| match f {
            Fault::GpuMissing { count, .. } => Some(*count),
            _ => None,
        })
        .sum();
    Some(OwnedGpus {
        hardware: &pool.hardware,
        model,
        count: gpu.count.saturating_sub(missing),
        host_driver: pool.host_driver.as_deref(),
    })
}

pub(in crate::sim) fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}

pub(in crate::sim) fn label_is(pod: &Pod, key: &str, value: &str) -> bool {
    pod.labels().get(key).map(String::as_str) == Some(value)
}

pub(in crate::sim) fn operand_ready(snap: &Snapshot<'_>, node: &str, operand: &str) -> bool {
    snap.pods_on(node)
        .iter()
        .any(|p| label_is(p, APP, operand) && pod_ready(p))
}

/// The operator's namespace: where its operand DaemonSets live.
pub(in crate::sim) fn operator_namespace(snap: &Snapshot<'_>) -> Option<String> {
    snap.daemonsets
        .iter()
        .find(|d| d.labels().get(PART_OF.0).map(String::as_str) == Some(PART_OF.1))
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
pub(in crate::sim) fn prunable(key: &str) -> bool {
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

pub(in crate::sim) fn diff(
    current: &BTreeMap<String, String>,
    want: &Labels,
) -> BTreeMap<String, Option<String>> {
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
