//! `labels`: on every GPU node, the NFD PCI label (any variant the operator accepts), kernel and
//! OS labels, `nvidia.com/gpu.present`, and the GFD set with values consistent with the node's
//! instance type — product, count, memory (within a tolerance: older drivers report a little
//! less), compute capability, family, MIG capability — and the driver version labels equal to
//! the plan's `driver.version`, accepting the deprecated and the current names.

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::{Ctx, GpuNode, Outcome, no_nodes};
use crate::sim::labels::has_nvidia_pci_label;
use crate::suite::Step;

/// Runs the check: waits until every node's labels are right or the deadline, then reports.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let tolerance = step.int("memoryTolerancePercent", 2).clamp(0, 100) as u64;
    let driver = ctx.plan.operator.driver_version();
    let last = super::watch_nodes(ctx, nodes, deadline, |n, g| {
        problems(n, g, driver.as_deref(), tolerance).is_empty()
    })
    .await;

    nodes
        .iter()
        .map(|g| {
            let Some(node) = last.get(&g.name).and_then(Option::as_ref) else {
                return Outcome::fail(
                    g.name.clone(),
                    Some(&g.name),
                    format!("{}: node not found", g.name),
                    "",
                );
            };
            let found = problems(node, g, driver.as_deref(), tolerance);
            let detail = gpu_labels(node);
            match found.first() {
                None => Outcome::pass(g.name.clone(), Some(&g.name), detail),
                Some(first) => Outcome::fail(
                    g.name.clone(),
                    Some(&g.name),
                    first.clone(),
                    format!("{}\n\nall problems:\n{}", detail, found.join("\n")),
                ),
            }
        })
        .collect()
}

/// Every mismatch on one node, each as `<node>: <label> is "<x>", expected "<y>" (<type>)`.
pub fn problems(node: &Node, g: &GpuNode, driver: Option<&str>, tolerance_pct: u64) -> Vec<String> {
    let labels = node.labels();
    let why = g.describe();
    let mut out = Vec::new();
    let mut expect = |key: &str, want: &str| match labels.get(key) {
        Some(v) if v == want => {}
        Some(v) => out.push(format!(
            "{}: {key} is \"{v}\", expected \"{want}\" ({why})",
            g.name
        )),
        None => out.push(format!(
            "{}: {key} is missing, expected \"{want}\" ({why})",
            g.name
        )),
    };
    expect("nvidia.com/gpu.present", "true");
    let replicas: u32 = labels
        .get("nvidia.com/gpu.replicas")
        .and_then(|r| r.parse().ok())
        .unwrap_or(1);
    let product = labels
        .get("nvidia.com/gpu.product")
        .cloned()
        .unwrap_or_default();
    let mig_single = product.contains("-MIG-");
    if mig_single {
        let base = format!("{}-MIG-", g.model.product);
        if !product.starts_with(&base) || product.ends_with("-MIG-INVALID") {
            expect("nvidia.com/gpu.product", &format!("{base}<profile>"));
        }
    } else {
        let want = if replicas > 1 {
            format!("{}-SHARED", g.model.product)
        } else {
            g.model.product.clone()
        };
        // Renamed shared resources keep the plain product name.
        if !(replicas > 1 && product == g.model.product) {
            expect("nvidia.com/gpu.product", &want);
        }
        expect("nvidia.com/gpu.count", &g.count.to_string());
    }
    if let Some((major, minor)) = g.model.compute_capability_parts() {
        expect("nvidia.com/gpu.compute.major", &major.to_string());
        expect("nvidia.com/gpu.compute.minor", &minor.to_string());
    }
    expect("nvidia.com/gpu.family", &g.model.family);
    expect("nvidia.com/mig.capable", &g.model.mig_capable().to_string());

    if !mig_single {
        match labels
            .get("nvidia.com/gpu.memory")
            .map(|m| m.parse::<u64>())
        {
            Some(Ok(m)) => {
                let want = g.model.memory_mib;
                let floor = want - want * tolerance_pct / 100;
                if m > want || m < floor {
                    out.push(format!(
                        "{}: nvidia.com/gpu.memory is \"{m}\", expected \"{want}\" (within {tolerance_pct}%: {floor}..{want}) ({why})",
                        g.name
                    ));
                }
            }
            Some(Err(_)) => out.push(format!(
                "{}: nvidia.com/gpu.memory is \"{}\", expected a number of MiB ({why})",
                g.name,
                labels
                    .get("nvidia.com/gpu.memory")
                    .cloned()
                    .unwrap_or_default()
            )),
            None => out.push(format!(
                "{}: nvidia.com/gpu.memory is missing, expected \"{}\" ({why})",
                g.name, g.model.memory_mib
            )),
        }
    }

    if !has_nvidia_pci_label(labels) {
        out.push(format!(
            "{}: feature.node.kubernetes.io/pci-10de.present is missing (nor the pci-0302_10de / pci-0300_10de forms), expected \"true\" ({why})",
            g.name
        ));
    }
    for key in [
        "feature.node.kubernetes.io/kernel-version.full",
        "feature.node.kubernetes.io/system-os_release.ID",
        "feature.node.kubernetes.io/system-os_release.VERSION_ID",
    ] {
        if !labels.contains_key(key) {
            out.push(format!(
                "{}: {key} is missing, expected the NFD value ({why})",
                g.name
            ));
        }
    }

    // Driver version: the current name, or else the deprecated triple.
    let current = labels.get("nvidia.com/cuda.driver-version.full").cloned();
    let deprecated = match (
        labels.get("nvidia.com/cuda.driver.major"),
        labels.get("nvidia.com/cuda.driver.minor"),
        labels.get("nvidia.com/cuda.driver.rev"),
    ) {
        (Some(a), Some(b), Some(c)) => Some(format!("{a}.{b}.{c}")),
        _ => None,
    };
    match (current.or(deprecated), driver) {
        (None, want) => out.push(format!(
            "{}: nvidia.com/cuda.driver-version.full (or the deprecated nvidia.com/cuda.driver.*) is missing, expected \"{}\" ({why})",
            g.name,
            want.unwrap_or("the driver version")
        )),
        (Some(have), Some(want)) if have != want => out.push(format!(
            "{}: nvidia.com/cuda.driver-version.full is \"{have}\", expected \"{want}\" (the plan's driver.version)",
            g.name
        )),
        _ => {}
    }
    out
}

