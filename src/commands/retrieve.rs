//! `gpuconform retrieve`: find the chart's CronJob and its last run, start the helper pod
//! ([`crate::retrieve::pod`]), stream the run folder out with `tar` through pods/exec, write it
//! under `--out`, and delete the pod — on success, on failure and on a signal alike.

use std::time::{Duration, Instant};

use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::Api;
use kube::api::{AttachParams, DeleteParams, PostParams};
use tokio::io::AsyncReadExt as _;

use crate::cli::RetrieveArgs;
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::k8s::K8sError;
use crate::output::Printer;
use crate::retrieve::{self, RetrieveError, unpack};

/// A run folder is a few MiB; anything past this is not one.
const MAX_ARCHIVE_MIB: u64 = 1024;

/// Copies the run out.
pub async fn retrieve(args: RetrieveArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let mut interrupts = crate::signals::listen();
    let asked = args
        .run
        .as_deref()
        .map(retrieve::run_id)
        .transpose()
        .map_err(RetrieveError::Flag)?;
    let cluster = crate::target::existing::connect(
        args.kubeconfig.clone(),
        args.context.clone(),
        Duration::from_secs(30),
    )
    .await?;
    let client = cluster.client;
    let ns = args.namespace.as_str();
    let cronjob = Api::<CronJob>::namespaced(client.clone(), ns)
        .get_opt(&args.release)
        .await
        .map_err(K8sError::api(format!("get cronjob {ns}/{}", args.release)))
        .map_err(RetrieveError::from)?
        .ok_or_else(|| RetrieveError::NoCronJob {
            namespace: ns.into(),
            name: args.release.clone(),
        })?;
    let source = retrieve::source(&cronjob).map_err(RetrieveError::from)?;
    let run = match asked {
        Some(run) => run,
        None => {
            let name = format!("{}-summary", args.release);
            let summary = Api::<ConfigMap>::namespaced(client.clone(), ns)
                .get_opt(&name)
                .await
                .map_err(K8sError::api(format!("get configmap {ns}/{name}")))
                .map_err(RetrieveError::from)?
                .ok_or_else(|| RetrieveError::NoSummary {
                    namespace: ns.into(),
                    name: name.clone(),
                })?;
            retrieve::last_run(&summary).map_err(RetrieveError::from)?
        }
    };
    printer.progress(format!(
        "run {run}: from claim {ns}/{} ({})",
        source.claim, source.mount
    ));

    let pods: Api<Pod> = Api::namespaced(client, ns);
    let name = helper_name(&args.release);
    let lifetime = u32::try_from(args.timeout.as_secs().max(60)).unwrap_or(u32::MAX - 60);
    pods.create(
        &PostParams::default(),
        &retrieve::pod(&name, &source, &args.image, lifetime),
    )
    .await
    .map_err(K8sError::api(format!("create pod {ns}/{name}")))
    .map_err(RetrieveError::from)?;
    // From here on the pod is deleted whatever happens.
    let copied = tokio::select! {
        r = copy(&pods, &name, &run, &args) => r,
        sig = crate::signals::beyond(&mut interrupts, 0) => Err(RetrieveError::Interrupted(sig)),
    };
    let delete = DeleteParams {
        grace_period_seconds: Some(0),
        ..DeleteParams::default()
    };
    if let Err(e) = pods.delete(&name, &delete).await {
        printer.warn(format!(
            "warning: delete helper pod {ns}/{name}: {} (it ends by itself within {lifetime}s; or `kubectl delete pod -n {ns} {name}`)",
            crate::errors::chain(&e)
        ));
    }
    let w = copied?;
    printer.result(format!(
        "{}: {} files, {} bytes",
        w.dir.display(),
        w.files,
        w.bytes
    ));
    Ok(exit_codes::OK)
}

