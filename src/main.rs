//! The `weft` binary: parses the command line and hands off to the library.

use clap::Parser;
use weft::cli::{Cli, Command};
use weft::{client, commands, daemon};

fn main() -> std::process::ExitCode {
    // A container runtime execs the plugin with no arguments and CNI_COMMAND set.
    if std::env::var_os("CNI_COMMAND").is_some() {
        return weft::cni::main();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(e),
    };
    let json = cli.command.json();
    if !matches!(cli.command, Command::Run { .. }) {
        weft::device::default_sigpipe();
    }
    let result = match cli.command {
        Command::Cni => return weft::cni::main(),
        Command::Run { config } => run(&config),
        Command::Teardown { config } => teardown(&config),
        Command::CheckConfig { config } => commands::check_config(&config),
        Command::Keygen { out } => commands::keygen(&out),
        Command::Pubkey { key } => commands::pubkey(&key),
        Command::Ca(c) => commands::ca(c),
        Command::Cert(c) => commands::cert(c),
        Command::Attach(a) => client::attach(a),
        Command::Detach(d) => client::detach(d),
        Command::Status(c) => client::status(c),
        Command::Peers(c) => client::peers(c),
        Command::Service(c) => client::service(c),
        Command::Services(c) => client::services(c),
        Command::Reload(c) => client::reload(c),
        Command::Networks(c) => client::networks(c),
        Command::Ping { peer, count, interval, client: c } => client::ping(&peer, count, interval, c),
        Command::Policy(c) => client::policy(c),
        Command::Completions { shell } => weft::cli_gen::completions(shell, &mut std::io::stdout()),
        Command::Man { dir } => weft::cli_gen::man(dir.as_deref()),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        // The command printed its own (JSON) verdict; a second document would break parsers.
        Err(e) if e.is::<commands::Reported>() => std::process::ExitCode::FAILURE,
        // Whoever asked for --json parses stdout, also when the command failed.
        Err(e) if json => {
            println!("{}", error_json(format!("{e:#}")));
            std::process::ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("weft: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A command line clap refused. With `--json` among the arguments the refusal is JSON on
/// stdout too (exit 2, as clap's own); help and version requests print as usual.
fn usage_error(e: clap::Error) -> std::process::ExitCode {
    use clap::error::ErrorKind;
    let asked_json = std::env::args_os().skip(1).any(|a| a == "--json");
    let shows_text = matches!(
        e.kind(),
        ErrorKind::DisplayHelp
            | ErrorKind::DisplayVersion
            | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    );
    if shows_text || !asked_json {
        e.exit();
    }
    let text = e.render().to_string();
    let text = text.trim().strip_prefix("error: ").unwrap_or(text.trim());
    println!("{}", error_json(text.to_owned()));
    std::process::ExitCode::from(2)
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
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt, EnvFilter};
    // RUST_LOG wins over the config, also across reloads.
    let from_env = EnvFilter::try_from_default_env().ok();
    let env_set = from_env.is_some();
    let filter = from_env.unwrap_or_else(|| EnvFilter::new(weft::daemon::log_filter(&cfg.node.log_level)));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    tracing_subscriber::registry()
        .with(filter)
        .with(
            tracing_subscriber::fmt::layer()
                .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
                .with_writer(std::io::stderr),
        )
        .init();
    let set_log_level: Option<weft::daemon::LogLevelSetter> = (!env_set).then(|| {
        Box::new(move |level: &str| {
            let f = EnvFilter::try_new(weft::daemon::log_filter(level))?;
            handle.reload(f)?;
            Ok(())
        }) as weft::daemon::LogLevelSetter
    });
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(daemon::run(cfg, identity, set_log_level))
}

fn teardown(path: &std::path::Path) -> anyhow::Result<()> {
    let cfg = weft::config::Config::load(path)?;
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let done = rt.block_on(daemon::teardown(&cfg))?;
    for (name, network, ip) in &done.containers {
        println!("detached {name} ({ip}) from {network}");
    }
    for b in &done.bridges {
        println!("removed bridge {b}");
    }
    if done.containers.is_empty() && done.bridges.is_empty() {
        println!("nothing to remove");
    }
    Ok(())
}

/// `{"error": …}`: how every `--json` command reports a failure on stdout.
fn error_json(error: String) -> String {
    serde_json::to_string(&weft::report::ErrorReply { error }).unwrap_or_default()
}
