//! The certification bundle: a folder beside the run's reports (`reports/<run-id>/bundle/`) and
//! the same as `bundle.tar.gz`, self-contained for a reviewer:
//!
//! ```text
//! PRODUCT.yaml                         who certifies what, and the versions tested
//! KubernetesAIConformance-1.35.yaml    the CNCF checklist, filled in from the testcases
//! inventory.json                       GPU nodes (models, UUIDs, driver, CUDA, MIG), operand images
//! junit.xml  results.json  summary.md  e2e.log  report.html  bench.json
//! bench/<node>.json                    each bench pod's document
//! diagnostics/…                        what was collected for each failure
//! plan.yaml  suites/<name>.yaml        the plan and suites as run
//! operator-values.yaml                 the values helm installed the operator with
//! SHA256SUMS  [SHA256SUMS.sig]         every file's hash; the ed25519 signature over it
//! ```
//!
//! Nothing is sealed that the credential scan finds a secret in.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use super::{ai, profile, scan, sign, sums};
use crate::plan::Plan;
use crate::report::RunRecord;
use crate::suite::Suite;

/// The bundle folder's name in the run folder.
pub const DIR: &str = "bundle";
/// The archive's name in the run folder.
pub const ARCHIVE: &str = "bundle.tar.gz";
/// The title word of a bundle from simulated GPUs.
pub const NOT_A_CERTIFICATION: &str = "NOT A CERTIFICATION: simulated";

/// The run's report files a bundle carries, when the run wrote them.
const FROM_RUN: &[&str] = &[
    "junit.xml",
    "results.json",
    "summary.md",
    "report.html",
    "bench.json",
    "inventory.json",
    crate::report::log::FILE,
    "compare.md",
    "operator-values.yaml",
];
/// The run's folders a bundle carries.
const DIRS_FROM_RUN: &[&str] = &["bench", "diagnostics"];

