//! Backpressure: a subscriber that never reads its socket while a publisher floods QoS 0
//! messages. The broker must drop (and count) messages for the stuck subscriber, keep its
//! queues within the configured limits, keep its memory bounded, and keep serving a normal
//! subscriber. The broker runs in this process, so its memory is this process's RSS.
//!
//! Only one test lives in this file so that nothing else in the process disturbs the RSS.

mod common;

use bytes::BytesMut;
use common::*;
use fubar::codec::{Protocol, QoS};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

const MESSAGES: usize = 200_000;
const PAYLOAD: usize = 1024;
const MAX_QUEUED_MESSAGES: usize = 1000;
const FLOOD_TIME: Duration = Duration::from_secs(8);
/// The stuck session's queue holds at most 1000 messages of 1 KiB (4 MiB); the rest is the
/// broker's working set. An unbounded mailbox anywhere upstream of the sessions shows up
/// here as growth of 100-300 MiB.
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stuck_subscriber_does_not_hurt_broker_or_others() {
    let b = TestBroker::start_with(|c| {
        c.session.max_queued_messages = MAX_QUEUED_MESSAGES;
        c.session.max_queued_bytes = 4 * 1024 * 1024;
    });

    // The stuck subscriber: a small receive buffer, SUBSCRIBE, then never read again.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = sock.connect(b.addr).await.expect("connect");
    let mut stuck = RawClient {
        stream,
        buf: BytesMut::new(),
        protocol: Protocol::V311,
    };
    stuck
        .send(&fubar::codec::Packet::Connect(Box::new(connect_packet(
            Protocol::V311,
            "bp-stuck",
            true,
            0,
        ))))
        .await;
    assert_eq!(stuck.expect_connack().await.code, 0);
    assert_eq!(
        stuck.subscribe(1, "bp/flood", QoS::AtMostOnce).await,
        vec![0]
    );

    // The normal subscriber, drained by a task that only counts the flood.
    let mut normal = Client::connect(b.addr, Version::V4, "bp-normal").await;
    normal.subscribe_ok("bp/flood", 0).await;
    normal.subscribe_ok("bp/marker", 1).await;
    let (_, empty) = mpsc::unbounded_channel();
    let mut rx = std::mem::replace(&mut normal.msgs, empty);
    let flood_seen = Arc::new(AtomicU64::new(0));
    let (marker_tx, mut marker_rx) = mpsc::unbounded_channel();
    let counter = flood_seen.clone();
    let drain = tokio::spawn(async move {
        while let Some(m) = rx.recv().await {
            if m.topic == "bp/flood" {
                counter.fetch_add(1, Ordering::Relaxed);
            } else if marker_tx.send(m).is_err() {
                return;
            }
        }
    });

    // The flooding publisher writes pre-encoded QoS 0 PUBLISH packets in batches.
    let (mut flood, _) = RawClient::connect(b.addr, Protocol::V311, "bp-flooder", true).await;
    let one = encode(
        &publish_packet("bp/flood", QoS::AtMostOnce, None, &[0xAB; PAYLOAD]),
        Protocol::V311,
    );
    let batch_len = 64;
    let batch: Vec<u8> = one.repeat(batch_len);

    let rss_before = rss_kib();
    let mut rss_max = rss_before;
    let mut queued_max = 0u64;
    let start = Instant::now();
    let mut sent = 0usize;
    while sent < MESSAGES {
        let left = FLOOD_TIME.saturating_sub(start.elapsed());
        if left.is_zero() {
            break;
        }
        match tokio::time::timeout(left, flood.stream.write_all(&batch)).await {
            Ok(Ok(())) => sent += batch_len,
            Ok(Err(e)) => panic!("publisher connection failed after {sent} messages: {e}"),
            Err(_) => break,
        }
        if (sent / batch_len) % 16 == 0 {
            queued_max = queued_max.max(b.metrics().queued);
            rss_max = rss_max.max(rss_kib());
        }
    }
    let m = b.metrics();
    queued_max = queued_max.max(m.queued);
    rss_max = rss_max.max(rss_kib());
    eprintln!(
        "flood: sent {sent} in {:?}; metrics {m:?}; max queued {queued_max}; \
         RSS {rss_before} -> max {rss_max} KiB; normal subscriber saw {}",
        start.elapsed(),
        flood_seen.load(Ordering::Relaxed)
    );
    assert!(sent >= 20_000, "publisher could only send {sent} messages");

    // Drops are counted (give the broker a moment to work through what it has read).
    let deadline = Instant::now() + WAIT;
    while b.metrics().dropped == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let m = b.metrics();
    assert!(m.dropped > 0, "no message counted as dropped: {m:?}");
    assert!(
        queued_max <= 3 * MAX_QUEUED_MESSAGES as u64,
        "queued reached {queued_max}, limit is {MAX_QUEUED_MESSAGES} per session"
    );
    assert!(
        rss_max.saturating_sub(rss_before) < RSS_GROWTH_LIMIT_KIB,
        "RSS grew from {rss_before} KiB to {rss_max} KiB"
    );
    assert!(
        m.publish_in >= 1000,
        "publish_in counter did not count the flood: {m:?}"
    );

    // The normal subscriber got flood messages and still gets new ones.
    assert!(
        flood_seen.load(Ordering::Relaxed) > 0,
        "normal subscriber received nothing from the flood"
    );
    let mut marker_pub = Client::connect(b.addr, Version::V4, "bp-marker").await;
    marker_pub
        .publish_acked("bp/marker", 1, false, b"still here")
        .await;
    let marker = tokio::time::timeout(Duration::from_secs(10), marker_rx.recv())
        .await
        .expect("normal subscriber did not get the marker")
        .expect("drain task ended");
    assert_eq!(marker.payload, b"still here");

    drop(flood);
    drop(stuck);
    drain.abort();
}
