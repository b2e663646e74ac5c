//! The upgrade section of a run (`gpuconform upgrade`): the driver before and after, each GPU
//! node's timeline of upgrade states, time spent per state, the most nodes out at once, the
//! findings, the baseline's benchmarks and their comparison with the new driver's. Rendered into
//! `summary.md` and, with a per-node SVG timeline, into `report.html`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::bench::BenchRow;
use super::escape_markup as esc;

/// The check kind of the before/after comparison's testcases: a failure there is a regression
/// (exit 5), not a failed check.
pub const VERDICT_CHECK: &str = "upgrade-compare";

/// One stretch of time a node spent in one state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Span {
    /// The state label's value (`drain-required`; `""` before the controller looked).
    pub state: String,
    /// From, seconds since the upgrade began.
    pub from: f64,
    /// Until, seconds.
    pub until: f64,
}

/// One GPU node through the upgrade.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeTimeline {
    /// Node name.
    pub node: String,
    /// Its states in order.
    pub spans: Vec<Span>,
    /// The state it was last seen in.
    pub last_state: String,
}

/// What the watch of the upgrade saw and what was judged from it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Watched {
    /// Seconds the watch ran.
    pub seconds: f64,
    /// `maxParallelUpgrades` as the plan's chart values give it (0: no limit).
    pub max_parallel: u32,
    /// `maxUnavailable` resolved to nodes.
    pub max_unavailable: Option<u32>,
    /// The per-state deadline, seconds.
    pub state_deadline_seconds: f64,
    /// Per node.
    pub nodes: Vec<NodeTimeline>,
    /// Seconds spent in each state, summed over the nodes.
    pub seconds_per_state: BTreeMap<String, f64>,
    /// The most nodes between cordon and uncordon at once.
    pub most_upgrading: usize,
    /// The most nodes unschedulable at once (whoever cordoned them).
    pub most_unavailable: usize,
    /// Every finding, one line each (stuck, failed, flipped, too many, unfinished).
    pub findings: Vec<String>,
    /// A signal stopped the watch.
    pub interrupted: bool,
}

/// One benchmark identity, before and after.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Compared {
    /// Identity (`<pool>/<model>/<device>/<metric>`).
    pub id: String,
    /// `GB/s` or `TFLOPS`.
    pub unit: String,
    /// Median before.
    pub before: f64,
    /// Median after.
    pub after: f64,
    /// `better`, `same`, `worse` or `inconclusive`.
    pub verdict: String,
}

/// The upgrade section of `results.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct UpgradeReport {
    /// The driver before (the plan's chart value).
    pub from: String,
    /// The driver asked for.
    pub to: String,
    /// The watch and its findings.
    pub watched: Option<Watched>,
    /// The upgrade did not complete on every node (helm failed, a node failed, stuck, flipped,
    /// unfinished, or the policy was broken).
    pub failed: bool,
    /// The baseline's benchmarks (the run's `benchmarks` are the new driver's).
    pub baseline: Vec<BenchRow>,
    /// Before against after, worst first.
    pub comparison: Vec<Compared>,
    /// At least one benchmark is worse under the new driver.
    pub regressed: bool,
    /// What `--rollback-on-failure` did, when it ran.
    pub rollback: Option<String>,
}

/// The Markdown section.
pub fn markdown(u: &UpgradeReport) -> String {
    let mut s = format!(
        "\n## Driver upgrade {} → {}{}\n\n",
        esc(&u.from),
        esc(&u.to),
        if u.failed {
            " — **failed**"
        } else if u.regressed {
            " — **regression**"
        } else {
            ""
        }
    );
    if let Some(w) = &u.watched {
        let _ = writeln!(
            s,
            "Watched for {:.1} s{}. At most {} node(s) upgrading at once (maxParallelUpgrades {}), at most {} unschedulable (maxUnavailable {}).\n",
            w.seconds,
            if w.interrupted {
                " (interrupted: each node's last state below)"
            } else {
                ""
            },
            w.most_upgrading,
            if w.max_parallel == 0 {
                "no limit".to_string()
            } else {
                w.max_parallel.to_string()
            },
            w.most_unavailable,
            w.max_unavailable
                .map_or("no limit".to_string(), |m| m.to_string()),
        );
        s.push_str("| node | last state | states (seconds) |\n|---|---|---|\n");
        for n in &w.nodes {
            let states: Vec<String> = n
                .spans
                .iter()
                .filter(|sp| !sp.state.is_empty())
                .map(|sp| format!("{} {:.1}", sp.state, sp.until - sp.from))
                .collect();
            let _ = writeln!(
                s,
                "| {} | {} | {} |",
                esc(&n.node),
                esc(&n.last_state),
                esc(&states.join(" → "))
            );
        }
        if !w.seconds_per_state.is_empty() {
            s.push_str("\n| state | seconds, all nodes |\n|---|---|\n");
            for (state, secs) in &w.seconds_per_state {
                let _ = writeln!(s, "| {} | {secs:.1} |", esc(state));
            }
        }
        if !w.findings.is_empty() {
            s.push_str("\nFindings:\n\n");
            for f in &w.findings {
                let _ = writeln!(s, "- {}", esc(f));
            }
        }
    }
    if let Some(r) = &u.rollback {
        let _ = writeln!(s, "\nRollback: {}", esc(r));
    }
    if !u.comparison.is_empty() {
        s.push_str("\n| benchmark | before | after | change | verdict |\n|---|---|---|---|---|\n");
        for c in &u.comparison {
            let change = if c.before > 0.0 {
                format!("{:+.1}%", (c.after / c.before - 1.0) * 100.0)
            } else {
                "-".into()
            };
            let _ = writeln!(
                s,
                "| {} | {:.2} {u} | {:.2} {u} | {change} | {} |",
                esc(&c.id),
                c.before,
                c.after,
                if c.verdict == "worse" {
                    "**worse**"
                } else {
                    &c.verdict
                },
                u = esc(&c.unit),
            );
        }
    }
    s
}

