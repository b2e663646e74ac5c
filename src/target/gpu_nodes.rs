//! The cluster's GPU nodes, and what the instance catalog says each one has.
//!
//! Read once from the node list (no GET per node). A node is a GPU node when its
//! `node.kubernetes.io/instance-type` is a GPU type in the catalog, or when it shows an NVIDIA
//! GPU whatever its type (an NVIDIA PCI label, `gpu.present`, GFD's product, `nvidia.com/gpu*`
//! capacity). A GPU node the catalog has no expectation for is not skipped silently: it is
//! [`Unexpected`], and the run fails a testcase naming it.

use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, ResourceExt};

use crate::catalog::{Catalog, GpuModel};

/// A GPU node and what the catalog says it has.
#[derive(Debug, Clone)]
pub struct GpuNode {
    /// Node name.
    pub name: String,
    /// EC2 instance type.
    pub instance_type: String,
    /// GPU model key in the catalog.
    pub model_key: String,
    /// The model.
    pub model: GpuModel,
    /// GPUs on the node.
    pub count: u32,
    /// Where the expectation comes from: `expect[0] (plans/p.yaml:12)` or `instance type
    /// p3.2xlarge`. Nodes of one expectation must run the same driver.
    pub expectation: String,
    /// The driver the node's `expect` entry requires, if it says.
    pub driver: Option<crate::plan::driver::DriverRule>,
}

impl GpuNode {
    /// `p3.2xlarge: 1× Tesla-V100-SXM2-16GB`, for messages.
    pub fn describe(&self) -> String {
        format!(
            "{}: {}× {}",
            self.instance_type, self.count, self.model.product
        )
    }
}

/// A node that shows an NVIDIA GPU but has no expectation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unexpected {
    /// Node name.
    pub name: String,
    /// Its instance type, if it has one.
    pub instance_type: Option<String>,
    /// GFD's product label, if published.
    pub product: Option<String>,
    /// The catalog knows the type, without GPUs.
    pub cpu_type: bool,
    /// More than one plan `expect` entry selects it (their descriptions).
    pub overlap: Vec<String>,
}

impl Unexpected {
    /// The failing testcase's message: which node, what it is, what to do.
    pub fn message(&self) -> String {
        let ty = self.instance_type.as_deref().unwrap_or("none");
        let product = self.product.as_deref().unwrap_or("not labelled");
        if !self.overlap.is_empty() {
            return format!(
                "node {} is selected by {}: give each node one expectation",
                self.name,
                self.overlap.join(" and ")
            );
        }
        let why = if self.cpu_type {
            format!(
                "the instance catalog lists {ty} without GPUs, but the node shows an NVIDIA GPU"
            )
        } else {
            "neither a plan `expect` entry nor the instance catalog describes it; add an `expect` entry".into()
        };
        format!(
            "no expectation for node {}: instance type {ty}, product {product}; {why}",
            self.name
        )
    }
}

/// The cluster's GPU nodes: those with an expectation, and those without.
#[derive(Debug, Clone, Default)]
pub struct Discovery {
    /// GPU nodes and what the catalog says they have, by name.
    pub nodes: Vec<GpuNode>,
    /// GPU nodes nothing says anything about, by name.
    pub unexpected: Vec<Unexpected>,
    /// Plan `expect` entries that select no node (a typo in a selector must not pass silently).
    pub unmatched: Vec<crate::plan::expect::Expect>,
}

