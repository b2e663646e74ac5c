//! The suite scheduler: runs a suite's steps in order, then its `finally` steps; honours `needs`
//! (a cluster-wide failure skips the dependent step, a per-node failure skips only that node),
//! per-step timeouts and signals; collects diagnostics for a failed testcase right after its
//! step, before a later step (or teardown) changes the cluster.
//!
//! The decisions are pure functions ([`gate`], [`result_of`]) with table tests; [`Scheduler`]
//! only carries them out.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;

use tokio::sync::mpsc::UnboundedReceiver;

use super::Emitter;
use super::diagnostics;
use super::retry;
use crate::checks::{self, Ctx, Outcome};
use crate::report::events::Event;
use crate::report::{Case, Status};
use crate::signals::{self, Interrupts};
use crate::suite::{Step, Suite};

/// Failed testcases of one run that get full diagnostics: a cluster-wide outage on thousands
/// of nodes must give a report in seconds, not hours. The rest are counted in the phase.
pub const DIAGNOSTICS_CAP: usize = 20;
/// Diagnostics collected at once (each is a handful of API reads).
const DIAGNOSTICS_PARALLEL: usize = 8;

/// Time spent on diagnostics and for how many cases.
#[derive(Debug, Default)]
pub struct Diagnostics {
    /// Failed testcases diagnostics were collected for.
    pub count: usize,
    /// Failed testcases past the cap, without diagnostics.
    pub skipped: usize,
    /// Seconds spent collecting.
    pub seconds: f64,
}

/// Which failed testcases (indexes into `failed`) get diagnostics, when `already` were
/// collected earlier in the run and at most `cap` are collected in all.
pub fn diagnosed(failed: &[bool], already: usize, cap: usize) -> Vec<usize> {
    failed
        .iter()
        .enumerate()
        .filter(|(_, f)| **f)
        .map(|(i, _)| i)
        .take(cap.saturating_sub(already))
        .collect()
}

/// What a finished step means for the steps that need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepResult {
    /// It failed (or was skipped) as a whole: every dependent step is skipped.
    pub whole_failed: bool,
    /// Nodes it failed on (or skipped): dependent per-node steps skip these nodes.
    pub failed_nodes: BTreeSet<String>,
}

/// Whether and where a step runs, given what its `needs` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// It is skipped as a whole, for this reason.
    Skip(String),
    /// It runs, except on these nodes (node → reason).
    Run(BTreeMap<String, String>),
}

/// Decides a step from the results of the steps it needs. A `finally` step always runs, but
/// still skips the nodes an earlier step failed on. A need that has no result (it was not run)
/// counts as failed.
pub fn gate(step: &Step, is_finally: bool, results: &BTreeMap<String, StepResult>) -> Gate {
    let mut skip = None;
    let mut nodes = BTreeMap::new();
    for need in &step.needs {
        match results.get(need) {
            Some(r) if !r.whole_failed => {
                for n in &r.failed_nodes {
                    nodes.insert(n.clone(), format!("needs `{need}`, which failed on {n}"));
                }
            }
            _ => skip = Some(format!("needs `{need}`, which did not pass")),
        }
    }
    match skip {
        Some(why) if !is_finally => Gate::Skip(why),
        _ => Gate::Run(nodes),
    }
}

/// What a step's outcomes mean for later steps. `skipped`: the nodes the gate left out (they
/// count as failed for steps further down). A per-node step fails as a whole when it has
/// nothing to show or a cluster-wide outcome (no GPU nodes at all) failed.
pub fn result_of(
    per_node: bool,
    outcomes: &[Outcome],
    skipped: &BTreeMap<String, String>,
) -> StepResult {
    let bad = |o: &Outcome| matches!(o.status, Status::Failed | Status::Error);
    let mut failed_nodes: BTreeSet<String> = skipped.keys().cloned().collect();
    failed_nodes.extend(
        outcomes
            .iter()
            .filter(|o| bad(o))
            .filter_map(|o| o.node.clone()),
    );
    let whole_failed = if per_node {
        outcomes.is_empty() || outcomes.iter().any(|o| bad(o) && o.node.is_none())
    } else {
        outcomes.iter().any(bad)
    };
    StepResult {
        whole_failed,
        failed_nodes,
    }
}

