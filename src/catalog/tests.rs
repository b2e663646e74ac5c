//! The embedded catalog's cross-references, merging `--catalog` files, and the lookups.

use std::path::Path;

use super::*;

#[test]
fn embedded_catalog_loads_and_cross_references() {
    let catalog = Catalog::embedded().expect("embedded catalog");
    for required in [
        "m5.xlarge",
        "m5.2xlarge",
        "p3.2xlarge",
        "g4dn.xlarge",
        "p4d.24xlarge",
        "p5.48xlarge",
    ] {
        assert!(catalog.instance(required).is_some(), "{required} missing");
    }
    assert_eq!(catalog.files.len(), EMBEDDED.len());
}

#[test]
fn p4d_has_eight_mig_capable_a100s() {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let p4d = catalog.instance("p4d.24xlarge").expect("p4d");
    assert_eq!(p4d.cloud, Cloud::Aws);
    let (model, count) = catalog.gpu_of(p4d).expect("p4d has gpus");
    assert_eq!(count, 8);
    assert!(model.mig_capable());
    assert_eq!(model.compute_capability_parts(), Some((8, 0)));
}

#[test]
fn suggestions_stay_in_the_family() {
    let catalog = Catalog::embedded().expect("embedded catalog");
    let s = catalog.suggest("p3.4xlarge");
    assert!(s.contains(&"p3.2xlarge"), "{s:?}");
}

#[test]
fn gfd_machine_per_cloud() {
    let t = |cloud, hypervisor| InstanceType {
        vcpus: 1,
        memory_mib: 1,
        hypervisor,
        gpu: None,
        accelerator: None,
        source: String::new(),
        cloud,
        file: PathBuf::new(),
    };
    let rows = [
        (
            t(Cloud::Aws, Some(Hypervisor::Nitro)),
            "g5.xlarge",
            "g5.xlarge",
        ),
        (
            t(Cloud::Aws, Some(Hypervisor::Xen)),
            "p3.2xlarge",
            "HVM-domU",
        ),
        (
            t(Cloud::Gke, None),
            "a3-highgpu-8g",
            "Google-Compute-Engine",
        ),
        (
            t(Cloud::Azure, None),
            "Standard_ND96isr_H100_v5",
            "Virtual-Machine",
        ),
        (t(Cloud::OnPrem, None), "DGX A100", "DGX-A100"),
        (
            t(Cloud::OnPrem, None),
            "DGXA100 920-23687-2531-001",
            "DGXA100-920-23687-2531-001",
        ),
        // QEMU's name as older GFD could not publish it (NFD rejected the value).
        (
            t(Cloud::OnPrem, None),
            "Standard PC (Q35 + ICH9, 2009)",
            "Standard-PC-Q35-ICH9-2009",
        ),
    ];
    for (ty, name, want) in rows {
        assert_eq!(ty.gfd_machine(name), want, "{name}");
    }
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write");
    p
}

#[test]
fn extension_files_add_and_replace_entries_and_replace_mode_starts_over() {
    let dir = tempfile::tempdir().expect("tmp");
    let ext = write(
        dir.path(),
        "ext.yaml",
        "version: 1\ninstanceTypes:\n  aws:\n    p3.2xlarge:\n      vcpus: 8\n      memoryMiB: 1024\n      hypervisor: xen\n      gpu: {model: T4, count: 2}\n      source: test\n  gke:\n    my-gpu-1:\n      vcpus: 4\n      memoryMiB: 2048\n      gpu: {model: L4, count: 1}\n      source: test\n",
    );
    let c = Catalog::resolve(std::slice::from_ref(&ext)).expect("extends");
    let p3 = c.instance("p3.2xlarge").expect("p3");
    assert_eq!(
        p3.gpu.as_ref().map(|g| (g.model.as_str(), g.count)),
        Some(("T4", 2))
    );
    assert_eq!(p3.file, ext);
    assert_eq!(c.instance("my-gpu-1").map(|t| t.cloud), Some(Cloud::Gke));
    assert!(
        c.instance("p4d.24xlarge").is_some(),
        "extend keeps the rest"
    );

    let repl = write(
        dir.path(),
        "repl.yaml",
        "version: 1\nmode: replace\ngpuModels:\n  X1:\n    product: NVIDIA-X1\n    memoryMiB: 1000\n    computeCapability: \"9.0\"\n    family: hopper\n    source: test\ninstanceTypes:\n  azure:\n    Standard_X1:\n      vcpus: 4\n      memoryMiB: 2048\n      gpu: {model: X1, count: 1}\n      source: test\n",
    );
    let c = Catalog::resolve(&[repl]).expect("replaces");
    assert_eq!(c.gpu_models.keys().collect::<Vec<_>>(), ["X1"]);
    assert_eq!(c.instance_types.keys().collect::<Vec<_>>(), ["Standard_X1"]);
}

#[test]
fn bad_entries_name_their_file() {
    let dir = tempfile::tempdir().expect("tmp");
    let rows = [
        (
            "instanceTypes:\n  aws:\n    x.large:\n      vcpus: 2\n      memoryMiB: 1024\n      hypervisor: nitro\n      gpu: {model: nope, count: 1}\n      source: test\n",
            "unknown gpu model `nope` (known: ",
        ),
        (
            "instanceTypes:\n  aws:\n    x.large:\n      vcpus: 2\n      memoryMiB: 1024\n      source: test\n",
            "needs `hypervisor: nitro` or `xen`",
        ),
        (
            "instanceTypes:\n  gke:\n    x-1:\n      vcpus: 2\n      memoryMiB: 1024\n      hypervisor: nitro\n      source: test\n",
            "`hypervisor` is only for aws types",
        ),
        (
            "gpuModels:\n  Y:\n    product: Tesla-T4\n    memoryMiB: 15360\n    computeCapability: \"7.5\"\n    family: turing\n    source: test\n",
            "product label `Tesla-T4` is given for gpu models",
        ),
        (
            "gpuModels:\n  Y:\n    product: Y\n    memoryMiB: 100\n    memoryRangeMiB: [200, 300]\n    computeCapability: \"7.5\"\n    family: turing\n    source: test\n",
            "must contain memoryMiB 100",
        ),
        (
            "gpuModels:\n  Y:\n    product: Y\n    memoryMiB: 100\n    pciDeviceIds: [\"1eb8\"]\n    computeCapability: \"7.5\"\n    family: turing\n    source: test\n",
            "PCI device ID `1eb8`",
        ),
    ];
    for (i, (body, want)) in rows.into_iter().enumerate() {
        let f = write(
            dir.path(),
            &format!("bad{i}.yaml"),
            &format!("version: 1\n{body}"),
        );
        let err = Catalog::resolve(std::slice::from_ref(&f)).expect_err(want);
        assert_eq!(err.file, f, "{err}");
        assert!(err.message.contains(want), "{err}");
    }
}

#[test]
fn every_model_spelling_leads_back_to_its_model() {
    let c = Catalog::embedded().expect("catalog");
    for (key, model) in &c.gpu_models {
        for p in std::iter::once(&model.product).chain(&model.product_aliases) {
            assert_eq!(
                c.model_by_product(p).map(|(k, _)| k),
                Some(key.as_str()),
                "{p}"
            );
        }
    }
}
