//! Tier 3: the `aws` target against moto's EC2 server (from the test venv, on loopback), through
//! the real binary; state is read back independently with boto3. No real AWS is contacted: the
//! SDK goes to moto through `AWS_ENDPOINT_URL_EC2`, and the plans point the API endpoint at a
//! closed loopback port (moto's instances have no Kubernetes).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SECRET: &str = "gpuconform-test-secret-must-never-appear";

/// A moto server on a free loopback port, stopped when dropped.
struct Moto {
    child: Child,
    url: String,
}

impl Moto {
    fn start() -> Self {
        let python = tools_dir().join("venv/bin/python");
        assert!(python.is_file(), "no test venv: run scripts/install-tools");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("port")
            .local_addr()
            .expect("addr")
            .port();
        let child = Command::new(&python)
            .args([
                "-m",
                "moto.server",
                "-H",
                "127.0.0.1",
                "-p",
                &port.to_string(),
            ])
            .env("MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION", "true")
            .env("MOTO_ENABLE_AMI_VALIDATION", "true")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "moto did not start"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn env(&self, cmd: &mut Command) {
        cmd.env("AWS_ENDPOINT_URL_EC2", &self.url)
            .env("AWS_ACCESS_KEY_ID", "AKIATESTGPUCONFORM")
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_REGION", "us-west-2")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env_remove("AWS_PROFILE");
    }

    fn gpuconform(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(bin());
        cmd.args(args)
            .current_dir(root())
            .env("GPUCONFORM_TOOLS", tools_dir());
        self.env(&mut cmd);
        cmd.output().expect("run gpuconform")
    }

    /// `gpuconform run PLAN --reports REPORTS` against moto.
    fn run_plan(&self, plan: &Path, reports: &Path) -> Output {
        self.gpuconform(&[
            "run",
            &plan.to_string_lossy(),
            "--reports",
            &reports.to_string_lossy(),
        ])
    }

    /// Runs a boto3 snippet; `ec2` is a client on moto. Returns stdout as JSON.
    fn boto(&self, code: &str) -> serde_json::Value {
        let script = format!(
            "import boto3, json\nec2 = boto3.client('ec2', region_name='us-west-2', endpoint_url='{}', aws_access_key_id='x', aws_secret_access_key='x')\n{code}\n",
            self.url
        );
        let out = Command::new(tools_dir().join("venv/bin/python"))
            .args(["-c", &script])
            .output()
            .expect("python");
        assert!(out.status.success(), "boto3: {}", text(&out));
        serde_json::from_slice(&out.stdout).expect("json from boto3")
    }

    /// Instances of a run that are not terminated: `[{id, type, state, tags}]`.
    fn live(&self, run_id: &str) -> Vec<serde_json::Value> {
        let v = self.boto(&format!(
            "r = ec2.describe_instances(Filters=[{{'Name': 'tag:gpuconform:run-id', 'Values': ['{run_id}']}}])\nprint(json.dumps([{{'id': i['InstanceId'], 'type': i['InstanceType'], 'state': i['State']['Name'], 'tags': {{t['Key']: t['Value'] for t in i.get('Tags', [])}}}} for res in r['Reservations'] for i in res['Instances'] if i['State']['Name'] != 'terminated']))"
        ));
        v.as_array().cloned().unwrap_or_default()
    }

    /// Security groups of a run with their ingress.
    fn groups(&self, run_id: &str) -> Vec<serde_json::Value> {
        let v = self.boto(&format!(
            "r = ec2.describe_security_groups(Filters=[{{'Name': 'tag:gpuconform:run-id', 'Values': ['{run_id}']}}])\nprint(json.dumps([{{'id': g['GroupId'], 'ingress': g['IpPermissions']}} for g in r['SecurityGroups']]))"
        ));
        v.as_array().cloned().unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A seed-shaped plan: control plane, CPU worker, two GPU workers.
fn plan(
    dir: &Path,
    name: &str,
    gpu_type: &str,
    gpu_ami: &str,
    ttl: &str,
    provision: &str,
) -> PathBuf {
    // A closed loopback port: the API wait fails at once instead of reaching out.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("port")
        .local_addr()
        .expect("addr")
        .port();
    let text = format!(
        "name: {name}\ntarget:\n  aws:\n    region: us-west-2\n    ttl: {ttl}\n    ingressCidr: 198.51.100.7/32\n    apiEndpoint: https://127.0.0.1:{closed}\n    pools:\n      - name: control-plane\n        role: control-plane\n        instanceType: m5.xlarge\n        count: 1\n        ami: ami-785db401\n      - name: cpu-worker\n        role: worker\n        instanceType: m5.2xlarge\n        count: 1\n        ami: {{owner: amazon, name: \"ubuntu/images/hvm-ssd/ubuntu-xenial-16.04-amd64-server-*\"}}\n      - name: gpu-worker\n        role: worker\n        instanceType: {gpu_type}\n        count: 2\n        ami: {gpu_ami}\noperator:\n  chart: fixtures/charts/gpu-operator\nsuites: [gpu-stack]\ntimeouts:\n  provision: {provision}\n"
    );
    let p = dir.join(format!("{name}.yaml"));
    std::fs::write(&p, text).expect("write plan");
    p
}

fn run_id_of(reports: &Path) -> String {
    let dirs: Vec<PathBuf> = std::fs::read_dir(reports)
        .expect("reports")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(dirs.len(), 1);
    dirs[0]
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string()
}

fn no_secret(out: &Output, reports: &Path) {
    assert!(!String::from_utf8_lossy(&out.stdout).contains(SECRET));
    assert!(!String::from_utf8_lossy(&out.stderr).contains(SECRET));
    // Nor any key, certificate or kubeconfig credential (the admin kubeconfig lives outside).
    if !walk(reports).is_empty() {
        assert_no_credentials(reports, &[SECRET]);
    }
    for entry in walk(reports) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        assert!(
            !String::from_utf8_lossy(&bytes).contains(SECRET),
            "secret in {}",
            entry.display()
        );
    }
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Provision → the cluster never answers (moto) → teardown: every instance was tagged, the run
/// ends with the infrastructure code, nothing is left, no credential leaks.
#[test]
fn failed_bootstrap_tears_everything_down() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = plan(
        tmp.path(),
        "aws-seed",
        "g4dn.xlarge",
        "ami-785db401",
        "2h",
        "5s",
    );
    let reports = tmp.path().join("reports");
    let out = moto.run_plan(&p, &reports);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("estimated cost:"), "{err}");
    assert!(err.contains("tcp/6443 from 198.51.100.7/32 only"), "{err}");
    assert!(err.contains("did not answer in time"), "{err}");
    let run_id = run_id_of(&reports);
    assert!(
        moto.live(&run_id).is_empty(),
        "instances left: {:?}",
        moto.live(&run_id)
    );
    assert!(moto.groups(&run_id).is_empty(), "security group left");
    // Terminated instances still show their tags.
    let all = moto.boto(&format!(
        "r = ec2.describe_instances(Filters=[{{'Name': 'tag:gpuconform:run-id', 'Values': ['{run_id}']}}])\nprint(json.dumps([{{t['Key']: t['Value'] for t in i.get('Tags', [])}} for res in r['Reservations'] for i in res['Instances']]))"
    ));
    let tags = all.as_array().expect("array");
    assert_eq!(tags.len(), 4, "{all}");
    for t in tags {
        for key in [
            "gpuconform:managed",
            "gpuconform:run-id",
            "gpuconform:plan",
            "gpuconform:created-by",
            "gpuconform:expires-at",
            "gpuconform:pool",
            "Name",
        ] {
            assert!(t.get(key).is_some(), "tag {key} missing: {t}");
        }
        assert_eq!(t["gpuconform:plan"], "aws-seed");
    }
    no_secret(&out, &reports);
}

/// A run killed after provisioning leaves its resources (tagged, API open to the caller only);
/// `sweep` lists them without deleting, then deletes them with `--yes`.
#[test]
fn killed_run_is_swept() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = plan(
        tmp.path(),
        "aws-killed",
        "g4dn.xlarge",
        "ami-785db401",
        "1s",
        "120s",
    );
    let reports = tmp.path().join("reports");
    let mut cmd = run_command(&p, &reports);
    cmd.stdout(Stdio::null()).stderr(Stdio::null());
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("spawn run");
    // This run waits for an API that never comes; kill it as soon as its instances exist.
    let started = Instant::now();
    let run_id = loop {
        assert!(started.elapsed() < Duration::from_secs(60), "no run folder");
        if let Ok(mut d) = std::fs::read_dir(&reports)
            && let Some(Ok(e)) = d.next()
        {
            let id = e.file_name().to_string_lossy().to_string();
            if moto.live(&id).len() == 4 {
                break id;
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    child.kill().expect("kill -9");
    let _ = child.wait();

    let live = moto.live(&run_id);
    assert_eq!(live.len(), 4, "{live:?}");
    let gpus = live.iter().filter(|i| i["type"] == "g4dn.xlarge").count();
    assert_eq!(gpus, 2);
    let groups = moto.groups(&run_id);
    assert_eq!(groups.len(), 1);
    let ingress = groups[0]["ingress"].as_array().expect("ingress");
    let api: Vec<&serde_json::Value> = ingress.iter().filter(|r| r["FromPort"] == 6443).collect();
    assert_eq!(api.len(), 1, "{ingress:?}");
    let ranges = api[0]["IpRanges"].as_array().expect("ranges");
    assert_eq!(ranges.len(), 1);
    assert_eq!(ranges[0]["CidrIp"], "198.51.100.7/32");
    assert!(
        !serde_json::to_string(&groups)
            .unwrap_or_default()
            .contains("0.0.0.0/0")
    );
    for r in ingress.iter().filter(|r| r["FromPort"] != 6443) {
        assert!(
            r["IpRanges"].as_array().is_none_or(|v| v.is_empty()),
            "only the run's own group may reach other ports: {r}"
        );
    }

    // Dry run: listed, nothing deleted (the ttl of 1s has passed, so no --run-id is needed).
    std::thread::sleep(Duration::from_secs(1));
    let dry = moto.gpuconform(&["sweep", "--region", "us-west-2"]);
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));
    let listed = String::from_utf8_lossy(&dry.stdout);
    assert_eq!(listed.matches("instance i-").count(), 4, "{listed}");
    assert!(listed.contains("security-group sg-"), "{listed}");
    assert_eq!(moto.live(&run_id).len(), 4, "a dry run deleted something");

    let wet = moto.gpuconform(&["sweep", "--region", "us-west-2", "--yes"]);
    assert_eq!(wet.status.code(), Some(0), "{}", text(&wet));
    assert!(moto.live(&run_id).is_empty(), "instances left after sweep");
    assert!(
        moto.groups(&run_id).is_empty(),
        "security group left after sweep"
    );
    let again = moto.gpuconform(&["sweep", "--region", "us-west-2"]);
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("nothing to sweep"),
        "{}",
        text(&again)
    );
}

