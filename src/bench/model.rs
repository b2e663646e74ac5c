//! The GPU performance table (`fixtures/catalog/gpu-performance.yaml`): peaks, floors and typical
//! efficiencies per GPU model — and the performance model `--simulate` draws results from:
//! value = peak × typical efficiency × (1 + 1% noise) × slow factor.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::fingerprint::{Fingerprint, Observed};
use super::stats::summarize;
use super::{BenchReport, Device, GpuResult, Measurement, Metric, PeerResult, SCHEMA_VERSION};
use crate::catalog::Catalog;
use crate::input::{InputError, parse_yaml};

/// The table shipped with the binary.
pub const EMBEDDED: &str = include_str!("../../fixtures/catalog/gpu-performance.yaml");
/// Its name in errors.
pub const EMBEDDED_NAME: &str = "fixtures/catalog/gpu-performance.yaml";

/// The performance table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PerfTable {
    /// Format version.
    pub version: u32,
    /// Floor per metric when a model does not set one.
    pub default_floors: BTreeMap<String, f64>,
    /// Models by catalog key.
    pub models: BTreeMap<String, GpuPerf>,
}

/// One model's numbers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GpuPerf {
    /// CUDA device names of this model.
    pub names: Vec<String>,
    /// Streaming multiprocessors.
    pub sms: u32,
    /// Boost clock the datasheet FP32 peak is computed at, MHz.
    #[serde(rename = "boostClockMHz")]
    pub boost_clock_mhz: u32,
    /// FP32 lanes (CUDA cores) per SM: 64 on Volta, Turing and GA100, 128 on GA10x, Ada, Hopper.
    pub fp32_lanes_per_sm: u32,
    /// L2 cache, MiB.
    #[serde(rename = "l2MiB")]
    pub l2_mib: f64,
    /// Peak memory bandwidth, GB/s.
    pub mem_bandwidth_g_bs: f64,
    /// Peak FP32, TFLOPS.
    pub fp32_tflops: f64,
    /// Peak dense FP16 tensor, TFLOPS.
    pub fp16_tensor_tflops: Option<f64>,
    /// Peak dense BF16 tensor, TFLOPS (`None`: no BF16 tensor path).
    pub bf16_tensor_tflops: Option<f64>,
    /// Host link per direction, GB/s.
    pub host_link_g_bs: f64,
    /// GPU-to-GPU link per direction, GB/s (`None`: PCIe only).
    pub peer_link_g_bs: Option<f64>,
    /// Floors as fractions of peak, overriding the defaults.
    #[serde(default)]
    pub floors: BTreeMap<String, f64>,
    /// What good public runs reach, as fractions of peak.
    pub typical: BTreeMap<String, f64>,
    /// Where the numbers come from.
    pub source: String,
}

impl GpuPerf {
    /// The peak a metric is compared against; `None` when the GPU has no hardware path for it.
    pub fn peak(&self, m: Metric) -> Option<f64> {
        match m {
            Metric::Copy | Metric::Triad => Some(self.mem_bandwidth_g_bs),
            Metric::Fp32Fma | Metric::Sgemm => Some(self.fp32_tflops),
            Metric::Fp16Gemm => self.fp16_tensor_tflops,
            Metric::Bf16Gemm => self.bf16_tensor_tflops,
            Metric::H2d | Metric::D2h => Some(self.host_link_g_bs),
        }
    }

    /// Peer-copy peak: the GPU link, else the host link (copies go through PCIe).
    pub fn peer_peak(&self) -> f64 {
        self.peer_link_g_bs.unwrap_or(self.host_link_g_bs)
    }
}

impl PerfTable {
    /// The embedded table.
    pub fn embedded() -> Result<Self, InputError> {
        let t: PerfTable = parse_yaml(Path::new(EMBEDDED_NAME), EMBEDDED)?;
        t.validate(Path::new(EMBEDDED_NAME))?;
        Ok(t)
    }

    /// The floor (fraction of peak) for a metric on a model.
    pub fn floor(&self, model: &GpuPerf, key: &str) -> f64 {
        model
            .floors
            .get(key)
            .or_else(|| self.default_floors.get(key))
            .copied()
            .unwrap_or(0.5)
    }

