//! `compare.html`: the Markdown table's verdicts with both runs' samples side by side, one
//! strip plot per benchmark (every sample a dot, the medians as bars, the threshold band around
//! the base median), so a reader sees whether "worse" is a shift or one noisy run. Plain SVG,
//! no scripts, like `report.html`.

use crate::report::escape_markup as esc;
use std::fmt::Write as _;

use super::{Comparison, Run, Settings, Verdict};

fn colour(v: Verdict) -> &'static str {
    match v {
        Verdict::Worse => "#c62828",
        Verdict::Inconclusive => "#ef6c00",
        Verdict::Same => "#2e7d32",
        Verdict::Better => "#1565c0",
    }
}

const W: f64 = 640.0;
const ROW: f64 = 26.0;
const LEFT: f64 = 60.0;

/// One benchmark's strip plot: base on the first line, new on the second.
fn strip(base: &[f64], new: &[f64], threshold: f64, verdict: Verdict) -> String {
    let all = base.iter().chain(new).copied().filter(|v| v.is_finite());
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), v| {
        (a.min(v), b.max(v))
    });
    let bm = super::median(base);
    let (lo, hi) = (
        lo.min(bm * (1.0 - threshold)),
        hi.max(bm * (1.0 + threshold)),
    );
    let span = (hi - lo).max(hi.abs() * 1e-6).max(f64::MIN_POSITIVE);
    let x = |v: f64| LEFT + (v - lo) / span * (W - LEFT - 20.0);
    let mut s = format!(
        "<svg width=\"{W}\" height=\"{}\" role=\"img\">",
        ROW * 2.0 + 20.0
    );
    let _ = write!(
        s,
        "<rect x=\"{:.1}\" y=\"2\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#eeeeee\"><title>±{:.0}% of the base median</title></rect>",
        x(bm * (1.0 - threshold)),
        x(bm * (1.0 + threshold)) - x(bm * (1.0 - threshold)),
        ROW * 2.0,
        threshold * 100.0
    );
    for (i, (label, samples, fill)) in [("base", base, "#616161"), ("new", new, colour(verdict))]
        .into_iter()
        .enumerate()
    {
        let y = 2.0 + ROW * i as f64 + ROW / 2.0;
        let _ = write!(
            s,
            "<text x=\"4\" y=\"{:.1}\" font-size=\"12\">{label}</text>",
            y + 4.0
        );
        for v in samples.iter().filter(|v| v.is_finite()) {
            let _ = write!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{fill}\" fill-opacity=\"0.6\"><title>{v:.2}</title></circle>",
                x(*v)
            );
        }
        let m = super::median(samples);
        let _ = write!(
            s,
            "<line x1=\"{0:.1}\" x2=\"{0:.1}\" y1=\"{1:.1}\" y2=\"{2:.1}\" stroke=\"{fill}\" stroke-width=\"2\"><title>median {m:.2}</title></line>",
            x(m),
            y - ROW / 2.0 + 3.0,
            y + ROW / 2.0 - 3.0
        );
    }
    let _ = write!(
        s,
        "<text x=\"{LEFT}\" y=\"{0:.1}\" font-size=\"11\">{lo:.1}</text><text x=\"{1:.1}\" y=\"{0:.1}\" font-size=\"11\" text-anchor=\"end\">{hi:.1}</text></svg>",
        ROW * 2.0 + 16.0,
        W - 20.0
    );
    s
}

/// The page: a summary line, warnings, then per benchmark (worst first) its numbers and plot.
pub fn html(c: &Comparison, base: &Run, new: &Run, s: &Settings) -> String {
    let rows = c.worst_first();
    let mut out = format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>gpuconform compare</title><style>body{{font-family:sans-serif;margin:2em}}td,th{{padding:2px 8px;text-align:left}}.w{{color:#c62828}}</style></head><body><h1>gpuconform compare</h1><p>base <code>{}</code>, new <code>{}</code>: {}</p>",
        esc(&base.run_id),
        esc(&new.run_id),
        esc(&c.tally(s))
    );
    for w in &c.warnings {
        let _ = write!(out, "<p class=\"w\">software differs: {}</p>", esc(w));
    }
    for r in &rows {
        let (Some(b), Some(n)) = (base.series.get(&r.id), new.series.get(&r.id)) else {
            continue;
        };
        let _ = write!(
            out,
            "<h3><code>{}</code> <span style=\"color:{}\">{}</span></h3><p>{:.2} → {:.2} {} ({:+.1}%, interval {:+.1}% … {:+.1}%; {} and {} samples; threshold {:.1}%)</p>{}",
            esc(&r.id),
            colour(r.verdict),
            r.verdict.word(),
            r.base,
            r.new,
            esc(&r.unit),
            (r.ratio.ratio - 1.0) * 100.0,
            (r.ratio.lo - 1.0) * 100.0,
            (r.ratio.hi - 1.0) * 100.0,
            b.samples.len(),
            n.samples.len(),
            r.threshold * 100.0,
            strip(&b.samples, &n.samples, r.threshold, r.verdict)
        );
    }
    for (what, ids) in [("only in base", &c.only_base), ("only in new", &c.only_new)] {
        if !ids.is_empty() {
            let _ = write!(out, "<p>{what}: {}</p>", esc(&ids.join(", ")));
        }
    }
    out.push_str("</body></html>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compare::{Row, Series, stats};

    #[test]
    fn every_sample_of_both_runs_is_plotted() {
        let series = |v: &[f64]| Series {
            unit: "GB/s".into(),
            samples: v.to_vec(),
            ..Series::default()
        };
        let id = "p4d.24xlarge/A100-SXM4-40GB/gpu3/triad".to_string();
        let mut base = Run {
            run_id: "base".into(),
            ..Run::default()
        };
        base.series
            .insert(id.clone(), series(&[1380.0, 1381.0, 1379.0]));
        let mut new = Run {
            run_id: "new<1>".into(),
            ..Run::default()
        };
        new.series.insert(id.clone(), series(&[1242.0, 1243.0]));
        let c = Comparison {
            rows: vec![Row {
                id,
                unit: "GB/s".into(),
                base: 1380.0,
                new: 1242.5,
                ratio: stats::Ratio {
                    ratio: 0.9,
                    lo: 0.899,
                    hi: 0.901,
                },
                verdict: Verdict::Worse,
                threshold: 0.03,
            }],
            only_base: Vec::new(),
            only_new: vec!["x/y/gpu0/h2d".into()],
            warnings: vec!["p4d: driver 1 in base, 2 in new".into()],
        };
        let page = html(&c, &base, &new, &Settings::default());
        assert_eq!(page.matches("<circle").count(), 5, "{page}");
        assert_eq!(page.matches("<line").count(), 2);
        assert!(page.contains("new&lt;1&gt;"), "names are escaped");
        assert!(page.contains("1 worse, 0 inconclusive"));
        assert!(page.contains("-10.0%"));
        assert!(page.contains("software differs: p4d: driver 1 in base, 2 in new"));
        assert!(page.contains("only in new: x/y/gpu0/h2d"));
    }
}