/// An EC2 error in the middle (an AMI that does not exist for one pool) tears down what was
/// already created and exits with the infrastructure code.
#[test]
fn ec2_error_mid_provision_tears_down() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = plan(
        tmp.path(),
        "aws-bad-ami",
        "g4dn.xlarge",
        "ami-00000000deadbeef",
        "2h",
        "60s",
    );
    let reports = tmp.path().join("reports");
    let out = moto.run_plan(&p, &reports);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("launch pool gpu-worker"), "{err}");
    assert!(err.contains("InvalidAMIID"), "{err}");
    let run_id = run_id_of(&reports);
    assert!(moto.live(&run_id).is_empty(), "{:?}", moto.live(&run_id));
    assert!(moto.groups(&run_id).is_empty());
    no_secret(&out, &reports);
}

/// p3.2xlarge is not in moto's catalog of offerings: the zone check refuses it before anything
/// is created, with a clear error.
#[test]
fn unavailable_instance_type_is_refused_before_launch() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = plan(
        tmp.path(),
        "aws-p3",
        "p3.2xlarge",
        "ami-785db401",
        "2h",
        "60s",
    );
    let reports = tmp.path().join("reports");
    let out = moto.run_plan(&p, &reports);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("instance type p3.2xlarge is not offered in any zone of us-west-2"),
        "{}",
        text(&out)
    );
    let run_id = run_id_of(&reports);
    assert!(
        moto.groups(&run_id).is_empty(),
        "a security group was created for a plan that cannot launch"
    );
    assert!(moto.live(&run_id).is_empty());
}

