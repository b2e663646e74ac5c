//! `gpuconform compare BASE NEW`: each benchmark identity of two runs judged from the raw
//! samples ([`stats`]), the hardware behind them checked first, a Markdown report and JUnit
//! testcases written, and an exit code CI can gate on (`exit_codes::REGRESSION`).
//!
//! A run is a `results.json` or a folder: a run folder holding one, or a reports folder whose
//! newest passing run is taken. Identities are `<pool or instance type>/<GPU model>/<device>/<metric>`
//! (`bench::BenchRow::id`), stable across runs where node names are not; rows of several nodes
//! of one pool pool their samples.

pub mod html;
mod report;
pub mod stats;
pub mod trend;

pub use report::{junit, markdown};

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

pub use stats::{Settings, Verdict};

/// Why a comparison could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Not a results document.
    #[error("{path}: not a gpuconform results.json ({why})")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// A folder without a run in it.
    #[error(
        "{path}: no results.json here, nor a run folder below with benchmarks (a base must have passed)"
    )]
    NoRun {
        /// The folder.
        path: PathBuf,
    },
    /// The two runs measured different hardware.
    #[error("the runs measured different hardware, refusing to compare:\n{0}")]
    Hardware(String),
    /// A flag out of range.
    #[error("--{flag} {value}: expected a percentage above {lo} and below {hi}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: f64,
        /// Exclusive bounds.
        lo: f64,
        /// Exclusive bounds.
        hi: f64,
    },
    /// The report could not be written.
    #[error("{path}: cannot write the comparison: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Nothing in common.
    #[error("no benchmark identity is in both runs (base has {base}, new has {new})")]
    Disjoint {
        /// Identities in the base run.
        base: usize,
        /// In the new run.
        new: usize,
    },
}

/// One benchmark identity of one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Series {
    /// `GB/s` or `TFLOPS`.
    pub unit: String,
    /// Raw samples of every row with this identity.
    pub samples: Vec<f64>,
    /// CUDA device names seen.
    pub devices: Vec<String>,
    /// From the simulator.
    pub simulated: bool,
    /// Hardware and configuration seen (`Fingerprint::hardware`): name → every value seen.
    pub hardware: BTreeMap<String, BTreeSet<String>>,
}

/// The benchmarks of one run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Run {
    /// Where it was read.
    pub path: PathBuf,
    /// Its run id.
    pub run_id: String,
    /// Identity → series.
    pub series: BTreeMap<String, Series>,
    /// Software per identity prefix (driver, CUDA, NVRTC, cuBLAS, persistence mode; warned
    /// about when it differs).
    pub software: BTreeMap<String, BTreeMap<String, String>>,
}

