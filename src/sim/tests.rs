//! Table tests of one reconcile pass ([`World::reconcile`]), without a cluster: each row is a
//! scene (fixture, ClusterPolicy or not, which pods are Ready on the GPU node, how long they
//! have been) and what the stack would do next. Where a value is checked it is checked against
//! a real node as published (`fixtures/nodes/`), not against the catalog the simulator reads.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::DynamicObject;

use super::world::{Action, Delays, Snapshot, World};
use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::fixture::real_nodes;

const GPU_NODE: &str = "gpu-worker-1";
const NFD_WORKER: &str = "nfd-worker";

fn world(fixture: &str) -> World {
    let catalog = Catalog::embedded().expect("catalog");
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(fixture);
    let fixture = ClusterFixture::load(&path, &catalog).expect("fixture");
    World::new(fixture, catalog, Delays::default())
}

/// A kwok node of the p3.2xlarge pool, as the local cluster registers it: no GPU labels yet.
fn p3_node(labels: &[(&str, &str)]) -> Arc<Node> {
    let mut l: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    l.insert(
        "node.kubernetes.io/instance-type".into(),
        "p3.2xlarge".into(),
    );
    let node = serde_json::json!({
        "metadata": {
            "name": GPU_NODE,
            "labels": l,
            "annotations": {"kwok.x-k8s.io/node": "fake"},
        },
        "status": {"nodeInfo": {
            "osImage": "Ubuntu 22.04.5 LTS", "kernelVersion": "6.8.0-1021-aws",
            "architecture": "amd64", "bootID": "", "containerRuntimeVersion": "",
            "kubeProxyVersion": "", "kubeletVersion": "", "machineID": "",
            "operatingSystem": "linux", "systemUUID": ""
        }}
    });
    Arc::new(serde_json::from_value(node).expect("node"))
}

/// A Running, Ready pod on the GPU node: an operand (`app=<name>`) or the NFD worker.
fn ready_pod(app: &str) -> Arc<Pod> {
    let labels = if app == NFD_WORKER {
        serde_json::json!({"app.kubernetes.io/name": "node-feature-discovery", "role": "worker"})
    } else {
        serde_json::json!({"app": app})
    };
    let pod = serde_json::json!({
        "metadata": {"name": format!("{app}-x"), "namespace": "gpu-operator", "uid": format!("uid-{app}"), "labels": labels},
        "spec": {"nodeName": GPU_NODE, "containers": [{"name": app, "image": "img"}]},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]}
    });
    Arc::new(serde_json::from_value(pod).expect("pod"))
}

fn policy() -> DynamicObject {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
        "metadata": {"name": "cluster-policy", "generation": 1},
        "spec": {"driver": {"version": "535.129.03"}, "mig": {"strategy": "single"}}
    }))
    .expect("policy")
}

/// One scene.
struct Scene {
    fixture: &'static str,
    policy: bool,
    node_labels: &'static [(&'static str, &'static str)],
    ready: &'static [&'static str],
    /// Time between the first pass (which starts the stage timers) and the judged one.
    after: Duration,
}

/// The actions of the second pass, `after` the first.
fn run(s: &Scene) -> (Vec<Action>, Option<Instant>) {
    let mut w = world(s.fixture);
    let nodes = vec![p3_node(s.node_labels)];
    let pods: Vec<Arc<Pod>> = s.ready.iter().map(|a| ready_pod(a)).collect();
    let p = policy();
    let snap = Snapshot {
        nodes: &nodes,
        pods: &pods,
        daemonsets: &[],
        config_maps: &[],
        policy: s.policy.then_some(&p),
        slices: &[],
        claims: &[],
        by_node: Default::default(),
    };
    let t0 = Instant::now();
    let _ = w.reconcile(&snap, t0);
    w.reconcile(&snap, t0 + s.after)
}

fn labels_set(actions: &[Action]) -> BTreeMap<String, Option<String>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Labels { node, changes } if node == GPU_NODE => Some(changes.clone()),
            _ => None,
        })
        .flatten()
        .collect()
}

fn resources(actions: &[Action]) -> Option<BTreeMap<String, (u64, u64)>> {
    actions.iter().find_map(|a| match a {
        Action::Resources { node, values } if node == GPU_NODE => Some(values.clone()),
        _ => None,
    })
}

