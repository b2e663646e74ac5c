//! `dra`: GPUs allocated through Dynamic Resource Allocation (`resource.k8s.io/v1`) as NVIDIA's
//! DRA driver serves them. The API is served and the driver's DeviceClasses exist; each GPU
//! node's pool is complete and holds exactly the devices its expectation says (whole GPUs, or
//! the MIG devices of its layout) with attributes that agree with the expectation (product,
//! architecture, compute capability, memory, driver) and with the node's GFD labels; a claim
//! per node is allocated by the scheduler from that node's pool, its pod runs there, and the
//! allocation is released when the pod goes; two claims get distinct devices; a selector that
//! matches nothing leaves its pod Pending with the scheduler's reason; repeated create/delete
//! cycles leave no allocation behind.
//!
//! The expectation is the plan's or the catalog's, never the slice's own devices.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Node, Pod};
use k8s_openapi::api::resource::v1::{DeviceClass, ResourceClaim, ResourceSlice};
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

use super::dra_judge::{self, Want};
use super::{Ctx, GpuNode, Outcome, left, no_nodes};
use crate::gpu_stack::{dra, resources};
use crate::suite::Step;

/// Runs the check.
pub async fn run(step: &Step, ctx: &Ctx<'_>, nodes: &[GpuNode], deadline: Instant) -> Vec<Outcome> {
    if nodes.is_empty() {
        return no_nodes(ctx);
    }
    let mut out = Vec::new();
    let classes: Api<DeviceClass> = Api::all(ctx.client.clone());
    let have = match classes.list(&ListParams::default()).await {
        Ok(l) => l.items,
        Err(e) => {
            out.push(Outcome::fail(
                "api",
                None,
                format!(
                    "resource.k8s.io/v1 DeviceClasses cannot be listed: {}",
                    crate::errors::chain(&e)
                ),
                "",
            ));
            return out;
        }
    };
    let names: Vec<String> = have.iter().map(ResourceExt::name_any).collect();
    let node_objs: BTreeMap<String, Node> = Api::<Node>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await
        .map(|l| l.items.into_iter().map(|n| (n.name_any(), n)).collect())
        .unwrap_or_default();
    let wants: BTreeMap<String, Result<Want, String>> = nodes
        .iter()
        .map(|g| {
            let w = match node_objs.get(&g.name) {
                Some(n) => dra_judge::want(n, g, ctx.plan.expect_driver.as_ref()),
                None => Err("node not found".into()),
            };
            (g.name.clone(), w)
        })
        .collect();
    let need_mig = wants.values().any(|w| w.as_ref().is_ok_and(|w| w.mig));
    let mut missing: Vec<&str> = vec![dra::GPU_CLASS];
    if need_mig {
        missing.push(dra::MIG_CLASS);
    }
    missing.retain(|c| !names.iter().any(|n| n == c));
    if missing.is_empty() {
        out.push(Outcome::pass(
            "api",
            None,
            format!(
                "resource.k8s.io/v1 served; DeviceClasses: {}",
                names.join(", ")
            ),
        ));
    } else {
        out.push(Outcome::fail(
            "api",
            None,
            format!(
                "DeviceClass {} missing (the cluster has: {})",
                missing.join(", "),
                or_none(&names)
            ),
            "",
        ));
    }

    // Each node's pool, once the driver has published it (or the deadline says it never will).
    let sizes: BTreeMap<String, usize> = wants
        .iter()
        .filter_map(|(n, w)| w.as_ref().ok().map(|w| (n.clone(), w.devices)))
        .collect();
    let slices = super::claims::settled(ctx, &sizes, deadline).await;
    // Every GPU node allocates through DRA, and only through it.
    let all_nodes: Vec<Node> = node_objs.values().cloned().collect();
    let gpu_names: Vec<String> = nodes.iter().map(|g| g.name.clone()).collect();
    out.push(
        match super::alloc_mode::detect(&all_nodes, &gpu_names, &have, &slices) {
            Ok(modes) => {
                let other: Vec<String> = modes
                    .iter()
                    .filter(|(_, m)| **m != super::alloc_mode::Mode::Dra)
                    .map(|(n, m)| format!("{n} ({})", m.word()))
                    .collect();
                if other.is_empty() {
                    Outcome::pass(
                        "mode",
                        None,
                        format!(
                            "every GPU node allocates through DRA: {}",
                            gpu_names.join(", ")
                        ),
                    )
                } else {
                    Outcome::fail(
                        "mode",
                        None,
                        format!("not allocated through DRA: {}", other.join(", ")),
                        "",
                    )
                }
            }
            Err(problems) => Outcome::fail(
                "mode",
                None,
                match problems.len() {
                    1 => problems[0].clone(),
                    n => format!("{} (and {} more)", problems[0], n - 1),
                },
                problems.join("\n"),
            ),
        },
    );
    let mut allocatable = Vec::new();
    for g in nodes {
        let w = match &wants[&g.name] {
            Ok(w) => w,
            Err(why) => {
                out.push(Outcome::fail(
                    g.name.clone(),
                    Some(&g.name),
                    format!("{}: {why}", g.name),
                    "",
                ));
                continue;
            }
        };
        let labels = node_objs
            .get(&g.name)
            .map(|n| n.labels().clone())
            .unwrap_or_default();
        let mine: Vec<&ResourceSlice> = slices
            .iter()
            .filter(|s| {
                s.spec.driver == dra::DRIVER && s.spec.node_name.as_deref() == Some(g.name.as_str())
            })
            .collect();
        match dra_judge::judge(&g.name, &mine, w, g, &labels) {
            Ok(detail) => {
                out.push(Outcome::pass(g.name.clone(), Some(&g.name), detail));
                allocatable.push((g, w.clone()));
            }
            Err((msg, detail)) => {
                out.push(Outcome::fail(g.name.clone(), Some(&g.name), msg, detail))
            }
        }
    }

    // Claims, through the real scheduler.
    let image = step.str("image");
    for (g, w) in &allocatable {
        out.push(claim_case(ctx, &image, g, w, 1, deadline).await);
        if w.devices >= 2 {
            out.push(claim_case(ctx, &image, g, w, 2, deadline).await);
        }
    }
    if let Some((g, w)) = allocatable.first() {
        out.push(unsatisfiable(ctx, &image, g, w, deadline).await);
        let cycles = step.int("cycles").max(1);
        let mut failed = None;
        for i in 0..cycles {
            let o = claim_case(ctx, &image, g, w, 1, deadline).await;
            if o.status != crate::report::Status::Passed {
                failed = Some(format!(
                    "cycle {}: {}",
                    i + 1,
                    o.message.unwrap_or_default()
                ));
                break;
            }
        }
        out.push(match (failed, leaked(ctx).await) {
            (Some(why), _) => Outcome::fail("cycles", Some(&g.name), why, ""),
            (None, Err(left)) => Outcome::fail(
                "cycles",
                Some(&g.name),
                format!("after {cycles} create/delete cycles on {}: {left}", g.name),
                "",
            ),
            (None, Ok(())) => Outcome::pass(
                "cycles",
                Some(&g.name),
                format!(
                    "{cycles} create/delete cycles on {}: no claim or allocation left",
                    g.name
                ),
            ),
        });
    }
    out
}

