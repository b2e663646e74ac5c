//! `gpuconform upgrade`: the phases between install and teardown — `baseline` (the plan's
//! suites on the driver the cluster runs, teardown suites held back), `upgrade` (the new driver
//! through helm, every GPU node followed through the upgrade controller's states and judged),
//! `rollback` (with `--rollback-on-failure`, when the upgrade failed), `after` (the suites again,
//! now expecting the new driver; only when the upgrade succeeded), the verdict (the baseline's benchmarks against the new ones),
//! and last the plan's teardown suites. Each phase's testcases form their own JUnit testsuites
//! (`baseline/<suite>`, `upgrade`, `after/<suite>`, `verdict`).

use std::time::Instant;

use k8s_openapi::api::core::v1::Node;
use kube::api::DynamicObject;
use kube::{Api, ResourceExt};
use serde_json::Value;

use super::Emitter;
use super::phase::Pass;
use crate::gpu_stack::operator::{DEPLOY_DRIVER, PRE_INSTALLED, cluster_policy};
use crate::gpu_stack::upgrade::State;
use crate::operator::InstallRecord;
use crate::plan::Plan;
use crate::report::events::Event;
use crate::report::upgrade::{Compared, VERDICT_CHECK};
use crate::report::{Case, Status};
use crate::signals::{self, Interrupts};
use crate::suite::{CheckKind, Suite};
use crate::target::GpuNode;
use crate::upgrade::timeline::{Policy, resolve_max_unavailable};
use crate::upgrade::verdict;
use crate::upgrade::watch::{self, End};

/// One upgrade run's inputs.
pub(super) struct Upgrade<'a> {
    pub(super) pass: &'a Pass<'a>,
    pub(super) plan: &'a Plan,
    pub(super) suites: &'a [Suite],
    pub(super) settings: &'a crate::upgrade::Settings,
    pub(super) gpu_nodes: &'a [GpuNode],
}

/// What the upgrade phase found, for the rollback and the phases after it.
struct Upgraded {
    failed: bool,
    interrupted: bool,
    /// The release's revision before the upgrade.
    before: Option<u64>,
    /// The GPU nodes whose driver the operator manages.
    nodes: Vec<String>,
    policy: Policy,
}

/// A suite that removes the operator runs once, at the end.
fn tears_down(s: &Suite) -> bool {
    s.steps
        .iter()
        .chain(&s.finally)
        .any(|st| matches!(st.check, CheckKind::Uninstall | CheckKind::Teardown))
}

fn renamed(s: &Suite, phase: &str) -> Suite {
    Suite {
        name: format!("{phase}/{}", s.name),
        ..s.clone()
    }
}

