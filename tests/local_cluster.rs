//! Tier 2: the local cluster against the real control plane (etcd, kube-apiserver,
//! kube-controller-manager, kube-scheduler) and kwok, through the real binary, kubectl and the API.
//! Needs the tool cache (`scripts/install-tools`); no mocks.

mod common;

use std::time::Duration;

use common::*;
use gpuconform::target::local::state::ClusterDir;
use k8s_openapi::api::core::v1::Node;
use kube::Api;

fn read_state(dir: &std::path::Path) -> gpuconform::target::local::state::ClusterState {
    ClusterDir::new(dir)
        .read_state()
        .expect("read state.json")
        .expect("state.json exists after up")
}

/// `up` with the seed fixture → every node Ready with catalog labels and capacity; a Deployment
/// is scheduled by the real scheduler and runs on kwok nodes; `kubectl logs` works; a namespace
/// deletion completes; `down` leaves no process and no port.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_cluster_end_to_end() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("run");
    let dir_s = dir.to_string_lossy().to_string();
    let _guard = DownOnDrop(dir.clone());

    let up = gpuconform(&[
        "local",
        "up",
        "--fixture",
        "fixtures/clusters/seed.yaml",
        "--dir",
        &dir_s,
    ]);
    assert!(up.status.success(), "up failed:\n{}", text(&up));
    let stdout = String::from_utf8_lossy(&up.stdout);
    assert!(stdout.contains("export KUBECONFIG="), "{}", text(&up));
    assert!(
        String::from_utf8_lossy(&up.stderr).contains("ready in"),
        "{}",
        text(&up)
    );

    let state = read_state(&dir);
    assert_eq!(
        state.nodes,
        ["control-plane-1", "cpu-worker-1", "gpu-worker-1"]
    );
    let kubeconfig = dir.join("kubeconfig");

    // Nodes through the API: Ready, labelled and sized from the catalog, no GPU anything yet.
    let client = gpuconform::k8s::client_from_kubeconfig(&kubeconfig)
        .await
        .expect("client");
    let nodes: Api<Node> = Api::all(client.clone());
    // Lists read in pages (discovery, the inventory, restarts) see every object once: here a
    // page of one node at a time, through the API server's continue tokens.
    let paged = gpuconform::k8s::list::list_in_pages(&nodes, Default::default(), 1, |n| {
        kube::ResourceExt::name_any(&n)
    })
    .await
    .expect("paged node list");
    assert_eq!(paged, ["control-plane-1", "cpu-worker-1", "gpu-worker-1"]);
    let gpu = nodes.get("gpu-worker-1").await.expect("gpu node");
    assert!(
        gpuconform::k8s::wait::node_is_ready(&gpu),
        "gpu-worker-1 not Ready: {:?}",
        gpu.status.as_ref().and_then(|s| s.conditions.as_ref())
    );
    let labels = gpu.metadata.labels.clone().unwrap_or_default();
    for (key, want) in [
        ("node.kubernetes.io/instance-type", "p3.2xlarge"),
        ("topology.kubernetes.io/zone", "us-west-2a"),
        ("kubernetes.io/hostname", "gpu-worker-1"),
        ("kubernetes.io/os", "linux"),
    ] {
        assert_eq!(
            labels.get(key).map(String::as_str),
            Some(want),
            "gpu-worker-1: label {key}"
        );
    }
    let gpu_labels: Vec<&String> = labels
        .keys()
        .filter(|k| k.starts_with("nvidia.com/") || k.starts_with("feature.node"))
        .collect();
    assert!(
        gpu_labels.is_empty(),
        "gpu-worker-1: GPU labels on a bare node: {gpu_labels:?}"
    );
    let status = gpu.status.clone().unwrap_or_default();
    let cap = status.capacity.unwrap_or_default();
    assert_eq!(
        cap.get("cpu").map(|q| q.0.as_str()),
        Some("8"),
        "gpu-worker-1: cpu capacity"
    );
    // 61 GiB; the API server returns quantities in canonical form.
    assert_eq!(
        cap.get("memory").map(|q| q.0.as_str()),
        Some("61Gi"),
        "gpu-worker-1: memory capacity"
    );
    assert!(!cap.contains_key("nvidia.com/gpu"));
    assert_eq!(
        status.node_info.map(|i| i.kubelet_version).as_deref(),
        Some("v1.35.4")
    );
    for name in ["control-plane-1", "cpu-worker-1"] {
        let n = nodes.get(name).await.expect("node");
        assert!(gpuconform::k8s::wait::node_is_ready(&n), "{name} not Ready");
    }

    // kubectl from the tool cache against the generated kubeconfig.
    let wide = kubectl(&kubeconfig, &["get", "nodes", "-o", "wide"]);
    assert!(wide.status.success(), "{}", text(&wide));
    let wide_s = String::from_utf8_lossy(&wide.stdout);
    assert_eq!(wide_s.matches(" Ready ").count(), 3, "{wide_s}");
    let describe = kubectl(&kubeconfig, &["describe", "node", "gpu-worker-1"]);
    assert!(describe.status.success(), "{}", text(&describe));
    assert!(String::from_utf8_lossy(&describe.stdout).contains("p3.2xlarge"));

    // A Deployment: scheduled by the real scheduler (never onto the tainted control plane),
    // Running on kwok nodes, logs through the API server → kwok on loopback.
    let manifest = tmp.path().join("web.yaml");
    std::fs::write(
        &manifest,
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: smoke}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: smoke}\nspec:\n  replicas: 3\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: registry.k8s.io/pause:3.10, resources: {requests: {cpu: 100m, memory: 64Mi}}}\n",
    )
    .expect("write manifest");
    let apply = kubectl(&kubeconfig, &["apply", "-f", &manifest.to_string_lossy()]);
    assert!(apply.status.success(), "{}", text(&apply));
    let rollout = kubectl(
        &kubeconfig,
        &[
            "-n",
            "smoke",
            "rollout",
            "status",
            "deployment/web",
            "--timeout=90s",
        ],
    );
    assert!(rollout.status.success(), "{}", text(&rollout));
    let pods = kubectl(
        &kubeconfig,
        &[
            "-n",
            "smoke",
            "get",
            "pods",
            "-o",
            "jsonpath={range .items[*]}{.metadata.name} {.spec.nodeName} {.status.phase}{\"\\n\"}{end}",
        ],
    );
    let pods_s = String::from_utf8_lossy(&pods.stdout).to_string();
    let lines: Vec<&str> = pods_s.lines().collect();
    assert_eq!(lines.len(), 3, "{pods_s}");
    for line in &lines {
        let parts: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(parts.len(), 3, "{line}");
        assert!(
            parts[1] == "cpu-worker-1" || parts[1] == "gpu-worker-1",
            "scheduled to {line}"
        );
        assert_eq!(parts[2], "Running", "{line}");
    }
    let first_pod = lines[0].split_whitespace().next().unwrap_or_default();
    let logs = kubectl(&kubeconfig, &["-n", "smoke", "logs", first_pod]);
    assert!(
        logs.status.success(),
        "kubectl logs failed:\n{}",
        text(&logs)
    );
    assert!(
        String::from_utf8_lossy(&logs.stdout).contains("simulated container"),
        "{}",
        text(&logs)
    );

    // Namespace deletion completes: the namespace controller empties it and drops the finalizer.
    let delete = kubectl(
        &kubeconfig,
        &[
            "delete",
            "namespace",
            "smoke",
            "--wait=true",
            "--timeout=90s",
        ],
    );
    assert!(delete.status.success(), "{}", text(&delete));
    let gone = kubectl(&kubeconfig, &["get", "namespace", "smoke"]);
    assert!(
        !gone.status.success(),
        "namespace still there:\n{}",
        text(&gone)
    );

    // status, then down: no process and no port left.
    let st = gpuconform(&["local", "status", "--dir", &dir_s]);
    assert!(st.status.success(), "{}", text(&st));
    let ports: Vec<u16> = state
        .processes
        .iter()
        .flat_map(|p| p.ports.clone())
        .collect();
    assert_eq!(ports.len(), 6);
    let down = gpuconform(&["local", "down", "--dir", &dir_s]);
    assert!(down.status.success(), "down failed:\n{}", text(&down));
    assert!(
        live_processes_mentioning(&dir).is_empty(),
        "{:?}",
        live_processes_mentioning(&dir)
    );
    for port in ports {
        assert!(!listening(port), "port {port} still listening");
    }
    assert!(!dir.join("state.json").exists());
}