    /// The model a CUDA device name belongs to.
    pub fn by_device_name(&self, name: &str) -> Option<(&str, &GpuPerf)> {
        self.models
            .iter()
            .find(|(_, m)| m.names.iter().any(|n| n == name))
            .map(|(k, m)| (k.as_str(), m))
    }

    fn validate(&self, file: &Path) -> Result<(), InputError> {
        let keys: Vec<&str> = Metric::ALL
            .iter()
            .map(|m| m.key())
            .chain(["peer"])
            .collect();
        for (name, m) in &self.models {
            for (k, v) in m.floors.iter().chain(m.typical.iter()) {
                if !keys.contains(&k.as_str()) {
                    return Err(InputError::file(
                        file,
                        format!("model `{name}`: unknown metric `{k}`"),
                    ));
                }
                if !(0.0..=1.0).contains(v) {
                    return Err(InputError::file(
                        file,
                        format!("model `{name}`: `{k}` is {v}, expected a fraction 0..1"),
                    ));
                }
            }
            for metric in Metric::ALL {
                if m.peak(metric).is_some() && !m.typical.contains_key(metric.key()) {
                    return Err(InputError::file(
                        file,
                        format!(
                            "model `{name}`: no typical efficiency for `{}`",
                            metric.key()
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A small deterministic generator, so simulated runs are reproducible per node and GPU.
struct Rng(u64);

impl Rng {
    fn new(seed: &str) -> Self {
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Self(h | 1)
    }
    fn uniform(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    /// Roughly normal (Irwin–Hall of 12), mean 0, sd 1.
    fn normal(&mut self) -> f64 {
        (0..12).map(|_| self.uniform()).sum::<f64>() - 6.0
    }
}

/// What to simulate.
#[derive(Debug, Clone)]
pub struct Simulation<'a> {
    /// Catalog model key.
    pub model_key: &'a str,
    /// The model's numbers.
    pub model: &'a GpuPerf,
    /// The catalog's product label for the device name fallback.
    pub device_name: String,
    /// GPUs on the node.
    pub gpus: u32,
    /// Node name (seeds the noise).
    pub node: String,
    /// Per GPU index, a speed factor < 1 for slow GPUs.
    pub slow: BTreeMap<u32, f64>,
    /// Driver version to report.
    pub driver_version: String,
    /// Timed repetitions per metric.
    pub repetitions: usize,
    /// One MIG device instead of whole GPUs.
    pub mig: Option<SimMig>,
}

/// A MIG device as CUDA shows it inside the instance, and how fast it is next to the whole
/// GPU: compute by its SMs, memory bandwidth by its share of the memory (and so of the memory
/// controllers); host copies go over the GPU's own PCIe link.
#[derive(Debug, Clone, PartialEq)]
pub struct SimMig {
    /// Profile name (`1g.5gb`).
    pub profile: String,
    /// Its SMs.
    pub sms: u32,
    /// Its memory, MiB.
    pub memory_mib: u64,
    /// Compute speed next to the whole GPU.
    pub compute: f64,
    /// Memory bandwidth next to the whole GPU.
    pub bandwidth: f64,
}

/// The NVRTC of the bench image (`images/bench/Dockerfile`: CUDA 12.4.1), reported by simulated runs.
pub const IMAGE_NVRTC: &str = "12.4";
/// Its cuBLAS.
pub const IMAGE_CUBLAS: &str = "12.4.5";

/// The simulated document.
pub fn simulate(sim: &Simulation<'_>) -> BenchReport {
    let m = sim.model;
    let mut gpus = Vec::new();
    for i in 0..sim.gpus {
        let slow = sim.slow.get(&i).copied().unwrap_or(1.0);
        let mut rng = Rng::new(&format!("{}/{}/{}", sim.node, sim.model_key, i));
        let mut measurements = Vec::new();
        for metric in Metric::ALL {
            let Some(peak) = m.peak(metric) else { continue };
            let eff = m.typical.get(metric.key()).copied().unwrap_or(0.5);
            let share = match (&sim.mig, metric) {
                (None, _) | (Some(_), Metric::H2d | Metric::D2h) => 1.0,
                (Some(g), Metric::Copy | Metric::Triad) => g.bandwidth,
                (Some(g), _) => g.compute,
            };
            let factor = slow * share;
            let samples: Vec<f64> = (0..sim.repetitions.max(1))
                .map(|_| peak * eff * factor * (1.0 + 0.01 * rng.normal()))
                .collect();
            let Some(summary) = summarize(&samples) else {
                continue;
            };
            measurements.push(Measurement {
                metric,
                unit: metric.unit().into(),
                summary,
                verified: true,
                size: match metric {
                    Metric::Copy | Metric::Triad => (m.l2_mib * 8.0 * 1_048_576.0) as u64,
                    Metric::Sgemm | Metric::Fp16Gemm | Metric::Bf16Gemm => 8192,
                    Metric::Fp32Fma => 0,
                    Metric::H2d | Metric::D2h => 256 * 1_048_576,
                },
                samples,
                launches: None,
                max_error: None,
            });
        }
        // What the bench reads through NVML, as far as the model knows it: the boost clock
        // (held below it on a slowed GPU, the way a power- or thermally-capped one shows).
        let clock = (f64::from(m.boost_clock_mhz) * slow).round() as u32;
        let fingerprint = (m.boost_clock_mhz > 0).then(|| Fingerprint {
            max_sm_clock_mhz: Some(m.boost_clock_mhz),
            sm_clock_mhz: Observed::of(&[clock]),
            mig: Some(sim.mig.is_some()),
            persistence: Some(true),
            throttle_reasons: if slow < 1.0 {
                vec!["swPowerCap".into()]
            } else {
                Vec::new()
            },
            ..Fingerprint::default()
        });
        gpus.push(GpuResult {
            device: Device {
                index: i,
                name: match &sim.mig {
                    Some(g) => format!("{} MIG {}", sim.device_name, g.profile),
                    None => sim.device_name.clone(),
                },
                uuid: format!(
                    "GPU-{:08x}-sim0-{:04x}-0000-{:012x}",
                    rng.0 as u32,
                    i,
                    rng.0 >> 16
                ),
                compute_capability: String::new(),
                sm_count: sim.mig.as_ref().map_or(m.sms, |g| g.sms),
                memory_mib: sim.mig.as_ref().map_or(0, |g| g.memory_mib),
                l2_mib: m.l2_mib,
                sm_clock_mhz: 0,
                memory_clock_mhz: 0,
            },
            measurements,
            errors: Vec::new(),
            fingerprint,
            seconds: None,
        });
    }
    let mut peers = Vec::new();
    // A MIG device has no peer-to-peer path.
    let peer_gpus = if sim.mig.is_some() { 0 } else { sim.gpus };
    for from in 0..peer_gpus {
        for to in 0..sim.gpus {
            if from == to {
                continue;
            }
            let mut rng = Rng::new(&format!("{}/peer/{from}/{to}", sim.node));
            let slow = sim
                .slow
                .get(&from)
                .copied()
                .unwrap_or(1.0)
                .min(sim.slow.get(&to).copied().unwrap_or(1.0));
            let eff = m.typical.get("peer").copied().unwrap_or(0.8);
            let samples: Vec<f64> = (0..sim.repetitions.max(1))
                .map(|_| m.peer_peak() * eff * slow * (1.0 + 0.01 * rng.normal()))
                .collect();
            if let Some(summary) = summarize(&samples) {
                peers.push(PeerResult {
                    from,
                    to,
                    summary,
                    verified: true,
                });
            }
        }
    }
    BenchReport {
        schema_version: SCHEMA_VERSION,
        tool: "gpuconform-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        simulated: true,
        node: Some(sim.node.clone()),
        driver_version: sim.driver_version.clone(),
        cuda_version: String::new(),
        nvrtc_version: Some(IMAGE_NVRTC.into()),
        cublas_version: Some(IMAGE_CUBLAS.into()),
        started_at: chrono::Utc::now().to_rfc3339(),
        seconds: 0.0,
        gpus,
        peers,
        errors: Vec::new(),
    }
}

/// Fills device details the catalog knows (compute capability, memory) into a simulated report.
pub fn fill_from_catalog(report: &mut BenchReport, catalog: &Catalog, model_key: &str) {
    if let Some(model) = catalog.gpu_models.get(model_key) {
        for g in &mut report.gpus {
            g.device.compute_capability = model.compute_capability.clone();
            if g.device.memory_mib == 0 {
                g.device.memory_mib = model.memory_mib;
            }
            if g.device.name.is_empty() {
                g.device.name = model.product.replace('-', " ");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_loads_and_covers_the_catalog() {
        let t = PerfTable::embedded().expect("table");
        let c = Catalog::embedded().expect("catalog");
        // Models without datasheet peaks here are skipped by the throughput check, not passed.
        let without = ["A10", "GTX-1660-Ti", "K80"];
        for (key, m) in &c.gpu_models {
            assert_eq!(
                t.models.contains_key(m.perf_key(key)),
                !without.contains(&key.as_str()),
                "performance entry of catalog model {key}"
            );
        }
        let (key, h200) = t.by_device_name("NVIDIA H200").expect("H200");
        assert_eq!(key, "H200-SXM-141GB");
        assert_eq!(h200.peak(Metric::Triad), Some(4800.0));
        assert_eq!(t.models["V100-SXM2-16GB"].peak(Metric::Bf16Gemm), None);
        assert_eq!(t.floor(&t.models["L4"], "sgemm"), 0.30);
        assert_eq!(t.floor(&t.models["L4"], "h2d"), 0.60);
    }

    /// Every model's FP32 peak is what its SMs, lanes and boost clock give (FMA = 2 FLOP per
    /// lane per clock), within 1%: a peak copied from a sibling part (the A10's 31.2 TFLOPS for
    /// the A10G's 80 SMs) fails here.
    #[test]
    fn fp32_peaks_follow_from_sms_and_clocks() {
        let t = PerfTable::embedded().expect("table");
        for (key, m) in &t.models {
            let derived = f64::from(m.sms)
                * f64::from(m.fp32_lanes_per_sm)
                * 2.0
                * f64::from(m.boost_clock_mhz)
                / 1e6;
            assert!(
                (derived - m.fp32_tflops).abs() / m.fp32_tflops < 0.01,
                "{key}: {} SMs × {} lanes × 2 × {} MHz = {derived:.2} TFLOPS, the table says {}",
                m.sms,
                m.fp32_lanes_per_sm,
                m.boost_clock_mhz,
                m.fp32_tflops
            );
        }
    }

    /// A healthy GPU must clear its floor with room: every model's typical efficiency sits at
    /// least 10% above the floor it is judged against, for every metric (and peer links).
    #[test]
    fn typical_efficiency_clears_every_floor_by_ten_percent() {
        let t = PerfTable::embedded().expect("table");
        let mut bad = Vec::new();
        for (key, m) in &t.models {
            for (metric, typical) in &m.typical {
                let floor = t.floor(m, metric);
                if *typical < floor * 1.1 {
                    bad.push(format!("{key} {metric}: typical {typical}, floor {floor}"));
                }
            }
        }
        assert!(bad.is_empty(), "{bad:#?}");
    }

    #[test]
    fn simulation_is_near_typical_and_reproducible() {
        let t = PerfTable::embedded().expect("table");
        let m = &t.models["A100-SXM4-40GB"];
        let sim = Simulation {
            model_key: "A100-SXM4-40GB",
            model: m,
            device_name: "NVIDIA A100-SXM4-40GB".into(),
            gpus: 8,
            node: "gpu-worker-1".into(),
            slow: BTreeMap::from([(3, 0.55)]),
            driver_version: "580.95.05".into(),
            repetitions: 20,
            mig: None,
        };
        let a = simulate(&sim);
        let b = simulate(&sim);
        assert!(a.gpus == b.gpus, "same seed, same numbers");
        assert!(a.simulated);
        assert_eq!(a.gpus.len(), 8);
        assert_eq!(a.peers.len(), 56);
        let triad = |g: usize| {
            a.gpus[g]
                .measurements
                .iter()
                .find(|x| x.metric == Metric::Triad)
                .map(|x| x.summary.median)
                .unwrap_or(0.0)
        };
        let want = 1555.0 * 0.886;
        assert!((triad(0) - want).abs() / want < 0.02, "{}", triad(0));
        assert!((triad(3) - want * 0.55).abs() / want < 0.02, "{}", triad(3));
        assert!(a.gpus[0].measurements.iter().all(|x| x.summary.cv < 0.03));
        let text = serde_json::to_string(&a).expect("json");
        let back = BenchReport::parse(&text).expect("parse");
        assert_eq!(back.gpus.len(), 8);
        let m0 = |r: &BenchReport| r.gpus[0].measurements[0].summary.median;
        assert!((m0(&back) - m0(&a)).abs() < 1e-9 * m0(&a));
    }
}
