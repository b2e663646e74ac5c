//! Writing kubeconfig files for clusters the harness builds (local, and later AWS/k3s).
//!
//! Certificates are embedded as base64 data so a kubeconfig is one self-contained file that
//! kubectl, helm and kube-rs read alike.

use base64::Engine;
use serde::Serialize;

/// One client identity on one cluster.
#[derive(Debug, Clone)]
pub struct Identity<'a> {
    /// Cluster and context name.
    pub cluster: &'a str,
    /// User name in the file.
    pub user: &'a str,
    /// API server URL.
    pub server: &'a str,
    /// CA certificate (PEM) the server's certificate chains to.
    pub ca_pem: &'a str,
    /// Client certificate (PEM).
    pub cert_pem: &'a str,
    /// Client key (PEM).
    pub key_pem: &'a str,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct File<'a> {
    api_version: &'static str,
    kind: &'static str,
    clusters: Vec<Named<ClusterEntry>>,
    users: Vec<Named<UserEntry>>,
    contexts: Vec<Named<ContextEntry<'a>>>,
    current_context: &'a str,
}

#[derive(Serialize)]
struct Named<T> {
    name: String,
    #[serde(flatten)]
    inner: T,
}

#[derive(Serialize)]
struct ClusterEntry {
    cluster: ClusterData,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct ClusterData {
    server: String,
    certificate_authority_data: String,
}

#[derive(Serialize)]
struct UserEntry {
    user: UserData,
}

#[derive(Serialize)]
#[serde(rename_all = "kebab-case")]
struct UserData {
    client_certificate_data: String,
    client_key_data: String,
}

#[derive(Serialize)]
struct ContextEntry<'a> {
    context: ContextData<'a>,
}

#[derive(Serialize)]
struct ContextData<'a> {
    cluster: &'a str,
    user: &'a str,
}

/// Renders a kubeconfig with one cluster, one user and one current context.
pub fn render(id: &Identity<'_>) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let file = File {
        api_version: "v1",
        kind: "Config",
        clusters: vec![Named {
            name: id.cluster.to_string(),
            inner: ClusterEntry {
                cluster: ClusterData {
                    server: id.server.to_string(),
                    certificate_authority_data: b64(id.ca_pem),
                },
            },
        }],
        users: vec![Named {
            name: id.user.to_string(),
            inner: UserEntry {
                user: UserData {
                    client_certificate_data: b64(id.cert_pem),
                    client_key_data: b64(id.key_pem),
                },
            },
        }],
        contexts: vec![Named {
            name: id.cluster.to_string(),
            inner: ContextEntry {
                context: ContextData {
                    cluster: id.cluster,
                    user: id.user,
                },
            },
        }],
        current_context: id.cluster,
    };
    // JSON is valid YAML and every kubeconfig reader accepts it; it also needs no escaping care.
    serde_json::to_string_pretty(&file).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kube_rs_reads_what_we_write() {
        let text = render(&Identity {
            cluster: "seed",
            user: "admin",
            server: "https://127.0.0.1:6443",
            ca_pem: "ca",
            cert_pem: "cert",
            key_pem: "key",
        });
        let kc = kube::config::Kubeconfig::from_yaml(&text).expect("parses");
        assert_eq!(kc.current_context.as_deref(), Some("seed"));
        let cluster = kc.clusters[0].cluster.as_ref().expect("cluster");
        assert_eq!(cluster.server.as_deref(), Some("https://127.0.0.1:6443"));
    }
}