/// Reads a `name → value` object.
fn string_map(v: Option<&Value>) -> BTreeMap<String, String> {
    v.and_then(Value::as_object)
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Reads a run from a `results.json`, a run folder, or a reports folder: its newest run with
/// benchmarks, the newest one that passed when `passed` (a baseline must be a good run).
pub fn load(path: &Path, passed: bool) -> Result<Run, CompareError> {
    let file = resolve(path, passed)?;
    let text = std::fs::read_to_string(&file).map_err(|source| CompareError::Read {
        path: file.clone(),
        source,
    })?;
    parse(&file, &text)
}

/// The `results.json` a path names.
fn resolve(path: &Path, need_pass: bool) -> Result<PathBuf, CompareError> {
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    let direct = path.join("results.json");
    if direct.is_file() {
        return Ok(direct);
    }
    // A reports folder: the newest run that passed (its `started_at`, then its name).
    let mut best: Option<(String, PathBuf)> = None;
    let entries = std::fs::read_dir(path).map_err(|source| CompareError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    for e in entries.flatten() {
        let f = e.path().join("results.json");
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        let passed = v.get("cases").and_then(Value::as_array).is_some_and(|c| {
            c.iter()
                .all(|c| c.get("status").and_then(Value::as_str) != Some("failed"))
        });
        if (need_pass && !passed)
            || v.get("benchmarks")
                .and_then(Value::as_array)
                .is_none_or(Vec::is_empty)
        {
            continue;
        }
        let key = v
            .get("startedAt")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if best.as_ref().is_none_or(|(k, _)| key > *k) {
            best = Some((key, f));
        }
    }
    best.map(|(_, f)| f).ok_or_else(|| CompareError::NoRun {
        path: path.to_path_buf(),
    })
}

/// A run from report rows: the baseline an upgrade keeps in the same record.
pub fn from_rows(
    run_id: &str,
    rows: &[crate::report::bench::BenchRow],
) -> Result<Run, CompareError> {
    let v = serde_json::json!({"runId": run_id, "benchmarks": rows});
    parse(Path::new(run_id), &v.to_string())
}

/// Reads the benchmarks of one results document.
pub fn parse(file: &Path, text: &str) -> Result<Run, CompareError> {
    let bad = |why: String| CompareError::Format {
        path: file.to_path_buf(),
        why,
    };
    // A results.json, or a bench document (gpuconform-bench's stdout: the JSON is its last line).
    let v: Value = serde_json::from_str(text)
        .or_else(|e| {
            text.lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .map_or(Err(e), serde_json::from_str)
        })
        .map_err(|e| bad(e.to_string()))?;
    if v.get("benchmarks").is_none() && v.get("gpus").is_some() {
        return Ok(from_bench_document(file, &v));
    }
    let rows = v
        .get("benchmarks")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("no `benchmarks` list".into()))?;
    let mut run = Run {
        path: file.to_path_buf(),
        run_id: v
            .get("runId")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        ..Run::default()
    };
    for (i, r) in rows.iter().enumerate() {
        let s = |k: &str| {
            r.get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        let id = s("id");
        if id.is_empty() {
            return Err(bad(format!(
                "benchmarks[{i}] has no `id` (written by a gpuconform before stable identities)"
            )));
        }
        let samples: Vec<f64> = r
            .get("samples")
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_f64).collect())
            .unwrap_or_default();
        if samples.is_empty() {
            // Peer summaries carry no raw samples; they are not compared.
            continue;
        }
        let entry = run.series.entry(id.clone()).or_default();
        entry.unit = s("unit");
        entry.samples.extend(samples);
        let device = s("device");
        if !device.is_empty() && !entry.devices.contains(&device) {
            entry.devices.push(device);
        }
        entry.simulated |= r.get("simulated").and_then(Value::as_bool).unwrap_or(false);
        for (k, v) in string_map(r.get("hardware")) {
            entry.hardware.entry(k).or_default().insert(v);
        }
        let mut software = string_map(r.get("software"));
        let driver = s("driverVersion");
        if !driver.is_empty() {
            software.entry("driver".into()).or_insert(driver);
        }
        if !software.is_empty() {
            let prefix = id.rsplitn(3, '/').nth(2).unwrap_or(&id).to_string();
            run.software.entry(prefix).or_default().extend(software);
        }
    }
    Ok(run)
}

/// The benchmarks of one bench document: identities `bench/<device name>/gpu<i>/<metric>`, so
/// two documents of the same machine (scripts/gpu-check) compare GPU by GPU.
fn from_bench_document(file: &Path, v: &Value) -> Run {
    let s = |v: &Value, k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let mut run = Run {
        path: file.to_path_buf(),
        run_id: file.display().to_string(),
        ..Run::default()
    };
    let simulated = v.get("simulated").and_then(Value::as_bool).unwrap_or(false);
    for g in v
        .get("gpus")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let device = g.get("device").cloned().unwrap_or_default();
        let name = s(&device, "name");
        let index = device.get("index").and_then(Value::as_u64).unwrap_or(0);
        let model = name.replace(' ', "-");
        let fp: crate::bench::Fingerprint = g
            .get("fingerprint")
            .cloned()
            .and_then(|f| serde_json::from_value(f).ok())
            .unwrap_or_default();
        let software = crate::bench::fingerprint::software(
            &s(v, "driverVersion"),
            &s(v, "cudaVersion"),
            v.get("nvrtcVersion").and_then(Value::as_str),
            v.get("cublasVersion").and_then(Value::as_str),
            fp.persistence,
        );
        run.software
            .entry(format!("bench/{model}/gpu{index}"))
            .or_default()
            .extend(software);
        let hardware: BTreeMap<String, BTreeSet<String>> = fp
            .hardware()
            .into_iter()
            .map(|(k, v)| (k, BTreeSet::from([v])))
            .collect();
        for m in g
            .get("measurements")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let samples: Vec<f64> = m
                .get("sampleValues")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_f64).collect())
                .unwrap_or_default();
            if samples.is_empty() {
                continue;
            }
            run.series.insert(
                format!("bench/{model}/gpu{index}/{}", s(m, "metric")),
                Series {
                    unit: s(m, "unit"),
                    samples,
                    devices: vec![name.clone()],
                    simulated,
                    hardware: hardware.clone(),
                },
            );
        }
    }
    run
}

/// One compared identity.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// The identity.
    pub id: String,
    /// Unit.
    pub unit: String,
    /// Base median.
    pub base: f64,
    /// New median.
    pub new: f64,
    /// Ratio and interval.
    pub ratio: stats::Ratio,
    /// The verdict.
    pub verdict: Verdict,
    /// The threshold it was judged with (the metric's own, or the default).
    pub threshold: f64,
}

