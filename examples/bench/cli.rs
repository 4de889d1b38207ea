//! The generator's command line: parses the arguments, runs one scenario and returns its
//! JSON line. `examples/bench.rs` prints it; `tests/bench_smoke.rs` runs it in-process
//! against a test broker. The scenario modules (`client`, `conn`, `procfs`, `pubsub`) are
//! declared next to this one at the crate root by whoever includes it.

use std::net::{SocketAddr, ToSocketAddrs};

use clap::{Args, Parser, Subcommand};
use fubar::codec::QoS;
use serde::Serialize;

/// Longest publishing phase plus drain: every connection asks for keep-alive 300 and the
/// generator sends no PINGREQ, so runs stay below it.
const MAX_RUN_SECS: f64 = 300.0;

#[derive(Parser, Debug)]
#[command(
    name = "bench",
    about = "MQTT load generator: prints one JSON line of results"
)]
struct Cli {
    /// Broker host (IPv4).
    #[arg(long, default_value = "127.0.0.1", global = true)]
    host: String,
    /// Broker MQTT port.
    #[arg(long, default_value_t = 1883, global = true)]
    port: u16,
    /// Broker process id, for CPU and RSS figures from /proc.
    #[arg(long, global = true)]
    broker_pid: Option<u32>,
    /// Broker name written into the JSON line.
    #[arg(long, default_value = "unknown", global = true)]
    label: String,
    /// Generator worker threads (default: one per CPU).
    #[arg(long, global = true)]
    threads: Option<usize>,
    /// Connections per 127.0.0.x source address (ephemeral ports run out near 28k).
    #[arg(long, default_value_t = 10_000, global = true)]
    per_source: usize,
    #[command(subcommand)]
    scenario: Scenario,
}

