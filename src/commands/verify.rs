//! `gpuconform verify BUNDLE [--key PUB]`: the reviewer's check of a certification bundle.

use crate::certify::verify::verify as check;
use crate::cli::VerifyArgs;
use crate::output::Printer;

/// Verifies the bundle; exit 0 when nothing is wrong, 1 naming each problem, 2 when the path
/// is not a bundle folder.
pub fn verify(args: &VerifyArgs, printer: &Printer) -> u8 {
    if !args.bundle.is_dir() {
        printer.error(format!(
            "{}: not a bundle folder (unpack a .tar.gz first: tar -xzf BUNDLE.tar.gz)",
            args.bundle.display()
        ));
        return crate::exit_codes::INPUT_ERROR;
    }
    let v = check(&args.bundle, args.key.as_deref());
    for n in &v.notes {
        printer.warn(n);
    }
    for p in &v.problems {
        printer.error(p);
    }
    if v.problems.is_empty() {
        printer.result(format!("{}: verified", args.bundle.display()));
        crate::exit_codes::OK
    } else {
        printer.result(format!(
            "{}: {} problems",
            args.bundle.display(),
            v.problems.len()
        ));
        crate::exit_codes::CHECKS_FAILED
    }
}
