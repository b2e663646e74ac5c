//! EC2 through aws-sdk-ec2: provision a run's pools, tear them down by tag, sweep what killed
//! runs left behind.
//!
//! Every resource carries the run id, the plan, the creator, `gpuconform:managed=true` and an
//! expiry time, so teardown and `sweep` find it by tag alone. Provisioning checks that every
//! instance type is offered in the chosen zone before it launches anything, launches the pools
//! in parallel, and on any failure tears down what it created before returning the error.
//! Credentials come from the SDK's standard chain and are never printed.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceStateName, InstanceType, IpPermission,
    IpRange, LocationType, ResourceType, ShutdownBehavior, Tag, TagSpecification, VolumeType,
};

use crate::plan::aws::{Ami, AwsPool, AwsRole, AwsSpec};

/// Tag keys.
pub mod tags {
    /// Marks everything gpuconform created.
    pub const MANAGED: &str = "gpuconform:managed";
    /// The run id.
    pub const RUN_ID: &str = "gpuconform:run-id";
    /// The plan name.
    pub const PLAN: &str = "gpuconform:plan";
    /// Who started the run.
    pub const CREATOR: &str = "gpuconform:created-by";
    /// RFC 3339 time after which `sweep` may delete the resource.
    pub const EXPIRES: &str = "gpuconform:expires-at";
    /// The pool a node belongs to.
    pub const POOL: &str = "gpuconform:pool";
}

/// An EC2 call failed.
#[derive(Debug, thiserror::Error)]
#[error("{what}: {message}")]
pub struct Ec2Error {
    /// What was attempted.
    pub what: String,
    /// The service's answer, with its error code.
    pub message: String,
}

fn e2<E: std::error::Error>(what: impl Into<String>) -> impl FnOnce(E) -> Ec2Error {
    let what = what.into();
    move |e| Ec2Error {
        what,
        message: brief(&e),
    }
}

/// The SDK's error with its code and message, without the raw response it appends.
fn brief(e: &dyn std::error::Error) -> String {
    let full = DisplayErrorContext(e).to_string();
    let cut = full
        .find(" (ServiceError(")
        .or_else(|| full.find(" (DispatchFailure("))
        .unwrap_or(full.len());
    full[..cut].chars().take(400).collect()
}

/// An EC2 client for a region, from the standard credential chain and endpoint settings
/// (`AWS_PROFILE`, SSO, instance role; `AWS_ENDPOINT_URL[_EC2]`).
pub async fn client(region: &str) -> Client {
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(region.to_string()))
        .load()
        .await;
    Client::new(&config)
}

/// What a run created.
#[derive(Debug, Clone, Default)]
pub struct Provisioned {
    /// Security group id.
    pub security_group: Option<String>,
    /// Instance ids by pool, in launch order.
    pub instances: BTreeMap<String, Vec<String>>,
    /// Zone used.
    pub zone: String,
    /// The control-plane node's public address, when it has one.
    pub server_public_ip: Option<String>,
    /// Its private address (agents join there).
    pub server_private_ip: Option<String>,
}

/// Identity of the run for tags.
#[derive(Debug, Clone)]
pub struct RunTags {
    /// Run id.
    pub run_id: String,
    /// Plan name.
    pub plan: String,
    /// Creator (user@host).
    pub creator: String,
    /// Expiry.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

impl RunTags {
    fn tags(&self, name: &str, pool: Option<&str>) -> Vec<Tag> {
        let mut v = vec![
            tag("Name", name),
            tag(tags::MANAGED, "true"),
            tag(tags::RUN_ID, &self.run_id),
            tag(tags::PLAN, &self.plan),
            tag(tags::CREATOR, &self.creator),
            tag(tags::EXPIRES, &self.expires_at.to_rfc3339()),
        ];
        if let Some(p) = pool {
            v.push(tag(tags::POOL, p));
        }
        v
    }

