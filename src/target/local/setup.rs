//! Preparing a run folder: certificates, kubeconfigs, kwok's configuration, kwok's CRDs.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::Api;
use kube::api::{Patch, PatchParams};

use super::LocalError;
use super::components::{Files, Ports};
use super::state::{ClusterDir, write_atomic, write_private};
use super::tools::Tools;
use crate::k8s::{K8sError, wait};
use crate::kubeconfig::{self, Identity};
use crate::pki::{Ca, KeyedCert, LeafSpec};

/// kwok's stock stages the cluster runs with (copied from the kwok module by install-tools):
/// node initialisation and lease heartbeats, and the fast pod lifecycle.
pub const KWOK_STAGES: [&str; 5] = [
    "node-initialize",
    "node-heartbeat-with-lease",
    "pod-ready",
    "pod-complete",
    "pod-delete",
];

/// The result of [`prepare`].
pub struct Prepared {
    /// Ports the components will use.
    pub ports: Ports,
    /// Files the components read.
    pub files: Files,
    /// API server URL.
    pub server: String,
    /// `--config` files for kwok.
    pub kwok_configs: Vec<PathBuf>,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LocalError + '_ {
    move |source| LocalError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Creates the run folder (emptied of an earlier, stopped cluster) and everything in it.
pub fn prepare(dir: &ClusterDir, tools: &Tools) -> Result<Prepared, LocalError> {
    for sub in ["pki", "logs", "etcd", "kwok"] {
        let path = dir.root.join(sub);
        if path.exists() {
            std::fs::remove_dir_all(&path).map_err(io(&path))?;
        }
    }
    for path in [dir.pki(), dir.logs(), dir.kwok()] {
        std::fs::create_dir_all(&path).map_err(io(&path))?;
    }
    let ports = Ports::allocate().map_err(io(&dir.root))?;
    let server = format!("https://127.0.0.1:{}", ports.apiserver);
    let files = Files::layout(&dir.root, &dir.pki());

    let ca = Ca::generate("gpuconform-local-ca")?;
    let loopback = vec![
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ];
    let apiserver = ca.issue(&LeafSpec {
        common_name: "kube-apiserver".into(),
        dns_names: [
            "localhost",
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
        ]
        .map(String::from)
        .to_vec(),
        ips: [
            loopback.clone(),
            vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 1))],
        ]
        .concat(),
        server: true,
        ..LeafSpec::default()
    })?;
    let client = |cn: &str, org: Option<&str>| {
        ca.issue(&LeafSpec {
            common_name: cn.into(),
            organizations: org.map(String::from).into_iter().collect(),
            client: true,
            ..LeafSpec::default()
        })
    };
    let admin = client("gpuconform-admin", Some("system:masters"))?;
    let kcm = client("system:kube-controller-manager", None)?;
    let scheduler = client("system:kube-scheduler", None)?;
    let kwok_client = client("gpuconform-kwok", Some("system:masters"))?;
    let kubelet_client = client("kube-apiserver-kubelet-client", Some("system:masters"))?;
    let kwok_serving = ca.issue(&LeafSpec {
        common_name: "kwok-kubelet".into(),
        dns_names: vec!["localhost".into()],
        ips: loopback,
        server: true,
        ..LeafSpec::default()
    })?;
    let (sa_key, sa_pub) = crate::pki::service_account_key()?;

    let write_pair = |crt: &Path, key: &Path, pair: &KeyedCert| -> Result<(), LocalError> {
        write_atomic(crt, pair.cert_pem.as_bytes()).map_err(io(crt))?;
        write_private(key, pair.key_pem.as_bytes()).map_err(io(key))
    };
    write_pair(&files.ca_crt, &files.ca_key, &ca.cert)?;
    write_pair(&files.apiserver_crt, &files.apiserver_key, &apiserver)?;
    write_pair(
        &files.apiserver_kubelet_client_crt,
        &files.apiserver_kubelet_client_key,
        &kubelet_client,
    )?;
    write_pair(&files.kwok_crt, &files.kwok_key, &kwok_serving)?;
    write_private(&files.sa_key, sa_key.as_bytes()).map_err(io(&files.sa_key))?;
    write_atomic(&files.sa_pub, sa_pub.as_bytes()).map_err(io(&files.sa_pub))?;

    let kubeconfig = |path: &Path, user: &str, pair: &KeyedCert| -> Result<(), LocalError> {
        let text = kubeconfig::render(&Identity {
            cluster: "gpuconform-local",
            user,
            server: &server,
            ca_pem: &ca.cert.cert_pem,
            cert_pem: &pair.cert_pem,
            key_pem: &pair.key_pem,
        });
        write_private(path, text.as_bytes()).map_err(io(path))
    };
    kubeconfig(&dir.kubeconfig(), "gpuconform-admin", &admin)?;
    kubeconfig(
        &files.controller_manager_kubeconfig,
        "system:kube-controller-manager",
        &kcm,
    )?;
    kubeconfig(
        &files.scheduler_kubeconfig,
        "system:kube-scheduler",
        &scheduler,
    )?;
    kubeconfig(&files.kwok_kubeconfig, "gpuconform-kwok", &kwok_client)?;

    let kwok_configs = kwok_configs(dir, tools)?;
    Ok(Prepared {
        ports,
        files,
        server,
        kwok_configs,
    })
}