/// Waits for the helper to run, streams the folder out and writes it.
async fn copy(
    pods: &Api<Pod>,
    name: &str,
    run: &str,
    args: &RetrieveArgs,
) -> Result<unpack::Written, RetrieveError> {
    let started = Instant::now();
    let pod = crate::k8s::wait::object(
        pods.clone(),
        name,
        &format!("helper pod {name} to run"),
        args.timeout,
        started_or_over,
    )
    .await?;
    let phase = pod
        .status
        .as_ref()
        .and_then(|s| s.phase.clone())
        .unwrap_or_default();
    if phase != "Running" {
        return Err(RetrieveError::PodNotRunning {
            pod: name.into(),
            phase,
            why: reasons(&pod),
        });
    }
    let params = AttachParams::default()
        .container(retrieve::CONTAINER)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let left = args.timeout.saturating_sub(started.elapsed());
    let exec = async {
        let mut proc = pods
            .exec(name, retrieve::tar_command(run), &params)
            .await
            .map_err(K8sError::api(format!("exec tar in pod {name}")))?;
        let (Some(stdout), Some(stderr), Some(status)) =
            (proc.stdout(), proc.stderr(), proc.take_status())
        else {
            return Err(RetrieveError::Tar {
                pod: name.into(),
                message: "the exec gave no output streams".into(),
                stderr: String::new(),
            });
        };
        let limit = MAX_ARCHIVE_MIB * 1024 * 1024;
        let (mut archive, mut said) = (Vec::new(), Vec::new());
        let (mut stdout, mut stderr) = (stdout.take(limit + 1), stderr.take(64 * 1024));
        let (a, b) = tokio::join!(
            stdout.read_to_end(&mut archive),
            stderr.read_to_end(&mut said),
        );
        let status = status.await;
        let _ = proc.join().await;
        let stream_err = |e: std::io::Error| RetrieveError::Tar {
            pod: name.into(),
            message: format!("the stream broke: {e}"),
            stderr: String::from_utf8_lossy(&said).into(),
        };
        a.map_err(stream_err)?;
        b.map_err(stream_err)?;
        let ok = status
            .as_ref()
            .and_then(|s| s.status.as_deref())
            .is_some_and(|s| s == "Success");
        if !ok {
            return Err(RetrieveError::Tar {
                pod: name.into(),
                message: status
                    .and_then(|s| s.message)
                    .unwrap_or_else(|| "no exit status".into()),
                stderr: String::from_utf8_lossy(&said).into(),
            });
        }
        if archive.len() as u64 > limit {
            return Err(RetrieveError::TooLarge {
                run: run.into(),
                limit_mib: MAX_ARCHIVE_MIB,
            });
        }
        Ok(archive)
    };
    let archive = tokio::time::timeout(left, exec)
        .await
        .map_err(|_| K8sError::Timeout {
            what: format!("tar of run {run} in pod {name}"),
            limit: args.timeout,
        })??;
    let (out, force, run) = (args.out.clone(), args.force, run.to_string());
    let written = tokio::task::spawn_blocking(move || {
        unpack::unpack(std::io::Cursor::new(archive), &run, &out, force)
    })
    .await
    .map_err(|e| unpack::UnpackError::Io {
        path: args.out.clone(),
        source: std::io::Error::other(e.to_string()),
    })??;
    Ok(written)
}

/// The helper pod's condition: running, or ended (a pod that failed to start says why).
fn started_or_over(pod: Option<&Pod>) -> bool {
    let Some(status) = pod.and_then(|p| p.status.as_ref()) else {
        return false;
    };
    let stuck = status
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref()?.reason.as_deref())
        .any(|r| STUCK.contains(&r));
    stuck
        || status
            .phase
            .as_deref()
            .is_some_and(|p| matches!(p, "Running" | "Succeeded" | "Failed"))
}

/// Waiting reasons a pod does not leave by itself (kubelet's image and config errors).
const STUCK: &[&str] = &[
    "ErrImagePull",
    "ImagePullBackOff",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
];

/// The containers' waiting or terminated reasons, for a pod that is not running.
fn reasons(pod: &Pod) -> String {
    let found: Vec<String> = pod
        .status
        .iter()
        .flat_map(|s| s.container_statuses.iter().flatten())
        .filter_map(|c| {
            let st = c.state.as_ref()?;
            let (r, m) = st
                .waiting
                .as_ref()
                .map(|w| (w.reason.clone(), w.message.clone()))
                .or_else(|| {
                    st.terminated
                        .as_ref()
                        .map(|t| (t.reason.clone(), t.message.clone()))
                })?;
            Some(format!(
                "{}: {} {}",
                c.name,
                r.unwrap_or_default(),
                m.unwrap_or_default()
            ))
        })
        .collect();
    if found.is_empty() {
        "no container status".into()
    } else {
        found.join("; ")
    }
}

/// `<release>-retrieve-<hex>`: unique enough for one namespace (time and process id).
fn helper_name(release: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let base: String = release.chars().take(40).collect();
    format!(
        "{}-retrieve-{:x}",
        base.trim_end_matches('-'),
        (nanos ^ std::process::id()) & 0xff_ffff
    )
}
