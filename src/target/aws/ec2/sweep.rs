//! Finding and deleting a run's resources by tag: what teardown and `gpuconform sweep` use, so
//! a killed run's instances, volumes and security group can always be found again.

use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{Filter, InstanceStateName, Tag};

use super::*;

/// Resources of a run (or of every expired run) found by tag.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// `(instance id, type, state, run id, expires-at)`.
    pub instances: Vec<(String, String, String, String, String)>,
    /// `(security group id, run id, expires-at)`.
    pub security_groups: Vec<(String, String, String)>,
}

/// Lists gpuconform's resources: those of `run_id`, or (with `None`) those whose expiry passed.
pub async fn find(
    ec2: &Client,
    run_id: Option<&str>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Found, Ec2Error> {
    let mut filters = vec![
        Filter::builder()
            .name(format!("tag:{}", tags::MANAGED))
            .values("true")
            .build(),
    ];
    if let Some(r) = run_id {
        filters.push(
            Filter::builder()
                .name(format!("tag:{}", tags::RUN_ID))
                .values(r)
                .build(),
        );
    }
    let tag_of = |tags: &[Tag], k: &str| {
        tags.iter()
            .find(|t| t.key() == Some(k))
            .and_then(|t| t.value())
            .unwrap_or_default()
            .to_string()
    };
    let expired = |exp: &str| {
        chrono::DateTime::parse_from_rfc3339(exp)
            .map(|t| t < now)
            .unwrap_or(true)
    };
    let mut found = Found::default();
    let mut pages = ec2
        .describe_instances()
        .set_filters(Some(filters.clone()))
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(e2("list instances"))?;
        for i in page.reservations().iter().flat_map(|r| r.instances()) {
            let state = i
                .state()
                .and_then(|s| s.name())
                .cloned()
                .unwrap_or(InstanceStateName::Pending);
            if matches!(state, InstanceStateName::Terminated) {
                continue;
            }
            let exp = tag_of(i.tags(), tags::EXPIRES);
            if run_id.is_none() && !expired(&exp) {
                continue;
            }
            found.instances.push((
                i.instance_id().unwrap_or_default().to_string(),
                i.instance_type()
                    .map(|t| t.as_str().to_string())
                    .unwrap_or_default(),
                state.as_str().to_string(),
                tag_of(i.tags(), tags::RUN_ID),
                exp,
            ));
        }
    }
    let sgs = ec2
        .describe_security_groups()
        .set_filters(Some(filters))
        .send()
        .await
        .map_err(e2("list security groups"))?;
    for g in sgs.security_groups() {
        let exp = tag_of(g.tags(), tags::EXPIRES);
        if run_id.is_none() && !expired(&exp) {
            continue;
        }
        found.security_groups.push((
            g.group_id().unwrap_or_default().to_string(),
            tag_of(g.tags(), tags::RUN_ID),
            exp,
        ));
    }
    Ok(found)
}

/// Terminates a run's instances, waits until they are gone, deletes its security group
/// (retrying while network interfaces drain). Returns what could not be removed, by id.
pub async fn teardown(
    ec2: &Client,
    run_id: &str,
    deadline: Instant,
    progress: &(dyn Fn(String) + Sync),
) -> Vec<String> {
    // EC2's lists are eventually consistent: an instance launched a moment ago may not be
    // listed by its tag yet. Teardown is done only when two lists in a row find nothing.
    let mut empty_lists = 0;
    for _ in 0..TEARDOWN_ROUNDS {
        let found = match find(ec2, Some(run_id), chrono::Utc::now()).await {
            Ok(f) => f,
            Err(e) => {
                return vec![format!(
                    "could not list the run's resources ({e}); run `gpuconform sweep --run-id {run_id}`"
                )];
            }
        };
        if found.instances.is_empty() && found.security_groups.is_empty() {
            empty_lists += 1;
            if empty_lists == 2 || Instant::now() + RELIST_PAUSE >= deadline {
                return Vec::new();
            }
            tokio::time::sleep(RELIST_PAUSE).await;
            continue;
        }
        empty_lists = 0;
        let left = delete(ec2, &found, deadline, progress).await;
        if !left.is_empty() {
            return left;
        }
    }
    vec![format!(
        "resources of run {run_id} kept appearing after {TEARDOWN_ROUNDS} rounds of deletion; run `gpuconform sweep --run-id {run_id}`"
    )]
}

/// Rounds of list-and-delete before teardown gives up on a run whose resources keep appearing.
const TEARDOWN_ROUNDS: usize = 6;
/// The pause between two lists that found nothing.
const RELIST_PAUSE: Duration = Duration::from_secs(1);

/// Deletes what [`find`] found; returns what is left, by id.
pub async fn delete(
    ec2: &Client,
    found: &Found,
    deadline: Instant,
    progress: &(dyn Fn(String) + Sync),
) -> Vec<String> {
    let mut left = Vec::new();
    let ids: Vec<String> = found.instances.iter().map(|i| i.0.clone()).collect();
    if !ids.is_empty() {
        progress(format!("terminating {}", ids.join(", ")));
        match ec2
            .terminate_instances()
            .set_instance_ids(Some(ids.clone()))
            .send()
            .await
        {
            Ok(_) => {
                let limit = deadline
                    .saturating_duration_since(Instant::now())
                    .max(Duration::from_secs(1));
                if let Err(e) = ec2
                    .wait_until_instance_terminated()
                    .set_instance_ids(Some(ids.clone()))
                    .wait(limit)
                    .await
                {
                    left.extend(
                        ids.iter()
                            .map(|i| format!("instance {i}: not terminated yet ({})", brief(&e))),
                    );
                }
            }
            Err(e) => left.extend(
                ids.iter()
                    .map(|i| format!("instance {i}: terminate failed ({})", brief(&e))),
            ),
        }
    }
    for (sg, _, _) in &found.security_groups {
        // Interfaces of terminated instances take a while to let go of the group.
        let mut delay = Duration::from_millis(500);
        loop {
            match ec2.delete_security_group().group_id(sg).send().await {
                Ok(_) => {
                    progress(format!("deleted security group {sg}"));
                    break;
                }
                Err(e) => {
                    let text = DisplayErrorContext(&e).to_string();
                    if text.contains("InvalidGroup.NotFound") {
                        break;
                    }
                    if text.contains("DependencyViolation") && Instant::now() + delay < deadline {
                        tokio::time::sleep(delay).await;
                        delay = (delay * 2).min(Duration::from_secs(15));
                        continue;
                    }
                    left.push(format!("security group {sg}: {text}"));
                    break;
                }
            }
        }
    }
    left
}