/// Bad fixtures: one message naming file, line and field; exit code 2; nothing started.
#[test]
fn bad_fixtures_are_rejected_before_anything_starts() {
    let cases = [
        (
            "unknown-instance-type.yaml",
            ":6:",
            "pools[0].instanceType",
            "unknown instance type `p3.4xlarge`",
        ),
        (
            "negative-count.yaml",
            ":11:",
            "pools[1].count",
            "count is -2",
        ),
        ("yaml-error.yaml", ":", "", ""),
    ];
    for (file, line, field, message) in cases {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("run");
        let path = format!("tests/data/bad-fixtures/{file}");
        let out = gpuconform(&[
            "local",
            "up",
            "--fixture",
            &path,
            "--dir",
            &dir.to_string_lossy(),
        ]);
        assert_eq!(out.status.code(), Some(2), "{file}:\n{}", text(&out));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let first = stderr.lines().next().unwrap_or_default();
        assert!(
            first.starts_with(&format!("error: {path}{line}")),
            "{file}: {first}"
        );
        assert!(
            first.contains(field) && first.contains(message),
            "{file}: {first}"
        );
        assert!(
            !dir.exists(),
            "{file}: run folder created for a bad fixture"
        );
        assert!(live_processes_mentioning(&dir).is_empty());
    }
}

