//! `secure-access`: access to GPUs is mediated by the resource framework, as the AI-conformance
//! suite's `TestSecureAcceleratorAccess` defines it. On every GPU node, with the node's
//! allocation mode (`super::alloc_mode`: a DRA claim, or a device-plugin limit):
//!
//! - `positive/<node>`: a pod that asks for one device sees exactly one;
//! - `negative/<node>`: a pod that asks for none, pinned to the same node, sees none;
//! - `multi-container/<node>`: of two containers in one pod, only the one that references the
//!   claim (or has the limit) sees the device; the other sees none.
//!
//! Each container runs the probe ([`crate::gpu_stack::probe`]) and its log must hold exactly one
//! result line, parsed exactly (`=10` is not `=1`).

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaim, ResourceSlice};
use kube::api::{DeleteParams, ListParams, LogParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::alloc_mode::{self, Mode};
use super::{Ctx, GpuNode, Outcome, left, no_nodes};
use crate::gpu_stack::{dra, gpu_resources, ours, probe, resources};
use crate::suite::Step;

/// The device count a probe log reports: exactly one line `RESULT: ACCELERATOR_COUNT=<n>`.
pub fn parse(log: &str) -> Result<u32, String> {
    let results: Vec<&str> = log
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(probe::PREFIX))
        .collect();
    match results.as_slice() {
        [] => Err(format!("no `{}<n>` line in its log", probe::PREFIX)),
        [one] => one[probe::PREFIX.len()..]
            .parse::<u32>()
            .map_err(|_| format!("`{one}` is not `{}<n>`", probe::PREFIX)),
        many => Err(format!("{} result lines in its log", many.len())),
    }
}

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let all_nodes: Vec<Node> = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    // DRA objects are optional: a device-plugin cluster may not serve them.
    let classes: Vec<DeviceClass> = Api::<DeviceClass>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let slices: Vec<ResourceSlice> = Api::<ResourceSlice>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    let image = step.str("image");
    let mut out = Vec::new();
    for g in nodes {
        let node = all_nodes.iter().find(|n| n.name_any() == g.name);
        // Each node's own mode: one node that cannot be decided does not stop the others.
        let one_node = std::slice::from_ref(&g.name);
        let mode = match alloc_mode::detect(&all_nodes, one_node, &classes, &slices) {
            Ok(m) => m.get(&g.name).copied().unwrap_or(Mode::DevicePlugin),
            Err(problems) => {
                out.push(Outcome::fail(
                    format!("positive/{}", g.name),
                    Some(&g.name),
                    format!("allocation mode: {}", problems.join("; ")),
                    problems.join("\n"),
                ));
                continue;
            }
        };
        let ask = match mode {
            Mode::Dra => Ask::Claim(dra_class(node, g)),
            Mode::DevicePlugin => Ask::Limit(plugin_resource(node)),
        };
        for case in [Case::Positive, Case::Negative, Case::MultiContainer] {
            out.push(one(ctx, &image, g, &ask, case, deadline).await);
        }
    }
    out
}

/// The DeviceClass of the node's devices: MIG devices under a MIG layout, else whole GPUs.
fn dra_class(node: Option<&Node>, g: &GpuNode) -> &'static str {
    let config = node
        .and_then(|n| n.labels().get(crate::gpu_stack::asks::MIG_CONFIG))
        .map(String::as_str);
    match super::mig::expected("mixed", config, g) {
        super::mig::MigExpectation::Devices(_) => dra::MIG_CLASS,
        _ => dra::GPU_CLASS,
    }
}

/// The device-plugin resource a probe asks for: whole GPUs when the node has them, else its
/// first allocatable `nvidia.com/*` resource (a MIG profile under mixed).
fn plugin_resource(node: Option<&Node>) -> String {
    let have = node.map(gpu_resources).unwrap_or_default();
    if have.get(resources::GPU).is_some_and(|(_, a)| *a > 0) {
        return resources::GPU.into();
    }
    have.into_iter()
        .find(|(k, (_, a))| k.starts_with(resources::PREFIX) && *a > 0)
        .map_or_else(|| resources::GPU.to_string(), |(k, _)| k)
}

#[derive(Debug, Clone)]
enum Ask {
    Claim(&'static str),
    Limit(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    Positive,
    Negative,
    MultiContainer,
}

impl Case {
    fn word(self) -> &'static str {
        match self {
            Self::Positive => "positive",
            Self::Negative => "negative",
            Self::MultiContainer => "multi-container",
        }
    }
    /// `(container, asks for a device)` in the pod.
    fn containers(self) -> &'static [(&'static str, bool)] {
        match self {
            Self::Positive => &[("probe", true)],
            Self::Negative => &[("probe", false)],
            Self::MultiContainer => &[("with-device", true), ("without-device", false)],
        }
    }
}

fn pod_object(ctx: &Ctx<'_>, name: &str, node: &str, image: &str, ask: &Ask, case: Case) -> Value {
    let mut labels = super::pods::labels(&ctx.run_id, probe::CHECK);
    labels[ours::CHECK_LABEL] = json!(probe::CHECK);
    let containers: Vec<Value> = case
        .containers()
        .iter()
        .map(|(c, wants)| {
            let mut v = json!({"name": c, "image": image, "command": ["sh", "-c", probe::SCRIPT]});
            if *wants {
                v["resources"] = match ask {
                    Ask::Claim(_) => json!({"claims": [{"name": "gpu"}]}),
                    Ask::Limit(r) => json!({"limits": {r.as_str(): "1"}}),
                };
            }
            v
        })
        .collect();
    let mut spec = json!({
        "restartPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
        "containers": containers,
    });
    if matches!(ask, Ask::Claim(_)) && case != Case::Negative {
        spec["resourceClaims"] = json!([{"name": "gpu", "resourceClaimName": name}]);
    }
    super::pods::restricted(&mut spec, Some(super::pods::NON_ROOT_USER));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels}, "spec": spec})
}

