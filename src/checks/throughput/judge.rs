//! Judging one bench document: each measurement against its floor (the performance table's
//! fraction of the model's peak, the peak scaled to a MIG device's share of the GPU), each peer
//! copy against the link floor, each GPU or MIG device against the best of its kind in the run
//! (stragglers).

use super::partition::MigShare;
use super::{Ctx, GpuNode, Outcome};
use crate::bench::model::GpuPerf;
use crate::bench::{BenchReport, Measurement, Metric};

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
    ctx: &Ctx<'_>,
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
        return Outcome::fail(
            subject,
            Some(&g.name),
            format!(
                "{who}: {} produced a wrong result; its {:.1} {u} does not count",
                m.metric.key(),
                m.summary.median
            ),
            stats,
        );
    }
    let Some(perf) = perf else {
        // Nothing to judge against: not a pass.
        return Outcome::skip(
            subject,
            Some(&g.name),
            format!(
                "{stats}; the performance table has no entry for {}: not judged",
                g.model_key
            ),
        );
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
    let floor_frac = ctx.perf.floor(perf, m.metric.key());
    let floor = floor_frac * peak;
    let pct = m.summary.median / peak * 100.0;
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
    if m.summary.median >= floor {
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
    ctx: &Ctx<'_>,
    g: &GpuNode,
    index: u32,
    r: &BenchReport,
    perf: &GpuPerf,
) -> Vec<Outcome> {
    let peak = perf.peer_peak();
    let floor_frac = ctx.perf.floor(perf, "peer");
    let floor = floor_frac * peak;
    r.peers
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
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::model::PerfTable;
    use crate::catalog::Catalog;

    /// An A100-40GB 1g.5gb device: 14 of 108 SMs, 1 of 8 memory slices; host copies not judged.
    #[test]
    fn peaks_scale_to_the_mig_device() {
        let t = PerfTable::embedded().expect("table");
        let c = Catalog::embedded().expect("catalog");
        let perf = &t.models["A100-SXM4-40GB"];
        let model = &c.gpu_models["A100-SXM4-40GB"];
        let p = model
            .mig_profiles
            .iter()
            .find(|p| p.name == "1g.5gb")
            .expect("profile");
        let share = super::super::partition::share_of(p, model, perf.sms);
        let peak = |m| scaled_peak(perf, m, Some(&share));
        assert_eq!(peak(Metric::Triad), Ok(Some(1555.0 / 8.0)));
        let sgemm = peak(Metric::Sgemm).expect("judged").expect("peak");
        assert!((sgemm - 19.5 * 14.0 / 108.0).abs() < 1e-9, "{sgemm}");
        assert!(peak(Metric::H2d).is_err());
        // Whole GPUs keep the table's peaks.
        assert_eq!(scaled_peak(perf, Metric::Triad, None), Ok(Some(1555.0)));
    }
}
