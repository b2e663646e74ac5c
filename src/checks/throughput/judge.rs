//! Judging bench documents, as pure functions of the documents, the expectation and the
//! performance table: what a document must show to count at all ([`contract`]: the devices
//! requested, of the expected model, with distinct UUIDs), each measurement against its floor
//! (the table's fraction of the model's peak, the peak scaled to a MIG device's share) and
//! against what cannot be true (above the peak, or too unstable to mean anything), each peer
//! link of a multi-GPU node, each GPU or MIG device against the best of its kind in the run.

use std::collections::BTreeMap;

use super::partition::{Job, MigShare};
use super::{GpuNode, Outcome};
use crate::bench::model::{GpuPerf, PerfTable};
use crate::bench::{BenchReport, Measurement, Metric};

/// How strictly to judge (the step's `with:`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Settings {
    /// A device this many percent below the best of its kind fails.
    pub straggler_pct: f64,
    /// A metric whose samples vary more than this (coefficient of variation, %) fails.
    pub max_cv_pct: f64,
    /// A median more than this many percent above the peak is impossible.
    pub peak_margin_pct: f64,
    /// Models without a performance entry are reported, not failed.
    pub allow_unknown_models: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            straggler_pct: 10.0,
            max_cv_pct: 5.0,
            peak_margin_pct: 5.0,
            allow_unknown_models: false,
        }
    }
}

/// Where a measured device's testcases go: `<node>/gpu<i>` for a whole GPU, the job's subject
/// (`<node>/mig3`, `<node>/mig-1g.5gb`) for a MIG device; and how it is named in messages.
pub struct Unit<'a> {
    /// Testcase prefix.
    pub subject: String,
    /// `p4d-1 gpu3`, `p4d-1 mig3 (1g.5gb)`.
    pub who: String,
    /// The MIG device's share of its GPU.
    pub mig: Option<&'a MigShare>,
}

/// The peak `metric` is judged against on this unit, or why it is not judged.
pub fn scaled_peak(
    perf: &GpuPerf,
    metric: Metric,
    mig: Option<&MigShare>,
) -> Result<Option<f64>, String> {
    let Some(peak) = perf.peak(metric) else {
        return Ok(None);
    };
    let Some(share) = mig else {
        return Ok(Some(peak));
    };
    match metric {
        Metric::Copy | Metric::Triad => Ok(Some(peak * share.bandwidth)),
        Metric::Fp32Fma | Metric::Sgemm | Metric::Fp16Gemm | Metric::Bf16Gemm => {
            Ok(Some(peak * share.compute))
        }
        Metric::H2d | Metric::D2h => Err(format!(
            "not judged on a MIG device: every instance of the GPU shares its PCIe link ({} of the whole GPU's {peak} GB/s peak)",
            metric.key()
        )),
    }
}

