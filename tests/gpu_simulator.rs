//! Tier 2: the GPU simulator on the real control plane, driven by the real helm and kubectl with
//! the fixture GPU Operator chart. Everything is observed through the ordinary API, as a user
//! (or the harness) would see it on a real cluster.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use common::*;
use futures::StreamExt;
use gpuconform::k8s::wait;
use k8s_openapi::api::core::v1::{Event, Node, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::PostParams;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};

const LIMIT: Duration = Duration::from_secs(90);

/// A local cluster for one test, stopped when dropped.
struct Cluster {
    // Fields drop in order: the cluster is stopped before its folder is deleted (the other way
    // round, `local down` finds no state and the processes outlive the test).
    _down: DownOnDrop,
    dir: PathBuf,
    kubeconfig: PathBuf,
    client: Client,
    _tmp: tempfile::TempDir,
}

impl Cluster {
    async fn up(fixture: &str) -> Self {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("run");
        let down = DownOnDrop(dir.clone());
        let out = gpuconform(&[
            "local",
            "up",
            "--fixture",
            fixture,
            "--dir",
            &dir.to_string_lossy(),
        ]);
        assert!(out.status.success(), "up {fixture}:\n{}", text(&out));
        let kubeconfig = dir.join("kubeconfig");
        let client = gpuconform::k8s::client_from_kubeconfig(&kubeconfig)
            .await
            .expect("client");
        Self {
            _tmp: tmp,
            dir,
            kubeconfig,
            client,
            _down: down,
        }
    }

    fn helm(&self, args: &[&str]) -> Output {
        Command::new(tool("helm"))
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .expect("run helm")
    }

    /// `helm upgrade --install --wait` of the fixture chart into `gpu-operator`.
    fn install(&self, extra: &[&str]) {
        let mut args = vec!["--wait"];
        args.extend_from_slice(extra);
        self.install_no_wait(&args);
    }

    /// The same without `--wait` (which never returns while an operand crash-loops).
    fn install_no_wait(&self, extra: &[&str]) {
        let chart = root().join("fixtures/charts/gpu-operator");
        let mut args = vec![
            "upgrade",
            "--install",
            "gpu-operator",
            chart.to_str().expect("utf-8 path"),
            "-n",
            "gpu-operator",
            "--create-namespace",
            "--timeout",
            "90s",
        ];
        args.extend_from_slice(extra);
        let out = self.helm(&args);
        assert!(out.status.success(), "helm install:\n{}", text(&out));
    }

    fn uninstall(&self) {
        let out = self.helm(&[
            "uninstall",
            "gpu-operator",
            "-n",
            "gpu-operator",
            "--wait",
            "--timeout",
            "90s",
        ]);
        assert!(out.status.success(), "helm uninstall:\n{}", text(&out));
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        kubectl(&self.kubeconfig, args)
    }

    /// Waits (a watch, with a deadline) until the ClusterPolicy's state is `state`.
    fn policy_state(&self, state: &str) {
        let out = self.kubectl(&[
            "wait",
            "clusterpolicy/cluster-policy",
            &format!("--for=jsonpath={{.status.state}}={state}"),
            "--timeout=90s",
        ]);
        assert!(
            out.status.success(),
            "clusterpolicy never {state}:\n{}\n{}",
            text(&out),
            self.sim_log()
        );
    }

    /// Waits until the node satisfies `cond`; the failure names what was expected.
    async fn node(&self, name: &str, what: &str, cond: impl Fn(&Node) -> bool) -> Node {
        let api: Api<Node> = Api::all(self.client.clone());
        let got = wait::object(api.clone(), name, what, LIMIT, move |n: Option<&Node>| {
            n.is_some_and(&cond)
        })
        .await;
        match got {
            Ok(n) => n,
            Err(e) => {
                let now = api.get(name).await.ok();
                panic!(
                    "{name}: {e}\nlabels: {:#?}\nresources: {:?}\n{}",
                    now.as_ref().map(labels),
                    now.as_ref().map(resources),
                    self.sim_log()
                )
            }
        }
    }

