//! The `weft` binary: parses the command line and hands off to the library.

use clap::Parser;
use weft::cli::{Cli, Command};
use weft::{client, commands, daemon};

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run { config } => run(&config),
        Command::CheckConfig { config } => commands::check_config(&config),
        Command::Keygen { out } => commands::keygen(&out),
        Command::Ca(c) => commands::ca(c),
        Command::Cert(c) => commands::cert(c),
        Command::Attach(a) => client::attach(a),
        Command::Detach(d) => client::detach(d),
        Command::Status(c) => client::status(c),
        Command::Peers(c) => client::peers(c),
        Command::Service(c) => client::service(c),
        Command::Services(c) => client::services(c),
        Command::Completions { shell } => weft::cli_gen::completions(shell, &mut std::io::stdout()),
        Command::Man { dir } => weft::cli_gen::man(dir.as_deref()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weft: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(path: &std::path::Path) -> anyhow::Result<()> {
    let (cfg, identity) = commands::load_checked(path)?;
    // A daemon with a dead worker thread would forward some flows and black-hole others:
    // any panic ends the whole process instead, so the supervisor restarts it cleanly.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        std::process::abort();
    }));
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(weft::daemon::log_filter(&cfg.node.log_level))
    });
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(daemon::run(cfg, identity))
}
