//! The real bench on CUDA through cudarc (dynamic loading: nothing CUDA is needed to build).
//!
//! cudarc panics when it calls into a library that is not there, so every entry point first
//! checks that the driver library loads ([`driver_present`]) and returns an error otherwise.
//! Timing uses CUDA events around each timed launch, after warm-up launches; every output is
//! verified (memory kernels and copies on the device, FMA exactly against the host's fused
//! arithmetic, GEMM at sampled entries against an f64 reference).

#![expect(
    unsafe_code,
    reason = "kernel launches, pinned memory and peer copies are unsafe in cudarc"
)]

use std::sync::Arc;
use std::time::Instant;

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys as blas_sys};
use cudarc::driver::sys::{self, CUevent_flags};
use cudarc::driver::{
    CudaContext, CudaFunction, CudaSlice, CudaStream, DevicePtr, DevicePtrMut, LaunchConfig,
    PushKernelArg,
};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};

use super::kernels::{self, INIT};
use super::stats::summarize;
use super::{BenchReport, Device, GpuResult, Measurement, Metric, PeerResult, SCHEMA_VERSION};

/// Options of a real run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Timed repetitions per metric (GEMMs use a quarter, at least 3).
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

/// Whether the CUDA driver library can be loaded (without cudarc's panic when it cannot).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen the library; no CUDA call is made.
    unsafe { sys::is_culib_present() }
}

/// Whether NVRTC can be loaded.
pub fn nvrtc_present() -> bool {
    // SAFETY: as above, for libnvrtc.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Compiles every kernel to PTX for `arch` (`sm_90`); the PTX text on success.
pub fn compile(arch: &str) -> Result<String, String> {
    if !nvrtc_present() {
        return Err("NVRTC (libnvrtc.so) not found: set LD_LIBRARY_PATH to a CUDA 12 nvrtc".into());
    }
    let arch: &'static str = Box::leak(arch.to_string().into_boxed_str());
    let opts = CompileOptions {
        arch: Some(arch),
        ..CompileOptions::default()
    };
    let ptx = compile_ptx_with_opts(kernels::SOURCE, opts)
        .map(|ptx| ptx.to_src())
        .map_err(|e| format!("nvrtc for {arch}: {e}"))?;
    for name in kernels::NAMES {
        if !ptx.contains(&format!(".entry {name}(")) {
            return Err(format!(
                "nvrtc for {arch}: kernel `{name}` missing from the PTX"
            ));
        }
    }
    Ok(ptx)
}

fn err(what: &str) -> impl Fn(cudarc::driver::DriverError) -> String + '_ {
    move |e| format!("{what}: {e}")
}

