//! The real bench on CUDA through cudarc (dynamic loading: nothing CUDA is needed to build).
//!
//! cudarc panics when it calls into a library that is not there, so [`run`] first checks that
//! the driver, NVRTC and cuBLAS load and returns an error naming the missing one otherwise.
//! Kernels are built by NVRTC to machine code for each device ([`compile`]). Every metric is
//! timed the same way ([`time_samples`]): warm-up launches, the first of which sizes a batch
//! of back-to-back launches long enough that the launch gap does not count, then each sample
//! is one batch between two CUDA events. Every output is verified. A metric, GPU or peer link
//! that fails is recorded as an error of its GPU and the rest goes on.

#![expect(
    unsafe_code,
    reason = "kernel launches, pinned memory, NVML and NUMA binding are unsafe"
)]

mod compile;
mod gemm;
mod host;
mod memory;
mod nvml;
mod peers;

use std::ffi::c_char;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use cudarc::driver::sys::{self, CUevent_flags};
use cudarc::driver::{CudaContext, CudaFunction, CudaStream, LaunchConfig};

pub use compile::{compile, cublas_present, nvrtc_present, nvrtc_version, supported_archs};

use super::kernels::launches_per_sample;
use super::{BenchReport, Device, Fingerprint, GpuResult, Measurement, SCHEMA_VERSION};

/// Options of a real run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed samples per metric (GEMMs and peer copies take half, at least 10).
    pub repetitions: usize,
    /// Warm-up launches before timing.
    pub warmup: usize,
    /// GEMM matrix order.
    pub gemm_n: usize,
    /// Host copy size in bytes.
    pub host_copy_bytes: usize,
    /// Node name to record.
    pub node: Option<String>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            repetitions: 20,
            warmup: 3,
            gemm_n: 8192,
            host_copy_bytes: 256 << 20,
            node: None,
        }
    }
}

impl Options {
    fn long_reps(&self) -> usize {
        (self.repetitions / 2).max(10)
    }
}

/// Whether the CUDA driver library can be loaded (without cudarc's panic when it cannot).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library; no CUDA call is made.
    unsafe { sys::is_culib_present() }
}

/// Which of the libraries the bench needs cannot be loaded, each with what provides it.
pub fn missing_libraries() -> Vec<&'static str> {
    let mut out = Vec::new();
    if !driver_present() {
        out.push("libcuda.so (the NVIDIA driver: is this a GPU node, and is the container run with the NVIDIA runtime?)");
    }
    if !nvrtc_present() {
        out.push("libnvrtc.so.12 (NVRTC, shipped in the bench image; elsewhere put a CUDA 12 NVRTC on LD_LIBRARY_PATH)");
    }
    if !cublas_present() {
        out.push("libcublas.so.12 (cuBLAS, shipped in the bench image; elsewhere put a CUDA 12 cuBLAS on LD_LIBRARY_PATH)");
    }
    out
}

fn err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Runs the whole bench on every visible GPU. `Err` only when nothing can be measured.
pub fn run(opts: &Options) -> Result<BenchReport, String> {
    let missing = missing_libraries();
    if !missing.is_empty() {
        return Err(format!("cannot load {}", missing.join("; ")));
    }
    let started = Instant::now();
    let count = CudaContext::device_count().map_err(err("count devices"))?;
    if count < 1 {
        return Err("no CUDA device visible".into());
    }
    let mut driver_api = 0i32;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut driver_api) }
        .result()
        .map_err(err("driver version"))?;
    let nvml = nvml::Nvml::open();
    let driver_version = nvml
        .as_ref()
        .ok()
        .and_then(nvml::Nvml::driver_version)
        .or_else(proc_driver_version)
        .unwrap_or_else(|| format!("cuda-api-{driver_api}"));
    let mut report = BenchReport {
        schema_version: SCHEMA_VERSION,
        tool: "gpuconform-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        simulated: false,
        node: opts.node.clone(),
        driver_version,
        cuda_version: format!("{}.{}", driver_api / 1000, (driver_api % 1000) / 10),
        nvrtc_version: nvrtc_version(),
        cublas_version: compile::cublas_version(),
        started_at: chrono::Utc::now().to_rfc3339(),
        seconds: 0.0,
        gpus: Vec::new(),
        peers: Vec::new(),
        errors: Vec::new(),
    };
    let mut contexts = Vec::new();
    for i in 0..count {
        let index = i as u32;
        match CudaContext::new(i as usize) {
            Ok(ctx) => {
                report.gpus.push(one_gpu(&ctx, index, opts, nvml.as_ref()));
                contexts.push(Some(ctx));
            }
            Err(e) => {
                let mut g = empty(index);
                g.errors.push(format!("create context: {e}"));
                report.gpus.push(g);
                contexts.push(None);
            }
        }
    }
    if contexts.len() > 1 {
        let (found, failed) = peers::all(&contexts, opts.warmup, opts.long_reps());
        report.peers = found;
        // A failed copy is a failure of its source GPU, never a missing number.
        for (from, why) in failed {
            if let Some(g) = report.gpus.iter_mut().find(|g| g.device.index == from) {
                g.errors.push(why);
            }
        }
    }
    report.seconds = started.elapsed().as_secs_f64();
    Ok(report)
}