/// Sorts the node list into GPU nodes with and without an expectation (CPU nodes are dropped).
/// A node's expectation is the plan `expect` entry that selects it, else its instance type's
/// in the catalog.
pub fn classify(
    nodes: &[Node],
    catalog: &Catalog,
    expects: &[crate::plan::expect::Expect],
) -> Discovery {
    let mut out = Discovery::default();
    let mut used = vec![false; expects.len()];
    for n in nodes {
        let ty = n.labels().get("node.kubernetes.io/instance-type").cloned();
        let chosen: Vec<usize> = expects
            .iter()
            .enumerate()
            .filter(|(_, e)| e.selects(&n.name_any(), n.labels()))
            .map(|(i, _)| i)
            .collect();
        for &i in &chosen {
            used[i] = true;
        }
        if chosen.len() > 1 {
            out.unexpected.push(Unexpected {
                name: n.name_any(),
                instance_type: ty.clone(),
                product: n.labels().get(crate::gpu_stack::gfd::PRODUCT).cloned(),
                cpu_type: false,
                overlap: chosen.iter().map(|&i| expects[i].describe()).collect(),
            });
            continue;
        }
        if let Some(e) = chosen.first().map(|&i| &expects[i])
            && let Some(model) = catalog.gpu_models.get(&e.gpu)
        {
            out.nodes.push(GpuNode {
                name: n.name_any(),
                instance_type: ty.clone().unwrap_or_else(|| e.describe()),
                model_key: e.gpu.clone(),
                model: model.clone(),
                count: e.count,
                expectation: e.describe(),
                driver: e.driver.clone(),
            });
            continue;
        }
        let instance = ty.as_deref().and_then(|t| catalog.instance(t));
        let model = instance
            .and_then(|i| i.gpu.as_ref())
            .and_then(|g| catalog.gpu_models.get(&g.model).map(|m| (g, m)));
        match (model, &ty) {
            (Some((gpu, model)), Some(ty)) => out.nodes.push(GpuNode {
                name: n.name_any(),
                instance_type: ty.clone(),
                model_key: gpu.model.clone(),
                model: model.clone(),
                count: gpu.count,
                expectation: format!("instance type {ty}"),
                driver: None,
            }),
            _ if crate::gpu_stack::shows_nvidia_gpu(n) => out.unexpected.push(Unexpected {
                name: n.name_any(),
                instance_type: ty.clone(),
                product: n.labels().get(crate::gpu_stack::gfd::PRODUCT).cloned(),
                cpu_type: instance.is_some_and(|i| i.gpu.is_none()),
                overlap: Vec::new(),
            }),
            _ => {}
        }
    }
    out.unmatched = expects
        .iter()
        .zip(&used)
        .filter(|(_, u)| !**u)
        .map(|(e, _)| e.clone())
        .collect();
    out.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    out.unexpected.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The cluster's GPU nodes, from one node list.
pub async fn discover(
    client: &Client,
    catalog: &Catalog,
    expects: &[crate::plan::expect::Expect],
) -> Result<Discovery, kube::Error> {
    Ok(discover_listed(client, catalog, expects).await?.0)
}

/// [`discover`], also handing back the node list it read (the run's inventory is read from
/// the same list: at thousands of nodes each list is seconds and megabytes).
pub async fn discover_listed(
    client: &Client,
    catalog: &Catalog,
    expects: &[crate::plan::expect::Expect],
) -> Result<(Discovery, Vec<Node>), kube::Error> {
    let api: Api<Node> = Api::all(client.clone());
    // In pages, each node without what nothing here reads: its managedFields and the list of
    // images the kubelet holds (on a real node most of the object).
    let nodes =
        crate::k8s::list::list_all(&api, Default::default(), crate::k8s::list::lean_node).await?;
    Ok((classify(&nodes, catalog, expects), nodes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, labels: serde_json::Value) -> Node {
        serde_json::from_value(serde_json::json!({"metadata": {"name": name, "labels": labels}}))
            .expect("node")
    }

    #[test]
    fn gpu_nodes_without_an_expectation_are_named_not_skipped() {
        let catalog = Catalog::embedded().expect("catalog");
        let p3 = crate::fixture::real_nodes::load(crate::fixture::real_nodes::P3);
        let mut real = serde_json::to_value(&p3.labels).expect("labels");
        // The source shows no instance-type label; the node had its type.
        real["node.kubernetes.io/instance-type"] = p3.instance_type.clone().into();
        let nodes = vec![
            node("p3", real.clone()),
            // An on-prem DGX: no instance type, GFD's labels only.
            node(
                "dgx-1",
                serde_json::json!({"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "nvidia.com/gpu.present": "true"}),
            ),
            // A type the catalog does not know (a GKE A4 with B200s), seen by its PCI label.
            node(
                "gke-a3",
                serde_json::json!({"node.kubernetes.io/instance-type": "a4-highgpu-8g", "feature.node.kubernetes.io/pci-10de.present": "true"}),
            ),
            // A CPU type in the catalog that shows a GPU anyway.
            node(
                "odd",
                serde_json::json!({"node.kubernetes.io/instance-type": "m5.xlarge", "nvidia.com/gpu.present": "true"}),
            ),
            node(
                "cpu",
                serde_json::json!({"node.kubernetes.io/instance-type": "m5.xlarge"}),
            ),
        ];
        let d = classify(&nodes, &catalog, &[]);
        assert_eq!(
            d.nodes.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["p3"]
        );
        let names: Vec<&str> = d.unexpected.iter().map(|u| u.name.as_str()).collect();
        assert_eq!(names, ["dgx-1", "gke-a3", "odd"]);
        let msgs: Vec<String> = d.unexpected.iter().map(Unexpected::message).collect();
        assert!(
            msgs[0].contains("node dgx-1: instance type none, product NVIDIA-A100-SXM4-80GB"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("instance type a4-highgpu-8g")
                && msgs[1].contains("add an `expect` entry"),
            "{}",
            msgs[1]
        );
        assert!(
            msgs[2].contains("lists m5.xlarge without GPUs"),
            "{}",
            msgs[2]
        );
        // The real p3 with its instance type removed is no longer expected, but still seen.
        real.as_object_mut()
            .expect("map")
            .remove("node.kubernetes.io/instance-type");
        let d = classify(&[node("p3", real)], &catalog, &[]);
        assert!(d.nodes.is_empty());
        assert_eq!(
            d.unexpected[0].product.as_deref(),
            Some("Tesla-V100-SXM2-16GB")
        );
    }

    #[test]
    fn expect_entries_come_before_the_catalog() {
        use crate::plan::expect::Expect;
        let catalog = Catalog::embedded().expect("catalog");
        let model = catalog.gpu_models.keys().next().expect("a model").clone();
        let e = |index: usize, labels: &[(&str, &str)], name: Option<&str>| Expect {
            index,
            file: "p.yaml".into(),
            line: Some(10 + index as u32),
            match_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            name: name.map(str::to_string),
            pool: None,
            gpu: model.clone(),
            count: 8,
            driver: None,
        };
        let expects = [
            e(0, &[("nvidia.com/gpu.machine", "DGX-A100")], None),
            e(1, &[], Some("dgx-2*")),
            e(2, &[], Some("nowhere-*")),
        ];
        let nodes = vec![
            node(
                "dgx-1",
                serde_json::json!({"nvidia.com/gpu.machine": "DGX-A100", "nvidia.com/gpu.present": "true"}),
            ),
            node(
                "dgx-2",
                serde_json::json!({"nvidia.com/gpu.machine": "DGX-A100"}),
            ),
            node(
                "dgx-3",
                serde_json::json!({"nvidia.com/gpu.present": "true"}),
            ),
        ];
        let d = classify(&nodes, &catalog, &expects);
        assert_eq!(d.nodes.len(), 1, "{d:?}");
        assert_eq!((d.nodes[0].name.as_str(), d.nodes[0].count), ("dgx-1", 8));
        assert_eq!(d.nodes[0].instance_type, "expect[0] (p.yaml:10)");
        let msgs: Vec<String> = d.unexpected.iter().map(Unexpected::message).collect();
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(
            msgs[0]
                .contains("dgx-2 is selected by expect[0] (p.yaml:10) and expect[1] (p.yaml:11)"),
            "{}",
            msgs[0]
        );
        assert!(
            msgs[1].contains("no expectation for node dgx-3"),
            "{}",
            msgs[1]
        );
        assert_eq!(d.unmatched.iter().map(|e| e.index).collect::<Vec<_>>(), [2]);
    }
}
