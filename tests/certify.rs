//! Tier 2: `gpuconform certify` end to end on the local cluster, and `gpuconform verify` on the
//! bundle it writes: a rehearsal with `--allow-simulated` verifies (folder and archive, signed),
//! one flipped byte in any file names that file, a wrong key fails, a PRODUCT.yaml driver that
//! differs names both values, the AI-conformance checklist keeps the upstream template and
//! points only at passed testcases; a run with a skipped testcase does not certify, and plans
//! that cannot certify are refused before anything starts.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::*;
use gpuconform::certify::{ai, scan, sums};

fn certify(reports: &Path, extra: &[&str]) -> Output {
    Command::new(bin())
        .args(["certify", "plans/certify.yaml", "--reports"])
        .arg(reports)
        .args(extra)
        .current_dir(root())
        .env("GPUCONFORM_TOOLS", tools_dir())
        .env_remove("KUBECONFIG")
        .output()
        .expect("run gpuconform certify")
}

fn verify(bundle: &Path, key: Option<&Path>) -> Output {
    let mut cmd = Command::new(bin());
    cmd.arg("verify").arg(bundle);
    if let Some(k) = key {
        cmd.arg("--key").arg(k);
    }
    cmd.output().expect("run gpuconform verify")
}

/// An ed25519 key pair written by OpenSSL (private, public).
fn keys(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    let (key, public) = (
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.pub.pem")),
    );
    let gen_ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .expect("openssl (the certification tests need it)")
        .success();
    let pub_ok = Command::new("openssl")
        .args(["pkey", "-pubout", "-in"])
        .arg(&key)
        .arg("-out")
        .arg(&public)
        .status()
        .expect("openssl")
        .success();
    assert!(gen_ok && pub_ok, "openssl could not make a key pair");
    (key, public)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        let (s, d) = (e.path(), to.join(e.file_name()));
        if s.is_dir() {
            copy_dir(&s, &d);
        } else {
            std::fs::copy(&s, &d).expect("copy");
        }
    }
}

fn yaml(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).expect("read yaml");
    serde_saphyr::from_str(&text).expect("parses as YAML")
}

