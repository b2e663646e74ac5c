//! Tier 1: merging, `--set` paths and error locations of plan overrides.
use super::*;

fn files(base: &str, overlays: &[&str]) -> (tempfile::TempDir, PathBuf, Vec<Layer>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = dir.path().join("plan.yaml");
    std::fs::write(&b, base).expect("write");
    let mut layers = Vec::new();
    for (i, o) in overlays.iter().enumerate() {
        let p = dir.path().join(format!("o{i}.yaml"));
        std::fs::write(&p, o).expect("write");
        layers.push(Layer::File(p));
    }
    (dir, b, layers)
}

fn value(m: &Merged) -> serde_json::Value {
    crate::input::parse_yaml(Path::new("merged"), &m.text).expect("merged text parses")
}

const BASE: &str =
    "name: t\nops: &o\n  a: 1\n  b: \"2\"\nlist: [x, y]\nalias: *o\nmulti: |\n  one\n  two\n";

#[test]
fn merging_keeps_types_maps_merge_and_the_last_layer_wins() {
    let (_d, base, mut layers) = files(BASE, &["ops:\n  b: 3\n  c: {}\nlist: [z]\n"]);
    layers.push(Layer::Set("ops.c.d=[1, \"two\"]".into()));
    layers.push(Layer::Set("name=u".into()));
    let m = merge(&base, &layers).expect("merge");
    let v = value(&m);
    let want = serde_json::json!({
        "name": "u",
        "ops": {"a": 1, "b": 3, "c": {"d": [1, "two"]}},
        "list": ["z"],
        "alias": {"a": 1, "b": "2"},
        "multi": "one\ntwo\n",
    });
    assert_eq!(v, want, "{}", m.text);
}

#[test]
fn set_paths() {
    let (_d, base, _) = files("a:\n  list:\n    - k: 1\n", &[]);
    let rows: [(&str, Result<serde_json::Value, &str>); 8] = [
        (
            "a.list[0].k=2",
            Ok(serde_json::json!({"a": {"list": [{"k": 2}]}})),
        ),
        (
            "a.list[1].k=3",
            Ok(serde_json::json!({"a": {"list": [{"k": 1}, {"k": 3}]}})),
        ),
        (
            "a.nvidia\\.com/gpu=4",
            Ok(serde_json::json!({"a": {"list": [{"k": 1}], "nvidia.com/gpu": 4}})),
        ),
        (
            "a.s=\"1.0\"",
            Ok(serde_json::json!({"a": {"list": [{"k": 1}], "s": "1.0"}})),
        ),
        ("a.list[5].k=1", Err("the list has 1 items")),
        ("a.list.k=1", Err("not a mapping")),
        ("a..b=1", Err("empty key")),
        ("a.b", Err("expected `path=value`")),
    ];
    for (arg, want) in rows {
        let got = merge(&base, &[Layer::Set(arg.into())]);
        match (got, want) {
            (Ok(m), Ok(v)) => assert_eq!(value(&m), v, "{arg}"),
            (Err(e), Err(msg)) => {
                assert!(e.message.contains(msg), "{arg}: {e}");
                assert_eq!(e.file, set_name(arg), "{arg}");
            }
            (got, want) => panic!("{arg}: got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn errors_move_back_to_the_layer_the_value_came_from() {
    let (_d, base, mut layers) = files(
        "name: t\nsub:\n  keep: 1\n  bad: 2\n",
        &["sub:\n  over: x\n"],
    );
    layers.push(Layer::Set("sub.set=y".into()));
    let m = merge(&base, &layers).expect("merge");
    let line_of = |needle: &str| {
        m.text
            .lines()
            .position(|l| l.contains(needle))
            .expect("line") as u32
            + 1
    };
    let at = |line: u32| {
        m.locate(InputError {
            file: PathBuf::from("merged"),
            line: Some(line),
            column: Some(1),
            field: None,
            message: "x".into(),
        })
    };
    let e = at(line_of("bad:"));
    assert_eq!((e.file.clone(), e.line), (base.clone(), Some(4)), "{e}");
    let e = at(line_of("over:"));
    assert_eq!((e.file.clone(), e.line), (layers[0].path(), Some(2)), "{e}");
    let e = at(line_of("set:"));
    assert_eq!(e.file, set_name("sub.set=y"), "{e}");
    assert_eq!(e.line, None);
}

#[test]
fn syntax_errors_in_an_overlay_name_it() {
    let (_d, base, layers) = files("name: t\n", &["a: [\n"]);
    let e = merge(&base, &layers).expect_err("syntax");
    assert_eq!(e.file, layers[0].path(), "{e}");
    assert!(e.line.is_some(), "{e}");
}

impl Layer {
    fn path(&self) -> PathBuf {
        match self {
            Layer::File(p) => p.clone(),
            Layer::Set(a) => set_name(a),
        }
    }
}
