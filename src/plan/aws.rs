//! The `aws` target as a plan writes it: region, node pools (control plane, CPU workers, GPU
//! workers) with instance type, count, AMI and root volume, network, the address allowed to
//! reach the API server, and the time-to-live written into every resource's tags.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::fixture::pool::PoolCheck;
use crate::input::{InputError, Spanned};

/// `target.aws` as written.
#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RawAws {
    region: Spanned<String>,
    #[serde(default)]
    ttl: Option<Spanned<String>>,
    #[serde(default)]
    ingress_cidr: Option<Spanned<String>>,
    #[serde(default)]
    vpc_id: Option<String>,
    #[serde(default)]
    subnet_id: Option<String>,
    #[serde(default)]
    k3s_version: Option<String>,
    #[serde(default)]
    api_endpoint: Option<Spanned<String>>,
    pools: Spanned<Vec<RawPool>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPool {
    name: Spanned<String>,
    role: Spanned<String>,
    instance_type: Spanned<String>,
    count: Spanned<i64>,
    ami: Spanned<RawAmi>,
    #[serde(default)]
    root_volume_gi_b: Option<Spanned<i64>>,
}

#[derive(Debug, Clone, Deserialize, schemars::JsonSchema)]
#[serde(untagged)]
enum RawAmi {
    Id(String),
    Lookup { owner: String, name: String },
}

/// How a pool's image is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ami {
    /// An explicit `ami-…` id.
    Id(String),
    /// The newest image of `owner` whose name matches the pattern (`*` wildcards).
    Lookup {
        /// Owner account id or alias (`099720109477`, `amazon`).
        owner: String,
        /// Name pattern.
        name: String,
    },
}

/// A node's role: the same model as a fixture's pools.
pub use crate::fixture::Role as AwsRole;

/// One pool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsPool {
    /// Pool name (tags, node labels).
    pub name: String,
    /// Role.
    pub role: AwsRole,
    /// EC2 instance type.
    pub instance_type: String,
    /// Instances.
    pub count: u32,
    /// Image.
    pub ami: Ami,
    /// Root volume size, GiB.
    pub root_volume_gib: u32,
    /// Has GPUs (from the catalog).
    pub gpu: bool,
}

/// A validated `aws` target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSpec {
    /// Region.
    pub region: String,
    /// Resources older than this are fair game for `sweep`.
    pub ttl: Duration,
    /// Who may reach the API server (`x.x.x.x/32`); `None`: discover the caller's address.
    pub ingress_cidr: Option<String>,
    /// VPC (default: the default VPC).
    pub vpc_id: Option<String>,
    /// Subnet (default: the VPC's default subnet in the first zone offering every type).
    pub subnet_id: Option<String>,
    /// k3s release to install.
    pub k3s_version: String,
    /// How the harness reaches the API server when not at `https://<public ip>:6443` (a tunnel,
    /// a load balancer).
    pub api_endpoint: Option<String>,
    /// Pools in order.
    pub pools: Vec<AwsPool>,
}

/// Most instances one EC2 pool may have.
pub const MAX_EC2_POOL: i64 = 64;

/// The k3s release the user data installs by default (Kubernetes 1.35).
pub const DEFAULT_K3S: &str = "v1.35.4+k3s1";

