//! A step's `retries:`: each failed testcase's check runs again, on that testcase's node only
//! (the whole check for a cluster-wide one), until it passes or the retries are spent. The
//! testcase keeps every earlier attempt, so JUnit reports a pass after a failure as flaky
//! (`flakyFailure`) and a failure that never cleared with its reruns (`rerunFailure`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::checks::Outcome;
use crate::report::{Attempt, Status};

/// The indices of `outcomes` that failed (or erred).
pub fn failing(outcomes: &[Outcome]) -> Vec<usize> {
    outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| matches!(o.status, Status::Failed | Status::Error))
        .map(|(i, _)| i)
        .collect()
}

/// The nodes a retry runs the check on: those of the failing outcomes for a per-node step,
/// else everything the first attempt ran on.
pub fn nodes(
    outcomes: &[Outcome],
    failing: &[usize],
    per_node: bool,
    first: &[String],
) -> Vec<String> {
    if !per_node {
        return first.to_vec();
    }
    let mut out: Vec<String> = failing
        .iter()
        .filter_map(|&i| outcomes[i].node.clone())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Folds one retry's outcomes in: each failing outcome the retry answered again is replaced by
/// the new one, and the old one goes to its subject's history. A subject the retry did not
/// answer keeps its failure (a check that lost a node must not turn it green).
pub fn merge(
    outcomes: &mut [Outcome],
    failing: &[usize],
    again: Vec<Outcome>,
    took: Duration,
    history: &mut BTreeMap<String, Vec<Attempt>>,
) {
    let mut again: BTreeMap<String, Outcome> =
        again.into_iter().map(|o| (o.subject.clone(), o)).collect();
    for &i in failing {
        let Some(new) = again.remove(&outcomes[i].subject) else {
            continue;
        };
        let old = std::mem::replace(&mut outcomes[i], new);
        history
            .entry(old.subject.clone())
            .or_default()
            .push(Attempt {
                status: old.status,
                message: old.message,
                detail: old.detail,
                seconds: took.as_secs_f64(),
            });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn o(subject: &str, node: Option<&str>, status: Status) -> Outcome {
        let mut o = Outcome::pass(subject, node, format!("{subject} {status:?}"));
        o.status = status;
        if status != Status::Passed {
            o.message = Some(format!("{subject} broke"));
        }
        o
    }

    #[test]
    fn a_retry_replaces_only_what_it_answered_and_keeps_the_history() {
        let mut outcomes = vec![
            o("n1", Some("n1"), Status::Passed),
            o("n2", Some("n2"), Status::Failed),
            o("n3", Some("n3"), Status::Error),
        ];
        let f = failing(&outcomes);
        assert_eq!(f, [1, 2]);
        assert_eq!(nodes(&outcomes, &f, true, &[]), ["n2", "n3"]);
        let mut history = BTreeMap::new();
        // n2 passes now; n3 is not answered (its node went away); a stray n1 is ignored.
        merge(
            &mut outcomes,
            &f,
            vec![
                o("n2", Some("n2"), Status::Passed),
                o("n1", Some("n1"), Status::Failed),
            ],
            Duration::from_secs(2),
            &mut history,
        );
        let st: Vec<Status> = outcomes.iter().map(|o| o.status).collect();
        assert_eq!(st, [Status::Passed, Status::Passed, Status::Error]);
        assert_eq!(history.len(), 1);
        assert_eq!(history["n2"][0].status, Status::Failed);
        assert_eq!(history["n2"][0].message.as_deref(), Some("n2 broke"));
        // A second retry that fails again grows the history of what is still failing.
        let f = failing(&outcomes);
        assert_eq!(f, [2]);
        merge(
            &mut outcomes,
            &f,
            vec![o("n3", Some("n3"), Status::Failed)],
            Duration::from_secs(1),
            &mut history,
        );
        assert_eq!(outcomes[2].status, Status::Failed);
        assert_eq!(history["n3"].len(), 1);
        assert_eq!(history["n3"][0].status, Status::Error);
    }

    #[test]
    fn a_cluster_wide_step_runs_again_where_it_ran() {
        let outcomes = vec![o("clusterpolicy", None, Status::Failed)];
        let first = vec!["a".to_string(), "b".to_string()];
        assert_eq!(nodes(&outcomes, &failing(&outcomes), false, &first), first);
    }
}