/// The rendered user data passes shellcheck (from the test venv).
#[test]
fn user_data_passes_shellcheck() {
    use gpuconform::target::aws::userdata::{AGENT, SERVER, Values, render};
    let shellcheck = tools_dir().join("venv/bin/shellcheck");
    assert!(shellcheck.is_file(), "no shellcheck in the test venv");
    let ca = gpuconform::pki::Ca::generate("test").expect("ca");
    let v = Values {
        ca_cert: &ca.cert.cert_pem,
        ca_key: &ca.cert.key_pem,
        token: "0123456789abcdef",
        k3s_version: "v1.35.4+k3s1",
        pool: "gpu-worker",
        run_id: "aws-20261128-120000",
        server_url: "https://10.0.0.5:6443",
    };
    let tmp = tempfile::tempdir().expect("tempdir");
    for (name, t) in [("server.sh", SERVER), ("agent.sh", AGENT)] {
        let f = tmp.path().join(name);
        std::fs::write(&f, render(t, &v).expect("render")).expect("write");
        let out = Command::new(&shellcheck)
            .args(["-s", "sh"])
            .arg(&f)
            .output()
            .expect("shellcheck");
        assert!(out.status.success(), "{name}: {}", text(&out));
    }
}

/// The handover to Kubernetes without AWS: a local cluster's CA (generated by the harness the
/// same way the aws target generates its own) signs the admin certificate the aws target issues
/// itself; the kubeconfig the aws target builds from it works with the real kubectl.
#[test]
fn aws_kubeconfig_works_against_a_cluster_with_a_harness_ca() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("cluster");
    let _down = DownOnDrop(dir.clone());
    let up = gpuconform(&["local", "up", "--dir", &dir.to_string_lossy()]);
    assert!(up.status.success(), "{}", text(&up));
    let cert = std::fs::read_to_string(dir.join("pki/ca.crt")).expect("ca.crt");
    let key = std::fs::read_to_string(dir.join("pki/ca.key")).expect("ca.key");
    let ca = gpuconform::pki::Ca::from_pem("gpuconform-local-ca", &cert, &key).expect("ca");
    let state = gpuconform::target::local::state::ClusterDir::new(&dir)
        .read_state()
        .expect("state")
        .expect("state.json");
    let kc = gpuconform::target::aws::admin_kubeconfig(&ca, "handover", &state.server)
        .expect("kubeconfig");
    let file = tmp.path().join("aws-kubeconfig");
    std::fs::write(&file, kc).expect("write");
    let out = kubectl(&file, &["get", "nodes", "-o", "name"]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let who = kubectl(
        &file,
        &[
            "auth",
            "whoami",
            "-o",
            "jsonpath={.status.userInfo.username}",
        ],
    );
    assert_eq!(
        String::from_utf8_lossy(&who.stdout),
        "gpuconform-admin",
        "{}",
        text(&who)
    );
}