/// Runs the whole bench on every visible GPU.
pub fn run(opts: &Options) -> Result<BenchReport, String> {
    if !driver_present() {
        return Err("no CUDA driver: libcuda.so could not be loaded (is this a GPU node with the NVIDIA driver, and is the container run with the NVIDIA runtime?)".into());
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
    let mut report = BenchReport {
        schema_version: SCHEMA_VERSION,
        tool: "gpuconform-bench".into(),
        tool_version: env!("CARGO_PKG_VERSION").into(),
        simulated: false,
        node: opts.node.clone(),
        driver_version: nvidia_driver_version().unwrap_or_else(|| format!("cuda-api-{driver_api}")),
        cuda_version: format!("{}.{}", driver_api / 1000, (driver_api % 1000) / 10),
        started_at: chrono::Utc::now().to_rfc3339(),
        seconds: 0.0,
        gpus: Vec::new(),
        peers: Vec::new(),
    };
    let mut contexts = Vec::new();
    for i in 0..count {
        let ctx = CudaContext::new(i as usize).map_err(err("create context"))?;
        report.gpus.push(one_gpu(&ctx, i as u32, opts));
        contexts.push(ctx);
    }
    if contexts.len() > 1 {
        let (found, failed) = peers(&contexts, opts);
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

/// `580.95.05` from `/proc/driver/nvidia/version`, when mounted.
fn nvidia_driver_version() -> Option<String> {
    let text = std::fs::read_to_string("/proc/driver/nvidia/version").ok()?;
    let line = text.lines().next()?;
    line.split_whitespace()
        .find(|w| {
            w.chars().filter(|c| *c == '.').count() >= 1
                && w.chars().all(|c| c.is_ascii_digit() || c == '.')
        })
        .map(str::to_string)
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

struct Kernels {
    fill: CudaFunction,
    copy4: CudaFunction,
    triad4: CudaFunction,
    fma8: CudaFunction,
    count_bad: CudaFunction,
}

fn load_kernels(ctx: &Arc<CudaContext>, cc: &str) -> Result<Kernels, String> {
    let arch = format!("sm_{}", cc.replace('.', ""));
    let ptx = compile(&arch)?;
    let module = ctx
        .load_module(cudarc::nvrtc::Ptx::from_src(ptx))
        .map_err(err(
            "load module (is the driver older than the NVRTC that compiled it?)",
        ))?;
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

/// Milliseconds between two events recorded around `work`.
fn timed(
    stream: &Arc<CudaStream>,
    work: impl FnOnce() -> Result<(), String>,
) -> Result<f64, String> {
    let flags = Some(CUevent_flags::CU_EVENT_DEFAULT);
    let start = stream.record_event(flags).map_err(err("record event"))?;
    work()?;
    let end = stream.record_event(flags).map_err(err("record event"))?;
    Ok(f64::from(start.elapsed_ms(&end).map_err(err("elapsed"))?))
}

/// One group of measurements.
type Step<'a> = dyn Fn() -> Result<Vec<Measurement>, String> + 'a;

fn one_gpu(ctx: &Arc<CudaContext>, index: u32, opts: &Options) -> GpuResult {
    let mut result = GpuResult {
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
    };
    match device_info(ctx, index) {
        Ok(d) => result.device = d,
        Err(e) => {
            result.errors.push(e);
            return result;
        }
    }
    let stream = ctx.default_stream();
    let k = match load_kernels(ctx, &result.device.compute_capability) {
        Ok(k) => k,
        Err(e) => {
            result.errors.push(e);
            return result;
        }
    };
    let dev = result.device.clone();
    let steps: [(&str, &Step<'_>); 4] = [
        ("memory", &|| memory(ctx, &stream, &k, &dev, opts)),
        ("fma", &|| fma(&stream, &k, &dev, opts).map(|m| vec![m])),
        ("gemm", &|| gemms(&stream, &dev, opts)),
        ("host copies", &|| host_copies(ctx, &stream, opts)),
    ];
    for (what, step) in steps {
        match step() {
            Ok(ms) => {
                for m in &ms {
                    if !m.verified {
                        result
                            .errors
                            .push(format!("{}: wrong result", m.metric.key()));
                    }
                }
                result.measurements.extend(ms);
            }
            Err(e) => result.errors.push(format!("{what}: {e}")),
        }
    }
    result
}

fn count_bad(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    x: &CudaSlice<f32>,
    n: u64,
    expect: f32,
    tol: f32,
    cfg: LaunchConfig,
) -> Result<u64, String> {
    let mut bad = stream.alloc_zeros::<u64>(1).map_err(err("alloc"))?;
    let mut b = stream.launch_builder(&k.count_bad);
    b.arg(x).arg(&n).arg(&expect).arg(&tol).arg(&mut bad);
    // SAFETY: arguments match the kernel's signature; `x` holds `n` floats.
    unsafe { b.launch(cfg) }.map_err(err("launch count_bad"))?;
    let host = stream.clone_dtoh(&bad).map_err(err("copy back"))?;
    Ok(host.first().copied().unwrap_or(u64::MAX))
}

fn memory(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    k: &Kernels,
    dev: &Device,
    opts: &Options,
) -> Result<Vec<Measurement>, String> {
    let (free, _) = ctx.mem_get_info().map_err(err("memory info"))?;
    let n = kernels::stream_len((dev.l2_mib * 1_048_576.0) as u64, free as u64);
    let len = usize::try_from(n).map_err(|e| e.to_string())?;
    let cfg = grid(dev.sm_count, 8);
    let (va, vb, vc, s) = INIT;
    let mut a = stream.alloc_zeros::<f32>(len).map_err(err("alloc a"))?;
    let mut b = stream.alloc_zeros::<f32>(len).map_err(err("alloc b"))?;
    let mut c = stream.alloc_zeros::<f32>(len).map_err(err("alloc c"))?;
    for (x, v) in [(&mut a, va), (&mut b, vb), (&mut c, vc)] {
        let mut l = stream.launch_builder(&k.fill);
        l.arg(x).arg(&n).arg(&v);
        // SAFETY: `x` holds `n` floats.
        unsafe { l.launch(cfg) }.map_err(err("launch fill"))?;
    }
    let n4 = n / 4;
    let launch_copy = |a: &CudaSlice<f32>, c: &mut CudaSlice<f32>| -> Result<(), String> {
        let mut l = stream.launch_builder(&k.copy4);
        l.arg(a).arg(c).arg(&n4);
        // SAFETY: both hold `n` floats, 256-byte aligned, read as `n4` float4.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(err("launch copy4"))
    };
    let launch_triad =
        |a: &mut CudaSlice<f32>, b: &CudaSlice<f32>, c: &CudaSlice<f32>| -> Result<(), String> {
            let mut l = stream.launch_builder(&k.triad4);
            l.arg(a).arg(b).arg(c).arg(&s).arg(&n4);
            // SAFETY: as for copy4.
            unsafe { l.launch(cfg) }
                .map(|_| ())
                .map_err(err("launch triad4"))
        };
    let mut copy_ms = Vec::new();
    for i in 0..opts.warmup + opts.repetitions {
        let ms = timed(stream, || launch_copy(&a, &mut c))?;
        if i >= opts.warmup {
            copy_ms.push(ms);
        }
    }
    let copy_ok = count_bad(stream, k, &c, n, va, 0.0, cfg)? == 0;
    let mut triad_ms = Vec::new();
    for i in 0..opts.warmup + opts.repetitions {
        let ms = timed(stream, || launch_triad(&mut a, &b, &c))?;
        if i >= opts.warmup {
            triad_ms.push(ms);
        }
    }
    // c holds `va` after the copy, so a = b + s·va.
    let triad_expect = s.mul_add(va, vb);
    let triad_ok = count_bad(stream, k, &a, n, triad_expect, 1e-6, cfg)? == 0;
    let gbs = |bytes_per: u64, ms: &[f64]| -> Vec<f64> {
        ms.iter()
            .map(|t| (n * bytes_per) as f64 / (t * 1e-3) / 1e9)
            .collect()
    };
    let mk = |metric: Metric, samples: Vec<f64>, ok: bool| -> Result<Measurement, String> {
        Ok(Measurement {
            metric,
            unit: metric.unit().into(),
            summary: summarize(&samples).ok_or("no samples")?,
            verified: ok,
            size: n * 4,
            samples,
        })
    };
    Ok(vec![
        mk(
            Metric::Copy,
            gbs(kernels::COPY_BYTES_PER_ELEM, &copy_ms),
            copy_ok,
        )?,
        mk(
            Metric::Triad,
            gbs(kernels::TRIAD_BYTES_PER_ELEM, &triad_ms),
            triad_ok,
        )?,
    ])
}

fn fma(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    dev: &Device,
    opts: &Options,
) -> Result<Measurement, String> {
    let cfg = grid(dev.sm_count, 8);
    let threads = u64::from(cfg.grid_dim.0) * u64::from(cfg.block_dim.0);
    let iters: i32 = 1 << 18;
    // m slightly above 1 and a small k: no chain converges, so the result depends on every
    // iteration (a kernel that ran fewer rounds cannot match), and the host reproduces it exactly.
    let (m, add) = (1.0_f32 + f32::EPSILON, 1.0_f32 / 4096.0);
    let mut out = stream
        .alloc_zeros::<f32>(threads as usize)
        .map_err(err("alloc"))?;
    let mut samples = Vec::new();
    for i in 0..opts.warmup + opts.repetitions {
        let ms = timed(stream, || {
            let mut l = stream.launch_builder(&k.fma8);
            l.arg(&mut out).arg(&iters).arg(&m).arg(&add);
            // SAFETY: `out` has one float per launched thread.
            unsafe { l.launch(cfg) }
                .map(|_| ())
                .map_err(err("launch fma8"))
        })?;
        if i >= opts.warmup {
            samples.push(threads as f64 * f64::from(iters) * 16.0 / (ms * 1e-3) / 1e12);
        }
    }
    let expect = kernels::fma8_expected(iters, m, add);
    let ok = count_bad(stream, k, &out, threads, expect, 0.0, cfg)? == 0;
    Ok(Measurement {
        metric: Metric::Fp32Fma,
        unit: "TFLOPS".into(),
        summary: summarize(&samples).ok_or("no samples")?,
        verified: ok,
        size: threads,
        samples,
    })
}

fn gemms(
    stream: &Arc<CudaStream>,
    dev: &Device,
    opts: &Options,
) -> Result<Vec<Measurement>, String> {
    let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cublas: {e}"))?;
    let n = opts.gemm_n;
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        ((rng >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    // Random inputs: zeros let the GPU run cooler and faster than real data.
    let a: Vec<f32> = (0..n * n).map(|_| next()).collect();
    let b: Vec<f32> = (0..n * n).map(|_| next()).collect();
    let reps = (opts.repetitions / 4).max(3);
    let mut out = vec![gemm_one::<f32>(
        stream,
        &blas,
        &a,
        &b,
        n,
        reps,
        opts.warmup,
        |x| x,
        |x| x,
        1e-3,
    )?];
    let (major, _) = dev.compute_capability.split_once('.').unwrap_or(("0", "0"));
    let major: u32 = major.parse().unwrap_or(0);
    out.push(gemm_one::<half::f16>(
        stream,
        &blas,
        &a,
        &b,
        n,
        reps,
        opts.warmup,
        half::f16::from_f32,
        half::f16::to_f32,
        2e-3,
    )?);
    // BF16 tensor cores exist from Ampere (8.0) on.
    if major >= 8 {
        out.push(gemm_one::<half::bf16>(
            stream,
            &blas,
            &a,
            &b,
            n,
            reps,
            opts.warmup,
            half::bf16::from_f32,
            half::bf16::to_f32,
            8e-3,
        )?);
    }
    Ok(out)
}

trait GemmType: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy + Default {
    const METRIC: Metric;
}
impl GemmType for f32 {
    const METRIC: Metric = Metric::Sgemm;
}
impl GemmType for half::f16 {
    const METRIC: Metric = Metric::Fp16Gemm;
}
impl GemmType for half::bf16 {
    const METRIC: Metric = Metric::Bf16Gemm;
}

#[expect(
    clippy::too_many_arguments,
    reason = "one GEMM measurement, all of its knobs"
)]
fn gemm_one<T: GemmType>(
    stream: &Arc<CudaStream>,
    blas: &CudaBlas,
    a: &[f32],
    b: &[f32],
    n: usize,
    reps: usize,
    warmup: usize,
    to: impl Fn(f32) -> T,
    from: impl Fn(T) -> f32,
    tol: f64,
) -> Result<Measurement, String>
where
    CudaBlas: Gemm<T>,
{
    let ha: Vec<T> = a.iter().map(|x| to(*x)).collect();
    let hb: Vec<T> = b.iter().map(|x| to(*x)).collect();
    let da = stream.clone_htod(&ha).map_err(err("upload"))?;
    let db = stream.clone_htod(&hb).map_err(err("upload"))?;
    let mut dc = stream.alloc_zeros::<T>(n * n).map_err(err("alloc"))?;
    let ni = i32::try_from(n).map_err(|e| e.to_string())?;
    let cfg = GemmConfig {
        transa: blas_sys::cublasOperation_t::CUBLAS_OP_N,
        transb: blas_sys::cublasOperation_t::CUBLAS_OP_N,
        m: ni,
        n: ni,
        k: ni,
        alpha: to(1.0),
        lda: ni,
        ldb: ni,
        beta: to(0.0),
        ldc: ni,
    };
    let mut samples = Vec::new();
    for i in 0..warmup + reps {
        let ms = timed(stream, || {
            // SAFETY: all three matrices are n×n column-major on this stream.
            unsafe { blas.gemm(cfg, &da, &db, &mut dc) }.map_err(|e| format!("gemm: {e}"))
        })?;
        if i >= warmup {
            samples.push(2.0 * (n as f64).powi(3) / (ms * 1e-3) / 1e12);
        }
    }
    // Verify sampled entries against an f64 reference on the values the GPU saw.
    let hc = stream.clone_dtoh(&dc).map_err(err("download"))?;
    let ra: Vec<f32> = ha.iter().map(|x| from(*x)).collect();
    let rb: Vec<f32> = hb.iter().map(|x| from(*x)).collect();
    let mut ok = true;
    for s in 0..16 {
        let (i, j) = ((s * 7919) % n, (s * 104_729 + 13) % n);
        let want = kernels::gemm_reference(&ra, &rb, n, i, j);
        let scale: f64 = (0..n)
            .map(|l| f64::from(ra[i + l * n] * rb[l + j * n]).abs())
            .sum();
        let got = f64::from(from(hc[i + j * n]));
        if (got - want).abs() > tol * want.abs() + 1e-4 * scale {
            ok = false;
        }
    }
    Ok(Measurement {
        metric: T::METRIC,
        unit: "TFLOPS".into(),
        summary: summarize(&samples).ok_or("no samples")?,
        verified: ok,
        size: n as u64,
        samples,
    })
}

fn host_copies(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    opts: &Options,
) -> Result<Vec<Measurement>, String> {
    let len = opts.host_copy_bytes;
    // SAFETY: filled right below before any read.
    let mut src =
        unsafe { ctx.alloc_pinned_with_flags::<u8>(len, 0) }.map_err(err("pinned alloc"))?;
    // SAFETY: only written by the device-to-host copies, then read.
    let mut back =
        unsafe { ctx.alloc_pinned_with_flags::<u8>(len, 0) }.map_err(err("pinned alloc"))?;
    {
        let s = src.as_mut_slice().map_err(err("pinned"))?;
        for (i, b) in s.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
    }
    let mut dev = stream.alloc_zeros::<u8>(len).map_err(err("alloc"))?;
    let mut h2d = Vec::new();
    let mut d2h = Vec::new();
    for i in 0..opts.warmup + opts.repetitions {
        let up = timed(stream, || {
            stream.memcpy_htod(&src, &mut dev).map_err(err("h2d"))
        })?;
        let down = timed(stream, || {
            stream.memcpy_dtoh(&dev, &mut back).map_err(err("d2h"))
        })?;
        if i >= opts.warmup {
            h2d.push(len as f64 / (up * 1e-3) / 1e9);
            d2h.push(len as f64 / (down * 1e-3) / 1e9);
        }
    }
    stream.synchronize().map_err(err("sync"))?;
    let ok = src.as_slice().map_err(err("pinned"))? == back.as_slice().map_err(err("pinned"))?;
    let mk = |metric: Metric, s: &[f64]| -> Result<Measurement, String> {
        Ok(Measurement {
            metric,
            unit: "GB/s".into(),
            summary: summarize(s).ok_or("no samples")?,
            verified: ok,
            size: len as u64,
            samples: s.to_vec(),
        })
    };
    Ok(vec![mk(Metric::H2d, &h2d)?, mk(Metric::D2h, &d2h)?])
}

/// Device-to-device copies for every ordered pair, with peer access where the hardware allows;
/// the results, and `(source, error)` for pairs that failed.
fn peers(contexts: &[Arc<CudaContext>], opts: &Options) -> (Vec<PeerResult>, Vec<(u32, String)>) {
    let mut out = Vec::new();
    let mut failed = Vec::new();
    let len: usize = 256 << 20;
    for (i, src_ctx) in contexts.iter().enumerate() {
        for (j, dst_ctx) in contexts.iter().enumerate() {
            if i == j {
                continue;
            }
            let r = (|| -> Result<PeerResult, String> {
                let mut can = 0i32;
                // SAFETY: queries two valid devices.
                unsafe {
                    sys::cuDeviceCanAccessPeer(&mut can, src_ctx.cu_device(), dst_ctx.cu_device())
                }
                .result()
                .map_err(err("can access peer"))?;
                if can == 1 {
                    src_ctx.bind_to_thread().map_err(err("bind"))?;
                    // SAFETY: enabling twice returns an "already enabled" error, ignored.
                    let _ = unsafe { sys::cuCtxEnablePeerAccess(dst_ctx.cu_ctx(), 0) };
                }
                let s_stream = src_ctx.default_stream();
                let d_stream = dst_ctx.default_stream();
                let pattern: Vec<u8> = (0..len).map(|x| (x % 253) as u8).collect();
                let src = s_stream.clone_htod(&pattern).map_err(err("upload"))?;
                let mut dst = d_stream.alloc_zeros::<u8>(len).map_err(err("alloc"))?;
                d_stream.synchronize().map_err(err("sync"))?;
                let mut samples = Vec::new();
                for k in 0..opts.warmup + opts.repetitions {
                    let ms = timed(&s_stream, || {
                        let (sp, _g1) = src.device_ptr(&s_stream);
                        let (dp, _g2) = dst.device_ptr_mut(&s_stream);
                        // SAFETY: both buffers hold `len` bytes on their devices.
                        unsafe {
                            sys::cuMemcpyPeerAsync(
                                dp,
                                dst_ctx.cu_ctx(),
                                sp,
                                src_ctx.cu_ctx(),
                                len,
                                s_stream.cu_stream(),
                            )
                        }
                        .result()
                        .map_err(err("peer copy"))
                    })?;
                    if k >= opts.warmup {
                        samples.push(len as f64 / (ms * 1e-3) / 1e9);
                    }
                }
                let back = d_stream.clone_dtoh(&dst).map_err(err("download"))?;
                Ok(PeerResult {
                    from: i as u32,
                    to: j as u32,
                    summary: summarize(&samples).ok_or("no samples")?,
                    verified: back == pattern,
                })
            })();
            match r {
                Ok(p) => out.push(p),
                Err(e) => failed.push((i as u32, format!("peer copy gpu{i} → gpu{j}: {e}"))),
            }
        }
    }
    (out, failed)
}
