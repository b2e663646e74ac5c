//! Cost: the hourly price table (`fixtures/catalog/ec2-prices.yaml`), the estimate printed before
//! provisioning, and the instance-hours a run used.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::input::{InputError, parse_yaml};
use crate::plan::aws::AwsSpec;

/// The table shipped with the binary.
pub const EMBEDDED: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/fixtures/catalog/ec2-prices.yaml"
));

/// Hourly prices.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PriceTable {
    /// Format version.
    pub version: u32,
    /// Currency.
    pub currency: String,
    /// Region the prices are for.
    pub region: String,
    /// When they were taken.
    pub date: String,
    /// Where from.
    pub source: String,
    /// Instance type → price per hour.
    pub prices: BTreeMap<String, f64>,
}

impl PriceTable {
    /// The embedded table.
    pub fn embedded() -> Result<Self, InputError> {
        parse_yaml(Path::new("fixtures/catalog/ec2-prices.yaml"), EMBEDDED)
    }

    /// Per-hour cost of a plan's pools, and the types without a price.
    pub fn hourly(&self, spec: &AwsSpec) -> (f64, Vec<String>) {
        let mut total = 0.0;
        let mut unknown = Vec::new();
        for p in &spec.pools {
            match self.prices.get(&p.instance_type) {
                Some(price) => total += price * f64::from(p.count),
                None => unknown.push(p.instance_type.clone()),
            }
        }
        (total, unknown)
    }

    /// The line printed before provisioning.
    pub fn estimate_line(&self, spec: &AwsSpec, hours: f64) -> String {
        let (hourly, unknown) = self.hourly(spec);
        let mut s = format!(
            "estimated cost: {hourly:.2} {}/hour for {} instances, {:.2} {} for {hours:.1} h (on-demand {} prices of {}; {})",
            self.currency,
            spec.pools.iter().map(|p| p.count).sum::<u32>(),
            hourly * hours,
            self.currency,
            self.region,
            self.date,
            if spec.region == self.region {
                "same region"
            } else {
                "other region: prices differ"
            }
        );
        if !unknown.is_empty() {
            s.push_str(&format!("; no price for {}", unknown.join(", ")));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::aws::{Ami, AwsPool, AwsRole};

    /// Every price is for an EC2 type of the catalog (a renamed or mistyped key would never be
    /// used), and the types the shipped fixtures and plans use have one.
    #[test]
    fn prices_are_for_catalog_types() {
        let t = PriceTable::embedded().expect("prices");
        let c = crate::catalog::Catalog::embedded().expect("catalog");
        for ty in t.prices.keys() {
            let known = c.instance(ty).map(|i| i.cloud);
            assert_eq!(known, Some(crate::catalog::Cloud::Aws), "price for {ty}");
        }
        for ty in [
            "p3.2xlarge",
            "g4dn.xlarge",
            "m5.xlarge",
            "p4d.24xlarge",
            "p5.48xlarge",
        ] {
            assert!(t.prices.contains_key(ty), "no price for {ty}");
        }
    }

    #[test]
    fn estimate_adds_pools() {
        let t = PriceTable::embedded().expect("prices");
        let pool = |ty: &str, n| AwsPool {
            name: ty.into(),
            role: AwsRole::Worker,
            instance_type: ty.into(),
            count: n,
            ami: Ami::Id("ami-1".into()),
            root_volume_gib: 100,
            gpu: false,
        };
        let spec = AwsSpec {
            region: "us-east-1".into(),
            ttl: std::time::Duration::from_secs(3600),
            ingress_cidr: None,
            vpc_id: None,
            subnet_id: None,
            k3s_version: "v1".into(),
            api_endpoint: None,
            pools: vec![pool("m5.xlarge", 1), pool("p3.2xlarge", 2)],
        };
        let (h, unknown) = t.hourly(&spec);
        assert!((h - (0.192 + 2.0 * 3.06)).abs() < 1e-9);
        assert!(unknown.is_empty());
        assert!(t.estimate_line(&spec, 2.0).contains("12.62 USD for 2.0 h"));
    }
}
