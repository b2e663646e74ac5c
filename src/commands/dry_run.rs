//! `gpuconform run --dry-run`: the preflight report, printed; nothing is created or changed.
//! On a `kubeconfig` target the cluster is asked everything the run depends on; a cluster the
//! run would create (local, EC2) does not exist yet, so only the plan is described.

use std::path::PathBuf;

use crate::catalog::Catalog;
use crate::operator::helm::Helm;
use crate::output::Printer;
use crate::plan::{Plan, Target};
use crate::preflight::{self, NodeRow, Report};
use crate::suite::Suite;
use crate::target::TargetFlags;
use crate::target::local::tools::Tools;

/// What the dry run works from.
pub struct DryRun<'a> {
    /// The plan, overrides applied.
    pub plan: &'a Plan,
    /// Its suites.
    pub suites: &'a [Suite],
    /// The instance catalog (GPU nodes' expectations).
    pub catalog: &'a Catalog,
    /// The tool cache (helm), when there is one.
    pub tools: Option<&'a Tools>,
    /// `--kubeconfig`, `--context`.
    pub flags: &'a TargetFlags,
    /// The run id the run would get (the default test namespace is named after it).
    pub run_id: &'a str,
}

/// Prints the report; the exit code is 0 when the run could proceed.
pub async fn dry_run(d: DryRun<'_>, printer: &Printer) -> u8 {
    let plan = d.plan;
    let (path, context) = match &plan.target {
        Target::Kubeconfig { path, context } => d.flags.resolve(path.as_ref(), context.as_ref()),
        Target::Local { fixture } => {
            printer.result(format!(
                "dry run of plan {}: a local cluster would be started from {}, the operator installed, suites {} run, everything torn down; nothing to ask a cluster that does not exist yet",
                plan.name,
                fixture.display(),
                plan.suites.join(", ")
            ));
            return crate::exit_codes::OK;
        }
        Target::Aws(spec) => {
            printer.result(format!(
                "dry run of plan {}: {} EC2 instances would be started in {}, suites {} run, everything torn down",
                plan.name,
                spec.pools.iter().map(|p| p.count).sum::<u32>(),
                spec.region,
                plan.suites.join(", ")
            ));
            if let Some(cost) = crate::target::cost_note(plan) {
                printer.result(cost);
            }
            return crate::exit_codes::OK;
        }
    };
    let report = gather(&d, path, context).await;
    printer.result(report.render().trim_end());
    report.exit_code()
}

async fn gather(d: &DryRun<'_>, path: Option<PathBuf>, context: Option<String>) -> Report {
    let plan = d.plan;
    let tests_ns = plan.test_namespace_name(d.run_id);
    let mut report = Report {
        plan: format!("{} ({})", plan.name, plan.file.display()),
        server: "(unknown)".into(),
        version: Err("not asked".into()),
        mode: plan.operator.mode,
        adopt: plan.operator.adopt,
        release: (
            plan.operator.release.clone(),
            plan.operator.namespace.clone(),
        ),
        found: Err("not asked".into()),
        test_namespace: (tests_ns.clone(), None),
        permissions: Vec::new(),
        nodes: Err("not asked".into()),
        bench_image: preflight::kinds(d.suites)
            .contains("throughput")
            .then(|| plan.bench_image.clone()),
    };
    let (path, context) = match crate::target::existing::with_in_cluster(path, context) {
        Ok(pc) => pc,
        Err(e) => {
            report.version = Err(crate::errors::chain(&e));
            return report;
        }
    };
    let config = match crate::target::existing::load_config(path.as_ref(), context.as_ref()).await {
        Ok(c) => c,
        Err(e) => {
            report.version = Err(crate::errors::chain(&e));
            return report;
        }
    };
    report.server = config.cluster_url.to_string();
    let timeout = std::time::Duration::from_secs(15);
    let connected =
        crate::target::existing::connect_with(config, path.clone(), context.clone(), timeout);
    let cluster = match connected.await {
        Ok(c) => c,
        Err(e) => {
            report.version = Err(crate::errors::chain(&e));
            return report;
        }
    };
    report.version = Ok(cluster.version.clone());
    let client = &cluster.client;
    let helm = Helm {
        bin: d
            .tools
            .map(|t| t.bin("helm"))
            .filter(|p| p.is_file())
            .unwrap_or_else(|| PathBuf::from("helm")),
        kubeconfig: path,
        context,
    };
    report.found = helm
        .status(&plan.operator)
        .await
        .map_err(|e| crate::errors::chain(&e));
    let tests_state = preflight::test_namespace_state(client, &tests_ns).await;
    let tests_exist = matches!(tests_state, Ok(Some(_)));
    report.test_namespace.1 = tests_state.ok().flatten();
    report.permissions =
        preflight::permissions(client, plan, d.suites, &tests_ns, tests_exist).await;
    let gpu_use = preflight::gpu_use(client, None)
        .await
        .map_err(|e| e.to_string());
    report.nodes = match cluster.gpu_nodes(d.catalog, &plan.expect).await {
        Ok(found) => {
            let mut rows: Vec<NodeRow> = found
                .unexpected
                .into_iter()
                .map(|u| NodeRow {
                    name: u.name.clone(),
                    expectation: Err(u.message()),
                    gpus: Err("not asked".into()),
                })
                .collect();
            for g in found.nodes {
                let gpus = match &gpu_use {
                    Ok(u) => u
                        .get(&g.name)
                        .copied()
                        .ok_or_else(|| "node gone".to_string()),
                    Err(e) => Err(e.clone()),
                };
                rows.push(NodeRow {
                    expectation: Ok(g.describe()),
                    name: g.name,
                    gpus,
                });
            }
            rows.sort_by(|a, b| a.name.cmp(&b.name));
            Ok(rows)
        }
        Err(e) => Err(e.to_string()),
    };
    report
}
