//! The `aws` target: GPU node pools on EC2 with k3s bootstrapped by cloud-init, no SSH.
//!
//! The harness generates the cluster CA and an admin client certificate (as for the local
//! cluster), hands the CA to the control-plane node in its user data, builds the kubeconfig
//! itself, and waits for the API server and every node. Teardown terminates by the run's tag;
//! `gpuconform sweep` reclaims what killed runs left (`ec2.rs`). Prices: `cost.rs`.

pub mod cost;
pub mod ec2;

pub mod userdata;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::pki::{Ca, LeafSpec};
use crate::plan::aws::{self as spec, AwsSpec};
use ec2::{Provisioned, RunTags};

/// Provisioning on AWS failed; `left` lists what teardown could not remove.
#[derive(Debug, thiserror::Error)]
#[error("{message}{}", if left.is_empty() { String::new() } else { format!("; left behind: {}", left.join("; ")) })]
pub struct AwsError {
    /// What went wrong.
    pub message: String,
    /// What is still there.
    pub left: Vec<String>,
}

/// A cluster on EC2 for one run.
pub struct AwsCluster {
    /// Region.
    pub region: String,
    /// Run id (the tag teardown goes by).
    pub run_id: String,
    /// What was created.
    pub provisioned: Provisioned,
    /// The kubeconfig the harness built.
    pub kubeconfig: PathBuf,
    /// When the instances started (for instance-hours).
    pub started: Instant,
    /// Instances by type, for the cost report.
    pub instance_types: Vec<(String, u32)>,
}

/// A kubeconfig for `server` with a fresh `system:masters` client certificate from `ca` — what
/// the harness hands itself for a cluster whose CA it generated.
pub fn admin_kubeconfig(ca: &Ca, cluster: &str, server: &str) -> Result<String, String> {
    let admin = ca
        .issue(&LeafSpec {
            common_name: "gpuconform-admin".into(),
            organizations: vec!["system:masters".into()],
            client: true,
            ..LeafSpec::default()
        })
        .map_err(|e| e.to_string())?;
    Ok(crate::kubeconfig::render(&crate::kubeconfig::Identity {
        cluster,
        user: "gpuconform-admin",
        server,
        ca_pem: &ca.cert.cert_pem,
        cert_pem: &admin.cert_pem,
        key_pem: &admin.key_pem,
    }))
}

/// Who runs this, for the creator tag (no credential, no account id).
pub fn creator() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default();
    format!("{user}@{host}")
}

