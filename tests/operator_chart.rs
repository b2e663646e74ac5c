//! The fixture GPU Operator chart (`fixtures/charts/gpu-operator`), rendered by the real helm:
//! it lints, and it creates the real chart's objects by name for the values the harness sets.
//! (Installing it on the local cluster is tested with the GPU simulator.)

mod common;

use std::process::Command;

use common::*;

fn template(extra: &[&str]) -> String {
    let out = Command::new(tool("helm"))
        .args([
            "template",
            "gpu-operator",
            "fixtures/charts/gpu-operator",
            "-n",
            "gpu-operator",
        ])
        .args(extra)
        .current_dir(root())
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm template failed:\n{}",
        text(&out)
    );
    String::from_utf8_lossy(&out.stdout).to_string()
}

/// `(kind, name)` of every rendered object.
fn objects(rendered: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for doc in rendered.split("\n---") {
        let kind = doc.lines().find_map(|l| l.strip_prefix("kind: "));
        let name = doc.lines().find_map(|l| l.strip_prefix("  name: "));
        if let (Some(k), Some(n)) = (kind, name) {
            out.push((k.trim().to_string(), n.trim().to_string()));
        }
    }
    out
}

#[test]
fn chart_lints() {
    let out = Command::new(tool("helm"))
        .args(["lint", "--strict", "fixtures/charts/gpu-operator"])
        .current_dir(root())
        .output()
        .expect("run helm");
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn defaults_render_the_operator_and_its_operands() {
    let rendered = template(&[]);
    let objs = objects(&rendered);
    for (kind, name) in [
        ("Deployment", "gpu-operator"),
        ("ClusterPolicy", "cluster-policy"),
        ("DaemonSet", "nvidia-driver-daemonset"),
        ("DaemonSet", "nvidia-container-toolkit-daemonset"),
        ("DaemonSet", "nvidia-device-plugin-daemonset"),
        ("DaemonSet", "gpu-feature-discovery"),
        ("DaemonSet", "nvidia-operator-validator"),
        ("DaemonSet", "gpu-operator-node-feature-discovery-worker"),
    ] {
        assert!(
            objs.contains(&(kind.to_string(), name.to_string())),
            "{kind}/{name} missing from {objs:?}"
        );
    }
    assert!(rendered.contains("nvidia.com/gpu.deploy.device-plugin: \"true\""));
    assert!(rendered.contains("version: \"595.91.07\""));
    assert!(!objs.iter().any(|(_, n)| n == "gpu-operator-cleanup-crd"));
}

#[test]
fn values_reach_the_cluster_policy_and_operands() {
    let rendered = template(&[
        "--set",
        "driver.version=580.95.05",
        "--set",
        "mig.strategy=mixed",
        "--set",
        "nfd.enabled=false",
        "--set",
        "driver.enabled=false",
        "--set",
        "operator.cleanupCRD=true",
    ]);
    let objs = objects(&rendered);
    assert!(rendered.contains("version: \"580.95.05\""));
    assert!(rendered.contains("strategy: mixed"));
    assert!(
        rendered.contains("value: mixed"),
        "MIG_STRATEGY not passed to the operands"
    );
    assert!(
        !objs
            .iter()
            .any(|(_, n)| n.contains("node-feature-discovery"))
    );
    assert!(!objs.iter().any(|(_, n)| n == "nvidia-driver-daemonset"));
    assert!(objs.contains(&("Job".into(), "gpu-operator-cleanup-crd".into())));
}
