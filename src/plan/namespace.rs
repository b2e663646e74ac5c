//! The test namespace: where the harness's own pods and Jobs go, and the name it gets.

/// The namespace for the harness's pods and Jobs (`testNamespace:`, `--namespace`).
///
/// A namespace that already exists is used as it is and never deleted (only the run's own
/// pods and Jobs in it are); one the run creates gets the labels and annotations — by default
/// the `restricted` Pod Security level, which every harness pod meets — and goes at teardown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TestNamespace {
    /// The name; `None`: `gpuconform-<run id digits>`, made for the run.
    pub name: Option<String>,
    /// Labels for a namespace the run creates (over the defaults), e.g. for policy engines.
    pub labels: std::collections::BTreeMap<String, String>,
    /// Annotations for a namespace the run creates.
    pub annotations: std::collections::BTreeMap<String, String>,
}

/// Whether `name` is a DNS label (namespace names, plan names).
pub fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && !name.starts_with('-')
        && !name.ends_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// `gpuconform-28133701` from `local-20261128-133701`: the run id's last 8 digits (a run id
/// without digits: its own characters, cut to a DNS label).
pub fn default_test_namespace(run_id: &str) -> String {
    let digits: String = run_id.chars().filter(char::is_ascii_digit).collect();
    let tail = digits.len().saturating_sub(8);
    let mut id = digits[tail..].to_string();
    if id.is_empty() {
        id = crate::gpu_stack::ours::run_label(run_id)
            .to_ascii_lowercase()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .take(40)
            .collect::<String>()
            .trim_matches('-')
            .to_string();
    }
    if id.is_empty() {
        "gpuconform-tests".into()
    } else {
        format!("gpuconform-{id}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_test_namespaces_are_dns_labels() {
        let rows = [
            ("local-20261128-133701", "gpuconform-28133701"),
            ("ci-7", "gpuconform-7"),
            ("Nightly_Run", "gpuconform-nightly-run"),
            ("---", "gpuconform-tests"),
        ];
        for (id, want) in rows {
            let got = default_test_namespace(id);
            assert_eq!(got, want, "{id}");
            assert!(is_dns_label(&got), "{got}");
        }
    }
}
