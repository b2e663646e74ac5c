//! `gpuconform-bench` without a GPU (tier 1/2): the no-driver path is a documented error, not a
//! panic; the kernels compile to PTX for Volta, Ampere and Hopper with a CUDA 12 NVRTC from PyPI;
//! the simulated document validates against `schemas/bench.schema.json` (Python jsonschema).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::*;

fn bench_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gpuconform-bench"))
}

fn venv_python() -> PathBuf {
    let p = tools_dir().join("venv/bin/python");
    assert!(
        p.is_file(),
        "no test venv at {}: run scripts/install-tools",
        p.display()
    );
    p
}

/// The NVRTC library folder inside the `nvidia-cuda-nvrtc-cu12` wheel.
fn nvrtc_dir() -> PathBuf {
    let out = Command::new(venv_python())
        .args(["-c", "import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], 'lib'))"])
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", text(&out));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

#[test]
fn no_driver_is_a_documented_error_not_a_panic() {
    if std::path::Path::new("/dev/nvidiactl").exists() {
        return; // A GPU machine: the driver is there.
    }
    let out = Command::new(bench_bin())
        .env("LD_LIBRARY_PATH", "")
        .output()
        .expect("run bench");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("error: no CUDA driver"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.stdout.is_empty(), "no document without measurements");
}

#[test]
fn kernels_compile_to_ptx_for_sm70_sm80_sm90() {
    let out = Command::new(bench_bin())
        .args([
            "ptx", "--arch", "sm_70", "--arch", "sm_80", "--arch", "sm_90",
        ])
        .env("LD_LIBRARY_PATH", nvrtc_dir())
        .output()
        .expect("run bench ptx");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for arch in ["sm_70", "sm_80", "sm_90"] {
        assert!(stdout.contains(&format!("{arch} ")), "{stdout}");
    }
    // Without NVRTC: an error, not a panic.
    let out = Command::new(bench_bin())
        .args(["ptx", "--arch", "sm_90"])
        .env("LD_LIBRARY_PATH", "")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn simulated_document_validates_against_the_schema() {
    let out = Command::new(bench_bin())
        .args([
            "--simulate",
            "A100-SXM4-40GB",
            "--gpus",
            "8",
            "--slow",
            "3=0.55",
            "--node",
            "gpu-worker-1",
            "--driver-version",
            "580.95.05",
        ])
        .output()
        .expect("run bench");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let doc = String::from_utf8_lossy(&out.stdout).to_string();
    let report = gpuconform::bench::BenchReport::parse(&doc).expect("parses");
    assert!(report.simulated);
    assert_eq!(report.gpus.len(), 8);
    assert_eq!(report.peers.len(), 56);
    assert!(String::from_utf8_lossy(&out.stderr).contains("SIMULATED"));
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("doc.json");
    std::fs::write(&file, &doc).expect("write");
    let script = "import json, sys, jsonschema\nschema = json.load(open(sys.argv[1]))\njsonschema.Draft202012Validator.check_schema(schema)\njsonschema.validate(json.load(open(sys.argv[2])), schema)\n";
    let check = Command::new(venv_python())
        .args(["-c", script])
        .arg(root().join("schemas/bench.schema.json"))
        .arg(&file)
        .output()
        .expect("python");
    assert!(
        check.status.success(),
        "schema validation failed:\n{}",
        text(&check)
    );
    // And a document that breaks the contract is rejected by the schema too.
    std::fs::write(&file, doc.replacen("\"GB/s\"", "\"MB/s\"", 1)).expect("write");
    let check = Command::new(venv_python())
        .args(["-c", script])
        .arg(root().join("schemas/bench.schema.json"))
        .arg(&file)
        .output()
        .expect("python");
    assert!(!check.status.success(), "a wrong unit passed the schema");
    // Unknown models are usage errors.
    let out = Command::new(bench_bin())
        .args(["--simulate", "B200"])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
}