/// `580.95.05` from `/proc/driver/nvidia/version`, when NVML is not there.
fn proc_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    let line = text.lines().next()?;
    line.split_whitespace()
        .find(|w| w.contains('.') && w.chars().all(|c| c.is_ascii_digit() || c == '.'))
        .map(str::to_string)
}

fn empty(index: u32) -> GpuResult {
    GpuResult {
        device: Device {
            index,
            name: String::new(),
            uuid: String::new(),
            compute_capability: String::new(),
            sm_count: 0,
            memory_mib: 0,
            l2_mib: 0.0,
            sm_clock_mhz: 0,
            memory_clock_mhz: 0,
        },
        measurements: Vec::new(),
        errors: Vec::new(),
        fingerprint: None,
        seconds: None,
    }
}

fn pci_bus_id(ctx: &Arc<CudaContext>) -> Option<String> {
    let mut buf = [0 as c_char; 32];
    // SAFETY: CUDA writes a NUL-terminated id of at most `len` bytes.
    unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, ctx.cu_device()) }
        .result()
        .ok()?;
    // SAFETY: NUL-terminated, as above.
    let id = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    Some(id.to_string_lossy().to_ascii_lowercase())
}

fn device_info(ctx: &Arc<CudaContext>, index: u32) -> Result<Device, String> {
    use sys::CUdevice_attribute as A;
    let attr = |a: A| ctx.attribute(a).map_err(err("device attribute"));
    let (major, minor) = ctx
        .compute_capability()
        .map_err(err("compute capability"))?;
    let uuid = ctx.uuid().map_err(err("uuid"))?;
    let b: Vec<u8> = uuid.bytes.iter().map(|b| *b as u8).collect();
    let hex =
        |r: std::ops::Range<usize>| b[r].iter().map(|x| format!("{x:02x}")).collect::<String>();
    Ok(Device {
        index,
        name: ctx.name().map_err(err("name"))?,
        uuid: format!(
            "GPU-{}-{}-{}-{}-{}",
            hex(0..4),
            hex(4..6),
            hex(6..8),
            hex(8..10),
            hex(10..16)
        ),
        compute_capability: format!("{major}.{minor}"),
        sm_count: attr(A::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)? as u32,
        memory_mib: (ctx.total_mem().map_err(err("total memory"))? >> 20) as u64,
        l2_mib: f64::from(attr(A::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?) / 1_048_576.0,
        sm_clock_mhz: (attr(A::CU_DEVICE_ATTRIBUTE_CLOCK_RATE)? / 1000) as u32,
        memory_clock_mhz: (attr(A::CU_DEVICE_ATTRIBUTE_MEMORY_CLOCK_RATE)? / 1000) as u32,
    })
}

/// The bench's kernels, loaded from machine code.
pub struct Kernels {
    fill: CudaFunction,
    copy4: CudaFunction,
    triad4: CudaFunction,
    fma8: CudaFunction,
    count_bad: CudaFunction,
}

fn load_kernels(ctx: &Arc<CudaContext>, cc: &str) -> Result<Kernels, String> {
    let arch = super::cubin::arch_of(cc)
        .ok_or_else(|| format!("compute capability `{cc}` is not major.minor"))?;
    let (cubin, _) = compile(&arch)?;
    let module = ctx
        .load_module(cudarc::nvrtc::Ptx::from_binary(cubin))
        .map_err(err(&format!("load the {arch} machine code")))?;
    let f = |n: &str| module.load_function(n).map_err(err("load function"));
    Ok(Kernels {
        fill: f("fill")?,
        copy4: f("copy4")?,
        triad4: f("triad4")?,
        fma8: f("fma8")?,
        count_bad: f("count_bad")?,
    })
}

fn grid(sms: u32, blocks_per_sm: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (sms * blocks_per_sm, 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Milliseconds per launch of `launches` back-to-back launches between two events.
fn timed(
    stream: &Arc<CudaStream>,
    launches: usize,
    work: &mut impl FnMut() -> Result<(), String>,
) -> Result<f64, String> {
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = stream.record_event(flags).map_err(err("record event"))?;
    for _ in 0..launches {
        work()?;
    }
    let end = stream.record_event(flags).map_err(err("record event"))?;
    Ok(f64::from(start.elapsed_ms(&end).map_err(err("elapsed"))?) / launches as f64)
}

/// Times `work` as every metric is timed: `warmup` single launches (at least one), the fastest
/// of which sizes the batch ([`launches_per_sample`]), then `reps` batches. The milliseconds
/// per launch of each sample, and the batch size.
fn time_samples(
    stream: &Arc<CudaStream>,
    warmup: usize,
    reps: usize,
    mut work: impl FnMut() -> Result<(), String>,
) -> Result<(Vec<f64>, u32), String> {
    let mut one = f64::INFINITY;
    for _ in 0..warmup.max(1) {
        one = one.min(timed(stream, 1, &mut work)?);
    }
    let launches = launches_per_sample(one);
    let mut out = Vec::with_capacity(reps);
    for _ in 0..reps {
        out.push(timed(stream, launches, &mut work)?);
    }
    Ok((out, launches as u32))
}

fn one_gpu(
    ctx: &Arc<CudaContext>,
    index: u32,
    opts: &Options,
    nvml: Result<&nvml::Nvml, &String>,
) -> GpuResult {
    let started = Instant::now();
    let mut result = empty(index);
    match device_info(ctx, index) {
        Ok(d) => result.device = d,
        Err(e) => {
            result.errors.push(e);
            return result;
        }
    }
    let bus = pci_bus_id(ctx);
    let numa_node = bus
        .as_deref()
        .and_then(|b| super::numa::node_of(std::path::Path::new("/sys"), b));
    let gpu = nvml.ok().zip(bus.as_deref()).and_then(|(n, b)| n.gpu(b));
    let mut fp = match (nvml, gpu) {
        (Ok(n), Some(g)) => n.static_state(g),
        (Ok(_), None) => Fingerprint {
            unavailable: Some(format!(
                "NVML has no GPU at {}",
                bus.as_deref().unwrap_or("?")
            )),
            ..Fingerprint::default()
        },
        (Err(e), _) => Fingerprint {
            unavailable: Some(e.clone()),
            ..Fingerprint::default()
        },
    };
    fp.pci_bus_id = bus.clone();
    fp.numa_node = numa_node;
    let stop = AtomicBool::new(false);
    let stop_flag = &stop;
    let (measured, sampled) = std::thread::scope(|s| {
        let sampler = nvml
            .ok()
            .zip(gpu)
            .map(|(n, g)| s.spawn(move || n.sample(g, stop_flag)));
        let measured = measure(ctx, &result.device, opts, numa_node);
        stop.store(true, Ordering::Relaxed);
        (measured, sampler.and_then(|h| h.join().ok()))
    });
    let (outcomes, local) = measured;
    if let Some(sampled) = sampled {
        sampled.fill(&mut fp);
    }
    fp.host_buffers_local = numa_node.map(|_| local);
    // A wrong result is its measurement's `verified: false` (with `maxError` for SGEMM);
    // `errors` are the failures that left no measurement.
    for o in outcomes {
        match o {
            Ok(m) => result.measurements.push(m),
            Err(e) => result.errors.push(e),
        }
    }
    result.fingerprint = Some(fp);
    result.seconds = Some(started.elapsed().as_secs_f64());
    result
}

/// Every metric of one GPU, each a measurement or its error; and whether the host buffers
/// were placed on the GPU's NUMA node.
fn measure(
    ctx: &Arc<CudaContext>,
    dev: &Device,
    opts: &Options,
    numa_node: Option<u32>,
) -> (Vec<Result<Measurement, String>>, bool) {
    let stream = ctx.default_stream();
    let (w, r) = (opts.warmup, opts.repetitions);
    let mut out = Vec::new();
    match load_kernels(ctx, &dev.compute_capability) {
        Ok(k) => {
            match memory::bandwidth(ctx, &stream, &k, dev, w, r) {
                Ok(both) => out.extend(both),
                Err(e) => out.push(Err(format!("copy, triad: {e}"))),
            }
            out.push(memory::fma(&stream, &k, dev, w, r).map_err(|e| format!("fp32Fma: {e}")));
        }
        // Without kernels the library metrics still run.
        Err(e) => out.push(Err(format!("copy, triad, fp32Fma: {e}"))),
    }
    out.extend(gemm::gemms(&stream, dev, opts.gemm_n, w, opts.long_reps()));
    let local = match host::copies(ctx, &stream, numa_node, opts.host_copy_bytes, w, r) {
        Ok((ms, local)) => {
            out.extend(ms.into_iter().map(Ok));
            local
        }
        Err(e) => {
            out.push(Err(format!("h2d, d2h: {e}")));
            false
        }
    };
    (out, local)
}