#[test]
fn a_simulated_rehearsal_verifies_and_every_tampering_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (key, public) = keys(tmp.path(), "signer");
    let (_, other) = keys(tmp.path(), "other");
    let reports = tmp.path().join("reports");
    let out = certify(
        &reports,
        &[
            "--allow-simulated",
            "--sign-key",
            key.to_str().expect("utf-8 path"),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        text(&out).contains("NOT A CERTIFICATION: simulated: every rule held"),
        "{}",
        text(&out)
    );
    let run = run_dir(&reports);
    let bundle = run.join("bundle");

    let ok = verify(&bundle, Some(&public));
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok));
    let wrong = verify(&bundle, Some(&other));
    assert_eq!(wrong.status.code(), Some(1), "{}", text(&wrong));
    assert!(text(&wrong).contains("SHA256SUMS.sig: the signature over SHA256SUMS does not verify"));

    // What the bundle holds.
    let sums_text = std::fs::read_to_string(bundle.join("SHA256SUMS")).expect("sums");
    for f in [
        "PRODUCT.yaml",
        "KubernetesAIConformance-1.35.yaml",
        "inventory.json",
        "junit.xml",
        "results.json",
        "e2e.log",
        "plan.yaml",
        "suites/gpu-stack.yaml",
        "suites/throughput.yaml",
        "bench/gpu-worker-1.json",
    ] {
        assert!(
            sums_text.contains(&format!("  {f}\n")),
            "{f} not in SHA256SUMS:\n{sums_text}"
        );
    }
    let product = yaml(&bundle.join("PRODUCT.yaml"));
    assert_eq!(product["simulated"], true);
    assert!(
        product["title"]
            .as_str()
            .is_some_and(|t| t.starts_with("NOT A CERTIFICATION: simulated"))
    );
    assert_eq!(product["driverVersion"], "580.95.05");
    assert_eq!(
        product["gpuModels"],
        serde_json::json!(["Tesla-V100-SXM2-16GB"])
    );
    let inv: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(bundle.join("inventory.json")).expect("inventory"),
    )
    .expect("inventory is JSON");
    let node = &inv["nodes"][0];
    assert_eq!(node["name"], "gpu-worker-1");
    assert_eq!(node["driver"], "580.95.05");
    assert_eq!(node["simulated"], true);
    assert!(
        node["expectation"]
            .as_str()
            .is_some_and(|e| e.starts_with("expect[0]")),
        "{node}"
    );
    assert!(
        node["gpus"][0]["uuid"]
            .as_str()
            .is_some_and(|u| u.starts_with("GPU-")),
        "{node}"
    );
    assert!(
        inv["operands"].as_array().is_some_and(|o| !o.is_empty()),
        "{inv}"
    );
    let log = std::fs::read_to_string(bundle.join("e2e.log")).expect("e2e.log");
    assert!(log.contains("PASS gpu-stack/labels/gpu-worker-1"), "{log}");
    assert!(log.contains("run finished in"), "{log}");

    // The checklist: the template's requirements, evidence only on passed testcases.
    let checklist = yaml(&bundle.join("KubernetesAIConformance-1.35.yaml"));
    let (_, template) = ai::template("v1.35").expect("template");
    let template: serde_json::Value = serde_saphyr::from_str(template).expect("template");
    assert_eq!(ai::requirements(&checklist), ai::requirements(&template));
    let junit = std::fs::read_to_string(bundle.join("junit.xml")).expect("junit");
    let drm = &checklist["spec"]["accelerators"][1];
    assert_eq!(
        (drm["id"].as_str(), drm["status"].as_str()),
        (Some("driver_runtime_management"), Some("Implemented"))
    );
    let evidence = drm["evidence"].as_array().expect("evidence");
    assert!(!evidence.is_empty());
    for e in evidence {
        let anchor = e
            .as_str()
            .and_then(|a| a.strip_prefix("file://junit.xml#"))
            .expect("anchor");
        let (suite, case) = anchor.split_once('/').expect("suite/case");
        assert!(
            junit.contains(&format!("<testcase name=\"{case}\" classname=\"{suite}\"")),
            "{anchor} is not a testcase of junit.xml"
        );
    }
    assert_eq!(
        checklist["spec"]["security"][0]["status"],
        "Not Implemented"
    );

    // The archive holds the same files.
    let unpacked = tmp.path().join("unpacked");
    std::fs::create_dir_all(&unpacked).expect("mkdir");
    let tar = Command::new("tar")
        .arg("-xzf")
        .arg(run.join("bundle.tar.gz"))
        .arg("-C")
        .arg(&unpacked)
        .status()
        .expect("tar");
    assert!(tar.success());
    let id = run
        .file_name()
        .expect("run id")
        .to_string_lossy()
        .to_string();
    let from_archive = verify(&unpacked.join(&id), Some(&public));
    assert_eq!(
        from_archive.status.code(),
        Some(0),
        "{}",
        text(&from_archive)
    );

    assert!(scan::tree(&bundle).is_empty());
    assert_no_credentials(&bundle, &[]);

    // One flipped byte in any file names that file.
    for f in [
        "PRODUCT.yaml",
        "inventory.json",
        "e2e.log",
        "junit.xml",
        "KubernetesAIConformance-1.35.yaml",
        "bench/gpu-worker-1.json",
        "suites/gpu-stack.yaml",
    ] {
        let copy = tmp.path().join(format!("flip-{}", f.replace('/', "-")));
        copy_dir(&bundle, &copy);
        let path = copy.join(f);
        let mut bytes = std::fs::read(&path).expect("read");
        let at = bytes.len() / 2;
        bytes[at] ^= 0x20;
        std::fs::write(&path, bytes).expect("write");
        let out = verify(&copy, Some(&public));
        assert_eq!(out.status.code(), Some(1), "{f}: {}", text(&out));
        assert!(
            text(&out).contains(&format!("{f}: SHA-256 is ")),
            "{f}: {}",
            text(&out)
        );
    }

    // A PRODUCT.yaml whose driver is not the inventory's names both values, even re-summed.
    let copy = tmp.path().join("driver");
    copy_dir(&bundle, &copy);
    let p = copy.join("PRODUCT.yaml");
    let edited = std::fs::read_to_string(&p).expect("read").replace(
        "driverVersion: \"580.95.05\"",
        "driverVersion: \"595.91.07\"",
    );
    std::fs::write(&p, edited).expect("write");
    std::fs::remove_file(copy.join("SHA256SUMS.sig")).expect("unsign");
    std::fs::write(copy.join("SHA256SUMS"), sums::render(&copy).expect("sums")).expect("sums");
    let out = verify(&copy, None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("inventory.json nodes[0] (gpu-worker-1) driver: \"580.95.05\", but PRODUCT.yaml driverVersion is \"595.91.07\""),
        "{}",
        text(&out)
    );
}

#[test]
fn a_skip_fails_certification_and_plans_that_cannot_certify_are_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let reports = tmp.path().join("reports");
    // Refused before anything starts: no cluster, no report folder.
    let out = certify(&reports, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("target.local: a local cluster's GPUs are simulated"),
        "{}",
        text(&out)
    );
    let out = gpuconform(&["certify", "plans/local.yaml", "--allow-simulated"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    for want in [
        "certification: missing",
        "expect: every GPU node needs an explicit expectation",
    ] {
        assert!(text(&out).contains(want), "{want}: {}", text(&out));
    }
    let junk = tmp.path().join("junk.pem");
    std::fs::write(&junk, "not a key\n").expect("write");
    let out = certify(
        &reports,
        &[
            "--allow-simulated",
            "--sign-key",
            junk.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("--sign-key"), "{}", text(&out));
    assert!(!reports.exists(), "a refused certify wrote reports");

    // One GPU the device plugin marks unhealthy: allocatable fails, the workload is skipped.
    let out = certify(
        &reports,
        &[
            "--allow-simulated",
            "--set",
            "target.local.fixture=fixtures/clusters/faults/allocatable-zero.yaml",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("not certified: gpu-stack/workload/gpu-worker-1 was skipped"),
        "{}",
        text(&out)
    );
    let run = run_dir(&reports);
    let r = results(&run);
    let failed = r["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c["name"] == "allocatable/gpu-worker-1")
        .expect("allocatable case");
    assert_eq!(failed["status"], "failed");
    assert_eq!(failed["layer"], "device-plugin");
    let out = verify(&run.join("bundle"), None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("workload/gpu-worker-1 was skipped"),
        "{}",
        text(&out)
    );
}
