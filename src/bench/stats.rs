//! Statistics over repeated measurements: median, 5th and 95th percentile (linear
//! interpolation between order statistics), coefficient of variation.

use serde::{Deserialize, Serialize};

/// Summary of one metric's samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Median.
    pub median: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Standard deviation / mean (sample standard deviation).
    pub cv: f64,
    /// Number of samples.
    pub samples: usize,
}

/// The `q`-quantile (0..=1) of sorted values.
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let lo = pos.floor() as usize;
            let hi = pos.ceil() as usize;
            sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
        }
    }
}

/// Summarizes samples; `None` when there are none or any is not finite.
pub fn summarize(samples: &[f64]) -> Option<Summary> {
    if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
        return None;
    }
    let mut s = samples.to_vec();
    s.sort_by(f64::total_cmp);
    let n = s.len() as f64;
    let mean = s.iter().sum::<f64>() / n;
    let var = if s.len() > 1 {
        s.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    Some(Summary {
        median: quantile(&s, 0.5),
        p5: quantile(&s, 0.05),
        p95: quantile(&s, 0.95),
        cv: if mean == 0.0 { 0.0 } else { var.sqrt() / mean },
        samples: s.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles() {
        let s = summarize(&[5.0, 1.0, 3.0, 2.0, 4.0]).expect("summary");
        assert_eq!(s.median, 3.0);
        assert!((s.p5 - 1.2).abs() < 1e-12, "{}", s.p5);
        assert!((s.p95 - 4.8).abs() < 1e-12, "{}", s.p95);
        assert_eq!(s.samples, 5);
        // sample sd of 1..5 = sqrt(2.5); mean 3
        assert!((s.cv - 2.5f64.sqrt() / 3.0).abs() < 1e-12);
    }

    #[test]
    fn even_count_interpolates() {
        let s = summarize(&[1.0, 2.0, 3.0, 4.0]).expect("summary");
        assert_eq!(s.median, 2.5);
    }

    #[test]
    fn empty_or_nan_is_none() {
        assert!(summarize(&[]).is_none());
        assert!(summarize(&[1.0, f64::NAN]).is_none());
        let one = summarize(&[7.0]).expect("one");
        assert_eq!((one.median, one.p5, one.p95, one.cv), (7.0, 7.0, 7.0, 0.0));
    }
}
