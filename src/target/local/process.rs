//! Starting and stopping the local cluster's processes.
//!
//! Every process gets its own process group, so the whole group (a binary and anything it forks)
//! is signalled together and a terminal's Ctrl-C reaches the harness, which then stops the
//! components in order instead of letting them die in a race. Components also get a parent-death
//! signal, so even a `gpuconform` killed with SIGKILL leaves nothing running. A cluster that
//! outlives the command (`local up` without `--foreground`) is owned by a background supervisor
//! process; `local down`, from any later process, stops it and then checks each recorded pid.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::unix::AsyncFd;

/// How long a component gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// A process of ours, as recorded in the run folder.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessRecord {
    /// Component name (`etcd`, `kube-apiserver`, ...).
    pub name: String,
    /// Process id (also its process-group id).
    pub pid: i32,
    /// The binary, to tell our process from a later one that reused the pid.
    pub exe: PathBuf,
    /// Loopback ports it listens on.
    pub ports: Vec<u16>,
    /// Its combined stdout/stderr.
    pub log: PathBuf,
}

/// A process failed to start or stop.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The log file could not be created.
    #[error("create log file {}", path.display())]
    Log {
        /// The log file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The binary could not be executed.
    #[error("start `{name}` ({})", exe.display())]
    Spawn {
        /// Component.
        name: String,
        /// Binary.
        exe: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// A child started by this harness process.
pub struct Child {
    /// What was recorded about it.
    pub record: ProcessRecord,
    child: tokio::process::Child,
}

/// What to start.
pub struct Spec<'a> {
    /// Component name.
    pub name: &'a str,
    /// Binary.
    pub exe: &'a Path,
    /// Arguments.
    pub args: Vec<String>,
    /// Extra environment.
    pub env: Vec<(String, String)>,
    /// Ports it will listen on (for the record and for the port check in `down`).
    pub ports: Vec<u16>,
    /// Log file.
    pub log: PathBuf,
}

/// Starts one process. `attached` ties its life to this process (parent-death signal).
pub fn spawn(spec: Spec<'_>, attached: bool) -> Result<Child, ProcessError> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .map_err(|source| ProcessError::Log {
            path: spec.log.clone(),
            source,
        })?;
    let log_err = log.try_clone().map_err(|source| ProcessError::Log {
        path: spec.log.clone(),
        source,
    })?;
    let mut cmd = tokio::process::Command::new(spec.exe);
    cmd.args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(Stdio::from(log))
        .stderr(Stdio::from(log_err))
        .process_group(0)
        // Stopping is explicit and ordered; dropping a handle does not kill.
        .kill_on_drop(false);
    if attached {
        set_parent_death_signal(&mut cmd);
    }
    let child = cmd.spawn().map_err(|source| ProcessError::Spawn {
        name: spec.name.to_string(),
        exe: spec.exe.to_path_buf(),
        source,
    })?;
    let pid = child.id().and_then(|p| i32::try_from(p).ok()).unwrap_or(0);
    Ok(Child {
        record: ProcessRecord {
            name: spec.name.to_string(),
            pid,
            exe: spec.exe.to_path_buf(),
            ports: spec.ports,
            log: spec.log,
        },
        child,
    })
}

#[expect(
    unsafe_code,
    reason = "prctl in the forked child before exec; no allocation there"
)]
fn set_parent_death_signal(cmd: &mut tokio::process::Command) {
    // SAFETY: the closure runs between fork and exec and only calls async-signal-safe prctl.
    // The signal fires when the spawning *thread* exits; tokio's worker threads live as long as
    // the runtime, which lives as long as the harness.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

impl Child {
    /// Resolves when the process exits, with its status text.
    pub async fn exited(&mut self) -> String {
        match self.child.wait().await {
            Ok(status) => status.to_string(),
            Err(e) => format!("wait failed: {e}"),
        }
    }

    /// Whether it has exited already (non-blocking), with its status text.
    pub fn try_exited(&mut self) -> Option<String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.to_string()),
            Ok(None) => None,
            Err(e) => Some(format!("wait failed: {e}")),
        }
    }
}

/// Outcome of stopping one process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stopped {
    /// It exited after SIGTERM.
    Terminated,
    /// It needed SIGKILL.
    Killed,
    /// It was already gone (or the pid now belongs to someone else).
    AlreadyGone,
    /// It is still there; the text says why.
    Left(String),
}

impl std::fmt::Display for Stopped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Terminated => f.write_str("stopped (SIGTERM)"),
            Self::Killed => f.write_str("killed (SIGKILL after the grace period)"),
            Self::AlreadyGone => f.write_str("already gone"),
            Self::Left(why) => write!(f, "still running: {why}"),
        }
    }
}

