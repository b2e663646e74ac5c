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
    /// Write a commented, verify-only starter plan for an existing cluster: the operator where
    /// it runs, the driver and an `expect` entry per GPU node group it finds, to be confirmed.
    Init(InitArgs),
    /// Run a plan: provision, install the GPU Operator, run the suites, tear down, write reports.
    Run(RunArgs),
    /// Check plans, suites and cluster fixtures; every error with file, line and field.
    Lint(LintArgs),
    /// Show the suites, their steps, and the check kinds.
    List(ListArgs),
    /// Find EC2 resources gpuconform created whose expiry passed (or of one run) and delete them
    /// with --yes; a dry run by default.
    Sweep(SweepArgs),
    /// Compare two runs' benchmarks: better, same, worse or inconclusive per benchmark, from the
    /// raw samples; exit 5 when any got worse.
    Compare(CompareArgs),
    /// An HTML page of each benchmark's median and p5–p95 over the runs in these folders.
    Trend(TrendArgs),
    /// Pre-upgrade validation: the plan's suites on the current driver, the new driver through
    /// the operator's upgrade controller (every node's state watched), the suites again, and the
    /// benchmarks compared; exit 6 when the upgrade fails, 5 on a regression.
    Upgrade(UpgradeArgs),
    /// Check a certification bundle folder: every file against SHA256SUMS, the signature (with
    /// --key), and that its JUnit, results.json and PRODUCT.yaml agree; exit 1 naming each
    /// problem.
    Verify(VerifyArgs),
    /// Vendor certification: run the plan under the strict profile (every required check, no
    /// skips, pinned versions, explicit expectations, real GPUs) and write a checksummed,
    /// optionally signed bundle with PRODUCT.yaml, the inventory and the AI-conformance
    /// checklist; exit 1 when the run does not certify.
    Certify(CertifyArgs),
    /// Copy a finished in-cluster run's reports (the chart's CronJob) off its volume into
    /// --out/<run-id>/: a short-lived pod mounts the claim read-only and `tar` streams the
    /// folder out through pods/exec; the pod is deleted whatever happens.
    Retrieve(RetrieveArgs),
    /// Print the JSON Schema of plan or suite files (generated from the types that read them),
    /// or of the events file or the bench document.
    Schema(SchemaArgs),
    /// Print a shell completion script: `gpuconform completions bash > /etc/bash_completion.d/gpuconform`.
    Completions(CompletionsArgs),
    /// Print the man page (roff), or write one page per command into --out.
    Man(ManArgs),
}

/// Flags of `retrieve`.
#[derive(Debug, Args)]
pub struct RetrieveArgs {
    /// Kubeconfig of the cluster (default: kubectl's: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig.
    #[arg(long)]
    pub context: Option<String>,
    /// The namespace the chart was installed into.
    #[arg(long, short, default_value = "gpuconform-tests")]
    pub namespace: String,
    /// The chart's release name (its CronJob, and its `<release>-summary` ConfigMap).
    #[arg(long, default_value = "gpuconform")]
    pub release: String,
    /// The run to copy (default: the last finished one, from the summary ConfigMap).
    #[arg(long)]
    pub run: Option<String>,
    /// Where the run's folder goes.
    #[arg(long, short, default_value = "reports")]
    pub out: PathBuf,
    /// Replace a folder of the same run already in --out.
    #[arg(long)]
    pub force: bool,
    /// The helper pod's image: it needs `sleep` and `tar` (the gpuconform image has neither).
    #[arg(long, default_value = "busybox:1.37.0")]
    pub image: String,
    /// How long the helper pod may take to start and the copy to finish.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub timeout: std::time::Duration,
}

/// Flags of `schema`.
#[derive(Debug, Args)]
pub struct SchemaArgs {
    /// Which file's schema.
    #[arg(value_enum)]
    pub of: SchemaOf,
}

/// The files `gpuconform schema` describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaOf {
    /// A plan (`plans/*.yaml`, `gpuconform init`'s output).
    Plan,
    /// A suite (`suites/*.yaml`).
    Suite,
    /// One line of the `--events` file.
    Events,
    /// The bench's JSON document.
    Bench,
}

/// Flags of `completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// Flags of `man`.
#[derive(Debug, Args)]
pub struct ManArgs {
    /// Write `gpuconform.1` and a `gpuconform-<command>.1` per command into this folder instead.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Flags of `init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    /// Kubeconfig of the cluster (default: kubectl's: $KUBECONFIG, ~/.kube/config, in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig.
    #[arg(long)]
    pub context: Option<String>,
    /// Where to write the plan (`-`: standard output); an existing file is kept unless --force.
    #[arg(long, short, default_value = "gpuconform.yaml")]
    pub out: PathBuf,
    /// Replace the file at --out.
    #[arg(long)]
    pub force: bool,
    /// Catalog file merged over the built-in one (repeatable), as `run --catalog` does.
    #[arg(long)]
    pub catalog: Vec<PathBuf>,
}

