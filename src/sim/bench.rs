//! Bench pods on simulated nodes: what `gpuconform-bench` would print there, through the normal
//! pod-log path.
//!
//! A pod labelled `app.kubernetes.io/name=gpuconform-bench` that kwok has started on a GPU node
//! "runs" for a moment; then its log (the bench's table and JSON document, from the same
//! performance model as `gpuconform-bench --simulate`, with the fixture's `slowGpu` faults) is
//! written for kwok to serve through a `Logs` object, and the pod completes. A `benchCrash`
//! fault makes it fail instead, with a segfault in its log and the fault's exit code.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::ResourceExt;
use serde_json::{Value, json};

use super::world::{Action, Snapshot};
use crate::bench::cli::table;
use crate::bench::model::{PerfTable, SimMig, Simulation, fill_from_catalog, simulate};
use crate::catalog::Catalog;
use crate::fixture::{ClusterFixture, Fault};
use crate::gpu_stack::on_node_name;
use crate::gpu_stack::ours::BENCH_LABEL;

/// How long a simulated bench "runs" before its log appears, and the pause between the log and
/// the pod completing (so kwok has seen the `Logs` object when the harness reads the log).
const RUN: Duration = Duration::from_millis(1500);
const LOG_TO_EXIT: Duration = Duration::from_millis(700);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Running(Instant),
    Logged(Instant),
    Done,
}

/// Plays the bench for bench pods.
pub struct BenchPlayer {
    fixture: ClusterFixture,
    catalog: Arc<Catalog>,
    perf: Option<PerfTable>,
    log_dir: PathBuf,
    pods: HashMap<String, Stage>,
    /// Probe pods whose logs are written (by uid).
    probed: std::collections::HashSet<String>,
}

impl BenchPlayer {
    /// A player writing pod logs under `log_dir`.
    pub fn new(fixture: ClusterFixture, catalog: Arc<Catalog>, log_dir: PathBuf) -> Self {
        Self {
            fixture,
            catalog,
            perf: PerfTable::embedded().ok(),
            log_dir,
            pods: HashMap::new(),
            probed: std::collections::HashSet::new(),
        }
    }

