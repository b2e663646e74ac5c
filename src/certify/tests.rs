//! A bundle made the way a run makes its reports (`report::write_all`), checked: the sums read
//! back by coreutils' `sha256sum -c`, the signature by OpenSSL; one flipped byte, an unlisted
//! file, a wrong key, a skipped testcase, a JUnit that disagrees, undeclared simulated results
//! and a driver that differs are each named.

use std::path::Path;
use std::process::Command;

use super::sums::{self, SIG, SUMS};
use super::{sign, verify::verify};
use crate::report::{Case, RunRecord, Status};

fn case(suite: &str, name: &str, status: Status) -> Case {
    Case {
        suite: suite.into(),
        step: name.into(),
        check: name.into(),
        name: name.into(),
        node: name.split_once('/').map(|(_, n)| n.to_string()),
        status,
        message: (status != Status::Passed).then(|| format!("{name} {status:?}")),
        detail: String::new(),
        warnings: Vec::new(),
        seconds: 0.5,
        diagnostics: Vec::new(),
        attempts: Vec::new(),
        layer: None,
    }
}

/// One real GPU node on driver 580.95.05 and its driver pod with the digest its kubelet reports.
fn inventory() -> crate::report::inventory::Inventory {
    use crate::report::inventory::{ContainerImage, Inventory, NodeInventory, OperandPod};
    Inventory {
        collected_at: "2026-12-02T00:00:00Z".into(),
        nodes: vec![NodeInventory {
            name: "gpu-1".into(),
            expectation: "expect[0] (plans/cert.yaml:20)".into(),
            gpu_product: Some("NVIDIA-H100-80GB-HBM3".into()),
            driver: Some("580.95.05".into()),
            ..NodeInventory::default()
        }],
        operands: vec![OperandPod {
            name: "nvidia-driver-daemonset-x".into(),
            node: Some("gpu-1".into()),
            phase: "Running".into(),
            containers: vec![ContainerImage {
                name: "nvidia-driver-ctr".into(),
                image: "nvcr.io/nvidia/driver:580.95.05".into(),
                image_id: "nvcr.io/nvidia/driver@sha256:0f1e".into(),
            }],
        }],
    }
}

/// A passing run's reports plus PRODUCT.yaml, summed; `cases` as given.
fn bundle(dir: &Path, cases: Vec<Case>, product: &str) {
    let record = RunRecord {
        run_id: "cert-1".into(),
        cluster: "vendor-lab".into(),
        driver_version: "580.95.05".into(),
        cases,
        finished: true,
        inventory: Some(inventory()),
        ..RunRecord::default()
    };
    crate::report::write_all(dir, &record).expect("write reports");
    std::fs::create_dir_all(dir.join("bench")).expect("bench dir");
    std::fs::write(dir.join("bench/gpu-1.json"), "{\"gpus\": []}\n").expect("bench doc");
    std::fs::write(dir.join("PRODUCT.yaml"), product).expect("PRODUCT.yaml");
    let text = sums::render(dir).expect("sums");
    std::fs::write(dir.join(SUMS), text).expect("SHA256SUMS");
}

const PRODUCT: &str = "vendor: Example\nproduct: GPU cloud\ndriverVersion: \"580.95.05\"\n";

fn passing() -> Vec<Case> {
    vec![
        case("gpu-stack", "labels/gpu-1", Status::Passed),
        case("gpu-stack", "allocatable/gpu-1", Status::Passed),
        case("teardown", "uninstall", Status::Passed),
    ]
}

#[test]
fn a_good_bundle_verifies_and_coreutils_agrees_with_its_sums() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bundle(tmp.path(), passing(), PRODUCT);
    let v = verify(tmp.path(), None);
    assert_eq!(v.problems, Vec::<String>::new());
    assert_eq!(v.notes, ["the bundle is not signed"]);
    let out = Command::new("sha256sum")
        .args(["-c", SUMS])
        .current_dir(tmp.path())
        .output()
        .expect("sha256sum");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let listed = String::from_utf8_lossy(&out.stdout);
    for f in [
        "junit.xml: OK",
        "results.json: OK",
        "bench/gpu-1.json: OK",
        "PRODUCT.yaml: OK",
    ] {
        assert!(listed.contains(f), "{listed}");
    }
}