/// `down` with nothing running is an input error, not a crash.
#[test]
fn down_without_a_cluster_is_a_clear_error() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let out = gpuconform(&["local", "down", "--dir", &tmp.path().to_string_lossy()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no state.json"),
        "{}",
        text(&out)
    );
}

/// Ctrl-C on a foreground cluster, and Ctrl-C in the middle of startup: everything stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_stops_everything_ready_or_not() {
    use tokio::io::{AsyncBufReadExt, BufReader};
    // (wait for this stderr line before sending SIGINT, expected exit code)
    for (trigger, name) in [
        ("cluster `g4dn-pair` ready", "ready"),
        ("starting kube-apiserver", "starting"),
    ] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("run");
        let _guard = DownOnDrop(dir.clone());
        let mut child = tokio::process::Command::new(bin())
            .args([
                "local",
                "up",
                "--foreground",
                "--fixture",
                "fixtures/clusters/g4dn-pair.yaml",
                "--dir",
            ])
            .arg(&dir)
            .current_dir(root())
            .env("GPUCONFORM_TOOLS", tools_dir())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn up --foreground");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
        let mut seen = Vec::new();
        let found = tokio::time::timeout(Duration::from_secs(120), async {
            while let Ok(Some(line)) = lines.next_line().await {
                let hit = line.contains(trigger);
                seen.push(line);
                if hit {
                    return true;
                }
            }
            false
        })
        .await;
        assert_eq!(found, Ok(true), "{name}: never saw `{trigger}`: {seen:?}");
        let pid = child.id().expect("pid") as i32;
        let kill = std::process::Command::new("kill")
            .args(["-INT", &pid.to_string()])
            .status();
        assert!(kill.is_ok_and(|s| s.success()));
        let status = tokio::time::timeout(Duration::from_secs(60), child.wait())
            .await
            .expect("exits after SIGINT")
            .expect("wait");
        while let Ok(Some(line)) = lines.next_line().await {
            seen.push(line);
        }
        assert_eq!(status.code(), Some(130), "{name}: {seen:?}");
        assert!(
            live_processes_mentioning(&dir).is_empty(),
            "{name}: {:?}",
            live_processes_mentioning(&dir)
        );
        assert!(!dir.join("state.json").exists(), "{name}: state.json left");
    }
}
