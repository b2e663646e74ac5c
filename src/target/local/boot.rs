//! The boot script of a local cluster, one component after another: PKI and kubeconfigs, etcd,
//! the API server (ready on `/readyz`), controller manager and scheduler (their leases), kwok,
//! the default ServiceAccount, every node Ready. It owns the children it starts, so a failure
//! at any step stops them again.

use std::time::Instant;

use futures::future::{self, Either};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::Api;

use crate::catalog::Catalog;
use crate::fixture::ClusterFixture;
use crate::k8s::{self, K8sError, wait};
use process::Child;
use state::{ClusterDir, ClusterState};
use tools::Tools;

use super::*;

/// The startup in progress; owns the children so a failure can stop them.
pub(super) struct Starting {
    pub(super) dir: ClusterDir,
    pub(super) children: Vec<Child>,
}

impl Starting {
    pub(super) async fn run(
        &mut self,
        fixture: &ClusterFixture,
        catalog: &Catalog,
        tools: &Tools,
        opts: &UpOptions,
        started: Instant,
        progress: &(dyn Fn(String) + Sync),
    ) -> Result<(ClusterState, kube::Client), LocalError> {
        let deadline = started + opts.timeout;
        let remaining = || deadline.saturating_duration_since(Instant::now());
        let prepared = setup::prepare(&self.dir, tools)?;
        let ports = prepared.ports;
        let mut state = ClusterState {
            version: state::STATE_VERSION,
            cluster: fixture.name.clone(),
            fixture: fixture.file.clone(),
            server: prepared.server.clone(),
            kubernetes_version: tools.kubernetes_version().to_string(),
            started_at: chrono::Utc::now().to_rfc3339(),
            ready_seconds: 0.0,
            nodes: fixture.node_names(),
            processes: Vec::new(),
            supervisor: supervisor_record(),
        };

        progress(format!("starting etcd on 127.0.0.1:{}", ports.etcd_client));
        self.spawn(
            &mut state,
            "etcd",
            tools,
            components::etcd_args(&ports, &self.dir.etcd()),
            &[ports.etcd_client, ports.etcd_peer],
        )?;
        progress(format!(
            "starting kube-apiserver {} on https://127.0.0.1:{}",
            tools.kubernetes_version(),
            ports.apiserver
        ));
        let api_args = components::apiserver_args(
            &ports,
            &prepared.files,
            &self.dir.pki().join("apiserver"),
            &fixture.feature_gates,
        );
        self.spawn(
            &mut state,
            "kube-apiserver",
            tools,
            api_args,
            &[ports.apiserver],
        )?;

        let client = k8s::client_from_kubeconfig(&self.dir.kubeconfig()).await?;
        let limit = remaining();
        let ready = {
            let exit = self.first_exit();
            wait::api_ready(&client, limit, exit).await
        };
        match ready {
            Ok(()) => {}
            Err(wait::NotReady::Aborted(_)) => return Err(self.exited_error()),
            Err(wait::NotReady::Timeout(last)) => {
                return Err(LocalError::ApiNotReady {
                    limit,
                    last,
                    log: self.dir.log("kube-apiserver"),
                });
            }
        }
        progress(format!(
            "API server ready after {:.1}s",
            started.elapsed().as_secs_f64()
        ));

        setup::install_kwok_crds(&client, tools, remaining()).await?;
        let node_objects = nodes::nodes(fixture, catalog, tools.kubernetes_version());
        progress(format!(
            "creating {} nodes of fixture `{}`",
            node_objects.len(),
            fixture.name
        ));
        let node_api: Api<Node> = Api::all(client.clone());
        for node in &node_objects {
            let name = node.metadata.name.clone().unwrap_or_default();
            node_api
                .create(&Default::default(), node)
                .await
                .map_err(K8sError::api(format!("create node {name}")))?;
        }

        progress("starting kube-controller-manager, kube-scheduler and kwok".into());
        let kcm_args = components::controller_manager_args(
            &ports,
            &prepared.files,
            &self.dir.pki().join("controller-manager"),
            &fixture.feature_gates,
        );
        self.spawn(
            &mut state,
            "kube-controller-manager",
            tools,
            kcm_args,
            &[ports.controller_manager],
        )?;
        let sched_args = components::scheduler_args(
            &ports,
            &prepared.files,
            &self.dir.pki().join("scheduler"),
            &fixture.feature_gates,
        );
        self.spawn(
            &mut state,
            "kube-scheduler",
            tools,
            sched_args,
            &[ports.scheduler],
        )?;
        let kwok_args = components::kwok_args(&ports, &prepared.files, &prepared.kwok_configs);
        self.spawn(&mut state, "kwok", tools, kwok_args, &[ports.kwok])?;

        let leases: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), "default");
        let has_holder = |l: Option<&Lease>| {
            l.and_then(|l| l.spec.as_ref())
                .and_then(|s| s.holder_identity.as_ref())
                .is_some_and(|h| !h.is_empty())
        };
        let exists = |s: Option<&ServiceAccount>| s.is_some();
        let names = fixture.node_names();
        let all_ready = async {
            tokio::try_join!(
                wait::object(
                    leases.clone(),
                    "kube-controller-manager",
                    "the controller manager to take its leader lease",
                    remaining(),
                    has_holder
                ),
                wait::object(
                    leases.clone(),
                    "kube-scheduler",
                    "the scheduler to take its leader lease",
                    remaining(),
                    has_holder
                ),
                wait::object(
                    sas,
                    "default",
                    "the default service account (serviceaccount controller)",
                    remaining(),
                    exists
                ),
                wait::nodes_ready(node_api.clone(), &names, remaining()),
            )
        };
        let exit = self.first_exit();
        let joined = {
            let all_ready = std::pin::pin!(all_ready);
            let exit = std::pin::pin!(exit);
            match future::select(all_ready, exit).await {
                Either::Left((r, _)) => Some(r),
                Either::Right(_) => None,
            }
        };
        match joined {
            Some(r) => {
                r?;
            }
            None => return Err(self.exited_error()),
        }
        state.ready_seconds = started.elapsed().as_secs_f64();
        self.dir
            .write_state(&state)
            .map_err(|source| LocalError::Io {
                path: self.dir.state_file(),
                source,
            })?;
        Ok((state, client))
    }

    pub(super) fn spawn(
        &mut self,
        state: &mut ClusterState,
        name: &str,
        tools: &Tools,
        args: Vec<String>,
        ports: &[u16],
    ) -> Result<(), LocalError> {
        let exe = tools.bin(name);
        let mut env = Vec::new();
        if name == "kwok" {
            // kwok always prepends ~/.kwok/kwok.yaml when it exists; give it a HOME of its own
            // so a stale file on this machine cannot change the simulation.
            env.push(("HOME".to_string(), self.dir.kwok().display().to_string()));
        }
        let child = process::spawn(
            process::Spec {
                name,
                exe: &exe,
                args,
                env,
                ports: ports.to_vec(),
                log: self.dir.log(name),
            },
            true,
        )?;
        state.processes.push(child.record.clone());
        self.children.push(child);
        // Record every start at once, so `local down` can clean up even if this process dies.
        self.dir
            .write_state(state)
            .map_err(|source| LocalError::Io {
                path: self.dir.state_file(),
                source,
            })
    }

    /// Resolves when any child exits.
    pub(super) fn first_exit(&mut self) -> impl std::future::Future<Output = String> + '_ {
        let waits: Vec<_> = self
            .children
            .iter_mut()
            .map(|c| {
                let name = c.record.name.clone();
                Box::pin(async move { format!("{name}: {}", c.exited().await) })
            })
            .collect();
        async move {
            if waits.is_empty() {
                future::pending().await
            } else {
                future::select_all(waits).await.0
            }
        }
    }

    pub(super) fn exited_error(&mut self) -> LocalError {
        for c in &mut self.children {
            if let Some(status) = c.try_exited() {
                return LocalError::ComponentExited {
                    component: c.record.name.clone(),
                    status,
                    log: c.record.log.clone(),
                    tail: process::log_tail(&c.record.log, 15),
                };
            }
        }
        LocalError::ComponentExited {
            component: "a component".into(),
            status: "unknown".into(),
            log: self.dir.logs(),
            tail: String::new(),
        }
    }
}
