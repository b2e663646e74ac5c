//! The GPU Operator as a run installs and removes it: the chart values (with the k3s toolkit
//! settings on EC2), `helm upgrade --install`, the install record (what the run found and made,
//! by UID), and the end-of-run removal of what the run installed — never a release that was
//! there before the run.
//!
//! The plan's mode decides what happens to a release that is already there:
//! - `install` (default) refuses it before touching anything, unless the plan says `adopt`;
//! - `install` with `adopt: true` upgrades it with its own values plus the plan's
//!   (`--reuse-values`) and rolls back to the revision it found at teardown;
//! - `existing` (verify-only) changes nothing; the checks read what is there.
//!
//! Whether the run may remove the release is decided in one place,
//! [`InstallRecord::not_ours`], which the uninstall and teardown checks and the end-of-run
//! removal all ask.

pub mod helm;
pub mod settle;

use std::path::Path;

use k8s_openapi::api::core::v1::Namespace;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{DeleteParams, PostParams};
use kube::{Api, Client};

use crate::gpu_stack::ours::MANAGED_BY;
use crate::k8s::wait;
use crate::plan::{OperatorMode, Plan};
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
    /// The release existed before this run: nothing removes it (it may be adopted).
    pub preexisting: bool,
    /// Adopted: the revision found, which teardown rolls back to.
    pub adopted_from: Option<u64>,
    /// Verify-only: nothing was installed or upgraded.
    pub verify_only: bool,
    /// The revision this run's install or upgrade made (an adopted release is rolled back only
    /// while it is still the latest).
    pub upgraded_to: Option<u64>,
    /// The run created the test namespace (one that was there is never deleted, only the
    /// run's own pods and Jobs in it).
    pub test_namespace_created: bool,
    /// Restart counts of the operator namespace's containers when the run began, by
    /// `<pod uid>/<container>`: the operator check counts restarts since then, so a pod that
    /// crash-looped last month does not fail tonight's gate.
    pub restarts_at_start: std::collections::BTreeMap<String, i32>,
    /// The release was absent and the run started installing it (a half-done install is the
    /// run's to remove; a run stopped before this point removes nothing).
    pub installing: bool,
}

impl InstallRecord {
    /// Why the run must leave the release (and its namespace and CRDs) alone, when it must:
    /// the one rule for every step that would remove them.
    pub fn not_ours(&self) -> Option<String> {
        if self.verify_only {
            Some("verify-only run (operator.mode: existing): the release belongs to the cluster's owner, nothing is uninstalled".into())
        } else if let Some(rev) = self.adopted_from {
            Some(format!(
                "the release existed before this run (adopted): it is rolled back to revision {rev} at teardown, never uninstalled"
            ))
        } else if self.preexisting {
            Some("the release existed before this run: gpuconform never uninstalls what it did not install".into())
        } else if !self.installing {
            Some("this run did not install the release (it stopped before the install)".into())
        } else {
            None
        }
    }
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
    /// `install` onto a cluster that already has the release, without `adopt`.
    #[error(
        "release {release} already exists in namespace {namespace} ({chart}, revision {revision}); nothing was changed. To check it as it is, set `operator.mode: existing` (verify-only); to upgrade it for the run and roll it back afterwards, set `operator.adopt: true`"
    )]
    Refused {
        /// Release.
        release: String,
        /// Namespace.
        namespace: String,
        /// Its chart.
        chart: String,
        /// Its revision.
        revision: u64,
    },
    /// Verify-only, but there is no release to verify.
    #[error(
        "verify-only (operator.mode: existing): no release {release} in namespace {namespace}; set operator.release and operator.namespace to the installed GPU Operator"
    )]
    NoRelease {
        /// Release.
        release: String,
        /// Namespace.
        namespace: String,
    },
    /// The harness's test namespace could not be created.
    #[error("create namespace {namespace}: {cause}")]
    Namespace {
        /// The namespace.
        namespace: String,
        /// Why (kube's errors print their own cause, so it is part of this message).
        cause: kube::Error,
    },
}

