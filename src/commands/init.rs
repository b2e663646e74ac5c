//! `gpuconform init`: read an existing cluster's nodes and the GPU Operator's Deployment, and
//! write the starter plan (`plan::starter`) for the owner to confirm. Reads only; a file already
//! at `--out` is kept unless `--force`.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Node;
use kube::api::ListParams;
use kube::{Api, ResourceExt};

use crate::catalog::Catalog;
use crate::cli::InitArgs;
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::input::InputError;
use crate::k8s::K8sError;
use crate::output::Printer;
use crate::plan::starter::{Found, render};

/// The label the GPU Operator chart puts on the operator's Deployment.
const OPERATOR_COMPONENT: &str = "app.kubernetes.io/component=gpu-operator";

/// Writes the starter plan.
pub async fn init(args: InitArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let out = args.out.clone();
    let to_stdout = out.as_os_str() == "-";
    if !to_stdout && out.exists() && !args.force {
        return Err(InputError::file(
            &out,
            "already exists; pass --force to replace it, or --out another file",
        )
        .into());
    }
    let catalog = Catalog::resolve(&args.catalog)?;
    let cluster = crate::target::existing::connect(
        args.kubeconfig.clone(),
        args.context.clone(),
        Duration::from_secs(30),
    )
    .await?;
    let client = cluster.client;
    let nodes: Api<Node> = Api::all(client.clone());
    let nodes = nodes
        .list(&ListParams::default())
        .await
        .map_err(K8sError::api("list nodes"))?;
    // The operator's place is a convenience: a reader without the right to list Deployments
    // still gets a plan, with the defaults and a comment saying to fill them in.
    let deployments: Api<Deployment> = Api::all(client);
    let operator = match deployments
        .list(&ListParams::default().labels(OPERATOR_COMPONENT))
        .await
    {
        Ok(list) => list.items.first().map(|d| {
            let release = d
                .labels()
                .get("app.kubernetes.io/instance")
                .cloned()
                .unwrap_or_else(|| "gpu-operator".into());
            (d.namespace().unwrap_or_default(), release)
        }),
        Err(e) => {
            printer.warn(format!(
                "list the GPU Operator's Deployment: {}",
                crate::errors::chain(&e)
            ));
            None
        }
    };
    let kubeconfig = args.kubeconfig.as_ref().map(|k| {
        std::path::absolute(k)
            .unwrap_or_else(|_| k.clone())
            .display()
            .to_string()
    });
    let found = Found {
        kubeconfig,
        context: args.context.clone(),
        operator,
        when: chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    };
    let text = render(&nodes.items, &catalog, &found);
    if to_stdout {
        printer.result(text.trim_end());
        return Ok(exit_codes::OK);
    }
    std::fs::write(&out, &text)
        .map_err(|e| InputError::file(&out, format!("cannot write the plan: {e}")))?;
    let gpu = nodes
        .items
        .iter()
        .filter(|n| crate::gpu_stack::shows_nvidia_gpu(n))
        .count();
    printer.progress(format!(
        "init: {} nodes, {gpu} showing GPUs; confirm the expectations in {} before a run",
        nodes.items.len(),
        out.display()
    ));
    printer.result(out.display().to_string());
    Ok(exit_codes::OK)
}
