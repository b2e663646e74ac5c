//! EC2 through aws-sdk-ec2: provision a run's pools, tear them down by tag, sweep what killed
//! runs left behind.
//!
//! Every resource carries the run id, the plan, the creator, `gpuconform:managed=true` and an
//! expiry time, so teardown and `sweep` find it by tag alone. Provisioning checks that every
//! instance type is offered in the chosen zone before it launches anything, launches the pools
//! in parallel, and on any failure tears down what it created before returning the error.
//! Credentials come from the SDK's standard chain and are never printed.

use std::collections::BTreeMap;

use aws_sdk_ec2::Client;
use aws_sdk_ec2::error::DisplayErrorContext;
use aws_sdk_ec2::types::{ResourceType, Tag, TagSpecification};

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

mod provision;
mod sweep;

pub use provision::{Launch, provision};
pub use sweep::{Found, delete, find, teardown};
