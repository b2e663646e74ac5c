//! The starter plan `gpuconform init` writes for an existing cluster: verify-only, the operator
//! where it was found, and what each distinct GPU node group should have — for the cluster's
//! owner to confirm, because a run judges the nodes against it.
//!
//! Nodes of an instance type the catalog knows need no entry (the catalog's count is the
//! expectation); the comment says what the catalog expects and where the nodes' labels differ.
//! Other groups get an `expect` entry read from GFD's labels, marked as read from the cluster:
//! an expectation copied from a broken node would pass it, so the owner must check each one.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Node;

use crate::catalog::Catalog;
use crate::gpu_stack::{gfd, shows_nvidia_gpu};

/// GKE's own GPU node labels: the accelerator type and how many a node has.
const GKE_ACCELERATOR: &str = "cloud.google.com/gke-accelerator";
const GKE_ACCELERATOR_COUNT: &str = "cloud.google.com/gke-accelerator-count";
/// GPUs GKE attaches to N1 machines, so no machine type names them: accelerator → catalog model
/// (the accelerator names of Google's "GPU platforms" page, cloud.google.com/compute/docs/gpus).
const GKE_ATTACHED: &[(&str, &str)] = &[
    ("nvidia-tesla-t4", "T4"),
    ("nvidia-tesla-v100", "V100-SXM2-16GB"),
    ("nvidia-tesla-k80", "K80"),
];

/// What `init` found besides the nodes.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The kubeconfig the plan points at (as the user gave it).
    pub kubeconfig: Option<String>,
    /// Its context, when one was named.
    pub context: Option<String>,
    /// `(namespace, release)` of the GPU Operator's Deployment, when one was seen.
    pub operator: Option<(String, String)>,
    /// When the cluster was read (UTC, RFC 3339), for the header.
    pub when: String,
}

/// How an `expect` entry selects its group.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Select {
    Pool(String),
    Label(String, String),
    Name(String),
}

impl Select {
    fn of(node: &Node) -> Self {
        let labels = node.metadata.labels.clone().unwrap_or_default();
        for key in super::expect::POOL_LABELS {
            if let Some(v) = labels.get(*key) {
                return Self::Pool(v.clone());
            }
        }
        for key in [gfd::MACHINE, "node.kubernetes.io/instance-type"] {
            if let Some(v) = labels.get(key) {
                return Self::Label(key.into(), v.clone());
            }
        }
        Self::Name(node.metadata.name.clone().unwrap_or_default())
    }

    fn yaml(&self) -> String {
        match self {
            Self::Pool(p) => format!("{{pool: {}}}", quote(p)),
            Self::Label(k, v) => format!("{{matchLabels: {{{k}: {}}}}}", quote(v)),
            Self::Name(n) => format!("{{name: {}}}", quote(n)),
        }
    }
}

/// A YAML scalar that stays a string (`"580"`, `"true"` and the like would not).
fn quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// One node as GFD labels it: the catalog model its product names, and its GPU count.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Seen {
    product: Option<String>,
    model: Option<String>,
    count: Option<u32>,
    mig_single: bool,
}

fn seen(node: &Node, catalog: &Catalog) -> Seen {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let product = labels.get(gfd::PRODUCT).cloned();
    // GFD appends `-MIG-<profile>` under MIG single and `-SHARED` when shared, not renamed.
    let base = product.as_deref().map(|p| {
        let p = p.strip_suffix("-SHARED").unwrap_or(p);
        p.split("-MIG-").next().unwrap_or(p).to_string()
    });
    let mut model = base
        .as_deref()
        .and_then(|b| catalog.model_by_product(b))
        .map(|(k, _)| k.to_string());
    let mut count = labels.get(gfd::COUNT).and_then(|c| c.parse().ok());
    // GKE labels its GPU nodes itself (no GFD on Autopilot): the accelerator and its count.
    if let Some(acc) = labels.get(GKE_ACCELERATOR) {
        model = model
            .or_else(|| {
                catalog
                    .instance_types
                    .values()
                    .find(|t| t.accelerator.as_deref() == Some(acc.as_str()))
                    .and_then(|t| t.gpu.as_ref())
                    .map(|g| g.model.clone())
            })
            .or_else(|| {
                GKE_ATTACHED
                    .iter()
                    .find(|(a, _)| a == acc)
                    .map(|(_, m)| m.to_string())
            })
            .filter(|m| catalog.gpu_models.contains_key(m));
        count = count.or_else(|| {
            labels
                .get(GKE_ACCELERATOR_COUNT)
                .and_then(|c| c.parse().ok())
        });
    }
    Seen {
        mig_single: product.as_deref().is_some_and(|p| p.contains("-MIG-")),
        product: product.or_else(|| labels.get(GKE_ACCELERATOR).cloned()),
        model,
        count,
    }
}

