//! Waits: a condition over objects, a deadline, and a watch.
//!
//! Waiting is never sleep-and-poll on the API: each wait opens a watch and returns as soon as the
//! condition holds, or fails at its deadline naming what it waited for. The one exception is the
//! API server's own readiness, where nothing exists to watch yet: there [`api_ready`] retries
//! `/readyz` with a short exponential backoff, and gives up early when the caller's `abort`
//! future resolves (the API server process exited).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use futures::TryStreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::{WatchStreamExt, watcher};

use super::K8sError;

/// Why the API server never became ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotReady {
    /// The deadline passed; the last error seen.
    Timeout(String),
    /// The caller's abort future resolved first; its text.
    Aborted(String),
}

/// Waits until `GET /readyz` answers `ok`, the deadline passes, or `abort` resolves.
pub async fn api_ready(
    client: &kube::Client,
    limit: Duration,
    abort: impl Future<Output = String>,
) -> Result<(), NotReady> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut abort = std::pin::pin!(abort);
    let mut delay = Duration::from_millis(20);
    let mut last;
    loop {
        let attempt = async {
            let req = http::Request::get("/readyz")
                .body(Vec::new())
                .map_err(|e| e.to_string())?;
            let body = client.request_text(req).await.map_err(|e| e.to_string())?;
            if body.trim() == "ok" {
                Ok(())
            } else {
                Err(format!("readyz said: {}", body.trim()))
            }
        };
        let per_try = deadline
            .saturating_duration_since(tokio::time::Instant::now())
            .min(Duration::from_secs(5));
        tokio::select! {
            r = tokio::time::timeout(per_try, attempt) => match r {
                Ok(Ok(())) => return Ok(()),
                Ok(Err(e)) => last = e,
                Err(_) => last = "readyz did not answer within 5s".into(),
            },
            why = &mut abort => return Err(NotReady::Aborted(why)),
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(NotReady::Timeout(last));
        }
        tokio::select! {
            () = tokio::time::sleep(delay) => {}
            why = &mut abort => return Err(NotReady::Aborted(why)),
        }
        delay = (delay * 2).min(Duration::from_millis(500));
    }
}

/// Waits until the named object is gone; with `uid`, until that incarnation is gone (a new
/// object of the same name does not count as the old one still existing).
pub async fn deleted<K>(
    api: Api<K>,
    name: &str,
    uid: Option<&str>,
    what: &str,
    limit: Duration,
) -> Result<(), K8sError>
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    let uid = uid.map(str::to_string);
    let cond = move |o: Option<&K>| match (o, &uid) {
        (None, _) => true,
        (Some(o), Some(uid)) => o.meta().uid.as_ref() != Some(uid),
        (Some(_), None) => false,
    };
    match tokio::time::timeout(limit, kube::runtime::wait::await_condition(api, name, cond)).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(source)) => Err(K8sError::Watch {
            what: what.to_string(),
            source,
        }),
        Err(_) => Err(K8sError::Timeout {
            what: what.to_string(),
            limit,
        }),
    }
}

/// Waits until the named object exists and satisfies `cond`.
pub async fn object<K>(
    api: Api<K>,
    name: &str,
    what: &str,
    limit: Duration,
    cond: impl kube::runtime::wait::Condition<K>,
) -> Result<K, K8sError>
where
    K: Clone + std::fmt::Debug + Send + serde::de::DeserializeOwned + kube::Resource + 'static,
{
    match tokio::time::timeout(limit, kube::runtime::wait::await_condition(api, name, cond)).await {
        Ok(Ok(Some(obj))) => Ok(obj),
        Ok(Ok(None)) => Err(K8sError::Timeout {
            what: format!("{what} (it was deleted)"),
            limit,
        }),
        Ok(Err(source)) => Err(K8sError::Watch {
            what: what.to_string(),
            source,
        }),
        Err(_) => Err(K8sError::Timeout {
            what: what.to_string(),
            limit,
        }),
    }
}

/// Whether a node's `Ready` condition is `True`.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Waits until every named node exists and is Ready. On timeout the error lists the stragglers.
pub async fn nodes_ready(
    api: Api<Node>,
    names: &[String],
    limit: Duration,
) -> Result<(), K8sError> {
    let mut ready: BTreeMap<String, bool> = names.iter().map(|n| (n.clone(), false)).collect();
    let stream = watcher(api, watcher::Config::default()).default_backoff();
    let mut stream = std::pin::pin!(stream);
    let run = async {
        while let Some(event) = stream.try_next().await.transpose() {
            let event = match event {
                Ok(e) => e,
                // default_backoff retries transient errors; anything surfacing here is logged and
                // the watch goes on until the deadline.
                Err(e) => {
                    tracing::debug!("node watch error: {e}");
                    continue;
                }
            };
            match event {
                watcher::Event::Apply(node) | watcher::Event::InitApply(node) => {
                    if let Some(r) = node.metadata.name.as_deref().and_then(|n| ready.get_mut(n)) {
                        *r = node_is_ready(&node);
                    }
                }
                watcher::Event::Delete(node) => {
                    if let Some(r) = node.metadata.name.as_deref().and_then(|n| ready.get_mut(n)) {
                        *r = false;
                    }
                }
                watcher::Event::Init | watcher::Event::InitDone => {}
            }
            if ready.values().all(|r| *r) {
                return;
            }
        }
    };
    let finished = tokio::time::timeout(limit, run).await.is_ok();
    if finished && ready.values().all(|r| *r) {
        return Ok(());
    }
    let waiting: Vec<&str> = ready
        .iter()
        .filter(|(_, r)| !**r)
        .map(|(n, _)| n.as_str())
        .collect();
    Err(K8sError::Timeout {
        what: format!(
            "nodes to become Ready (still waiting: {})",
            waiting.join(", ")
        ),
        limit,
    })
}

/// Waits until `count` nodes matching the label `selector` exist and are Ready; on timeout the
/// error says how many did.
pub async fn labelled_nodes_ready(
    api: Api<Node>,
    selector: &str,
    count: usize,
    limit: Duration,
) -> Result<(), K8sError> {
    use futures::StreamExt as _;
    let mut ready: BTreeMap<String, bool> = BTreeMap::new();
    let stream = watcher(api, watcher::Config::default().labels(selector))
        .default_backoff()
        .applied_objects();
    let mut stream = std::pin::pin!(stream);
    let run = async {
        while let Some(n) = stream.next().await {
            if let Ok(n) = n {
                let name = n.metadata.name.clone().unwrap_or_default();
                ready.insert(name, node_is_ready(&n));
                if ready.values().filter(|r| **r).count() >= count {
                    return true;
                }
            }
        }
        false
    };
    match tokio::time::timeout(limit, run).await {
        Ok(true) => Ok(()),
        _ => Err(K8sError::Timeout {
            what: format!("{count} nodes labelled {selector} to be Ready"),
            limit,
        }),
    }
}
