//! gpuconform: end-to-end conformance and benchmark suite for GPU Kubernetes clusters.
//!
//! A run goes plan → target → operator → suites → report (`docs/architecture.md` has the flow
//! and the import rules, which `tests/architecture.rs` checks). Where things live:
//! - `cli` — raw flags; `commands` — what each subcommand does; `errors` and `exit_codes` — how a
//!   failure reaches the user; `output` — the only writer of stdout and stderr; `signals` — the
//!   one SIGINT/SIGTERM listener.
//! - `builtin` — the shipped suites and default plan, built into the binary; `input` — YAML loading with file/line/field errors; `plan` and `suite` — the resolved plan
//!   and suites (`suite::kinds`: the check kinds); `catalog` — instance types and GPU models;
//!   `fixture` — cluster fixtures.
//! - `target` — where the cluster comes from (`local`, `aws`, `existing`) and how it goes;
//!   `operator` — the GPU Operator install and its removal; `runner` — the phases and the suite
//!   scheduler; `checks` — one module per check kind; `report` — the events, the run record they
//!   fold into, and the report files.
//! - `gpu_stack` — the GPU stack's names on the API, shared by `checks` and `sim`; `sim` — the GPU
//!   simulator for local clusters; `bench` — the CUDA bench run in pods.
//! - `k8s` — client and waits; `pki` and `kubeconfig` — certificates and kubeconfigs for clusters
//!   the harness builds.

pub mod bench;
pub mod builtin;
pub mod catalog;
pub mod certify;
pub mod checks;
pub mod cli;
pub mod commands;
pub mod compare;
pub mod errors;
pub mod exit_codes;
pub mod fixture;
pub mod gpu_stack;
pub mod input;
pub mod k8s;
pub mod kubeconfig;
pub mod operator;
pub mod output;
pub mod pki;
pub mod plan;
pub mod preflight;
pub mod report;
pub mod retrieve;
pub mod runner;
pub mod signals;
pub mod sim;
pub mod suite;
pub mod target;
pub mod upgrade;

use std::process::ExitCode;

use clap::Parser;

use output::{Printer, Verbosity};

/// Entry point of the `gpuconform` binary.
pub fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing(cli.verbose);
    let printer = Printer::new(if cli.quiet {
        Verbosity::Quiet
    } else {
        Verbosity::Normal
    });
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            printer.error(format!("error: failed to start the async runtime: {e}"));
            return ExitCode::from(exit_codes::INFRA_ERROR);
        }
    };
    match runtime.block_on(commands::dispatch(cli.command, &printer)) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            e.render(&printer);
            ExitCode::from(e.exit_code())
        }
    }
}

fn init_tracing(verbose: u8) {
    let default = match verbose {
        // kube-client logs every failed request at ERROR; the readiness probe expects failures
        // while the API server starts, and real errors reach the user as Results anyway.
        0 => "warn,kube_client::client::builder=off",
        1 => "info,kube=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
