//! The `fubar` binary: parse the command line, load the configuration, start logging and run
//! the chosen command. All broker logic lives in the library.

use anyhow::Context;
use clap::Parser;
use fubar::admin::client;
use fubar::cli::{Cli, Command, NodeArgs};
use fubar::{Broker, Config};

fn load(args: &NodeArgs) -> anyhow::Result<Config> {
    Ok(Config::from_sources(
        args.config.as_deref(),
        true,
        &args.overrides(),
    )?)
}

fn run(args: &NodeArgs) -> anyhow::Result<()> {
    let config = load(args)?;
    let log = fubar::logging::init(
        &config.node.log_dir,
        &config.node.log_level,
        &config.node.name,
    )
    .with_context(|| format!("cannot open log files in {}", config.node.log_dir.display()))?;
    std::fs::create_dir_all(&config.node.data_dir)
        .with_context(|| format!("cannot create data dir {}", config.node.data_dir.display()))?;
    let broker = match Broker::start(config, log.clone()) {
        Ok(broker) => broker,
        Err(e) => {
            slog::crit!(log, "cannot start"; "error" => %e);
            return Err(e.into());
        }
    };
    slog::info!(log, "fubar running"; "mqtt" => %broker.mqtt_addr(), "http" => %broker.http_addr());
    wait_for_stop_signal()?;
    slog::info!(log, "stopping");
    broker.shutdown();
    Ok(())
}

/// Prints what an admin command returned.
fn admin(result: Result<String, client::ClientError>) -> anyhow::Result<()> {
    print!("{}", result?);
    Ok(())
}

/// Blocks until SIGINT or SIGTERM.
fn wait_for_stop_signal() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start signal runtime")?;
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("cannot install SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("cannot wait for SIGINT"),
            _ = term.recv() => Ok(()),
        }
    })
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        None => run(&cli.node),
        Some(Command::Run(args)) => run(&args),
        Some(Command::PrintConfig(args)) => {
            load(&args).map(|config| print!("{}", config.to_toml()))
        }
        Some(Command::State(args)) => admin(client::state(&args)),
        Some(Command::Account(command)) => admin(client::account(&command)),
        Some(Command::Acl(command)) => admin(client::acl(&command)),
        Some(Command::Tls(command)) => admin(client::tls(&command)),
    };
    if let Err(e) = result {
        eprintln!("fubar: {e:#}");
        std::process::exit(1);
    }
}
