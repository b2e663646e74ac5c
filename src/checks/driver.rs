//! The driver part of the `labels` check: which driver each GPU node must run (its `expect`
//! entry's `driver`, else the plan's `expectDriver`, else any — never the chart's
//! `driver.version` by itself), whether the version its GFD labels show meets that, and whether
//! the nodes of one expectation agree (the odd one out fails by name).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::GpuNode;
use crate::gpu_stack::{driver, operator};
use crate::plan::Plan;
use crate::plan::driver::DriverRule;

/// The driver expectation of one node, in the documented order.
pub fn rule(g: &GpuNode, plan: &Plan) -> DriverRule {
    g.driver
        .clone()
        .or_else(|| plan.expect_driver.clone())
        .unwrap_or_else(DriverRule::none)
}

/// The node's driver problems against its expectation.
pub fn problems(node: &Node, g: &GpuNode, rule: &DriverRule) -> Vec<String> {
    let why = g.describe();
    match driver::from_labels(node.labels()) {
        None => vec![format!(
            "{}: nvidia.com/cuda.driver-version.full (or the deprecated nvidia.com/cuda.driver.*) is missing, expected {} ({why})",
            g.name,
            rule.expect.describe()
        )],
        Some(have) if !rule.expect.accepts(&have) => vec![format!(
            "{}: nvidia.com/cuda.driver-version.full is \"{have}\", expected {} ({}){}",
            g.name,
            rule.expect.describe(),
            rule.origin(),
            host_driver_note(node)
        )],
        Some(_) => Vec::new(),
    }
}

/// `; the operator found a pre-installed host driver` when the node says so.
fn host_driver_note(node: &Node) -> &'static str {
    if node
        .labels()
        .get(operator::DEPLOY_DRIVER)
        .map(String::as_str)
        == Some(operator::PRE_INSTALLED)
    {
        "; the node runs a pre-installed host driver (gpu.deploy.driver=pre-installed)"
    } else {
        ""
    }
}

/// The nodes whose driver differs from the others of their expectation: node → problem. A
/// group's version is the one most of its nodes run; when no version has a majority, every node
/// of the group fails, each naming all versions seen.
pub fn odd_ones_out(seen: &[(String, String, Option<String>)]) -> BTreeMap<String, String> {
    let mut groups: BTreeMap<&str, Vec<(&str, &str)>> = BTreeMap::new();
    for (node, group, version) in seen {
        if let Some(v) = version {
            groups.entry(group).or_default().push((node, v));
        }
    }
    let mut out = BTreeMap::new();
    for (group, nodes) in groups {
        let mut by_version: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (node, v) in &nodes {
            by_version.entry(v).or_default().push(node);
        }
        if by_version.len() < 2 {
            continue;
        }
        let all = by_version
            .iter()
            .map(|(v, ns)| format!("{v} on {}", ns.join(", ")))
            .collect::<Vec<_>>()
            .join("; ");
        let majority = by_version
            .iter()
            .find(|(_, ns)| ns.len() * 2 > nodes.len())
            .map(|(v, _)| *v);
        for (node, v) in &nodes {
            let msg = match majority {
                Some(m) if m == *v => continue,
                Some(m) => format!(
                    "{node}: runs driver \"{v}\", the other nodes of {group} run \"{m}\" ({all})"
                ),
                None => format!("{node}: the nodes of {group} run different drivers ({all})"),
            };
            out.insert(node.to_string(), msg);
        }
    }
    out
}

/// A warning when the operator was asked to install a driver version the node does not run,
/// and the plan states no expectation that would make that a failure.
pub fn chart_warning(node: &Node, rule: &DriverRule, plan: &Plan) -> Option<String> {
    if rule.expect != crate::plan::driver::DriverExpect::Any {
        return None;
    }
    let asked = plan.operator.driver_version()?;
    let have = driver::from_labels(node.labels())?;
    (have != asked && !have.starts_with(&format!("{asked}."))).then(|| {
        format!(
            "the chart's driver.version is {asked}, the node runs {have}{}; give `expectDriver` or `expect[].driver` in the plan to make a driver check of it",
            host_driver_note(node)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_odd_one_out_fails_by_name() {
        let s = |n: &str, g: &str, v: Option<&str>| {
            (n.to_string(), g.to_string(), v.map(str::to_string))
        };
        let seen = [
            s("a", "expect[0]", Some("535.129.03")),
            s("b", "expect[0]", Some("535.129.03")),
            s("c", "expect[0]", Some("535.104.05")),
            // Another expectation may run another driver.
            s("d", "instance type g5.xlarge", Some("550.54.15")),
            s("e", "instance type g5.xlarge", Some("550.54.15")),
            // Two nodes, two drivers: no majority, both fail.
            s("f", "expect[1]", Some("570.1.2")),
            s("g", "expect[1]", Some("570.1.3")),
            // No driver label: reported by problems(), not here.
            s("h", "expect[0]", None),
        ];
        let odd = odd_ones_out(&seen);
        assert_eq!(odd.keys().collect::<Vec<_>>(), ["c", "f", "g"]);
        assert_eq!(
            odd["c"],
            "c: runs driver \"535.104.05\", the other nodes of expect[0] run \"535.129.03\" (535.104.05 on c; 535.129.03 on a, b)"
        );
        assert!(
            odd["f"].contains("run different drivers (570.1.2 on f; 570.1.3 on g)"),
            "{}",
            odd["f"]
        );
    }
}