fn or_none(v: &[String]) -> String {
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// A claim's object for one device of the node's class (`selector`: an extra CEL expression).
fn claim(name: &str, ctx: &Ctx<'_>, class: &str, selector: Option<&str>) -> Value {
    let mut exactly = json!({"deviceClassName": class, "allocationMode": "ExactCount", "count": 1});
    if let Some(cel) = selector {
        exactly["selectors"] = json!([{"cel": {"expression": cel}}]);
    }
    json!({
        "apiVersion": "resource.k8s.io/v1",
        "kind": "ResourceClaim",
        "metadata": {"name": name, "labels": super::pods::labels(&ctx.run_id, "dra")},
        "spec": {"devices": {"requests": [{"name": "gpu", "exactly": exactly}]}},
    })
}

/// A pod on `node` that uses claim `claim`.
fn pod(name: &str, ctx: &Ctx<'_>, node: &str, claim: &str, image: &str) -> Value {
    let mut spec = json!({
        "restartPolicy": "Never",
        "nodeSelector": {"kubernetes.io/hostname": node},
        "tolerations": [{"key": resources::GPU, "operator": "Exists", "effect": "NoSchedule"}],
        "resourceClaims": [{"name": "gpu", "resourceClaimName": claim}],
        "containers": [{"name": "probe", "image": image, "resources": {"claims": [{"name": "gpu"}]}}],
    });
    super::pods::restricted(&mut spec, Some(super::pods::NON_ROOT_USER));
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": super::pods::labels(&ctx.run_id, "dra")}, "spec": spec})
}

async fn create<K>(api: &Api<K>, v: Value) -> Result<K, String>
where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + serde::Serialize,
{
    let obj: K = serde_json::from_value(v).map_err(|e| e.to_string())?;
    api.create(&PostParams::default(), &obj)
        .await
        .map_err(|e| crate::errors::chain(&e))
}

/// The pod is Running, or the scheduler gave up on it (its PodScheduled condition says why).
fn running_or_unschedulable(p: Option<&Pod>) -> bool {
    p.and_then(|p| p.status.as_ref()).is_some_and(|s| {
        s.phase.as_deref() == Some("Running")
            || s.conditions.iter().flatten().any(|c| {
                c.type_ == "PodScheduled"
                    && c.status == "False"
                    && c.reason.as_deref() == Some("Unschedulable")
            })
    })
}

fn unschedulable_reason(p: &Pod) -> Option<String> {
    p.status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find_map(|c| {
            (c.type_ == "PodScheduled" && c.status == "False")
                .then(|| c.message.clone().unwrap_or_default())
        })
}

/// `n` claims on `g`, each with its pod: allocated from the node's pool, distinct devices,
/// pods Running there, released when the pods go.
async fn claim_case(
    ctx: &Ctx<'_>,
    image: &str,
    g: &GpuNode,
    w: &Want,
    n: usize,
    deadline: Instant,
) -> Outcome {
    let subject = if n == 1 {
        format!("claim/{}", g.name)
    } else {
        format!("distinct/{}", g.name)
    };
    let claims: Api<ResourceClaim> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let base = format!(
        "gpuconform-dra-{}",
        crate::gpu_stack::ours::run_label(&g.name)
    );
    let names: Vec<String> = (0..n)
        .map(|i| format!("{}-{i}", &base[..base.len().min(50)]))
        .collect();
    let result = async {
        for name in &names {
            create(&claims, claim(name, ctx, w.class(), None)).await?;
            create(&pods, pod(name, ctx, &g.name, name, image)).await?;
        }
        let mut devices = Vec::new();
        for name in &names {
            let p = crate::k8s::wait::object(
                pods.clone(),
                name,
                &format!("pod {name}"),
                left(deadline),
                running_or_unschedulable,
            )
            .await
            .map_err(|e| crate::errors::chain(&e))?;
            if let Some(why) = unschedulable_reason(&p)
                .filter(|_| p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running"))
            {
                return Err(format!("pod {name} is not scheduled: {why}"));
            }
            let c = claims
                .get(name)
                .await
                .map_err(|e| crate::errors::chain(&e))?;
            let (pool, device) =
                dra_judge::allocated(&c).ok_or_else(|| format!("claim {name} is not allocated"))?;
            if pool != g.name {
                return Err(format!(
                    "claim {name} got {device} of pool {pool}, not of {}",
                    g.name
                ));
            }
            devices.push(device);
        }
        let mut unique = devices.clone();
        unique.sort();
        unique.dedup();
        if unique.len() != devices.len() {
            return Err(format!(
                "{n} claims got the same device: {}",
                devices.join(", ")
            ));
        }
        for name in &names {
            let _ = pods
                .delete(name, &DeleteParams::default().grace_period(0))
                .await;
            crate::k8s::wait::deleted(
                pods.clone(),
                name,
                None,
                &format!("pod {name}"),
                left(deadline),
            )
            .await
            .map_err(|e| crate::errors::chain(&e))?;
            crate::k8s::wait::object(
                claims.clone(),
                name,
                &format!("claim {name} released"),
                left(deadline),
                |c: Option<&ResourceClaim>| {
                    c.is_some_and(|c| {
                        c.status
                            .as_ref()
                            .and_then(|s| s.reserved_for.as_ref())
                            .is_none_or(Vec::is_empty)
                    })
                },
            )
            .await
            .map_err(|e| {
                format!(
                    "{}: still reserved after its pod was deleted",
                    crate::errors::chain(&e)
                )
            })?;
        }
        Ok(devices)
    }
    .await;
    for name in &names {
        let _ = pods
            .delete(name, &DeleteParams::default().grace_period(0))
            .await;
        let _ = claims.delete(name, &DeleteParams::default()).await;
    }
    for name in &names {
        let _ =
            crate::k8s::wait::deleted(claims.clone(), name, None, "claim", left(deadline)).await;
    }
    match result {
        Ok(devices) => Outcome::pass(
            subject,
            Some(&g.name),
            format!(
                "{} allocated from pool {} to pods that ran there, released when they went",
                devices.join(" and "),
                g.name
            ),
        ),
        Err(why) => Outcome::fail(subject, Some(&g.name), format!("{}: {why}", g.name), ""),
    }
}

/// A claim whose selector matches no device leaves its pod Pending with the scheduler's reason.
async fn unsatisfiable(
    ctx: &Ctx<'_>,
    image: &str,
    g: &GpuNode,
    w: &Want,
    deadline: Instant,
) -> Outcome {
    let claims: Api<ResourceClaim> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let name = "gpuconform-dra-unsatisfiable";
    let cel = format!(
        "device.attributes['{}'].productName == 'gpuconform-no-such-gpu'",
        dra::DRIVER
    );
    let result = async {
        create(&claims, claim(name, ctx, w.class(), Some(&cel))).await?;
        create(&pods, pod(name, ctx, &g.name, name, image)).await?;
        let p = crate::k8s::wait::object(
            pods.clone(),
            name,
            "unsatisfiable pod",
            left(deadline),
            running_or_unschedulable,
        )
        .await
        .map_err(|e| crate::errors::chain(&e))?;
        match unschedulable_reason(&p) {
            Some(why) if p.status.as_ref().and_then(|s| s.phase.as_deref()) != Some("Running") => {
                Ok(why)
            }
            _ => Err("a claim that matches no device was allocated and its pod runs".to_string()),
        }
    }
    .await;
    let _ = pods
        .delete(name, &DeleteParams::default().grace_period(0))
        .await;
    let _ = claims.delete(name, &DeleteParams::default()).await;
    let _ = crate::k8s::wait::deleted(claims.clone(), name, None, "claim", left(deadline)).await;
    match result {
        Ok(why) => Outcome::pass(
            "unsatisfiable",
            None,
            format!("pod Pending as it should: {why}"),
        ),
        Err(why) => Outcome::fail("unsatisfiable", None, why, ""),
    }
}

/// Claims of this check still there, or still allocated.
async fn leaked(ctx: &Ctx<'_>) -> Result<(), String> {
    let claims: Api<ResourceClaim> = Api::namespaced(ctx.client.clone(), &ctx.test_namespace);
    let lp = ListParams::default().labels(&crate::gpu_stack::ours::run_selector(&ctx.run_id));
    let left: Vec<String> = claims
        .list(&lp)
        .await
        .map_err(|e| crate::errors::chain(&e))?
        .items
        .iter()
        .map(ResourceExt::name_any)
        .collect();
    if left.is_empty() {
        Ok(())
    } else {
        Err(format!("claims left: {}", left.join(", ")))
    }
}