/// One case on one node: create, wait for every container's result line, judge, clean up.
async fn one(
    ctx: &Ctx<'_>,
    image: &str,
    g: &GpuNode,
    ask: &Ask,
    case: Case,
    deadline: Instant,
) -> Outcome {
    let subject = format!("{}/{}", case.word(), g.name);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let claims: Api<ResourceClaim> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let base = format!(
        "gpuconform-probe-{}-{}",
        case.word(),
        ours::run_label(&g.name)
    );
    let name = base[..base.len().min(60)].trim_end_matches('-').to_string();
    let with_claim = matches!(ask, Ask::Claim(_)) && case != Case::Negative;
    let result = async {
        if let (true, Ask::Claim(class)) = (with_claim, ask) {
            let c = json!({
                "apiVersion": "resource.k8s.io/v1", "kind": "ResourceClaim",
                "metadata": {"name": name, "labels": super::pods::labels(&ctx.run_id, probe::CHECK)},
                "spec": {"devices": {"requests": [{"name": "gpu", "exactly": {"deviceClassName": class, "allocationMode": "ExactCount", "count": 1}}]}},
            });
            let c: ResourceClaim = serde_json::from_value(c).map_err(|e| e.to_string())?;
            claims.create(&PostParams::default(), &c).await.map_err(|e| crate::errors::chain(&e))?;
        }
        let p: Pod = serde_json::from_value(pod_object(ctx, &name, &g.name, image, ask, case)).map_err(|e| e.to_string())?;
        pods.create(&PostParams::default(), &p).await.map_err(|e| crate::errors::chain(&e))?;
        crate::k8s::wait::object(pods.clone(), &name, &format!("pod {name} running"), left(deadline), |p: Option<&Pod>| {
            p.and_then(|p| p.status.as_ref()).and_then(|s| s.phase.as_deref()) == Some("Running")
        })
        .await
        .map_err(|e| crate::errors::chain(&e))?;
        let mut seen = BTreeMap::new();
        for (container, wants) in case.containers() {
            let want = u32::from(*wants);
            let n = read_count(&pods, &name, container, deadline).await?;
            seen.insert(*container, n);
            if n != want {
                return Err(format!(
                    "container {container} sees {n} GPU device{}, expected {want}{}",
                    if n == 1 { "" } else { "s" },
                    if *wants { "" } else { " (it asks for none)" }
                ));
            }
        }
        Ok(seen)
    }
    .await;
    let _ = pods
        .delete(&name, &DeleteParams::default().grace_period(0))
        .await;
    if with_claim {
        let _ =
            crate::k8s::wait::deleted(pods.clone(), &name, None, "probe pod", left(deadline)).await;
        let _ = claims.delete(&name, &DeleteParams::default()).await;
    }
    let how = match (ask, case) {
        (_, Case::Negative) => "asking for no GPU".to_string(),
        (Ask::Claim(class), _) => format!("a claim of DeviceClass {class}"),
        (Ask::Limit(r), _) => format!("a limit of 1 {r}"),
    };
    match result {
        Ok(seen) => {
            let s: Vec<String> = seen.iter().map(|(c, n)| format!("{c} sees {n}")).collect();
            Outcome::pass(
                subject,
                Some(&g.name),
                format!("pod {name} on {} ({how}): {}", g.name, s.join(", ")),
            )
        }
        Err(why) => Outcome::fail(
            subject,
            Some(&g.name),
            format!("{}: pod {name} ({how}): {why}", g.name),
            "",
        ),
    }
}

/// The count a container's log reports, once the result line is there.
async fn read_count(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    deadline: Instant,
) -> Result<u32, String> {
    let lp = LogParams {
        container: Some(container.to_string()),
        ..LogParams::default()
    };
    // kwok serves a container's log once it is written; the probe prints at once.
    let mut wait = std::time::Duration::from_millis(200);
    loop {
        let log = pods.logs(pod, &lp).await.unwrap_or_default();
        match parse(&log) {
            Ok(n) => return Ok(n),
            Err(why) if left(deadline) < wait * 2 => {
                return Err(format!("container {container}: {why}"));
            }
            Err(_) => {}
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(std::time::Duration::from_secs(2));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_result_line_is_parsed_exactly() {
        assert_eq!(parse("RESULT: ACCELERATOR_COUNT=1\n"), Ok(1));
        assert_eq!(parse("x\n  RESULT: ACCELERATOR_COUNT=0  \n"), Ok(0));
        assert_eq!(parse("RESULT: ACCELERATOR_COUNT=10"), Ok(10));
        assert_ne!(parse("RESULT: ACCELERATOR_COUNT=10"), Ok(1));
        assert!(parse("RESULT: ACCELERATOR_COUNT=1x").is_err());
        assert!(parse("RESULT: ACCELERATOR_COUNT=").is_err());
        assert!(parse("nothing").is_err());
        assert!(parse("RESULT: ACCELERATOR_COUNT=1\nRESULT: ACCELERATOR_COUNT=1").is_err());
    }
}