    /// Actions for the bench pods in the snapshot; `wake` gets the next timer.
    pub fn reconcile(
        &mut self,
        snap: &Snapshot<'_>,
        driver: &dyn Fn(&str) -> String,
        now: Instant,
        wake: &mut Option<Instant>,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        let mut live = Vec::new();
        for pod in snap.pods.iter().filter(|p| is_bench(p)) {
            let uid = pod.uid().unwrap_or_default();
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.as_deref())
                .unwrap_or("");
            live.push(uid.clone());
            if pod.metadata.deletion_timestamp.is_some()
                || phase == "Succeeded"
                || phase == "Failed"
            {
                self.pods.insert(uid, Stage::Done);
                continue;
            }
            if phase != "Running" {
                continue;
            }
            let Some(node) = pod.spec.as_ref().and_then(|s| s.node_name.clone()) else {
                continue;
            };
            let stage = *self.pods.entry(uid.clone()).or_insert(Stage::Running(now));
            match stage {
                // A claim the simulator has not seen allocated yet: look again in a moment.
                Stage::Running(_) if claims_unseen(pod, snap) => {
                    *wake = earliest(*wake, now + Duration::from_millis(200));
                }
                Stage::Running(since) if now >= since + RUN => {
                    let node_obj = snap
                        .nodes
                        .iter()
                        .find(|n| n.name_any() == node)
                        .map(|n| n.as_ref());
                    if let Some(a) = self.log_action(pod, &node, &driver(&node), node_obj, snap) {
                        out.push(a);
                    }
                    self.pods.insert(uid, Stage::Logged(now));
                    *wake = earliest(*wake, now + LOG_TO_EXIT);
                }
                Stage::Running(since) => *wake = earliest(*wake, since + RUN),
                Stage::Logged(at) if now >= at + LOG_TO_EXIT => {
                    out.push(Action::PodStatus {
                        namespace: pod.namespace().unwrap_or_default(),
                        name: pod.name_any(),
                        status: self.exit_status(pod, &node),
                    });
                    self.pods.insert(uid, Stage::Done);
                }
                Stage::Logged(at) => *wake = earliest(*wake, at + LOG_TO_EXIT),
                Stage::Done => {}
            }
        }
        self.pods.retain(|uid, _| live.contains(uid));
        out.extend(self.probes(snap));
        out
    }

    /// The secure-access probe's output in each container of a Running probe pod on a GPU node.
    fn probes(&mut self, snap: &Snapshot<'_>) -> Vec<Action> {
        let mut out = Vec::new();
        let mut live = std::collections::HashSet::new();
        for pod in snap.pods.iter().filter(|p| super::probe::is_probe(p)) {
            let uid = pod.uid().unwrap_or_default();
            live.insert(uid.clone());
            let running = pod.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            let node = on_node_name(pod).unwrap_or_default().to_string();
            let gpu_node = self
                .fixture
                .pool_of(&node)
                .is_some_and(|p| p.hardware.spec.gpu.is_some());
            if !running || !gpu_node || self.probed.contains(&uid) {
                continue;
            }
            let leaky = self
                .fixture
                .faults_on(&node)
                .any(|f| matches!(f, Fault::LeakyDevice { .. }));
            let Some(counts) = super::probe::counts(pod, snap.claims, leaky) else {
                continue;
            };
            let ns = pod.namespace().unwrap_or_default();
            let logs = counts
                .into_iter()
                .map(|(c, n)| {
                    let file = self
                        .log_dir
                        .join(format!("{ns}_{}_{c}.log", pod.name_any()));
                    (c, file, vec![super::probe::line(n)])
                })
                .collect();
            out.push(Action::PodLogs {
                namespace: ns,
                name: pod.name_any(),
                logs,
            });
            self.probed.insert(uid);
        }
        self.probed.retain(|u| live.contains(u));
        out
    }

    /// GPUs whose SGEMM comes out wrong.
    fn wrong(&self, node: &str) -> Vec<u32> {
        self.fixture
            .faults_on(node)
            .filter_map(|f| match f {
                Fault::WrongResult { gpu, .. } => Some(*gpu),
                _ => None,
            })
            .collect()
    }

    /// `(gpu, metric)` pairs that fail with a CUDA error.
    fn errored(&self, node: &str) -> Vec<(u32, String)> {
        self.fixture
            .faults_on(node)
            .filter_map(|f| match f {
                Fault::BenchError { gpu, metric, .. } => Some((*gpu, metric.clone())),
                _ => None,
            })
            .collect()
    }

    fn crash(&self, node: &str) -> Option<i32> {
        self.fixture.faults_on(node).find_map(|f| match f {
            Fault::BenchCrash { exit_code, .. } => Some(*exit_code),
            _ => None,
        })
    }

    /// The bench's output on this node (or a crash's), as log lines: what CUDA shows the pod —
    /// the GPUs it was given, or the one MIG device.
    fn output(&self, node_name: &str, given: Option<Given<'_>>, driver: &str) -> Vec<String> {
        if let Some(code) = self.crash(node_name) {
            return vec![
                "gpuconform-bench: measuring 1 GPU".into(),
                format!("Segmentation fault (core dumped); exit code {code}"),
            ];
        }
        let (Some(perf), Some(given)) = (&self.perf, given) else {
            return vec!["error: no CUDA device visible".into()];
        };
        let model_key = given.model_key;
        let perf_key = self
            .catalog
            .gpu_models
            .get(model_key)
            .map_or(model_key, |m| m.perf_key(model_key));
        let Some(model) = perf.models.get(perf_key) else {
            return vec![format!("error: no performance model for {model_key}")];
        };
        let slow: BTreeMap<u32, f64> = self
            .fixture
            .faults_on(node_name)
            .filter_map(|f| match f {
                Fault::SlowGpu { gpu, factor, .. } => Some((*gpu, *factor)),
                _ => None,
            })
            .collect();
        let mig = given.mig.as_deref().and_then(|profile| {
            let m = self.catalog.gpu_models.get(model_key)?;
            let p = m.mig_profiles.iter().find(|p| p.name == profile)?;
            // The whole GPU's memory as MIG can hand it out: its largest profile's.
            let full = m.mig_profiles.iter().map(|p| p.memory_mib).max()?;
            Some(SimMig {
                profile: p.name.clone(),
                sms: p.multiprocessors,
                memory_mib: p.memory_mib,
                compute: f64::from(p.multiprocessors) / f64::from(model.sms.max(1)),
                bandwidth: p.memory_mib as f64 / full as f64,
            })
        });
        if given.mig.is_some() && mig.is_none() {
            return vec!["error: no CUDA device visible".into()];
        }
        let mut report = simulate(&Simulation {
            model_key,
            model,
            device_name: model.names.first().cloned().unwrap_or_default(),
            gpus: given.devices,
            node: node_name.to_string(),
            slow,
            driver_version: driver.to_string(),
            repetitions: 20,
            mig,
        });
        fill_from_catalog(&mut report, &self.catalog, model_key);
        for (d, uuid) in report.gpus.iter_mut().zip(&given.uuids) {
            if !uuid.is_empty() {
                d.device.uuid.clone_from(uuid);
            }
        }
        // A driver that slows a metric down, on every GPU it runs.
        for f in &self.fixture.faults {
            if let Fault::DriverRegression {
                driver: slow,
                metric,
                factor,
            } = f
                && slow == driver
            {
                for m in report
                    .gpus
                    .iter_mut()
                    .flat_map(|d| d.measurements.iter_mut())
                    .filter(|m| m.metric.key() == metric)
                {
                    m.samples.iter_mut().for_each(|v| *v *= factor);
                    m.summary.median *= factor;
                    m.summary.p5 *= factor;
                    m.summary.p95 *= factor;
                }
            }
        }
        report.seconds = RUN.as_secs_f64();
        for gpu in self.wrong(node_name) {
            for m in report
                .gpus
                .iter_mut()
                .filter(|d| d.device.index == gpu)
                .flat_map(|d| d.measurements.iter_mut())
                .filter(|m| m.metric == crate::bench::Metric::Sgemm)
            {
                m.verified = false;
            }
        }
        // A metric that failed with a CUDA error: gone from the document, named in its GPU's
        // errors, as the real bench reports it (then it exits 4).
        for (gpu, metric) in self.errored(node_name) {
            for d in report.gpus.iter_mut().filter(|d| d.device.index == gpu) {
                d.measurements.retain(|m| m.metric.key() != metric);
                d.errors.push(format!(
                    "{metric}: CUDA_ERROR_LAUNCH_FAILED, unspecified launch failure"
                ));
            }
        }
        let mut lines: Vec<String> = table(&report).lines().map(str::to_string).collect();
        lines.push(serde_json::to_string(&report).unwrap_or_default());
        lines
    }

    fn log_action(
        &self,
        pod: &Pod,
        node: &str,
        driver: &str,
        node_obj: Option<&Node>,
        snap: &Snapshot<'_>,
    ) -> Option<Action> {
        let pool = self.fixture.pool_of(node)?;
        let gpus = pool
            .hardware
            .spec
            .gpu
            .as_ref()
            .map(|g| (g.model.as_str(), g.count));
        // A host driver is what the node runs, whatever the chart asked for.
        let driver = pool.host_driver.as_deref().unwrap_or(driver);
        let container = pod.spec.as_ref()?.containers.first()?.name.clone();
        let file = self.log_dir.join(format!(
            "{}_{}.log",
            pod.namespace().unwrap_or_default(),
            pod.name_any()
        ));
        let given = gpus.and_then(|(model_key, count)| {
            given_by_claims(pod, model_key, snap).or_else(|| given(pod, model_key, count, node_obj))
        });
        Some(Action::PodLog {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
            container,
            file,
            lines: self.output(node, given, driver),
        })
    }

    fn exit_status(&self, pod: &Pod, node: &str) -> Value {
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let started = pod
            .status
            .as_ref()
            .and_then(|s| s.start_time.as_ref())
            .map(|t| t.0.to_string())
            .unwrap_or_else(|| now.clone());
        let has_gpu = self
            .fixture
            .pool_of(node)
            .is_some_and(|p| p.hardware.spec.gpu.is_some());
        let (phase, code, reason) = match self.crash(node) {
            Some(code) => ("Failed", code, "Error"),
            // What the real bench does without a GPU: exit::NO_CUDA.
            None if !has_gpu => ("Failed", 3, "Error"),
            // A wrong result: the document is printed, exit::VERIFICATION_FAILED.
            None if !self.wrong(node).is_empty() => ("Failed", 1, "Error"),
            // A metric failed: the rest is in the document, exit::PARTIAL.
            None if !self.errored(node).is_empty() => ("Failed", 4, "Error"),
            None => ("Succeeded", 0, "Completed"),
        };
        let statuses: Vec<Value> = pod
            .spec
            .as_ref()
            .map(|s| s.containers.as_slice())
            .unwrap_or_default()
            .iter()
            .map(|c| {
                json!({
                    "name": c.name,
                    "image": c.image.clone().unwrap_or_default(),
                    "imageID": "",
                    "ready": false,
                    "started": false,
                    "restartCount": 0,
                    "state": {"terminated": {"exitCode": code, "reason": reason, "startedAt": started, "finishedAt": now}},
                })
            })
            .collect();
        json!({
            "phase": phase,
            "conditions": [
                {"type": "Ready", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {"type": "ContainersReady", "status": "False", "reason": "PodCompleted", "lastTransitionTime": now},
                {"type": "Initialized", "status": "True", "lastTransitionTime": started},
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": started},
            ],
            "containerStatuses": statuses,
        })
    }
}