/// Runs suites against one context.
pub struct Scheduler<'a, 'e, 'c> {
    /// What the checks work with.
    pub ctx: &'a Ctx<'c>,
    /// Where events go.
    pub(crate) em: &'a mut Emitter<'e>,
    /// The signal count.
    pub interrupts: &'a mut Interrupts,
    /// Diagnostics bookkeeping.
    pub diag: &'a mut Diagnostics,
    /// Events the checks sent (bench documents), passed on after each step.
    pub from_checks: &'a mut UnboundedReceiver<Event>,
}

impl Scheduler<'_, '_, '_> {
    /// Runs one suite; `true` when interrupted.
    pub async fn run(&mut self, suite: &Suite) -> bool {
        let ctx = self.ctx;
        let mut results: BTreeMap<String, StepResult> = BTreeMap::new();
        let mut interrupted = self.interrupts.borrow().count > 0;
        let all_nodes: Vec<String> = ctx.gpu_nodes.iter().map(|n| n.name.clone()).collect();
        // Per-node steps run, and their cases that were not skipped: a suite whose every
        // per-node case was skipped checked nothing, and must not pass for it.
        let (mut per_node_steps, mut checked) = (0usize, 0usize);
        let steps = suite
            .steps
            .iter()
            .map(|s| (s, false))
            .chain(suite.finally.iter().map(|s| (s, true)));
        for (step, is_finally) in steps {
            let per_node = step.check.per_node();
            if interrupted && !is_finally {
                self.skip_step(suite, step, "run interrupted", 0.0);
                continue;
            }
            let skipped = match gate(step, is_finally, &results) {
                Gate::Skip(why) => {
                    let outcomes = if per_node {
                        all_nodes
                            .iter()
                            .map(|n| Outcome::skip(n.clone(), Some(n), why.clone()))
                            .collect()
                    } else {
                        vec![Outcome::skip(step.name.clone(), None, why)]
                    };
                    results.insert(
                        step.name.clone(),
                        StepResult {
                            whole_failed: true,
                            failed_nodes: BTreeSet::new(),
                        },
                    );
                    for o in outcomes {
                        self.em.emit(Event::Case(case(suite, step, o, 0.0)));
                    }
                    continue;
                }
                Gate::Run(skipped) => skipped,
            };
            self.em.emit(Event::StepStarted {
                suite: suite.name.clone(),
                step: step.name.clone(),
                check: step.check.name().into(),
            });
            let timeout = step
                .timeout
                .unwrap_or_else(|| step.check.default_timeout(&ctx.plan.timeouts));
            let t = Instant::now();
            let deadline = t + timeout;
            let only: Vec<String> = all_nodes
                .iter()
                .filter(|n| !skipped.contains_key(*n))
                .cloned()
                .collect();
            // A signal that came in between steps counts too; after an interrupt only a
            // further signal stops a `finally` step.
            let current = self.interrupts.borrow_and_update().count;
            if current > 0 && !interrupted && !is_finally {
                interrupted = true;
                self.skip_step(suite, step, "run interrupted", 0.0);
                continue;
            }
            let seen = if is_finally { current } else { 0 };
            let outcomes = tokio::select! {
                o = checks::run(step, ctx, deadline, &only) => Some(o),
                _ = signals::beyond(self.interrupts, seen) => None,
            };
            let seconds = t.elapsed().as_secs_f64();
            while let Ok(e) = self.from_checks.try_recv() {
                self.em.emit(e);
            }
            let Some(mut outcomes) = outcomes else {
                interrupted = true;
                self.skip_step(suite, step, "interrupted while running", seconds);
                results.insert(
                    step.name.clone(),
                    StepResult {
                        whole_failed: true,
                        failed_nodes: BTreeSet::new(),
                    },
                );
                continue;
            };
            // `retries:` — each failed testcase's check again, on its node only.
            let mut history = BTreeMap::new();
            let mut seconds = seconds;
            for attempt in 1..=step.retries {
                let bad = retry::failing(&outcomes);
                if bad.is_empty() || self.interrupts.borrow().count > seen {
                    break;
                }
                let again_on = retry::nodes(&outcomes, &bad, per_node, &only);
                self.em.emit(Event::Note(format!(
                    "{}/{}: {} failed testcases, retry {attempt} of {}",
                    suite.name,
                    step.name,
                    bad.len(),
                    step.retries
                )));
                let t = Instant::now();
                let again = tokio::select! {
                    o = checks::run(step, ctx, t + timeout, &again_on) => Some(o),
                    _ = signals::beyond(self.interrupts, seen) => None,
                };
                while let Ok(e) = self.from_checks.try_recv() {
                    self.em.emit(e);
                }
                let took = t.elapsed();
                seconds += took.as_secs_f64();
                let Some(again) = again else {
                    break;
                };
                retry::merge(&mut outcomes, &bad, again, took, &mut history);
            }
            if per_node {
                for (n, why) in &skipped {
                    outcomes.push(Outcome::skip(n.clone(), Some(n), why.clone()));
                }
                per_node_steps += 1;
                checked += outcomes
                    .iter()
                    .filter(|o| o.status != crate::report::Status::Skipped)
                    .count();
            }
            results.insert(step.name.clone(), result_of(per_node, &outcomes, &skipped));
            self.emit_outcomes(suite, step, outcomes, seconds, history)
                .await;
        }
        if let Some(c) = nothing_checked(
            suite,
            per_node_steps,
            checked,
            interrupted,
            ctx.plan.allow_nothing_checked,
        ) {
            self.em.emit(Event::Case(c));
        }
        interrupted
    }

    fn skip_step(&mut self, suite: &Suite, step: &Step, why: &str, seconds: f64) {
        let o = Outcome::skip(step.name.clone(), None, why);
        self.em.emit(Event::Case(case(suite, step, o, seconds)));
    }

    /// Emits the step's testcases, collecting diagnostics for each failed one first.
    async fn emit_outcomes(
        &mut self,
        suite: &Suite,
        step: &Step,
        outcomes: Vec<Outcome>,
        seconds: f64,
        mut history: BTreeMap<String, Vec<crate::report::Attempt>>,
    ) {
        use futures::StreamExt as _;
        let ctx = self.ctx;
        let namespaces = [
            ctx.plan.operator.namespace.as_str(),
            ctx.test_namespace.as_str(),
        ];
        // The step's wall time shared by its testcases (they ran at once), so a suite's time
        // is the sum of its testcases' and does not grow with the node count.
        let share = seconds / outcomes.len().max(1) as f64;
        let mut cases: Vec<Case> = outcomes
            .into_iter()
            .map(|o| {
                let attempts = history.remove(&o.subject).unwrap_or_default();
                let mut c = case(suite, step, o, share);
                c.attempts = attempts;
                c
            })
            .collect();
        let failed: Vec<bool> = cases
            .iter()
            .map(|c| matches!(c.status, Status::Failed | Status::Error))
            .collect();
        // After a signal the run only tears down: no diagnostics.
        let seen = self.interrupts.borrow().count;
        let picks = if seen > 0 {
            Vec::new()
        } else {
            diagnosed(&failed, self.diag.count, DIAGNOSTICS_CAP)
        };
        if !picks.is_empty() {
            self.em.emit(Event::Note(format!(
                "collecting diagnostics for {} failed testcases of {}/{}",
                picks.len(),
                suite.name,
                step.name
            )));
        }
        let t = Instant::now();
        let work = futures::stream::iter(picks.iter().map(|&i| {
            let c = &cases[i];
            let ns = &namespaces;
            async move {
                (
                    i,
                    diagnostics::collect(&ctx.client, &ctx.run_dir, c, ns).await,
                )
            }
        }))
        .buffer_unordered(DIAGNOSTICS_PARALLEL)
        .collect::<Vec<_>>();
        // A signal stops collecting at once; the scheduler then skips what is left.
        let collected = tokio::select! {
            r = work => r,
            _ = signals::beyond(self.interrupts, seen) => Vec::new(),
        };
        self.diag.seconds += t.elapsed().as_secs_f64();
        self.diag.count += picks.len();
        for (i, rel) in collected {
            if let Some(rel) = rel {
                cases[i].diagnostics.push(rel);
            }
        }
        // Failed cases the cap left out say so (a picked case whose collection failed does not).
        for (i, c) in cases.iter_mut().enumerate() {
            if failed[i] && !picks.contains(&i) && seen == 0 {
                self.diag.skipped += 1;
                c.detail.push_str(&format!(
                    "\n\n(no diagnostics: the run collects them for its first {DIAGNOSTICS_CAP} failed testcases)"
                ));
            }
        }
        for c in cases {
            self.em.emit(Event::Case(c));
        }
    }
}

