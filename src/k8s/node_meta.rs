//! A node's metadata as the API server's metadata-only responses give it
//! (`PartialObjectMetadata`), decoded without `managedFields`.
//!
//! kube's own `PartialObjectMeta<Node>` decodes the whole `ObjectMeta`, and a node's
//! `managedFields` (one entry per manager — kubectl, the kubelet, NFD, the controllers — each
//! listing every field it owns, every label included) is about as large as its labels, and is
//! decoded into a tree of JSON values. At thousands of nodes that tree was most of the labels
//! check's time and memory; no check reads it.

use std::borrow::Cow;
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use serde::Deserialize;

/// A node's name, labels, annotations and the fields the watch machinery needs
/// (`resourceVersion`, `uid`, timestamps); `Api<NodeMeta>` asks the API server for metadata
/// only.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(from = "Wire")]
pub struct NodeMeta {
    /// The node's metadata, `managedFields` and owner references left out.
    pub metadata: ObjectMeta,
}

/// What is read of a `PartialObjectMetadata`; every other field is skipped unparsed.
#[derive(Deserialize)]
struct Wire {
    #[serde(default)]
    metadata: WireMeta,
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireMeta {
    name: Option<String>,
    uid: Option<String>,
    resource_version: Option<String>,
    creation_timestamp: Option<Time>,
    deletion_timestamp: Option<Time>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

impl From<Wire> for NodeMeta {
    fn from(w: Wire) -> Self {
        let m = w.metadata;
        NodeMeta {
            metadata: ObjectMeta {
                name: m.name,
                uid: m.uid,
                resource_version: m.resource_version,
                creation_timestamp: m.creation_timestamp,
                deletion_timestamp: m.deletion_timestamp,
                labels: m.labels,
                annotations: m.annotations,
                ..ObjectMeta::default()
            },
        }
    }
}

impl kube::Resource for NodeMeta {
    type DynamicType = ();
    type Scope = kube::core::ClusterResourceScope;

    fn kind(_: &()) -> Cow<'_, str> {
        "Node".into()
    }
    fn group(_: &()) -> Cow<'_, str> {
        "".into()
    }
    fn version(_: &()) -> Cow<'_, str> {
        "v1".into()
    }
    fn plural(_: &()) -> Cow<'_, str> {
        "nodes".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
    /// Metadata-only requests (`Accept: …;as=PartialObjectMetadata…`), as for kube's
    /// `PartialObjectMeta`.
    fn metadata_api() -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `PartialObjectMetadata` as the API server sends it (the shape of a kubectl-created
    /// node's metadata): managed fields and owner references are dropped, the rest kept.
    #[test]
    fn decodes_metadata_without_managed_fields() {
        let json = r#"{
          "kind": "PartialObjectMetadata",
          "apiVersion": "meta.k8s.io/v1",
          "metadata": {
            "name": "gpu-1",
            "uid": "0b6c",
            "resourceVersion": "19152",
            "creationTimestamp": "2026-12-05T17:07:16Z",
            "labels": {"nvidia.com/gpu.present": "true"},
            "annotations": {"node.alpha.kubernetes.io/ttl": "300"},
            "ownerReferences": [{"apiVersion": "v1", "kind": "X", "name": "x", "uid": "1"}],
            "managedFields": [{"manager": "kubectl-create", "operation": "Update",
              "apiVersion": "v1", "fieldsType": "FieldsV1",
              "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:nvidia.com/gpu.present": {}}}}}]
          }
        }"#;
        let n: NodeMeta = serde_json::from_str(json).expect("decodes");
        let m = &n.metadata;
        assert_eq!(m.name.as_deref(), Some("gpu-1"));
        assert_eq!(m.resource_version.as_deref(), Some("19152"));
        assert_eq!(
            m.labels
                .as_ref()
                .and_then(|l| l.get("nvidia.com/gpu.present"))
                .map(String::as_str),
            Some("true")
        );
        assert_eq!(
            m.annotations.as_ref().map(BTreeMap::len),
            Some(1),
            "annotations kept"
        );
        assert!(m.creation_timestamp.is_some());
        assert!(m.managed_fields.is_none(), "managed fields dropped");
        assert!(m.owner_references.is_none());
        assert!(<NodeMeta as kube::Resource>::metadata_api());
    }
}
