//! Command-line flags as the user typed them. Resolution into settings (reading fixtures,
//! locating tools) happens in `commands`, so parsing never fails on a file's content.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

/// Conformance and benchmark suite for GPU Kubernetes clusters.
#[derive(Debug, Parser)]
#[command(name = "gpuconform", version, about, long_about = None)]
pub struct Cli {
    /// Print only errors and results.
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output (repeat for debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a local cluster: a real control plane on loopback with simulated (kwok) nodes.
    #[command(subcommand)]
    Local(LocalCommand),
}

/// `gpuconform local ...`.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a cluster from a fixture and wait until every node is Ready.
    Up(UpArgs),
    /// Stop the cluster in a run folder; fails if a process or port is left.
    Down(DirArgs),
    /// Show the cluster in a run folder.
    Status(DirArgs),
}

/// Flags of `local up`.
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Cluster fixture to create nodes from.
    #[arg(long, short, default_value = "fixtures/clusters/seed.yaml")]
    pub fixture: PathBuf,
    /// Run folder (state, kubeconfig, certificates, logs).
    #[arg(long, default_value = "reports/local")]
    pub dir: PathBuf,
    /// Stay in the foreground and stop the cluster on Ctrl-C or SIGTERM.
    #[arg(long)]
    pub foreground: bool,
    /// Deadline for the cluster to become ready.
    #[arg(long, default_value = "180s", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Instance catalog (default: the one built into the binary).
    #[arg(long)]
    pub catalog: Option<PathBuf>,
    /// Tool cache (default: $GPUCONFORM_TOOLS or ~/.cache/gpuconform/tools).
    #[arg(long)]
    pub tools: Option<PathBuf>,
}

/// A run folder.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// Run folder of the cluster.
    #[arg(long, default_value = "reports/local")]
    pub dir: PathBuf,
}