/// The comparison of two runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Comparison {
    /// Per common identity.
    pub rows: Vec<Row>,
    /// Identities only in the base run.
    pub only_base: Vec<String>,
    /// Only in the new run.
    pub only_new: Vec<String>,
    /// Software differences worth knowing (driver versions).
    pub warnings: Vec<String>,
}

impl Comparison {
    /// Whether any benchmark got worse.
    pub fn regressed(&self) -> bool {
        self.rows.iter().any(|r| r.verdict == Verdict::Worse)
    }
}

fn seed(id: &str) -> u64 {
    // FNV-1a: a fixed seed per identity, so a comparison is reproducible.
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// Compares `new` against `base`. Refuses when an identity was measured on other devices or
/// on hardware configured otherwise (clocks, power limit, ECC, MIG mode, PCIe link); a
/// simulated run against a real one is refused too. Software differences are warnings.
pub fn compare(base: &Run, new: &Run, s: &Settings) -> Result<Comparison, CompareError> {
    let common: Vec<&String> = base
        .series
        .keys()
        .filter(|k| new.series.contains_key(*k))
        .collect();
    if common.is_empty() {
        return Err(CompareError::Disjoint {
            base: base.series.len(),
            new: new.series.len(),
        });
    }
    let mut hardware = Vec::new();
    for id in &common {
        let (b, n) = (&base.series[*id], &new.series[*id]);
        if !b.devices.is_empty() && !n.devices.is_empty() && b.devices != n.devices {
            hardware.push(format!(
                "  {id}: {} in {}, {} in {}",
                b.devices.join(", "),
                base.run_id,
                n.devices.join(", "),
                new.run_id
            ));
        }
        for (k, bv) in &b.hardware {
            if let Some(nv) = n.hardware.get(k)
                && nv != bv
            {
                let join =
                    |v: &BTreeSet<String>| v.iter().cloned().collect::<Vec<_>>().join(" and ");
                hardware.push(format!(
                    "  {id}: {k} {} in {}, {} in {}",
                    join(bv),
                    base.run_id,
                    join(nv),
                    new.run_id
                ));
            }
        }
        if b.simulated != n.simulated {
            hardware.push(format!(
                "  {id}: {} in {}, {} in {}",
                if b.simulated { "simulated" } else { "measured" },
                base.run_id,
                if n.simulated { "simulated" } else { "measured" },
                new.run_id
            ));
        }
    }
    if !hardware.is_empty() {
        return Err(CompareError::Hardware(hardware.join("\n")));
    }
    let mut warnings = Vec::new();
    for (prefix, sw) in &new.software {
        let Some(old) = base.software.get(prefix) else {
            continue;
        };
        for (k, d) in sw {
            if let Some(b) = old.get(k)
                && b != d
            {
                warnings.push(format!(
                    "{prefix}: {k} {b} in {}, {d} in {}",
                    base.run_id, new.run_id
                ));
            }
        }
    }
    let rows = common
        .iter()
        .filter_map(|id| {
            let (b, n) = (&base.series[*id], &new.series[*id]);
            let ratio = stats::ratio_of_medians(&b.samples, &n.samples, s, seed(id))?;
            let threshold = s.threshold_for(id);
            Some(Row {
                id: (*id).clone(),
                unit: n.unit.clone(),
                base: median(&b.samples),
                new: median(&n.samples),
                verdict: stats::verdict(&ratio, threshold),
                ratio,
                threshold,
            })
        })
        .collect();
    let only = |a: &Run, b: &Run| -> Vec<String> {
        a.series
            .keys()
            .filter(|k| !b.series.contains_key(*k))
            .cloned()
            .collect()
    };
    Ok(Comparison {
        rows,
        only_base: only(base, new),
        only_new: only(new, base),
        warnings,
    })
}

impl Comparison {
    /// The rows, worst first (by verdict, then by ratio).
    pub fn worst_first(&self) -> Vec<Row> {
        let mut rows = self.rows.clone();
        rows.sort_by(|a, b| {
            a.verdict
                .cmp(&b.verdict)
                .then(a.ratio.ratio.total_cmp(&b.ratio.ratio))
        });
        rows
    }

    /// `3 worse, 0 inconclusive, 61 same, 0 better (threshold 3%, 95% interval …)`.
    pub fn tally(&self, s: &Settings) -> String {
        let count = |v: Verdict| self.rows.iter().filter(|r| r.verdict == v).count();
        format!(
            "{} worse, {} inconclusive, {} same, {} better (threshold {}%, {}% interval of the ratio of medians, bootstrap)",
            count(Verdict::Worse),
            count(Verdict::Inconclusive),
            count(Verdict::Same),
            count(Verdict::Better),
            s.threshold * 100.0,
            s.confidence * 100.0
        )
    }
}

#[cfg(test)]
mod tests;
