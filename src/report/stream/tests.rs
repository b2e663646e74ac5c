//! The events file: one of every event, against the golden file and the shipped schema.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;
use crate::report::events::{RunEnd, RunStart};

/// One of each event, in a run's order, from fixed data.
fn every_event() -> Vec<Event> {
    let record = crate::report::tests::sample();
    let table = crate::bench::model::PerfTable::embedded().expect("perf table");
    let mut report = crate::bench::model::simulate(&crate::bench::model::Simulation {
        model_key: "T4",
        model: &table.models["T4"],
        device_name: "Tesla T4".into(),
        gpus: 1,
        node: "g4dn-1".into(),
        slow: BTreeMap::new(),
        driver_version: "580.95.05".into(),
        repetitions: 3,
        mig: None,
    });
    // The simulator stamps the time it ran; the golden needs a fixed one.
    report.started_at = "2026-12-03T00:00:00Z".into();
    vec![
        Event::RunStarted(RunStart {
            run_id: "local-20261203-000000".into(),
            plan: "local".into(),
            plan_file: "plans/local.yaml".into(),
            dir: "reports/local-20261203-000000".into(),
            started_at: "2026-12-03T00:00:00+00:00".into(),
            operator_chart: "fixtures/charts/gpu-operator".into(),
            operator_chart_version: String::new(),
            driver_version: "580.95.05".into(),
        }),
        Event::PhaseStarted("provision".into()),
        Event::PhaseFinished(record.phases[0].clone()),
        Event::ClusterReady {
            name: "local/seed".into(),
            kubernetes_version: "v1.35.4".into(),
        },
        Event::GpuNodesFound(vec!["g4dn.xlarge: 1× Tesla-T4".into()]),
        Event::Installed {
            chart_version: "v26.7.0".into(),
        },
        Event::StepStarted {
            suite: "gpu-stack".into(),
            step: "labels".into(),
            check: "labels".into(),
        },
        Event::Case(record.cases[0].clone()),
        Event::Bench(crate::bench::NodeBench {
            node: "g4dn-1".into(),
            instance_type: "g4dn.xlarge".into(),
            model_key: "T4".into(),
            group: "gpu".into(),
            mig_unit: None,
            report,
        }),
        Event::UpgradeStarted {
            from: "580.95.05".into(),
            to: "595.91.07".into(),
        },
        Event::UpgradeWatched {
            watched: Default::default(),
            failed: false,
        },
        Event::UpgradeRolledBack("helm rollback gpu-operator 1".into()),
        Event::UpgradeCompared {
            rows: Vec::new(),
            regressed: false,
        },
        Event::Inventory(Default::default()),
        Event::Note("kubeconfig: reports/local/kubeconfig".into()),
        Event::Warning("a warning".into()),
        Event::RunFinished(RunEnd {
            seconds: 12.5,
            ..Default::default()
        }),
    ]
}

fn lines() -> Vec<String> {
    every_event()
        .iter()
        .enumerate()
        .map(|(i, e)| line(i as u64 + 1, "2026-12-03T00:00:00.000Z", e))
        .collect()
}

#[test]
fn every_event_type_is_written_once_in_declared_order() {
    let kinds: Vec<String> = lines()
        .iter()
        .map(|l| {
            let v: Value = serde_json::from_str(l).expect("a JSON line");
            assert_eq!(v["schema"], SCHEMA);
            v["type"].as_str().expect("type").to_string()
        })
        .collect();
    assert_eq!(kinds, TYPES);
}

#[test]
fn golden() {
    let text = lines().join("\n") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/events.jsonl");
    if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden");
    }
    let want = std::fs::read_to_string(&path).expect("golden (GPUCONFORM_UPDATE_GOLDEN=1)");
    assert_eq!(
        text, want,
        "events changed: rerun with GPUCONFORM_UPDATE_GOLDEN=1 and review"
    );
}

/// The shipped schema names exactly these types and every field each one's data carries is
/// declared there (a field added here and not to the schema fails), and what it requires is
/// present. The whole file is validated by a JSON Schema validator in tests/run.rs.
#[test]
fn the_schema_describes_every_line() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas/events.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("JSON");
    let kinds = schema
        .pointer("/properties/type/enum")
        .and_then(Value::as_array)
        .expect("type enum");
    assert_eq!(
        kinds.iter().filter_map(Value::as_str).collect::<Vec<_>>(),
        TYPES
    );
    for l in lines() {
        let v: Value = serde_json::from_str(&l).expect("JSON");
        let kind = v["type"].as_str().expect("type");
        let def = schema
            .pointer(&format!("/$defs/{kind}"))
            .unwrap_or_else(|| panic!("no $defs/{kind}"));
        let data = v["data"].as_object().expect("data object");
        let declared = def["properties"].as_object().expect("properties");
        for k in data.keys() {
            assert!(declared.contains_key(k), "{kind}.{k} not in the schema");
        }
        for r in def["required"].as_array().expect("required") {
            let r = r.as_str().expect("name");
            assert!(data.contains_key(r), "{kind} lacks required {r}");
        }
    }
}
