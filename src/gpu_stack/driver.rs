//! NVIDIA driver versions as the stack publishes them (`535.129.03`: branch 535, then a minor
//! and an optional revision, kept as written since `03` and `3` are different releases), and
//! reading one off a node's GFD labels — the current `cuda.driver-version.full`, or the
//! deprecated major/minor/rev triple older GFD versions write.

use std::collections::BTreeMap;

use super::gfd;

/// A driver version.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct DriverVersion {
    /// The branch (`535`).
    pub major: u32,
    /// `129`, as written.
    pub minor: String,
    /// `03`, as written; some releases have none (`550.54`).
    pub revision: Option<String>,
}

impl DriverVersion {
    /// `535.129.03` or `550.54`; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        let mut parts = s.split('.');
        let major = parts.next()?;
        let minor = parts.next()?;
        let revision = parts.next();
        let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if parts.next().is_some() || !digits(major) || !digits(minor) {
            return None;
        }
        if revision.is_some_and(|r| !digits(r)) {
            return None;
        }
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.to_string(),
            revision: revision.map(str::to_string),
        })
    }
}

impl std::fmt::Display for DriverVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(r) = &self.revision {
            write!(f, ".{r}")?;
        }
        Ok(())
    }
}

/// The driver version a node's labels show, as written: the current label, else the
/// deprecated triple (`None` when neither is complete).
pub fn from_labels(labels: &BTreeMap<String, String>) -> Option<String> {
    if let Some(v) = labels.get(gfd::DRIVER_VERSION_FULL) {
        return Some(v.clone());
    }
    let [a, b, c] = gfd::DRIVER_DEPRECATED.map(|k| labels.get(k));
    match (a, b, c) {
        (Some(a), Some(b), Some(c)) => Some(format!("{a}.{b}.{c}")),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_parse_as_written() {
        let rows = [
            ("535.129.03", Some((535, "129", Some("03")))),
            ("450.80.02", Some((450, "80", Some("02")))),
            ("550.54", Some((550, "54", None))),
            ("535", None),
            ("535.x.1", None),
            ("535.1.2.3", None),
            ("", None),
            ("v535.1.2", None),
        ];
        for (s, want) in rows {
            let got = DriverVersion::parse(s);
            assert_eq!(
                got.as_ref()
                    .map(|v| (v.major, v.minor.as_str(), v.revision.as_deref())),
                want,
                "{s}"
            );
            if let Some(v) = got {
                assert_eq!(v.to_string(), s);
            }
        }
    }

    #[test]
    fn labels_current_name_first_then_the_triple() {
        let l = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        };
        let triple = [
            ("nvidia.com/cuda.driver.major", "450"),
            ("nvidia.com/cuda.driver.minor", "80"),
            ("nvidia.com/cuda.driver.rev", "02"),
        ];
        assert_eq!(from_labels(&l(&triple)).as_deref(), Some("450.80.02"));
        let mut both = triple.to_vec();
        both.push(("nvidia.com/cuda.driver-version.full", "535.129.03"));
        assert_eq!(from_labels(&l(&both)).as_deref(), Some("535.129.03"));
        assert_eq!(from_labels(&l(&triple[..2])), None);
    }
}
