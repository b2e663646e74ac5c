//! The GPU Operator as a run installs and removes it: the chart values (with the k3s toolkit
//! settings on EC2), `helm upgrade --install`, the install record (what the run found and made,
//! by UID), and the end-of-run removal of what the run installed — never a release that was
//! there before the run.

pub mod helm;

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::gpu_stack::ours::MANAGED_BY;
use crate::k8s::wait;
use crate::plan::Plan;
use helm::{Helm, HelmError};

/// What the install phase recorded, for the teardown check and the end of the run.
#[derive(Debug, Clone, Default)]
pub struct InstallRecord {
    /// UID of the operator namespace.
    pub namespace_uid: Option<String>,
    /// UID of the ClusterPolicy CRD.
    pub crd_uid: Option<String>,
    /// Chart version helm reported.
    pub chart_version: String,
    /// The release existed before this run (it is upgraded, and teardown leaves it).
    pub preexisting: bool,
}

/// Installing the operator failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The values file could not be written.
    #[error("write {}", path.display())]
    Values {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The values could not be encoded.
    #[error("encode the chart values")]
    Encode(#[source] serde_json::Error),
    /// helm failed.
    #[error(transparent)]
    Helm(#[from] HelmError),
    /// The harness's test namespace could not be created.
    #[error("create namespace {namespace}")]
    Namespace {
        /// The namespace.
        namespace: String,
        /// Why.
        #[source]
        source: kube::Error,
    },
}

/// Where and how to install.
pub struct Install<'a> {
    /// The plan.
    pub plan: &'a Plan,
    /// The run folder (the values file goes there).
    pub run_dir: &'a Path,
    /// Admin client.
    pub client: &'a Client,
    /// helm, pointed at the cluster.
    pub helm: &'a Helm,
    /// The harness's namespace for its own pods.
    pub test_namespace: &'a str,
    /// The cluster runs k3s (the aws target): the toolkit needs k3s's containerd.
    pub k3s: bool,
}

/// Installs (or upgrades) the chart, records UIDs, creates the test namespace; returns the
/// phase message.
pub async fn install(i: &Install<'_>, record: &mut InstallRecord) -> Result<String, InstallError> {
    let plan = i.plan;
    let values = i.run_dir.join("operator-values.yaml");
    let mut chart_values = plan.operator.values.clone();
    if i.k3s {
        k3s_toolkit_values(&mut chart_values);
    }
    // JSON is YAML; helm reads it as a values file.
    let text = serde_json::to_string_pretty(&chart_values).map_err(InstallError::Encode)?;
    std::fs::write(&values, text).map_err(|source| InstallError::Values {
        path: values.clone(),
        source,
    })?;
    record.preexisting = matches!(i.helm.status(&plan.operator).await, Ok(Some(_)));
    i.helm
        .install(&plan.operator, &values, plan.timeouts.install)
        .await?;
    if let Ok(Some((_, chart))) = i.helm.status(&plan.operator).await {
        record.chart_version = chart;
    }
    let namespaces: Api<Namespace> = Api::all(i.client.clone());
    record.namespace_uid = namespaces
        .get_opt(&plan.operator.namespace)
        .await
        .ok()
        .flatten()
        .and_then(|n| n.metadata.uid);
    let crds: Api<CustomResourceDefinition> = Api::all(i.client.clone());
    record.crd_uid = crds
        .get_opt(crate::gpu_stack::operator::POLICY_CRD)
        .await
        .ok()
        .flatten()
        .and_then(|c| c.metadata.uid);
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": i.test_namespace, "labels": {MANAGED_BY.0: MANAGED_BY.1}},
    }))
    .map_err(InstallError::Encode)?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {}
        Err(source) => {
            return Err(InstallError::Namespace {
                namespace: i.test_namespace.to_string(),
                source,
            });
        }
    }
    Ok(format!(
        "helm release {} ({}) in namespace {}{}; test namespace {}",
        plan.operator.release,
        if record.chart_version.is_empty() {
            "?"
        } else {
            &record.chart_version
        },
        plan.operator.namespace,
        if record.preexisting {
            " (it existed before this run: upgraded, and left in place by teardown)"
        } else {
            ""
        },
        i.test_namespace
    ))
}

/// The end-of-run removal, if the teardown suite did not already do it: the release only when
/// this run installed it, and on an existing cluster the namespaces this run made. `created`:
/// the run created the cluster (it goes entirely, so namespaces do not matter); `ec2`: nor does
/// the release. Returns what could not be removed.
pub async fn remove(
    i: &Install<'_>,
    record: &InstallRecord,
    created: bool,
    ec2: bool,
) -> Vec<String> {
    let plan = i.plan;
    let limit = plan.timeouts.teardown;
    let mut left = Vec::new();
    match i.helm.status(&plan.operator).await {
        _ if ec2 => {}
        Ok(Some(_)) if record.preexisting => {}
        Ok(Some(_)) => {
            if let Err(e) = i.helm.uninstall(&plan.operator, limit).await {
                left.push(format!("helm release {}: {e}", plan.operator.release));
            }
        }
        Ok(None) => {}
        Err(e) if !created => left.push(format!(
            "helm release {}: unknown ({e})",
            plan.operator.release
        )),
        Err(_) => {}
    }
    if created {
        return left;
    }
    let namespaces: Api<Namespace> = Api::all(i.client.clone());
    let mut ours = vec![i.test_namespace];
    if !record.preexisting {
        ours.push(plan.operator.namespace.as_str());
    }
    for ns in ours {
        match namespaces.delete(ns, &DeleteParams::default()).await {
            Ok(_) => {
                if let Err(e) =
                    wait::deleted(namespaces.clone(), ns, None, "namespace deletion", limit).await
                {
                    left.push(format!("namespace {ns}: {e}"));
                }
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(e) => left.push(format!("namespace {ns}: {e}")),
        }
    }
    left
}

/// On k3s the container toolkit must edit k3s's containerd, not the system one: the GPU
/// Operator's documented toolkit settings for k3s, unless the plan sets `toolkit.env` itself.
pub fn k3s_toolkit_values(values: &mut serde_json::Value) {
    let Some(obj) = values.as_object_mut() else {
        return;
    };
    let toolkit = obj
        .entry("toolkit")
        .or_insert_with(|| serde_json::json!({}));
    let Some(toolkit) = toolkit.as_object_mut() else {
        return;
    };
    toolkit.entry("env").or_insert_with(|| {
        serde_json::json!([
            {"name": "CONTAINERD_CONFIG", "value": "/var/lib/rancher/k3s/agent/etc/containerd/config.toml.tmpl"},
            {"name": "CONTAINERD_SOCKET", "value": "/run/k3s/containerd/containerd.sock"},
            {"name": "CONTAINERD_RUNTIME_CLASS", "value": "nvidia"},
            {"name": "CONTAINERD_SET_AS_DEFAULT", "value": "true"},
        ])
    });
}

#[cfg(test)]
mod tests {
    #[test]
    fn k3s_toolkit_values_are_added_unless_set() {
        let mut v = serde_json::json!({"driver": {"version": "580.95.05"}});
        super::k3s_toolkit_values(&mut v);
        assert_eq!(
            v["toolkit"]["env"][1]["value"],
            "/run/k3s/containerd/containerd.sock"
        );
        let mut own = serde_json::json!({"toolkit": {"env": []}});
        super::k3s_toolkit_values(&mut own);
        assert_eq!(own["toolkit"]["env"], serde_json::json!([]));
    }
}
