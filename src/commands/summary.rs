//! `run --summary-configmap [NAMESPACE/]NAME`: the finished run's summary in a ConfigMap, for
//! in-cluster runs (the CronJob of `charts/gpuconform`) whose reports sit on a volume nobody
//! looks at: `kubectl get configmap NAME -o yaml` says how last night went, and which run folder
//! `gpuconform retrieve` should copy.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kube::api::PostParams;

use crate::plan::{Plan, Target};
use crate::report::RunRecord;
use crate::target::TargetFlags;

/// ConfigMaps hold at most 1 MiB; the summary is cut well below that.
const MAX_SUMMARY: usize = 512 * 1024;

/// Where the ConfigMap goes: `NAMESPACE/NAME`, or `NAME` in the pod's own namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// Checks the flag before anything starts; `Err` is the message for the flag.
pub fn place(flag: &str, plan: &Plan) -> Result<Place, String> {
    if !matches!(plan.target, Target::Kubeconfig { .. }) {
        return Err("only for a `kubeconfig` target: the cluster outlives the run".into());
    }
    let (namespace, name) = match flag.split_once('/') {
        Some((ns, n)) => (ns.to_string(), n.to_string()),
        None => {
            let file = crate::target::in_cluster::dir().join("namespace");
            let ns = std::fs::read_to_string(&file)
                .map(|s| s.trim().to_string())
                .map_err(|e| {
                    format!(
                        "give NAMESPACE/NAME outside a pod ({}: {e})",
                        file.display()
                    )
                })?;
            (ns, flag.to_string())
        }
    };
    for (what, v) in [("namespace", &namespace), ("name", &name)] {
        if !crate::plan::is_dns_label(v) {
            return Err(format!("`{v}` is not a {what} (a DNS label)"));
        }
    }
    Ok(Place { namespace, name })
}

/// The ConfigMap's data: the counts, the exit code, the run folder and summary.md.
pub fn data(
    record: &RunRecord,
    code: u8,
    dir: &std::path::Path,
) -> std::collections::BTreeMap<String, String> {
    let (passed, failed, errors, skipped) = record.counts();
    let mut summary = std::fs::read_to_string(dir.join("summary.md")).unwrap_or_default();
    if summary.len() > MAX_SUMMARY {
        let mut cut = MAX_SUMMARY;
        while !summary.is_char_boundary(cut) {
            cut -= 1;
        }
        summary.truncate(cut);
        summary.push_str("\n\n(cut: the whole summary is in the run folder)\n");
    }
    [
        ("runId", record.run_id.clone()),
        ("plan", record.plan.clone()),
        ("exitCode", code.to_string()),
        ("success", (code == crate::exit_codes::OK).to_string()),
        ("passed", passed.to_string()),
        ("failed", failed.to_string()),
        ("errors", errors.to_string()),
        ("skipped", skipped.to_string()),
        ("startedAt", record.started_at.clone()),
        ("finishedAt", chrono::Utc::now().to_rfc3339()),
        ("reports", dir.display().to_string()),
        ("summary.md", summary),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Creates the ConfigMap, or replaces the last run's.
pub async fn write(
    place: &Place,
    plan: &Plan,
    flags: &TargetFlags,
    data: std::collections::BTreeMap<String, String>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let Target::Kubeconfig { path, context } = &plan.target else {
        return Err("not a kubeconfig target".into());
    };
    let (path, context) = flags.resolve(path.as_ref(), context.as_ref());
    let cluster =
        crate::target::existing::connect(path, context, std::time::Duration::from_secs(30)).await?;
    let api: Api<ConfigMap> = Api::namespaced(cluster.client, &place.namespace);
    let mut cm: ConfigMap = serde_json::from_value(serde_json::json!({
        "metadata": {
            "name": place.name,
            "labels": {"app.kubernetes.io/managed-by": "gpuconform", "app.kubernetes.io/part-of": "gpuconform"},
        },
    }))?;
    cm.data = Some(data);
    match api.get_opt(&place.name).await? {
        Some(old) => {
            cm.metadata.resource_version = old.metadata.resource_version;
            api.replace(&place.name, &PostParams::default(), &cm)
                .await?;
        }
        None => {
            api.create(&PostParams::default(), &cm).await?;
        }
    }
    Ok(())
}
