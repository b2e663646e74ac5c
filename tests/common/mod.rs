//! Helpers for tests that run the real binary against the real local cluster.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The built `gpuconform` binary.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_gpuconform"))
}

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The tool cache; these tests need it and fail loudly without it.
pub fn tools_dir() -> PathBuf {
    let dir = gpuconform::target::local::tools::Tools::default_dir();
    assert!(
        dir.join("bin/kube-apiserver").is_file(),
        "tool cache {} is empty: run scripts/install-tools (scripts/test does)",
        dir.display()
    );
    dir
}

/// A binary from the tool cache.
pub fn tool(name: &str) -> PathBuf {
    tools_dir().join("bin").join(name)
}

/// Runs `gpuconform` with `args` from the repository root.
pub fn gpuconform(args: &[&str]) -> Output {
    Command::new(bin())
        .args(args)
        .current_dir(root())
        .env("GPUCONFORM_TOOLS", tools_dir())
        // `$KUBECONFIG` outranks a plan's kubeconfig (kubectl's order); tests name theirs.
        .env_remove("KUBECONFIG")
        .output()
        .expect("run gpuconform")
}

/// `gpuconform run <plan> --reports <dir>` from the repository root, not started yet.
pub fn run_command(plan: &Path, reports: &Path) -> Command {
    let mut cmd = Command::new(bin());
    cmd.arg("run")
        .arg(plan)
        .arg("--reports")
        .arg(reports)
        .current_dir(root())
        .env("GPUCONFORM_TOOLS", tools_dir())
        .env_remove("KUBECONFIG");
    cmd
}

/// Runs kubectl from the tool cache against a kubeconfig.
pub fn kubectl(kubeconfig: &Path, args: &[&str]) -> Output {
    Command::new(tool("kubectl"))
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("run kubectl")
}

/// stdout + stderr as text, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Live (non-zombie) processes whose command line mentions `needle` (a run folder).
pub fn live_processes_mentioning(needle: &Path) -> Vec<String> {
    let needle = needle.to_string_lossy().to_string();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for e in entries.flatten() {
        let pid = e.file_name().to_string_lossy().to_string();
        if !pid.bytes().all(|b| b.is_ascii_digit()) || pid == std::process::id().to_string() {
            continue;
        }
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        // A zombie has an empty command line and holds nothing; the sandbox's init may not reap.
        let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
        let zombie = stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
        if !zombie && cmdline.contains(&needle) {
            found.push(format!("{pid}: {cmdline}"));
        }
    }
    found
}

/// Whether something listens on a loopback port.
pub fn listening(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// Stops the cluster in `dir` when dropped, so a failing test leaves nothing running.
pub struct DownOnDrop(pub PathBuf);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        if self.0.join("state.json").exists() {
            let _ = gpuconform(&["local", "down", "--dir", &self.0.to_string_lossy()]);
        }
    }
}

/// Live processes of the run whose reports are in `run_dir`: its cluster's state folder (and
/// so every command line of its processes) is named after the run id, the folder's name.
pub fn live_processes_of_run(run_dir: &Path) -> Vec<String> {
    let id = run_dir.file_name().expect("run folder name");
    live_processes_mentioning(Path::new(id))
}

/// Every file under `dir` (reports) is free of credentials: private keys, certificates,
/// kubeconfig credentials, bearer tokens (JWTs), and any of `secrets`.
pub fn assert_no_credentials(dir: &Path, secrets: &[&str]) {
    let mut stack = vec![dir.to_path_buf()];
    let mut files = 0;
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("read report folder").flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
                continue;
            }
            files += 1;
            let text = String::from_utf8_lossy(&std::fs::read(&p).expect("read")).to_string();
            let markers = [
                "PRIVATE KEY-----",
                "BEGIN CERTIFICATE",
                "client-key-data",
                "client-certificate-data",
                "eyJhbGciOi",
            ];
            for m in markers.iter().chain(secrets) {
                assert!(!text.contains(m), "{} contains `{m}`", p.display());
            }
        }
    }
    assert!(files > 0, "no report files in {}", dir.display());
}

/// Cancels `child` the way GitHub Actions does: SIGINT now, then SIGTERM once `term_due` (given
/// the time since SIGINT) says so. Returns the exit status, the moment of the SIGINT and the
/// seconds from it to the exit; `None` (the process killed) if it outlives `limit`.
pub fn cancel_like_ci(
    child: &mut std::process::Child,
    mut term_due: impl FnMut(std::time::Duration) -> bool,
    limit: std::time::Duration,
) -> Option<(std::process::ExitStatus, std::time::Instant, f64)> {
    let pid = child.id().to_string();
    let signal = |sig: &str| {
        Command::new("kill")
            .args([sig, &pid])
            .status()
            .expect("kill");
    };
    let sigint = std::time::Instant::now();
    signal("-INT");
    let mut term_sent = false;
    loop {
        if let Some(status) = child.try_wait().expect("wait") {
            return Some((status, sigint, sigint.elapsed().as_secs_f64()));
        }
        if !term_sent && term_due(sigint.elapsed()) {
            signal("-TERM");
            term_sent = true;
        }
        if sigint.elapsed() >= limit {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The single run folder under `reports`.
pub fn run_dir(reports: &Path) -> PathBuf {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(reports)
        .expect("reports folder")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(
        dirs.len(),
        1,
        "expected one run folder in {}",
        reports.display()
    );
    dirs.remove(0)
}

/// A run folder's `results.json`.
pub fn results(dir: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(dir.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("results.json is JSON")
}
