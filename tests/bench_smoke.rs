//! Smoke test of the load generator behind `scripts/bench.sh` (`examples/bench.rs`).
//!
//! Each test runs one scenario for about two seconds, in-process, against a fubar test
//! broker, through the generator's own command-line entry point (`examples/bench/cli.rs`),
//! and checks the JSON line it prints: the fields `scripts/bench.sh` reads are there with
//! sane values, and at QoS 1 no message is lost. Benchmarks are not tests: nothing here
//! asserts on a rate or a latency.

#[path = "../examples/bench/cli.rs"]
#[allow(dead_code)]
mod cli;
#[path = "../examples/bench/client.rs"]
#[allow(dead_code)]
mod client;
#[path = "../examples/bench/conn.rs"]
#[allow(dead_code)]
mod conn;
#[path = "../examples/bench/procfs.rs"]
#[allow(dead_code)]
mod procfs;
#[path = "../examples/bench/pubsub.rs"]
#[allow(dead_code)]
mod pubsub;

mod common;

use common::TestBroker;
use serde_json::Value;

/// Fields every pub/sub-like line carries.
const PUBSUB_KEYS: &[&str] = &[
    "pubs",
    "subs",
    "topics",
    "qos",
    "payload",
    "mode",
    "pubs_connected",
    "subs_connected",
    "sent",
    "sent_per_sec",
    "acked",
    "expected",
    "received",
    "received_per_sec",
    "loss",
    "out_of_order",
    "gaps",
    "p50_us",
    "p99_us",
    "max_us",
];

/// Resource fields every line carries.
const RESOURCE_KEYS: &[&str] = &[
    "broker_pid",
    "broker_cpu_secs",
    "broker_peak_rss_kb",
    "gen_cpu_secs",
    "gen_cpu_util",
    "gen_threads",
    "errors",
    "error_samples",
];

/// Runs the generator against `broker` with the scenario arguments `args`; returns the JSON.
fn bench(broker: &TestBroker, args: &str) -> Value {
    let port = broker.port().to_string();
    let pid = std::process::id().to_string();
    let mut argv = vec![
        "bench",
        "--port",
        &port,
        "--broker-pid",
        &pid,
        "--label",
        "fubar",
        "--threads",
        "2",
    ];
    argv.extend(args.split_whitespace());
    let line = cli::run(argv).unwrap_or_else(|(code, msg)| panic!("bench failed ({code}): {msg}"));
    assert!(!line.contains('\n'), "one line: {line}");
    let json: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
    for key in RESOURCE_KEYS {
        assert!(json.get(key).is_some(), "missing {key} in {line}");
    }
    assert_eq!(json["broker"], "fubar");
    assert_eq!(json["errors"], 0, "{line}");
    assert!(json["broker_cpu_secs"].as_f64().is_some(), "{line}");
    assert!(
        json["broker_peak_rss_kb"].as_u64().unwrap_or(0) > 0,
        "{line}"
    );
    json
}

/// Checks a pub/sub-like line: its fields, everyone connected, something delivered.
fn check_pubsub(json: &Value, scenario: &str, pubs: u64, subs: u64) {
    let line = json.to_string();
    for key in PUBSUB_KEYS {
        assert!(json.get(key).is_some(), "missing {key} in {line}");
    }
    assert_eq!(json["scenario"], scenario, "{line}");
    assert_eq!(json["pubs_connected"].as_u64(), Some(pubs), "{line}");
    assert_eq!(json["subs_connected"].as_u64(), Some(subs), "{line}");
    assert!(json["sent"].as_u64().unwrap_or(0) > 0, "{line}");
    assert!(json["received"].as_u64().unwrap_or(0) > 0, "{line}");
    assert!(json["p50_us"].as_u64() <= json["p99_us"].as_u64(), "{line}");
    assert!(json["p99_us"].as_u64() <= json["max_us"].as_u64(), "{line}");
    assert_eq!(json["out_of_order"], 0, "{line}");
}

