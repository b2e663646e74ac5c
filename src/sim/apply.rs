//! Carries out the simulator's actions through the API, as the component each one stands for
//! would: label patches like NFD and GFD, status patches like a kubelet, events like the kubelet
//! and mig-manager. A failed call is logged and retried by the next pass (the state is
//! level-triggered), never fatal.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Event, Node, ObjectReference, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use kube::api::{DeleteParams, DynamicObject, ObjectMeta, Patch, PatchParams, PostParams};
use kube::{Api, Client};
use serde_json::{Value, json};

use super::SimLog;
use super::world::{Action, EventSpec};
use crate::gpu_stack::operator::cluster_policy as cluster_policy_resource;
use crate::gpu_stack::ours::KWOK_ANNOTATION;

/// Applies actions with one client.
pub struct Actor {
    client: Client,
    log: SimLog,
}

impl Actor {
    pub fn new(client: Client, log: SimLog) -> Self {
        Self { client, log }
    }

    /// Applies one action; failures are logged.
    pub async fn apply(&self, action: Action) {
        let what = describe(&action);
        match self.try_apply(action).await {
            Ok(()) => self.log.line(what),
            Err(e) => self.log.line(format!("{what}: failed: {e}")),
        }
    }

    async fn try_apply(&self, action: Action) -> Result<(), kube::Error> {
        let pp = PatchParams::default();
        match action {
            Action::Labels { node, changes } => {
                let api: Api<Node> = Api::all(self.client.clone());
                let patch = json!({"metadata": {"labels": changes}});
                api.patch(&node, &pp, &Patch::Merge(&patch)).await?;
            }
            Action::Resources { node, values } => {
                let api: Api<Node> = Api::all(self.client.clone());
                let cap: BTreeMap<&String, String> = values
                    .iter()
                    .map(|(k, (c, _))| (k, c.to_string()))
                    .collect();
                let alloc: BTreeMap<&String, String> = values
                    .iter()
                    .map(|(k, (_, a))| (k, a.to_string()))
                    .collect();
                let patch = json!({"status": {"capacity": cap, "allocatable": alloc}});
                api.patch_status(&node, &pp, &Patch::Merge(&patch)).await?;
            }
            Action::PolicyStatus { name, status } => {
                let api: Api<DynamicObject> =
                    Api::all_with(self.client.clone(), &cluster_policy_resource());
                let patch = json!({"status": status});
                api.patch_status(&name, &pp, &Patch::Merge(&patch)).await?;
            }
            Action::PodStatus {
                namespace,
                name,
                status,
            } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                let patch = json!({"status": status});
                api.patch_status(&name, &pp, &Patch::Merge(&patch)).await?;
            }
            Action::StopNode { node } => self.stop_node(&node).await?,
            Action::PodLog {
                namespace,
                name,
                container,
                file,
                lines,
            } => {
                self.pod_log(&namespace, &name, &container, &file, &lines)
                    .await?
            }
            Action::PodLogs {
                namespace,
                name,
                logs,
            } => self.pod_logs(&namespace, &name, &logs).await?,
            Action::DeleteCrds(names) => {
                let api: Api<CustomResourceDefinition> = Api::all(self.client.clone());
                for name in names {
                    match api.delete(&name, &DeleteParams::default()).await {
                        Ok(_) => {}
                        Err(kube::Error::Api(s)) if s.code == 404 => {}
                        Err(e) => return Err(e),
                    }
                }
            }
            Action::Event(spec) => self.event(spec).await?,
            Action::Schedulable { node, schedulable } => {
                let api: Api<Node> = Api::all(self.client.clone());
                let patch = json!({"spec": {"unschedulable": !schedulable}});
                api.patch(&node, &pp, &Patch::Merge(&patch)).await?;
            }
            Action::DeletePod { namespace, name } => {
                let api: Api<Pod> = Api::namespaced(self.client.clone(), &namespace);
                match api.delete(&name, &DeleteParams::default()).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
            Action::Slice { name, node, spec } => self.slice(&name, &node, spec).await?,
        }
        Ok(())
    }

    /// Creates or replaces a ResourceSlice owned by its node (so it goes with the node, as the
    /// kubelet plugin's do), or deletes it.
    async fn slice(&self, name: &str, node: &str, spec: Option<Value>) -> Result<(), kube::Error> {
        use k8s_openapi::api::resource::v1::ResourceSlice;
        let api: Api<ResourceSlice> = Api::all(self.client.clone());
        let Some(spec) = spec else {
            return match api.delete(name, &DeleteParams::default()).await {
                Ok(_) => Ok(()),
                Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
                Err(e) => Err(e),
            };
        };
        let uid = Api::<Node>::all(self.client.clone())
            .get(node)
            .await?
            .metadata
            .uid
            .unwrap_or_default();
        let obj = json!({
            "apiVersion": "resource.k8s.io/v1",
            "kind": "ResourceSlice",
            "metadata": {
                "name": name,
                "ownerReferences": [{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid, "controller": true}],
            },
            "spec": spec,
        });
        let pp = PatchParams::apply("gpu-simulator").force();
        api.patch(name, &pp, &Patch::Apply(&obj)).await?;
        Ok(())
    }