/// A colour per state: waiting grey, out of scheduling in warm colours, done green, failed red.
fn colour(state: &str) -> &'static str {
    match state {
        "upgrade-required" => "#bdc3c7",
        "cordon-required" | "uncordon-required" => "#f5b041",
        "wait-for-jobs-required" | "pod-deletion-required" | "drain-required" => "#e67e22",
        "pod-restart-required" => "#8e44ad",
        "validation-required" => "#3498db",
        "upgrade-done" => "#27ae60",
        "upgrade-failed" => "#c0392b",
        _ => "#ecf0f1",
    }
}

/// The HTML section: one row per node, one rectangle per state, time left to right.
pub fn html(u: &UpgradeReport) -> String {
    let mut s = format!(
        "<h2>Driver upgrade {} → {}{}</h2>\n",
        esc(&u.from),
        esc(&u.to),
        if u.failed {
            " — failed"
        } else if u.regressed {
            " — regression"
        } else {
            ""
        }
    );
    let Some(w) = &u.watched else {
        return s;
    };
    let (left, width, row) = (160.0, 720.0, 22.0);
    let end = w.seconds.max(1e-9);
    let height = row * w.nodes.len() as f64 + 40.0;
    let _ = writeln!(
        s,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{}\" height=\"{height}\" role=\"img\" aria-label=\"upgrade timeline\">",
        left + width + 20.0
    );
    for (i, n) in w.nodes.iter().enumerate() {
        let y = 10.0 + row * i as f64;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\" font-size=\"12\">{}</text>",
            left - 6.0,
            y + 14.0,
            esc(&n.node)
        );
        for sp in &n.spans {
            let x = left + sp.from / end * width;
            let wd = ((sp.until - sp.from) / end * width).max(1.0);
            let _ = writeln!(
                s,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{wd:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {:.1}–{:.1} s</title></rect>",
                row - 4.0,
                colour(&sp.state),
                esc(&n.node),
                esc(if sp.state.is_empty() {
                    "(no state)"
                } else {
                    &sp.state
                }),
                sp.from,
                sp.until
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{left}\" y=\"{}\" font-size=\"11\">0 s</text><text x=\"{}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{:.1} s</text></svg>",
        height - 8.0,
        left + width,
        height - 8.0,
        w.seconds
    );
    s.push_str("<p>");
    for st in crate::gpu_stack::upgrade::State::ORDER {
        let _ = write!(
            s,
            "<span style=\"background:{};padding:0 .4em;margin-right:.3em\">{}</span>",
            colour(st.label()),
            st.label()
        );
    }
    s.push_str("</p>\n");
    let _ = writeln!(
        s,
        "<p>At most {} node(s) upgrading at once, at most {} unschedulable.</p>",
        w.most_upgrading, w.most_unavailable
    );
    if !w.findings.is_empty() {
        s.push_str("<ul>");
        for f in &w.findings {
            let _ = write!(s, "<li>{}</li>", esc(f));
        }
        s.push_str("</ul>\n");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> UpgradeReport {
        let span = |state: &str, from: f64, until: f64| Span {
            state: state.into(),
            from,
            until,
        };
        UpgradeReport {
            from: "580.95.05".into(),
            to: "595.91.07".into(),
            watched: Some(Watched {
                seconds: 10.0,
                max_parallel: 1,
                max_unavailable: Some(1),
                state_deadline_seconds: 60.0,
                nodes: vec![NodeTimeline {
                    node: "gpu-a-1".into(),
                    spans: vec![
                        span("upgrade-required", 0.0, 2.0),
                        span("drain-required", 2.0, 7.5),
                        span("upgrade-failed", 7.5, 10.0),
                    ],
                    last_state: "upgrade-failed".into(),
                }],
                seconds_per_state: BTreeMap::from([("drain-required".into(), 5.5)]),
                most_upgrading: 1,
                most_unavailable: 1,
                findings: vec!["gpu-a-1: upgrade-failed <in drain-required>".into()],
                interrupted: false,
            }),
            failed: true,
            baseline: Vec::new(),
            comparison: vec![Compared {
                id: "gpu-a/T4/Tesla T4/copy".into(),
                unit: "GB/s".into(),
                before: 300.0,
                after: 270.0,
                verdict: "worse".into(),
            }],
            regressed: true,
            rollback: None,
        }
    }

    #[test]
    fn markdown_names_each_state_its_time_and_the_slowed_metric() {
        let md = markdown(&report());
        assert!(md.contains("580.95.05 → 595.91.07 — **failed**"), "{md}");
        assert!(
            md.contains(
                "| gpu-a-1 | upgrade-failed | upgrade-required 2.0 → drain-required 5.5 → upgrade-failed 2.5 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| gpu-a/T4/Tesla T4/copy | 300.00 GB/s | 270.00 GB/s | -10.0% | **worse** |"
            ),
            "{md}"
        );
        assert!(md.contains("&lt;in drain-required&gt;"), "{md}");
    }

    #[test]
    fn the_timeline_draws_one_rectangle_per_state_to_scale() {
        let h = html(&report());
        assert_eq!(h.matches("<rect").count(), 3, "{h}");
        // drain-required: 2.0 s into 10 s over 720 px, 5.5 s wide.
        assert!(
            h.contains("<rect x=\"304.0\" y=\"10.0\" width=\"396.0\""),
            "{h}"
        );
        assert!(h.contains("fill=\"#c0392b\""), "{h}");
    }
}