impl InstallError {
    /// The plan asked for something the cluster's state forbids: bad input, exit 2.
    pub fn is_refusal(&self) -> bool {
        matches!(self, Self::Refused { .. } | Self::NoRelease { .. })
    }
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
    /// The run id (the run's pods and Jobs carry it).
    pub run_id: &'a str,
    /// The cluster runs k3s (the aws target): the toolkit needs k3s's containerd.
    pub k3s: bool,
}

/// Installs (or upgrades) the chart, records UIDs, creates the test namespace; returns the
/// phase message.
pub async fn install(i: &Install<'_>, record: &mut InstallRecord) -> Result<String, InstallError> {
    let plan = i.plan;
    // Until helm says otherwise the release counts as someone else's: a failed `helm list` or
    // a signal before the answer must not let teardown remove it.
    record.verify_only = plan.operator.mode == OperatorMode::Existing;
    record.preexisting = true;
    record.restarts_at_start = restart_counts(i.client, &plan.operator.namespace).await;
    let found = i.helm.status(&plan.operator).await?;
    record.preexisting = found.is_some();
    match (&found, plan.operator.mode) {
        (None, OperatorMode::Existing) => {
            return Err(InstallError::NoRelease {
                release: plan.operator.release.clone(),
                namespace: plan.operator.namespace.clone(),
            });
        }
        (Some(r), OperatorMode::Install) if !plan.operator.adopt => {
            return Err(InstallError::Refused {
                release: plan.operator.release.clone(),
                namespace: plan.operator.namespace.clone(),
                chart: r.chart.clone(),
                revision: r.revision,
            });
        }
        (Some(r), OperatorMode::Existing) => {
            record.verify_only = true;
            record.chart_version = r.chart.clone();
            record_uids(i, record).await;
            create_test_namespace(i, record).await?;
            return Ok(format!(
                "verify-only: helm release {} ({}, revision {}) in namespace {}, left as it is; test namespace {}",
                plan.operator.release,
                r.chart,
                r.revision,
                plan.operator.namespace,
                i.test_namespace
            ));
        }
        (Some(r), OperatorMode::Install) => record.adopted_from = Some(r.revision),
        (None, OperatorMode::Install) => {}
    }
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
    record.installing = record.adopted_from.is_none();
    let install = || {
        i.helm.install(
            &plan.operator,
            &values,
            plan.timeouts.install,
            record.adopted_from.is_some(),
        )
    };
    match install().await {
        // helm's known race (helm/helm#6332): the chart's CRDs are created and Established, but
        // the API server's discovery does not serve their kinds yet when helm maps the chart's
        // objects. helm stores no release when it fails there, so the same install once more
        // is safe; the CRDs then exist and are served.
        Err(e) if helm::crd_race(&e) && record.adopted_from.is_none() => {
            if i.helm.status(&plan.operator).await?.is_some() {
                return Err(e.into());
            }
            install().await?;
        }
        r => {
            r?;
        }
    }
    if let Ok(Some(r)) = i.helm.status(&plan.operator).await {
        record.chart_version = r.chart;
        record.upgraded_to = Some(r.revision);
    }
    record_uids(i, record).await;
    create_test_namespace(i, record).await?;
    Ok(format!(
        "helm release {} ({}) in namespace {}{}; test namespace {}",
        plan.operator.release,
        if record.chart_version.is_empty() {
            "?"
        } else {
            &record.chart_version
        },
        plan.operator.namespace,
        match record.adopted_from {
            Some(rev) => format!(
                " (adopted: it existed at revision {rev}; upgraded with its own values plus the plan's, rolled back at teardown)"
            ),
            None => String::new(),
        },
        i.test_namespace
    ))
}

