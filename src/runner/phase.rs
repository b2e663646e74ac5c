//! One pass over suites as a phase of the run (`suites`; under `gpuconform upgrade` also
//! `baseline` and `after`): the checks' context, the scheduler per suite, the phase's line and
//! the diagnostics summary.

use std::path::PathBuf;
use std::time::Instant;

use kube::Client;

use super::{Emitter, suite};
use crate::catalog::Catalog;
use crate::checks::Ctx;
use crate::operator::InstallRecord;
use crate::operator::helm::Helm;
use crate::plan::Plan;
use crate::report::Phase;
use crate::report::events::Event;
use crate::signals::Interrupts;
use crate::suite::Suite;
use crate::target::GpuNode;

/// What every pass over the suites shares.
pub(crate) struct Pass<'a> {
    pub(crate) client: &'a Client,
    pub(crate) catalog: &'a Catalog,
    pub(crate) perf: &'a crate::bench::model::PerfTable,
    pub(crate) helm: &'a Helm,
    pub(crate) test_namespace: &'a str,
    pub(crate) run_id: &'a str,
    pub(crate) run_dir: &'a PathBuf,
}

impl Pass<'_> {
    /// Runs `suites` as the phase `name` against `plan` and `gpu_nodes`; `true` when a signal
    /// interrupted it.
    #[expect(
        clippy::too_many_arguments,
        reason = "what changes between passes (plan, nodes, install record, suites) and the run's two channels"
    )]
    pub(crate) async fn run(
        &self,
        name: &str,
        plan: &Plan,
        gpu_nodes: Vec<GpuNode>,
        install: &InstallRecord,
        suites: &[Suite],
        em: &mut Emitter<'_>,
        interrupts: &mut Interrupts,
    ) -> bool {
        em.emit(Event::PhaseStarted(name.into()));
        let t = Instant::now();
        let mut diag = suite::Diagnostics::default();
        let (events, mut from_checks) = tokio::sync::mpsc::unbounded_channel();
        let ctx = Ctx {
            perf: self.perf,
            events,
            client: self.client.clone(),
            catalog: self.catalog,
            plan,
            gpu_nodes,
            test_namespace: self.test_namespace.to_string(),
            run_id: self.run_id.to_string(),
            helm: self.helm,
            install,
            run_dir: self.run_dir.clone(),
        };
        let mut interrupted = false;
        for s in suites {
            let mut sched = suite::Scheduler {
                ctx: &ctx,
                em,
                interrupts,
                diag: &mut diag,
                from_checks: &mut from_checks,
            };
            interrupted |= sched.run(s).await;
        }
        let message = if interrupted {
            "interrupted".into()
        } else {
            format!("{} suites", suites.len())
        };
        em.phase(name, !interrupted, message, t);
        if diag.count > 0 {
            em.emit(Event::PhaseFinished(Phase {
                name: "diagnostics".into(),
                ok: true,
                message: format!(
                    "collected for {} failed testcases right after their step, see diagnostics/{}",
                    diag.count,
                    if diag.skipped > 0 {
                        format!(
                            "; not for {} more (the first {} of a run only)",
                            diag.skipped,
                            suite::DIAGNOSTICS_CAP
                        )
                    } else {
                        String::new()
                    }
                ),
                seconds: diag.seconds,
            }));
        }
        interrupted
    }
}