const SEED: &str = "fixtures/clusters/seed.yaml";
const LONG: Duration = Duration::from_secs(5);
const SHORT: Duration = Duration::from_millis(100);
/// What NFD and the operator have written once they ran (what the next stages start from).
const DISCOVERED: &[(&str, &str)] = &[
    ("feature.node.kubernetes.io/pci-10de.present", "true"),
    ("nvidia.com/gpu.present", "true"),
];

#[test]
fn stage_table() {
    // What a real p3.2xlarge advertises, not what the catalog the simulator reads says.
    let p3_gpus: u64 = real_nodes::load(real_nodes::P3)
        .labels
        .get("nvidia.com/gpu.count")
        .and_then(|c| c.parse().ok())
        .expect("the real p3 node's gpu.count");
    // (scene, labels that must be set, labels that must not be set, GPUs advertised)
    type Row = (
        &'static str,
        Scene,
        &'static [&'static str],
        &'static [&'static str],
        Option<u64>,
    );
    let rows: Vec<Row> = vec![
        (
            "no ClusterPolicy: the GPU node stays bare",
            Scene {
                fixture: SEED,
                policy: false,
                node_labels: &[],
                ready: &[
                    NFD_WORKER,
                    "gpu-feature-discovery",
                    "nvidia-device-plugin-daemonset",
                ],
                after: LONG,
            },
            &[],
            &[
                "feature.node.kubernetes.io/pci-10de.present",
                "nvidia.com/gpu.product",
            ],
            None,
        ),
        (
            "NFD worker Ready, not yet for its delay: nothing yet",
            Scene {
                fixture: SEED,
                policy: true,
                node_labels: &[],
                ready: &[NFD_WORKER],
                after: SHORT,
            },
            &[],
            &["feature.node.kubernetes.io/pci-10de.present"],
            None,
        ),
        (
            "NFD worker Ready long enough: PCI, kernel and OS labels",
            Scene {
                fixture: SEED,
                policy: true,
                node_labels: &[],
                ready: &[NFD_WORKER],
                after: LONG,
            },
            &[
                "feature.node.kubernetes.io/pci-10de.present",
                "feature.node.kubernetes.io/kernel-version.full",
                "feature.node.kubernetes.io/system-os_release.ID",
            ],
            &["nvidia.com/gpu.product"],
            None,
        ),
        (
            "NFD's PCI label: the operator labels the node for its operands",
            Scene {
                fixture: SEED,
                policy: true,
                node_labels: &[("feature.node.kubernetes.io/pci-10de.present", "true")],
                ready: &[],
                after: LONG,
            },
            &[
                "nvidia.com/gpu.present",
                "nvidia.com/gpu.deploy.gpu-feature-discovery",
                "nvidia.com/gpu.deploy.device-plugin",
            ],
            &["nvidia.com/gpu.product"],
            None,
        ),
        (
            "GFD not running: no GFD labels, no resources",
            Scene {
                fixture: SEED,
                policy: true,
                node_labels: DISCOVERED,
                ready: &[],
                after: LONG,
            },
            &[],
            &["nvidia.com/gpu.product", "nvidia.com/gpu.count"],
            None,
        ),
        (
            "GFD Ready: GPU labels; the device plugin is not running, so no resources",
            Scene {
                fixture: SEED,
                policy: true,
                node_labels: DISCOVERED,
                ready: &["gpu-feature-discovery"],
                after: LONG,
            },
            &[
                "nvidia.com/gpu.product",
                "nvidia.com/gpu.count",
                "nvidia.com/gpu.memory",
                "nvidia.com/cuda.driver-version.full",
            ],
            &[],
            None,
        ),
        (
            "device plugin Ready: the p3's V100 advertised",
            Scene {
                fixture: SEED,
                policy: true,
                node_labels: DISCOVERED,
                ready: &["nvidia-device-plugin-daemonset"],
                after: LONG,
            },
            &[],
            &["nvidia.com/gpu.product"],
            Some(p3_gpus),
        ),
        (
            "GFD drops a label (missingLabel fault): never published",
            Scene {
                fixture: "fixtures/clusters/faults/missing-label.yaml",
                policy: true,
                node_labels: DISCOVERED,
                ready: &["gpu-feature-discovery"],
                after: LONG,
            },
            &["nvidia.com/gpu.count"],
            &["nvidia.com/gpu.product"],
            None,
        ),
    ];
    for (what, scene, set, unset, gpus) in rows {
        let (actions, _) = run(&scene);
        let l = labels_set(&actions);
        for k in set {
            assert!(
                l.get(*k).is_some_and(Option::is_some),
                "{what}: {k} not set; labels: {l:?}"
            );
        }
        for k in unset {
            assert!(
                !l.get(*k).is_some_and(Option::is_some),
                "{what}: {k} set; labels: {l:?}"
            );
        }
        let advertised = resources(&actions).and_then(|r| r.get("nvidia.com/gpu").copied());
        assert_eq!(advertised.map(|(cap, _)| cap), gpus, "{what}: {actions:?}");
        if let Some(n) = gpus {
            assert_eq!(advertised, Some((n, n)), "{what}: allocatable = capacity");
        }
    }
}

