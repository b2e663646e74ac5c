//! The shipped files built into the binary, so an installed `gpuconform` runs from any directory:
//! the suites (a file of the same name in the suite folder overrides one), and the default plan
//! with the two things it points at (the seed cluster fixture and the fixture operator chart).
//!
//! helm and the fixture loader read files, so the default plan's tree is written out once per
//! content into the cache (`$XDG_CACHE_HOME/gpuconform/builtin/<hash>`) with its relative
//! `fixtures/` paths made absolute; a tree already there with the same hash is reused as it is.

use std::io;
use std::path::{Path, PathBuf};

/// The shipped suites by name (`suites/<name>.yaml`); `tests` check this against the folder.
pub const SUITES: &[(&str, &str)] = &[
    ("dra", include_str!("../suites/dra.yaml")),
    ("gpu-stack", include_str!("../suites/gpu-stack.yaml")),
    (
        "secure-access",
        include_str!("../suites/secure-access.yaml"),
    ),
    ("teardown", include_str!("../suites/teardown.yaml")),
    ("throughput", include_str!("../suites/throughput.yaml")),
];

/// The default plan's path in a clone of the repository, and so in the written-out tree.
pub const DEFAULT_PLAN: &str = "plans/local.yaml";

/// The default plan and every file it needs, by `/`-separated path from the repository root.
pub const DEFAULT_TREE: &[(&str, &str)] = &[
    (DEFAULT_PLAN, include_str!("../plans/local.yaml")),
    (
        "fixtures/clusters/seed.yaml",
        include_str!("../fixtures/clusters/seed.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/Chart.yaml",
        include_str!("../fixtures/charts/gpu-operator/Chart.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/values.yaml",
        include_str!("../fixtures/charts/gpu-operator/values.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/crds/nvidia.com_clusterpolicies.yaml",
        include_str!("../fixtures/charts/gpu-operator/crds/nvidia.com_clusterpolicies.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/_helpers.tpl",
        include_str!("../fixtures/charts/gpu-operator/templates/_helpers.tpl"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/cleanup_crd.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/cleanup_crd.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/clusterpolicy.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/clusterpolicy.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/device-plugin-config.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/device-plugin-config.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/dra-driver.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/dra-driver.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/nfd.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/nfd.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/operands.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/operands.yaml"),
    ),
    (
        "fixtures/charts/gpu-operator/templates/operator.yaml",
        include_str!("../fixtures/charts/gpu-operator/templates/operator.yaml"),
    ),
];

/// The built-in suite `name`.
pub fn suite(name: &str) -> Option<&'static str> {
    SUITES.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// The name a built-in file goes by in messages and reports: `builtin:suites/gpu-stack.yaml`.
pub fn label(rel: &str) -> PathBuf {
    PathBuf::from(format!("builtin:{rel}"))
}

/// gpuconform's cache root: `$XDG_CACHE_HOME/gpuconform`, else `~/.cache/gpuconform`, else
/// `.cache/gpuconform` (the tool cache, the default plan's tree and the in-cluster kubeconfig
/// live under it).
pub fn cache_root() -> PathBuf {
    std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from(".cache"))
        .join("gpuconform")
}

/// The cache folder the default plan's tree is written into.
pub fn cache_dir() -> PathBuf {
    cache_root().join("builtin")
}

/// The default plan's text as written out under `root`: its `fixtures/` paths point into `root`.
fn rooted(text: &str, root: &Path) -> String {
    text.replace(
        "fixtures/",
        &format!(
            "{}/fixtures/",
            root.display().to_string().trim_end_matches('/')
        ),
    )
}

/// Writes the default plan's tree under `cache` (once per content) and returns the plan's path.
pub fn default_plan(cache: &Path) -> io::Result<PathBuf> {
    let mut all = String::new();
    for (rel, text) in DEFAULT_TREE {
        all.push_str(rel);
        all.push('\0');
        all.push_str(text);
        all.push('\0');
    }
    let hash: String = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, all.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = cache.join(&hash[..16]);
    let plan = root.join(DEFAULT_PLAN);
    if plan.is_file() {
        return Ok(plan);
    }
    // Written beside and renamed into place, so a concurrent run never sees half a tree.
    std::fs::create_dir_all(cache)?;
    let tmp = tempdir_in(cache)?;
    for (rel, text) in DEFAULT_TREE {
        let path = tmp.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let body = if *rel == DEFAULT_PLAN {
            rooted(text, &root)
        } else {
            (*text).to_string()
        };
        std::fs::write(&path, body)?;
    }
    match std::fs::rename(&tmp, &root) {
        Ok(()) => Ok(plan),
        // Another run put the same tree there first.
        Err(_) if plan.is_file() => {
            let _ = std::fs::remove_dir_all(&tmp);
            Ok(plan)
        }
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// A fresh folder in `dir` named after this process and the time.
fn tempdir_in(dir: &Path) -> io::Result<PathBuf> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let p = dir.join(format!(".tmp-{}-{nanos}", std::process::id()));
    std::fs::create_dir(&p)?;
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo() -> &'static Path {
        Path::new(env!("CARGO_MANIFEST_DIR"))
    }

    /// A suite added to `suites/` and not here would be missing from installed binaries.
    #[test]
    fn every_shipped_suite_is_built_in() {
        let mut on_disk: Vec<String> = std::fs::read_dir(repo().join("suites"))
            .expect("suites")
            .flatten()
            .filter_map(|e| {
                let p = e.path();
                (p.extension().is_some_and(|x| x == "yaml"))
                    .then(|| p.file_stem().map(|s| s.to_string_lossy().to_string()))
                    .flatten()
            })
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = SUITES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(built_in, on_disk);
    }

    /// A chart file added to the fixture chart and not here would break the built-in plan.
    #[test]
    fn the_default_tree_holds_the_whole_fixture_chart() {
        let chart = repo().join("fixtures/charts/gpu-operator");
        let mut stack = vec![chart.clone()];
        let mut files = Vec::new();
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).expect("chart").flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(repo()).expect("in repo");
                    files.push(rel.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        for f in &files {
            assert!(
                DEFAULT_TREE.iter().any(|(rel, _)| rel == f),
                "{f} is not in DEFAULT_TREE"
            );
        }
        assert!(files.len() >= 5, "{files:?}");
    }

    #[test]
    fn the_default_plan_is_written_once_and_points_into_its_tree() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let plan = default_plan(tmp.path()).expect("write");
        let text = std::fs::read_to_string(&plan).expect("plan");
        let root = plan
            .parent()
            .and_then(Path::parent)
            .expect("plans/ under root");
        assert!(
            text.contains(&format!("{}/fixtures/clusters/seed.yaml", root.display())),
            "{text}"
        );
        assert!(
            root.join("fixtures/charts/gpu-operator/Chart.yaml")
                .is_file()
        );
        // Same content, same tree; nothing left from the write.
        assert_eq!(default_plan(tmp.path()).expect("again"), plan);
        let entries: Vec<_> = std::fs::read_dir(tmp.path()).expect("cache").collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
    }
}
