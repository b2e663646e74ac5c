//! `gpuconform-bench`: CUDA throughput measured inside a pod, and the JSON document it prints —
//! the contract between the bench pod and the harness.
//!
//! The real bench (`cuda/`) compiles its kernels with NVRTC at run time to machine code for the
//! device's compute capability, times batches of launches with CUDA events after a warm-up,
//! verifies every result, records each GPU's environment ([`fingerprint`]), and reports every
//! sample with its median, p5, p95 and CV per metric. A metric, GPU or peer link that fails is
//! named in the document, which always prints; the exit status says complete or not. `--simulate <model>` produces the
//! same document from the performance model in `fixtures/catalog/gpu-performance.yaml`, marked
//! `simulated: true`; the GPU simulator uses it for bench pods on the local cluster.

pub mod cli;
pub mod cubin;
pub mod cuda;
pub mod fingerprint;
pub mod kernels;
pub mod model;
pub mod numa;
pub mod precision;
pub mod stats;

use serde::{Deserialize, Serialize};

pub use fingerprint::Fingerprint;

pub use stats::Summary;

/// Version of the bench JSON document (`schemas/bench.schema.json`).
pub const SCHEMA_VERSION: u32 = 1;

/// One bench pod's result, kept for the benchmark reports.
#[derive(Debug, Clone)]
pub struct NodeBench {
    /// Node name.
    pub node: String,
    /// Instance type.
    pub instance_type: String,
    /// Catalog GPU model key.
    pub model_key: String,
    /// The node's pool (a pool label's value), else its instance type, else the node name:
    /// the first part of each benchmark's stable identity.
    pub group: String,
    /// The measured device when it is a MIG device (`mig3`, `mig-1g.10gb`); whole GPUs are
    /// `gpu<index>`.
    pub mig_unit: Option<String>,
    /// The document.
    pub report: BenchReport,
}

impl NodeBench {
    /// The stable identity of a metric of GPU `index`: `<group>/<model>/<device>/<metric>`.
    pub fn id(&self, index: u32, metric: &str) -> String {
        let device = self
            .mig_unit
            .clone()
            .unwrap_or_else(|| format!("gpu{index}"));
        format!("{}/{}/{device}/{metric}", self.group, self.model_key)
    }
}

/// Exit codes of `gpuconform-bench`.
pub mod exit {
    /// Every metric measured and verified.
    pub const OK: u8 = 0;
    /// A kernel produced a wrong result (the document lists which).
    pub const VERIFICATION_FAILED: u8 = 1;
    /// Bad usage.
    pub const USAGE: u8 = 2;
    /// No CUDA driver, NVRTC or cuBLAS, or no GPU: nothing could be measured.
    pub const NO_CUDA: u8 = 3;
    /// The document is partial: a metric, GPU or peer link failed (a CUDA error, a kernel
    /// the compiler could not build); every other result is in it.
    pub const PARTIAL: u8 = 4;
}

/// A measured quantity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Metric {
    /// Device memory copy `c = a` (float4 loads), GB/s.
    Copy,
    /// STREAM Triad `a = b + s·c` (float4 loads), GB/s.
    Triad,
    /// FP32 fused multiply-add throughput, TFLOPS.
    Fp32Fma,
    /// cuBLAS SGEMM (true FP32, no TF32), TFLOPS.
    Sgemm,
    /// cuBLAS FP16 GEMM on tensor cores (FP32 accumulate), TFLOPS.
    Fp16Gemm,
    /// cuBLAS BF16 GEMM on tensor cores (FP32 accumulate), TFLOPS.
    Bf16Gemm,
    /// Pinned host → device copy, GB/s.
    H2d,
    /// Device → pinned host copy, GB/s.
    D2h,
}

impl Metric {
    /// All per-GPU metrics in report order.
    pub const ALL: [Metric; 8] = [
        Metric::Copy,
        Metric::Triad,
        Metric::Fp32Fma,
        Metric::Sgemm,
        Metric::Fp16Gemm,
        Metric::Bf16Gemm,
        Metric::H2d,
        Metric::D2h,
    ];

    /// Name as in JSON and in the performance table.
    pub fn key(self) -> &'static str {
        match self {
            Metric::Copy => "copy",
            Metric::Triad => "triad",
            Metric::Fp32Fma => "fp32Fma",
            Metric::Sgemm => "sgemm",
            Metric::Fp16Gemm => "fp16Gemm",
            Metric::Bf16Gemm => "bf16Gemm",
            Metric::H2d => "h2d",
            Metric::D2h => "d2h",
        }
    }

    /// Unit of the values.
    pub fn unit(self) -> &'static str {
        match self {
            Metric::Copy | Metric::Triad | Metric::H2d | Metric::D2h => "GB/s",
            _ => "TFLOPS",
        }
    }
}

