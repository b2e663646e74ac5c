//! Telling FP32 SGEMM from tensor-core TF32 by the size of its errors, so a TF32 run cannot be
//! reported as FP32 throughput (TF32 is 8× faster on an A100 and would pass any FP32 floor).
//!
//! Each checked entry's error is normalised by the root-sum-square of its products,
//! `|got − exact| / √Σ(a·b)²`. With inputs rounded to TF32's 10-bit mantissa every product
//! carries a random relative error of about `0.82 · 2⁻¹¹`, so the normalised error is near
//! 4·10⁻⁴ whatever `n`. FP32 math only rounds the accumulation: about `2⁻²⁴ · √(n/2)` even for
//! a naive sequential sum, 4·10⁻⁶ at `n` = 8192, and less for cuBLAS's blocked sums. The
//! boundary sits at 4·10⁻⁵, a factor 10 from each; the unit tests reproduce both regimes on
//! the CPU with the bench's own inputs.

/// Largest normalised error FP32 math produces (with a 10× margin).
pub const FP32_LIMIT: f64 = 4e-5;
/// Largest a reduced-precision (TF32, BF16×3) GEMM produces; above it the result is wrong.
pub const REDUCED_LIMIT: f64 = 1e-2;

/// What the errors say about the math that ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// FP32 products and sums.
    Fp32,
    /// Inputs rounded to a shorter mantissa: TF32 tensor cores (or another reduced mode).
    Reduced,
    /// Not a GEMM of these inputs at all.
    Wrong,
}

/// The normalised error of entry `(i, j)` of column-major `A·B` (n×n) against `got`.
pub fn normalized_error(a: &[f32], b: &[f32], n: usize, i: usize, j: usize, got: f64) -> f64 {
    let (mut exact, mut squares) = (0.0f64, 0.0f64);
    for l in 0..n {
        let p = f64::from(a[i + l * n]) * f64::from(b[l + j * n]);
        exact += p;
        squares += p * p;
    }
    if squares == 0.0 {
        return if got == 0.0 { 0.0 } else { f64::INFINITY };
    }
    (got - exact).abs() / squares.sqrt()
}

/// The verdict on the largest normalised error of the checked entries.
pub fn classify(max_error: f64) -> Precision {
    if !max_error.is_finite() || max_error > REDUCED_LIMIT {
        Precision::Wrong
    } else if max_error > FP32_LIMIT {
        Precision::Reduced
    } else {
        Precision::Fp32
    }
}

/// The entries the bench checks: 64 spread over the matrix.
pub fn checked_entries(n: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..64).map(move |s| ((s * 7919) % n, (s * 104_729 + 13) % n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::kernels::gemm_inputs;

    /// Rounds to TF32 (10 explicit mantissa bits), to nearest, ties to even, as the tensor
    /// cores' input conversion does.
    fn tf32(x: f32) -> f32 {
        let bits = x.to_bits();
        let lsb = (bits >> 13) & 1;
        f32::from_bits((bits + 0x0fff + lsb) & !0x1fff)
    }

    /// The worst case of FP32 math: a sequential f32 sum of f32 products.
    fn entry_f32(a: &[f32], b: &[f32], n: usize, i: usize, j: usize, round: fn(f32) -> f32) -> f64 {
        let mut acc = 0.0f32;
        for l in 0..n {
            acc = round(a[i + l * n]).mul_add(round(b[l + j * n]), acc);
        }
        f64::from(acc)
    }

    fn worst(n: usize, round: fn(f32) -> f32) -> f64 {
        let (a, b) = gemm_inputs(n);
        checked_entries(n)
            .map(|(i, j)| normalized_error(&a, &b, n, i, j, entry_f32(&a, &b, n, i, j, round)))
            .fold(0.0, f64::max)
    }

    #[test]
    #[expect(
        clippy::print_stderr,
        reason = "the measured margins, for docs/bench.md (--nocapture)"
    )]
    fn fp32_and_tf32_fall_on_either_side_at_the_bench_size() {
        let n = 8192;
        let fp32 = worst(n, |x| x);
        let tf = worst(n, tf32);
        eprintln!("n={n}: FP32 worst {fp32:.2e}, TF32 worst {tf:.2e}");
        assert_eq!(classify(fp32), Precision::Fp32, "{fp32}");
        assert!(fp32 * 5.0 < FP32_LIMIT, "FP32 keeps a 5× margin: {fp32}");
        assert_eq!(classify(tf), Precision::Reduced, "{tf}");
        assert!(tf > FP32_LIMIT * 3.0, "TF32 keeps a 3× margin: {tf}");
    }

    #[test]
    fn the_quick_size_separates_too() {
        let n = 2048;
        assert_eq!(classify(worst(n, |x| x)), Precision::Fp32);
        assert_eq!(classify(worst(n, tf32)), Precision::Reduced);
        // BF16-rounded inputs are coarser still, yet a GEMM of these inputs.
        let bf16 = |x: f32| half::bf16::from_f32(x).to_f32();
        assert_eq!(classify(worst(n, bf16)), Precision::Reduced);
    }

    #[test]
    fn a_result_of_other_inputs_is_wrong() {
        let n = 256;
        let (a, b) = gemm_inputs(n);
        let e = normalized_error(&a, &b, n, 3, 5, entry_f32(&a, &b, n, 4, 5, |x| x));
        assert_eq!(classify(e), Precision::Wrong, "{e}");
        assert_eq!(classify(f64::NAN), Precision::Wrong);
        // Zero products: only zero is right.
        assert_eq!(normalized_error(&[0.0; 4], &[0.0; 4], 2, 0, 0, 0.0), 0.0);
        assert_eq!(
            classify(normalized_error(&[0.0; 4], &[0.0; 4], 2, 0, 0, 1.0)),
            Precision::Wrong
        );
    }
}
