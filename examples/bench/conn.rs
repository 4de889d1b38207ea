//! The `conn` scenario: N idle MQTT connections held for T seconds.
//!
//! Connections come from 127.0.0.1, 127.0.0.2, ... (`per_source` each) so ephemeral ports
//! do not run out; N is clamped to the generator's open-file limit. Reports the connect
//! rate, how many connections the broker dropped while idle, and the broker's RSS growth per
//! connection (VmRSS after the hold minus VmRSS before connecting, divided by N).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fubar::codec::Packet;
use serde::Serialize;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{put, source_addr, Client, ErrorLog};
use crate::procfs::{raise_nofile_limit, round3, status_kb, BrokerMonitor, ResourceReport};

/// File descriptors the generator keeps for itself (runtime, stdio, /proc reads).
const FD_RESERVE: u64 = 64;

/// Parameters of one `conn` run.
#[derive(Debug, Clone)]
pub struct ConnConfig {
    /// Connections requested.
    pub connections: usize,
    /// Seconds to hold them idle.
    pub hold_secs: f64,
    /// Keep-alive sent in CONNECT.
    pub keep_alive: u16,
    /// Connections being set up at once.
    pub concurrency: usize,
    /// Connections per 127.0.0.x source address.
    pub per_source: usize,
}

/// What a `conn` run reports (flattened into the JSON line).
#[derive(Debug, Serialize)]
pub struct ConnReport {
    /// Connections requested on the command line.
    pub requested: usize,
    /// Connections attempted after clamping to the open-file limit.
    pub connections: usize,
    /// Connections that got an accepted CONNACK.
    pub connected: usize,
    /// Connections that failed to connect.
    pub failed: usize,
    /// Seconds from the first connect to the last CONNACK.
    pub connect_secs: f64,
    /// `connected / connect_secs`.
    pub connect_rate: f64,
    /// Seconds the connections were held.
    pub hold_secs: f64,
    /// Connections the broker closed during the hold.
    pub dropped: usize,
    /// Broker VmRSS before connecting, kB.
    pub rss_before_kb: Option<u64>,
    /// Broker VmRSS at the end of the hold, kB.
    pub rss_after_kb: Option<u64>,
    /// (rss_after - rss_before) * 1024 / connected.
    pub rss_per_conn_bytes: Option<f64>,
    /// Distinct 127.0.0.x source addresses used.
    pub source_addrs: usize,
}

/// Runs the `conn` scenario.
pub async fn run(
    addr: SocketAddr,
    broker_pid: Option<u32>,
    cfg: &ConnConfig,
) -> (ConnReport, ResourceReport, (u64, Vec<String>)) {
    let errors = Arc::new(ErrorLog::default());
    let limit = raise_nofile_limit();
    let max_conns = limit.saturating_sub(FD_RESERVE) as usize;
    let n = cfg.connections.min(max_conns);
    if n < cfg.connections {
        eprintln!(
            "bench: clamping --connections {} to {n}: the open-file limit is {limit} \
             (ulimit -Hn) and the generator keeps {FD_RESERVE} descriptors for itself",
            cfg.connections
        );
    }
    let monitor = BrokerMonitor::start(broker_pid);
    let rss_before = monitor.rss_start();

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(cfg.concurrency.max(1)));
    let mut set = JoinSet::new();
    for i in 0..n {
        let gate = Arc::clone(&gate);
        let source = source_addr(i, cfg.per_source);
        let keep_alive = cfg.keep_alive;
        set.spawn(async move {
            let _permit = gate.acquire_owned().await;
            let id = format!("bench-c-{i}");
            Client::connect(
                addr,
                Some(source),
                &id,
                keep_alive,
                true,
                Duration::from_secs(30),
            )
            .await
        });
    }
    let mut clients = Vec::with_capacity(n);
    let mut failed = 0;
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(client)) => clients.push(client),
            Ok(Err(e)) => {
                failed += 1;
                errors.record(format!("connect: {e}"));
            }
            Err(e) => {
                failed += 1;
                errors.record(format!("connect task: {e}"));
            }
        }
    }
    let connect_secs = started.elapsed().as_secs_f64();
    let connected = clients.len();

    let hold = Duration::from_secs_f64(cfg.hold_secs);
    let hold_start = Instant::now();
    while hold_start.elapsed() < hold && monitor.broker_alive() {
        let left = hold.saturating_sub(hold_start.elapsed());
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
    }
    if !monitor.broker_alive() {
        errors.record("broker process exited during the hold");
    }
    let hold_secs = hold_start.elapsed().as_secs_f64();
    let rss_after = broker_pid.and_then(|p| status_kb(p, "VmRSS"));

    let mut dropped = 0;
    let mut probe = [0u8; 64];
    for client in &clients {
        match client.stream.try_read(&mut probe) {
            Ok(0) => dropped += 1,
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => dropped += 1,
        }
    }
    if dropped > 0 {
        errors.record(format!(
            "{dropped} idle connections were closed by the broker"
        ));
    }
    let resources = monitor.finish();
    for client in &mut clients {
        client.wbuf.clear();
        if put(&mut client.wbuf, &Packet::Disconnect(Default::default())).is_ok() {
            let _ = client.stream.try_write(&client.wbuf);
        }
    }
    drop(clients);

    let rss_per_conn = match (rss_before, rss_after) {
        (Some(b), Some(a)) if connected > 0 => {
            Some(round3((a as f64 - b as f64) * 1024.0 / connected as f64))
        }
        _ => None,
    };
    let report = ConnReport {
        requested: cfg.connections,
        connections: n,
        connected,
        failed,
        connect_secs: round3(connect_secs),
        connect_rate: round3(connected as f64 / connect_secs.max(1e-9)),
        hold_secs: round3(hold_secs),
        dropped,
        rss_before_kb: rss_before,
        rss_after_kb: rss_after,
        rss_per_conn_bytes: rss_per_conn,
        source_addrs: if n == 0 {
            0
        } else {
            (n - 1) / cfg.per_source.max(1) + 1
        },
    };
    (report, resources, errors.snapshot())
}
