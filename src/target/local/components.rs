//! Command lines of the local control plane's components.
//!
//! Modelled on how kwokctl's binary runtime and kubeadm start them, with the differences that
//! keep everything on loopback: every listener binds 127.0.0.1, the API server advertises
//! 127.0.0.1 (there may be no default route), and it reaches the kubelet API (kwok) through each
//! node's InternalIP, which is 127.0.0.1, verifying kwok's certificate against our CA.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Loopback ports of one cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    /// etcd client port.
    pub etcd_client: u16,
    /// etcd peer port.
    pub etcd_peer: u16,
    /// API server secure port.
    pub apiserver: u16,
    /// kube-controller-manager secure port (health, metrics).
    pub controller_manager: u16,
    /// kube-scheduler secure port (health, metrics).
    pub scheduler: u16,
    /// kwok's kubelet API (logs, exec) for every node.
    pub kwok: u16,
}

impl Ports {
    /// From six distinct free ports.
    pub fn from_slice(p: &[u16]) -> Option<Self> {
        match *p {
            [
                etcd_client,
                etcd_peer,
                apiserver,
                controller_manager,
                scheduler,
                kwok,
            ] => Some(Self {
                etcd_client,
                etcd_peer,
                apiserver,
                controller_manager,
                scheduler,
                kwok,
            }),
            _ => None,
        }
    }

    /// Six free loopback ports.
    pub fn allocate() -> std::io::Result<Self> {
        let p = super::process::free_ports(6)?;
        Self::from_slice(&p).ok_or_else(|| std::io::Error::other("port allocation"))
    }

    /// All ports, for the record.
    pub fn all(&self) -> [u16; 6] {
        [
            self.etcd_client,
            self.etcd_peer,
            self.apiserver,
            self.controller_manager,
            self.scheduler,
            self.kwok,
        ]
    }
}

/// Files the components read, all inside the run folder.
#[derive(Debug, Clone)]
pub struct Files {
    /// CA certificate.
    pub ca_crt: PathBuf,
    /// CA key (the controller manager's CSR signer).
    pub ca_key: PathBuf,
    /// API server serving certificate and key.
    pub apiserver_crt: PathBuf,
    /// API server serving key.
    pub apiserver_key: PathBuf,
    /// Certificate the API server presents to kubelets (kwok).
    pub apiserver_kubelet_client_crt: PathBuf,
    /// Its key.
    pub apiserver_kubelet_client_key: PathBuf,
    /// kwok's serving certificate (the kubelet API of every node).
    pub kwok_crt: PathBuf,
    /// Its key.
    pub kwok_key: PathBuf,
    /// Service-account signing key (private).
    pub sa_key: PathBuf,
    /// Service-account verification key (public).
    pub sa_pub: PathBuf,
    /// Controller manager kubeconfig.
    pub controller_manager_kubeconfig: PathBuf,
    /// Scheduler kubeconfig.
    pub scheduler_kubeconfig: PathBuf,
    /// kwok kubeconfig.
    pub kwok_kubeconfig: PathBuf,
}

impl Files {
    /// The standard layout under `pki` (certificates) and `root` (kubeconfigs).
    pub fn layout(root: &Path, pki: &Path) -> Self {
        Self {
            ca_crt: pki.join("ca.crt"),
            ca_key: pki.join("ca.key"),
            apiserver_crt: pki.join("apiserver.crt"),
            apiserver_key: pki.join("apiserver.key"),
            apiserver_kubelet_client_crt: pki.join("apiserver-kubelet-client.crt"),
            apiserver_kubelet_client_key: pki.join("apiserver-kubelet-client.key"),
            kwok_crt: pki.join("kwok.crt"),
            kwok_key: pki.join("kwok.key"),
            sa_key: pki.join("sa.key"),
            sa_pub: pki.join("sa.pub"),
            controller_manager_kubeconfig: root.join("controller-manager.kubeconfig"),
            scheduler_kubeconfig: root.join("scheduler.kubeconfig"),
            kwok_kubeconfig: root.join("kwok.kubeconfig"),
        }
    }
}

/// Service CIDR; the API server's `kubernetes` Service takes its first address.
pub const SERVICE_CIDR: &str = "10.96.0.0/16";
/// Pod CIDR the controller manager carves node ranges from.
pub const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// Node lease duration kwok renews with; the controller manager's grace period follows from it.
pub const NODE_LEASE_SECONDS: u32 = 40;
/// The controller manager marks a node NotReady after this long without a lease renewal.
pub const NODE_MONITOR_GRACE: &str = "50s";

fn p(path: &Path) -> String {
    path.display().to_string()
}