/// What a bench pod was given on its node.
#[derive(Debug, Clone)]
struct Given<'a> {
    model_key: &'a str,
    /// Devices CUDA shows.
    devices: u32,
    /// The MIG profile of the (one) device, if it is a MIG device.
    mig: Option<String>,
    /// The whole GPUs' UUIDs, in device order, where the allocation names them (DRA); empty
    /// where the device plugin hands out GPUs (the simulator makes their UUIDs up).
    uuids: Vec<String>,
}

/// The devices a bench pod's DRA claim was allocated, as the DRA driver's CDI specs hand them
/// to the container: the whole GPUs, or the MIG device (its profile read from the node's
/// ResourceSlice). `None` for a pod that references no allocated claim.
fn given_by_claims<'a>(pod: &Pod, model_key: &'a str, snap: &Snapshot<'_>) -> Option<Given<'a>> {
    let container = pod.spec.as_ref()?.containers.first()?;
    let devices = super::probe::claimed(pod, container, snap.claims)?;
    if devices.is_empty() {
        return None;
    }
    use crate::gpu_stack::dra::{attr, device_string};
    let slices = snap.slices.iter().map(|s| s.as_ref());
    let string = |pool: &str, device: &str, name: &str| {
        device_string(slices.clone(), pool, device, name).map(str::to_string)
    };
    let profile = devices.iter().find_map(|(pool, device)| {
        (string(pool, device, attr::TYPE)? == "mig")
            .then(|| string(pool, device, attr::PROFILE))
            .flatten()
    });
    Some(match profile {
        Some(p) => Given {
            model_key,
            devices: 1,
            mig: Some(p),
            uuids: Vec::new(),
        },
        // CUDA shows the GPUs under the UUIDs NVML gives them, the ones the driver published.
        None => Given {
            model_key,
            devices: u32::try_from(devices.len()).unwrap_or(u32::MAX),
            mig: None,
            uuids: devices
                .iter()
                .map(|(pool, device)| string(pool, device, attr::UUID).unwrap_or_default())
                .collect(),
        },
    })
}

