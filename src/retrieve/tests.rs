use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::ConfigMap;

use super::unpack::{UnpackError, unpack};
use super::*;

/// The chart's CronJob as `deploy/cronjob/gpuconform.yaml` renders it (tests/run.rs checks that
/// file is the chart's output).
fn chart_cronjob() -> CronJob {
    let text = include_str!("../../deploy/cronjob/gpuconform.yaml");
    let doc = text
        .split("\n---\n")
        .find(|d| d.lines().any(|l| l == "kind: CronJob"))
        .expect("a CronJob in the rendered chart");
    serde_saphyr::from_str(doc).expect("the CronJob parses")
}

#[test]
fn the_charts_cronjob_says_where_the_reports_are() {
    let s = source(&chart_cronjob()).expect("source");
    assert_eq!(s.claim, "gpuconform-reports");
    assert_eq!(s.mount, "/reports");
    assert_eq!(s.scheduling.node_selector, None);
}

#[test]
fn a_cronjob_without_the_reports_claim_is_named() {
    let mut cj = chart_cronjob();
    let spec = cj
        .spec
        .as_mut()
        .and_then(|s| s.job_template.spec.as_mut())
        .and_then(|j| j.template.spec.as_mut())
        .expect("pod spec");
    let mut no_mount = spec.clone();
    spec.volumes = Some(Vec::new());
    assert_eq!(source(&cj), Err(SourceError::NoClaim("gpuconform".into())));
    for c in &mut no_mount.containers {
        c.volume_mounts = None;
    }
    let mut cj2 = chart_cronjob();
    if let Some(j) = cj2.spec.as_mut().and_then(|s| s.job_template.spec.as_mut()) {
        j.template.spec = Some(no_mount);
    }
    assert_eq!(source(&cj2), Err(SourceError::NoMount("gpuconform".into())));
}

#[test]
fn run_ids_are_one_plain_folder_name() {
    for ok in ["20261203-191544-3f2a", "nightly_1", "a.b"] {
        assert_eq!(run_id(ok).as_deref(), Ok(ok), "{ok}");
    }
    for bad in [
        "", "-rf", ".", "..", "../etc", "a/b", "/reports", "a b", "x\n",
    ] {
        assert!(run_id(bad).is_err(), "{bad:?} accepted");
    }
}

#[test]
fn the_last_run_comes_from_the_summary() {
    let cm = |data: Option<(&str, &str)>| ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some("gpuconform-summary".into()),
            ..Default::default()
        },
        data: data.map(|(k, v)| [(k.to_string(), v.to_string())].into()),
        ..Default::default()
    };
    assert_eq!(
        last_run(&cm(Some(("runId", "20261203-0200-ab12\n")))).as_deref(),
        Ok("20261203-0200-ab12")
    );
    assert_eq!(
        last_run(&cm(None)),
        Err(SourceError::NoRun("gpuconform-summary".into()))
    );
    assert_eq!(
        last_run(&cm(Some(("runId", "../x")))),
        Err(SourceError::BadRunId("../x".into()))
    );
}

#[test]
fn the_helper_pod_mounts_the_claim_read_only_and_meets_restricted() {
    let mut s = source(&chart_cronjob()).expect("source");
    s.scheduling.node_selector = Some([("pool".to_string(), "system".to_string())].into());
    let p = pod("gpuconform-retrieve-1", &s, "busybox:1.37.0", 300);
    let spec = p.spec.as_ref().expect("spec");
    assert_eq!(p.metadata.name.as_deref(), Some("gpuconform-retrieve-1"));
    assert_eq!(spec.active_deadline_seconds, Some(360));
    assert_eq!(spec.node_selector, s.scheduling.node_selector);
    assert_eq!(
        spec.security_context
            .as_ref()
            .and_then(|c| c.run_as_non_root),
        Some(true)
    );
    let c = &spec.containers[0];
    assert_eq!(c.name, CONTAINER);
    assert_eq!(c.working_dir.as_deref(), Some("/reports"));
    assert_eq!(
        c.command.as_deref(),
        Some(&["sleep".to_string(), "300".into()][..])
    );
    let sc = c
        .security_context
        .as_ref()
        .expect("container securityContext");
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(
        sc.capabilities.as_ref().and_then(|c| c.drop.clone()),
        Some(vec!["ALL".to_string()])
    );
    let m = &c.volume_mounts.as_ref().expect("mounts")[0];
    assert_eq!(
        (m.mount_path.as_str(), m.read_only),
        ("/reports", Some(true))
    );
    let v = &spec.volumes.as_ref().expect("volumes")[0];
    let claim = v.persistent_volume_claim.as_ref().expect("claim");
    assert_eq!(
        (claim.claim_name.as_str(), claim.read_only),
        ("gpuconform-reports", Some(true))
    );
}

