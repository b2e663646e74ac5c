//! The tool cache: where `scripts/install-tools` put the binaries the local cluster runs.
//!
//! The cache lives outside the repository (default `~/.cache/gpuconform/tools`, or
//! `$GPUCONFORM_TOOLS`) so clean clones and CI reuse one build. `versions.env` in it records what
//! was built, and the local cluster reports those versions (e.g. as the nodes' kubelet version).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The binaries the local cluster needs.
pub const REQUIRED: [&str; 7] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kwok",
    "kubectl",
    "helm",
];

/// A tool is missing from the cache.
#[derive(Debug, thiserror::Error)]
#[error(
    "find `{name}` in the tool cache ({}): run `scripts/install-tools` first, or set GPUCONFORM_TOOLS",
    dir.display()
)]
pub struct MissingTool {
    /// The missing tool.
    pub name: String,
    /// The cache folder searched.
    pub dir: PathBuf,
}

/// The installed tools.
#[derive(Debug, Clone)]
pub struct Tools {
    /// Cache root.
    pub dir: PathBuf,
    versions: BTreeMap<String, String>,
}

impl Tools {
    /// The cache folder: `$GPUCONFORM_TOOLS`, else `$XDG_CACHE_HOME/gpuconform/tools`, else
    /// `~/.cache/gpuconform/tools`.
    pub fn default_dir() -> PathBuf {
        if let Some(dir) = std::env::var_os("GPUCONFORM_TOOLS") {
            return PathBuf::from(dir);
        }
        crate::builtin::cache_root().join("tools")
    }

    /// Opens the cache and checks every required binary is there.
    pub fn locate(dir: &Path) -> Result<Self, MissingTool> {
        for name in REQUIRED {
            if !dir.join("bin").join(name).is_file() {
                return Err(MissingTool {
                    name: name.to_string(),
                    dir: dir.to_path_buf(),
                });
            }
        }
        for sub in ["kwok/stages", "kwok/crds"] {
            if !dir.join(sub).is_dir() {
                return Err(MissingTool {
                    name: sub.to_string(),
                    dir: dir.to_path_buf(),
                });
            }
        }
        let versions = std::fs::read_to_string(dir.join("versions.env"))
            .map(|t| parse_versions(&t))
            .unwrap_or_default();
        Ok(Self {
            dir: dir.to_path_buf(),
            versions,
        })
    }

    /// Path of a binary.
    pub fn bin(&self, name: &str) -> PathBuf {
        self.dir.join("bin").join(name)
    }

    /// The kwok stage files copied from the kwok module.
    pub fn kwok_stage(&self, name: &str) -> PathBuf {
        self.dir.join("kwok/stages").join(format!("{name}.yaml"))
    }

    /// The kwok CRD manifests copied from the kwok module.
    pub fn kwok_crd(&self, name: &str) -> PathBuf {
        self.dir
            .join("kwok/crds")
            .join(format!("kwok.x-k8s.io_{name}.yaml"))
    }

    /// A version recorded by the install script (`KUBERNETES`, `ETCD`, `KWOK`, `HELM`, ...).
    pub fn version(&self, key: &str) -> Option<&str> {
        self.versions.get(key).map(String::as_str)
    }

    /// The Kubernetes version of the control-plane binaries, e.g. `v1.35.4`.
    pub fn kubernetes_version(&self) -> &str {
        self.version("KUBERNETES").unwrap_or("v0.0.0-unknown")
    }
}

fn parse_versions(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().trim_matches('"').to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_file_parses() {
        let v = parse_versions("KUBERNETES=v1.35.4\nETCD=\"v3.6.16\"\n# comment\n");
        assert_eq!(v.get("KUBERNETES").map(String::as_str), Some("v1.35.4"));
        assert_eq!(v.get("ETCD").map(String::as_str), Some("v3.6.16"));
    }

    #[test]
    fn missing_cache_names_the_tool_and_the_fix() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Tools::locate(dir.path()).expect_err("empty cache");
        assert_eq!(err.name, "etcd");
        assert!(err.to_string().contains("scripts/install-tools"));
    }
}