/// GitHub Actions' cancel (SIGINT, then SIGTERM 7.5 s later) while EC2 instances are up and the
/// run waits for the cluster: exit 130, every instance of the run terminated and its security
/// group deleted on moto, the reports written.
#[test]
fn ci_cancel_during_provisioning_leaves_no_instance() {
    let moto = Moto::start();
    let tmp = tempfile::tempdir().expect("tempdir");
    let p = plan(
        tmp.path(),
        "aws-cancel",
        "g4dn.xlarge",
        "ami-785db401",
        "2h",
        "600s",
    );
    let reports = tmp.path().join("reports");
    let run_id = "aws-cancel-ci";
    let mut cmd = Command::new(bin());
    cmd.args([
        "run",
        &p.to_string_lossy(),
        "--reports",
        &reports.to_string_lossy(),
    ])
    .args(["--run-id", run_id])
    .current_dir(root())
    .env("GPUCONFORM_TOOLS", tools_dir())
    .stdout(std::process::Stdio::null())
    // Kept, so a run that ends before the cancel says why.
    .stderr(std::fs::File::create(tmp.path().join("stderr")).expect("stderr file"));
    moto.env(&mut cmd);
    let mut child = cmd.spawn().expect("spawn run");
    // The instances are up once moto lists all four of the run's.
    let started = std::time::Instant::now();
    while moto.live(run_id).len() < 4 {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(120),
            "instances never launched"
        );
        if let Some(status) = child.try_wait().expect("wait") {
            let err = std::fs::read_to_string(tmp.path().join("stderr")).unwrap_or_default();
            panic!(
                "the run ended early ({status}) with {} of the run's instances live:\n{err}",
                moto.live(run_id).len()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (status, _, _) = cancel_like_ci(
        &mut child,
        |since| since >= std::time::Duration::from_millis(7500),
        std::time::Duration::from_secs(120),
    )
    .expect("still running two minutes after SIGINT");
    assert_eq!(status.code(), Some(130));
    assert!(
        moto.live(run_id).is_empty(),
        "instances left: {:?}",
        moto.live(run_id)
    );
    assert!(moto.groups(run_id).is_empty(), "security group left");
    let dir = reports.join(run_id);
    assert!(
        dir.join("junit.xml").is_file(),
        "no JUnit in {}",
        dir.display()
    );
    assert_no_credentials(&dir, &[SECRET]);
    let state = gpuconform::target::state_dir(run_id);
    assert!(!state.exists(), "state left: {}", state.display());
}
