//! Shell completions and man pages, generated from the clap description in `cli` so they
//! cannot drift from the parser. Nothing here runs at build time: packagers call the hidden
//! `weft completions` and `weft man` subcommands (scripts/package-deb.sh does).

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

/// Prints weft(1) to stdout, or with `dir` writes weft.1 and weft-<sub>[-<sub>].1 for every
/// visible subcommand into it (the directory must exist).
pub fn man(dir: Option<&Path>) -> anyhow::Result<()> {
    match dir {
        None => {
            let mut out = std::io::stdout().lock();
            render_main(&mut out)?;
            out.flush().context("writing the man page")
        }
        Some(dir) => clap_mangen::generate_to(Cli::command(), dir)
            .with_context(|| format!("writing man pages into {}", dir.display())),
    }
}

/// Renders weft(1), whose SUBCOMMANDS section refers to the weft-<sub>(1) pages.
pub fn render_main(out: &mut dyn Write) -> anyhow::Result<()> {
    // As `clap_mangen::generate_to` does: no weft-help(1) exists to refer to.
    let cmd = Cli::command().disable_help_subcommand(true);
    clap_mangen::Man::new(cmd).render(out).context("rendering the man page")
}
