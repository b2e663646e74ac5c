//! `labels`: on every GPU node, the NFD PCI label (any variant the operator accepts), kernel and
//! OS labels, `nvidia.com/gpu.present`, and the GFD set with values consistent with the node's
//! expectation (a plan `expect` entry or the catalog) — product (any spelling real drivers
//! use), count, memory (within the range real drivers report), compute capability, family (as
//! any GFD version names it), MIG capability — and the driver the plan expects (see
//! [`super::driver`]). The expectation never comes from the node: its labels are only observed.

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::asked::Asked;
use super::mig::MigExpectation;
use super::{Ctx, GpuNode, Outcome, driver, no_nodes};
use crate::gpu_stack::asks::{MIG_CONFIG, MIG_CONFIG_STATE};
use crate::gpu_stack::{gfd, nfd, operator, resources};
use crate::plan::driver::DriverRule;
use crate::suite::Step;

/// Runs the check: waits until every node's labels are right or the deadline, then reports.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let tolerance = step.int("memoryTolerancePercent").clamp(0, 100) as u64;
    let rules: std::collections::BTreeMap<&str, DriverRule> = nodes
        .iter()
        .map(|g| (g.name.as_str(), driver::rule(g, ctx.plan)))
        .collect();
    let rule_of = |g: &GpuNode| {
        rules
            .get(g.name.as_str())
            .cloned()
            .unwrap_or_else(DriverRule::none)
    };
    let asked = Asked::read(ctx).await;
    let last = super::watch_node_metadata(ctx, nodes, deadline, |n, g| {
        problems(n, g, &rule_of(g), tolerance, &asked).is_empty()
    })
    .await;
    let seen: Vec<(String, String, Option<String>)> = nodes
        .iter()
        .map(|g| {
            let version = last
                .get(&g.name)
                .and_then(Option::as_ref)
                .and_then(|n| crate::gpu_stack::driver::from_labels(n.labels()));
            (g.name.clone(), g.expectation.clone(), version)
        })
        .collect();
    let odd = driver::odd_ones_out(&seen);

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
            let rule = rule_of(g);
            let mut found = problems(node, g, &rule, tolerance, &asked);
            found.extend(odd.get(&g.name).cloned());
            let detail = format!(
                "expectation: {}× {} from {}; driver {} from {}\n{}",
                g.count,
                g.model.product,
                g.expectation,
                rule.expect.describe(),
                rule.origin(),
                gpu_labels(node)
            );
            let mut outcome = match found.first() {
                None => Outcome::pass(g.name.clone(), Some(&g.name), detail),
                Some(first) => Outcome::fail(
                    g.name.clone(),
                    Some(&g.name),
                    first.clone(),
                    format!("{}\n\nall problems:\n{}", detail, found.join("\n")),
                ),
            };
            outcome
                .warnings
                .extend(driver::chart_warning(node, &rule, ctx.plan));
            outcome
        })
        .collect()
}

/// Every mismatch on one node: the GFD, NFD and driver parts.
pub fn problems(
    node: &Node,
    g: &GpuNode,
    rule: &DriverRule,
    tolerance_pct: u64,
    asked: &Asked,
) -> Vec<String> {
    let mut out = operator_problems(node, g);
    out.extend(mig_problems(node, g));
    out.extend(gfd_problems(node, g, tolerance_pct, asked));
    out.extend(nfd_problems(node, g));
    out.extend(driver::problems(node, g, rule));
    out
}

