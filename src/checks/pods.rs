//! What every pod the harness makes has in common: its labels (managed-by, run, check) and the
//! settings of the `restricted` Pod Security profile, so the checks run in a namespace that
//! enforces it — the level a production cluster's policy engine is likely to ask for.

use crate::gpu_stack::ours;

/// A non-root user for images that do not name one (the CUDA samples run as root by default;
/// the device plugin's device nodes are readable by any user).
pub const NON_ROOT_USER: u64 = 65532;

/// Labels of a harness object made by `check` in run `run_id`.
pub fn labels(run_id: &str, check: &str) -> serde_json::Value {
    serde_json::json!({
        ours::MANAGED_BY.0: ours::MANAGED_BY.1,
        ours::RUN_LABEL: ours::run_label(run_id),
        ours::CHECK_LABEL: check,
    })
}

/// Adds the `restricted` profile's settings to a pod spec (JSON): non-root, RuntimeDefault
/// seccomp, no privilege escalation, all capabilities dropped, no service account token (no
/// harness pod talks to the API). `user`: run as this UID, for images that would run as root.
pub fn restricted(spec: &mut serde_json::Value, user: Option<u64>) {
    let Some(obj) = spec.as_object_mut() else {
        return;
    };
    let mut pod = serde_json::json!({
        "runAsNonRoot": true,
        "seccompProfile": {"type": "RuntimeDefault"},
    });
    if let Some(uid) = user {
        pod["runAsUser"] = uid.into();
        pod["runAsGroup"] = uid.into();
    }
    obj.insert("securityContext".into(), pod);
    obj.insert("automountServiceAccountToken".into(), false.into());
    if let Some(containers) = obj.get_mut("containers").and_then(|c| c.as_array_mut()) {
        for c in containers {
            c["securityContext"] = serde_json::json!({
                "allowPrivilegeEscalation": false,
                "capabilities": {"drop": ["ALL"]},
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_sets_every_field_the_profile_checks() {
        let mut spec = serde_json::json!({"containers": [{"name": "a"}, {"name": "b"}]});
        restricted(&mut spec, Some(NON_ROOT_USER));
        assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
        assert_eq!(spec["securityContext"]["runAsUser"], NON_ROOT_USER);
        assert_eq!(
            spec["securityContext"]["seccompProfile"]["type"],
            "RuntimeDefault"
        );
        for c in spec["containers"].as_array().expect("containers") {
            assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
            assert_eq!(c["securityContext"]["capabilities"]["drop"][0], "ALL");
        }
    }
}
