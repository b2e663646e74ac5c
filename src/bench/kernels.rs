//! The bench's CUDA kernels, compiled by NVRTC at run time to machine code for the device's
//! compute capability (no nvcc at build time, no PTX JIT in the driver), and the host-side
//! expectations their outputs are checked against.
//!
//! Memory kernels use 16-byte (`float4`) loads in a grid-stride loop, the pattern that gets
//! within a few percent of peak on HBM parts (a one-element-per-thread kernel reaches only
//! 47–62% on Hopper). The FMA kernel keeps eight independent dependency chains per thread so
//! every SM issues an FMA each cycle. Verification runs on the device: a counting kernel
//! compares every element with the expected value and the host reads back one counter.

/// The CUDA C source of every kernel.
pub const SOURCE: &str = r#"
extern "C" __global__ void fill(float* __restrict__ x, unsigned long long n, float v) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        x[i] = v;
    }
}

extern "C" __global__ void copy4(const float4* __restrict__ a, float4* __restrict__ c,
                                 unsigned long long n4) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n4;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        c[i] = a[i];
    }
}

extern "C" __global__ void triad4(float4* __restrict__ a, const float4* __restrict__ b,
                                  const float4* __restrict__ c, float s, unsigned long long n4) {
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n4;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        float4 bb = b[i];
        float4 cc = c[i];
        a[i] = make_float4(fmaf(s, cc.x, bb.x), fmaf(s, cc.y, bb.y), fmaf(s, cc.z, bb.z),
                           fmaf(s, cc.w, bb.w));
    }
}

// 8 independent chains x = x * m + k; `iters` rounds of 8 FMAs (16 flops each) per thread.
extern "C" __global__ void fma8(float* __restrict__ out, int iters, float m, float k) {
    float x0 = 0.0f, x1 = 1.0f, x2 = 2.0f, x3 = 3.0f, x4 = 4.0f, x5 = 5.0f, x6 = 6.0f, x7 = 7.0f;
    for (int i = 0; i < iters; ++i) {
        x0 = fmaf(x0, m, k); x1 = fmaf(x1, m, k); x2 = fmaf(x2, m, k); x3 = fmaf(x3, m, k);
        x4 = fmaf(x4, m, k); x5 = fmaf(x5, m, k); x6 = fmaf(x6, m, k); x7 = fmaf(x7, m, k);
    }
    out[blockIdx.x * blockDim.x + threadIdx.x] = x0 + x1 + x2 + x3 + x4 + x5 + x6 + x7;
}

// Counts elements that differ from `expect` by more than `tol` (relative).
extern "C" __global__ void count_bad(const float* __restrict__ x, unsigned long long n,
                                     float expect, float tol,
                                     unsigned long long* __restrict__ bad) {
    unsigned long long local = 0;
    for (unsigned long long i = blockIdx.x * (unsigned long long)blockDim.x + threadIdx.x; i < n;
         i += (unsigned long long)blockDim.x * gridDim.x) {
        if (!(fabsf(x[i] - expect) <= tol * fabsf(expect))) local++;
    }
    if (local) atomicAdd(bad, local);
}
"#;

/// Kernel names in [`SOURCE`].
pub const NAMES: &[&str] = &["fill", "copy4", "triad4", "fma8", "count_bad"];

/// Values the memory kernels use: `a`, `b`, `c` initial values and the Triad scalar.
pub const INIT: (f32, f32, f32, f32) = (1.0, 2.0, 0.5, 3.0);

/// What the FMA kernel writes for each thread, computed on the host with the same fused
/// operations (IEEE `fmaf`), so the device result must match exactly.
pub fn fma8_expected(iters: i32, m: f32, k: f32) -> f32 {
    let mut x = [0.0f32, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0];
    for _ in 0..iters {
        for v in &mut x {
            *v = v.mul_add(m, k);
        }
    }
    // Same summation order as the kernel.
    x[0] + x[1] + x[2] + x[3] + x[4] + x[5] + x[6] + x[7]
}

/// Triad's expected `a` after one launch: `b + s·c`.
pub fn triad_expected() -> f32 {
    let (_, b, c, s) = INIT;
    s.mul_add(c, b)
}

/// Bytes moved per element by copy (read + write) and triad (two reads + write).
pub const COPY_BYTES_PER_ELEM: u64 = 8;
/// See [`COPY_BYTES_PER_ELEM`].
pub const TRIAD_BYTES_PER_ELEM: u64 = 12;

