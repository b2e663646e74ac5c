//! `gpuconform certify PLAN`: a run under the certification profile, then the bundle. The
//! profile's input rules and the signing key are checked before anything starts (exit 2); the
//! bundle is written for every run that got as far as its reports (a reviewer looks at a failed
//! one too), and the run certifies only when the profile's run rules and `verify` find nothing.

use std::path::{Path, PathBuf};

use crate::certify::{bundle, profile, verify};
use crate::cli::CertifyArgs;
use crate::errors::ExpectedError;
use crate::input::InputError;
use crate::output::Printer;
use crate::plan::Plan;
use crate::report::RunRecord;
use crate::suite::Suite;

/// What `certify` adds to a run.
pub struct Options {
    /// `--allow-simulated`.
    pub allow_simulated: bool,
    /// `--sign-key`.
    pub sign_key: Option<PathBuf>,
}

/// Runs the plan under the profile and writes the bundle.
pub async fn certify(args: CertifyArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let options = Options {
        allow_simulated: args.allow_simulated,
        sign_key: args.sign_key,
    };
    super::run::run(args.run, super::run::Mode::Certify(options), printer).await
}

impl Options {
    /// The profile's rules over the inputs, and a signing key that can sign.
    pub fn check_inputs(&self, plan: &Plan, suites: &[Suite]) -> Vec<InputError> {
        let mut out = profile::check_inputs(plan, suites, self.allow_simulated);
        if let Some(k) = &self.sign_key
            && let Err(e) = crate::certify::sign::sign(k, b"gpuconform")
        {
            out.push(InputError::file(Path::new("--sign-key"), e.to_string()));
        }
        out
    }

    /// Writes and seals the bundle of the finished run in `dir`, says whether it certifies,
    /// and returns the exit code.
    pub fn seal(
        &self,
        dir: &Path,
        record: &RunRecord,
        plan: &Plan,
        suites: &[Suite],
        printer: &Printer,
    ) -> u8 {
        use crate::exit_codes::{CHECKS_FAILED, INFRA_ERROR, OK};
        if record.interrupted {
            printer.warn("interrupted: no bundle is written");
            return record.exit_code;
        }
        let sealed = match bundle::write(dir, record, plan, suites, self.sign_key.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                printer.error(format!("bundle: {e}"));
                return match e {
                    bundle::BundleError::Credentials(_) => CHECKS_FAILED,
                    _ if record.exit_code != OK => record.exit_code,
                    _ => INFRA_ERROR,
                };
            }
        };
        if let Err(why) = &sealed.checklist {
            printer.warn(format!("AI-conformance checklist: {why}"));
        }
        let mut problems = profile::check_run(record, self.allow_simulated);
        if problems.is_empty() {
            // What a reviewer will run, run first: a bundle that does not verify certifies
            // nothing.
            problems = verify::verify(&sealed.dir, None).problems;
        }
        for p in &problems {
            printer.error(format!("not certified: {p}"));
        }
        printer.result(format!(
            "bundle: {} ({})",
            sealed.dir.display(),
            sealed.archive.display()
        ));
        let code = if record.exit_code != OK {
            record.exit_code
        } else if problems.is_empty() {
            OK
        } else {
            CHECKS_FAILED
        };
        let word = match (problems.is_empty(), profile::simulated(record)) {
            (false, _) => format!("not certified: {} problems", problems.len()),
            (true, true) => format!("{}: every rule held", bundle::NOT_A_CERTIFICATION),
            (true, false) => "certified: every rule held".into(),
        };
        printer.result(format!("{}: {word}; exit {code}", record.run_id));
        code
    }
}
