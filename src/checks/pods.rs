//! What every pod the harness makes has in common: its labels (managed-by, run, check) and the
//! settings of the `restricted` Pod Security profile, so the checks run in a namespace that
//! enforces it — the level a production cluster's policy engine is likely to ask for.

use crate::gpu_stack::ours;

/// A non-root user for images that do not name one (the CUDA samples run as root by default;
/// the device plugin's device nodes are readable by any user).
pub const NON_ROOT_USER: u64 = 65532;

/// Labels of a harness object made by `check` in run `run_id`.
pub fn labels(run_id: &str, check: &str) -> serde_json::Value {
    serde_json::json!({
        ours::MANAGED_BY.0: ours::MANAGED_BY.1,
        ours::RUN_LABEL: ours::run_label(run_id),
        ours::CHECK_LABEL: check,
    })
}

/// The kubelet's reasons for a container whose image will not come: the pod would wait
/// forever, so the check fails at once instead of at its deadline.
pub const IMAGE_PULL_REASONS: [&str; 3] = ["ErrImagePull", "ImagePullBackOff", "InvalidImageName"];

/// `pod P: image I: ImagePullBackOff: <kubelet's message>` when a container of `pod` waits on
/// an image that cannot be pulled.
pub fn image_pull_failure(pod: &k8s_openapi::api::core::v1::Pod) -> Option<String> {
    let status = pod.status.as_ref()?;
    let all = status
        .init_container_statuses
        .iter()
        .flatten()
        .chain(status.container_statuses.iter().flatten());
    for c in all {
        let Some(w) = c.state.as_ref().and_then(|s| s.waiting.as_ref()) else {
            continue;
        };
        let reason = w.reason.as_deref().unwrap_or("");
        if IMAGE_PULL_REASONS.contains(&reason) {
            let name = pod.metadata.name.as_deref().unwrap_or("?");
            let message = w.message.as_deref().unwrap_or("").trim();
            let mut s = format!("pod {name}: image {}: {reason}", c.image);
            if !message.is_empty() {
                s.push_str(": ");
                s.push_str(message);
            }
            return Some(s);
        }
    }
    None
}

/// Every node's GPUs and those other pods hold, listed once per check (`None` when the pods
/// cannot be listed: then the checks try every node, as before).
pub async fn gpu_use(ctx: &super::Ctx<'_>) -> Option<crate::preflight::GpuUse> {
    crate::preflight::gpu_use(&ctx.client, Some(&ctx.run_id))
        .await
        .ok()
}

/// Why a check that needs `needed` free GPUs on `node` must skip it: other pods hold too many
/// (the GPU Operator's own validator waits forever there, gpu-operator#480). `None` when they
/// are free or unknown.
pub fn busy(gpu_use: Option<&crate::preflight::GpuUse>, node: &str, needed: u64) -> Option<String> {
    let (alloc, used) = *gpu_use?.get(node)?;
    let free = alloc.saturating_sub(used);
    (alloc > 0 && free < needed).then(|| {
        format!(
            "{node}: {used} of {alloc} GPUs are allocated to other pods, {free} free; the check needs {needed}"
        )
    })
}

/// Adds the `restricted` profile's settings to a pod spec (JSON): non-root, RuntimeDefault
/// seccomp, no privilege escalation, all capabilities dropped, no service account token (no
/// harness pod talks to the API). `user`: run as this UID, for images that would run as root.
pub fn restricted(spec: &mut serde_json::Value, user: Option<u64>) {
    let Some(obj) = spec.as_object_mut() else {
        return;
    };
    let mut pod = serde_json::json!({
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    if let Some(uid) = user {
        pod["runAsUser"] = uid.into();
        pod["runAsGroup"] = uid.into();
    }
    obj.insert("securityContext".into(), pod);
    obj.insert("automountServiceAccountToken".into(), false.into());
    if let Some(containers) = obj.get_mut("containers").and_then(|c| c.as_array_mut()) {
        for c in containers {
            c["securityContext"] = serde_json::json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_sets_every_field_the_profile_checks() {
        let mut spec = serde_json::json!({"containers": [{"name": "a"}, {"name": "b"}]});
        restricted(&mut spec, Some(NON_ROOT_USER));
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["runAsUser"], NON_ROOT_USER);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in spec["containers"].as_array().expect("containers") {
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        }
    }

    #[test]
    fn a_node_is_busy_when_other_pods_leave_too_few_gpus() {
        let gpu_use: crate::preflight::GpuUse = [
            ("a".to_string(), (8, 8)),
            ("b".to_string(), (8, 3)),
            ("c".to_string(), (0, 0)),
        ]
        .into_iter()
        .collect();
        let rows = [
            (
                "a",
                1,
                Some("a: 8 of 8 GPUs are allocated to other pods, 0 free; the check needs 1"),
            ),
            ("b", 5, None),
            (
                "b",
                8,
                Some("b: 3 of 8 GPUs are allocated to other pods, 5 free; the check needs 8"),
            ),
            // No allocatable GPUs: the allocatable check says so, nothing to skip for.
            ("c", 1, None),
            ("gone", 1, None),
        ];
        for (node, needed, want) in rows {
            assert_eq!(
                busy(Some(&gpu_use), node, needed).as_deref(),
                want,
                "{node} {needed}"
            );
        }
        assert_eq!(busy(None, "a", 1), None, "unknown use: the check tries");
    }

    #[test]
    fn image_pull_failures_are_named() {
        // The kubelet's status for a tag that does not exist (shape as `kubectl get pod -o json`
        // shows it), and for a reference it cannot parse.
        let pod = |reason: &str, message: &str| -> k8s_openapi::api::core::v1::Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "smoke-gpu-worker-1"},
                "status": {"phase": "Pending", "containerStatuses": [{
                    "name": "cuda", "image": "nvcr.io/nvidia/k8s/cuda-sample:nope", "imageID": "",
                    "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason, "message": message}},
                }]},
            }))
            .expect("pod")
        };
        let rows = [
            (
                "ErrImagePull",
                "rpc error: code = NotFound",
                Some(
                    "pod smoke-gpu-worker-1: image nvcr.io/nvidia/k8s/cuda-sample:nope: ErrImagePull: rpc error: code = NotFound",
                ),
            ),
            (
                "ImagePullBackOff",
                "Back-off pulling image",
                Some("ImagePullBackOff: Back-off pulling image"),
            ),
            ("InvalidImageName", "", Some("InvalidImageName")),
            ("ContainerCreating", "", None),
        ];
        for (reason, message, want) in rows {
            let got = image_pull_failure(&pod(reason, message));
            match want {
                None => assert_eq!(got, None, "{reason}"),
                Some(w) => assert!(
                    got.as_deref().is_some_and(|g| g.contains(w)),
                    "{reason}: {got:?}"
                ),
            }
        }
    }
}