/// Validates the target; `file` is the plan.
pub fn validate(file: &Path, raw: &RawAws, catalog: &Catalog) -> Result<AwsSpec, InputError> {
    let region = &raw.region;
    if !crate::fixture::is_region(&region.value) {
        return Err(InputError::at(
            file,
            region,
            "target.aws.region",
            format!("`{}` is not an AWS region", region.value),
        ));
    }
    let ttl = match &raw.ttl {
        None => Duration::from_secs(4 * 3600),
        Some(t) => humantime::parse_duration(&t.value)
            .ok()
            .filter(|d| !d.is_zero())
            .ok_or_else(|| {
                InputError::at(
                    file,
                    t,
                    "target.aws.ttl",
                    format!("`{}` is not a duration such as 4h", t.value),
                )
            })?,
    };
    if let Some(c) = &raw.ingress_cidr {
        let ok = c.value.split_once('/').is_some_and(|(ip, bits)| {
            ip.parse::<std::net::Ipv4Addr>().is_ok()
                && bits.parse::<u8>().is_ok_and(|b| (8..=32).contains(&b))
        });
        if !ok {
            return Err(InputError::at(
                file,
                c,
                "target.aws.ingressCidr",
                format!("`{}` is not an IPv4 CIDR such as 203.0.113.7/32", c.value),
            ));
        }
        if c.value.ends_with("/0") || c.value.starts_with("0.0.0.0") {
            return Err(InputError::at(
                file,
                c,
                "target.aws.ingressCidr",
                "the API server is never opened to the whole internet",
            ));
        }
    }
    let mut pools = Vec::new();
    let mut control_planes = 0;
    let mut check = PoolCheck::new(file, "target.aws.pools", catalog, MAX_EC2_POOL);
    for (i, p) in raw.pools.value.iter().enumerate() {
        let field = |f: &str| format!("target.aws.pools[{i}].{f}");
        let (role, instance, count) =
            check.check(i, &p.name, &p.role, &p.instance_type, &p.count)?;
        if instance.cloud != crate::catalog::Cloud::Aws {
            return Err(InputError::at(
                file,
                &p.instance_type,
                field("instanceType"),
                format!(
                    "`{}` is a {} type, not an EC2 instance type",
                    p.instance_type.value,
                    instance.cloud.as_str()
                ),
            ));
        }
        if role == AwsRole::ControlPlane {
            control_planes += count;
        }
        let ami = match &p.ami.value {
            RawAmi::Id(id) if id.starts_with("ami-") => Ami::Id(id.clone()),
            RawAmi::Id(id) => {
                return Err(InputError::at(
                    file,
                    &p.ami,
                    field("ami"),
                    format!("`{id}` is not an AMI id (ami-…); or give {{owner, name}}"),
                ));
            }
            RawAmi::Lookup { owner, name } => Ami::Lookup {
                owner: owner.clone(),
                name: name.clone(),
            },
        };
        let root = match &p.root_volume_gi_b {
            None => 100,
            Some(r) if (8..=16384).contains(&r.value) => r.value as u32,
            Some(r) => {
                return Err(InputError::at(
                    file,
                    r,
                    field("rootVolumeGiB"),
                    format!("{} GiB is out of range 8..16384", r.value),
                ));
            }
        };
        pools.push(AwsPool {
            name: p.name.value.clone(),
            role,
            instance_type: p.instance_type.value.clone(),
            count,
            ami,
            root_volume_gib: root,
            gpu: instance.gpu.is_some(),
        });
    }
    if control_planes != 1 {
        return Err(InputError::at(
            file,
            &raw.pools,
            "target.aws.pools",
            format!("exactly one control-plane node is needed, the pools give {control_planes}"),
        ));
    }
    Ok(AwsSpec {
        region: region.value.clone(),
        ttl,
        ingress_cidr: raw.ingress_cidr.as_ref().map(|c| c.value.clone()),
        vpc_id: raw.vpc_id.clone(),
        subnet_id: raw.subnet_id.clone(),
        k3s_version: raw
            .k3s_version
            .clone()
            .unwrap_or_else(|| DEFAULT_K3S.into()),
        api_endpoint: match &raw.api_endpoint {
            Some(e) if !e.value.starts_with("https://") => {
                return Err(InputError::at(
                    file,
                    e,
                    "target.aws.apiEndpoint",
                    format!("`{}` is not an https:// URL", e.value),
                ));
            }
            e => e.as_ref().map(|e| e.value.clone()),
        },
        pools,
    })
}
