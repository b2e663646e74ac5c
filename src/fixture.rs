//! Cluster fixtures: the shape of a simulated cluster (`fixtures/clusters/*.yaml`).
//!
//! A fixture lists node pools by instance type and count, like an EC2 node-group definition. It is
//! parsed with locations kept, then checked against the instance catalog; every mistake names the
//! file, the line and the field. Nothing is started for a fixture that does not validate.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::Catalog;
use crate::input::{InputError, Spanned, load_yaml};

/// Largest pool the local cluster accepts; a typo such as `count: 1000` should not start a
/// thousand simulated nodes.
pub const MAX_POOL_COUNT: i64 = 100;

/// A cluster fixture as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFixture {
    name: Spanned<String>,
    #[serde(default)]
    description: Option<String>,
    region: Spanned<String>,
    #[serde(default)]
    os_image: Option<String>,
    #[serde(default)]
    kernel_version: Option<String>,
    pools: Spanned<Vec<RawPool>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawPool {
    name: Spanned<String>,
    role: Spanned<String>,
    instance_type: Spanned<String>,
    count: Spanned<i64>,
    #[serde(default)]
    zone: Option<Spanned<String>>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

/// What a node is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Runs the control plane (labelled and tainted as kubeadm does).
    ControlPlane,
    /// Runs workloads.
    Worker,
}

/// A validated cluster fixture.
#[derive(Debug, Clone)]
pub struct ClusterFixture {
    /// Where it was read from.
    pub file: PathBuf,
    /// Cluster name.
    pub name: String,
    /// Free text shown by `local status`.
    pub description: Option<String>,
    /// AWS region the nodes pretend to be in.
    pub region: String,
    /// `nodeInfo.osImage` of every node.
    pub os_image: String,
    /// `nodeInfo.kernelVersion` of every node.
    pub kernel_version: String,
    /// Pools in file order.
    pub pools: Vec<Pool>,
}

/// A validated node pool.
#[derive(Debug, Clone)]
pub struct Pool {
    /// Pool name; nodes are `<pool>-<n>`.
    pub name: String,
    /// Role of its nodes.
    pub role: Role,
    /// EC2 instance type, present in the catalog.
    pub instance_type: String,
    /// Number of nodes.
    pub count: u32,
    /// Availability zone.
    pub zone: String,
    /// Extra node labels.
    pub labels: BTreeMap<String, String>,
}

/// Default OS image, as an Ubuntu 22.04 EKS-style GPU AMI reports it.
pub const DEFAULT_OS_IMAGE: &str = "Ubuntu 22.04.5 LTS";
/// Default kernel of that image.
pub const DEFAULT_KERNEL: &str = "6.8.0-1021-aws";

impl ClusterFixture {
    /// Reads and validates a fixture against the catalog.
    pub fn load(file: &Path, catalog: &Catalog) -> Result<Self, InputError> {
        let raw: RawFixture = load_yaml(file)?;
        Self::validate(file, raw, catalog)
    }

    /// Node names in creation order.
    pub fn node_names(&self) -> Vec<String> {
        self.pools
            .iter()
            .flat_map(|p| (1..=p.count).map(move |i| node_name(&p.name, i)))
            .collect()
    }