/// A join token: 32 random hex characters from the OS generator.
fn token() -> Result<String, String> {
    let mut bytes = [0u8; 16];
    let mut f =
        std::fs::File::open("/dev/urandom").map_err(|e| format!("open /dev/urandom: {e}"))?;
    std::io::Read::read_exact(&mut f, &mut bytes).map_err(|e| format!("read /dev/urandom: {e}"))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Provisions the pools, then waits until the API server answers with the harness's
/// certificate and every node (labelled with the run id by its user data) is Ready. Any failure tears down what was created.
pub async fn up(
    spec: &AwsSpec,
    plan: &str,
    run_id: &str,
    dir: &Path,
    timeout: Duration,
    progress: &(dyn Fn(String) + Sync),
) -> Result<AwsCluster, AwsError> {
    let started = Instant::now();
    let deadline = started + timeout;
    let fail = |m: String| AwsError {
        message: m,
        left: Vec::new(),
    };
    let ingress = match &spec.ingress_cidr {
        Some(c) => c.clone(),
        None => return Err(fail("target.aws.ingressCidr is needed: the caller's public address (x.x.x.x/32); it is never opened wider".into())),
    };
    let ca = Ca::generate(&format!("gpuconform-{run_id}")).map_err(|e| fail(e.to_string()))?;
    let token = token().map_err(fail)?;
    let run = RunTags {
        run_id: run_id.to_string(),
        plan: plan.to_string(),
        creator: creator(),
        expires_at: chrono::Utc::now()
            + chrono::Duration::from_std(spec.ttl).unwrap_or(chrono::Duration::hours(4)),
    };
    let user_data = |pool: &spec::AwsPool, server: Option<&str>| {
        let v = userdata::Values {
            ca_cert: &ca.cert.cert_pem,
            ca_key: &ca.cert.key_pem,
            token: &token,
            k3s_version: &spec.k3s_version,
            pool: &pool.name,
            run_id,
            server_url: server.unwrap_or_default(),
        };
        match server {
            None => userdata::render(userdata::SERVER, &v),
            Some(_) => userdata::render(userdata::AGENT, &v),
        }
    };
    let client = ec2::client(&spec.region).await;
    let launch = ec2::Launch {
        spec,
        run: &run,
        ingress_cidr: &ingress,
        user_data: &user_data,
        deadline,
        progress,
    };
    let provisioned = ec2::provision(&client, &launch)
        .await
        .map_err(|(e, left)| AwsError {
            message: e.to_string(),
            left,
        })?;

    // The kubeconfig: the harness's own admin certificate against the CA it generated.
    let server = spec.api_endpoint.clone().unwrap_or_else(|| {
        format!(
            "https://{}:6443",
            provisioned.server_public_ip.clone().unwrap_or_default()
        )
    });
    // Past this point a failure leaves instances behind unless torn down here.
    let abandon = |message: String| async {
        let left = ec2::teardown(
            &client,
            run_id,
            Instant::now() + Duration::from_secs(600),
            progress,
        )
        .await;
        AwsError { message, left }
    };
    let kc = match admin_kubeconfig(&ca, run_id, &server) {
        Ok(kc) => kc,
        Err(m) => return Err(abandon(m).await),
    };
    let kubeconfig = dir.join("kubeconfig");
    if let Err(e) = crate::target::local::state::write_private(&kubeconfig, kc.as_bytes()) {
        return Err(abandon(format!("write {}: {e}", kubeconfig.display())).await);
    }
    let cluster = AwsCluster {
        region: spec.region.clone(),
        run_id: run_id.to_string(),
        provisioned,
        kubeconfig,
        started,
        instance_types: spec
            .pools
            .iter()
            .map(|p| (p.instance_type.clone(), p.count))
            .collect(),
    };

    // Kubernetes: the API server (watched with a deadline), then every node.
    let ready = async {
        let client = crate::k8s::client_from_kubeconfig(&cluster.kubeconfig)
            .await
            .map_err(|e| e.to_string())?;
        let never = std::future::pending::<String>();
        crate::k8s::wait::api_ready(
            &client,
            deadline.saturating_duration_since(Instant::now()),
            never,
        )
        .await
        .map_err(|e| format!("the Kubernetes API at {server} did not answer in time: {e:?}"))?;
        // Every instance must have joined: checks on the nodes that made it would be a pass for
        // a partial cluster.
        let expected: u32 = spec.pools.iter().map(|p| p.count).sum();
        let nodes: kube::Api<k8s_openapi::api::core::v1::Node> = kube::Api::all(client);
        crate::k8s::wait::labelled_nodes_ready(
            nodes,
            &format!("gpuconform.io/run-id={run_id}"),
            expected as usize,
            deadline.saturating_duration_since(Instant::now()),
        )
        .await
        .map_err(|e| format!("not every node joined: {e}"))?;
        Ok::<_, String>(())
    };
    if let Err(m) = ready.await {
        return Err(abandon(m).await);
    }
    Ok(cluster)
}

impl AwsCluster {
    /// Terminates everything of the run; returns what is left.
    pub async fn down(&self, progress: &(dyn Fn(String) + Sync)) -> Vec<String> {
        let client = ec2::client(&self.region).await;
        ec2::teardown(
            &client,
            &self.run_id,
            Instant::now() + Duration::from_secs(900),
            progress,
        )
        .await
    }

    /// Instance-hours so far, by type.
    pub fn instance_hours(&self) -> Vec<(String, f64)> {
        let h = self.started.elapsed().as_secs_f64() / 3600.0;
        self.instance_types
            .iter()
            .map(|(t, n)| (t.clone(), h * f64::from(*n)))
            .collect()
    }
}
