//! Running a local cluster in the background: `local up` starts `local up --foreground` as a
//! detached supervisor and relays its output until the cluster is ready.

use std::process::Stdio;

use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::UpArgs;
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::output::Printer;
use crate::target::local::{self, LocalError, SUPERVISED_ENV};

/// Starts the supervisor and returns when it reports the cluster ready (its first stdout line)
/// or exits. Ctrl-C here is passed on to the supervisor, which stops what it started.
pub async fn start_in_background(args: &UpArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let exe = std::env::current_exe().map_err(|source| LocalError::Io {
        path: "current executable".into(),
        source,
    })?;
    let mut cmd = tokio::process::Command::new(&exe);
    cmd.args(["local", "up", "--foreground"])
        .arg("--fixture")
        .arg(&args.fixture)
        .arg("--dir")
        .arg(&args.dir)
        .arg("--timeout")
        .arg(humantime::format_duration(args.timeout).to_string());
    for c in &args.catalog {
        cmd.arg("--catalog").arg(c);
    }
    if let Some(t) = &args.tools {
        cmd.arg("--tools").arg(t);
    }
    if printer.is_quiet() {
        cmd.arg("--quiet");
    }
    cmd.env(SUPERVISED_ENV, "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own process group: a Ctrl-C in this terminal reaches only us, and we decide.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = cmd.spawn().map_err(|source| {
        LocalError::Process(local::process::ProcessError::Spawn {
            name: "gpuconform supervisor".into(),
            exe: exe.clone(),
            source,
        })
    })?;
    let (Some(stdout), Some(stderr)) = (child.stdout.take(), child.stderr.take()) else {
        return Err(LocalError::Interrupted("lost the supervisor's output").into());
    };
    let mut out = BufReader::new(stdout).lines();
    let mut err = BufReader::new(stderr).lines();
    let mut err_open = true;
    let interrupted = crate::signals::first();
    let mut interrupted = std::pin::pin!(interrupted);
    loop {
        tokio::select! {
            line = out.next_line() => match line {
                Ok(Some(line)) => {
                    if let Ok((state, _)) = local::status(&args.dir) {
                        printer.progress(super::ready_line(&state));
                    }
                    printer.result(line);
                    printer.progress(format!(
                        "cluster runs in the background (supervisor pid {}); stop it with: gpuconform local down --dir {}",
                        child.id().unwrap_or(0),
                        args.dir.display()
                    ));
                    return Ok(exit_codes::OK);
                }
                _ => break,
            },
            line = err.next_line(), if err_open => match line {
                Ok(Some(line)) => printer.error(line),
                _ => err_open = false,
            },
            sig = &mut interrupted => {
                printer.progress(format!("{sig} received; stopping the cluster"));
                if let Some(pid) = child.id().and_then(|p| i32::try_from(p).ok()) {
                    forward_term(pid);
                }
                while let Ok(Some(line)) = err.next_line().await {
                    printer.error(line);
                }
                let _ = child.wait().await;
                return Ok(exit_codes::INTERRUPTED);
            }
        }
    }
    // The supervisor closed stdout without a result: it failed and said why on stderr.
    while let Ok(Some(line)) = err.next_line().await {
        printer.error(line);
    }
    let code = match child.wait().await {
        Ok(status) => status
            .code()
            .and_then(|c| u8::try_from(c).ok())
            .unwrap_or(exit_codes::INFRA_ERROR),
        Err(_) => exit_codes::INFRA_ERROR,
    };
    Ok(if code == exit_codes::OK {
        exit_codes::INFRA_ERROR
    } else {
        code
    })
}

#[expect(unsafe_code, reason = "kill(2) to pass SIGTERM on to our own child")]
fn forward_term(pid: i32) {
    // SAFETY: plain syscall on a child we spawned and have not reaped.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
}
