//! `compare:` in a plan: how `run --baseline` judges this run's benchmarks against the
//! baseline — the default threshold and per-metric ones, in percent.
//!
//! ```yaml
//! compare:
//!   thresholdPercent: 3
//!   metrics: {h2d: 6, d2h: 6, peerSlowest: 10}
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::bench::Metric;
use crate::compare::Settings;
use crate::input::{InputError, Spanned};

/// As written.
#[derive(Debug, Clone, Default, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(super) struct RawCompare {
    #[serde(default)]
    threshold_percent: Option<Spanned<f64>>,
    #[serde(default)]
    metrics: BTreeMap<String, Spanned<f64>>,
}

/// Metric names a threshold may be given for: the bench's and the peer summary's.
fn known_metrics() -> Vec<&'static str> {
    let mut v: Vec<&str> = Metric::ALL.iter().map(|m| m.key()).collect();
    v.push("peerSlowest");
    v
}

fn percent(file: &Path, v: &Spanned<f64>, field: &str) -> Result<f64, InputError> {
    if v.value.is_finite() && v.value > 0.0 && v.value < 100.0 {
        Ok(v.value / 100.0)
    } else {
        Err(InputError::at(
            file,
            v,
            field,
            format!("{} is not a percentage above 0 and below 100", v.value),
        ))
    }
}

/// The settings the plan asks for (the defaults where it says nothing).
pub(super) fn validate(file: &Path, raw: &RawCompare) -> Result<Settings, InputError> {
    let mut s = Settings::default();
    if let Some(t) = &raw.threshold_percent {
        s.threshold = percent(file, t, "compare.thresholdPercent")?;
    }
    let known = known_metrics();
    for (metric, t) in &raw.metrics {
        let field = format!("compare.metrics.{metric}");
        if !known.contains(&metric.as_str()) {
            return Err(InputError::at(
                file,
                t,
                field,
                format!("unknown metric `{metric}` (known: {})", known.join(", ")),
            ));
        }
        s.metric_thresholds
            .insert(metric.clone(), percent(file, t, &field)?);
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Settings, InputError> {
        let raw: RawCompare = crate::input::parse_yaml(Path::new("p.yaml"), yaml)?;
        validate(Path::new("p.yaml"), &raw)
    }

    #[test]
    fn thresholds_in_percent_with_their_lines_when_wrong() {
        let s =
            load("thresholdPercent: 2\nmetrics: {h2d: 6, peerSlowest: 10}\n").expect("test data");
        assert_eq!(s.threshold, 0.02);
        assert_eq!(s.threshold_for("p4d/A100/gpu3/h2d"), 0.06);
        assert_eq!(s.threshold_for("p4d/A100/gpu3/peerSlowest"), 0.1);
        assert_eq!(s.threshold_for("p4d/A100/gpu3/triad"), 0.02);
        assert_eq!(load("{}\n").expect("test data"), Settings::default());
        for (yaml, field, what) in [
            (
                "thresholdPercent: 0\n",
                "compare.thresholdPercent",
                "not a percentage",
            ),
            (
                "metrics:\n  h2d: 150\n",
                "compare.metrics.h2d",
                "not a percentage",
            ),
            (
                "metrics:\n  tripod: 5\n",
                "compare.metrics.tripod",
                "unknown metric `tripod`",
            ),
        ] {
            let e = load(yaml).expect_err("an error");
            let text = e.to_string();
            assert!(text.contains(field) && text.contains(what), "{text}");
            assert!(e.line.is_some(), "{text}");
        }
    }
}
