//! What each subcommand does: resolve flags into settings, call the library, report.

mod certify;
mod compare;
mod dry_run;
mod init;
mod lint;
mod list;
mod local;
mod retrieve;
mod run;
mod shell;
mod simulator;
mod summary;
mod sweep;
mod verify;

use crate::cli::{Command, LocalCommand};
use crate::errors::ExpectedError;
use crate::output::Printer;

/// Runs a subcommand; `Ok` carries the exit code of a command that ran to its end.
pub async fn dispatch(command: Command, printer: &Printer) -> Result<u8, ExpectedError> {
    match command {
        Command::Local(LocalCommand::Up(args)) => local::up(args, printer).await,
        Command::Local(LocalCommand::Down(args)) => local::down(args, printer).await,
        Command::Local(LocalCommand::Status(args)) => local::status(args, printer),
        Command::Init(args) => init::init(args, printer).await,
        Command::Run(args) => run::run(args, run::Mode::Plain, printer).await,
        Command::Certify(args) => certify::certify(args, printer).await,
        Command::Upgrade(args) => run::upgrade(args, printer).await,
        Command::Verify(args) => Ok(verify::verify(&args, printer)),
        Command::Lint(args) => lint::lint(args, printer),
        Command::List(args) => list::list(args, printer),
        Command::Sweep(args) => sweep::sweep(args, printer).await,
        Command::Compare(args) => compare::compare(args, printer),
        Command::Trend(args) => compare::trend(args, printer),
        Command::Retrieve(args) => retrieve::retrieve(args, printer).await,
        Command::Schema(args) => Ok(shell::schema(&args, printer)),
        Command::Completions(args) => Ok(shell::completions(&args, printer)),
        Command::Man(args) => shell::man(&args, printer),
    }
}
