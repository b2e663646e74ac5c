//! `gpuconform-bench` without a GPU (tier 1/2): the no-driver path is a documented error, not a
//! panic; the kernels compile to machine code for every architecture of the catalog with the
//! bench image's NVRTC (12.4, from NVIDIA's wheel on PyPI);
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
    assert!(err.contains("error: cannot load libcuda.so"), "{err}");
    assert!(
        err.contains("libnvrtc.so.12") && err.contains("libcublas.so.12"),
        "{err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    // The document still prints: no GPU, and why.
    let doc = gpuconform::bench::BenchReport::parse(&String::from_utf8_lossy(&out.stdout))
        .expect("a document");
    assert!(doc.gpus.is_empty());
    assert!(doc.errors[0].contains("libcuda.so"), "{:?}", doc.errors);
    assert_eq!(doc.exit_code(), 3);
    // With NVRTC there but no driver, only the driver (and cuBLAS) are named missing.
    let out = Command::new(bench_bin())
        .env("LD_LIBRARY_PATH", nvrtc_dir())
        .output()
        .expect("run bench");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(!err.contains("libnvrtc"), "{err}");
}

/// Every compute capability in the catalog, as `sm_XX`.
fn catalog_archs() -> Vec<String> {
    let catalog = gpuconform::catalog::Catalog::embedded().expect("catalog");
    let mut archs: Vec<String> = catalog
        .gpu_models
        .values()
        .filter_map(|m| gpuconform::bench::cubin::arch_of(&m.compute_capability))
        .collect();
    archs.sort();
    archs.dedup();
    archs
}

#[test]
fn kernels_compile_to_machine_code_for_every_catalog_architecture() {
    let archs = catalog_archs();
    // K80 (sm_37) is past CUDA 12: its own run, which must fail with a reason.
    let (old, current): (Vec<_>, Vec<_>) = archs.iter().partition(|a| a.as_str() < "sm_50");
    assert!(current.len() >= 6, "{archs:?}");
    let mut cmd = Command::new(bench_bin());
    cmd.arg("compile");
    for a in &current {
        cmd.args(["--arch", a]);
    }
    let out = cmd
        .env("LD_LIBRARY_PATH", nvrtc_dir())
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    for a in &current {
        let sm = &a[3..];
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{a}:")))
            .unwrap_or_else(|| panic!("no line for {a}:\n{stdout}"));
        // The code object's own header says which SM it is for, and that every kernel is in it.
        assert!(
            line.contains(&format!("bytes of sm_{sm} machine code")),
            "{line}"
        );
        assert!(line.contains("CUDA ELF ABI"), "{line}");
        assert!(
            line.ends_with("kernels fill, copy4, triad4, fma8, count_bad"),
            "{line}"
        );
    }
    for a in old {
        let out = Command::new(bench_bin())
            .args(["compile", "--arch", a])
            .env("LD_LIBRARY_PATH", nvrtc_dir())
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(3), "{}", text(&out));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains(&format!("NVRTC 12.4 cannot build machine code for {a}")),
            "{err}"
        );
        // The range NVRTC itself reports is the one the image states.
        assert!(err.contains("(it builds sm_50…sm_90)"), "{err}");
    }
    // Without NVRTC: an error, not a panic.
    let out = Command::new(bench_bin())
        .args(["compile", "--arch", "sm_90"])
        .env("LD_LIBRARY_PATH", "")
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("NVRTC (libnvrtc.so.12) not found"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
}

/// The image, the test venv and the simulated documents name one CUDA: the image's base tag, its
/// labels, the NVRTC wheel the tests compile with, and what simulated runs report.
#[test]
fn the_image_states_the_range_the_tests_check() {
    let dockerfile =
        std::fs::read_to_string(root().join("images/bench/Dockerfile")).expect("Dockerfile");
    let requirements = std::fs::read_to_string(root().join("scripts/requirements-test.txt"))
        .expect("requirements");
    let cuda = gpuconform::bench::model::IMAGE_NVRTC;
    assert!(
        dockerfile.contains(&format!("FROM nvcr.io/nvidia/cuda:{cuda}.")),
        "{dockerfile}"
    );
    assert!(dockerfile.contains(&format!("io.gpuconform.bench.cuda=\"{cuda}\"")));
    assert!(dockerfile.contains("io.gpuconform.bench.architectures=\"sm_50-sm_90\""));
    assert!(
        requirements.contains(&format!("nvidia-cuda-nvrtc-cu12=={cuda}.")),
        "{requirements}"
    );
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
