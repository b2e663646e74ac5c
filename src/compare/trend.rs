//! `gpuconform trend DIR…`: each benchmark identity's median with its p5–p95 band over the runs
//! found, as one self-contained HTML page (an SVG chart per identity, oldest run left).

use crate::report::escape_markup as esc;
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::Value;

use super::CompareError;

/// One run's point of one benchmark.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The run.
    pub run_id: String,
    /// When it started (RFC 3339; orders the runs).
    pub started_at: String,
    /// Median over the identity's samples in that run.
    pub median: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 95th percentile.
    pub p95: f64,
}

/// Identity → its points, oldest first; and the unit of each.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Trend {
    /// Identity → points.
    pub series: BTreeMap<String, Vec<Point>>,
    /// Identity → unit.
    pub units: BTreeMap<String, String>,
    /// Runs read.
    pub runs: usize,
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo as f64)
}

/// Every `results.json` in `dirs` (a run folder, or a reports folder of run folders).
fn files(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for d in dirs {
        let direct = d.join("results.json");
        if d.is_file() {
            out.push(d.clone());
        } else if direct.is_file() {
            out.push(direct);
        } else if let Ok(entries) = std::fs::read_dir(d) {
            let mut found: Vec<PathBuf> = entries
                .flatten()
                .map(|e| e.path().join("results.json"))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            out.extend(found);
        }
    }
    out
}

/// Reads the runs under `dirs`.
pub fn collect(dirs: &[PathBuf]) -> Result<Trend, CompareError> {
    let mut points: Vec<(String, String, Point)> = Vec::new();
    let mut trend = Trend::default();
    for file in files(dirs) {
        let text = std::fs::read_to_string(&file).map_err(|source| CompareError::Read {
            path: file.clone(),
            source,
        })?;
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let s = |v: &Value, k: &str| {
            v.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let (run_id, started_at) = (s(&v, "runId"), s(&v, "startedAt"));
        let mut by_id: BTreeMap<String, (String, Vec<f64>)> = BTreeMap::new();
        for r in v
            .get("benchmarks")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let id = s(r, "id");
            let samples: Vec<f64> = r
                .get("samples")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            if id.is_empty() || samples.is_empty() {
                continue;
            }
            let e = by_id
                .entry(id)
                .or_insert_with(|| (s(r, "unit"), Vec::new()));
            e.1.extend(samples);
        }
        if by_id.is_empty() {
            continue;
        }
        trend.runs += 1;
        for (id, (unit, mut samples)) in by_id {
            samples.sort_by(f64::total_cmp);
            trend.units.insert(id.clone(), unit);
            points.push((
                id,
                started_at.clone(),
                Point {
                    run_id: run_id.clone(),
                    started_at: started_at.clone(),
                    median: quantile(&samples, 0.5),
                    p5: quantile(&samples, 0.05),
                    p95: quantile(&samples, 0.95),
                },
            ));
        }
    }
    points.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    for (id, _, p) in points {
        trend.series.entry(id).or_default().push(p);
    }
    if trend.runs == 0 {
        return Err(CompareError::NoRun {
            path: dirs.first().cloned().unwrap_or_default(),
        });
    }
    Ok(trend)
}