#[test]
fn a_flipped_byte_or_an_unlisted_file_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bundle(tmp.path(), passing(), PRODUCT);
    let f = tmp.path().join("bench/gpu-1.json");
    let mut bytes = std::fs::read(&f).expect("read");
    bytes[3] ^= 0x01;
    std::fs::write(&f, bytes).expect("write");
    std::fs::write(tmp.path().join("extra.txt"), "x").expect("write");
    let v = verify(tmp.path(), None);
    assert_eq!(v.problems.len(), 2, "{:#?}", v.problems);
    assert!(
        v.problems[0].starts_with("bench/gpu-1.json: SHA-256 is ")
            && v.problems[0].ends_with("the file changed"),
        "{:#?}",
        v.problems
    );
    assert_eq!(v.problems[1], "extra.txt: not listed in SHA256SUMS");
}

/// An ed25519 key pair as OpenSSL writes it; `None` without an `openssl` binary.
fn openssl_keys(dir: &Path, name: &str) -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let key = dir.join(format!("{name}.pem"));
    let public = dir.join(format!("{name}.pub.pem"));
    let ok = Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&key)
        .status()
        .ok()?
        .success()
        && Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&key)
            .arg("-out")
            .arg(&public)
            .status()
            .ok()?
            .success();
    ok.then_some((key, public))
}

#[test]
#[expect(clippy::print_stderr, reason = "says why the OpenSSL half did not run")]
fn the_signature_verifies_with_the_signers_key_and_openssl_only() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    bundle(tmp.path(), passing(), PRODUCT);
    let Some((key, public)) = openssl_keys(keys.path(), "signer") else {
        eprintln!("no openssl binary: the interoperability half of this test did not run");
        return;
    };
    let (_, other) = openssl_keys(keys.path(), "other").expect("second key");
    let sums_bytes = std::fs::read(tmp.path().join(SUMS)).expect("sums");
    let sig = sign::sign(&key, &sums_bytes).expect("sign");
    assert_eq!(sig.len(), 64);
    std::fs::write(tmp.path().join(SIG), &sig).expect("write sig");
    assert_eq!(
        verify(tmp.path(), Some(&public)).problems,
        Vec::<String>::new()
    );
    // OpenSSL checks the same signature without gpuconform.
    let out = Command::new("openssl")
        .args(["pkeyutl", "-verify", "-pubin", "-inkey"])
        .arg(&public)
        .args(["-rawin", "-in"])
        .arg(tmp.path().join(SUMS))
        .arg("-sigfile")
        .arg(tmp.path().join(SIG))
        .output()
        .expect("openssl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = verify(tmp.path(), Some(&other));
    assert_eq!(v.problems.len(), 1, "{:#?}", v.problems);
    assert!(
        v.problems[0]
            .starts_with("SHA256SUMS.sig: the signature over SHA256SUMS does not verify with "),
        "{:#?}",
        v.problems
    );
    // A private key where the public one belongs is named, not a panic.
    let v = verify(tmp.path(), Some(&key));
    assert!(
        v.problems[0].contains("no `-----BEGIN PUBLIC KEY-----` block"),
        "{:#?}",
        v.problems
    );
}