/// One measurement's testcase.
pub fn metric_outcome(
    table: &PerfTable,
    s: &Settings,
    g: &GpuNode,
    unit: &Unit<'_>,
    m: &Measurement,
    perf: Option<&GpuPerf>,
) -> Outcome {
    let subject = format!("{}/{}", unit.subject, m.metric.key());
    let who = &unit.who;
    let u = m.metric.unit();
    let stats = format!(
        "median {:.2} {u}, p5 {:.2}, p95 {:.2}, cv {:.2}%, {} samples, size {}",
        m.summary.median,
        m.summary.p5,
        m.summary.p95,
        m.summary.cv * 100.0,
        m.summary.samples,
        m.size
    );
    if !m.verified {
        use crate::bench::precision::{FP32_LIMIT, Precision, classify};
        let what = match m.max_error {
            Some(e) if m.metric == Metric::Sgemm && classify(e) == Precision::Reduced => format!(
                "ran with TF32-like precision, not FP32 (largest normalised error {e:.1e}, FP32 stays below {FP32_LIMIT:.0e}: tensor-core math)"
            ),
            _ => "produced a wrong result".into(),
        };
        return Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} {what}; its {:.1} {u} does not count",
                m.metric.key(),
                m.summary.median
            ),
            stats,
        );
    }
    let cv_pct = m.summary.cv * 100.0;
    if !cv_pct.is_finite() || cv_pct > s.max_cv_pct {
        return Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} is unstable: CV {cv_pct:.1}% over {} samples, expected at most {}% (throttling, a noisy neighbour or a timing bug); its median {:.1} {u} does not count",
                m.metric.key(),
                m.summary.samples,
                s.max_cv_pct,
                m.summary.median
            ),
            stats,
        );
    }
    let Some(perf) = perf else {
        // Nothing to judge against: never a pass.
        let why = format!(
            "{stats}; the performance table has no entry for {}: not judged",
            g.model_key
        );
        return if s.allow_unknown_models {
            Outcome::skip(subject, Some(&g.name), why)
        } else {
            Outcome::fail(
                subject,
                Some(&g.name),
                format!(
                    "{who}: the performance table has no entry for {}, so {} cannot be judged (allowUnknownModels: true reports it unjudged)",
                    g.model_key,
                    m.metric.key()
                ),
                why,
            )
        };
    };
    let peak = match scaled_peak(perf, m.metric, unit.mig) {
        Err(why) => return Outcome::skip(subject, Some(&g.name), format!("{stats}; {why}")),
        Ok(None) => {
            return Outcome::pass(
                subject,
                Some(&g.name),
                format!("{stats}\nno peak for this metric in the performance table; not judged"),
            );
        }
        Ok(Some(p)) => p,
    };
    let floor_frac = table.floor(perf, m.metric.key());
    let floor = floor_frac * peak;
    let pct = m.summary.median / peak * 100.0;
    let ceiling = peak * (1.0 + s.peak_margin_pct / 100.0);
    let of = match unit.mig {
        Some(s) => format!(
            "the {} {} peak {peak:.1}, scaled to {} ({}/{} SMs, {}/8 memory slices)",
            g.model.product,
            m.metric.key(),
            s.profile.name,
            s.profile.multiprocessors,
            (f64::from(s.profile.multiprocessors) / s.compute).round(),
            s.memory_slices
        ),
        None => format!("the {} peak {peak}", g.model.product),
    };
    let detail = format!(
        "{stats}\npeak {peak:.1} {u}, floor {floor:.1} {u} ({:.0}% of peak), measured {pct:.1}% of peak",
        floor_frac * 100.0
    );
    if m.summary.median > ceiling {
        Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} is {:.1} {u}, above {of} (+{}%): impossible result (timing or kernel bug)",
                m.metric.key(),
                m.summary.median,
                s.peak_margin_pct
            ),
            detail,
        )
    } else if m.summary.median >= floor {
        Outcome::pass(subject, Some(&g.name), detail)
    } else {
        Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} is {:.1} {u}, expected at least {floor:.1} {u} ({:.0}% of {of}; measured {pct:.1}%)",
                m.metric.key(),
                m.summary.median,
                floor_frac * 100.0,
            ),
            detail,
        )
    }
}