/// Flags of `certify`.
#[derive(Debug, Args)]
pub struct CertifyArgs {
    /// Accept simulated GPUs (a local cluster); the bundle then says "NOT A CERTIFICATION:
    /// simulated" in its title and metadata.
    #[arg(long)]
    pub allow_simulated: bool,
    /// Sign SHA256SUMS with this ed25519 private key (PEM, as `openssl genpkey -algorithm
    /// ed25519` writes it).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
    /// Everything `run` takes.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The bundle folder.
    pub bundle: PathBuf,
    /// The signer's ed25519 public key (PEM, as `openssl pkey -pubout` writes it).
    #[arg(long)]
    pub key: Option<PathBuf>,
}

/// Flags of `upgrade`.
#[derive(Debug, Args)]
pub struct UpgradeArgs {
    /// The driver version to upgrade to (`595.91.07`).
    #[arg(long, value_name = "DRIVER")]
    pub to: String,
    /// Also move the operator chart to this version.
    #[arg(long)]
    pub chart_version: Option<String>,
    /// When the upgrade fails, roll the release back to the revision before it and verify
    /// the old driver is back on every node.
    #[arg(long)]
    pub rollback_on_failure: bool,
    /// Longest a node may stay in one upgrade state (waiting its turn does not count).
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub state_timeout: Duration,
    /// Longest the whole upgrade may take.
    #[arg(long = "upgrade-timeout", default_value = "2h", value_parser = humantime::parse_duration)]
    pub timeout: Duration,
    /// Everything `run` takes.
    #[command(flatten)]
    pub run: RunArgs,
}

/// Flags of `trend`.
#[derive(Debug, Args)]
pub struct TrendArgs {
    /// Run folders or reports folders (every run folder in them).
    #[arg(required = true)]
    pub dirs: Vec<PathBuf>,
    /// Where to write the page.
    #[arg(long, default_value = "trend.html")]
    pub out: PathBuf,
}

/// Flags of `compare`.
#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The base run: a results.json, a run folder, or a reports folder (its newest passing run
    /// with benchmarks).
    pub base: PathBuf,
    /// The new run: a results.json, a run folder, or a reports folder (its newest run).
    pub new: PathBuf,
    /// The smallest change that counts, in percent.
    #[arg(long, default_value_t = 3.0)]
    pub threshold: f64,
    /// A metric's own threshold in percent, `METRIC=PCT` (repeatable), e.g. `h2d=6`.
    #[arg(long = "metric-threshold", value_parser = parse_metric_threshold)]
    pub metric_thresholds: Vec<(String, f64)>,
    /// Confidence of the interval, in percent.
    #[arg(long, default_value_t = 95.0)]
    pub confidence: f64,
    /// Write compare.md, compare.html and compare.junit.xml into this folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Output format (json: the comparison, every row's ratio, interval and verdict).
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

fn parse_metric_threshold(s: &str) -> Result<(String, f64), String> {
    let (m, v) = s
        .split_once('=')
        .ok_or("expected METRIC=PERCENT, e.g. h2d=6")?;
    let known: Vec<&str> = crate::bench::Metric::ALL
        .iter()
        .map(|m| m.key())
        .chain(["peerSlowest"])
        .collect();
    if !known.contains(&m) {
        return Err(format!(
            "unknown metric `{m}` (known: {})",
            known.join(", ")
        ));
    }
    let v: f64 = v.parse().map_err(|e| format!("`{v}`: {e}"))?;
    Ok((m.to_string(), v))
}