/// The devices the pod's GPU request gives it, as the device plugin hands them out: a MIG
/// resource (`nvidia.com/mig-<profile>`, mixed strategy), a MIG device under the single
/// strategy (the node's GPUs are MIG devices — what its GFD product label says, the simulator's
/// own world), or whole GPUs (replicas of a shared GPU are the GPU). Inside a container CUDA
/// shows one MIG device whatever the count.
fn given<'a>(
    pod: &'a Pod,
    model_key: &'a str,
    count: u32,
    node: Option<&'a Node>,
) -> Option<Given<'a>> {
    let limits = pod
        .spec
        .as_ref()?
        .containers
        .first()?
        .resources
        .as_ref()?
        .limits
        .as_ref()?;
    let amount = |q: &k8s_openapi::apimachinery::pkg::api::resource::Quantity| {
        q.0.parse::<u32>().unwrap_or(0)
    };
    for (name, q) in limits {
        if let Some(profile) = name.strip_prefix(crate::gpu_stack::resources::MIG_PREFIX) {
            return (amount(q) > 0).then_some(Given {
                model_key,
                devices: 1,
                mig: Some(profile.to_string()),
                uuids: Vec::new(),
            });
        }
    }
    let whole = limits
        .iter()
        .filter(|(k, _)| {
            k.as_str() == crate::gpu_stack::resources::GPU
                || k.as_str() == crate::gpu_stack::resources::GPU_SHARED
        })
        .map(|(_, q)| amount(q))
        .max()?;
    if whole == 0 {
        return None;
    }
    let single = node
        .and_then(|n| n.labels().get(crate::gpu_stack::gfd::PRODUCT))
        .and_then(|p| p.split_once("-MIG-"))
        .map(|(_, profile)| profile.trim_end_matches("-SHARED"));
    Some(match single {
        Some(profile) => Given {
            model_key,
            devices: 1,
            mig: Some(profile.to_string()),
            uuids: Vec::new(),
        },
        None => Given {
            model_key,
            devices: whole.min(count),
            mig: None,
            uuids: Vec::new(),
        },
    })
}

/// The pod's first container references a claim whose allocation the simulator has not seen.
fn claims_unseen(pod: &Pod, snap: &Snapshot<'_>) -> bool {
    pod.spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .is_some_and(|c| super::probe::claimed(pod, c, snap.claims).is_none())
}

fn is_bench(p: &Pod) -> bool {
    p.labels().get(BENCH_LABEL.0).map(String::as_str) == Some(BENCH_LABEL.1)
        && on_node_name(p).is_some()
}

fn earliest(a: Option<Instant>, b: Instant) -> Option<Instant> {
    Some(a.map_or(b, |a| a.min(b)))
}
