use super::*;

fn check(text: &str) -> Result<Plan, InputError> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::env::set_current_dir(root).expect("cd");
    let file = Path::new("p.yaml");
    let raw: RawPlan = parse_yaml(file, text)?;
    let catalog = crate::catalog::Catalog::embedded().expect("catalog");
    Plan::validate(file, raw, &root.join("suites"), &catalog)
}

const GOOD: &str = "name: t\ntarget:\n  local:\n    fixture: fixtures/clusters/seed.yaml\noperator:\n  chart: fixtures/charts/gpu-operator\n  values:\n    driver:\n      version: \"580.95.05\"\nsuites: [gpu-stack]\n";

#[test]
fn good_plan() {
    let p = check(GOOD).expect("valid");
    assert_eq!(p.operator.namespace, "gpu-operator");
    assert_eq!(p.operator.driver_version().as_deref(), Some("580.95.05"));
    assert_eq!(p.timeouts.step, Duration::from_secs(300));
}

#[test]
fn operator_modes() {
    let existing = GOOD.replace(
        "  local:\n    fixture: fixtures/clusters/seed.yaml\n",
        "  kubeconfig:\n    path: /nonexistent/kubeconfig\n",
    );
    let p = check(&existing).expect("valid");
    assert_eq!(p.operator.mode, OperatorMode::Install, "the default");
    assert!(!p.operator.adopt);
    let verify = existing.replace("operator:\n", "operator:\n  mode: existing\n");
    assert_eq!(
        check(&verify).expect("valid").operator.mode,
        OperatorMode::Existing
    );
    let adopt = existing.replace("operator:\n", "operator:\n  adopt: true\n");
    assert!(check(&adopt).expect("valid").operator.adopt);
    let rows = [
        (
            GOOD.replace("operator:\n", "operator:\n  mode: existing\n"),
            "needs a `kubeconfig` target",
        ),
        (
            verify.replace("mode: existing\n", "mode: existing\n  adopt: true\n"),
            "never changes it",
        ),
        (
            existing.replace("operator:\n", "operator:\n  mode: verify\n"),
            "unknown mode `verify`",
        ),
    ];
    for (text, msg) in rows {
        let e = check(&text).expect_err(msg);
        assert!(
            e.field
                .as_deref()
                .is_some_and(|f| f.starts_with("operator.")),
            "{e}"
        );
        assert!(e.message.contains(msg), "{e}");
    }
}

#[test]
fn errors_name_line_and_field() {
    let cases = [
        (
            GOOD.replace("gpu-stack", "gpu-stak"),
            10,
            "suites[0]",
            "no suite `gpu-stak`",
        ),
        (
            GOOD.replace("seed.yaml", "nope.yaml"),
            4,
            "target.local.fixture",
            "no fixture",
        ),
        (
            format!("{GOOD}timeouts:\n  step: soon\n"),
            12,
            "timeouts.step",
            "not a duration",
        ),
        (
            format!("{GOOD}teardown:\n  leftoverLabels: maybe\n"),
            12,
            "teardown.leftoverLabels",
            "not `warn`",
        ),
        (
            GOOD.replace(
                "chart: fixtures/charts/gpu-operator",
                "chart: fixtures/charts/none",
            ),
            6,
            "operator.chart",
            "no chart",
        ),
    ];
    for (text, line, field, msg) in cases {
        let e = check(&text).expect_err(field);
        assert_eq!(e.line, Some(line), "{e}");
        assert_eq!(e.field.as_deref(), Some(field), "{e}");
        assert!(e.message.contains(msg), "{e}");
    }
}

#[test]
fn the_real_chart_is_the_default() {
    let text = "name: t\ntarget:\n  kubeconfig: {}\nsuites: [gpu-stack]\n";
    let p = check(text).expect("valid");
    assert_eq!(p.operator.chart, NVIDIA_CHART);
    assert_eq!(p.operator.repo.as_deref(), Some(NVIDIA_REPO));
    assert_eq!(p.operator.namespace, "gpu-operator");
}

#[test]
fn unknown_key_is_an_error() {
    let e = check(&format!("{GOOD}suite: [x]\n")).expect_err("unknown key");
    assert!(e.to_string().contains("suite"), "{e}");
}