/// The starter plan's text for these nodes.
pub fn render(nodes: &[Node], catalog: &Catalog, found: &Found) -> String {
    let gpu_nodes: Vec<&Node> = nodes
        .iter()
        .filter(|n| shows_nvidia_gpu(n) || known_gpu_type(n, catalog).is_some())
        .collect();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# Starter plan written by `gpuconform init` on {} from the cluster's nodes.",
        found.when
    );
    out.push_str(
        "# Verify-only: it checks the GPU Operator already running and changes nothing.\n\
         #\n\
         # CONFIRM BEFORE USE: every expectation below was read from the cluster it will judge.\n\
         # A node that was already broken when this was written (a GPU missing, a wrong driver)\n\
         # is written down as it is and would pass. Check each `expect` entry and the driver\n\
         # against what you bought and mean to run, then:\n\
         #\n\
         #   gpuconform run THIS-FILE --dry-run    # what it would do, and whether it may\n\
         #   gpuconform run THIS-FILE\n\
         name: starter\n\
         description: verify-only run of the GPU Operator on an existing cluster\n\
         target:\n  kubeconfig:\n",
    );
    match &found.kubeconfig {
        Some(k) => {
            let _ = writeln!(out, "    path: {}", quote(k));
        }
        None => out.push_str(
            "    # path: ~/.kube/config   # unset: $KUBECONFIG, ~/.kube/config, in-cluster\n",
        ),
    }
    if let Some(c) = &found.context {
        let _ = writeln!(out, "    context: {}", quote(c));
    }
    out.push_str("operator:\n  mode: existing\n");
    match &found.operator {
        Some((ns, release)) => {
            let _ = writeln!(out, "  namespace: {}\n  release: {}", quote(ns), quote(release));
        }
        None => out.push_str(
            "  # No GPU Operator Deployment was seen (or it could not be listed): name its\n  \
             # namespace and Helm release here.\n  namespace: gpu-operator\n  release: gpu-operator\n",
        ),
    }
    out.push_str(&driver(&gpu_nodes));
    out.push_str(&expects(&gpu_nodes, catalog));
    out.push_str(
        "suites:\n  - gpu-stack\n  - throughput\n  - teardown\n\
         # On a cluster that allocates GPUs through DRA add `dra` and `secure-access`\n\
         # (`gpuconform list` shows every suite).\n\
         # The harness's pods go into a namespace of the run's own, deleted at the end; to use a\n\
         # prepared one (never deleted), name it:\n\
         # testNamespace:\n#   name: gpuconform-tests\n",
    );
    out
}

fn known_gpu_type<'a>(node: &Node, catalog: &'a Catalog) -> Option<(&'a str, u32)> {
    let ty = node
        .metadata
        .labels
        .as_ref()?
        .get("node.kubernetes.io/instance-type")?;
    let gpu = catalog.instance(ty)?.gpu.as_ref()?;
    Some((gpu.model.as_str(), gpu.count))
}

/// `expectDriver`: the one version every GPU node shows, else their one branch, else any.
fn driver(nodes: &[&Node]) -> String {
    let versions: BTreeMap<String, usize> = nodes.iter().fold(BTreeMap::new(), |mut m, n| {
        let labels = n.metadata.labels.clone().unwrap_or_default();
        let v = crate::gpu_stack::driver::from_labels(&labels).unwrap_or_else(|| "none".into());
        *m.entry(v).or_default() += 1;
        m
    });
    let list = versions
        .iter()
        .map(|(v, n)| format!("{v} on {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut out = format!(
        "# The driver the GPU nodes must run; the nodes showed: {}.\n",
        if list.is_empty() {
            "no GPU nodes".into()
        } else {
            list
        }
    );
    let branches: BTreeMap<String, ()> = versions
        .keys()
        .map(|v| (v.split('.').next().unwrap_or(v).to_string(), ()))
        .collect();
    if versions.len() == 1 && !versions.contains_key("none") {
        let v = versions
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or_default();
        let _ = writeln!(out, "expectDriver:\n  version: {}", quote(v));
    } else if branches.len() == 1 && !versions.contains_key("none") {
        let b = branches
            .keys()
            .next()
            .map(String::as_str)
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "# They differ within branch {b}: pin the one version you mean once they agree.\nexpectDriver:\n  branch: {}",
            quote(b)
        );
    } else {
        out.push_str(
            "# No one version or branch: say which the nodes must run (`version:` or `branch:`).\nexpectDriver:\n  any: true\n",
        );
    }
    out
}

