//! The statistic behind a compare verdict: a percentile bootstrap confidence interval of the
//! ratio of medians (new over base), from each run's raw samples.
//!
//! Why this one: bench samples are few (tens), skewed by clock and thermal effects and now and
//! then an outlier, so a rank or resampling method beats a t-test; the ratio of medians is the
//! quantity a platform engineer reads ("3% slower"), and its interval answers the gate's
//! question directly — is the drop at least the threshold, with this confidence? (nvbench's
//! compare judges noise-relative differences the same way.) Mann-Whitney U would say whether
//! the runs differ, not by how much, and a difference of 0.5% with CV 0.1% is significant
//! but not a regression.
//!
//! Verdicts, with threshold `t` and the two-sided interval `[lo, hi]` at the confidence asked:
//! `worse` when `hi ≤ 1 − t` (the drop is at least `t`), `better` when `lo ≥ 1 + t`, `same`
//! when the whole interval lies within `1 ± t`, else `inconclusive` (too noisy to tell).

use serde::Serialize;

/// How to compare.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The smallest change that counts, as a fraction (0.03 = 3%).
    pub threshold: f64,
    /// Per metric (`h2d`, `peerSlowest`, …): its own threshold, for metrics noisier than the
    /// rest (host copies share the PCIe root with whatever else the node does).
    pub metric_thresholds: std::collections::BTreeMap<String, f64>,
    /// Two-sided confidence of the interval (0.95).
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            threshold: 0.03,
            metric_thresholds: std::collections::BTreeMap::new(),
            confidence: 0.95,
            resamples: 2000,
        }
    }
}

impl Settings {
    /// The threshold of a benchmark identity: its metric's, else the default.
    pub fn threshold_for(&self, id: &str) -> f64 {
        let metric = id.rsplit('/').next().unwrap_or(id);
        self.metric_thresholds
            .get(metric)
            .copied()
            .unwrap_or(self.threshold)
    }
}

/// A verdict on one benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// The new run is slower by at least the threshold.
    Worse,
    /// Too noisy to tell.
    Inconclusive,
    /// Within the threshold either way.
    Same,
    /// Faster by at least the threshold.
    Better,
}

impl Verdict {
    /// As written in reports.
    pub fn word(self) -> &'static str {
        match self {
            Verdict::Worse => "worse",
            Verdict::Inconclusive => "inconclusive",
            Verdict::Same => "same",
            Verdict::Better => "better",
        }
    }
}

/// The ratio of medians and its interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Ratio {
    /// median(new) / median(base).
    pub ratio: f64,
    /// Lower end of the interval.
    pub lo: f64,
    /// Upper end.
    pub hi: f64,
}

/// The median of `v` (reordered).
fn median(v: &mut [f64]) -> f64 {
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    let (_, hi, _) = v.select_nth_unstable_by(n / 2, f64::total_cmp);
    let hi = *hi;
    if n % 2 == 1 {
        return hi;
    }
    let lo = v[..n / 2].iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (lo + hi) / 2.0
}

/// A small deterministic generator (SplitMix64): the same samples give the same interval.
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Uniform in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }

    /// Standard normal (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let (u, v) = (self.unit(), self.unit());
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

/// The bootstrap interval of median(new) / median(base); `None` without samples on a side.
pub fn ratio_of_medians(base: &[f64], new: &[f64], s: &Settings, seed: u64) -> Option<Ratio> {
    if base.is_empty() || new.is_empty() {
        return None;
    }
    let b0 = median(&mut base.to_vec());
    let n0 = median(&mut new.to_vec());
    if b0 <= 0.0 || !b0.is_finite() || !n0.is_finite() {
        return None;
    }
    let mut rng = Rng::new(seed);
    let mut rb = vec![0.0; base.len()];
    let mut rn = vec![0.0; new.len()];
    let mut ratios = Vec::with_capacity(s.resamples.max(1));
    for _ in 0..s.resamples.max(1) {
        for x in rb.iter_mut() {
            *x = base[rng.below(base.len())];
        }
        for x in rn.iter_mut() {
            *x = new[rng.below(new.len())];
        }
        let mb = median(&mut rb);
        if mb > 0.0 {
            ratios.push(median(&mut rn) / mb);
        }
    }
    ratios.sort_by(f64::total_cmp);
    let tail = (1.0 - s.confidence.clamp(0.5, 0.9999)) / 2.0;
    let at = |q: f64| {
        let i = ((ratios.len() - 1) as f64 * q).round() as usize;
        ratios[i.min(ratios.len() - 1)]
    };
    Some(Ratio {
        ratio: n0 / b0,
        lo: at(tail),
        hi: at(1.0 - tail),
    })
}

/// The verdict for an interval (higher is better, as for every bench metric).
pub fn verdict(r: &Ratio, threshold: f64) -> Verdict {
    if r.hi <= 1.0 - threshold {
        Verdict::Worse
    } else if r.lo >= 1.0 + threshold {
        Verdict::Better
    } else if r.lo >= 1.0 - threshold && r.hi <= 1.0 + threshold {
        Verdict::Same
    } else {
        Verdict::Inconclusive
    }
}

#[cfg(test)]
mod tests;
