//! `gpuconform sweep`: the leak janitor. Lists the EC2 instances and security groups gpuconform
//! tagged whose expiry has passed (or all of one run with `--run-id`), in each region; with
//! `--yes` deletes them and reports what could not be removed (exit 4).

use std::time::{Duration, Instant};

use crate::cli::{Format, SweepArgs};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::input::InputError;
use crate::output::Printer;
use crate::target::aws::ec2;

/// Runs the sweep.
pub async fn sweep(args: SweepArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    if args.regions.is_empty() {
        return Err(ExpectedError::Input(InputError::file(
            std::path::Path::new("--region"),
            "give --region (or set AWS_REGION)",
        )));
    }
    let mut left_total = Vec::new();
    let mut errors = 0;
    let mut regions: Vec<serde_json::Value> = Vec::new();
    for region in &args.regions {
        let client = ec2::client(region).await;
        let found = match ec2::find(&client, args.run_id.as_deref(), chrono::Utc::now()).await {
            Ok(f) => f,
            Err(e) => {
                printer.error(format!("error: {region}: {e}"));
                errors += 1;
                continue;
            }
        };
        let text = args.output == Format::Text;
        for (id, ty, state, run, exp) in &found.instances {
            if text {
                printer.result(format!(
                    "{region} instance {id} {ty} {state} run {run} expires {exp}"
                ));
            }
        }
        for (id, run, exp) in &found.security_groups {
            if text {
                printer.result(format!(
                    "{region} security-group {id} run {run} expires {exp}"
                ));
            }
        }
        let mut row = serde_json::json!({
            "region": region,
            "instances": found.instances.iter().map(|(id, ty, state, run, exp)| serde_json::json!({
                "id": id, "type": ty, "state": state, "run": run, "expires": exp.to_string(),
            })).collect::<Vec<_>>(),
            "securityGroups": found.security_groups.iter().map(|(id, run, exp)| serde_json::json!({
                "id": id, "run": run, "expires": exp.to_string(),
            })).collect::<Vec<_>>(),
            "deleted": false,
            "left": Vec::<String>::new(),
        });
        let n = found.instances.len() + found.security_groups.len();
        if n == 0 {
            printer.progress(format!("{region}: nothing to sweep"));
            regions.push(row);
            continue;
        }
        if !args.yes {
            printer.progress(format!(
                "{region}: {n} resources would be deleted; run again with --yes to delete them"
            ));
            regions.push(row);
            continue;
        }
        let progress = |l: String| printer.progress(format!("{region}: {l}"));
        let left = ec2::delete(
            &client,
            &found,
            Instant::now() + Duration::from_secs(900),
            &progress,
        )
        .await;
        row["deleted"] = true.into();
        row["left"] = left.clone().into();
        regions.push(row);
        left_total.extend(left.into_iter().map(|l| format!("{region}: {l}")));
    }
    if args.output == Format::Json {
        printer.json(&serde_json::json!({ "regions": regions, "errors": errors }));
    }
    if !left_total.is_empty() {
        return Err(ExpectedError::TeardownIncomplete(left_total));
    }
    Ok(if errors > 0 {
        exit_codes::INFRA_ERROR
    } else {
        exit_codes::OK
    })
}
