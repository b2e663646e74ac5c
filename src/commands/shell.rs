//! `gpuconform completions SHELL` and `gpuconform man`: generated from the flag definitions in
//! `cli`, so they cannot drift from what the binary accepts; `gpuconform schema`: the input
//! files' schemas generated from their types, and the output files' shipped ones.

use std::path::Path;

use clap::CommandFactory as _;

use crate::cli::{Cli, CompletionsArgs, ManArgs, SchemaArgs, SchemaOf};
use crate::errors::ExpectedError;
use crate::exit_codes;
use crate::input::InputError;
use crate::output::Printer;

/// Prints the completion script for the shell.
pub fn completions(args: &CompletionsArgs, printer: &Printer) -> u8 {
    let mut cmd = Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(args.shell, &mut cmd, "gpuconform", &mut buf);
    printer.result(String::from_utf8_lossy(&buf).trim_end());
    exit_codes::OK
}

/// Prints the schema.
pub fn schema(args: &SchemaArgs, printer: &Printer) -> u8 {
    let text = match args.of {
        SchemaOf::Plan => crate::input::schema::pretty(&crate::plan::schema()),
        SchemaOf::Suite => crate::input::schema::pretty(&crate::suite::schema()),
        SchemaOf::Events => include_str!("../../schemas/events.schema.json").to_string(),
        SchemaOf::Bench => include_str!("../../schemas/bench.schema.json").to_string(),
    };
    printer.result(text.trim_end());
    exit_codes::OK
}

/// Prints the top man page, or writes every command's page into `--out`.
pub fn man(args: &ManArgs, printer: &Printer) -> Result<u8, ExpectedError> {
    let cmd = Cli::command();
    let Some(dir) = &args.out else {
        printer.result(String::from_utf8_lossy(&render(&cmd, "gpuconform")).trim_end());
        return Ok(exit_codes::OK);
    };
    std::fs::create_dir_all(dir)
        .map_err(|e| InputError::file(dir, format!("cannot create the folder: {e}")))?;
    let mut n = 0;
    write_pages(&cmd, "gpuconform", dir, &mut n)?;
    printer.result(format!("{n} man pages in {}", dir.display()));
    Ok(exit_codes::OK)
}

fn render(cmd: &clap::Command, title: &str) -> Vec<u8> {
    let mut buf = Vec::new();
    // Rendering into memory cannot fail.
    let _ = clap_mangen::Man::new(cmd.clone())
        .title(title.to_string())
        .render(&mut buf);
    buf
}

/// `name.1` for `cmd`, then one page per subcommand, named `name-sub.1` as git's pages are.
fn write_pages(
    cmd: &clap::Command,
    name: &str,
    dir: &Path,
    n: &mut usize,
) -> Result<(), ExpectedError> {
    let path = dir.join(format!("{name}.1"));
    std::fs::write(&path, render(cmd, name))
        .map_err(|e| InputError::file(&path, format!("cannot write the man page: {e}")))?;
    *n += 1;
    for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
        write_pages(sub, &format!("{name}-{}", sub.get_name()), dir, n)?;
    }
    Ok(())
}
