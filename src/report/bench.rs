//! Benchmark reports: rows of node × GPU × metric with floor and peak, rendered as `bench.json`
//! in Bencher's metric format (BMF: `value`, `lower_value`, `upper_value` per measure), a
//! Markdown table for the summary, and `report.html` with one SVG bar chart per metric (each
//! GPU's median against the floor and the peak).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Value, json};

use super::{RunRecord, escape_markup as esc};
use crate::bench::model::PerfTable;
use crate::bench::{NodeBench, fingerprint};

/// One measured value with what it is judged against.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BenchRow {
    /// Stable identity across runs: `<pool or instance type>/<GPU model>/<device>/<metric>`.
    pub id: String,
    /// Node.
    pub node: String,
    /// Instance type.
    pub instance_type: String,
    /// GPU index on the node.
    pub gpu: u32,
    /// GPU model (catalog key).
    pub model: String,
    /// Metric key (`triad`, `bf16Gemm`, …, `peer`).
    pub metric: String,
    /// `GB/s` or `TFLOPS`.
    pub unit: String,
    /// Median.
    pub median: f64,
    /// 5th percentile.
    pub p5: f64,
    /// 95th percentile.
    pub p95: f64,
    /// Coefficient of variation.
    pub cv: f64,
    /// The floor it had to clear.
    pub floor: Option<f64>,
    /// The datasheet peak.
    pub peak: Option<f64>,
    /// From the performance model, not measured.
    pub simulated: bool,
    /// The kernel's output was right.
    pub verified: bool,
    /// The CUDA device name.
    pub device: String,
    /// The GPU's UUID (data, not identity: it changes with the machine).
    pub uuid: String,
    /// The driver the bench ran on.
    pub driver_version: String,
    /// The timed repetitions (none for the peer summary).
    pub samples: Vec<f64>,
    /// The GPU's hardware and configuration (`Fingerprint::hardware`): a compare refuses when
    /// it differs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hardware: BTreeMap<String, String>,
    /// Driver, CUDA, NVRTC, cuBLAS, persistence mode: a compare names what differs.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub software: BTreeMap<String, String>,
}

/// Rows from this run's bench documents.
pub fn rows(results: &[NodeBench], perf: &PerfTable) -> Vec<BenchRow> {
    let mut out = Vec::new();
    for nb in results {
        let model = perf.models.get(&nb.model_key);
        let r = &nb.report;
        for g in &nb.report.gpus {
            let fp = g.fingerprint.clone().unwrap_or_default();
            let hardware = fp.hardware();
            let software = fingerprint::software(
                &r.driver_version,
                &r.cuda_version,
                r.nvrtc_version.as_deref(),
                r.cublas_version.as_deref(),
                fp.persistence,
            );
            for m in &g.measurements {
                let peak = model.and_then(|p| p.peak(m.metric));
                let floor = model
                    .zip(peak)
                    .map(|(p, pk)| perf.floor(p, m.metric.key()) * pk);
                out.push(BenchRow {
                    id: nb.id(g.device.index, m.metric.key()),
                    node: nb.node.clone(),
                    instance_type: nb.instance_type.clone(),
                    gpu: g.device.index,
                    model: nb.model_key.clone(),
                    metric: m.metric.key().into(),
                    unit: m.unit.clone(),
                    median: m.summary.median,
                    p5: m.summary.p5,
                    p95: m.summary.p95,
                    cv: m.summary.cv,
                    floor,
                    peak,
                    simulated: nb.report.simulated,
                    verified: m.verified,
                    device: g.device.name.clone(),
                    uuid: g.device.uuid.clone(),
                    driver_version: nb.report.driver_version.clone(),
                    samples: m.samples.clone(),
                    hardware: hardware.clone(),
                    software: software.clone(),
                });
            }
            let mine: Vec<f64> = nb
                .report
                .peers
                .iter()
                .filter(|p| p.from == g.device.index)
                .map(|p| p.summary.median)
                .collect();
            if let (Some(model), false) = (model, mine.is_empty()) {
                // The GPU's slowest outgoing link: the one the per-pair testcases would flag.
                let mut v = mine.clone();
                v.sort_by(f64::total_cmp);
                let median = v[0];
                out.push(BenchRow {
                    id: nb.id(g.device.index, "peerSlowest"),
                    node: nb.node.clone(),
                    instance_type: nb.instance_type.clone(),
                    gpu: g.device.index,
                    model: nb.model_key.clone(),
                    metric: "peerSlowest".into(),
                    unit: "GB/s".into(),
                    median,
                    p5: v[0],
                    p95: v[v.len() - 1],
                    cv: 0.0,
                    floor: Some(perf.floor(model, "peer") * model.peer_peak()),
                    peak: Some(model.peer_peak()),
                    simulated: nb.report.simulated,
                    verified: nb
                        .report
                        .peers
                        .iter()
                        .filter(|p| p.from == g.device.index)
                        .all(|p| p.verified),
                    device: g.device.name.clone(),
                    uuid: g.device.uuid.clone(),
                    driver_version: nb.report.driver_version.clone(),
                    samples: Vec::new(),
                    hardware: hardware.clone(),
                    software: software.clone(),
                });
            }
        }
    }
    out
}