/// Array length (floats, a multiple of 4) for the memory kernels: each array at least 4× the
/// L2 and at least 1 GiB (enough data in flight to saturate HBM3e), at most an eighth of free
/// memory.
pub fn stream_len(l2_bytes: u64, free_bytes: u64) -> u64 {
    let want = (4 * l2_bytes).max(1 << 30);
    let cap = (free_bytes / 8).max(16 << 20);
    (want.min(cap) / 4) & !3
}

/// A GEMM reference value: `C[i][j]` of column-major `A (n×n) · B (n×n)` in f64.
pub fn gemm_reference(a: &[f32], b: &[f32], n: usize, i: usize, j: usize) -> f64 {
    (0..n)
        .map(|l| f64::from(a[i + l * n]) * f64::from(b[l + j * n]))
        .sum()
}

/// The GEMM inputs: `n×n` values in [-1, 1) from a fixed xorshift stream, the same on every
/// run (random data, since zeros let the GPU run cooler and faster than real work).
pub fn gemm_inputs(n: usize) -> (Vec<f32>, Vec<f32>) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        ((rng >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    };
    let a = (0..n * n).map(|_| next()).collect();
    let b = (0..n * n).map(|_| next()).collect();
    (a, b)
}

/// Each timed sample should last at least this long, so the launch gap and the event
/// resolution (about 0.5 µs) are noise, not signal.
pub const SAMPLE_MS: f64 = 5.0;
/// Most launches between one pair of events.
pub const MAX_LAUNCHES: usize = 64;

/// Launches per timed sample for a kernel that took `one_ms` alone (from the warm-up).
pub fn launches_per_sample(one_ms: f64) -> usize {
    if !(one_ms.is_finite() && one_ms > 0.0) {
        return MAX_LAUNCHES;
    }
    ((SAMPLE_MS / one_ms).ceil() as usize).clamp(1, MAX_LAUNCHES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fma_expectation_matches_a_closed_form() {
        // With m = 1 every chain just adds k per round.
        let e = fma8_expected(1000, 1.0, 0.5);
        assert_eq!(e, 28.0 + 8.0 * 500.0);
        // A contracting map converges to k / (1 - m) in every chain.
        let e = fma8_expected(100_000, 0.5, 1.0);
        assert!((e - 16.0).abs() < 1e-5, "{e}");
        // The bench's parameters: the result depends on the iteration count.
        let (m, k) = (1.0_f32 + f32::EPSILON, 1.0_f32 / 4096.0);
        assert_ne!(
            fma8_expected(1 << 18, m, k),
            fma8_expected((1 << 18) - 1, m, k)
        );
    }

    #[test]
    fn triad_and_sizes() {
        assert_eq!(triad_expected(), 3.5);
        // H200: 50 MiB L2 → the 1 GiB floor wins → 256 Mi floats per array.
        assert_eq!(stream_len(50 << 20, 140 << 30), (1u64 << 30) / 4);
        // A GPU with little memory is capped at an eighth of it.
        assert_eq!(stream_len(6 << 20, 1 << 30), (128u64 << 20) / 4);
        assert_eq!(stream_len(6 << 20, 1 << 30) % 4, 0);
    }

    #[test]
    fn gemm_reference_is_column_major() {
        // A = [[1,2],[3,4]] column-major: [1,3,2,4]; B = I.
        let a = [1.0, 3.0, 2.0, 4.0];
        let b = [1.0, 0.0, 0.0, 1.0];
        assert_eq!(gemm_reference(&a, &b, 2, 0, 1), 2.0);
        assert_eq!(gemm_reference(&a, &b, 2, 1, 0), 3.0);
    }

    #[test]
    fn launches_amortise_short_kernels_only() {
        // An H200 Triad over 3 GiB: about 0.65 ms, so 8 launches per sample.
        assert_eq!(launches_per_sample(0.65), 8);
        // An SGEMM of 22 ms: one.
        assert_eq!(launches_per_sample(22.0), 1);
        // A timer that read zero or garbage: the most.
        for t in [0.0, -1.0, f64::NAN, 1e-6] {
            assert_eq!(launches_per_sample(t), MAX_LAUNCHES, "{t}");
        }
    }

    #[test]
    fn gemm_inputs_are_fixed_and_spread() {
        let (a, b) = gemm_inputs(64);
        assert_eq!(gemm_inputs(64).0, a);
        assert_ne!(a, b);
        assert!(a.iter().all(|x| (-1.0..1.0).contains(x)));
        let mean = a.iter().map(|x| f64::from(*x)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.05, "{mean}");
    }

    #[test]
    fn every_kernel_is_in_the_source() {
        for n in NAMES {
            assert!(SOURCE.contains(&format!("void {n}(")), "{n}");
        }
    }
}
