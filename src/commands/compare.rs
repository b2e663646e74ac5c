//! `gpuconform compare BASE NEW` and `gpuconform trend DIR…`: flags into settings, the
//! comparison or the trend, its report.

use crate::cli::{CompareArgs, Format, TrendArgs};
use crate::compare::{self, CompareError, Settings};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::output::Printer;

/// Compares two runs; exit `REGRESSION` when a benchmark got worse.
pub fn compare(args: CompareArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let pct = |flag: &'static str, value: f64, lo: f64, hi: f64| {
        if value.is_finite() && value > lo && value < hi {
            Ok(value / 100.0)
        } else {
            Err(CompareError::Flag {
                flag,
                value,
                lo,
                hi,
            })
        }
    };
    let mut settings = Settings {
        threshold: pct("threshold", args.threshold, 0.0, 100.0)?,
        confidence: pct("confidence", args.confidence, 50.0, 100.0)?,
        ..Settings::default()
    };
    for (metric, value) in &args.metric_thresholds {
        settings
            .metric_thresholds
            .insert(metric.clone(), pct("metric-threshold", *value, 0.0, 100.0)?);
    }
    let base = compare::load(&args.base, true)?;
    let new = compare::load(&args.new, false)?;
    let c = compare::compare(&base, &new, &settings)?;
    let md = compare::markdown(&c, &base, &new, &settings);
    for w in &c.warnings {
        printer.warn(format!("software differs: {w}"));
    }
    if args.output == Format::Json {
        let mut v = serde_json::to_value(&c).unwrap_or_default();
        v["base"] = base.path.display().to_string().into();
        v["new"] = new.path.display().to_string().into();
        v["regressed"] = c.regressed().into();
        printer.json(&v);
    } else {
        printer.result(md.trim_end());
    }
    if let Some(dir) = &args.out {
        for (name, text) in [
            ("compare.md", md.clone()),
            ("compare.junit.xml", compare::junit(&c)),
            (
                "compare.html",
                compare::html::html(&c, &base, &new, &settings),
            ),
        ] {
            let path = dir.join(name);
            std::fs::create_dir_all(dir)
                .and_then(|()| std::fs::write(&path, text))
                .map_err(|source| CompareError::Write { path, source })?;
        }
    }
    Ok(if c.regressed() {
        exit_codes::REGRESSION
    } else {
        exit_codes::OK
    })
}

/// Writes the trend page of the runs in `args.dirs`.
pub fn trend(args: TrendArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let t = compare::trend::collect(&args.dirs)?;
    std::fs::write(&args.out, compare::trend::html(&t)).map_err(|source| CompareError::Write {
        path: args.out.clone(),
        source,
    })?;
    printer.result(format!(
        "{} runs, {} benchmarks: {}",
        t.runs,
        t.series.len(),
        args.out.display()
    ));
    Ok(exit_codes::OK)
}
