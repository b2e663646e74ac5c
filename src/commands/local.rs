//! `gpuconform local up|down|status`.

use crate::catalog::Catalog;
use crate::cli::{DirArgs, UpArgs};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::fixture::ClusterFixture;
use crate::local::tools::Tools;
use crate::local::{self, LocalCluster, StopReport, UpOptions};
use crate::output::Printer;

/// `local up`: validate everything first (nothing starts for a bad fixture), then start.
pub async fn up(args: UpArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let catalog = match &args.catalog {
        Some(path) => Catalog::load(path)?,
        None => Catalog::embedded()?,
    };
    let fixture = ClusterFixture::load(&args.fixture, &catalog)?;
    let tools = Tools::locate(&args.tools.clone().unwrap_or_else(Tools::default_dir))
        .map_err(local::LocalError::from)?;
    let opts = UpOptions {
        dir: args.dir.clone(),
        detach: !args.foreground,
        timeout: args.timeout,
    };
    let progress = |line: String| printer.progress(line);
    let mut cluster = LocalCluster::up(&fixture, &catalog, &tools, &opts, &progress).await?;
    let kubeconfig = cluster.dir.kubeconfig();
    printer.progress(format!(
        "cluster `{}` ready in {:.1}s: {} nodes, Kubernetes {}",
        cluster.state.cluster,
        cluster.state.ready_seconds,
        cluster.state.nodes.len(),
        cluster.state.kubernetes_version
    ));
    printer.result(format!("export KUBECONFIG={}", kubeconfig.display()));
    if !args.foreground {
        printer.progress(format!(
            "stop it with: gpuconform local down --dir {}",
            args.dir.display()
        ));
        return Ok(exit_codes::OK);
    }
    printer.progress("running in the foreground; Ctrl-C stops the cluster");
    let (code, why) = tokio::select! {
        sig = local::interrupt_signal() => (exit_codes::INTERRUPTED, format!("{sig} received")),
        (name, status) = cluster.any_exit() => (exit_codes::INFRA_ERROR, format!("{name} exited ({status})")),
    };
    printer.progress(format!("{why}; stopping the cluster"));
    let report = cluster.stop().await;
    finish_stop(&report, printer)?;
    Ok(code)
}

/// `local down`.
pub async fn down(args: DirArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let report = local::down(&args.dir).await?;
    finish_stop(&report, printer)?;
    Ok(exit_codes::OK)
}

fn finish_stop(report: &StopReport, printer: &Printer) -> Result<(), ExpectedError> {
    for (name, pid, outcome) in &report.processes {
        printer.progress(format!("{name} (pid {pid}): {outcome:?}"));
    }
    if report.is_clean() {
        printer.progress("stopped: no process and no port of the cluster is left");
        Ok(())
    } else {
        Err(ExpectedError::TeardownIncomplete(report.leftovers()))
    }
}

/// `local status`: exit 0 when every process is alive, 3 otherwise.
pub fn status(args: DirArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let (state, processes) = local::status(&args.dir)?;
    printer.result(format!(
        "cluster {} ({}), Kubernetes {}, API {}",
        state.cluster,
        state.fixture.display(),
        state.kubernetes_version,
        state.server
    ));
    printer.result(format!("kubeconfig {}", args.dir.join("kubeconfig").display()));
    printer.result(format!("nodes {}", state.nodes.join(", ")));
    let mut all_alive = true;
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
    Ok(if all_alive { exit_codes::OK } else { exit_codes::INFRA_ERROR })
}
