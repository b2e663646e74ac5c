//! Pre-upgrade validation (`gpuconform upgrade PLAN --to DRIVER`): the plan's suites on the
//! driver the cluster runs (baseline), the new driver asked for through the operator
//! (`helm upgrade --reuse-values --set driver.version=…`) and every GPU node followed through
//! the upgrade controller's states ([`watch`]), judged ([`timeline`], [`verdict`]), the suites
//! again expecting the new driver, and the baseline's benchmarks compared with the new ones.
//! The runner drives the phases (`runner::upgrade`); this room knows the states, the watch and
//! the verdicts, never the simulator.

pub mod timeline;
pub mod verdict;
pub mod watch;

use std::time::Duration;

use crate::plan::Plan;
use crate::plan::driver::{DriverExpect, DriverRule};

/// What `gpuconform upgrade` asks for, resolved from its flags.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The driver version to upgrade to.
    pub to: String,
    /// A chart version to move to at the same time (`--chart-version`).
    pub chart_version: Option<String>,
    /// Roll the release back and verify the old driver when the upgrade fails.
    pub rollback_on_failure: bool,
    /// Longest a node may stay in one upgrade state.
    pub state_timeout: Duration,
    /// Longest the whole upgrade may take.
    pub timeout: Duration,
}

/// The plan as the suites after the upgrade read it: the chart asks for `to` and every driver
/// expectation that named the old chart version (or none) now names `to`; expectations of
/// other drivers (host drivers the operator does not manage) stay.
pub fn after_plan(plan: &Plan, to: &str) -> Plan {
    let mut p = plan.clone();
    let from = plan.operator.driver_version();
    if let Some(obj) = p.operator.values.as_object_mut() {
        let driver = obj.entry("driver").or_insert_with(|| serde_json::json!({}));
        if let Some(d) = driver.as_object_mut() {
            d.insert("version".into(), serde_json::Value::String(to.into()));
        }
    }
    let upgraded = |r: &DriverRule| match (&r.expect, &from) {
        (DriverExpect::Exact(v), Some(f)) => v == f,
        _ => false,
    };
    let new_rule = |old: Option<&DriverRule>| DriverRule {
        expect: DriverExpect::Exact(to.into()),
        field: "upgrade --to".into(),
        file: old
            .map(|o| o.file.clone())
            .unwrap_or_else(|| plan.file.clone()),
        line: None,
    };
    match &p.expect_driver {
        Some(r) if !upgraded(r) => {}
        r => p.expect_driver = Some(new_rule(r.as_ref())),
    }
    p
}

/// A node's driver rule after the upgrade, by the same rule as [`after_plan`].
pub fn after_rule(rule: &Option<DriverRule>, plan: &Plan, to: &str) -> Option<DriverRule> {
    let from = plan.operator.driver_version();
    match rule {
        Some(r) if matches!((&r.expect, &from), (DriverExpect::Exact(v), Some(f)) if v == f) => {
            Some(DriverRule {
                expect: DriverExpect::Exact(to.into()),
                field: "upgrade --to".into(),
                file: r.file.clone(),
                line: None,
            })
        }
        other => other.clone(),
    }
}