impl Upgrade<'_> {
    /// Runs the phases; `true` when a signal interrupted them.
    pub(super) async fn run(
        &self,
        install: &mut InstallRecord,
        em: &mut Emitter<'_>,
        interrupts: &mut Interrupts,
    ) -> bool {
        let plan = self.plan;
        let to = self.settings.to.as_str();
        let (checks, finals): (Vec<Suite>, Vec<Suite>) =
            self.suites.iter().cloned().partition(|s| !tears_down(s));
        let baseline: Vec<Suite> = checks.iter().map(|s| renamed(s, "baseline")).collect();
        if self
            .pass
            .run(
                "baseline",
                plan,
                self.gpu_nodes.to_vec(),
                install,
                &baseline,
                em,
                interrupts,
            )
            .await
        {
            return true;
        }
        let from = plan
            .operator
            .driver_version()
            .unwrap_or_else(|| "(chart default)".into());
        em.emit(Event::UpgradeStarted {
            from: from.clone(),
            to: to.into(),
        });

        let up = self.upgrade(install, em, interrupts).await;
        if up.interrupted {
            return true;
        }
        let failed = up.failed;
        let rolled_back = failed && self.settings.rollback_on_failure;
        if rolled_back && self.rollback(&from, &up, install, em, interrupts).await {
            return true;
        }
        if failed {
            // Nodes stuck or failed: the suites would time out step by step on them and
            // compare numbers from a half-upgraded cluster. The upgrade's verdict says it all.
            em.emit(Event::Note(format!(
                "the upgrade failed{}: the suites are not run again on driver {to}",
                if rolled_back {
                    " and was rolled back"
                } else {
                    ""
                }
            )));
        } else {
            let after = crate::upgrade::after_plan(plan, to);
            let nodes: Vec<GpuNode> = self
                .gpu_nodes
                .iter()
                .map(|g| GpuNode {
                    driver: crate::upgrade::after_rule(&g.driver, plan, to),
                    ..g.clone()
                })
                .collect();
            let again: Vec<Suite> = checks.iter().map(|s| renamed(s, "after")).collect();
            if self
                .pass
                .run("after", &after, nodes, install, &again, em, interrupts)
                .await
            {
                return true;
            }
            self.verdict(em, to);
        }
        if finals.is_empty() {
            return false;
        }
        self.pass
            .run(
                "suites",
                plan,
                self.gpu_nodes.to_vec(),
                install,
                &finals,
                em,
                interrupts,
            )
            .await
    }

    /// The GPU nodes whose driver the operator manages (a pre-installed host driver is not
    /// upgraded by it).
    async fn upgraded_nodes(&self) -> Vec<String> {
        let api: Api<Node> = Api::all(self.pass.client.clone());
        let listed = api.list(&Default::default()).await.map(|l| l.items);
        let pre_installed: Vec<String> = listed
            .iter()
            .flatten()
            .filter(|n| n.labels().get(DEPLOY_DRIVER).map(String::as_str) == Some(PRE_INSTALLED))
            .map(ResourceExt::name_any)
            .collect();
        self.gpu_nodes
            .iter()
            .map(|g| g.name.clone())
            .filter(|n| !pre_installed.contains(n))
            .collect()
    }

    /// Follows `nodes` while `kick` asks the release for a driver, until a signal.
    async fn follow<T, E>(
        &self,
        nodes: &[String],
        policy: &Policy,
        kick: impl std::future::Future<Output = Result<T, E>>,
        interrupts: &mut Interrupts,
    ) -> (Option<Result<T, E>>, watch::Seen) {
        let stop = async {
            signals::beyond(interrupts, 0).await;
        };
        watch::follow(
            self.pass.client.clone(),
            nodes,
            policy,
            self.settings.timeout,
            kick,
            Result::is_err,
            stop,
        )
        .await
    }

    /// `driver.upgradePolicy` as the plan's values give it, else as the ClusterPolicy has it,
    /// else the chart's defaults (1, `25%`); the source is said.
    async fn policy(&self, nodes: u32) -> (Policy, String) {
        let from_plan = self.plan.operator.values.pointer("/driver/upgradePolicy");
        let api: Api<DynamicObject> = Api::all_with(self.pass.client.clone(), &cluster_policy());
        let deployed = api
            .list(&Default::default())
            .await
            .ok()
            .and_then(|l| l.items.into_iter().next())
            .and_then(|p| p.data.pointer("/spec/driver/upgradePolicy").cloned());
        let read = |v: Option<&Value>, key: &str| v.and_then(|p| p.get(key)).cloned();
        let pick = |key: &str| {
            read(from_plan, key)
                .map(|v| (v, "the plan"))
                .or_else(|| read(deployed.as_ref(), key).map(|v| (v, "the ClusterPolicy")))
        };
        let (parallel, p_src) = pick("maxParallelUpgrades")
            .map(|(v, s)| (v.as_u64().unwrap_or(1) as u32, s))
            .unwrap_or((1, "the chart default"));
        let (unavailable, u_src) = pick("maxUnavailable")
            .map(|(v, s)| {
                let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                (text, s)
            })
            .unwrap_or(("25%".into(), "the chart default"));
        let policy = Policy {
            max_parallel: parallel,
            max_unavailable: resolve_max_unavailable(&unavailable, nodes),
            state_deadline: self.settings.state_timeout.as_secs_f64(),
        };
        let said = format!(
            "maxParallelUpgrades {parallel} ({p_src}), maxUnavailable {unavailable} of {nodes} GPU nodes = {} ({u_src}), {} per state",
            policy
                .max_unavailable
                .map_or("no limit".to_string(), |m| m.to_string()),
            humantime::format_duration(self.settings.state_timeout)
        );
        (policy, said)
    }

    /// The upgrade phase.
    async fn upgrade(
        &self,
        install: &mut InstallRecord,
        em: &mut Emitter<'_>,
        interrupts: &mut Interrupts,
    ) -> Upgraded {
        em.emit(Event::PhaseStarted("upgrade".into()));
        let t = Instant::now();
        let helm = self.pass.helm;
        let spec = &self.plan.operator;
        let to = &self.settings.to;
        let nodes = self.upgraded_nodes().await;
        let (policy, said) = self.policy(nodes.len() as u32).await;
        em.emit(Event::Note(format!("upgrade policy: {said}")));
        let before = helm.status(spec).await.ok().flatten().map(|r| r.revision);
        let what = format!(
            "helm upgrade {} --reuse-values --set-string driver.version={to}{}",
            spec.release,
            self.settings
                .chart_version
                .as_ref()
                .map(|v| format!(" --version {v}"))
                .unwrap_or_default()
        );
        let kick = helm.set_driver(
            spec,
            to,
            self.settings.chart_version.as_deref(),
            self.plan.timeouts.install,
        );
        let (kicked, seen) = self.follow(&nodes, &policy, kick, interrupts).await;
        let interrupted = seen.how == End::Interrupted;
        let helm_result = match kicked {
            Some(Ok(out)) => Ok(out),
            Some(Err(e)) => Err(crate::errors::chain(&e)),
            None => Err("did not finish before the watch ended".into()),
        };
        if helm_result.is_ok() {
            install.upgraded_to = helm.status(spec).await.ok().flatten().map(|r| r.revision);
        }
        let (watched, findings) = verdict::judged(&seen, &policy);
        let mut cases = vec![verdict::helm_case(&helm_result, &what)];
        if helm_result.is_ok() || interrupted {
            cases.extend(verdict::cases(&nodes, &seen, &watched, &findings));
        }
        if let Some(e) = &seen.error {
            em.emit(Event::Warning(format!("watch of the nodes: {e}")));
        }
        let failed = !interrupted
            && cases
                .iter()
                .any(|c| matches!(c.status, Status::Failed | Status::Error));
        for c in cases {
            em.emit(Event::Case(c));
        }
        let message = match seen.how {
            End::Interrupted => "interrupted: each node's last state is in the report".to_string(),
            _ if failed && watched.findings.is_empty() => {
                "failed: see the upgrade testcases".to_string()
            }
            _ if failed => format!("failed: {}", watched.findings.join("; ")),
            _ => format!(
                "{} GPU nodes on driver {to}, at most {} upgrading at once",
                nodes.len(),
                watched.most_upgrading
            ),
        };
        em.emit(Event::UpgradeWatched { watched, failed });
        em.phase("upgrade", !failed && !interrupted, message, t);
        Upgraded {
            failed,
            interrupted,
            before,
            nodes,
            policy,
        }
    }

    /// Back to the revision before the upgrade, every node followed again, then the old driver
    /// checked on every node's GFD label. `true` when interrupted.
    async fn rollback(
        &self,
        from: &str,
        up: &Upgraded,
        install: &mut InstallRecord,
        em: &mut Emitter<'_>,
        interrupts: &mut Interrupts,
    ) -> bool {
        em.emit(Event::PhaseStarted("rollback".into()));
        let t = Instant::now();
        let helm = self.pass.helm;
        let spec = &self.plan.operator;
        let Some(revision) = up.before else {
            let msg = "no revision before the upgrade is known: nothing to roll back to";
            em.emit(Event::Case(rollback_case(Status::Failed, Some(msg.into()))));
            em.emit(Event::UpgradeRolledBack(msg.into()));
            em.phase("rollback", false, msg.into(), t);
            return false;
        };
        let nodes = &up.nodes;
        let kick = helm.rollback(spec, revision, self.plan.timeouts.install);
        let (kicked, seen) = self.follow(nodes, &up.policy, kick, interrupts).await;
        if seen.how == End::Interrupted {
            em.phase("rollback", false, "interrupted".into(), t);
            return true;
        }
        install.upgraded_to = helm.status(spec).await.ok().flatten().map(|r| r.revision);
        let api: Api<Node> = Api::all(self.pass.client.clone());
        let listed = api.list(&Default::default()).await.map(|l| l.items);
        let mut wrong = Vec::new();
        for n in nodes {
            let node = listed.iter().flatten().find(|x| &x.name_any() == n);
            let label = |k: &str| {
                node.and_then(|x| x.labels().get(k).cloned())
                    .unwrap_or_else(|| "none".into())
            };
            let driver = label("nvidia.com/cuda.driver-version.full");
            let state = label(crate::gpu_stack::upgrade::STATE_LABEL);
            if driver != from || state != State::UpgradeDone.label() {
                wrong.push(format!("{n}: driver {driver}, upgrade state {state}"));
            }
        }
        let (status, msg) = match (kicked, wrong.is_empty()) {
            (Some(Err(e)), _) => (
                Status::Failed,
                format!(
                    "helm rollback to revision {revision}: {}",
                    crate::errors::chain(&e)
                ),
            ),
            (None, _) => (
                Status::Failed,
                format!("helm rollback to revision {revision} did not finish"),
            ),
            (Some(Ok(_)), true) => (
                Status::Passed,
                format!(
                    "rolled back to revision {revision}: driver {from} on all {} GPU nodes",
                    nodes.len()
                ),
            ),
            (Some(Ok(_)), false) => (
                Status::Failed,
                format!(
                    "rolled back to revision {revision}, but not every node runs {from}: {}",
                    wrong.join("; ")
                ),
            ),
        };
        let ok = status == Status::Passed;
        em.emit(Event::Case(rollback_case(
            status,
            (!ok).then(|| msg.clone()),
        )));
        em.emit(Event::UpgradeRolledBack(msg.clone()));
        em.phase("rollback", ok, msg, t);
        false
    }

    /// The baseline's benchmarks against the new driver's: one `verdict` testcase.
    fn verdict(&self, em: &mut Emitter<'_>, to: &str) {
        let record = em.recorder.snapshot();
        let Some(base) = record.upgrade.as_ref().map(|u| u.baseline.clone()) else {
            return;
        };
        if base.is_empty() && record.benchmarks.is_empty() {
            em.emit(Event::Note(
                "no benchmarks to compare: the plan runs no throughput suite".into(),
            ));
            return;
        }
        let settings = &self.plan.compare;
        let result = crate::compare::from_rows("baseline", &base).and_then(|b| {
            let n = crate::compare::from_rows("after", &record.benchmarks)?;
            let c = crate::compare::compare(&b, &n, settings)?;
            Ok((b, n, c))
        });
        let mut case = Case {
            suite: "verdict".into(),
            step: "verdict".into(),
            check: VERDICT_CHECK.into(),
            name: "benchmarks".into(),
            node: None,
            status: Status::Passed,
            message: None,
            detail: String::new(),
            warnings: Vec::new(),
            seconds: 0.0,
            diagnostics: Vec::new(),
            attempts: Vec::new(),
            layer: None,
        };
        match result {
            Err(e) => {
                case.status = Status::Error;
                case.message = Some(format!("the benchmarks cannot be compared: {e}"));
                em.emit(Event::Case(case));
            }
            Ok((b, n, c)) => {
                let ranked = c.worst_first();
                let rows: Vec<Compared> = ranked
                    .iter()
                    .map(|r| Compared {
                        id: r.id.clone(),
                        unit: r.unit.clone(),
                        before: r.base,
                        after: r.new,
                        verdict: r.verdict.word().into(),
                    })
                    .collect();
                let worse: Vec<String> = ranked
                    .iter()
                    .filter(|r| r.verdict == crate::compare::Verdict::Worse)
                    .map(|r| {
                        format!(
                            "{} {:.2} → {:.2} {} ({:+.1}%)",
                            r.id,
                            r.base,
                            r.new,
                            r.unit,
                            (r.ratio.ratio - 1.0) * 100.0
                        )
                    })
                    .collect();
                let md = crate::compare::markdown(&c, &b, &n, settings);
                case.detail = md.clone();
                let _ = std::fs::write(self.pass.run_dir.join("compare.md"), md);
                let _ = std::fs::write(
                    self.pass.run_dir.join("compare.html"),
                    crate::compare::html::html(&c, &b, &n, settings),
                );
                if !worse.is_empty() {
                    case.status = Status::Failed;
                    case.message = Some(format!("worse under driver {to}: {}", worse.join("; ")));
                }
                em.emit(Event::Case(case));
                em.emit(Event::UpgradeCompared {
                    regressed: c.regressed(),
                    rows,
                });
            }
        }
    }
}

fn rollback_case(status: Status, message: Option<String>) -> Case {
    verdict::case("rollback", None, status, message)
}