/// Why a bundle could not be written or sealed.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be written or copied.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The signing key is unusable.
    #[error("--sign-key {0}")]
    Key(#[from] sign::KeyError),
    /// The scan found credentials; the bundle is left unsealed for inspection.
    #[error("the bundle is not sealed: {}", .0.join("; "))]
    Credentials(Vec<String>),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Sealed {
    /// The folder.
    pub dir: PathBuf,
    /// The archive.
    pub archive: PathBuf,
    /// The AI-conformance checklist's file name, or why there is none.
    pub checklist: Result<String, String>,
}

fn copy_tree(from: &Path, to: &Path) -> Result<(), BundleError> {
    std::fs::create_dir_all(to).map_err(io(to))?;
    for e in std::fs::read_dir(from).map_err(io(from))?.flatten() {
        let (src, dst) = (e.path(), to.join(e.file_name()));
        if src.is_dir() {
            copy_tree(&src, &dst)?;
        } else if src.is_file() {
            std::fs::copy(&src, &dst).map_err(io(&src))?;
        }
    }
    Ok(())
}

/// A YAML line `key: value` with the value as a JSON scalar (valid YAML).
fn kv(key: &str, v: impl serde::Serialize) -> String {
    format!(
        "{key}: {}\n",
        serde_json::to_string(&v).unwrap_or_else(|_| "null".into())
    )
}

/// `PRODUCT.yaml`.
pub fn product(plan: &Plan, record: &RunRecord, simulated: bool) -> String {
    // The profile requires the section; without it the fields are empty and verify says so.
    let c = plan.certification.clone().unwrap_or_default();
    let title = format!(
        "{}{} {}: gpuconform GPU stack certification",
        if simulated {
            format!("{NOT_A_CERTIFICATION}: ")
        } else {
            String::new()
        },
        c.platform_name,
        c.platform_version
    );
    let mut models: Vec<String> = record
        .inventory
        .iter()
        .flat_map(|i| &i.nodes)
        .filter_map(|n| n.gpu_product.clone())
        .collect();
    models.sort();
    models.dedup();
    let mut s = String::from(
        "# A gpuconform certification bundle. `gpuconform verify` checks it (see docs/certification.md).\n",
    );
    s += &kv("title", &title);
    s += &kv("simulated", simulated);
    s += &kv("vendorName", &c.vendor_name);
    s += &kv("platformName", &c.platform_name);
    s += &kv("platformVersion", &c.platform_version);
    s += &kv("contactEmailAddress", &c.contact_email_address);
    for (k, v) in [
        ("websiteUrl", &c.website_url),
        ("repoUrl", &c.repo_url),
        ("documentationUrl", &c.documentation_url),
        ("description", &c.description),
    ] {
        if let Some(v) = v {
            s += &kv(k, v);
        }
    }
    s += &kv("kubernetesVersion", &record.kubernetes_version);
    s += &kv("gpuModels", &models);
    s += &kv("operatorChart", &record.operator_chart);
    s += &kv("operatorChartVersion", &record.operator_chart_version);
    s += &kv("driverVersion", &record.driver_version);
    s += &kv("runId", &record.run_id);
    s += &kv("startedAt", &record.started_at);
    s += &kv("gpuconformVersion", env!("CARGO_PKG_VERSION"));
    s
}

/// The checklist's `metadata` from the plan's `certification:` section.
fn metadata(plan: &Plan, simulated: bool) -> ai::Metadata {
    let Some(c) = &plan.certification else {
        return ai::Metadata::default();
    };
    let mut description = c.description.clone().unwrap_or_default();
    if simulated {
        description = format!("{NOT_A_CERTIFICATION} (GPU simulator). {description}")
            .trim_end()
            .to_string();
    }
    let mut fields = vec![
        ("vendorName".to_string(), c.vendor_name.clone()),
        ("platformName".into(), c.platform_name.clone()),
        ("platformVersion".into(), c.platform_version.clone()),
        (
            "contactEmailAddress".into(),
            c.contact_email_address.clone(),
        ),
        ("description".into(), description),
    ];
    for (k, v) in [
        ("websiteUrl", &c.website_url),
        ("repoUrl", &c.repo_url),
        ("documentationUrl", &c.documentation_url),
    ] {
        if let Some(v) = v {
            fields.push((k.into(), v.clone()));
        }
    }
    ai::Metadata { fields }
}

/// Writes the bundle of the finished run in `run_dir`, seals it (sums, signature with
/// `sign_key`) and archives it.
pub fn write(
    run_dir: &Path,
    record: &RunRecord,
    plan: &Plan,
    suites: &[Suite],
    sign_key: Option<&Path>,
) -> Result<Sealed, BundleError> {
    let dir = run_dir.join(DIR);
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(io(&dir))?;
    }
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for f in FROM_RUN {
        let src = run_dir.join(f);
        if src.is_file() {
            std::fs::copy(&src, dir.join(f)).map_err(io(&src))?;
        }
    }
    for d in DIRS_FROM_RUN {
        let src = run_dir.join(d);
        if src.is_dir() {
            copy_tree(&src, &dir.join(d))?;
        }
    }
    let write = |name: &str, text: &str| {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent).map_err(io(parent))?;
        }
        std::fs::write(&p, text).map_err(io(&p))
    };
    write("plan.yaml", &plan.source)?;
    for s in suites {
        let text = std::fs::read_to_string(&s.file).map_err(io(&s.file))?;
        write(&format!("suites/{}.yaml", s.name), &text)?;
    }
    let simulated = profile::simulated(record);
    write("PRODUCT.yaml", &product(plan, record, simulated))?;
    let checklist = ai::template(&record.kubernetes_version).map(|(v, t)| {
        let name = ai::file_name(v);
        let text = ai::fill(
            t,
            &metadata(plan, simulated),
            &record.cases,
            record.inventory.as_ref(),
        );
        (name, text)
    });
    let checklist = match checklist {
        Ok((name, text)) => {
            write(&name, &text)?;
            Ok(name)
        }
        Err(e) => Err(e),
    };
    let found = scan::tree(&dir);
    if !found.is_empty() {
        return Err(BundleError::Credentials(found));
    }
    let text = sums::render(&dir).map_err(io(&dir))?;
    write(sums::SUMS, &text)?;
    if let Some(key) = sign_key {
        let sig = sign::sign(key, text.as_bytes())?;
        let p = dir.join(sums::SIG);
        std::fs::write(&p, sig).map_err(io(&p))?;
    }
    let archive = run_dir.join(ARCHIVE);
    archive_dir(&dir, &record.run_id, &archive)?;
    Ok(Sealed {
        dir,
        archive,
        checklist,
    })
}

/// `dir` as a gzipped tar with every file under `<prefix>/`, in sorted order, with fixed
/// owners and times so the same bundle gives the same archive.
pub fn archive_dir(dir: &Path, prefix: &str, to: &Path) -> Result<(), BundleError> {
    let file = std::fs::File::create(to).map_err(io(to))?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    let mut names = sums::files(dir).map_err(io(dir))?;
    for extra in [sums::SUMS, sums::SIG] {
        if dir.join(extra).is_file() {
            names.push(extra.to_string());
        }
    }
    names.sort();
    for name in names {
        let path = dir.join(&name);
        let bytes = std::fs::read(&path).map_err(io(&path))?;
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        header.set_cksum();
        tar.append_data(&mut header, format!("{prefix}/{name}"), bytes.as_slice())
            .map_err(io(&path))?;
    }
    let gz = tar.into_inner().map_err(io(to))?;
    let mut file = gz.finish().map_err(io(to))?;
    file.flush().map_err(io(to))
}