fn gpu_labels(node: &Node) -> String {
    node.labels()
        .iter()
        .filter(|(k, _)| {
            k.starts_with("nvidia.com/") || k.starts_with("feature.node.kubernetes.io/")
        })
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::Catalog;
    use crate::sim::labels::{self as sim, MigLayout, MigStrategy, NodeGpus, StackConfig};

    fn seed() -> (Node, GpuNode) {
        let c = Catalog::embedded().expect("catalog");
        let inst = c.instance("p3.2xlarge").expect("p3");
        let (model, count) = c.gpu_of(inst).expect("gpu");
        let mut labels = sim::nfd_labels("Ubuntu 22.04.5 LTS", "6.8.0-1021-aws", true);
        labels.extend(sim::operator_labels(false));
        let g = NodeGpus {
            instance_type: "p3.2xlarge",
            instance: inst,
            model,
            count,
        };
        let cfg = StackConfig {
            driver_version: "580.95.05".into(),
            mig_strategy: MigStrategy::Single,
        };
        labels.extend(sim::gfd_labels(&g, &cfg, &MigLayout::Disabled, None, 1));
        let mut node = Node::default();
        node.metadata.name = Some("gpu-worker-1".into());
        node.metadata.labels = Some(labels);
        let gpu = GpuNode {
            name: "gpu-worker-1".into(),
            instance_type: "p3.2xlarge".into(),
            model_key: "V100-SXM2-16GB".into(),
            model: model.clone(),
            count,
        };
        (node, gpu)
    }

    #[test]
    fn simulated_labels_pass() {
        let (node, g) = seed();
        assert_eq!(
            problems(&node, &g, Some("580.95.05"), 2),
            Vec::<String>::new()
        );
    }

    #[test]
    fn wrong_count_message_names_node_value_and_expectation() {
        let (mut node, g) = seed();
        node.labels_mut()
            .insert("nvidia.com/gpu.count".into(), "0".into());
        let p = problems(&node, &g, Some("580.95.05"), 2);
        assert_eq!(
            p,
            vec![
                "gpu-worker-1: nvidia.com/gpu.count is \"0\", expected \"1\" (p3.2xlarge: 1× Tesla-V100-SXM2-16GB)"
            ]
        );
    }

    #[test]
    fn driver_and_memory_mismatches() {
        let (mut node, g) = seed();
        node.labels_mut()
            .insert("nvidia.com/gpu.memory".into(), "16160".into());
        assert!(
            problems(&node, &g, Some("580.95.05"), 2).is_empty(),
            "16160 is within 2%"
        );
        node.labels_mut()
            .insert("nvidia.com/gpu.memory".into(), "8192".into());
        let p = problems(&node, &g, Some("570.1.2"), 2);
        assert!(
            p.iter().any(|m| m.contains("gpu.memory is \"8192\"")),
            "{p:?}"
        );
        assert!(
            p.iter()
                .any(|m| m.contains("is \"580.95.05\", expected \"570.1.2\"")),
            "{p:?}"
        );
    }

    #[test]
    fn deprecated_driver_labels_are_accepted() {
        let (mut node, g) = seed();
        node.labels_mut()
            .remove("nvidia.com/cuda.driver-version.full");
        assert!(problems(&node, &g, Some("580.95.05"), 2).is_empty());
        node.labels_mut().remove("nvidia.com/cuda.driver.rev");
        assert_eq!(problems(&node, &g, Some("580.95.05"), 2).len(), 1);
    }

    #[test]
    fn missing_product_and_pci_variants() {
        let (mut node, g) = seed();
        node.labels_mut().remove("nvidia.com/gpu.product");
        node.labels_mut()
            .remove("feature.node.kubernetes.io/pci-10de.present");
        node.labels_mut().insert(
            "feature.node.kubernetes.io/pci-0302_10de.present".into(),
            "true".into(),
        );
        let p = problems(&node, &g, Some("580.95.05"), 2);
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("nvidia.com/gpu.product is missing, expected \"Tesla-V100-SXM2-16GB\"")
        );
    }
}
