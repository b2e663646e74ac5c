//! Tier 1: the verdict and the rendering of a dry run, from built reports; the free-GPU count
//! from pod objects.

use super::*;
use crate::plan::OperatorMode;

fn release(revision: u64) -> Release {
    Release {
        status: "deployed".into(),
        chart: "gpu-operator-v26.7.0".into(),
        revision,
    }
}

fn report() -> Report {
    let kinds: BTreeSet<&'static str> = ["operator", "labels", "workload"].into_iter().collect();
    let needs = permissions::needs(OperatorMode::Existing, &kinds, true);
    let permissions = needs
        .into_iter()
        .map(|need| {
            let namespace = match need.scope {
                Scope::Cluster => None,
                Scope::Operator => Some("gpu-operator".to_string()),
                Scope::Tests => Some("gpuconform-tests".to_string()),
            };
            Permission {
                namespace,
                allowed: Ok(!(need.resource == "jobs" && need.verb == "create")
                    && need.resource != "events"),
                need,
            }
        })
        .collect();
    Report {
        plan: "verify (plans/verify.yaml)".into(),
        server: "https://127.0.0.1:6443/".into(),
        version: Ok("v1.35.0".into()),
        mode: OperatorMode::Existing,
        adopt: false,
        release: ("gpu-operator".into(), "gpu-operator".into()),
        found: Ok(Some(release(1))),
        test_namespace: ("gpuconform-tests".into(), Some(Some("restricted".into()))),
        permissions,
        nodes: Ok(vec![
            NodeRow {
                name: "gpu-worker-1".into(),
                expectation: Ok("p3.2xlarge: 1× Tesla-V100-SXM2-16GB".into()),
                gpus: Ok((1, 0)),
            },
            NodeRow {
                name: "dgx-1".into(),
                expectation: Err("no expectation for node dgx-1: instance type none, product NVIDIA-A100-SXM4-80GB; neither a plan `expect` entry nor the instance catalog describes it; add an `expect` entry".into()),
                gpus: Err("not asked".into()),
            },
            NodeRow {
                name: "gpu-worker-2".into(),
                expectation: Ok("p4d.24xlarge: 8× NVIDIA-A100-SXM4-40GB".into()),
                gpus: Err("forbidden".into()),
            },
        ]),
        bench_image: None,
    }
}

#[test]
fn render_is_golden() {
    let got = report().render();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/dry-run.txt");
    if std::env::var_os("GPUCONFORM_UPDATE_GOLDEN").is_some() {
        std::fs::write(path, &got).expect("write golden");
    }
    let want = std::fs::read_to_string(path).expect("tests/golden/dry-run.txt");
    assert_eq!(
        got, want,
        "GPUCONFORM_UPDATE_GOLDEN=1 rewrites the golden file"
    );
}

#[test]
fn verdicts() {
    let base = report();
    assert_eq!(
        base.exit_code(),
        exit_codes::INFRA_ERROR,
        "jobs create is missing"
    );
    let blockers = base.blockers();
    assert_eq!(blockers.len(), 1, "events are optional: {blockers:?}");
    assert!(
        blockers[0]
            .1
            .contains("create batch/jobs (gpuconform-tests)"),
        "{blockers:?}"
    );

    let all_allowed = |mut r: Report| {
        for p in &mut r.permissions {
            p.allowed = Ok(true);
        }
        r
    };
    let ok = all_allowed(report());
    let rows: Vec<(Report, u8)> = vec![
        (ok.clone(), exit_codes::OK),
        (
            Report {
                found: Ok(None),
                ..ok.clone()
            },
            exit_codes::INPUT_ERROR,
        ),
        (
            Report {
                mode: OperatorMode::Install,
                ..ok.clone()
            },
            exit_codes::INPUT_ERROR,
        ),
        (
            Report {
                mode: OperatorMode::Install,
                adopt: true,
                ..ok.clone()
            },
            exit_codes::OK,
        ),
        (
            Report {
                mode: OperatorMode::Install,
                found: Ok(None),
                ..ok.clone()
            },
            exit_codes::OK,
        ),
        (
            Report {
                found: Err("helm: not found".into()),
                ..ok.clone()
            },
            exit_codes::INFRA_ERROR,
        ),
        (
            Report {
                version: Err("connection refused".into()),
                ..ok.clone()
            },
            exit_codes::INFRA_ERROR,
        ),
        // A plan problem and a permission problem: the plan's code first.
        (
            Report {
                found: Ok(None),
                ..report()
            },
            exit_codes::INPUT_ERROR,
        ),
    ];
    for (i, (r, want)) in rows.into_iter().enumerate() {
        assert_eq!(r.exit_code(), want, "row {i}: {:?}", r.blockers());
    }
}

fn pod(phase: &str, containers: &[(Option<&str>, Option<&str>)], init: Option<&str>) -> Pod {
    let c = |(req, lim): &(Option<&str>, Option<&str>)| {
        let mut r = serde_json::json!({});
        if let Some(q) = req {
            r["requests"] = serde_json::json!({resources::GPU: q});
        }
        if let Some(q) = lim {
            r["limits"] = serde_json::json!({resources::GPU: q});
        }
        serde_json::json!({"name": "c", "resources": r})
    };
    let mut spec = serde_json::json!({"containers": containers.iter().map(c).collect::<Vec<_>>()});
    if let Some(q) = init {
        spec["initContainers"] = serde_json::json!([c(&(None, Some(q)))]);
    }
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": "p"},
        "spec": spec,
        "status": {"phase": phase},
    }))
    .expect("pod")
}

#[test]
fn gpus_in_use_counts_what_the_scheduler_counts() {
    let rows: Vec<(Vec<Pod>, u64)> = vec![
        (vec![], 0),
        (vec![pod("Running", &[(None, Some("2"))], None)], 2),
        (
            vec![pod(
                "Pending",
                &[(Some("1"), Some("1")), (None, Some("3"))],
                None,
            )],
            4,
        ),
        (vec![pod("Succeeded", &[(None, Some("8"))], None)], 0),
        (vec![pod("Failed", &[(None, Some("8"))], None)], 0),
        (vec![pod("Running", &[(None, Some("1"))], Some("4"))], 4),
        (
            vec![
                pod("Running", &[(None, None)], None),
                pod("Running", &[(None, Some("1"))], None),
            ],
            1,
        ),
    ];
    for (i, (pods, want)) in rows.into_iter().enumerate() {
        assert_eq!(gpus_in_use(&pods), want, "row {i}");
    }
}
