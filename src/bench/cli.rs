//! The `gpuconform-bench` command line: measure (default), `--simulate <model>`, or `compile`.
//! The JSON document goes to stdout as one line, whatever happened; a human table goes to
//! stderr; the exit status says complete (0), a wrong result (1), partial (4) or nothing
//! measured (3).

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use super::model::{PerfTable, Simulation, fill_from_catalog, simulate};
use super::{BenchReport, Metric, cuda, exit};

/// CUDA throughput of every GPU on this node, as one JSON document.
#[derive(Debug, Parser)]
#[command(name = "gpuconform-bench", version, about)]
struct Args {
    /// Produce results from the performance model for this GPU model (catalog key, e.g.
    /// `A100-SXM4-40GB`) instead of measuring; marked `simulated: true`.
    #[arg(long)]
    simulate: Option<String>,
    /// Simulated GPUs.
    #[arg(long, default_value_t = 1)]
    gpus: u32,
    /// Simulated slow GPU, `index=factor` (repeatable), e.g. `3=0.55`.
    #[arg(long = "slow", value_parser = parse_slow)]
    slow: Vec<(u32, f64)>,
    /// Driver version to report when simulating.
    #[arg(long, default_value = "")]
    driver_version: String,
    /// Timed repetitions per metric.
    #[arg(long, default_value_t = 20)]
    repetitions: usize,
    /// Node name to record (default: $NODE_NAME, set from the downward API).
    #[arg(long, env = "NODE_NAME")]
    node: Option<String>,
    /// Smaller problems and fewer repetitions (a quick check, not a measurement to compare).
    #[arg(long)]
    quick: bool,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Compile the kernels with NVRTC to machine code for each architecture and print what
    /// came back (checks the kernels build for every target without a GPU).
    #[command(alias = "ptx")]
    Compile {
        /// Target architectures, e.g. `sm_70`.
        #[arg(long = "arch", required = true)]
        arch: Vec<String>,
    },
}

fn parse_slow(s: &str) -> Result<(u32, f64), String> {
    let (i, f) = s
        .split_once('=')
        .ok_or("expected index=factor, e.g. 3=0.55")?;
    let i: u32 = i.parse().map_err(|e| format!("gpu index `{i}`: {e}"))?;
    let f: f64 = f.parse().map_err(|e| format!("factor `{f}`: {e}"))?;
    if !(f > 0.0 && f <= 1.0) {
        return Err(format!("factor {f} must be in (0, 1]"));
    }
    Ok((i, f))
}

/// Entry point of the `gpuconform-bench` binary.
pub fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(a) => a,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let mut err = std::io::stderr().lock();
    if let Some(Command::Compile { arch }) = &args.command {
        let mut failed = false;
        for a in arch {
            match cuda::compile(a) {
                Ok((bytes, object)) => {
                    let _ = writeln!(
                        std::io::stdout().lock(),
                        "{a}: {} bytes of sm_{} machine code (CUDA ELF ABI {}), kernels {}",
                        bytes.len(),
                        object.sm,
                        object.abi_version,
                        object.kernels.join(", ")
                    );
                }
                Err(e) => {
                    failed = true;
                    let _ = writeln!(err, "error: {e}");
                }
            }
        }
        return ExitCode::from(if failed { exit::NO_CUDA } else { exit::OK });
    }
    let report = match &args.simulate {
        Some(model) => match simulated(&args, model) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
                return ExitCode::from(exit::USAGE);
            }
        },
        None => {
            let opts = cuda::Options {
                // At least 10 samples: fewer cannot carry a compare verdict.
                repetitions: if args.quick {
                    10
                } else {
                    args.repetitions.max(10)
                },
                warmup: if args.quick { 1 } else { 3 },
                gemm_n: if args.quick { 2048 } else { 8192 },
                host_copy_bytes: if args.quick { 64 << 20 } else { 256 << 20 },
                node: args.node.clone(),
            };
            match cuda::run(&opts) {
                Ok(r) => r,
                Err(e) => {
                    let _ = writeln!(err, "error: {e}");
                    nothing_measured(e, args.node.clone())
                }
            }
        }
    };
    if !report.gpus.is_empty() {
        let _ = write!(err, "{}", table(&report));
    }
    match serde_json::to_string(&report) {
        Ok(json) => {
            let _ = writeln!(std::io::stdout().lock(), "{json}");
        }
        Err(e) => {
            let _ = writeln!(err, "error: encode the report: {e}");
            return ExitCode::from(exit::NO_CUDA);
        }
    }
    ExitCode::from(report.exit_code())
}

/// The document of a run that measured nothing: no GPU, and the reason.
fn nothing_measured(why: String, node: Option<String>) -> BenchReport {
    BenchReport {
        schema_version: super::SCHEMA_VERSION,
        tool: "gpuconform-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        simulated: false,
        node,
        driver_version: String::new(),
        cuda_version: String::new(),
        nvrtc_version: None,
        cublas_version: None,
        started_at: chrono::Utc::now().to_rfc3339(),
        seconds: 0.0,
        gpus: Vec::new(),
        peers: Vec::new(),
        errors: vec![why],
    }
}

fn simulated(args: &Args, model: &str) -> Result<BenchReport, String> {
    let table = PerfTable::embedded().map_err(|e| e.to_string())?;
    let perf = table.models.get(model).ok_or_else(|| {
        format!(
            "unknown GPU model `{model}` (known: {})",
            table.models.keys().cloned().collect::<Vec<_>>().join(", ")
        )
    })?;
    let catalog = crate::catalog::Catalog::embedded().map_err(|e| e.to_string())?;
    let name = perf.names.first().cloned().unwrap_or_default();
    let mut report = simulate(&Simulation {
        model_key: model,
        model: perf,
        device_name: name,
        gpus: args.gpus.max(1),
        node: args.node.clone().unwrap_or_else(|| "node".into()),
        slow: args.slow.iter().copied().collect::<BTreeMap<u32, f64>>(),
        driver_version: args.driver_version.clone(),
        repetitions: args.repetitions.max(1),
        mig: None,
    });
    fill_from_catalog(&mut report, &catalog, model);
    Ok(report)
}

/// The human table: one row per GPU × metric.
pub fn table(r: &BenchReport) -> String {
    let mut s = format!(
        "gpuconform-bench {}{}: driver {}, CUDA {}, {:.1}s\n",
        r.tool_version,
        if r.simulated { " (SIMULATED)" } else { "" },
        r.driver_version,
        r.cuda_version,
        r.seconds
    );
    s.push_str(&format!(
        "{:<4} {:<24} {:<10} {:>12} {:>12} {:>12} {:>7}  ok\n",
        "gpu", "device", "metric", "median", "p5", "p95", "cv%"
    ));
    for g in &r.gpus {
        for m in &g.measurements {
            s.push_str(&format!(
                "{:<4} {:<24} {:<10} {:>12.1} {:>12.1} {:>12.1} {:>7.2}  {} {}\n",
                g.device.index,
                g.device.name,
                m.metric.key(),
                m.summary.median,
                m.summary.p5,
                m.summary.p95,
                m.summary.cv * 100.0,
                if m.verified { "yes" } else { "WRONG" },
                Metric::unit(m.metric)
            ));
        }
        for e in &g.errors {
            s.push_str(&format!("{:<4} error: {e}\n", g.device.index));
        }
    }
    for p in &r.peers {
        s.push_str(&format!(
            "peer {}→{}: {:.1} GB/s{}\n",
            p.from,
            p.to,
            p.summary.median,
            if p.verified { "" } else { " WRONG" }
        ));
    }
    s
}