/// Bencher Metric Format: benchmark `<pool or instance type>/<model>/<device>/<metric>` (a
/// simulated run's names end in `@simulated`, so they never mix with measured ones) → measure
/// → value and bounds. Several nodes of one pool share an identity: the value is the median of
/// their medians, the bounds the lowest p5 and the highest p95.
pub fn bmf(rows: &[BenchRow]) -> Value {
    let mut groups: BTreeMap<String, Vec<&BenchRow>> = BTreeMap::new();
    for r in rows {
        let name = if r.simulated {
            format!("{}@simulated", r.id)
        } else {
            r.id.clone()
        };
        groups.entry(name).or_default().push(r);
    }
    let mut out = serde_json::Map::new();
    for (name, rs) in groups {
        let measure = if rs[0].unit == "GB/s" {
            "throughput-gb-s"
        } else {
            "throughput-tflops"
        };
        let mut medians: Vec<f64> = rs.iter().map(|r| r.median).collect();
        medians.sort_by(f64::total_cmp);
        let n = medians.len();
        let value = if n % 2 == 1 {
            medians[n / 2]
        } else {
            (medians[n / 2 - 1] + medians[n / 2]) / 2.0
        };
        let lower = rs.iter().map(|r| r.p5).fold(f64::INFINITY, f64::min);
        let upper = rs.iter().map(|r| r.p95).fold(f64::NEG_INFINITY, f64::max);
        out.insert(
            name,
            json!({ measure: {"value": value, "lower_value": lower, "upper_value": upper} }),
        );
    }
    Value::Object(out)
}

/// The Markdown table for `summary.md`.
pub fn markdown(rows: &[BenchRow]) -> String {
    if rows.is_empty() {
        return String::new();
    }
    let simulated = rows.iter().any(|r| r.simulated);
    let mut s = format!(
        "\n## Throughput{}\n\n| node | gpu | metric | median | floor | % of peak | cv |\n|---|---|---|---|---|---|---|\n",
        if simulated { " (simulated)" } else { "" }
    );
    for r in rows {
        let below = r.floor.is_some_and(|f| r.median < f) || !r.verified;
        let _ = writeln!(
            s,
            "| {} | {} | {} | {}{:.1} {}{} | {} | {} | {:.1}% |",
            r.node,
            r.gpu,
            r.metric,
            if below { "**" } else { "" },
            r.median,
            r.unit,
            if below { "**" } else { "" },
            r.floor.map_or("—".into(), |f| format!("{f:.1}")),
            r.peak
                .map_or("—".into(), |p| format!("{:.1}%", r.median / p * 100.0)),
            r.cv * 100.0
        );
    }
    s
}

