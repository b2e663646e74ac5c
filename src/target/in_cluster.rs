//! The in-cluster configuration of a pod (the CronJob of `charts/gpuconform`): the API server
//! from `KUBERNETES_SERVICE_HOST`/`_PORT`, the ServiceAccount's token file (re-read as the
//! kubelet rotates it) and CA bundle, handed to kube, helm and kubectl alike as a kubeconfig
//! that points at those files. client-go and kube read the same files at a fixed place; this
//! reads them from [`dir`], which `GPUCONFORM_SERVICEACCOUNT_DIR` may move, so the path is
//! exercised against a real API server outside a pod (`tests/run.rs`).

use std::path::{Path, PathBuf};

use super::existing::ConnectError;

/// Where a pod's ServiceAccount files are mounted.
pub const DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// Moves [`DIR`] (a token projected elsewhere, tests).
pub const DIR_ENV: &str = "GPUCONFORM_SERVICEACCOUNT_DIR";

/// The folder to read.
pub fn dir() -> PathBuf {
    std::env::var_os(DIR_ENV)
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DIR))
}

/// Whether kubectl would use the in-cluster configuration: no `$KUBECONFIG`, no
/// `~/.kube/config`, and the service's host in the environment.
pub fn applies() -> bool {
    let set = |k: &str| std::env::var_os(k).is_some_and(|v| !v.is_empty());
    let home_config = std::env::var_os("HOME")
        .map(|h| Path::new(&h).join(".kube/config").is_file())
        .unwrap_or(false);
    set("KUBERNETES_SERVICE_HOST") && !set("KUBECONFIG") && !home_config
}

/// A kubeconfig for the in-cluster configuration: the API server from the environment, the CA
/// bundle and token files of `dir` by path (no secret is copied; the token file is re-read as
/// it rotates). helm and kubectl get it too, so they reach the same API server as the run
/// whatever their own in-cluster lookup would find. Written once per content under `cache`.
pub fn kubeconfig(dir: &Path, cache: &Path) -> Result<PathBuf, ConnectError> {
    let host = std::env::var("KUBERNETES_SERVICE_HOST").unwrap_or_default();
    let port = std::env::var("KUBERNETES_SERVICE_PORT").unwrap_or_else(|_| "443".into());
    // An IPv6 address goes in brackets in a URL.
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host
    };
    let read = |what: &'static str, name: &str| {
        let path = dir.join(name);
        std::fs::read(&path)
            .map(|b| (b, path.clone()))
            .map_err(|source| ConnectError::InCluster { what, path, source })
    };
    let (ca, ca_path) = read("read the CA bundle", "ca.crt")?;
    let certs = pem::parse_many(&ca)
        .map(|all| all.iter().filter(|p| p.tag() == "CERTIFICATE").count())
        .unwrap_or(0);
    if certs == 0 {
        return Err(ConnectError::InCluster {
            what: "find a PEM certificate in",
            path: ca_path,
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "no certificate"),
        });
    }
    let (_, token_path) = read("read the token", "token")?;
    let namespace = read("read the namespace", "namespace")
        .map(|(b, _)| String::from_utf8_lossy(&b).trim().to_string())
        .unwrap_or_else(|_| "default".into());
    let text = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "in-cluster", "cluster": {
            "server": format!("https://{host}:{port}"),
            "certificate-authority": ca_path.display().to_string(),
        }}],
        "users": [{"name": "serviceaccount", "user": {"tokenFile": token_path.display().to_string()}}],
        "contexts": [{"name": "in-cluster", "context": {
            "cluster": "in-cluster", "user": "serviceaccount", "namespace": namespace,
        }}],
        "current-context": "in-cluster",
    })
    .to_string();
    let name: u64 = text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    let path = cache.join(format!("{name:016x}.kubeconfig"));
    let write = || -> std::io::Result<()> {
        std::fs::create_dir_all(cache)?;
        let tmp = cache.join(format!(".{name:016x}.{}", std::process::id()));
        std::fs::write(&tmp, &text)?;
        std::fs::rename(&tmp, &path)
    };
    write().map_err(|source| ConnectError::InCluster {
        what: "write the in-cluster kubeconfig",
        path: path.clone(),
        source,
    })?;
    Ok(path)
}

/// Where [`kubeconfig`] writes: `$XDG_CACHE_HOME/gpuconform/in-cluster`.
pub fn cache_dir() -> PathBuf {
    crate::builtin::cache_root().join("in-cluster")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_files_are_named() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let cache = tmp.path().join("cache");
        let e = kubeconfig(tmp.path(), &cache).expect_err("no files");
        let text = crate::errors::chain(&e);
        assert!(
            text.contains("read the CA bundle") && text.contains("ca.crt"),
            "{text}"
        );
        std::fs::write(tmp.path().join("ca.crt"), "not pem").expect("write");
        let text = crate::errors::chain(&kubeconfig(tmp.path(), &cache).expect_err("no cert"));
        assert!(text.contains("ca.crt"), "{text}");
    }
}