/// GFD's labels, each mismatch as `<node>: <label> is "<x>", expected "<y>" (<expectation>)`.
/// What is right follows GFD's resource labelers (k8s-device-plugin `internal/lm/resource.go`,
/// `mig-strategy.go`):
/// - whole GPUs: product, count = GPUs, memory of one GPU; `replicas` = the sharing config's
///   replicas (1 unshared), product `-SHARED` when shared and not renamed;
/// - MIG single: product `<model>-MIG-<profile>` (then `-SHARED` likewise), count = MIG
///   devices, memory of one MIG device;
/// - MIG mixed: the whole-GPU labels with `replicas` 0 (sharing off on MIG-enabled GPUs), and
///   per profile `nvidia.com/mig-<profile>.count` and `.memory`;
/// - `sharing-strategy` (GFD v0.15 on) `none`, `time-slicing` or `mps`.
pub fn gfd_problems(node: &Node, g: &GpuNode, tolerance_pct: u64, asked: &Asked) -> Vec<String> {
    let labels = node.labels();
    let why = g.describe();
    let mut out = Vec::new();
    let mut expect_one_of = |key: &str, want: &[String]| {
        let shown = want
            .iter()
            .map(|w| format!("\"{w}\""))
            .collect::<Vec<_>>()
            .join(" or ");
        match labels.get(key) {
            Some(v) if want.contains(v) => {}
            Some(v) => out.push(format!(
                "{}: {key} is \"{v}\", expected {shown} ({why})",
                g.name
            )),
            None => out.push(format!(
                "{}: {key} is missing, expected {shown} ({why})",
                g.name
            )),
        }
    };
    let one = |v: &str| vec![v.to_string()];
    let share = match asked.share(node) {
        Ok(s) => s,
        Err(e) => {
            return vec![format!("{}: {e} ({why})", g.name)];
        }
    };
    let mig = asked.mig(node, g);
    let mixed = asked.mig_strategy == "mixed" && matches!(mig, MigExpectation::Devices(_));
    let single = asked.single_profile(node, g);
    let gpu_share = share.as_ref().and_then(|s| s.of(resources::GPU));
    let shared_suffix = gpu_share.is_some_and(|r| r.rename.is_none()) && !mixed;
    let spellings: Vec<String> = std::iter::once(&g.model.product)
        .chain(&g.model.product_aliases)
        .map(|p| match single {
            Some(profile) => format!("{p}-MIG-{}", profile.name),
            None => p.clone(),
        })
        .map(|p| {
            if shared_suffix {
                format!("{p}-SHARED")
            } else {
                p
            }
        })
        .collect();
    let product = labels.get(gfd::PRODUCT).cloned().unwrap_or_default();
    // A MIG single layout the catalog cannot name (a custom config): the product must still
    // be a MIG profile of the model, the count is not known here.
    let unknown_single = single.is_none()
        && asked.mig_strategy == "single"
        && matches!(mig, MigExpectation::Unknown(_))
        && product.contains("-MIG-");
    let mut memory = Some(g.model.memory_range());
    if unknown_single {
        let (base, profile) = product.split_once("-MIG-").unwrap_or_default();
        let base = base.trim_end_matches("-SHARED");
        let profile = profile.trim_end_matches("-SHARED");
        if !g.model.is_product(base) || !g.model.mig_profiles.iter().any(|p| p.name == profile) {
            let names: Vec<&str> = g
                .model
                .mig_profiles
                .iter()
                .map(|p| p.name.as_str())
                .collect();
            expect_one_of(
                gfd::PRODUCT,
                &one(&format!("{}-MIG-<{}>", g.model.product, names.join("|"))),
            );
        }
        memory = None;
    } else {
        expect_one_of(gfd::PRODUCT, &spellings);
        // Under single the count is the MIG devices of the layout (all `nvidia.com/gpu`).
        let count = match (&mig, single) {
            (MigExpectation::Devices(d), Some(_)) => d
                .get(resources::GPU)
                .copied()
                .unwrap_or_default()
                .to_string(),
            _ => g.count.to_string(),
        };
        expect_one_of(gfd::COUNT, &one(&count));
        if let Some(p) = single {
            memory = Some((p.memory_mib, p.memory_mib));
        }
    }
    // Replicas: old GFD (before sharing existed) wrote none; when sharing is asked it must.
    // GFD writes 0 on MIG-enabled GPUs under mixed; a layout made by hand (no
    // `nvidia.com/mig.config`) is not known here, so either value is right then.
    let replicas = if mixed {
        0
    } else {
        gpu_share.map_or(1, |r| r.replicas)
    };
    let by_hand =
        asked.mig_strategy == "mixed" && g.model.mig_capable() && !labels.contains_key(MIG_CONFIG);
    if labels.contains_key(gfd::REPLICAS) || gpu_share.is_some() {
        let mut want = one(&replicas.to_string());
        if by_hand {
            want.insert(0, "0".into());
        }
        expect_one_of(gfd::REPLICAS, &want);
    }
    if labels.contains_key(gfd::SHARING_STRATEGY) {
        let strategy = match (&share, replicas > 1) {
            (Some(s), true) => s.strategy.label(),
            _ => "none",
        };
        expect_one_of(gfd::SHARING_STRATEGY, &one(strategy));
    }
    if let MigExpectation::Devices(devices) = &mig
        && mixed
    {
        for (resource, count) in devices {
            expect_one_of(&format!("{resource}.count"), &one(&count.to_string()));
            let profile = resource.trim_start_matches(resources::MIG_PREFIX);
            if let Some(p) = g.model.mig_profiles.iter().find(|p| p.name == profile)
                && labels.contains_key(&format!("{resource}.memory"))
            {
                expect_one_of(
                    &format!("{resource}.memory"),
                    &one(&p.memory_mib.to_string()),
                );
            }
        }
    }
    if let Some((major, minor)) = g.model.compute_capability_parts() {
        expect_one_of(gfd::COMPUTE_MAJOR, &one(&major.to_string()));
        expect_one_of(gfd::COMPUTE_MINOR, &one(&minor.to_string()));
    }
    let families: Vec<String> = std::iter::once(&g.model.family)
        .chain(&g.model.family_aliases)
        .cloned()
        .collect();
    expect_one_of(gfd::FAMILY, &families);
    // GFD through v0.6 (GPU Operator 1.x) wrote no `mig.capable`, on MIG-capable GPUs too
    // (the recorded R450 and R460 A100 nodes); when it is there it must be right.
    if labels.contains_key(gfd::MIG_CAPABLE) {
        expect_one_of(gfd::MIG_CAPABLE, &one(&g.model.mig_capable().to_string()));
    }
    if let Some(mem) = memory {
        out.extend(memory_problem(
            labels.get(gfd::MEMORY),
            g,
            mem,
            tolerance_pct,
        ));
    }
    out
}