/// One metric of one GPU.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Measurement {
    /// What.
    pub metric: Metric,
    /// `GB/s` or `TFLOPS`.
    pub unit: String,
    /// Statistics over the timed repetitions.
    #[serde(flatten)]
    pub summary: Summary,
    /// The kernel's output matched the expected values.
    pub verified: bool,
    /// Problem size (bytes per array, or matrix order).
    pub size: u64,
    /// The timed repetitions themselves, in order (what `gpuconform compare` judges); `samples`
    /// is their count.
    #[serde(
        default,
        rename = "sampleValues",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub samples: Vec<f64>,
    /// Kernel launches timed together per sample (short kernels are batched so the launch gap
    /// does not count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launches: Option<u32>,
    /// SGEMM: the largest error of the checked entries, normalised (see [`precision`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error: Option<f64>,
}

/// What the device says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Device {
    /// CUDA ordinal.
    pub index: u32,
    /// Device name (`NVIDIA H200`).
    pub name: String,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// `major.minor`.
    pub compute_capability: String,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Total memory, MiB.
    pub memory_mib: u64,
    /// L2 cache, MiB.
    pub l2_mib: f64,
    /// SM clock, MHz (max).
    pub sm_clock_mhz: u32,
    /// Memory clock, MHz (max).
    pub memory_clock_mhz: u32,
}

/// One GPU's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GpuResult {
    /// The device.
    pub device: Device,
    /// Metrics measured (metrics the GPU has no hardware path for are absent).
    pub measurements: Vec<Measurement>,
    /// Failures on this GPU (a wrong result, a CUDA error), as lowercase fragments.
    pub errors: Vec<String>,
    /// The environment it was measured in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<Fingerprint>,
    /// Wall time of this GPU's measurements, seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seconds: Option<f64>,
}

/// A peer copy between two GPUs of the node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PeerResult {
    /// Source ordinal.
    pub from: u32,
    /// Destination ordinal.
    pub to: u32,
    /// GB/s.
    #[serde(flatten)]
    pub summary: Summary,
    /// Data arrived intact.
    pub verified: bool,
}

/// The whole document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchReport {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// `gpuconform-bench`.
    pub tool: String,
    /// Its version.
    pub tool_version: String,
    /// Produced by the performance model, not measured.
    pub simulated: bool,
    /// Node name (from `NODE_NAME`, the downward API), when known.
    pub node: Option<String>,
    /// Driver version (`580.95.05`) or the CUDA driver API version when the string is unknown.
    pub driver_version: String,
    /// CUDA version the driver supports (`13.0`).
    pub cuda_version: String,
    /// NVRTC that compiled the kernels (`12.4`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nvrtc_version: Option<String>,
    /// cuBLAS that ran the GEMMs (`12.4.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cublas_version: Option<String>,
    /// RFC 3339.
    pub started_at: String,
    /// Wall time.
    pub seconds: f64,
    /// Per GPU.
    pub gpus: Vec<GpuResult>,
    /// Peer copies, every ordered pair (multi-GPU nodes).
    pub peers: Vec<PeerResult>,
    /// Failures of the whole run (no driver, NVRTC or cuBLAS); then `gpus` is empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
}

impl BenchReport {
    /// The bench's exit status for this document: a wrong result first, then anything
    /// missing, else complete.
    pub fn exit_code(&self) -> u8 {
        let wrong = self
            .gpus
            .iter()
            .any(|g| g.measurements.iter().any(|m| !m.verified))
            || self.peers.iter().any(|p| !p.verified);
        if wrong {
            exit::VERIFICATION_FAILED
        } else if !self.errors.is_empty() && self.gpus.is_empty() {
            exit::NO_CUDA
        } else if self.gpus.iter().any(|g| !g.errors.is_empty()) {
            exit::PARTIAL
        } else {
            exit::OK
        }
    }

    /// Parses and checks a document (as read from a pod log): version, units, finite values.
    pub fn parse(text: &str) -> Result<Self, String> {
        // The document is the last line that parses as a JSON object, so stray lines before
        // it (a runtime's banner) do not break the contract.
        let line = text
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| l.starts_with('{'))
            .ok_or_else(|| "no JSON document in the output".to_string())?;
        let report: BenchReport =
            serde_json::from_str(line).map_err(|e| format!("not a bench document: {e}"))?;
        if report.schema_version != SCHEMA_VERSION {
            return Err(format!(
                "schema version {} (expected {SCHEMA_VERSION})",
                report.schema_version
            ));
        }
        for g in &report.gpus {
            for m in &g.measurements {
                if m.unit != m.metric.unit() {
                    return Err(format!(
                        "gpu {}: {} unit is `{}`, expected `{}`",
                        g.device.index,
                        m.metric.key(),
                        m.unit,
                        m.metric.unit()
                    ));
                }
                let s = &m.summary;
                if ![s.median, s.p5, s.p95, s.cv]
                    .iter()
                    .all(|v| v.is_finite() && *v >= 0.0)
                {
                    return Err(format!(
                        "gpu {}: {} has a non-finite or negative value",
                        g.device.index,
                        m.metric.key()
                    ));
                }
            }
        }
        Ok(report)
    }
}