/// Nodes of one instance type the catalog knows: its model and count, and what their labels
/// show (node names by what they show).
type Known = (String, u32, BTreeMap<Seen, Vec<String>>);

/// The `expect:` section: one entry per group the catalog cannot describe.
fn expects(nodes: &[&Node], catalog: &Catalog) -> String {
    // (select, what the nodes show) → node names; known types by type → (labels seen → names).
    let mut groups: BTreeMap<(Select, Seen), Vec<String>> = BTreeMap::new();
    let mut known: BTreeMap<String, Known> = BTreeMap::new();
    for n in nodes {
        let name = n.metadata.name.clone().unwrap_or_default();
        let s = seen(n, catalog);
        match known_gpu_type(n, catalog) {
            Some((model, count)) => {
                let ty = n
                    .metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("node.kubernetes.io/instance-type"))
                    .cloned()
                    .unwrap_or_default();
                known
                    .entry(ty)
                    .or_insert_with(|| (model.to_string(), count, BTreeMap::new()))
                    .2
                    .entry(s)
                    .or_default()
                    .push(name);
            }
            None => groups.entry((Select::of(n), s)).or_default().push(name),
        }
    }
    let mut out = String::new();
    for (ty, (model, count, shown)) in &known {
        let total: usize = shown.values().map(Vec::len).sum();
        let _ = writeln!(
            out,
            "# {total} node(s) of instance type {ty}: the catalog expects {count}× {model} (no entry needed)."
        );
        for (s, names) in shown {
            if s.model.as_deref() != Some(model)
                || s.count.is_some_and(|c| c != *count && !s.mig_single)
            {
                let _ = writeln!(
                    out,
                    "#   {} show{} product {} count {} — a run fails them until they match.",
                    names.join(", "),
                    if names.len() == 1 { "s" } else { "" },
                    s.product.as_deref().unwrap_or("none"),
                    s.count
                        .map(|c| c.to_string())
                        .unwrap_or_else(|| "none".into())
                );
            }
        }
    }
    if groups.is_empty() {
        return out;
    }
    let live = groups
        .keys()
        .any(|(_, s)| s.model.is_some() && s.count.is_some());
    out.push_str("# GPU nodes the catalog has no type for, grouped; each entry was read from the group's\n# GFD labels: confirm the model and the count per node.\n");
    out.push_str(if live { "expect:\n" } else { "# expect:\n" });
    let mut selects: BTreeMap<&Select, usize> = BTreeMap::new();
    for (sel, _) in groups.keys() {
        *selects.entry(sel).or_default() += 1;
    }
    for ((sel, s), names) in &groups {
        let _ = writeln!(
            out,
            "  # {} node(s): {}; GFD product {}, count {}.",
            names.len(),
            names.join(", "),
            s.product.as_deref().unwrap_or("none"),
            s.count
                .map(|c| c.to_string())
                .unwrap_or_else(|| "none".into())
        );
        if selects.get(sel).copied().unwrap_or(0) > 1 {
            out.push_str("  # CONFLICT: nodes of this group show different GPUs; give each kind its own select.\n");
        }
        if s.mig_single {
            out.push_str("  # Under MIG single GFD counts MIG devices: set `count` to the node's whole GPUs.\n");
        }
        match (&s.model, s.count) {
            (Some(m), Some(c)) => {
                let _ = writeln!(
                    out,
                    "  - select: {}\n    gpu: {}\n    count: {c}",
                    sel.yaml(),
                    quote(m)
                );
            }
            _ => {
                let _ = writeln!(
                    out,
                    "  # No catalog model has this product (or no count label): fill in the model\n  # (`gpuconform list` names the catalog) and the count, then uncomment.\n  # - select: {}\n  #   gpu: MODEL\n  #   count: N",
                    sel.yaml()
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::real_nodes;

    fn found() -> Found {
        Found {
            kubeconfig: Some("/k/config".into()),
            context: Some("prod".into()),
            operator: Some(("gpu-operator".into(), "gpu-operator".into())),
            when: "2026-12-03T00:00:00Z".into(),
        }
    }

    /// The written plan loads as it is: verify-only, the context and operator it was given.
    fn load(text: &str) -> crate::plan::Plan {
        let file = std::path::Path::new("starter.yaml");
        let raw: crate::plan::RawPlan =
            crate::input::parse_yaml(file, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let catalog = Catalog::embedded().expect("catalog");
        crate::plan::Plan::validate(file, raw, std::path::Path::new("no-such-dir"), &catalog)
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }

    /// Published nodes of types no catalog knows get an entry with the GPU and count their
    /// publishers state (`truth`, not the labels the entry was read from); known types get none.
    #[test]
    fn real_nodes_get_the_entries_their_publishers_state() {
        let catalog = Catalog::embedded().expect("catalog");
        let mut checked = 0;
        for (file, real) in real_nodes::all() {
            let node = real.node("n1");
            let text = render(std::slice::from_ref(&node), &catalog, &found());
            let plan = load(&text);
            assert_eq!(
                plan.operator.mode,
                crate::plan::OperatorMode::Existing,
                "{file}"
            );
            let known = real
                .instance_type
                .as_deref()
                .and_then(|t| catalog.instance(t))
                .is_some_and(|i| i.gpu.is_some());
            let mig_single = real
                .labels
                .get(gfd::PRODUCT)
                .is_some_and(|p| p.contains("-MIG-"));
            if known {
                assert!(plan.expect.is_empty(), "{file}: {text}");
                assert!(text.contains("the catalog expects"), "{file}: {text}");
                checked += 1;
            } else if let (Some(gpu), Some(count), false) =
                (&real.truth.gpu, real.truth.count, mig_single)
            {
                assert_eq!(plan.expect.len(), 1, "{file}: {text}");
                assert_eq!(&plan.expect[0].gpu, gpu, "{file}: {text}");
                assert_eq!(plan.expect[0].count, count, "{file}: {text}");
                checked += 1;
            }
        }
        assert!(checked >= 6, "only {checked} nodes checked");
    }

    #[test]
    fn groups_drivers_and_conflicts_are_written_for_the_owner() {
        let catalog = Catalog::embedded().expect("catalog");
        let node = |name: &str, labels: serde_json::Value| -> Node {
            serde_json::from_value(
                serde_json::json!({"metadata": {"name": name, "labels": labels}}),
            )
            .expect("node")
        };
        let dgx = |name: &str, product: &str, driver: &str| {
            node(
                name,
                serde_json::json!({"nvidia.com/gpu.machine": "DGX-A100", "nvidia.com/gpu.product": product,
                    "nvidia.com/gpu.count": "8", "nvidia.com/cuda.driver-version.full": driver}),
            )
        };
        // Two alike: one entry for both, the one version pinned.
        let same = [
            dgx("a", "NVIDIA-A100-SXM4-40GB", "580.95.05"),
            dgx("b", "NVIDIA-A100-SXM4-40GB", "580.95.05"),
            node("cpu", serde_json::json!({"kubernetes.io/os": "linux"})),
        ];
        let text = render(&same, &catalog, &found());
        let plan = load(&text);
        assert_eq!(plan.expect.len(), 1, "{text}");
        assert_eq!(
            plan.expect[0]
                .match_labels
                .get(gfd::MACHINE)
                .map(String::as_str),
            Some("DGX-A100")
        );
        assert!(text.contains("2 node(s): a, b"), "{text}");
        assert!(text.contains("version: \"580.95.05\""), "{text}");
        assert!(!text.contains("cpu"), "{text}");
        // One odd node under the same select: a conflict said, the branch only.
        let odd = [
            dgx("a", "NVIDIA-A100-SXM4-40GB", "580.95.05"),
            dgx("c", "NVIDIA-A100-SXM4-80GB", "580.82.07"),
        ];
        let text = render(&odd, &catalog, &found());
        assert!(text.contains("CONFLICT"), "{text}");
        assert!(text.contains("branch: \"580\""), "{text}");
        // A product no catalog model has: the entry is left for the owner, commented out.
        let unknown = [dgx("z", "NVIDIA-Future-GPU", "600.1.2")];
        let text = render(&unknown, &catalog, &found());
        assert!(load(&text).expect.is_empty(), "{text}");
        assert!(
            text.contains("# expect:") && text.contains("gpu: MODEL"),
            "{text}"
        );
    }

    #[test]
    fn a_known_type_whose_labels_differ_is_named() {
        let catalog = Catalog::embedded().expect("catalog");
        let p3 = real_nodes::load(real_nodes::P3);
        let mut node = p3.node("p3-a");
        if let Some(l) = node.metadata.labels.as_mut() {
            l.insert(
                "node.kubernetes.io/instance-type".into(),
                "p3.8xlarge".into(),
            );
        }
        let text = render(&[node], &catalog, &found());
        assert!(
            text.contains("instance type p3.8xlarge: the catalog expects 4×"),
            "{text}"
        );
        assert!(
            text.contains("p3-a shows product") && text.contains("count 1"),
            "{text}"
        );
    }
}