/// Peer copies from one GPU: one testcase per destination against the link floor (a median
/// over destinations would hide one slow link).
pub fn peer_outcomes(
    table: &PerfTable,
    g: &GpuNode,
    index: u32,
    r: &BenchReport,
    perf: &GpuPerf,
) -> Vec<Outcome> {
    let peak = perf.peer_peak();
    let floor_frac = table.floor(perf, "peer");
    let floor = floor_frac * peak;
    // Every other GPU of the node is a destination: a link the document leaves out fails.
    let mut out: Vec<Outcome> = r
        .gpus
        .iter()
        .map(|d| d.device.index)
        .filter(|&to| to != index && !r.peers.iter().any(|p| p.from == index && p.to == to))
        .map(|to| {
            Outcome::fail(
                format!("{}/peer/gpu{index}-gpu{to}", g.name),
                Some(&g.name),
                format!(
                    "{} gpu{index} → gpu{to}: the peer copy was not measured ({} GPUs, every ordered pair is)",
                    g.name,
                    r.gpus.len()
                ),
                "",
            )
        })
        .collect();
    out.extend(r.peers
        .iter()
        .filter(|p| p.from == index)
        .map(|p| {
            let subject = format!("{}/peer/gpu{}-gpu{}", g.name, p.from, p.to);
            let detail = format!(
                "median {:.1} GB/s, p5 {:.1}, p95 {:.1}; floor {floor:.1} GB/s ({:.0}% of {peak})",
                p.summary.median,
                p.summary.p5,
                p.summary.p95,
                floor_frac * 100.0
            );
            if !p.verified {
                Outcome::fail(subject, Some(&g.name), format!("{} gpu{} → gpu{}: the copy delivered wrong data", g.name, p.from, p.to), detail)
            } else if p.summary.median < floor {
                Outcome::fail(
                    subject,
                    Some(&g.name),
                    format!("{} gpu{} → gpu{}: {:.1} GB/s, expected at least {floor:.1} GB/s ({:.0}% of {peak})", g.name, p.from, p.to, p.summary.median, floor_frac * 100.0),
                    detail,
                )
            } else {
                Outcome::pass(subject, Some(&g.name), detail)
            }
        }));
    out
}

/// What a bench document must show for `job` to count: the devices it was given, of the
/// expected model (the performance table's CUDA names; a MIG device as `<name> MIG <profile>`
/// with the profile's SMs), with distinct UUIDs, and real numbers on a real cluster.
pub fn contract(
    report: &BenchReport,
    job: &Job,
    g: &GpuNode,
    perf: Option<&GpuPerf>,
    simulated_node: bool,
) -> Result<(), String> {
    if report.gpus.len() != job.devices as usize {
        return Err(format!(
            "the bench saw {} device(s), expected {} ({} {} requested; {})",
            report.gpus.len(),
            job.devices,
            job.count,
            job.resource,
            g.describe()
        ));
    }
    if let Some(perf) = perf {
        for d in &report.gpus {
            // A GPU the bench could not even describe fails as `…/errors`; its name is unknown.
            if d.device.name.is_empty() && !d.errors.is_empty() {
                continue;
            }
            let name = d.device.name.split(" MIG ").next().unwrap_or_default();
            if !perf.names.iter().any(|n| n == name) {
                return Err(format!(
                    "the bench saw \"{}\" as gpu{}, expected {} ({})",
                    d.device.name,
                    d.device.index,
                    perf.names
                        .iter()
                        .map(|n| format!("\"{n}\""))
                        .collect::<Vec<_>>()
                        .join(" or "),
                    g.describe()
                ));
            }
        }
    }
    let mut seen: BTreeMap<&str, u32> = BTreeMap::new();
    for d in &report.gpus {
        if d.device.uuid.is_empty() {
            continue;
        }
        if let Some(first) = seen.insert(d.device.uuid.as_str(), d.device.index) {
            return Err(format!(
                "gpu{first} and gpu{} report the same UUID {}: one GPU counted twice",
                d.device.index, d.device.uuid
            ));
        }
    }
    if let Some(m) = &job.mig
        && let Some(d) = report.gpus.first()
        && d.device.sm_count != 0
        && d.device.sm_count != m.profile.multiprocessors
    {
        return Err(format!(
            "the bench saw {} with {} SMs, expected a MIG {} device with {} SMs",
            d.device.name, d.device.sm_count, m.profile.name, m.profile.multiprocessors
        ));
    }
    if report.simulated && !simulated_node {
        return Err(
            "the bench printed simulated results on a real cluster (is the image running --simulate?)"
                .into(),
        );
    }
    Ok(())
}