/// Restart counts of every container in `namespace`, by `<pod uid>/<container>` (empty when
/// the namespace has no pods or cannot be read: then every restart counts).
pub async fn restart_counts(
    client: &Client,
    namespace: &str,
) -> std::collections::BTreeMap<String, i32> {
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::namespaced(client.clone(), namespace);
    let listed = crate::k8s::list::list_all(&pods, Default::default(), |p| {
        let uid = p.metadata.uid.clone().unwrap_or_default();
        p.status
            .and_then(|s| s.container_statuses)
            .unwrap_or_default()
            .into_iter()
            .map(|c| (format!("{uid}/{}", c.name), c.restart_count))
            .collect::<Vec<_>>()
    });
    let Ok(listed) = listed.await else {
        return Default::default();
    };
    listed.into_iter().flatten().collect()
}

/// The UIDs of the operator namespace and the ClusterPolicy CRD, for the teardown check.
async fn record_uids(i: &Install<'_>, record: &mut InstallRecord) {
    let plan = i.plan;
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
}

/// The harness's namespace for its own pods: used as it is when it exists (a namespace the
/// cluster's owner prepared, with its policies), else created with the `restricted` Pod Security
/// level and the plan's labels and annotations.
async fn create_test_namespace(
    i: &Install<'_>,
    record: &mut InstallRecord,
) -> Result<(), InstallError> {
    let namespaces: Api<Namespace> = Api::all(i.client.clone());
    let failed = |cause| InstallError::Namespace {
        namespace: i.test_namespace.to_string(),
        cause,
    };
    if namespaces
        .get_opt(i.test_namespace)
        .await
        .map_err(failed)?
        .is_some()
    {
        return Ok(());
    }
    let spec = &i.plan.test_namespace;
    let mut labels = serde_json::json!({
        MANAGED_BY.0: MANAGED_BY.1,
        crate::gpu_stack::POD_SECURITY_ENFORCE: "restricted",
    });
    for (k, v) in &spec.labels {
        labels[k] = v.clone().into();
    }
    let ns: Namespace = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": i.test_namespace, "labels": labels, "annotations": spec.annotations},
    }))
    .map_err(InstallError::Encode)?;
    match namespaces.create(&PostParams::default(), &ns).await {
        Ok(_) => {
            record.test_namespace_created = true;
            Ok(())
        }
        // Made meanwhile by someone else: theirs.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(cause) => Err(failed(cause)),
    }
}

/// Deletes the run's own pods and Jobs in a test namespace the run did not create (Jobs first,
/// in the background, so their pods go with them).
async fn remove_own_objects(i: &Install<'_>, left: &mut Vec<String>) {
    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::api::core::v1::Pod;
    let ns = i.test_namespace;
    let jobs: Api<Job> = Api::namespaced(i.client.clone(), ns);
    delete_labelled(jobs, ns, i.run_id, &DeleteParams::background(), "job", left).await;
    let pods: Api<Pod> = Api::namespaced(i.client.clone(), ns);
    delete_labelled(pods, ns, i.run_id, &DeleteParams::default(), "pod", left).await;
}