/// etcd: one member, plain HTTP on loopback (only the API server talks to it).
pub fn etcd_args(ports: &Ports, data_dir: &Path) -> Vec<String> {
    let client = format!("http://127.0.0.1:{}", ports.etcd_client);
    let peer = format!("http://127.0.0.1:{}", ports.etcd_peer);
    vec![
        "--name=gpuconform".into(),
        format!("--data-dir={}", p(data_dir)),
        format!("--listen-client-urls={client}"),
        format!("--advertise-client-urls={client}"),
        format!("--listen-peer-urls={peer}"),
        format!("--initial-advertise-peer-urls={peer}"),
        format!("--initial-cluster=gpuconform={peer}"),
        "--initial-cluster-state=new".into(),
        "--auto-compaction-retention=1".into(),
        "--quota-backend-bytes=2147483648".into(),
        "--log-level=warn".into(),
    ]
}

/// `--feature-gates=A=true,B=false` for a fixture's gates (none: no flag).
fn gates_arg(gates: &BTreeMap<String, bool>) -> Option<String> {
    (!gates.is_empty()).then(|| {
        let pairs: Vec<String> = gates.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("--feature-gates={}", pairs.join(","))
    })
}

/// kube-apiserver: TLS with our CA, RBAC and Node authorization, service-account signing.
pub fn apiserver_args(
    ports: &Ports,
    f: &Files,
    cert_dir: &Path,
    gates: &BTreeMap<String, bool>,
) -> Vec<String> {
    let mut args = vec![
        format!("--etcd-servers=http://127.0.0.1:{}", ports.etcd_client),
        "--bind-address=127.0.0.1".into(),
        "--advertise-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.apiserver),
        format!("--cert-dir={}", p(cert_dir)),
        format!("--tls-cert-file={}", p(&f.apiserver_crt)),
        format!("--tls-private-key-file={}", p(&f.apiserver_key)),
        format!("--client-ca-file={}", p(&f.ca_crt)),
        "--authorization-mode=Node,RBAC".into(),
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local".into(),
        format!("--service-account-key-file={}", p(&f.sa_pub)),
        format!("--service-account-signing-key-file={}", p(&f.sa_key)),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--allow-privileged=true".into(),
        // Every node's InternalIP is loopback, where kwok serves the kubelet API.
        "--kubelet-preferred-address-types=InternalIP".into(),
        format!("--kubelet-certificate-authority={}", p(&f.ca_crt)),
        format!(
            "--kubelet-client-certificate={}",
            p(&f.apiserver_kubelet_client_crt)
        ),
        format!(
            "--kubelet-client-key={}",
            p(&f.apiserver_kubelet_client_key)
        ),
        // The `kubernetes` Service's endpoint would be 127.0.0.1, which the endpoint validation
        // rejects; nothing in this cluster runs in-cluster clients that need it.
        "--endpoint-reconciler-type=none".into(),
        "--profiling=false".into(),
    ];
    args.extend(gates_arg(gates));
    args
}

/// kube-controller-manager: its own identity (bootstrap RBAC), per-controller service accounts
/// as kubeadm configures, node CIDR allocation so kwok gives pods addresses from node ranges.
pub fn controller_manager_args(
    ports: &Ports,
    f: &Files,
    cert_dir: &Path,
    gates: &BTreeMap<String, bool>,
) -> Vec<String> {
    let kc = p(&f.controller_manager_kubeconfig);
    let mut args = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.controller_manager),
        format!("--cert-dir={}", p(cert_dir)),
        format!("--root-ca-file={}", p(&f.ca_crt)),
        format!("--service-account-private-key-file={}", p(&f.sa_key)),
        format!("--cluster-signing-cert-file={}", p(&f.ca_crt)),
        format!("--cluster-signing-key-file={}", p(&f.ca_key)),
        "--use-service-account-credentials=true".into(),
        "--controllers=*,bootstrapsigner,tokencleaner".into(),
        "--allocate-node-cidrs=true".into(),
        format!("--cluster-cidr={CLUSTER_CIDR}"),
        format!("--service-cluster-ip-range={SERVICE_CIDR}"),
        "--node-monitor-period=5s".into(),
        format!("--node-monitor-grace-period={NODE_MONITOR_GRACE}"),
        "--leader-elect=true".into(),
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics".into(),
        "--profiling=false".into(),
    ];
    args.extend(UNLIMITED_QPS.map(String::from));
    args.extend(gates_arg(gates));
    args
}

/// The controller manager's and scheduler's client limits lifted, as `kwokctl
/// --disable-qps-limits` does: their defaults (20 and 50 requests a second) are sized for
/// kubelets that take seconds per pod, and make a simulated pool of hundreds of nodes wait
/// minutes for DaemonSet pods (200 GPU nodes × 9 operands) that kwok starts at once.
const UNLIMITED_QPS: [&str; 2] = ["--kube-api-qps=5000", "--kube-api-burst=10000"];