    fn validate(file: &Path, raw: RawFixture, catalog: &Catalog) -> Result<Self, InputError> {
        if !is_dns_label(&raw.name.value) {
            return Err(InputError::at(
                file,
                &raw.name,
                "name",
                format!(
                    "`{}` is not a DNS label (lowercase letters, digits, `-`)",
                    raw.name.value
                ),
            ));
        }
        if !is_region(&raw.region.value) {
            return Err(InputError::at(
                file,
                &raw.region,
                "region",
                format!(
                    "`{}` does not look like an AWS region (e.g. us-west-2)",
                    raw.region.value
                ),
            ));
        }
        if raw.pools.value.is_empty() {
            return Err(InputError::at(
                file,
                &raw.pools,
                "pools",
                "at least one pool is needed",
            ));
        }
        let mut seen = BTreeSet::new();
        let mut pools = Vec::with_capacity(raw.pools.value.len());
        for (i, p) in raw.pools.value.iter().enumerate() {
            let field = |name: &str| format!("pools[{i}].{name}");
            if !is_dns_label(&p.name.value) {
                return Err(InputError::at(
                    file,
                    &p.name,
                    field("name"),
                    format!("`{}` is not a DNS label", p.name.value),
                ));
            }
            if !seen.insert(p.name.value.clone()) {
                return Err(InputError::at(
                    file,
                    &p.name,
                    field("name"),
                    format!("pool `{}` is defined twice", p.name.value),
                ));
            }
            let role = match p.role.value.as_str() {
                "control-plane" => Role::ControlPlane,
                "worker" => Role::Worker,
                other => {
                    return Err(InputError::at(
                        file,
                        &p.role,
                        field("role"),
                        format!("unknown role `{other}`, expected `control-plane` or `worker`"),
                    ));
                }
            };
            if catalog.instance(&p.instance_type.value).is_none() {
                let hints = catalog.suggest(&p.instance_type.value);
                let hint = if hints.is_empty() {
                    String::new()
                } else {
                    format!(" (known: {})", hints.join(", "))
                };
                return Err(InputError::at(
                    file,
                    &p.instance_type,
                    field("instanceType"),
                    format!(
                        "unknown instance type `{}`: not in the instance catalog{hint}",
                        p.instance_type.value
                    ),
                ));
            }
            let count = p.count.value;
            if !(1..=MAX_POOL_COUNT).contains(&count) {
                return Err(InputError::at(
                    file,
                    &p.count,
                    field("count"),
                    format!("count is {count}, must be between 1 and {MAX_POOL_COUNT}"),
                ));
            }
            let zone = match &p.zone {
                Some(z)
                    if !z.value.starts_with(&raw.region.value)
                        || z.value.len() <= raw.region.value.len() =>
                {
                    return Err(InputError::at(
                        file,
                        z,
                        field("zone"),
                        format!("zone `{}` is not in region `{}`", z.value, raw.region.value),
                    ));
                }
                Some(z) => z.value.clone(),
                None => format!("{}a", raw.region.value),
            };
            pools.push(Pool {
                name: p.name.value.clone(),
                role,
                instance_type: p.instance_type.value.clone(),
                // The range check above keeps this in u32.
                count: u32::try_from(count).unwrap_or(1),
                zone,
                labels: p.labels.clone(),
            });
        }
        Ok(Self {
            file: file.to_path_buf(),
            name: raw.name.value,
            description: raw.description,
            region: raw.region.value,
            os_image: raw.os_image.unwrap_or_else(|| DEFAULT_OS_IMAGE.to_string()),
            kernel_version: raw
                .kernel_version
                .unwrap_or_else(|| DEFAULT_KERNEL.to_string()),
            pools,
        })
    }
}

/// The name of the `index`-th node (1-based) of a pool.
pub fn node_name(pool: &str, index: u32) -> String {
    format!("{pool}-{index}")
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 40
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    parts.len() >= 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        })
        && parts
            .last()
            .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::parse_yaml;

    fn check(text: &str) -> Result<ClusterFixture, InputError> {
        let catalog = Catalog::embedded().expect("catalog");
        let file = Path::new("c.yaml");
        let raw: RawFixture = parse_yaml(file, text)?;
        ClusterFixture::validate(file, raw, &catalog)
    }

    const GOOD: &str = "name: t\nregion: us-west-2\npools:\n  - name: gpu\n    role: worker\n    instanceType: p3.2xlarge\n    count: 2\n";

    #[test]
    fn good_fixture_expands_node_names() {
        let f = check(GOOD).expect("valid");
        assert_eq!(f.node_names(), vec!["gpu-1", "gpu-2"]);
        assert_eq!(f.pools[0].zone, "us-west-2a");
    }

    #[test]
    fn unknown_instance_type_names_line_and_field() {
        let e = check(&GOOD.replace("p3.2xlarge", "p3.4xlarge")).expect_err("invalid");
        assert_eq!(e.line, Some(6), "{e}");
        assert_eq!(e.field.as_deref(), Some("pools[0].instanceType"));
        assert!(e.message.contains("p3.2xlarge"), "hint missing: {e}");
    }

    #[test]
    fn negative_count_is_rejected() {
        let e = check(&GOOD.replace("count: 2", "count: -1")).expect_err("invalid");
        assert_eq!(e.line, Some(7), "{e}");
        assert_eq!(e.field.as_deref(), Some("pools[0].count"));
    }

    #[test]
    fn zone_outside_region_is_rejected() {
        let e = check(&format!("{GOOD}    zone: eu-west-1a\n")).expect_err("invalid");
        assert_eq!(e.field.as_deref(), Some("pools[0].zone"));
    }

    #[test]
    fn duplicate_pool_is_rejected() {
        let text = format!(
            "{GOOD}  - name: gpu\n    role: worker\n    instanceType: m5.xlarge\n    count: 1\n"
        );
        let e = check(&text).expect_err("invalid");
        assert_eq!(e.line, Some(8), "{e}");
    }

    #[test]
    fn bad_role_is_rejected() {
        let e = check(&GOOD.replace("role: worker", "role: master")).expect_err("invalid");
        assert!(e.message.contains("unknown role `master`"), "{e}");
    }
}

#[cfg(test)]
mod shipped {
    use super::*;

    /// Every fixture in `fixtures/clusters/` loads against the embedded catalog.
    #[test]
    fn shipped_fixtures_validate() {
        let catalog = Catalog::embedded().expect("catalog");
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/clusters");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fixtures/clusters") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "yaml") {
                let f = ClusterFixture::load(&path, &catalog).unwrap_or_else(|e| panic!("{e}"));
                assert!(!f.node_names().is_empty());
                seen += 1;
            }
        }
        assert!(
            seen >= 4,
            "expected the seed, g4dn, p4d and MIG fixtures, found {seen}"
        );
    }
}
