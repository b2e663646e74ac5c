//! Cloud-init user data for the k3s nodes, rendered from `templates/k3s-{server,agent}.sh`.
//!
//! The harness generates the cluster CA (the same way as for the local cluster) and a join token;
//! the server's user data carries the CA so the harness can issue its own admin certificate and
//! build the kubeconfig without ever logging in to a node.

use std::collections::BTreeMap;

/// The server template.
pub const SERVER: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/k3s-server.sh"
));
/// The agent template.
pub const AGENT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/templates/k3s-agent.sh"
));

/// Values substituted into a template.
#[derive(Debug, Clone)]
pub struct Values<'a> {
    /// CA certificate (PEM).
    pub ca_cert: &'a str,
    /// CA private key (PEM); only the server gets it.
    pub ca_key: &'a str,
    /// Join token.
    pub token: &'a str,
    /// k3s release.
    pub k3s_version: &'a str,
    /// Pool name.
    pub pool: &'a str,
    /// Run id.
    pub run_id: &'a str,
    /// `https://<server private ip>:6443`, for agents.
    pub server_url: &'a str,
}

/// Renders `template`; an error names a placeholder left unfilled or a value that could break
/// out of its quoting.
pub fn render(template: &str, v: &Values<'_>) -> Result<String, String> {
    for (name, value) in [
        ("token", v.token),
        ("k3s version", v.k3s_version),
        ("pool", v.pool),
        ("run id", v.run_id),
        ("server URL", v.server_url),
    ] {
        if value.contains(['\'', '\n', '\\']) {
            return Err(format!("{name} contains a quote, backslash or newline"));
        }
    }
    let map: BTreeMap<&str, &str> = BTreeMap::from([
        ("{{CA_CERT}}", v.ca_cert.trim_end()),
        ("{{CA_KEY}}", v.ca_key.trim_end()),
        ("{{TOKEN}}", v.token),
        ("{{K3S_VERSION}}", v.k3s_version),
        ("{{POOL}}", v.pool),
        ("{{RUN_ID}}", v.run_id),
        ("{{SERVER_URL}}", v.server_url),
    ]);
    let mut out = template.to_string();
    for (k, val) in map {
        out = out.replace(k, val);
    }
    if let Some(i) = out.find("{{") {
        let end = out[i..].find("}}").map_or(out.len(), |e| i + e + 2);
        return Err(format!(
            "placeholder {} left in the user data",
            &out[i..end]
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> Values<'static> {
        Values {
            ca_cert: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            ca_key: "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n",
            token: "K10abc",
            k3s_version: "v1.35.4+k3s1",
            pool: "gpu-worker",
            run_id: "aws-20261128-120000",
            server_url: "https://10.0.0.5:6443",
        }
    }

    #[test]
    fn server_carries_the_ca_and_token() {
        let s = render(SERVER, &values()).expect("render");
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(s.contains(
            "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\nGPUCONFORM_CA_CERT"
        ));
        assert!(s.contains("TOKEN='K10abc'"));
        assert!(s.contains("INSTALL_K3S_VERSION='v1.35.4+k3s1'"));
        assert!(s.contains("gpuconform.io/run-id=aws-20261128-120000"));
    }

    #[test]
    fn agent_gets_no_ca_key() {
        let a = render(AGENT, &values()).expect("render");
        assert!(!a.contains("PRIVATE KEY"));
        assert!(a.contains("SERVER='https://10.0.0.5:6443'"));
    }

    #[test]
    fn quotes_in_values_are_refused() {
        let mut v = values();
        v.pool = "x'; rm -rf /; '";
        assert!(render(AGENT, &v).is_err());
    }
}
