//! Device-memory bandwidth (copy, Triad) and FP32 FMA throughput with the bench's own kernels;
//! each result checked element by element on the device.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaSlice, CudaStream, LaunchConfig, PushKernelArg};

use super::{Kernels, err, grid, time_samples};
use crate::bench::kernels::{self, INIT};
use crate::bench::stats::summarize;
use crate::bench::{Device, Measurement, Metric};

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

fn measurement(
    metric: Metric,
    samples: Vec<f64>,
    verified: bool,
    size: u64,
    launches: u32,
) -> Result<Measurement, String> {
    Ok(Measurement {
        metric,
        unit: metric.unit().into(),
        summary: summarize(&samples).ok_or("no samples")?,
        verified,
        size,
        samples,
        launches: Some(launches),
        max_error: None,
    })
}

/// Copy and Triad over arrays of at least 4× the L2; each a result or its error, so one
/// failing does not hide the other.
pub fn bandwidth(
    ctx: &Arc<CudaContext>,
    stream: &Arc<CudaStream>,
    k: &Kernels,
    dev: &Device,
    warmup: usize,
    reps: usize,
) -> Result<[Result<Measurement, String>; 2], String> {
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
    let gbs = |bytes_per: u64, ms: &[f64]| -> Vec<f64> {
        ms.iter()
            .map(|t| (n * bytes_per) as f64 / (t * 1e-3) / 1e9)
            .collect()
    };
    // Every copy launch writes c = a again, so a batch leaves the same result as one launch.
    let copy = time_samples(stream, warmup, reps, || {
        let mut l = stream.launch_builder(&k.copy4);
        l.arg(&a).arg(&mut c).arg(&n4);
        // SAFETY: both hold `n` floats, 256-byte aligned, read as `n4` float4.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(err("launch copy4"))
    })
    .and_then(|(ms, launches)| {
        let ok = count_bad(stream, k, &c, n, va, 0.0, cfg)? == 0;
        measurement(
            Metric::Copy,
            gbs(kernels::COPY_BYTES_PER_ELEM, &ms),
            ok,
            n * 4,
            launches,
        )
    });
    // c holds `va` after the copy (refilled if the copy failed), so a = b + s·va, launch after
    // launch.
    if copy.is_err() {
        let mut l = stream.launch_builder(&k.fill);
        l.arg(&mut c).arg(&n).arg(&va);
        // SAFETY: `c` holds `n` floats.
        unsafe { l.launch(cfg) }.map_err(err("launch fill"))?;
    }
    let triad = time_samples(stream, warmup, reps, || {
        let mut l = stream.launch_builder(&k.triad4);
        l.arg(&mut a).arg(&b).arg(&c).arg(&s).arg(&n4);
        // SAFETY: as for copy4.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(err("launch triad4"))
    })
    .and_then(|(ms, launches)| {
        let ok = count_bad(stream, k, &a, n, s.mul_add(va, vb), 1e-6, cfg)? == 0;
        measurement(
            Metric::Triad,
            gbs(kernels::TRIAD_BYTES_PER_ELEM, &ms),
            ok,
            n * 4,
            launches,
        )
    });
    Ok([copy, triad])
}

/// FP32 FMA throughput: eight independent chains per thread, the result matched exactly
/// against the host's fused arithmetic.
pub fn fma(
    stream: &Arc<CudaStream>,
    k: &Kernels,
    dev: &Device,
    warmup: usize,
    reps: usize,
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
    let (ms, launches) = time_samples(stream, warmup, reps, || {
        let mut l = stream.launch_builder(&k.fma8);
        l.arg(&mut out).arg(&iters).arg(&m).arg(&add);
        // SAFETY: `out` has one float per launched thread.
        unsafe { l.launch(cfg) }
            .map(|_| ())
            .map_err(err("launch fma8"))
    })?;
    let samples = ms
        .iter()
        .map(|t| threads as f64 * f64::from(iters) * 16.0 / (t * 1e-3) / 1e12)
        .collect();
    let expect = kernels::fma8_expected(iters, m, add);
    let ok = count_bad(stream, k, &out, threads, expect, 0.0, cfg)? == 0;
    measurement(Metric::Fp32Fma, samples, ok, threads, launches)
}
