//! The environment a GPU was measured in: what `gpuconform compare` checks before it judges two
//! runs. Hardware and its configuration (clocks, power limit, ECC and MIG mode, the PCIe link
//! the slot allows) change what the numbers can be, so a difference refuses the comparison;
//! software (driver, CUDA, NVRTC, cuBLAS, persistence mode) is what a driver upgrade is meant
//! to change, so a difference is named and the comparison goes on.
//!
//! Read through NVML by the bench (`cuda/nvml.rs`); every field is optional, since NVML may be
//! absent (a container without the `utility` capability) or a field unsupported (MIG mode on a
//! T4), and a document without a fingerprint (an older bench) still parses.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// A clock observed while the bench ran, sampled every [`SAMPLE_MS`] milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Observed {
    /// Lowest, MHz.
    pub min: u32,
    /// Median, MHz.
    pub median: u32,
    /// Highest, MHz.
    pub max: u32,
    /// Readings.
    pub samples: u32,
}

/// How often the bench reads the clocks.
pub const SAMPLE_MS: u64 = 50;

impl Observed {
    /// From readings; `None` when there are none.
    pub fn of(readings: &[u32]) -> Option<Self> {
        let mut v = readings.to_vec();
        v.sort_unstable();
        Some(Self {
            min: *v.first()?,
            median: v[v.len() / 2],
            max: *v.last()?,
            samples: u32::try_from(v.len()).unwrap_or(u32::MAX),
        })
    }
}

/// The PCIe link of a GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PcieLink {
    /// Current generation (drops at idle to save power, so it is data, not identity).
    pub generation: u32,
    /// Current width.
    pub width: u32,
    /// The highest generation device and slot allow.
    pub max_generation: u32,
    /// The widest link.
    pub max_width: u32,
}

/// One GPU's environment.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Fingerprint {
    /// PCI bus id (`0000:18:00.0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pci_bus_id: Option<String>,
    /// The host NUMA node the GPU is attached to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub numa_node: Option<u32>,
    /// Host-copy buffers were pinned on that node by a thread on its CPUs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_buffers_local: Option<bool>,
    /// SM clock during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sm_clock_mhz: Option<Observed>,
    /// Memory clock during the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_clock_mhz: Option<Observed>,
    /// Highest SM clock the GPU allows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_sm_clock_mhz: Option<u32>,
    /// Highest memory clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_memory_clock_mhz: Option<u32>,
    /// Enforced power limit, W.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_limit_w: Option<f64>,
    /// ECC enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ecc: Option<bool>,
    /// MIG mode enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mig: Option<bool>,
    /// Persistence mode enabled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistence: Option<bool>,
    /// The PCIe link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pcie: Option<PcieLink>,
    /// Clock-limiting reasons seen while measuring (`swPowerCap`, `hwThermalSlowdown`, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub throttle_reasons: Vec<String>,
    /// Why fields are missing (NVML not loaded, a query refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<String>,
}

fn on(b: bool) -> String {
    if b { "on" } else { "off" }.to_string()
}

impl Fingerprint {
    /// The hardware and its configuration, as `name → value`; a difference refuses a compare.
    pub fn hardware(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                m.insert(k.to_string(), v);
            }
        };
        put(
            "max SM clock",
            self.max_sm_clock_mhz.map(|c| format!("{c} MHz")),
        );
        put(
            "max memory clock",
            self.max_memory_clock_mhz.map(|c| format!("{c} MHz")),
        );
        put(
            "power limit",
            self.power_limit_w.map(|w| format!("{w:.0} W")),
        );
        put("ECC", self.ecc.map(on));
        put("MIG mode", self.mig.map(on));
        put(
            "PCIe link",
            self.pcie
                .map(|p| format!("gen{} x{}", p.max_generation, p.max_width)),
        );
        m
    }

    /// What differs between two fingerprints' hardware, as `name: a → b` (fields known to both).
    pub fn hardware_differences(
        a: &BTreeMap<String, String>,
        b: &BTreeMap<String, String>,
    ) -> Vec<String> {
        a.iter()
            .filter_map(|(k, va)| {
                b.get(k)
                    .filter(|vb| *vb != va)
                    .map(|vb| format!("{k} {va} → {vb}"))
            })
            .collect()
    }
}