/// The testcase for one outcome of a step: `<step>/<subject>` unless the subject is the step.
/// The failing case of a suite that ran per-node steps but checked nothing on any node (every
/// case skipped: a skipped metric, a node left out by `needs`), unless the plan allows it.
pub fn nothing_checked(
    suite: &Suite,
    per_node_steps: usize,
    checked: usize,
    interrupted: bool,
    allowed: bool,
) -> Option<Case> {
    if per_node_steps == 0 || checked > 0 || interrupted || allowed {
        return None;
    }
    Some(Case {
        suite: suite.name.clone(),
        step: "nothing-checked".into(),
        check: "suite".into(),
        name: "nothing-checked".into(),
        node: None,
        status: crate::report::Status::Failed,
        message: Some(format!(
            "every per-node case of suite {} was skipped: nothing was checked (set `allowNothingChecked: true` in the plan to accept that)",
            suite.name
        )),
        detail: "no diagnostics: this case sums up the suite's cases, which were all skipped (each says why)".into(),
        warnings: Vec::new(),
        seconds: 0.0,
        diagnostics: Vec::new(),
        attempts: Vec::new(),
        layer: None,
    })
}

pub fn case(suite: &Suite, step: &Step, o: Outcome, seconds: f64) -> Case {
    let name = if o.subject == step.name {
        step.name.clone()
    } else {
        format!("{}/{}", step.name, o.subject)
    };
    Case {
        suite: suite.name.clone(),
        step: step.name.clone(),
        check: step.check.name().into(),
        name,
        node: o.node,
        status: o.status,
        message: o.message,
        detail: o.detail,
        warnings: o.warnings,
        seconds,
        diagnostics: Vec::new(),
        attempts: Vec::new(),
        layer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::suite::CheckKind;

    #[test]
    fn a_suite_that_checked_nothing_fails_unless_allowed() {
        let suite = Suite {
            file: "suites/throughput.yaml".into(),
            name: "throughput".into(),
            description: None,
            steps: Vec::new(),
            finally: Vec::new(),
        };
        // (per-node steps, cases checked, interrupted, allowed, fails)
        let rows = [
            (1, 0, false, false, true),
            (1, 3, false, false, false),
            (0, 0, false, false, false),
            (1, 0, true, false, false),
            (1, 0, false, true, false),
        ];
        for (steps, checked, interrupted, allowed, fails) in rows {
            let c = nothing_checked(&suite, steps, checked, interrupted, allowed);
            assert_eq!(
                c.is_some(),
                fails,
                "{steps} {checked} {interrupted} {allowed}"
            );
            if let Some(c) = c {
                assert_eq!(c.status, crate::report::Status::Failed);
                assert!(
                    c.message
                        .unwrap_or_default()
                        .contains("suite throughput was skipped")
                );
            }
        }
    }

    fn step(name: &str, needs: &[&str]) -> Step {
        Step {
            name: name.into(),
            check: CheckKind::Labels,
            needs: needs.iter().map(|s| s.to_string()).collect(),
            params: BTreeMap::new(),
            timeout: None,
            retries: 0,
        }
    }

    fn res(whole: bool, nodes: &[&str]) -> StepResult {
        StepResult {
            whole_failed: whole,
            failed_nodes: nodes.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn run_except(nodes: &[(&str, &str)]) -> Gate {
        Gate::Run(
            nodes
                .iter()
                .map(|(n, need)| {
                    (
                        n.to_string(),
                        format!("needs `{need}`, which failed on {n}"),
                    )
                })
                .collect(),
        )
    }

    #[test]
    fn gate_table() {
        let results: BTreeMap<String, StepResult> = [
            ("ok", res(false, &[])),
            ("cluster-failed", res(true, &[])),
            ("node-a-failed", res(false, &["a"])),
            ("nodes-ab-failed", res(false, &["a", "b"])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let skip = |need: &str| Gate::Skip(format!("needs `{need}`, which did not pass"));
        let cases: Vec<(&[&str], bool, Gate)> = vec![
            (&[], false, run_except(&[])),
            (&["ok"], false, run_except(&[])),
            (&["cluster-failed"], false, skip("cluster-failed")),
            // A `finally` step runs whatever its needs did.
            (&["cluster-failed"], true, run_except(&[])),
            (&["never-ran"], false, skip("never-ran")),
            (
                &["node-a-failed"],
                false,
                run_except(&[("a", "node-a-failed")]),
            ),
            (
                &["node-a-failed"],
                true,
                run_except(&[("a", "node-a-failed")]),
            ),
            (
                &["node-a-failed", "nodes-ab-failed"],
                false,
                run_except(&[("a", "nodes-ab-failed"), ("b", "nodes-ab-failed")]),
            ),
            (&["ok", "cluster-failed"], false, skip("cluster-failed")),
            (
                &["node-a-failed", "cluster-failed"],
                false,
                skip("cluster-failed"),
            ),
        ];
        for (needs, is_finally, want) in cases {
            assert_eq!(
                gate(&step("s", needs), is_finally, &results),
                want,
                "needs {needs:?}, finally {is_finally}"
            );
        }
    }

    #[test]
    fn diagnostics_stop_at_the_cap() {
        let f = [true, false, true, true, false, true];
        assert_eq!(diagnosed(&f, 0, 20), vec![0, 2, 3, 5]);
        assert_eq!(diagnosed(&f, 18, 20), vec![0, 2], "two left under the cap");
        assert_eq!(diagnosed(&f, 20, 20), Vec::<usize>::new());
        assert_eq!(diagnosed(&f, 25, 20), Vec::<usize>::new());
        assert_eq!(diagnosed(&[false, false], 0, 20), Vec::<usize>::new());
    }

    #[test]
    fn result_table() {
        let pass = |n: Option<&str>| Outcome::pass("x", n, "");
        let fail = |n: Option<&str>| Outcome::fail("x", n, "m", "");
        let err = |n: Option<&str>| Outcome::error("x", n, "m");
        let skip = |n: Option<&str>| Outcome::skip("x", n, "m");
        let none = BTreeMap::new();
        let skipped_c: BTreeMap<String, String> = [("c".to_string(), "why".to_string())].into();
        type Row<'a> = (bool, Vec<Outcome>, &'a BTreeMap<String, String>, StepResult);
        let cases: Vec<Row> = vec![
            (
                true,
                vec![pass(Some("a")), pass(Some("b"))],
                &none,
                res(false, &[]),
            ),
            (
                true,
                vec![pass(Some("a")), fail(Some("b"))],
                &none,
                res(false, &["b"]),
            ),
            (true, vec![err(Some("a"))], &none, res(false, &["a"])),
            // A skipped node is not a failure of the step, and not of the node.
            (true, vec![skip(Some("a"))], &none, res(false, &[])),
            // Nothing to show, or a cluster-wide failure (no GPU nodes): the whole step failed.
            (true, vec![], &none, res(true, &[])),
            (true, vec![fail(None)], &none, res(true, &[])),
            // Nodes the gate left out stay failed further down.
            (true, vec![pass(Some("a"))], &skipped_c, res(false, &["c"])),
            (false, vec![pass(None)], &none, res(false, &[])),
            (false, vec![pass(None), fail(None)], &none, res(true, &[])),
            (false, vec![], &none, res(false, &[])),
        ];
        for (i, (per_node, outcomes, skipped, want)) in cases.into_iter().enumerate() {
            assert_eq!(result_of(per_node, &outcomes, skipped), want, "row {i}");
        }
    }
}