    /// The kubelet dies: kwok stops playing it (so no more heartbeats or lease renewals) and the
    /// node's conditions turn Unknown, as the node lifecycle controller reports a silent node.
    async fn stop_node(&self, node: &str) -> Result<(), kube::Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        let patch =
            json!({"metadata": {"annotations": {KWOK_ANNOTATION.0: "stopped-by-gpuconform"}}});
        api.patch(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        let current = api.get_status(node).await?;
        let now = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();
        let conditions: Vec<Value> = current
            .status
            .and_then(|s| s.conditions)
            .unwrap_or_default()
            .into_iter()
            .map(|c| {
                json!({
                    "type": c.type_,
                    "status": "Unknown",
                    "reason": "NodeStatusUnknown",
                    "message": "Kubelet stopped posting node status.",
                    "lastHeartbeatTime": c.last_heartbeat_time,
                    "lastTransitionTime": now,
                })
            })
            .collect();
        let patch = json!({"status": {"conditions": conditions}});
        api.patch_status(node, &PatchParams::default(), &Patch::Merge(&patch))
            .await?;
        Ok(())
    }

    /// Writes the log in the CRI format kwok reads and creates the pod's `Logs` object.
    async fn pod_log(
        &self,
        namespace: &str,
        name: &str,
        container: &str,
        file: &std::path::Path,
        lines: &[String],
    ) -> Result<(), kube::Error> {
        let one = [(container.to_string(), file.to_path_buf(), lines.to_vec())];
        self.pod_logs(namespace, name, &one).await
    }

    /// Writes each container's log and one `Logs` object for the pod naming them all.
    async fn pod_logs(
        &self,
        namespace: &str,
        name: &str,
        logs: &[(String, std::path::PathBuf, Vec<String>)],
    ) -> Result<(), kube::Error> {
        let ts = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        let mut entries = Vec::new();
        for (container, file, lines) in logs {
            let text: String = lines
                .iter()
                .map(|l| format!("{ts} stdout F {l}\n"))
                .collect();
            if let Some(dir) = file.parent() {
                let _ = std::fs::create_dir_all(dir);
            }
            std::fs::write(file, text).map_err(|e| kube::Error::Service(Box::new(e)))?;
            entries.push(json!({"containers": [container], "logsFile": file.display().to_string(), "follow": false}));
        }
        let ar = kube::api::ApiResource::from_gvk_with_plural(
            &kube::api::GroupVersionKind::gvk("kwok.x-k8s.io", "v1alpha1", "Logs"),
            "logs",
        );
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), namespace, &ar);
        let obj = json!({
            "apiVersion": "kwok.x-k8s.io/v1alpha1",
            "kind": "Logs",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {"logs": entries},
        });
        api.patch(
            name,
            &PatchParams::apply("gpuconform-simulator").force(),
            &Patch::Apply(&obj),
        )
        .await?;
        Ok(())
    }

    async fn event(&self, spec: EventSpec) -> Result<(), kube::Error> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), &spec.namespace);
        let event = Event {
            metadata: ObjectMeta {
                generate_name: Some(format!("{}.", spec.name)),
                namespace: Some(spec.namespace.clone()),
                ..ObjectMeta::default()
            },
            involved_object: ObjectReference {
                api_version: Some("v1".into()),
                kind: Some(spec.kind.clone()),
                name: Some(spec.name.clone()),
                namespace: (spec.kind != "Node").then(|| spec.namespace.clone()),
                uid: Some(spec.uid.clone()),
                ..ObjectReference::default()
            },
            reason: Some(spec.reason.clone()),
            message: Some(spec.message.clone()),
            type_: Some(if spec.warning { "Warning" } else { "Normal" }.into()),
            event_time: Some(MicroTime(k8s_openapi::jiff::Timestamp::now())),
            reporting_component: Some(spec.source.clone()),
            reporting_instance: Some(spec.source.clone()),
            action: Some(spec.reason.clone()),
            count: Some(1),
            ..Event::default()
        };
        api.create(&PostParams::default(), &event).await?;
        Ok(())
    }
}

fn describe(action: &Action) -> String {
    match action {
        Action::Labels { node, changes } => {
            let set = changes.values().filter(|v| v.is_some()).count();
            let removed = changes.len() - set;
            let keys: Vec<&str> = changes.keys().map(String::as_str).take(6).collect();
            format!(
                "node {node}: {set} labels set, {removed} removed ({}{})",
                keys.join(", "),
                if changes.len() > 6 { ", …" } else { "" }
            )
        }
        Action::Resources { node, values } => {
            let v: Vec<String> = values
                .iter()
                .map(|(k, (c, a))| format!("{k} {a}/{c}"))
                .collect();
            format!("node {node}: allocatable/capacity {}", v.join(", "))
        }
        Action::PolicyStatus { name, status } => format!(
            "clusterpolicy {name}: state {}",
            status.get("state").and_then(Value::as_str).unwrap_or("?")
        ),
        Action::PodStatus {
            namespace, name, ..
        } => format!("pod {namespace}/{name}: status replaced"),
        Action::StopNode { node } => format!("node {node}: kubelet stopped"),
        Action::PodLog {
            namespace,
            name,
            lines,
            ..
        } => {
            format!("pod {namespace}/{name}: log of {} lines", lines.len())
        }
        Action::PodLogs {
            namespace,
            name,
            logs,
        } => format!("pod {namespace}/{name}: logs of {} containers", logs.len()),
        Action::DeleteCrds(names) => format!("deleted CRDs {}", names.join(", ")),
        Action::Event(e) => format!("event {} {}/{}: {}", e.reason, e.kind, e.name, e.message),
        Action::Schedulable { node, schedulable } => format!(
            "node {node}: {}",
            if *schedulable {
                "uncordoned"
            } else {
                "cordoned"
            }
        ),
        Action::DeletePod { namespace, name } => format!("deleted pod {namespace}/{name}"),
        Action::Slice { name, spec, .. } => match spec {
            Some(s) => format!(
                "resourceslice {name}: {} devices",
                s["devices"].as_array().map_or(0, Vec::len)
            ),
            None => format!("resourceslice {name}: deleted"),
        },
    }
}