/// The software side of a document (`driver`, `CUDA`, `NVRTC`, `cuBLAS`, `persistence`), as
/// `name → value`; a difference is warned about.
pub fn software(
    driver: &str,
    cuda: &str,
    nvrtc: Option<&str>,
    cublas: Option<&str>,
    persistence: Option<bool>,
) -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    for (k, v) in [
        ("driver", Some(driver)),
        ("CUDA", Some(cuda)),
        ("NVRTC", nvrtc),
        ("cuBLAS", cublas),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            m.insert(k.to_string(), v.to_string());
        }
    }
    if let Some(p) = persistence {
        m.insert("persistence mode".into(), on(p));
    }
    m
}

/// NVML's clock-event reason bits (`nvmlClocksEventReason*`, formerly `…ThrottleReason…`), named;
/// idle is left out (it is why clocks are low between kernels, not a limit).
pub fn throttle_names(mask: u64) -> Vec<String> {
    const NAMES: [(u64, &str); 8] = [
        (0x2, "applicationsClocksSetting"),
        (0x4, "swPowerCap"),
        (0x8, "hwSlowdown"),
        (0x10, "syncBoost"),
        (0x20, "swThermalSlowdown"),
        (0x40, "hwThermalSlowdown"),
        (0x80, "hwPowerBrakeSlowdown"),
        (0x100, "displayClockSetting"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| mask & bit != 0)
        .map(|(_, n)| (*n).to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h200() -> Fingerprint {
        Fingerprint {
            max_sm_clock_mhz: Some(1980),
            max_memory_clock_mhz: Some(3201),
            power_limit_w: Some(700.0),
            ecc: Some(true),
            mig: Some(false),
            pcie: Some(PcieLink {
                generation: 1,
                width: 16,
                max_generation: 5,
                max_width: 16,
            }),
            ..Fingerprint::default()
        }
    }

    #[test]
    fn configuration_differences_are_named() {
        let a = h200().hardware();
        assert_eq!(
            Fingerprint::hardware_differences(&a, &a),
            Vec::<String>::new()
        );
        let mut capped = h200();
        capped.power_limit_w = Some(500.0);
        capped.ecc = Some(false);
        // The current link generation is not identity (it drops at idle).
        capped.pcie = Some(PcieLink {
            generation: 5,
            ..h200().pcie.expect("test data")
        });
        assert_eq!(
            Fingerprint::hardware_differences(&a, &capped.hardware()),
            ["ECC on → off", "power limit 700 W → 500 W"]
        );
        // A field one side does not know is no difference.
        let unknown = Fingerprint::default().hardware();
        assert!(Fingerprint::hardware_differences(&a, &unknown).is_empty());
    }

    #[test]
    fn software_and_throttle_reasons() {
        let s = software("580.95.05", "13.0", Some("12.4"), None, Some(true));
        assert_eq!(s.len(), 4);
        assert_eq!(s["persistence mode"], "on");
        assert!(!s.contains_key("cuBLAS"));
        assert_eq!(
            throttle_names(0x1),
            Vec::<String>::new(),
            "idle is not a limit"
        );
        assert_eq!(
            throttle_names(0x4 | 0x40),
            ["swPowerCap", "hwThermalSlowdown"]
        );
        let o = Observed::of(&[1980, 1410, 1980, 1755]).expect("test data");
        assert_eq!((o.min, o.median, o.max, o.samples), (1410, 1980, 1980, 4));
        assert_eq!(Observed::of(&[]), None);
    }
}