/// Deletes what `api` (in `ns`) holds of run `run_id`; notes what could not be deleted.
async fn delete_labelled<K>(
    api: Api<K>,
    ns: &str,
    run_id: &str,
    dp: &DeleteParams,
    kind: &str,
    left: &mut Vec<String>,
) where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let selector = crate::gpu_stack::ours::run_selector(run_id);
    let lp = kube::api::ListParams::default().labels(&selector);
    match api.list(&lp).await {
        Ok(l) => {
            for o in l.items {
                let name = kube::ResourceExt::name_any(&o);
                match api.delete(&name, dp).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => left.push(format!("{kind} {ns}/{name}: {e}")),
                }
            }
        }
        Err(e) => left.push(format!("{kind}s of run {run_id} in {ns}: {e}")),
    }
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
    let release = &plan.operator.release;
    if ec2 {
        // The instances go, and the release with them.
    } else if let Some(found) = record.adopted_from {
        // Back to what the owner had, but only while the run's upgrade is the latest revision:
        // a change someone made meanwhile is theirs.
        match i.helm.status(&plan.operator).await {
            Ok(Some(r)) if Some(r.revision) == record.upgraded_to => {
                if let Err(e) = i.helm.rollback(&plan.operator, found, limit).await {
                    left.push(format!(
                        "helm release {release} is not rolled back to revision {found}: {e}"
                    ));
                }
            }
            Ok(Some(r)) if r.revision == found => {}
            Ok(Some(r)) => left.push(format!(
                "helm release {release} is at revision {}, not this run's upgrade: not rolled back to revision {found}",
                r.revision
            )),
            Ok(None) => left.push(format!(
                "helm release {release} is gone: it cannot be rolled back to revision {found}"
            )),
            Err(e) => left.push(format!(
                "helm release {release} is not rolled back to revision {found}: {e}"
            )),
        }
    } else if record.not_ours().is_none() {
        match i.helm.status(&plan.operator).await {
            Ok(Some(_)) => {
                if let Err(e) = i.helm.uninstall(&plan.operator, limit).await {
                    left.push(format!("helm release {release}: {e}"));
                }
            }
            Ok(None) => {}
            Err(e) if !created => left.push(format!("helm release {release}: unknown ({e})")),
            Err(_) => {}
        }
    }
    if created {
        return left;
    }
    let namespaces: Api<Namespace> = Api::all(i.client.clone());
    let mut ours = Vec::new();
    if record.test_namespace_created {
        ours.push(i.test_namespace);
    } else {
        remove_own_objects(i, &mut left).await;
    }
    // The operator's namespace by the same rule as its release.
    if record.not_ours().is_none() {
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
    use super::{InstallRecord, helm};

    /// helm's CRD race, as a loaded local cluster produced it, and failures that only look
    /// alike: a kind no CRD of the chart serves fails the same way only when helm names both.
    #[test]
    fn the_crd_race_is_told_from_other_helm_failures() {
        let e = |m: &str| helm::HelmError {
            action: "upgrade --install".into(),
            message: m.into(),
        };
        assert!(helm::crd_race(&e(
            "Error: unable to build kubernetes objects from release manifest: resource mapping not found for name: \"cluster-policy\" namespace: \"\" from \"\": no matches for kind \"ClusterPolicy\" in version \"nvidia.com/v1\"\nensure CRDs are installed first"
        )));
        assert!(!helm::crd_race(&e(
            "Error: INSTALLATION FAILED: cannot re-use a name that is still in use"
        )));
        assert!(!helm::crd_race(&e(
            "Error: unable to build kubernetes objects from release manifest: error validating data: unknown field \"spec.foo\""
        )));
    }

    #[test]
    fn only_a_release_the_run_installed_is_its_own() {
        let ours = InstallRecord {
            installing: true,
            ..InstallRecord::default()
        };
        assert_eq!(ours.not_ours(), None);
        let rows = [
            // A run that stopped before installing (a failed node list, missing permissions).
            (InstallRecord::default(), "did not install"),
            (
                InstallRecord {
                    verify_only: true,
                    ..InstallRecord::default()
                },
                "verify-only",
            ),
            (
                InstallRecord {
                    preexisting: true,
                    ..InstallRecord::default()
                },
                "existed before",
            ),
            (
                InstallRecord {
                    preexisting: true,
                    adopted_from: Some(3),
                    ..InstallRecord::default()
                },
                "rolled back to revision 3",
            ),
            // Verify-only finds no release: still not the run's to remove (nor its namespace).
            (
                InstallRecord {
                    verify_only: true,
                    preexisting: false,
                    ..InstallRecord::default()
                },
                "verify-only",
            ),
        ];
        for (record, why) in rows {
            let got = record.not_ours().unwrap_or_default();
            assert!(got.contains(why), "{record:?}: {got}");
        }
    }

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