    async fn pod(&self, ns: &str, name: &str, what: &str, cond: impl Fn(&Pod) -> bool) -> Pod {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        wait::object(api, name, what, LIMIT, move |p: Option<&Pod>| {
            p.is_some_and(&cond)
        })
        .await
        .unwrap_or_else(|e| panic!("{ns}/{name}: {e}\n{}", self.sim_log()))
    }

    /// Waits for a pod matching `selector` on `node`; its name.
    async fn pod_on(&self, ns: &str, selector: &str, node: &str) -> String {
        let api: Api<Pod> = Api::namespaced(self.client.clone(), ns);
        let cfg = watcher::Config::default().labels(selector);
        let stream = watcher(api, cfg).default_backoff().applied_objects();
        let mut stream = std::pin::pin!(stream);
        let found = tokio::time::timeout(LIMIT, async {
            while let Some(p) = stream.next().await {
                if let Ok(p) = p
                    && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node)
                {
                    return p.metadata.name;
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(name)) => name,
            _ => panic!("no pod `{selector}` on {node} in {ns}"),
        }
    }

    /// Waits for an event about `object` whose message contains `needle`.
    async fn event(&self, ns: &str, object: &str, needle: &str) -> Event {
        let api: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let cfg = watcher::Config::default().fields(&format!("involvedObject.name={object}"));
        let stream = watcher(api, cfg).default_backoff().applied_objects();
        let mut stream = std::pin::pin!(stream);
        let found = tokio::time::timeout(LIMIT, async {
            while let Some(e) = stream.next().await {
                if let Ok(e) = e
                    && e.message.as_deref().is_some_and(|m| m.contains(needle))
                {
                    return Some(e);
                }
            }
            None
        })
        .await;
        match found {
            Ok(Some(e)) => e,
            _ => panic!("no event on {ns}/{object} mentioning `{needle}`"),
        }
    }

    async fn crd_exists(&self, name: &str) -> bool {
        let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        api.get_opt(name).await.expect("get crd").is_some()
    }

    fn sim_log(&self) -> String {
        let log =
            std::fs::read_to_string(self.dir.join("logs/gpu-simulator.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(30).collect();
        format!(
            "--- gpu-simulator.log (last lines)\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }
}

fn labels(n: &Node) -> BTreeMap<String, String> {
    n.metadata.labels.clone().unwrap_or_default()
}

fn label<'a>(n: &'a Node, key: &str) -> Option<&'a str> {
    n.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(key))
        .map(String::as_str)
}

/// `nvidia.com/*` resources: name → (capacity, allocatable).
fn resources(n: &Node) -> BTreeMap<String, (String, String)> {
    let mut out = BTreeMap::new();
    let Some(s) = &n.status else { return out };
    for (k, v) in s.capacity.iter().flatten() {
        if k.starts_with("nvidia.com/") {
            out.insert(k.clone(), (v.0.clone(), String::new()));
        }
    }
    for (k, v) in s.allocatable.iter().flatten() {
        if k.starts_with("nvidia.com/") {
            out.entry(k.clone()).or_default().1 = v.0.clone();
        }
    }
    out
}

fn has_resource(n: &Node, name: &str, capacity: &str, allocatable: &str) -> bool {
    resources(n).get(name) == Some(&(capacity.to_string(), allocatable.to_string()))
}

fn gpu_pod(name: &str, resource: &str, count: u32) -> Pod {
    serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{
                "name": "cuda",
                "image": "nvcr.io/nvidia/k8s/cuda-sample:vectoradd-cuda12.5.0-ubuntu22.04",
                "resources": {"limits": {resource: count.to_string()}},
            }],
        },
    }))
    .expect("pod json")
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write values");
    p
}

