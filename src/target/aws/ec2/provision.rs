//! Provisioning, one stage after another: network (default VPC subnet), security group (the
//! API port for the caller only), images, then the pools' instances in parallel, each stage
//! waited on with a deadline. A failure tears down what earlier stages made.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use aws_sdk_ec2::Client;
use aws_sdk_ec2::client::Waiters;
use aws_sdk_ec2::types::{
    BlockDeviceMapping, EbsBlockDevice, Filter, InstanceType, IpPermission, IpRange, LocationType,
    ResourceType, ShutdownBehavior, VolumeType,
};

use super::*;

/// Provisions every pool: zone check, security group, control plane first (agents need its
/// address), then the workers in parallel; waits until all run. On failure everything created
/// is torn down and the error returned with what teardown could not remove.
pub async fn provision(
    ec2: &Client,
    launch: &Launch<'_>,
) -> Result<Provisioned, (Ec2Error, Vec<String>)> {
    let Launch {
        run,
        deadline,
        progress,
        ..
    } = *launch;
    let mut done = Provisioned::default();
    match provision_inner(ec2, launch, &mut done).await {
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

/// What one provisioning needs.
#[derive(Clone, Copy)]
pub struct Launch<'a> {
    /// The plan's pools and network.
    pub spec: &'a AwsSpec,
    /// The run's tags.
    pub run: &'a RunTags,
    /// Who may reach the API server.
    pub ingress_cidr: &'a str,
    /// User data per pool (the server's address for agents).
    pub user_data: &'a UserData<'a>,
    /// When provisioning must be done.
    pub deadline: Instant,
    /// Progress lines.
    pub progress: &'a (dyn Fn(String) + Sync),
}

async fn provision_inner(
    ec2: &Client,
    launch: &Launch<'_>,
    done: &mut Provisioned,
) -> Result<(), Ec2Error> {
    let Launch {
        spec,
        run,
        ingress_cidr,
        user_data,
        deadline,
        progress,
    } = *launch;
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