/// At QoS 1 every publish is acknowledged and delivered: nothing lost, no gap.
fn check_no_loss(json: &Value) {
    let line = json.to_string();
    assert_eq!(json["loss"], 0, "{line}");
    assert_eq!(json["gaps"], 0, "{line}");
    assert_eq!(json["acked"], json["sent"], "{line}");
    assert_eq!(json["received"], json["expected"], "{line}");
}

#[test]
fn pubsub_qos1_loses_nothing() {
    let broker = TestBroker::start();
    let json = bench(
        &broker,
        "pubsub --pubs 10 --subs 10 --topics 5 --qos 1 --payload 64 --window 20 --secs 2 --drain-secs 3",
    );
    check_pubsub(&json, "pubsub", 10, 10);
    assert_eq!(json["mode"], "window");
    check_no_loss(&json);
}

#[test]
fn pubsub_qos0_reports_its_figures() {
    let broker = TestBroker::start();
    let json = bench(
        &broker,
        "pubsub --pubs 10 --subs 10 --topics 10 --qos 0 --payload 64 --window 20 --secs 2 --drain-secs 2",
    );
    check_pubsub(&json, "pubsub", 10, 10);
    assert_eq!(json["qos"], 0);
}

#[test]
fn fanout_qos1_loses_nothing() {
    let broker = TestBroker::start();
    let json = bench(
        &broker,
        "fanout --subs 50 --qos 1 --payload 64 --window 20 --secs 2 --drain-secs 3",
    );
    check_pubsub(&json, "fanout", 1, 50);
    check_no_loss(&json);
}

#[test]
fn fanin_qos1_loses_nothing() {
    let broker = TestBroker::start();
    let json = bench(
        &broker,
        "fanin --pubs 50 --qos 1 --payload 64 --window 5 --secs 2 --drain-secs 3",
    );
    check_pubsub(&json, "fanin", 50, 1);
    check_no_loss(&json);
}

#[test]
fn fixed_rate_latency_run_loses_nothing() {
    let broker = TestBroker::start();
    let json = bench(
        &broker,
        "pubsub --pubs 5 --subs 5 --topics 5 --qos 1 --payload 64 --rate 500 --secs 2 --drain-secs 3",
    );
    check_pubsub(&json, "pubsub", 5, 5);
    assert_eq!(json["mode"], "rate");
    check_no_loss(&json);
}

#[test]
fn persistent_qos1_through_the_strict_store_loses_nothing() {
    let broker = TestBroker::start_with(|cfg| {
        cfg.store.durability = fubar::store::Durability::Strict;
    });
    let json = bench(
        &broker,
        "pubsub --pubs 10 --subs 10 --topics 5 --qos 1 --payload 64 --window 20 --persistent --secs 2 --drain-secs 3",
    );
    check_pubsub(&json, "pubsub", 10, 10);
    assert_eq!(json["persistent"], true);
    check_no_loss(&json);
}

#[test]
fn conn_reports_memory_per_connection() {
    // The generator connects from 127.0.0.x sources: trust the whole loopback range, as
    // scripts/bench.sh does (the default trusts 127.0.0.1 only and rate-limits the rest).
    let broker = TestBroker::start_with(|cfg| {
        cfg.auth.allow = vec!["127.0.0.0/8".into(), "::1".into()];
    });
    let json = bench(&broker, "conn --connections 200 --hold-secs 1");
    let line = json.to_string();
    assert_eq!(json["scenario"], "conn", "{line}");
    assert_eq!(json["connected"], 200, "{line}");
    assert_eq!(json["dropped"], 0, "{line}");
    for key in [
        "connect_rate",
        "rss_per_conn_bytes",
        "rss_before_kb",
        "rss_after_kb",
    ] {
        assert!(json.get(key).is_some(), "missing {key} in {line}");
    }
}
