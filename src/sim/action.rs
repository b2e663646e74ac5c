//! The changes a reconcile pass asks for, each as the component it stands for would make it
//! through the API ([`super::apply`] carries them out).

use std::collections::BTreeMap;

use serde_json::Value;

/// A change to make through the API.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Set (`Some`) or remove (`None`) node labels.
    Labels {
        /// Node name.
        node: String,
        /// Label changes.
        changes: BTreeMap<String, Option<String>>,
    },
    /// Set extended resources in the node's status: name → (capacity, allocatable).
    Resources {
        /// Node name.
        node: String,
        /// Resource values.
        values: BTreeMap<String, (u64, u64)>,
    },
    /// Replace the ClusterPolicy's status.
    PolicyStatus {
        /// Object name.
        name: String,
        /// The new status.
        status: Value,
    },
    /// Replace a pod's status (the simulator plays its kubelet).
    PodStatus {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// The new status.
        status: Value,
    },
    /// The node's kubelet stops: kwok releases it and its Ready condition turns Unknown.
    StopNode {
        /// Node name.
        node: String,
    },
    /// Give a pod a log: write `lines` to `file` (CRI format) and point kwok at it with a
    /// `Logs` object for the pod's container.
    PodLog {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Container name.
        container: String,
        /// Log file kwok serves.
        file: std::path::PathBuf,
        /// The log, one entry per line.
        lines: Vec<String>,
    },
    /// Give each of a pod's containers a log (`(container, file, lines)`), as [`Self::PodLog`]
    /// does for one.
    PodLogs {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
        /// Per container.
        logs: Vec<(String, std::path::PathBuf, Vec<String>)>,
    },
    /// Delete these CRDs (the cleanup-crd hook's work).
    DeleteCrds(Vec<String>),
    /// Cordon (`false`) or uncordon a node (the upgrade controller's work).
    Schedulable {
        /// Node name.
        node: String,
        /// `spec.unschedulable` becomes the opposite.
        schedulable: bool,
    },
    /// Delete a pod (the upgrade controller restarting a driver pod).
    DeletePod {
        /// Namespace.
        namespace: String,
        /// Pod name.
        name: String,
    },
    /// Publish (`Some`: create or replace) or withdraw (`None`: delete) the DRA kubelet
    /// plugin's ResourceSlice of a node.
    Slice {
        /// Slice name.
        name: String,
        /// The node that owns it.
        node: String,
        /// Its spec.
        spec: Option<Value>,
    },
    /// Record an event.
    Event(EventSpec),
}

/// An event to record.
#[derive(Debug, Clone, PartialEq)]
pub struct EventSpec {
    /// Namespace of the event (`default` for nodes).
    pub namespace: String,
    /// Kind of the object.
    pub kind: String,
    /// Name of the object.
    pub name: String,
    /// UID of the object.
    pub uid: String,
    /// Event reason.
    pub reason: String,
    /// Event message.
    pub message: String,
    /// `Warning` rather than `Normal`.
    pub warning: bool,
    /// Reporting component.
    pub source: String,
}