#[test]
fn a_skip_undeclared_simulation_and_a_different_driver_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cases = passing();
    cases.push(case("throughput", "bench/gpu-1", Status::Skipped));
    let product = "vendor: Example\ndriverVersion: \"595.91.07\"\n";
    bundle(tmp.path(), cases, product);
    // A local cluster's results are the simulator's.
    let results = tmp.path().join("results.json");
    let text = std::fs::read_to_string(&results)
        .expect("results")
        .replace("\"cluster\": \"vendor-lab\"", "\"cluster\": \"local/seed\"");
    std::fs::write(&results, text).expect("write");
    std::fs::write(
        tmp.path().join(SUMS),
        sums::render(tmp.path()).expect("sums"),
    )
    .expect("sums");
    let v = verify(tmp.path(), None);
    assert_eq!(
        v.problems,
        [
            "results.json cases[3]: throughput/bench/gpu-1 was skipped (bench/gpu-1 Skipped); a certification runs every testcase",
            "PRODUCT.yaml simulated: the results come from the GPU simulator (a local cluster), but PRODUCT.yaml does not say `simulated: true`",
            "PRODUCT.yaml driverVersion: \"595.91.07\", but results.json driverVersion is \"580.95.05\"",
            "PRODUCT.yaml driverVersion: \"595.91.07\", but junit.xml property driver-version is \"580.95.05\"",
            "inventory.json nodes[0] (gpu-1) driver: \"580.95.05\", but PRODUCT.yaml driverVersion is \"595.91.07\"",
        ]
    );
}

#[test]
fn a_junit_that_disagrees_with_the_results_is_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    bundle(tmp.path(), passing(), PRODUCT);
    let junit = tmp.path().join("junit.xml");
    let text = std::fs::read_to_string(&junit).expect("junit");
    // One testcase of gpu-stack dropped from the XML.
    let start = text
        .find("<testcase name=\"allocatable/gpu-1\"")
        .expect("testcase");
    let rest = &text[start..];
    let open_end = rest.find('>').expect("tag end");
    let end = start
        + if rest[..open_end].ends_with('/') {
            open_end + 1
        } else {
            rest.find("</testcase>").expect("end") + "</testcase>".len()
        };
    let cut = format!("{}{}", &text[..start], &text[end..]);
    std::fs::write(&junit, cut).expect("write");
    std::fs::write(
        tmp.path().join(SUMS),
        sums::render(tmp.path()).expect("sums"),
    )
    .expect("sums");
    let v = verify(tmp.path(), None);
    assert_eq!(
        v.problems,
        [
            "junit.xml testsuite gpu-stack: 1 testcases, 0 failed, 0 errors, 0 skipped but results.json cases: 2 testcases, 0 failed, 0 errors, 0 skipped"
        ]
    );
}

#[test]
fn a_checklist_claiming_an_unpassed_testcase_a_changed_level_and_a_credential_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut cases = passing();
    cases.push(case("gpu-stack", "workload/gpu-1", Status::Failed));
    bundle(tmp.path(), cases, PRODUCT);
    let (_, template) = super::ai::template("v1.35.4").expect("template");
    let filled = super::ai::fill(template, &super::ai::Metadata::default(), &passing(), None);
    // The first requirement is dra_support: not implemented, no evidence.
    let text = filled
        .replacen("level: SHOULD", "level: MUST", 1)
        .replacen(
            "evidence: []",
            "evidence: [\"file://junit.xml#gpu-stack/workload/gpu-1\", \"file://junit.xml#gpu-stack/labels/gpu-1\"]",
            1,
        )
        .replacen("status: \"Not Implemented\"", "status: \"Done\"", 1);
    std::fs::write(tmp.path().join("KubernetesAIConformance-1.35.yaml"), text).expect("write");
    std::fs::create_dir_all(tmp.path().join("diagnostics/x")).expect("dir");
    std::fs::write(
        tmp.path().join("diagnostics/x/kubeconfig"),
        "users:\n- user:\n    client-key-data: LS0t\n",
    )
    .expect("write");
    std::fs::write(
        tmp.path().join(SUMS),
        sums::render(tmp.path()).expect("sums"),
    )
    .expect("sums");
    let v = verify(tmp.path(), None);
    let c = "KubernetesAIConformance-1.35.yaml";
    assert_eq!(
        v.problems,
        [
            format!("{c} spec: the requirements' ids, descriptions or levels differ from the upstream checklist for v1.35"),
            format!("{c} spec.accelerators[0] (dra_support) status: \"Done\" is not a checklist status"),
            format!("{c} spec.accelerators[0] (dra_support) evidence: file://junit.xml#gpu-stack/workload/gpu-1 names no passed testcase of junit.xml"),
            "diagnostics/x/kubeconfig line 3: a kubeconfig client key: a credential must not be in a bundle".to_string(),
        ]
    );
}