/// A tar stream from `(name, kind, body)` with the names written raw (the tar crate's builder
/// refuses `..` and absolute names, which is exactly what a hostile stream would hold).
fn archive(entries: &[(&str, tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, kind, body) in entries {
        let mut h = tar::Header::new_ustar();
        let raw = &mut h.as_old_mut().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(*kind);
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        out.extend_from_slice(h.as_bytes());
        out.extend_from_slice(body);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    out
}

#[test]
fn a_run_folder_is_written_whole() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = "20261203-0200-ab12";
    let data = archive(&[
        ("20261203-0200-ab12/", tar::EntryType::Directory, b""),
        (
            "20261203-0200-ab12/junit.xml",
            tar::EntryType::Regular,
            b"<testsuites/>",
        ),
        (
            "20261203-0200-ab12/diagnostics/",
            tar::EntryType::Directory,
            b"",
        ),
        (
            "20261203-0200-ab12/diagnostics/a.txt",
            tar::EntryType::Regular,
            b"abc",
        ),
    ]);
    let w = unpack(&data[..], run, tmp.path(), false).expect("unpack");
    assert_eq!((w.files, w.bytes), (2, 16));
    assert_eq!(
        std::fs::read_to_string(tmp.path().join(run).join("diagnostics/a.txt")).expect("file"),
        "abc"
    );
    // Nothing but the run folder is left beside it.
    let names: Vec<_> = std::fs::read_dir(tmp.path())
        .expect("dir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from(run)]);
    // A second copy is refused, then replaces it with --force.
    assert!(matches!(
        unpack(&data[..], run, tmp.path(), false),
        Err(UnpackError::Exists(_))
    ));
    let fewer = archive(&[(
        "20261203-0200-ab12/summary.md",
        tar::EntryType::Regular,
        b"ok",
    )]);
    let w = unpack(&fewer[..], run, tmp.path(), true).expect("force");
    assert_eq!(w.files, 1);
    assert!(!tmp.path().join(run).join("junit.xml").exists());
}

#[test]
fn hostile_entries_are_refused_and_leave_nothing() {
    let run = "r1";
    let table: &[(&str, tar::EntryType, &str)] = &[
        ("r1/../../etc/passwd", tar::EntryType::Regular, "`..`"),
        ("/etc/passwd", tar::EntryType::Regular, "absolute"),
        ("other/junit.xml", tar::EntryType::Regular, "not in the run"),
        ("r1/link", tar::EntryType::Symlink, "links"),
        ("r1/dev", tar::EntryType::Char, "devices"),
    ];
    for (name, kind, why) in table {
        let tmp = tempfile::tempdir().expect("tempdir");
        let data = archive(&[
            ("r1/ok.txt", tar::EntryType::Regular, b"fine"),
            (name, *kind, b""),
        ]);
        let err = unpack(&data[..], run, tmp.path(), false).expect_err(name);
        let text = err.to_string();
        assert!(
            text.contains(name.trim_start_matches('/')) && text.contains(why),
            "{name}: {text}"
        );
        assert_eq!(
            std::fs::read_dir(tmp.path()).expect("dir").count(),
            0,
            "{name}: something was left"
        );
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    assert!(matches!(
        unpack(&archive(&[])[..], run, tmp.path(), false),
        Err(UnpackError::Empty(_))
    ));
}