/// Flags of `sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Regions to search (repeatable); default $AWS_REGION.
    #[arg(long = "region", env = "AWS_REGION", value_delimiter = ',')]
    pub regions: Vec<String>,
    /// Only this run's resources, expired or not.
    #[arg(long)]
    pub run_id: Option<String>,
    /// Delete what was found (without it, only list).
    #[arg(long)]
    pub yes: bool,
    /// Output format (json: what was found and what was left, per region, once done).
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// Flags of `run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Plan file.
    #[arg(default_value = "plans/local.yaml")]
    pub plan: PathBuf,
    /// Kubeconfig for a `kubeconfig` target (overrides the plan; like kubectl's flag).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Context in the kubeconfig (overrides the plan).
    #[arg(long)]
    pub context: Option<String>,
    /// A YAML file merged over the plan (repeatable; later files win), like helm's `-f`.
    #[arg(short = 'f', long = "values", value_name = "FILE")]
    pub overlays: Vec<PathBuf>,
    /// One plan field, e.g. `operator.values.driver.version=580.95.05` (repeatable; applied
    /// after the `-f` files, later wins; the value is YAML, so quote `"1.0"` to keep a string).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Namespace for the harness's pods (overrides the plan's `testNamespace.name`). One that
    /// exists is used as it is and never deleted.
    #[arg(long, short = 'n')]
    pub namespace: Option<String>,
    /// Change nothing: say what the run would do on the cluster and whether it can (API,
    /// permissions, GPU nodes, release, test namespace); exit 0 when it could proceed.
    #[arg(long)]
    pub dry_run: bool,
    /// Report root folder (overrides the plan's `reports`).
    #[arg(long)]
    pub reports: Option<PathBuf>,
    /// Run id (default: `<plan>-<UTC timestamp>`).
    #[arg(long)]
    pub run_id: Option<String>,
    /// Folder the plan's suite names resolve in.
    #[arg(long, default_value = "suites")]
    pub suite_dir: PathBuf,
    /// Catalog file merged over the built-in one (repeatable; `mode: replace` in a file starts
    /// over).
    #[arg(long)]
    pub catalog: Vec<PathBuf>,
    /// Tool cache (default: $GPUCONFORM_TOOLS or ~/.cache/gpuconform/tools).
    #[arg(long)]
    pub tools: Option<PathBuf>,
    /// Compare this run's benchmarks with a baseline once it ends: a results.json, a run
    /// folder, or a reports folder (its newest passing run); writes compare.md and
    /// compare.junit.xml into the run folder and exits 5 on a regression.
    #[arg(long, value_name = "FILE|DIR")]
    pub baseline: Option<PathBuf>,
    /// Also write the finished run's metrics to FILE in the Prometheus text format (for the
    /// node exporter's textfile collector or a Pushgateway), replacing it atomically; a
    /// failed run keeps the file's last-success timestamp (docs/metrics.md).
    #[arg(long, value_name = "FILE")]
    pub metrics: Option<PathBuf>,
    /// Also push the run's metrics to this Prometheus Pushgateway (`http://host:9091`), group
    /// `job=gpuconform, plan=<plan>`; with --metrics too, a failed run pushes the file's
    /// carried-forward last-success timestamp.
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// Also write every event of the run to FILE as it happens, one JSON object per line
    /// (`schemas/events.schema.json`, docs/events.md).
    #[arg(long, value_name = "FILE")]
    pub events: Option<PathBuf>,
    /// Also write the finished run's summary (counts, exit code, run folder, summary.md) to
    /// this ConfigMap, created or replaced: `NAMESPACE/NAME`, or `NAME` in the pod's own
    /// namespace (an in-cluster run). Only for a `kubeconfig` target.
    #[arg(long, value_name = "[NAMESPACE/]NAME")]
    pub summary_configmap: Option<String>,
}

impl RunArgs {
    /// The overrides in the order they apply: the `-f` files, then the `--set`s (helm's order).
    pub fn layers(&self) -> Vec<crate::input::Layer> {
        let files = self.overlays.iter().cloned().map(crate::input::Layer::File);
        let sets = self.set.iter().cloned().map(crate::input::Layer::Set);
        // `--namespace` is the last word on `testNamespace.name`.
        let namespace = self
            .namespace
            .iter()
            .map(|n| crate::input::Layer::Set(format!("testNamespace.name={n}")));
        files.chain(sets).chain(namespace).collect()
    }
}

/// Flags of `lint`.
#[derive(Debug, Args)]
pub struct LintArgs {
    /// Files to check (default: plans/*.yaml, suites/*.yaml, fixtures/clusters/**/*.yaml).
    pub files: Vec<PathBuf>,
    /// Folder plans' suite names resolve in.
    #[arg(long, default_value = "suites")]
    pub suite_dir: PathBuf,
    /// Catalog file merged over the built-in one (repeatable), as `run --catalog` does.
    #[arg(long)]
    pub catalog: Vec<PathBuf>,
}

/// Flags of `list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Folder with the suites (the built-in ones are listed too, unless a file here has the
    /// same name).
    #[arg(long, default_value = "suites")]
    pub suite_dir: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// `gpuconform local ...`.
#[derive(Debug, Subcommand)]
pub enum LocalCommand {
    /// Start a cluster from a fixture and wait until every node is Ready.
    Up(UpArgs),
    /// Stop the cluster in a run folder; fails if a process or port is left.
    Down(DirArgs),
    /// Show the cluster in a run folder.
    Status(StatusArgs),
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
    /// Catalog file merged over the built-in one (repeatable; `mode: replace` in a file starts
    /// over).
    #[arg(long)]
    pub catalog: Vec<PathBuf>,
    /// Tool cache (default: $GPUCONFORM_TOOLS or ~/.cache/gpuconform/tools).
    #[arg(long)]
    pub tools: Option<PathBuf>,
}

/// How a listing command prints its result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Format {
    /// Lines for people.
    #[default]
    Text,
    /// One JSON document on standard output, for scripts.
    Json,
}

/// Flags of `local status`.
#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The run folder.
    #[command(flatten)]
    pub dir: DirArgs,
    /// Output format.
    #[arg(long, short = 'o', value_enum, default_value_t = Format::Text)]
    pub output: Format,
}

/// A run folder.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// Run folder of the cluster.
    #[arg(long, default_value = "reports/local")]
    pub dir: PathBuf,
}
