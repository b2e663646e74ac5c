//! cuBLAS GEMMs: SGEMM in FP32 (its errors must be FP32's, see [`precision`]), FP16 and BF16 on
//! tensor cores with FP32 accumulation; each measured on its own, so one failing keeps the
//! others.

use std::sync::Arc;

use cudarc::cublas::{CudaBlas, Gemm, GemmConfig, sys as blas_sys};
use cudarc::driver::CudaStream;

use super::{err, time_samples};
use crate::bench::kernels::{self, gemm_inputs};
use crate::bench::precision::{self, Precision};
use crate::bench::stats::summarize;
use crate::bench::{Device, Measurement, Metric};

/// Each GEMM's measurement or its error (`sgemm: …`).
pub fn gemms(
    stream: &Arc<CudaStream>,
    dev: &Device,
    n: usize,
    warmup: usize,
    reps: usize,
) -> Vec<Result<Measurement, String>> {
    let blas = match CudaBlas::new(stream.clone()) {
        Ok(b) => b,
        Err(e) => return vec![Err(format!("gemm: cublas: {e}"))],
    };
    // Default math: cuBLAS uses no TF32 for SGEMM unless told to; the precision check catches
    // an environment that told it anyway (NVIDIA_TF32_OVERRIDE, a patched library).
    // SAFETY: a live handle.
    if let Err(e) = unsafe {
        blas_sys::cublasSetMathMode(*blas.handle(), blas_sys::cublasMath_t::CUBLAS_DEFAULT_MATH)
    }
    .result()
    {
        return vec![Err(format!("gemm: cublas math mode: {e}"))];
    }
    let (a, b) = gemm_inputs(n);
    let major: u32 = dev
        .compute_capability
        .split_once('.')
        .and_then(|(m, _)| m.parse().ok())
        .unwrap_or(0);
    let tag = |m: Metric| move |e: String| format!("{}: {e}", m.key());
    let mut out = vec![
        gemm_one::<f32>(stream, &blas, &a, &b, n, (warmup, reps), |x| x, |x| x)
            .map_err(tag(Metric::Sgemm)),
        gemm_one::<half::f16>(
            stream,
            &blas,
            &a,
            &b,
            n,
            (warmup, reps),
            half::f16::from_f32,
            half::f16::to_f32,
        )
        .map_err(tag(Metric::Fp16Gemm)),
    ];
    // BF16 tensor cores exist from Ampere (8.0) on.
    if major >= 8 {
        out.push(
            gemm_one::<half::bf16>(
                stream,
                &blas,
                &a,
                &b,
                n,
                (warmup, reps),
                half::bf16::from_f32,
                half::bf16::to_f32,
            )
            .map_err(tag(Metric::Bf16Gemm)),
        );
    }
    out
}

trait GemmType: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits + Copy + Default {
    const METRIC: Metric;
    /// Relative tolerance of the half-precision checks (FP32 accumulation of rounded inputs).
    const TOL: f64;
}
impl GemmType for f32 {
    const METRIC: Metric = Metric::Sgemm;
    const TOL: f64 = 0.0;
}
impl GemmType for half::f16 {
    const METRIC: Metric = Metric::Fp16Gemm;
    const TOL: f64 = 2e-3;
}
impl GemmType for half::bf16 {
    const METRIC: Metric = Metric::Bf16Gemm;
    const TOL: f64 = 8e-3;
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
    (warmup, reps): (usize, usize),
    to: impl Fn(f32) -> T,
    from: impl Fn(T) -> f32,
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
    // beta = 0: every launch writes the same C, so batched launches leave one result.
    let (ms, launches) = time_samples(stream, warmup, reps, || {
        // SAFETY: all three matrices are n×n column-major on this stream.
        unsafe { blas.gemm(cfg, &da, &db, &mut dc) }.map_err(|e| format!("gemm: {e}"))
    })?;
    let samples: Vec<f64> = ms
        .iter()
        .map(|t| 2.0 * (n as f64).powi(3) / (t * 1e-3) / 1e12)
        .collect();
    // Checked entries against an f64 reference of the values the GPU saw.
    let hc = stream.clone_dtoh(&dc).map_err(err("download"))?;
    let ra: Vec<f32> = ha.iter().map(|x| from(*x)).collect();
    let rb: Vec<f32> = hb.iter().map(|x| from(*x)).collect();
    let (verified, max_error) = if T::METRIC == Metric::Sgemm {
        let worst = precision::checked_entries(n)
            .map(|(i, j)| {
                precision::normalized_error(&ra, &rb, n, i, j, f64::from(from(hc[i + j * n])))
            })
            .fold(0.0, f64::max);
        // Reduced precision is not FP32: unverified, and named so by the caller.
        (precision::classify(worst) == Precision::Fp32, Some(worst))
    } else {
        let ok = precision::checked_entries(n).all(|(i, j)| {
            let want = kernels::gemm_reference(&ra, &rb, n, i, j);
            let scale: f64 = (0..n)
                .map(|l| f64::from(ra[i + l * n] * rb[l + j * n]).abs())
                .sum();
            let got = f64::from(from(hc[i + j * n]));
            (got - want).abs() <= T::TOL * want.abs() + 1e-4 * scale
        });
        (ok, None)
    };
    Ok(Measurement {
        metric: T::METRIC,
        unit: "TFLOPS".into(),
        summary: summarize(&samples).ok_or("no samples")?,
        verified,
        size: n as u64,
        samples,
        launches: Some(launches),
        max_error,
    })
}