#[derive(Subcommand, Debug)]
enum Scenario {
    /// N idle connections held for T seconds: connect rate and broker RSS per connection.
    Conn {
        /// Connections to open (clamped to the open-file limit).
        #[arg(long, default_value_t = 1000)]
        connections: usize,
        /// Seconds to hold them.
        #[arg(long, default_value_t = 10.0)]
        hold_secs: f64,
        /// Keep-alive in CONNECT, seconds.
        #[arg(long, default_value_t = 300)]
        keep_alive: u16,
        /// Connections being set up at once (more than the broker's listen backlog only
        /// adds SYN retransmits).
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
    },
    /// P publishers and S subscribers over K topics; subscriber i takes bench/<i % K>.
    Pubsub {
        /// Publishers.
        #[arg(long, default_value_t = 100)]
        pubs: usize,
        /// Subscribers.
        #[arg(long, default_value_t = 100)]
        subs: usize,
        /// Topics.
        #[arg(long, default_value_t = 100)]
        topics: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// One publisher, S subscribers, one topic.
    Fanout {
        /// Subscribers.
        #[arg(long, default_value_t = 1000)]
        subs: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// P publishers, one subscriber, one topic.
    Fanin {
        /// Publishers.
        #[arg(long, default_value_t = 1000)]
        pubs: usize,
        #[command(flatten)]
        load: LoadArgs,
    },
}

#[derive(Args, Debug)]
struct LoadArgs {
    /// QoS of publishes and subscriptions.
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
    qos: u8,
    /// Payload bytes per message (at least 16: the timestamp/sequence stamp).
    #[arg(long, default_value_t = 64)]
    payload: usize,
    /// Seconds of publishing.
    #[arg(long, default_value_t = 10.0)]
    secs: f64,
    /// Open loop: total messages per second over all publishers.
    #[arg(long, conflicts_with = "window")]
    rate: Option<f64>,
    /// Closed loop: messages per publisher not yet acknowledged (QoS 1/2) and not yet
    /// received by the subscribers (all QoS).
    #[arg(long)]
    window: Option<u32>,
    /// Most seconds to wait after publishing for outstanding deliveries and acks.
    #[arg(long, default_value_t = 2.0)]
    drain_secs: f64,
    /// Connections being set up at once.
    #[arg(long, default_value_t = 64)]
    connect_concurrency: usize,
    /// Subscribers connect with clean session 0, so the broker keeps (and, if it persists
    /// sessions, stores) their sessions and QoS 1/2 queues. The sessions stay behind after
    /// the run: start the broker on a fresh data directory for every run.
    #[arg(long)]
    persistent: bool,
}

/// Default closed-loop window per publisher.
const DEFAULT_WINDOW: u32 = 100;

/// The JSON line: common fields, then the scenario's, then resource use and errors.
#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    scenario: &'a str,
    broker: &'a str,
    host: &'a str,
    port: u16,
    #[serde(flatten)]
    result: T,
    #[serde(flatten)]
    resources: crate::procfs::ResourceReport,
    gen_threads: usize,
    errors: u64,
    error_samples: Vec<String>,
}

fn load_config(
    pubs: usize,
    subs: usize,
    topics: usize,
    load: &LoadArgs,
    per_source: usize,
) -> Result<crate::pubsub::LoadConfig, String> {
    if !(load.secs > 0.0 && load.drain_secs >= 0.0 && load.secs + load.drain_secs <= MAX_RUN_SECS) {
        return Err(format!(
            "--secs must be > 0 and --secs + --drain-secs <= {MAX_RUN_SECS}"
        ));
    }
    if let Some(rate) = load.rate {
        if !(rate > 0.0 && rate.is_finite()) {
            return Err("--rate must be a positive number".into());
        }
    }
    if pubs == 0 || subs == 0 || topics == 0 {
        return Err("publishers, subscribers and topics must all be at least 1".into());
    }
    let payload = if load.payload < crate::pubsub::STAMP_LEN {
        eprintln!(
            "bench: --payload {} raised to {}: the payload carries a timestamp and sequence number",
            load.payload,
            crate::pubsub::STAMP_LEN
        );
        crate::pubsub::STAMP_LEN
    } else {
        load.payload
    };
    let qos = QoS::from_u8(load.qos).ok_or("--qos must be 0, 1 or 2")?;
    Ok(crate::pubsub::LoadConfig {
        pubs,
        subs,
        topics,
        qos,
        payload,
        secs: load.secs,
        rate: load.rate,
        window: load.window.unwrap_or(DEFAULT_WINDOW).max(1),
        drain_secs: load.drain_secs,
        per_source,
        connect_concurrency: load.connect_concurrency,
        persistent: load.persistent,
    })
}

/// Runs the generator with command-line `args` (the first one is the program name) and
/// returns its JSON line; `Err` carries the exit code and the message for stderr.
pub fn run<I, T>(args: I) -> Result<String, (u8, String)>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            return Err((code, e.to_string()));
        }
    };
    let addr: SocketAddr = match (cli.host.as_str(), cli.port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.find(SocketAddr::is_ipv4))
    {
        Some(a) => a,
        None => {
            return Err((
                2,
                format!(
                    "bench: cannot resolve {}:{} to an IPv4 address",
                    cli.host, cli.port
                ),
            ));
        }
    };
    let threads = cli
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()))
        .max(1);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            return Err((1, format!("bench: cannot start the runtime: {e}")));
        }
    };
    let (pubs, subs, topics, load, name) = match &cli.scenario {
        Scenario::Conn {
            connections,
            hold_secs,
            keep_alive,
            concurrency,
        } => {
            if !(*hold_secs >= 0.0 && (*keep_alive == 0 || *hold_secs <= f64::from(*keep_alive))) {
                return Err((
                    2,
                    "bench: --hold-secs must be >= 0 and at most --keep-alive".into(),
                ));
            }
            let cfg = crate::conn::ConnConfig {
                connections: *connections,
                hold_secs: *hold_secs,
                keep_alive: *keep_alive,
                concurrency: *concurrency,
                per_source: cli.per_source,
            };
            let (result, resources, (errors, error_samples)) =
                runtime.block_on(crate::conn::run(addr, cli.broker_pid, &cfg));
            let line = Line {
                scenario: "conn",
                broker: &cli.label,
                host: &cli.host,
                port: cli.port,
                result,
                resources,
                gen_threads: threads,
                errors,
                error_samples,
            };
            return print_line(&line);
        }
        Scenario::Pubsub {
            pubs,
            subs,
            topics,
            load,
        } => (*pubs, *subs, *topics, load, "pubsub"),
        Scenario::Fanout { subs, load } => (1, *subs, 1, load, "fanout"),
        Scenario::Fanin { pubs, load } => (*pubs, 1, 1, load, "fanin"),
    };
    let cfg = match load_config(pubs, subs, topics, load, cli.per_source) {
        Ok(cfg) => cfg,
        Err(msg) => {
            return Err((2, format!("bench: {msg}")));
        }
    };
    let (result, resources, (errors, error_samples)) =
        runtime.block_on(crate::pubsub::run(addr, cli.broker_pid, &cfg));
    let line = Line {
        scenario: name,
        broker: &cli.label,
        host: &cli.host,
        port: cli.port,
        result,
        resources,
        gen_threads: threads,
        errors,
        error_samples,
    };
    print_line(&line)
}

fn print_line<T: Serialize>(line: &Line<'_, T>) -> Result<String, (u8, String)> {
    serde_json::to_string(line).map_err(|e| (1, format!("bench: cannot encode the result: {e}")))
}