/// The default container log every simulated container shows unless a per-pod `Logs` object
/// says otherwise (the GPU simulator writes those for bench pods).
fn kwok_configs(dir: &ClusterDir, tools: &Tools) -> Result<Vec<PathBuf>, LocalError> {
    let mut configs: Vec<PathBuf> = KWOK_STAGES.iter().map(|s| tools.kwok_stage(s)).collect();
    let log_file = dir.kwok().join("default-container.log");
    // kwok reads logs in the CRI format: `<RFC 3339 time> <stream> <F|P> <text>`.
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
    let log = format!(
        "{now} stdout F simulated container on a kwok node: no process ran, this line is the whole log\n"
    );
    write_atomic(&log_file, log.as_bytes()).map_err(io(&log_file))?;
    let cluster_logs = dir.kwok().join("cluster-logs.yaml");
    let doc = format!(
        "apiVersion: kwok.x-k8s.io/v1alpha1\nkind: ClusterLogs\nmetadata:\n  name: default-container-log\nspec:\n  logs:\n  - logsFile: {}\n    follow: false\n",
        log_file.display()
    );
    write_atomic(&cluster_logs, doc.as_bytes()).map_err(io(&cluster_logs))?;
    configs.push(cluster_logs);
    Ok(configs)
}

/// kwok's CRDs the cluster serves (`--enable-crds` of [`super::components::kwok_args`]).
const KWOK_CRDS: [&str; 2] = ["logs", "clusterexecs"];

/// Applies kwok's `Logs` and `ClusterExec` CRDs and waits until they are established.
pub async fn install_kwok_crds(
    client: &kube::Client,
    tools: &Tools,
    limit: Duration,
) -> Result<(), LocalError> {
    for name in KWOK_CRDS {
        install_kwok_crd(client, tools, name, limit).await?;
    }
    Ok(())
}

async fn install_kwok_crd(
    client: &kube::Client,
    tools: &Tools,
    file: &str,
    limit: Duration,
) -> Result<(), LocalError> {
    let path = tools.kwok_crd(file);
    let text = std::fs::read_to_string(&path).map_err(io(&path))?;
    let crd: CustomResourceDefinition =
        serde_saphyr::from_str(&text).map_err(|e| LocalError::Io {
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
        })?;
    let name = crd.metadata.name.clone().unwrap_or_default();
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    api.patch(
        &name,
        &PatchParams::apply("gpuconform").force(),
        &Patch::Apply(&crd),
    )
    .await
    .map_err(K8sError::api(format!("apply crd {name}")))?;
    wait::object(
        api,
        &name,
        &format!("crd {name} to be established"),
        limit,
        kube::runtime::conditions::is_crd_established(),
    )
    .await?;
    Ok(())
}
