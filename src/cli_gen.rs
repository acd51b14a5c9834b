//! Shell completions and man pages. Completions and the per-command pages weft-<command>(8)
//! are generated from the clap description in `cli`, so their options cannot drift from the
//! parser; weft(8) and weft.toml(5) are hand-written roff in docs/man/, compiled in, and
//! tests/cli_gen.rs checks that they name every command and every configuration key. Nothing
//! here runs at build time: packagers call the hidden `weft completions` and `weft man`
//! subcommands (scripts/package-deb.sh does).

use crate::cli::{Cli, CompletionShell};
use anyhow::Context;
use clap::CommandFactory;
use std::io::Write;
use std::path::Path;

/// Writes the completion script for `shell` to `out`.
pub fn completions(shell: CompletionShell, out: &mut dyn Write) -> anyhow::Result<()> {
    let shell = match shell {
        CompletionShell::Bash => clap_complete::Shell::Bash,
        CompletionShell::Zsh => clap_complete::Shell::Zsh,
        CompletionShell::Fish => clap_complete::Shell::Fish,
    };
    let mut cmd = Cli::command();
    clap_complete::generate(shell, &mut cmd, "weft", out);
    out.flush().context("writing completions")
}

/// Prints weft(8) to stdout, or with `dir` writes weft.8, weft.toml.5 and
/// weft-<sub>[-<sub>].8 for every visible subcommand into it (the directory must exist).
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    match dir {
        None => {
            let mut out = std::io::stdout().lock();
            out.write_all(main_page().as_bytes()).and_then(|()| out.flush()).context("writing the man page")
        }
        Some(dir) => write_pages(dir).with_context(|| format!("writing man pages into {}", dir.display())),
    }
}

/// weft(8): the daemon, every command, files, environment, signals, exit status (roff).
pub fn main_page() -> String {
    with_version(WEFT_8)
}

/// weft.toml(5): every configuration key with its default and range (roff).
pub fn config_page() -> String {
    with_version(WEFT_TOML_5)
}

/// The section of weft's command pages: system administration.
pub const SECTION: &str = "8";

/// Hand-written pages, kept as roff beside the code (docs/man/); `@VERSION@` marks the version.
const WEFT_8: &str = include_str!("../docs/man/weft.8");
const WEFT_TOML_5: &str = include_str!("../docs/man/weft.toml.5");

fn with_version(page: &str) -> String {
    page.replace("@VERSION@", env!("CARGO_PKG_VERSION"))
}

fn write_pages(dir: &Path) -> std::io::Result<()> {
    std::fs::write(dir.join("weft.8"), main_page())?;
    std::fs::write(dir.join("weft.toml.5"), config_page())?;
    // As `clap_mangen::generate_to` does, but in section 8; no weft-help page exists.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_command_pages(sub, dir)?;
    }
    Ok(())
}

/// weft-<command>.8, then one page per visible subcommand of it (weft-ca-sign.8).
fn write_command_pages(cmd: &clap::Command, dir: &Path) -> std::io::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_command_pages(sub, dir)?;
    }
    clap_mangen::Man::new(cmd.clone()).section(SECTION).manual("System Administration").generate_to(dir)?;
    Ok(())
}