/// kube-scheduler: its own identity, default profile (extended resources need no plugin).
pub fn scheduler_args(
    ports: &Ports,
    f: &Files,
    cert_dir: &Path,
    gates: &BTreeMap<String, bool>,
) -> Vec<String> {
    let kc = p(&f.scheduler_kubeconfig);
    let mut args = vec![
        format!("--kubeconfig={kc}"),
        format!("--authentication-kubeconfig={kc}"),
        format!("--authorization-kubeconfig={kc}"),
        "--bind-address=127.0.0.1".into(),
        format!("--secure-port={}", ports.scheduler),
        format!("--cert-dir={}", p(cert_dir)),
        "--leader-elect=true".into(),
        "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics".into(),
        "--profiling=false".into(),
    ];
    args.extend(UNLIMITED_QPS.map(String::from));
    args.extend(gates_arg(gates));
    args
}

/// kwok: plays the kubelet of every node carrying kwok's annotation, serves their kubelet API on
/// one loopback port, and reads per-pod `Logs` and `ClusterExec` objects from the API (exec into
/// a simulated container runs the command on this machine, in the folder the object names).
pub fn kwok_args(ports: &Ports, f: &Files, configs: &[PathBuf]) -> Vec<String> {
    let mut args = vec![
        format!("--kubeconfig={}", p(&f.kwok_kubeconfig)),
        "--manage-all-nodes=false".into(),
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake".into(),
        "--node-ip=127.0.0.1".into(),
        format!("--node-port={}", ports.kwok),
        format!("--server-address=127.0.0.1:{}", ports.kwok),
        format!("--tls-cert-file={}", p(&f.kwok_crt)),
        format!("--tls-private-key-file={}", p(&f.kwok_key)),
        format!("--node-lease-duration-seconds={NODE_LEASE_SECONDS}"),
        format!("--cidr={CLUSTER_CIDR}"),
        "--enable-crds=Logs,ClusterExec".into(),
    ];
    args.extend(configs.iter().map(|c| format!("--config={}", p(c))));
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ports() -> Ports {
        Ports::from_slice(&[1, 2, 3, 4, 5, 6]).expect("six ports")
    }

    #[test]
    fn everything_binds_loopback() {
        let f = Files::layout(Path::new("/r"), Path::new("/r/pki"));
        let d = Path::new("/r/x");
        let all = [
            etcd_args(&ports(), d),
            apiserver_args(&ports(), &f, d, &BTreeMap::new()),
            controller_manager_args(&ports(), &f, d, &BTreeMap::new()),
            scheduler_args(&ports(), &f, d, &BTreeMap::new()),
            kwok_args(&ports(), &f, &[]),
        ];
        for args in &all {
            for a in args {
                assert!(!a.contains("0.0.0.0"), "non-loopback listener: {a}");
                if a.contains("http://") {
                    assert!(a.contains("127.0.0.1"), "{a}");
                }
            }
        }
        assert!(all[1].contains(&"--advertise-address=127.0.0.1".to_string()));
        assert!(all[1].contains(&"--authorization-mode=Node,RBAC".to_string()));
    }

    #[test]
    fn a_fixtures_gates_reach_every_control_plane_component() {
        let f = Files::layout(Path::new("/r"), Path::new("/r/pki"));
        let d = Path::new("/r/x");
        let gates = BTreeMap::from([
            ("DRADeviceTaints".to_string(), true),
            ("DRAPrioritizedList".to_string(), false),
        ]);
        let flag = "--feature-gates=DRADeviceTaints=true,DRAPrioritizedList=false".to_string();
        for args in [
            apiserver_args(&ports(), &f, d, &gates),
            controller_manager_args(&ports(), &f, d, &gates),
            scheduler_args(&ports(), &f, d, &gates),
        ] {
            assert!(args.contains(&flag), "{args:?}");
        }
        let none = apiserver_args(&ports(), &f, d, &BTreeMap::new());
        assert!(!none.iter().any(|a| a.starts_with("--feature-gates")));
    }

    #[test]
    fn kwok_gets_every_config() {
        let f = Files::layout(Path::new("/r"), Path::new("/r/pki"));
        let args = kwok_args(
            &ports(),
            &f,
            &[PathBuf::from("/a.yaml"), PathBuf::from("/b.yaml")],
        );
        assert!(args.contains(&"--config=/a.yaml".to_string()));
        assert!(args.contains(&"--config=/b.yaml".to_string()));
        assert!(args.contains(&"--server-address=127.0.0.1:6".to_string()));
    }
}