/// The seed's V100 node from bare to labelled and schedulable and back: labels and resources
/// after install, the real scheduler placing a 1-GPU pod and refusing a 2-GPU one, uninstall
/// leaving the operator's labels but no GPUs, then time-slicing and CRD cleanup on a reinstall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_install_schedule_uninstall() {
    let c = Cluster::up("fixtures/clusters/seed.yaml").await;
    let nodes: Api<Node> = Api::all(c.client.clone());
    let bare = nodes.get("gpu-worker-1").await.expect("node");
    assert!(
        labels(&bare).keys().all(|k| !k.starts_with("nvidia.com/")),
        "GPU labels before any ClusterPolicy: {:?}",
        labels(&bare)
    );
    assert!(resources(&bare).is_empty());

    c.install(&["--set", "driver.version=580.95.05"]);
    c.policy_state("ready");
    let gpu = c
        .node("gpu-worker-1", "GFD labels and 1 GPU", |n| {
            label(n, "nvidia.com/gpu.product").is_some()
                && has_resource(n, "nvidia.com/gpu", "1", "1")
        })
        .await;
    for (k, v) in [
        ("feature.node.kubernetes.io/pci-10de.present", "true"),
        (
            "feature.node.kubernetes.io/kernel-version.full",
            "6.8.0-1021-aws",
        ),
        ("feature.node.kubernetes.io/system-os_release.ID", "ubuntu"),
        ("nvidia.com/gpu.present", "true"),
        ("nvidia.com/gpu.deploy.device-plugin", "true"),
        ("nvidia.com/gpu.product", "Tesla-V100-SXM2-16GB"),
        ("nvidia.com/gpu.count", "1"),
        ("nvidia.com/gpu.memory", "16384"),
        ("nvidia.com/gpu.family", "volta"),
        ("nvidia.com/gpu.compute.major", "7"),
        ("nvidia.com/gpu.compute.minor", "0"),
        ("nvidia.com/gpu.machine", "HVM-domU"),
        ("nvidia.com/cuda.driver.major", "580"),
        ("nvidia.com/cuda.driver-version.full", "580.95.05"),
        ("nvidia.com/mig.capable", "false"),
    ] {
        assert_eq!(label(&gpu, k), Some(v), "gpu-worker-1: {k}");
    }
    assert!(label(&gpu, "nvidia.com/gfd.timestamp").is_some());
    let cpu = nodes.get("cpu-worker-1").await.expect("cpu node");
    assert!(label(&cpu, "feature.node.kubernetes.io/kernel-version.full").is_some());
    assert_eq!(label(&cpu, "nvidia.com/gpu.present"), None);
    assert!(resources(&cpu).is_empty());

    // The real scheduler: one GPU fits on the V100 node, two fit nowhere.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    let pp = PostParams::default();
    pods.create(&pp, &gpu_pod("one-gpu", "nvidia.com/gpu", 1))
        .await
        .expect("create one-gpu");
    pods.create(&pp, &gpu_pod("two-gpus", "nvidia.com/gpu", 2))
        .await
        .expect("create two-gpus");
    let one = c
        .pod("default", "one-gpu", "Running", |p| {
            p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .await;
    assert_eq!(
        one.spec.and_then(|s| s.node_name).as_deref(),
        Some("gpu-worker-1")
    );
    c.event("default", "two-gpus", "Insufficient nvidia.com/gpu")
        .await;
    let two = pods.get("two-gpus").await.expect("two-gpus");
    assert_eq!(two.status.and_then(|s| s.phase).as_deref(), Some("Pending"));
    let out = c.kubectl(&["delete", "pod", "one-gpu", "two-gpus", "--wait=false"]);
    assert!(out.status.success(), "{}", text(&out));

    // Uninstall: no GPUs any more; NFD's prune removed its and GFD's labels; the operator's
    // labels stay (gpu-operator#1391); the CRD stays without cleanupCRD.
    c.uninstall();
    let after = c
        .node("gpu-worker-1", "GPU resources gone", |n| {
            has_resource(n, "nvidia.com/gpu", "0", "0")
                && label(n, "nvidia.com/gpu.product").is_none()
        })
        .await;
    assert_eq!(label(&after, "nvidia.com/gpu.present"), Some("true"));
    assert_eq!(
        label(&after, "feature.node.kubernetes.io/pci-10de.present"),
        None
    );
    assert!(c.crd_exists("clusterpolicies.nvidia.com").await);

    // Reinstall with time-slicing (4 replicas) and CRD cleanup.
    let values = write(
        &c.dir,
        "ts.yaml",
        "operator:\n  cleanupCRD: true\ndevicePlugin:\n  config:\n    name: time-slicing-config\n    default: ts\n    create: true\n    data:\n      ts: |\n        version: v1\n        sharing:\n          timeSlicing:\n            resources:\n              - name: nvidia.com/gpu\n                replicas: 4\n",
    );
    c.install(&["-f", values.to_str().expect("utf-8")]);
    c.policy_state("ready");
    let shared = c
        .node("gpu-worker-1", "4 time-sliced replicas", |n| {
            has_resource(n, "nvidia.com/gpu", "4", "4")
                && label(n, "nvidia.com/gpu.replicas") == Some("4")
        })
        .await;
    assert_eq!(
        label(&shared, "nvidia.com/gpu.product"),
        Some("Tesla-V100-SXM2-16GB-SHARED")
    );
    assert_eq!(
        label(&shared, "nvidia.com/gpu.sharing-strategy"),
        Some("time-slicing")
    );
    c.uninstall();
    let api: Api<CustomResourceDefinition> = Api::all(c.client.clone());
    wait::deleted(
        api,
        "clusterpolicies.nvidia.com",
        None,
        "the cleanup-crd hook to delete the CRD",
        LIMIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", c.sim_log()));
}

/// p4d: eight A100s; under the mixed MIG strategy, relabelling the node `all-balanced` makes
/// mig-manager apply the layout and the device plugin publish the profile resources.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p4d_eight_gpus_then_mig_mixed() {
    let c = Cluster::up("fixtures/clusters/p4d.yaml").await;
    c.install(&["--set", "mig.strategy=mixed"]);
    c.policy_state("ready");
    let n = c
        .node("gpu-worker-1", "8 GPUs", |n| {
            has_resource(n, "nvidia.com/gpu", "8", "8")
        })
        .await;
    assert_eq!(label(&n, "nvidia.com/gpu.count"), Some("8"));
    assert_eq!(
        label(&n, "nvidia.com/gpu.product"),
        Some("NVIDIA-A100-SXM4-40GB")
    );
    assert_eq!(label(&n, "nvidia.com/gpu.machine"), Some("p4d.24xlarge"));
    assert_eq!(label(&n, "nvidia.com/mig.capable"), Some("true"));
    assert_eq!(label(&n, "nvidia.com/mig.strategy"), Some("mixed"));
    assert_eq!(label(&n, "nvidia.com/mig.config"), Some("all-disabled"));
    assert_eq!(label(&n, "nvidia.com/gpu.deploy.mig-manager"), Some("true"));

    let out = c.kubectl(&[
        "label",
        "node",
        "gpu-worker-1",
        "nvidia.com/mig.config=all-balanced",
        "--overwrite",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let mig = c
        .node("gpu-worker-1", "MIG all-balanced applied", |n| {
            label(n, "nvidia.com/mig.config.state") == Some("success")
                && has_resource(n, "nvidia.com/mig-1g.5gb", "16", "16")
        })
        .await;
    let r = resources(&mig);
    assert_eq!(r["nvidia.com/mig-2g.10gb"], ("8".into(), "8".into()));
    assert_eq!(r["nvidia.com/mig-3g.20gb"], ("8".into(), "8".into()));
    assert_eq!(r["nvidia.com/gpu"], ("0".into(), "0".into()));
    assert_eq!(label(&mig, "nvidia.com/mig-1g.5gb.count"), Some("16"));
    assert_eq!(label(&mig, "nvidia.com/mig-1g.5gb.memory"), Some("4864"));

    // A MIG slice is schedulable by its resource name.
    let pods: Api<Pod> = Api::namespaced(c.client.clone(), "default");
    pods.create(
        &PostParams::default(),
        &gpu_pod("slice", "nvidia.com/mig-1g.5gb", 1),
    )
    .await
    .expect("create");
    let p = c
        .pod("default", "slice", "scheduled", |p| {
            p.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .is_some()
        })
        .await;
    assert_eq!(
        p.spec.and_then(|s| s.node_name).as_deref(),
        Some("gpu-worker-1")
    );

    // An unknown layout fails the way mig-manager reports it.
    let out = c.kubectl(&[
        "label",
        "node",
        "gpu-worker-1",
        "nvidia.com/mig.config=all-9g.99gb",
        "--overwrite",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    c.node("gpu-worker-1", "mig.config.state failed", |n| {
        label(n, "nvidia.com/mig.config.state") == Some("failed")
    })
    .await;
    c.event("default", "gpu-worker-1", "all-9g.99gb").await;
}

/// Every fault of the simulator on one cluster, one per node, each seen through the API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_are_visible_through_the_api() {
    let c = Cluster::up("tests/data/sim-faults.yaml").await;
    c.install_no_wait(&[]);
    // Stuck notReady with the fault's reason, whatever the operands do.
    c.policy_state("notReady");
    let out = c.kubectl(&[
        "get",
        "clusterpolicy",
        "cluster-policy",
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Ready\")].reason}",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "DriverNotReady",
        "{}",
        text(&out)
    );

    // gpu-1: GFD ran (count is there) but the product label never appears.
    let n1 = c
        .node("gpu-1", "GFD labels", |n| {
            label(n, "nvidia.com/gpu.count").is_some()
        })
        .await;
    assert_eq!(label(&n1, "nvidia.com/gpu.product"), None);
    // gpu-2: a wrong count next to a right product.
    let n2 = c
        .node("gpu-2", "GFD labels", |n| {
            label(n, "nvidia.com/gpu.product").is_some()
        })
        .await;
    assert_eq!(label(&n2, "nvidia.com/gpu.count"), Some("0"));
    // gpu-3: the GPU is there but unhealthy.
    c.node("gpu-3", "capacity 1, allocatable 0", |n| {
        has_resource(n, "nvidia.com/gpu", "1", "0")
    })
    .await;
    // gpu-4: the DCGM exporter restarts again and again.
    let name = c
        .pod_on("gpu-operator", "app=nvidia-dcgm-exporter", "gpu-4")
        .await;
    let crashing = c
        .pod("gpu-operator", &name, "restartCount >= 2", |p| {
            p.status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|c| c.first())
                .is_some_and(|c| c.restart_count >= 2)
        })
        .await;
    let cs = crashing
        .status
        .and_then(|s| s.container_statuses)
        .and_then(|c| c.into_iter().next())
        .expect("container status");
    assert_eq!(
        cs.state
            .and_then(|s| s.waiting)
            .and_then(|w| w.reason)
            .as_deref(),
        Some("CrashLoopBackOff")
    );
    c.event(
        "gpu-operator",
        &name,
        "Back-off restarting failed container",
    )
    .await;
    // gpu-5: the kubelet stopped.
    c.node("gpu-5", "Ready Unknown", |n| {
        n.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Ready" && c.status == "Unknown")
            })
    })
    .await;

    // Uninstall: GPUs gone, but the prune never ran, so every GPU label stays.
    c.uninstall();
    let left = c
        .node("gpu-2", "GPU resources gone", |n| {
            has_resource(n, "nvidia.com/gpu", "0", "0")
        })
        .await;
    assert_eq!(
        label(&left, "nvidia.com/gpu.product"),
        Some("Tesla-V100-SXM2-16GB")
    );
    assert_eq!(
        label(&left, "feature.node.kubernetes.io/pci-10de.present"),
        Some("true")
    );
}