#[test]
fn a_timer_is_asked_for_while_a_stage_waits() {
    let scene = Scene {
        fixture: SEED,
        policy: true,
        node_labels: &[],
        ready: &[NFD_WORKER],
        after: SHORT,
    };
    let (_, wake) = run(&scene);
    assert!(
        wake.is_some(),
        "the NFD stage is due later: the pass must ask to be woken"
    );
}

#[test]
fn a_crash_looping_operand_restarts_with_backoff() {
    let scene = Scene {
        fixture: "fixtures/clusters/faults/crash-loop.yaml",
        policy: true,
        node_labels: DISCOVERED,
        ready: &["nvidia-dcgm-exporter"],
        after: LONG,
    };
    let (actions, wake) = run(&scene);
    let status = actions
        .iter()
        .find_map(|a| match a {
            Action::PodStatus { name, status, .. } if name == "nvidia-dcgm-exporter-x" => {
                Some(status.clone())
            }
            _ => None,
        })
        .expect("a pod status for the crash-looping exporter");
    let text = status.to_string();
    assert!(text.contains("CrashLoopBackOff"), "{text}");
    assert!(wake.is_some(), "the next crash is scheduled");
}

/// The simulator's GFD labels for a p3.2xlarge agree with a real p3.2xlarge's (published with
/// GPU Operator 23.9.1, driver 535.129.03) on every label both have, except those that depend
/// on the run (timestamps, driver upgrade bookkeeping, which operands are deployed).
#[test]
fn simulated_p3_labels_agree_with_a_real_p3() {
    let real = real_nodes::load(real_nodes::P3);
    let scene = Scene {
        fixture: SEED,
        policy: true,
        node_labels: DISCOVERED,
        ready: &[NFD_WORKER, "gpu-feature-discovery"],
        after: LONG,
    };
    let (actions, _) = run(&scene);
    let sim = labels_set(&actions);
    let mut compared = 0;
    for (k, v) in &real.labels {
        let run_specific = k.starts_with("nvidia.com/gpu.deploy.")
            || k.starts_with("nvidia.com/gpu-driver-upgrade")
            || k == "nvidia.com/gfd.timestamp"
            // NFD lists every PCI vendor of the machine; the simulator only NVIDIA's.
            || (k.starts_with("feature.node.kubernetes.io/pci-") && !k.contains("10de"));
        if run_specific {
            continue;
        }
        if let Some(Some(s)) = sim.get(k) {
            assert_eq!(s, v, "{k}");
            compared += 1;
        }
    }
    assert!(compared >= 8, "only {compared} labels in common: {sim:?}");
}

