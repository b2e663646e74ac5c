//! The kubelet's side of faults: operand containers of a crash-looping component restart with
//! the kubelet's back-off and show `CrashLoopBackOff`, so the pod is never Ready and the stage
//! it gates never acts — as on a real node.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use serde_json::{Value, json};

use super::super::world::*;

impl World {
    pub(in crate::sim) fn crash_loops(
        &mut self,
        snap: &Snapshot<'_>,
        targets: &[(String, String, String)],
        now: Instant,
        wake: &mut Option<Instant>,
        out: &mut Vec<Action>,
    ) {
        let mut live = HashSet::new();
        for (node, operand, why) in targets {
            let Some(pod) = snap.pods_on(node).iter().find(|p| {
                label_is(p, APP, operand)
                    && p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            }) else {
                continue;
            };
            let uid = pod.uid().unwrap_or_default();
            live.insert(uid.clone());
            let first = now + self.delays.first_crash;
            let state = self.crash.entry(uid).or_insert_with(|| CrashState {
                restarts: 0,
                next: first,
                last: chrono::Utc::now(),
            });
            if now < state.next {
                *wake = earliest(*wake, state.next);
                continue;
            }
            state.restarts += 1;
            // Kubelet's back-off doubles from 10s to 5 minutes; scaled down here.
            let factor = 1u32 << u32::try_from(state.restarts.clamp(0, 5)).unwrap_or(5);
            let backoff = (Duration::from_millis(500) * factor).min(self.delays.max_backoff);
            state.next = now + backoff;
            *wake = earliest(*wake, state.next);
            let started = state.last;
            state.last = chrono::Utc::now();
            let container = pod
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .map(|c| (c.name.clone(), c.image.clone().unwrap_or_default()))
                .unwrap_or_default();
            let backoff_label = format!("{}s", (10u64 << state.restarts.clamp(0, 5)).min(300));
            out.push(Action::PodStatus {
                namespace: pod.namespace().unwrap_or_default(),
                name: pod.name_any(),
                status: crash_status(
                    pod,
                    &container,
                    state.restarts,
                    &backoff_label,
                    started,
                    state.last,
                ),
            });
            out.push(Action::Event(EventSpec {
                namespace: pod.namespace().unwrap_or_default(),
                kind: "Pod".into(),
                name: pod.name_any(),
                uid: pod.uid().unwrap_or_default(),
                reason: "BackOff".into(),
                message: format!(
                    "Back-off restarting failed container {} in pod {}: {why}",
                    container.0,
                    pod.name_any()
                ),
                warning: true,
                source: "kubelet".into(),
            }));
        }
        self.crash.retain(|uid, _| live.contains(uid));
    }
}

/// The status a kubelet reports for a container in `CrashLoopBackOff`.
fn crash_status(
    pod: &Pod,
    (container, image): &(String, String),
    restarts: i32,
    backoff: &str,
    started: chrono::DateTime<chrono::Utc>,
    finished: chrono::DateTime<chrono::Utc>,
) -> Value {
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();
    let not_ready = format!("containers with unready status: [{container}]");
    let old = pod.status.as_ref();
    let mut conditions = vec![
        json!({"type": "Ready", "status": "False", "reason": "ContainersNotReady", "message": not_ready, "lastTransitionTime": ts(finished)}),
        json!({"type": "ContainersReady", "status": "False", "reason": "ContainersNotReady", "message": not_ready, "lastTransitionTime": ts(finished)}),
        json!({"type": "Initialized", "status": "True", "lastTransitionTime": ts(started)}),
    ];
    if let Some(c) = old
        .and_then(|s| s.conditions.as_ref())
        .and_then(|c| c.iter().find(|c| c.type_ == "PodScheduled"))
    {
        conditions.push(serde_json::to_value(c).unwrap_or(Value::Null));
    }
    json!({
        "phase": "Running",
        "conditions": conditions,
        "containerStatuses": [{
            "name": container,
            "image": image,
            "imageID": "",
            "ready": false,
            "started": false,
            "restartCount": restarts,
            "state": {"waiting": {
                "reason": "CrashLoopBackOff",
                "message": format!("back-off {backoff} restarting failed container={container} pod={}", pod.name_any()),
            }},
            "lastState": {"terminated": {
                "exitCode": 1,
                "reason": "Error",
                "startedAt": ts(started),
                "finishedAt": ts(finished),
            }},
        }],
    })
}