/// Every testcase of the accepted documents: per device × metric, the peer links, stragglers.
pub fn all(
    table: &PerfTable,
    s: &Settings,
    results: &[(GpuNode, Job, BenchReport)],
) -> Vec<Outcome> {
    let mut out = Vec::new();
    // Stragglers within each model (MIG devices within each model and profile).
    let group = |g: &GpuNode, job: &Job| match &job.mig {
        Some(m) => format!("{}/{}", g.model_key, m.profile.name),
        None => g.model_key.clone(),
    };
    // Only believable numbers set the best: an impossible or unstable one would make every
    // honest device a straggler.
    let believable = |g: &GpuNode, job: &Job, m: &Measurement| {
        let perf = table.models.get(g.model.perf_key(&g.model_key));
        let ceiling = perf
            .and_then(|p| scaled_peak(p, m.metric, job.mig.as_ref()).ok().flatten())
            .map_or(f64::INFINITY, |p| p * (1.0 + s.peak_margin_pct / 100.0));
        m.verified && m.summary.cv * 100.0 <= s.max_cv_pct && m.summary.median <= ceiling
    };
    let mut best: BTreeMap<(String, Metric), f64> = BTreeMap::new();
    for (g, job, r) in results {
        for gpu in &r.gpus {
            for m in gpu.measurements.iter().filter(|m| believable(g, job, m)) {
                let e = best.entry((group(g, job), m.metric)).or_insert(0.0);
                *e = e.max(m.summary.median);
            }
        }
    }
    for (g, job, r) in results {
        let perf = table.models.get(g.model.perf_key(&g.model_key));
        for gpu in &r.gpus {
            let unit = match &job.mig {
                Some(m) => Unit {
                    subject: job.subject.clone(),
                    who: format!("{} ({})", job.subject.replace('/', " "), m.profile.name),
                    mig: Some(m),
                },
                None => Unit {
                    subject: format!("{}/gpu{}", g.name, gpu.device.index),
                    who: format!("{} gpu{}", g.name, gpu.device.index),
                    mig: None,
                },
            };
            let who = &unit.who;
            for e in &gpu.errors {
                out.push(Outcome::fail(
                    format!("{}/errors", unit.subject),
                    Some(&g.name),
                    format!("{who}: {e}"),
                    "",
                ));
            }
            for m in &gpu.measurements {
                out.push(metric_outcome(table, s, g, &unit, m, perf));
            }
            // A metric the GPU has hardware for must have been measured.
            for metric in Metric::ALL {
                let expected = perf.is_some_and(|p| p.peak(metric).is_some());
                if expected && !gpu.measurements.iter().any(|m| m.metric == metric) {
                    out.push(Outcome::fail(
                        format!("{}/{}", unit.subject, metric.key()),
                        Some(&g.name),
                        format!("{who}: {} was not measured", metric.key()),
                        "",
                    ));
                }
            }
            if let Some(p) = perf
                && job.mig.is_none()
            {
                out.extend(peer_outcomes(table, g, gpu.device.index, r, p));
            }
            let kind = match &job.mig {
                Some(m) => format!("{} MIG {}", g.model.product, m.profile.name),
                None => g.model.product.clone(),
            };
            let slow: Vec<String> = gpu
                .measurements
                .iter()
                .filter(|m| believable(g, job, m))
                .filter_map(|m| {
                    let b = best.get(&(group(g, job), m.metric)).copied().unwrap_or(0.0);
                    let below = if b > 0.0 {
                        (1.0 - m.summary.median / b) * 100.0
                    } else {
                        0.0
                    };
                    (below > s.straggler_pct).then(|| {
                        format!(
                            "{} {:.1} {} is {below:.0}% below the best {kind} in this run ({b:.1})",
                            m.metric.key(),
                            m.summary.median,
                            m.metric.unit(),
                        )
                    })
                })
                .collect();
            let subject = format!("{}/straggler", unit.subject);
            match slow.first() {
                None => out.push(Outcome::pass(
                    subject,
                    Some(&g.name),
                    format!(
                        "within {}% of the best {kind} on every metric",
                        s.straggler_pct
                    ),
                )),
                Some(first) => out.push(Outcome::fail(
                    subject,
                    Some(&g.name),
                    format!("{who}: {first}"),
                    slow.join("\n"),
                )),
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