/// `gpu.memory` within `lo..=hi` MiB, less `tolerance_pct` below.
fn memory_problem(
    value: Option<&String>,
    g: &GpuNode,
    (lo, hi): (u64, u64),
    tolerance_pct: u64,
) -> Option<String> {
    let why = g.describe();
    let floor = lo - lo * tolerance_pct / 100;
    let range = if floor == hi {
        format!("\"{hi}\"")
    } else {
        format!("{floor}..{hi}")
    };
    // One GFD release of 2022 wrote bytes (the recorded time-sliced g4dn.xlarge:
    // 16106127360 = 15360 MiB); a value that is a whole number of MiB in bytes is read so.
    let mib = |m: u64| {
        if m > 1 << 30 && m.is_multiple_of(1 << 20) {
            m >> 20
        } else {
            m
        }
    };
    match value.map(|m| (m, m.parse::<u64>().map(mib))) {
        Some((_, Ok(m))) if (floor..=hi).contains(&m) => None,
        Some((_, Ok(m))) => Some(format!(
            "{}: nvidia.com/gpu.memory is \"{m}\", expected {range} MiB ({why})",
            g.name
        )),
        Some((v, Err(_))) => Some(format!(
            "{}: nvidia.com/gpu.memory is \"{v}\", expected a number of MiB in {range} ({why})",
            g.name
        )),
        None => Some(format!(
            "{}: nvidia.com/gpu.memory is missing, expected {range} MiB ({why})",
            g.name
        )),
    }
}

/// A MIG layout asked for with `nvidia.com/mig.config` must be applied: mig-manager reports
/// `mig.config.state=success`; while it is `pending` the GPUs are not yet what the layout says
/// (the check waits), and `failed` means they never will be.
pub fn mig_problems(node: &Node, g: &GpuNode) -> Vec<String> {
    let labels = node.labels();
    let Some(config) = labels.get(MIG_CONFIG) else {
        return Vec::new();
    };
    match labels.get(MIG_CONFIG_STATE).map(String::as_str) {
        Some("success") => Vec::new(),
        Some(state) => vec![format!(
            "{}: {MIG_CONFIG_STATE} is \"{state}\", expected \"success\" (mig-manager applying {MIG_CONFIG}={config}; {})",
            g.name,
            g.describe()
        )],
        None => vec![format!(
            "{}: {MIG_CONFIG_STATE} is missing, expected \"success\" (mig-manager applying {MIG_CONFIG}={config}; {})",
            g.name,
            g.describe()
        )],
    }
}

/// The operator's own label: `gpu.present` (absent where GFD runs without the operator).
pub fn operator_problems(node: &Node, g: &GpuNode) -> Vec<String> {
    match node.labels().get(operator::GPU_PRESENT).map(String::as_str) {
        Some("true") => Vec::new(),
        Some(v) => vec![format!(
            "{}: {} is \"{v}\", expected \"true\" ({})",
            g.name,
            operator::GPU_PRESENT,
            g.describe()
        )],
        None => vec![format!(
            "{}: {} is missing, expected \"true\" ({})",
            g.name,
            operator::GPU_PRESENT,
            g.describe()
        )],
    }
}

/// NFD's labels: the NVIDIA PCI label in any form, the kernel and OS labels.
pub fn nfd_problems(node: &Node, g: &GpuNode) -> Vec<String> {
    let labels = node.labels();
    let why = g.describe();
    let mut out = Vec::new();
    if !nfd::has_nvidia_pci(labels) {
        out.push(format!(
            "{}: feature.node.kubernetes.io/pci-10de.present is missing (nor the pci-0302_10de / pci-0300_10de forms), expected \"true\" ({why})",
            g.name
        ));
    }
    for key in [
        nfd::KERNEL_VERSION_FULL,
        nfd::OS_RELEASE_ID,
        nfd::OS_RELEASE_VERSION_ID,
    ] {
        if !labels.contains_key(key) {
            out.push(format!(
                "{}: {key} is missing, expected the NFD value ({why})",
                g.name
            ));
        }
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
mod tests;