/// The HTML page.
pub fn html(t: &Trend) -> String {
    let mut out = String::from(
        "<!doctype html><meta charset=\"utf-8\"><title>gpuconform trend</title>\n<style>body{font:14px system-ui;margin:2em}svg{background:#fafafa;border:1px solid #ddd}h2{font-size:15px;margin:1.5em 0 .3em}</style>\n",
    );
    let _ = writeln!(
        out,
        "<h1>gpuconform trend</h1><p>{} runs, {} benchmarks: median (line) and p5–p95 (band) per run, oldest left.</p>",
        t.runs,
        t.series.len()
    );
    let (w, h, pad) = (640.0_f64, 160.0_f64, 30.0_f64);
    for (id, pts) in &t.series {
        let unit = t.units.get(id).cloned().unwrap_or_default();
        let lo = pts.iter().map(|p| p.p5).fold(f64::INFINITY, f64::min);
        let hi = pts.iter().map(|p| p.p95).fold(f64::NEG_INFINITY, f64::max);
        let span = if hi > lo {
            hi - lo
        } else {
            hi.abs().max(1.0) * 0.1
        };
        let (lo, hi) = (lo - span * 0.1, hi + span * 0.1);
        let x = |i: usize| {
            if pts.len() == 1 {
                w / 2.0
            } else {
                pad + (w - 2.0 * pad) * i as f64 / (pts.len() - 1) as f64
            }
        };
        let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
        let band: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.p95)))
            .chain(
                pts.iter()
                    .enumerate()
                    .rev()
                    .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.p5))),
            )
            .collect();
        let line: Vec<String> = pts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{:.1},{:.1}", x(i), y(p.median)))
            .collect();
        let _ = writeln!(out, "<h2>{}</h2>", esc(id));
        let _ = write!(
            out,
            "<svg width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"{}\"><polygon points=\"{}\" fill=\"#9cc3e6\" opacity=\"0.6\"/><polyline points=\"{}\" fill=\"none\" stroke=\"#1f5f99\" stroke-width=\"2\"/>",
            esc(id),
            band.join(" "),
            line.join(" ")
        );
        for (i, p) in pts.iter().enumerate() {
            let _ = write!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#1f5f99\"><title>{}: {:.2} {} (p5 {:.2}, p95 {:.2})</title></circle>",
                x(i),
                y(p.median),
                esc(&p.run_id),
                p.median,
                esc(&unit),
                p.p5,
                p.p95
            );
        }
        let _ = writeln!(
            out,
            "<text x=\"4\" y=\"14\" font-size=\"11\">{:.1} {u}</text><text x=\"4\" y=\"{:.0}\" font-size=\"11\">{:.1} {u}</text></svg>",
            hi,
            h - 4.0,
            lo,
            u = esc(&unit)
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn write_run(dir: &Path, name: &str, started: &str, triad: f64) {
        let run = dir.join(name);
        std::fs::create_dir_all(&run).expect("dir");
        let samples: Vec<f64> = (0..10).map(|k| triad + f64::from(k)).collect();
        let doc = serde_json::json!({
            "runId": name, "startedAt": started,
            "benchmarks": [
                {"id": "gpu-worker/A100-SXM4-40GB/gpu0/triad", "unit": "GB/s", "samples": samples},
                {"id": "gpu-worker/A100-SXM4-40GB/gpu0/peerSlowest", "unit": "GB/s", "samples": []},
            ],
        });
        std::fs::write(run.join("results.json"), doc.to_string()).expect("write");
    }

    #[test]
    fn points_per_identity_in_run_order() {
        let tmp = tempfile::tempdir().expect("tmp");
        write_run(tmp.path(), "b", "2026-12-02T00:00:00Z", 1300.0);
        write_run(tmp.path(), "a", "2026-12-01T00:00:00Z", 1380.0);
        let t = collect(&[tmp.path().to_path_buf()]).expect("runs");
        assert_eq!(t.runs, 2);
        let pts = &t.series["gpu-worker/A100-SXM4-40GB/gpu0/triad"];
        let order: Vec<(&str, f64)> = pts.iter().map(|p| (p.run_id.as_str(), p.median)).collect();
        assert_eq!(order, [("a", 1384.5), ("b", 1304.5)]);
        assert_eq!(t.series.len(), 1, "rows without samples are left out");
        let page = html(&t);
        assert!(
            page.contains("<h2>gpu-worker/A100-SXM4-40GB/gpu0/triad</h2>"),
            "{page}"
        );
        assert!(page.contains("<title>a: 1384.50 GB/s"), "{page}");
        assert!(collect(&[tmp.path().join("none")]).is_err());
    }
}