/// A node image with the driver on the host, as NVIDIA's components treat it: GFD reports the
/// loaded (host) driver whatever the chart's `driver.version`; with the operator's driver
/// enabled, its driver manager finds the host driver and labels the node `pre-installed`
/// (k8s-driver-manager `chroot /host nvidia-smi`); with `driver.enabled=false` the label stays
/// `true`; and with no driver anywhere GFD and the device plugin publish nothing.
#[test]
fn host_drivers_as_the_driver_manager_and_gfd_see_them() {
    let seed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED))
        .expect("seed fixture");
    let host = seed.replace(
        "    instanceType: p3.2xlarge\n",
        "    instanceType: p3.2xlarge\n    hostDriver: \"550.54.15\"\n",
    );
    assert_ne!(host, seed, "the seed fixture's GPU pool");
    // (fixture, driver.enabled, driver label, gpu.deploy.driver, GPUs advertised)
    let rows = [
        (
            &host,
            true,
            Some("550.54.15"),
            Some("pre-installed"),
            Some(1),
        ),
        (&host, false, Some("550.54.15"), None, Some(1)),
        (&seed, true, Some("535.129.03"), None, Some(1)),
        (&seed, false, None, None, None),
    ];
    let dir = tempfile::tempdir().expect("tmp");
    for (i, (fixture, enabled, driver, deploy, gpus)) in rows.into_iter().enumerate() {
        let path = dir.path().join(format!("f{i}.yaml"));
        std::fs::write(&path, fixture).expect("write");
        let catalog = Catalog::embedded().expect("catalog");
        let fixture = ClusterFixture::load(&path, &catalog).expect("fixture");
        let mut w = World::new(fixture, catalog, Delays::default());
        let nodes = vec![p3_node(DISCOVERED)];
        let pods: Vec<Arc<Pod>> = [
            NFD_WORKER,
            "nvidia-driver-daemonset",
            "gpu-feature-discovery",
            "nvidia-device-plugin-daemonset",
        ]
        .iter()
        .map(|a| ready_pod(a))
        .collect();
        let p: DynamicObject = serde_json::from_value(serde_json::json!({
            "apiVersion": "nvidia.com/v1", "kind": "ClusterPolicy",
            "metadata": {"name": "cluster-policy", "generation": 1},
            "spec": {"driver": {"enabled": enabled, "version": "535.129.03"}, "mig": {"strategy": "single"}}
        }))
        .expect("policy");
        let snap = Snapshot {
            nodes: &nodes,
            pods: &pods,
            daemonsets: &[],
            config_maps: &[],
            policy: Some(&p),
            slices: &[],
            claims: &[],
            by_node: Default::default(),
        };
        let t0 = Instant::now();
        let _ = w.reconcile(&snap, t0);
        let (actions, _) = w.reconcile(&snap, t0 + LONG);
        let l = labels_set(&actions);
        let get = |k: &str| l.get(k).cloned().flatten();
        assert_eq!(
            get("nvidia.com/cuda.driver-version.full").as_deref(),
            driver,
            "row {i}"
        );
        let want_deploy = deploy.or(Some("true"));
        assert_eq!(
            get("nvidia.com/gpu.deploy.driver").as_deref(),
            want_deploy,
            "row {i}"
        );
        let advertised = resources(&actions).and_then(|r| r.get("nvidia.com/gpu").map(|v| v.0));
        assert_eq!(advertised, gpus, "row {i}");
    }
}

/// A kubelet whose device plugin went away: allocatable 0 at once, capacity kept for the
/// fixture's grace period (a real kubelet's `endpointStopGracePeriod` is 5 min), then 0; with
/// the `capacityKept` fault, kept for good.
#[test]
fn capacity_outlives_the_device_plugin_for_the_grace_period() {
    let seed = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(SEED))
        .expect("seed fixture");
    let dir = tempfile::tempdir().expect("tmp");
    let with = |extra: &str| {
        let path = dir.path().join(format!("f{}.yaml", extra.len()));
        std::fs::write(&path, format!("{seed}deviceCapacityGrace: 2s\n{extra}")).expect("write");
        let catalog = Catalog::embedded().expect("catalog");
        World::new(
            ClusterFixture::load(&path, &catalog).expect("fixture"),
            catalog,
            Delays::default(),
        )
    };
    let served: Arc<Node> = {
        let mut n = (*p3_node(DISCOVERED)).clone();
        let q = |v: &str| k8s_openapi::apimachinery::pkg::api::resource::Quantity(v.into());
        let status = n.status.get_or_insert_with(Default::default);
        status.capacity = Some([("nvidia.com/gpu".to_string(), q("1"))].into());
        status.allocatable = Some([("nvidia.com/gpu".to_string(), q("1"))].into());
        Arc::new(n)
    };
    let faults = "faults:\n  - kind: capacityKept\n    node: gpu-worker-1\n";
    // (world, seconds after the plugin went, capacity, allocatable)
    let rows = [
        ("", 0, 1, 0),
        ("", 3, 0, 0),
        (faults, 3, 1, 0),
        (faults, 600, 1, 0),
    ];
    for (extra, after, cap, alloc) in rows {
        let mut w = with(extra);
        let nodes = vec![Arc::clone(&served)];
        let p = policy();
        let snap = Snapshot {
            nodes: &nodes,
            pods: &[],
            daemonsets: &[],
            config_maps: &[],
            policy: Some(&p),
            slices: &[],
            claims: &[],
            by_node: Default::default(),
        };
        let t0 = Instant::now();
        let (first, _) = w.reconcile(&snap, t0);
        let (later, _) = w.reconcile(&snap, t0 + Duration::from_secs(after));
        let seen = if after == 0 { &first } else { &later };
        assert_eq!(
            resources(seen).and_then(|r| r.get("nvidia.com/gpu").copied()),
            Some((cap, alloc)),
            "{extra:?} after {after}s"
        );
    }
}
