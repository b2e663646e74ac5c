//! `gpuconform local up|down|status`.

use crate::catalog::Catalog;
use crate::cli::{DirArgs, Format, StatusArgs, UpArgs};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::fixture::ClusterFixture;
use crate::output::Printer;
use crate::target::local::tools::Tools;
use crate::target::local::{self, LocalCluster, StopReport, UpOptions};

mod supervise;

/// `local up`: validate everything first (nothing starts for a bad fixture), then start.
///
/// Without `--foreground` the cluster is run by a background `gpuconform local up --foreground`
/// (the supervisor): it is the parent of every component, reaps them, and stops them on SIGTERM
/// from `local down`; they die with it even if it is killed. This process forwards the
/// supervisor's progress and returns once the cluster is ready, with the supervisor's exit code
/// if it is not.
pub async fn up(args: UpArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let catalog = Catalog::resolve(&args.catalog)?;
    let fixture = ClusterFixture::load(&args.fixture, &catalog)?;
    let tools = Tools::locate(&args.tools.clone().unwrap_or_else(Tools::default_dir))
        .map_err(local::LocalError::from)?;
    if !args.foreground {
        return supervise::start_in_background(&args, printer).await;
    }
    let opts = UpOptions {
        dir: args.dir.clone(),
        timeout: args.timeout,
        companion: Some(std::sync::Arc::new(super::simulator::GpuSimulator)),
    };
    let progress = |line: String| printer.progress(line);
    let mut cluster = LocalCluster::up(&fixture, &catalog, &tools, &opts, &progress).await?;
    let kubeconfig = cluster.dir.kubeconfig();
    let supervised = std::env::var_os(local::SUPERVISED_ENV).is_some();
    // Under a supervisor the starting command prints the summary (from state.json), so it
    // always comes before that command exits.
    if !supervised {
        printer.progress(ready_line(&cluster.state));
    }
    printer.result(format!("export KUBECONFIG={}", kubeconfig.display()));
    if !supervised {
        printer.progress(
            "running in the foreground; Ctrl-C (or `gpuconform local down`) stops the cluster",
        );
    }
    let (code, why) = tokio::select! {
        sig = crate::signals::first() => (exit_codes::INTERRUPTED, format!("{sig} received")),
        (name, status) = cluster.any_exit() => (exit_codes::INFRA_ERROR, format!("{name} exited ({status})")),
    };
    printer.progress(format!("{why}; stopping the cluster"));
    let report = cluster.stop().await;
    finish_stop(&report, printer)?;
    Ok(code)
}

/// `cluster `seed` ready in 8.9s: 3 nodes, Kubernetes v1.35.4`.
pub(crate) fn ready_line(state: &crate::target::local::state::ClusterState) -> String {
    format!(
        "cluster `{}` ready in {:.1}s: {} nodes, Kubernetes {}",
        state.cluster,
        state.ready_seconds,
        state.nodes.len(),
        state.kubernetes_version
    )
}

/// `local down`.
pub async fn down(args: DirArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let report = local::down(&args.dir).await?;
    finish_stop(&report, printer)?;
    Ok(exit_codes::OK)
}

fn finish_stop(report: &StopReport, printer: &Printer) -> Result<(), ExpectedError> {
    for (name, pid, outcome) in &report.processes {
        printer.progress(format!("{name} (pid {pid}): {outcome}"));
    }
    if report.is_clean() {
        printer.progress("stopped: no process and no port of the cluster is left");
        Ok(())
    } else {
        Err(ExpectedError::TeardownIncomplete(report.leftovers()))
    }
}

/// `local status`: exit 0 when every process is alive, 3 otherwise.
pub fn status(flags: StatusArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let args = flags.dir;
    let (state, processes) = local::status(&args.dir)?;
    if flags.output == Format::Json {
        let supervisor_alive = state
            .supervisor
            .as_ref()
            .map(crate::target::local::process::is_ours);
        let all = supervisor_alive.unwrap_or(true) && processes.iter().all(|(_, a)| *a);
        printer.json(&serde_json::json!({
            "cluster": state.cluster,
            "fixture": state.fixture.display().to_string(),
            "kubernetesVersion": state.kubernetes_version,
            "server": state.server,
            "kubeconfig": args.dir.join("kubeconfig").display().to_string(),
            "nodes": state.nodes,
            "supervisor": state.supervisor.as_ref().map(|s| serde_json::json!({
                "name": s.name, "pid": s.pid, "running": supervisor_alive.unwrap_or(false),
            })),
            "processes": processes.iter().map(|(p, alive)| serde_json::json!({
                "name": p.name, "pid": p.pid, "running": alive, "ports": p.ports,
            })).collect::<Vec<_>>(),
            "running": all,
        }));
        return Ok(if all {
            exit_codes::OK
        } else {
            exit_codes::INFRA_ERROR
        });
    }
    printer.result(format!(
        "cluster {} ({}), Kubernetes {}, API {}",
        state.cluster,
        state.fixture.display(),
        state.kubernetes_version,
        state.server
    ));
    printer.result(format!(
        "kubeconfig {}",
        args.dir.join("kubeconfig").display()
    ));
    printer.result(format!("nodes {}", state.nodes.join(", ")));
    let mut all_alive = true;
    if let Some(sup) = &state.supervisor {
        let alive = crate::target::local::process::is_ours(sup);
        all_alive &= alive;
        printer.result(format!(
            "{:<24} pid {:<8} {}",
            sup.name,
            sup.pid,
            if alive { "running" } else { "gone" }
        ));
    }
    for (p, alive) in &processes {
        all_alive &= alive;
        let ports: Vec<String> = p.ports.iter().map(u16::to_string).collect();
        printer.result(format!(
            "{:<24} pid {:<8} {:<8} ports {}",
            p.name,
            p.pid,
            if *alive { "running" } else { "gone" },
            ports.join(",")
        ));
    }
    Ok(if all_alive {
        exit_codes::OK
    } else {
        exit_codes::INFRA_ERROR
    })
}
