//! Load generator for benchmarking fubar side by side with other MQTT brokers.
//!
//! Speaks MQTT 3.1.1 over plain TCP to any broker, using fubar's own codec (clean session,
//! except `--persistent` subscribers, which keep their sessions),
//! and prints exactly one JSON line of results per run on stdout (diagnostics go to stderr).
//! `scripts/bench.sh` drives it against fubar, Mosquitto and rumqttd; see
//! docs/BENCHMARKS.md for how the numbers are read.
//!
//! ```text
//! cargo run --release --example bench -- --port 1883 --broker-pid PID --label fubar \
//!     pubsub --pubs 100 --subs 100 --topics 100 --qos 1 --payload 64 --secs 10
//! bench ... conn --connections 19000 --hold-secs 10
//! bench ... fanout --subs 1000 --secs 10
//! bench ... fanin --pubs 1000 --window 5 --secs 10
//! bench ... pubsub --qos 1 --rate 20000 --secs 10      # open loop: latency at a fixed rate
//! bench ... pubsub --qos 1 --persistent --secs 10      # subscribers keep their sessions
//! ```
//!
//! The command line is parsed and run by `bench/cli.rs` (shared with `tests/bench_smoke.rs`).
//! Scenarios (modules under `examples/bench/`):
//! - `conn` (`conn.rs`): idle connections spread over 127.0.0.x sources; connect rate and the
//!   broker's RSS per connection.
//! - `pubsub`, `fanout`, `fanin` (`pubsub.rs`): publishers and subscribers on shared topics;
//!   sent/received rates, loss, ordering and end-to-end latency from a stamp in the payload.
//!
//! Every scenario also reports the broker's CPU seconds and peak RSS (from `/proc/<pid>`,
//! given `--broker-pid`) and the generator's own CPU use (`procfs.rs`), so a run where the
//! generator saturates its cores can be told apart from one where the broker does. Broker
//! misbehaviour never panics the generator: it is counted in `errors` (first messages in
//! `error_samples`) and the run still ends and prints its line.

#[path = "bench/cli.rs"]
mod cli;
#[path = "bench/client.rs"]
mod client;
#[path = "bench/conn.rs"]
mod conn;
#[path = "bench/procfs.rs"]
mod procfs;
#[path = "bench/pubsub.rs"]
mod pubsub;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::run(std::env::args_os()) {
        Ok(line) => {
            println!("{line}");
            ExitCode::SUCCESS
        }
        // Code 0: `--help` or `--version`, which belong on stdout.
        Err((0, message)) => {
            println!("{message}");
            ExitCode::SUCCESS
        }
        Err((code, message)) => {
            eprintln!("{message}");
            ExitCode::from(code)
        }
    }
}