/// Stops a recorded process group: SIGTERM, wait up to `grace`, then SIGKILL.
///
/// Works for processes this harness did not spawn (a later `local down`): waiting uses a pidfd,
/// which reports the exit of any process, without polling.
pub async fn stop(record: &ProcessRecord, grace: Duration) -> Stopped {
    if record.pid <= 1 || !is_ours(record) {
        return Stopped::AlreadyGone;
    }
    let Some(pidfd) = pidfd_open(record.pid) else {
        return Stopped::AlreadyGone;
    };
    let Some(exited) = ExitWatch::new(pidfd) else {
        return Stopped::Left(format!(
            "pid {} ({}): cannot watch it",
            record.pid, record.name
        ));
    };
    signal_group(record.pid, libc::SIGTERM);
    if exited.wait(grace).await {
        return Stopped::Terminated;
    }
    signal_group(record.pid, libc::SIGKILL);
    if exited.wait(Duration::from_secs(5)).await {
        Stopped::Killed
    } else {
        Stopped::Left(format!(
            "pid {} ({}) survived SIGKILL",
            record.pid, record.name
        ))
    }
}

/// Whether `record.pid` is alive and still runs `record.exe`.
pub fn is_ours(record: &ProcessRecord) -> bool {
    let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", record.pid)) else {
        return false;
    };
    let exe = exe.to_string_lossy();
    // A binary replaced on disk while running shows as "<path> (deleted)".
    let exe = exe.trim_end_matches(" (deleted)");
    let want = std::fs::canonicalize(&record.exe).unwrap_or_else(|_| record.exe.clone());
    Path::new(exe) == want || Path::new(exe) == record.exe
}

#[expect(unsafe_code, reason = "kill(2) on a process group we created")]
fn signal_group(pgid: i32, sig: libc::c_int) {
    // SAFETY: plain syscall; a negative pid addresses the process group.
    unsafe {
        libc::kill(-pgid, sig);
    }
}

#[expect(
    unsafe_code,
    reason = "pidfd_open(2) has no safe wrapper in std or libc"
)]
fn pidfd_open(pid: i32) -> Option<OwnedFd> {
    // SAFETY: the syscall returns a new fd or -1; a non-negative fd is owned by us alone.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, libc::PIDFD_NONBLOCK) };
    if fd < 0 {
        return None;
    }
    let fd = i32::try_from(fd).ok()?;
    // SAFETY: fd was just returned by the kernel and is not owned elsewhere.
    Some(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A pidfd registered with the reactor; it becomes readable when the process exits.
struct ExitWatch(AsyncFd<OwnedFd>);

impl ExitWatch {
    #[expect(
        unsafe_code,
        reason = "tokio's registration of a raw fd is unsafe by signature"
    )]
    fn new(fd: OwnedFd) -> Option<Self> {
        // SAFETY: the OwnedFd moves into the AsyncFd, so the descriptor stays open and unchanged
        // for the registration's whole life.
        unsafe { AsyncFd::register_with_interest(fd, tokio::io::Interest::READABLE) }
            .ok()
            .map(Self)
    }

    async fn wait(&self, limit: Duration) -> bool {
        matches!(
            tokio::time::timeout(limit, self.0.readable()).await,
            Ok(Ok(_))
        )
    }
}

/// Whether something listens on `127.0.0.1:port` (checked by trying to bind it).
pub fn port_in_use(port: u16) -> bool {
    std::net::TcpListener::bind(("127.0.0.1", port)).is_err()
}

/// `n` distinct free loopback ports.
///
/// The ports are released before the components bind them, so another program could take one in
/// between; a component that then fails to bind reports it in its log and startup fails cleanly.
pub fn free_ports(n: usize) -> std::io::Result<Vec<u16>> {
    // Ports below the kernel's ephemeral range: between choosing a port and the component
    // binding it, an ephemeral port can be handed to any outgoing connection on the machine
    // (seen as etcd's "address already in use" with several clusters starting at once), but a
    // port outside that range cannot.
    let (ephemeral_lo, _) = ephemeral_range();
    let (lo, hi) = (10_000u32, u32::from(ephemeral_lo).saturating_sub(1));
    if hi > lo + 100 {
        let mut seed = u64::from(std::process::id())
            ^ std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0);
        let mut held = Vec::new();
        for _ in 0..(n * 50) {
            if held.len() == n {
                break;
            }
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let port = (lo + (seed % u64::from(hi - lo)) as u32) as u16;
            if let Ok(l) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                held.push(l);
            }
        }
        if held.len() == n {
            return held
                .iter()
                .map(|l| l.local_addr().map(|a| a.port()))
                .collect();
        }
    }
    let listeners = (0..n)
        .map(|_| std::net::TcpListener::bind(("127.0.0.1", 0)))
        .collect::<std::io::Result<Vec<_>>>()?;
    listeners
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect()
}

/// The kernel's ephemeral port range (`ip_local_port_range`), Linux's default when unreadable.
fn ephemeral_range() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| {
            let mut it = t.split_whitespace().map(|v| v.parse::<u16>().ok());
            Some((it.next()??, it.next()??))
        })
        .unwrap_or((32_768, 60_999))
}

/// The last `n` lines of a log file, for error messages.
pub fn log_tail(path: &Path, n: usize) -> String {
    let Ok(text) = std::fs::read_to_string(path) else {
        return String::new();
    };
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