/// `report.html`: a self-contained page, one SVG chart per metric.
pub fn html(record: &RunRecord) -> String {
    let mut by_metric: BTreeMap<&str, Vec<&BenchRow>> = BTreeMap::new();
    for r in &record.benchmarks {
        by_metric.entry(r.metric.as_str()).or_default().push(r);
    }
    let simulated = record.benchmarks.iter().any(|r| r.simulated);
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>gpuconform {id}</title>\n<style>body{{font-family:sans-serif;margin:2em}}svg{{margin:1em 0}}.bad{{fill:#c0392b}}.ok{{fill:#2e86c1}}</style></head><body>\n<h1>gpuconform {id}{sim}</h1>\n<p>{cluster}, Kubernetes {k8s}, driver {driver}. Bars: median per GPU; dashed line: floor; solid line: datasheet peak.</p>\n",
        id = esc(&record.run_id),
        sim = if simulated {
            " — simulated results"
        } else {
            ""
        },
        cluster = esc(&record.cluster),
        k8s = esc(&record.kubernetes_version),
        driver = esc(&record.driver_version),
    );
    for (metric, rows) in by_metric {
        let unit = rows.first().map_or("", |r| r.unit.as_str());
        let max = rows
            .iter()
            .map(|r| r.peak.unwrap_or(r.median).max(r.median))
            .fold(0.0f64, f64::max)
            .max(1e-9);
        let bar_w = 28.0;
        let gap = 10.0;
        let h = 220.0;
        let left = 60.0;
        let width = left + rows.len() as f64 * (bar_w + gap) + 20.0;
        let y = |v: f64| 20.0 + h - v / max * h;
        let _ = write!(
            s,
            "<h2>{} ({})</h2>\n<svg width=\"{width:.0}\" height=\"{:.0}\" role=\"img\" aria-label=\"{}\">\n",
            esc(metric),
            esc(unit),
            h + 80.0,
            esc(metric)
        );
        let _ = writeln!(
            s,
            "<text x=\"4\" y=\"{:.0}\" font-size=\"11\">{max:.0}</text><text x=\"4\" y=\"{:.0}\" font-size=\"11\">0</text>",
            y(max) + 4.0,
            y(0.0)
        );
        for (i, r) in rows.iter().enumerate() {
            let x = left + i as f64 * (bar_w + gap);
            let bad = r.floor.is_some_and(|f| r.median < f) || !r.verified;
            let _ = writeln!(
                s,
                "<rect class=\"{}\" x=\"{x:.1}\" y=\"{:.1}\" width=\"{bar_w}\" height=\"{:.1}\"><title>{} gpu{}: {:.1} {}</title></rect>",
                if bad { "bad" } else { "ok" },
                y(r.median),
                y(0.0) - y(r.median),
                esc(&r.node),
                r.gpu,
                r.median,
                esc(unit)
            );
            if let Some(f) = r.floor {
                let _ = writeln!(
                    s,
                    "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#333\" stroke-dasharray=\"4 2\"/>",
                    x - 3.0,
                    x + bar_w + 3.0,
                    y(f),
                    y(f)
                );
            }
            if let Some(p) = r.peak {
                let _ = writeln!(
                    s,
                    "<line x1=\"{:.1}\" x2=\"{:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#000\"/>",
                    x - 3.0,
                    x + bar_w + 3.0,
                    y(p),
                    y(p)
                );
            }
            let _ = writeln!(
                s,
                "<text x=\"{:.1}\" y=\"{:.1}\" font-size=\"10\" transform=\"rotate(60 {:.1} {:.1})\">{} g{}</text>",
                x + 4.0,
                y(0.0) + 12.0,
                x + 4.0,
                y(0.0) + 12.0,
                esc(&r.node),
                r.gpu
            );
        }
        s.push_str("</svg>\n");
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(gpu: u32, median: f64) -> BenchRow {
        BenchRow {
            id: format!("p4d.24xlarge/A100-SXM4-40GB/gpu{gpu}/triad"),
            device: "NVIDIA A100-SXM4-40GB".into(),
            uuid: format!("GPU-{gpu}"),
            driver_version: "580.95.05".into(),
            samples: vec![median],
            node: "gpu-worker-1".into(),
            instance_type: "p4d.24xlarge".into(),
            gpu,
            model: "A100-SXM4-40GB".into(),
            metric: "triad".into(),
            unit: "GB/s".into(),
            median,
            p5: median * 0.99,
            p95: median * 1.01,
            cv: 0.01,
            floor: Some(1088.5),
            peak: Some(1555.0),
            simulated: true,
            verified: true,
            hardware: BTreeMap::new(),
            software: BTreeMap::new(),
        }
    }

    #[test]
    fn bmf_has_value_and_bounds() {
        let v = bmf(&[row(3, 758.0)]);
        let m = &v["p4d.24xlarge/A100-SXM4-40GB/gpu3/triad@simulated"]["throughput-gb-s"];
        assert_eq!(m["value"], 758.0);
        assert_eq!(m["lower_value"], 758.0 * 0.99);
        assert_eq!(m["upper_value"], 758.0 * 1.01);
        // Measured runs are named without the mark; two nodes of one pool share a benchmark.
        let measured = |node: &str, median: f64| BenchRow {
            simulated: false,
            node: node.into(),
            ..row(3, median)
        };
        let v = bmf(&[
            measured("ip-10-0-1-7", 1380.0),
            measured("ip-10-0-2-9", 1360.0),
        ]);
        let m = &v["p4d.24xlarge/A100-SXM4-40GB/gpu3/triad"]["throughput-gb-s"];
        assert_eq!(m["value"], 1370.0);
        assert_eq!(m["lower_value"], 1360.0 * 0.99);
        assert_eq!(m["upper_value"], 1380.0 * 1.01);
    }

    #[test]
    fn markdown_marks_values_below_the_floor() {
        let md = markdown(&[row(0, 1380.0), row(3, 758.0)]);
        assert!(
            md.contains("| gpu-worker-1 | 3 | triad | **758.0 GB/s** | 1088.5 | 48.7% |"),
            "{md}"
        );
        assert!(
            md.contains("| gpu-worker-1 | 0 | triad | 1380.0 GB/s | 1088.5 | 88.7% |"),
            "{md}"
        );
        assert!(md.contains("(simulated)"));
    }
}
