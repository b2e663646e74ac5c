//! Process exit codes: the contract with CI servers and scripts.
//!
//! Each code is a named constant so the README table, the error renderer and the tests agree.
//! A failed check is an outcome (`CHECKS_FAILED`), not a malfunction; the others mean the harness
//! could not do its job, and say which part of the job.

/// Everything ran and every check passed.
pub const OK: u8 = 0;
/// The run completed, and one or more checks failed; `certify`: the run does not certify;
/// `verify`: the bundle has problems.
pub const CHECKS_FAILED: u8 = 1;
/// Bad input: a command-line usage error, or a plan, suite, fixture or catalog file that does not
/// parse or validate. Nothing was started.
pub const INPUT_ERROR: u8 = 2;
/// Infrastructure error: a tool is missing, a process of the local cluster failed to start, the
/// API server did not become ready in time, a cloud call failed. Whatever was started was stopped.
pub const INFRA_ERROR: u8 = 3;
/// Teardown incomplete: something the harness started or created could not be removed. The error
/// lists what is left (process ids, ports, resource ids).
pub const TEARDOWN_INCOMPLETE: u8 = 4;
/// `compare`: at least one benchmark is worse in the new run (a drop of at least the threshold
/// at the confidence asked).
pub const REGRESSION: u8 = 5;
/// `upgrade`: the driver upgrade did not complete: helm could not apply it, or a node failed,
/// got stuck in a state past its deadline, flipped from failed to done, never finished, or more
/// nodes were out at once than the upgrade policy allows.
pub const UPGRADE_FAILED: u8 = 6;
/// Interrupted by SIGINT or SIGTERM; teardown ran.
pub const INTERRUPTED: u8 = 130;
