//! The `fubar` binary: parse the command line, load the configuration, start logging and run
//! the chosen command. All broker logic lives in the library.

use anyhow::Context;
use clap::Parser;
use fubar::admin::client;
use fubar::cli::{Cli, Command, NodeArgs, ResetArgs};
use fubar::store::{Options, Store};
use fubar::{Broker, Config};
use std::io::{BufRead, Write};

/// Messages are allocated on one worker thread and freed on another; jemalloc frees those
/// without the arena locks glibc's allocator takes.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

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
    // jemalloc returns freed memory to the system only when some thread allocates, unless
    // its background thread does it: an idle broker whose connections parked (or whose
    // burst of traffic ended) would keep its peak size.
    if let Err(e) = tikv_jemalloc_ctl::background_thread::write(true) {
        slog::warn!(log, "jemalloc background thread not started"; "error" => %e);
    }
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

/// `fubar reset`: wipes the data dir after confirmation, unless a broker holds it.
fn reset(args: &ResetArgs) -> anyhow::Result<()> {
    let config = load(&args.node)?;
    let dir = &config.node.data_dir;
    if !dir.exists() {
        println!("{} does not exist: nothing to reset", dir.display());
        return Ok(());
    }
    // Opening the store takes its lock: this fails while a broker runs on the directory.
    if dir.join(fubar::store::DB_DIR).exists() {
        drop(Store::open(dir, Options::default())?);
    }
    if !args.yes {
        print!(
            "Delete {} (every persistent session, queued and retained message)? Type yes: ",
            dir.display()
        );
        std::io::stdout()
            .flush()
            .context("cannot write to the terminal")?;
        let mut answer = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut answer)
            .context("cannot read the answer")?;
        if answer.trim() != "yes" {
            anyhow::bail!("reset cancelled; nothing was deleted");
        }
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot delete {}", dir.display()))?;
    println!("{} deleted", dir.display());
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
        Some(Command::Reset(args)) => reset(&args),
    };
    if let Err(e) = result {
        eprintln!("fubar: {e:#}");
        std::process::exit(1);
    }
}