    fn spec(&self, kind: ResourceType, name: &str, pool: Option<&str>) -> TagSpecification {
        TagSpecification::builder()
            .resource_type(kind)
            .set_tags(Some(self.tags(name, pool)))
            .build()
    }
}

fn tag(k: &str, v: &str) -> Tag {
    Tag::builder().key(k).value(v).build()
}

/// Per-node user data, decided once the server's address is known.
pub type UserData<'a> = dyn Fn(&AwsPool, Option<&str>) -> Result<String, String> + Sync + 'a;

/// Provisions every pool: zone check, security group, control plane first (agents need its
/// address), then the workers in parallel; waits until all run. On failure everything created
/// is torn down and the error returned with what teardown could not remove.
pub async fn provision(
    ec2: &Client,
    spec: &AwsSpec,
    run: &RunTags,
    ingress_cidr: &str,
    user_data: &UserData<'_>,
    deadline: Instant,
    progress: &(dyn Fn(String) + Sync),
) -> Result<Provisioned, (Ec2Error, Vec<String>)> {
    let mut done = Provisioned::default();
    match provision_inner(
        ec2,
        spec,
        run,
        ingress_cidr,
        user_data,
        deadline,
        progress,
        &mut done,
    )
    .await
    {
        Ok(()) => Ok(done),
        Err(e) => {
            progress(format!(
                "provisioning failed ({e}); removing what was created"
            ));
            let left = teardown(
                ec2,
                &run.run_id,
                deadline.max(Instant::now() + Duration::from_secs(600)),
                progress,
            )
            .await;
            Err((e, left))
        }
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "the resolved inputs of one phase"
)]
async fn provision_inner(
    ec2: &Client,
    spec: &AwsSpec,
    run: &RunTags,
    ingress_cidr: &str,
    user_data: &UserData<'_>,
    deadline: Instant,
    progress: &(dyn Fn(String) + Sync),
    done: &mut Provisioned,
) -> Result<(), Ec2Error> {
    // Network: the given subnet, or the default VPC's subnet in a zone offering every type.
    let vpc = match &spec.vpc_id {
        Some(v) => v.clone(),
        None => {
            let out = ec2
                .describe_vpcs()
                .filters(Filter::builder().name("is-default").values("true").build())
                .send()
                .await
                .map_err(e2("find the default VPC"))?;
            out.vpcs()
                .first()
                .and_then(|v| v.vpc_id().map(str::to_string))
                .ok_or_else(|| Ec2Error {
                    what: "find the default VPC".into(),
                    message: format!(
                        "region {} has no default VPC; give target.aws.vpcId and subnetId",
                        spec.region
                    ),
                })?
        }
    };
    let types: Vec<String> = spec.pools.iter().map(|p| p.instance_type.clone()).collect();
    let offered = ec2
        .describe_instance_type_offerings()
        .location_type(LocationType::AvailabilityZone)
        .filters(
            Filter::builder()
                .name("instance-type")
                .set_values(Some(types.clone()))
                .build(),
        )
        .send()
        .await
        .map_err(e2("check instance type offerings"))?;
    let mut by_zone: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for o in offered.instance_type_offerings() {
        if let (Some(z), Some(t)) = (o.location(), o.instance_type()) {
            by_zone
                .entry(z.to_string())
                .or_default()
                .push(t.as_str().to_string());
        }
    }
    let subnets = ec2
        .describe_subnets()
        .filters(Filter::builder().name("vpc-id").values(&vpc).build())
        .send()
        .await
        .map_err(e2("list subnets"))?;
    let subnet = match &spec.subnet_id {
        Some(s) => subnets
            .subnets()
            .iter()
            .find(|x| x.subnet_id() == Some(s.as_str()))
            .cloned()
            .ok_or_else(|| Ec2Error {
                what: "find the subnet".into(),
                message: format!("subnet {s} is not in VPC {vpc}"),
            })?,
        None => {
            let mut candidates: Vec<_> = subnets
                .subnets()
                .iter()
                .filter(|s| s.default_for_az() == Some(true))
                .cloned()
                .collect();
            candidates.sort_by_key(|s| s.availability_zone().unwrap_or_default().to_string());
            candidates
                .into_iter()
                .find(|s| {
                    let z = s.availability_zone().unwrap_or_default();
                    types
                        .iter()
                        .all(|t| by_zone.get(z).is_some_and(|v| v.contains(t)))
                })
                .ok_or_else(|| {
                    let missing: Vec<&String> = types
                        .iter()
                        .filter(|t| !by_zone.values().any(|v| v.contains(t)))
                        .collect();
                    Ec2Error {
                        what: "choose a zone".into(),
                        message: if missing.is_empty() {
                            format!(
                                "no default subnet of VPC {vpc} is in a zone that offers all of {}",
                                types.join(", ")
                            )
                        } else {
                            format!(
                                "instance type {} is not offered in any zone of {}",
                                missing
                                    .iter()
                                    .map(|s| s.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                spec.region
                            )
                        },
                    }
                })?
        }
    };
    let zone = subnet.availability_zone().unwrap_or_default().to_string();
    for t in &types {
        if !by_zone.get(&zone).is_some_and(|v| v.contains(t)) {
            return Err(Ec2Error {
                what: "check instance type offerings".into(),
                message: format!("instance type {t} is not offered in zone {zone}"),
            });
        }
    }
    done.zone = zone.clone();
    let subnet_id = subnet.subnet_id().unwrap_or_default().to_string();
    progress(format!("zone {zone}, subnet {subnet_id}, VPC {vpc}"));

    // Security group: the API port for the caller only; nodes talk to each other freely.
    let sg_name = format!("gpuconform-{}", run.run_id);
    let sg = ec2
        .create_security_group()
        .group_name(&sg_name)
        .description(format!("gpuconform run {}", run.run_id))
        .vpc_id(&vpc)
        .tag_specifications(run.spec(ResourceType::SecurityGroup, &sg_name, None))
        .send()
        .await
        .map_err(e2("create security group"))?;
    let sg_id = sg.group_id().unwrap_or_default().to_string();
    done.security_group = Some(sg_id.clone());
    ec2.authorize_security_group_ingress()
        .group_id(&sg_id)
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("tcp")
                .from_port(6443)
                .to_port(6443)
                .ip_ranges(
                    IpRange::builder()
                        .cidr_ip(ingress_cidr)
                        .description("Kubernetes API for the gpuconform caller")
                        .build(),
                )
                .build(),
        )
        .ip_permissions(
            IpPermission::builder()
                .ip_protocol("-1")
                .user_id_group_pairs(
                    aws_sdk_ec2::types::UserIdGroupPair::builder()
                        .group_id(&sg_id)
                        .description("nodes of the same run")
                        .build(),
                )
                .build(),
        )
        .send()
        .await
        .map_err(e2("authorize API access"))?;
    progress(format!(
        "security group {sg_id}: tcp/6443 from {ingress_cidr} only"
    ));

    // Images.
    // Pool → (AMI id, its root device name: the root volume size applies to that device).
    let mut amis: BTreeMap<String, (String, String)> = BTreeMap::new();
    for p in &spec.pools {
        let id = match &p.ami {
            Ami::Id(id) => id.clone(),
            Ami::Lookup { owner, name } => {
                let out = ec2
                    .describe_images()
                    .owners(owner)
                    .filters(Filter::builder().name("name").values(name).build())
                    .filters(Filter::builder().name("state").values("available").build())
                    .send()
                    .await
                    .map_err(e2(format!("look up the AMI for pool {}", p.name)))?;
                let mut imgs: Vec<_> = out.images().to_vec();
                imgs.sort_by(|a, b| b.creation_date().cmp(&a.creation_date()));
                imgs.first()
                    .and_then(|i| i.image_id().map(str::to_string))
                    .ok_or_else(|| Ec2Error {
                        what: format!("look up the AMI for pool {}", p.name),
                        message: format!("no image of owner {owner} matches `{name}`"),
                    })?
            }
        };
        // RunInstances is the authority on whether the image exists; here only its root device
        // name matters (default /dev/sda1, Ubuntu's).
        let root = ec2
            .describe_images()
            .image_ids(&id)
            .send()
            .await
            .ok()
            .and_then(|out| {
                out.images()
                    .first()
                    .and_then(|i| i.root_device_name().map(str::to_string))
            })
            .unwrap_or_else(|| "/dev/sda1".to_string());
        amis.insert(p.name.clone(), (id, root));
    }

    // Control plane first: agents need its address.
    let launch = |p: AwsPool, data: String| {
        let (ami, root_device) = amis.get(&p.name).cloned().unwrap_or_default();
        let subnet_id = subnet_id.clone();
        let sg_id = sg_id.clone();
        let name = format!("{}-{}", run.run_id, p.name);
        async move {
            use base64::Engine as _;
            let out = ec2
                .run_instances()
                .image_id(&ami)
                .instance_type(InstanceType::from(p.instance_type.as_str()))
                .min_count(p.count as i32)
                .max_count(p.count as i32)
                .subnet_id(&subnet_id)
                .security_group_ids(&sg_id)
                .user_data(base64::engine::general_purpose::STANDARD.encode(data))
                .instance_initiated_shutdown_behavior(ShutdownBehavior::Terminate)
                .block_device_mappings(
                    BlockDeviceMapping::builder()
                        .device_name(root_device)
                        .ebs(
                            EbsBlockDevice::builder()
                                .volume_size(p.root_volume_gib as i32)
                                .volume_type(VolumeType::Gp3)
                                .delete_on_termination(true)
                                .build(),
                        )
                        .build(),
                )
                .tag_specifications(run.spec(ResourceType::Instance, &name, Some(&p.name)))
                .tag_specifications(run.spec(ResourceType::Volume, &name, Some(&p.name)))
                .send()
                .await
                .map_err(e2(format!(
                    "launch pool {} ({}× {})",
                    p.name, p.count, p.instance_type
                )))?;
            let ids: Vec<String> = out
                .instances()
                .iter()
                .filter_map(|i| i.instance_id().map(str::to_string))
                .collect();
            Ok::<_, Ec2Error>((p.name.clone(), ids))
        }
    };
    let server = spec
        .pools
        .iter()
        .find(|p| p.role == AwsRole::ControlPlane)
        .ok_or_else(|| Ec2Error {
            what: "launch".into(),
            message: "no control-plane pool".into(),
        })?;
    let data = user_data(server, None).map_err(|m| Ec2Error {
        what: "render user data".into(),
        message: m,
    })?;
    let (name, ids) = launch(server.clone(), data).await?;
    done.instances.insert(name, ids.clone());
    progress(format!(
        "control plane {}: launched {}",
        server.name,
        ids.join(", ")
    ));
    wait_running(ec2, &ids, deadline).await?;
    let described = ec2
        .describe_instances()
        .set_instance_ids(Some(ids.clone()))
        .send()
        .await
        .map_err(e2("describe the control plane"))?;
    let inst = described
        .reservations()
        .iter()
        .flat_map(|r| r.instances())
        .next();
    done.server_private_ip = inst.and_then(|i| i.private_ip_address().map(str::to_string));
    done.server_public_ip = inst.and_then(|i| i.public_ip_address().map(str::to_string));
    let server_url = format!(
        "https://{}:6443",
        done.server_private_ip.clone().unwrap_or_default()
    );

    let workers: Vec<&AwsPool> = spec
        .pools
        .iter()
        .filter(|p| p.role == AwsRole::Worker)
        .collect();
    let mut launches = Vec::new();
    for p in &workers {
        let data = user_data(p, Some(&server_url)).map_err(|m| Ec2Error {
            what: "render user data".into(),
            message: m,
        })?;
        launches.push(launch((*p).clone(), data));
    }
    let mut first_err = None;
    for r in futures::future::join_all(launches).await {
        match r {
            Ok((name, ids)) => {
                progress(format!("pool {name}: launched {}", ids.join(", ")));
                done.instances.insert(name, ids);
            }
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_err {
        return Err(e);
    }
    let all: Vec<String> = done.instances.values().flatten().cloned().collect();
    wait_running(ec2, &all, deadline).await?;
    progress(format!("{} instances running", all.len()));
    Ok(())
}

async fn wait_running(ec2: &Client, ids: &[String], deadline: Instant) -> Result<(), Ec2Error> {
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_secs(1));
    ec2.wait_until_instance_running()
        .set_instance_ids(Some(ids.to_vec()))
        .wait(left)
        .await
        .map(|_| ())
        .map_err(e2(format!("wait for {} to run", ids.join(", "))))
}

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
    let found = match find(ec2, Some(run_id), chrono::Utc::now()).await {
        Ok(f) => f,
        Err(e) => {
            return vec![format!(
                "could not list the run's resources ({e}); run `gpuconform sweep --run-id {run_id}`"
            )];
        }
    };
    delete(ec2, &found, deadline, progress).await
}

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
