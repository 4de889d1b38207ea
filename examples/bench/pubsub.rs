//! The `pubsub`, `fanout` and `fanin` scenarios: P publishers, S subscribers, K topics.
//!
//! Subscriber `i` subscribes to `bench/<i % K>`; publisher `j` publishes round-robin over all
//! K topics starting at `j % K`. Every payload starts with a 16-byte stamp (send time in ns
//! since the run's epoch, publisher id, sequence number) so a subscriber computes
//! end-to-end latency (HdrHistogram), per-publisher ordering and, summed over all
//! subscribers, loss against the deliveries the publishers' topics should produce.
//! With `persistent` the subscribers connect with clean session 0, so a broker that
//! persists sessions stores every QoS 1/2 delivery before it acknowledges the publish.
//!
//! One tokio task per connection, each driving its socket non-blocking: publishers write
//! batches of PUBLISH packets (encoded once per topic with `fubar::codec::encode`, then only
//! the packet id and the stamp are patched), subscribers decode every packet with
//! `fubar::codec::decode` and answer QoS 1/2 with batched acks.
//!
//! Flow control: with `--rate` each publisher sends on a fixed schedule (open loop). Otherwise
//! (closed loop) a publisher keeps at most `window` messages unacknowledged (QoS 1/2) and at
//! most `window` messages not yet received by the subscribers (counted in deliveries, all
//! QoS; this is what bounds a QoS 0 run), and resumes once a quarter of the window is free.
//! A subscriber that sees a gap in a publisher's sequence numbers (the broker dropped
//! messages) counts the missing ones in `gaps` and credits them to that publisher's window;
//! as a last resort, 2 s without any delivery progress writes the missing deliveries off
//! (`window_stalls`), so a broker that drops messages cannot stall the run.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use fubar::codec::{self, Packet, Publish, QoS};
use hdrhistogram::Histogram;
use serde::Serialize;
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::{watch, Notify, Semaphore};
use tokio::task::JoinSet;

use crate::client::{
    put, put_resp, source_addr, BenchError, Client, ErrorLog, RespKind, MAX_PACKET, PROTOCOL,
    READ_CHUNK,
};
use crate::procfs::{round3, BrokerMonitor, ResourceReport};

/// Bytes of the stamp at the start of every payload: send ns (u64), publisher id (u32),
/// sequence number (u32), all big-endian.
pub const STAMP_LEN: usize = 16;
/// Most messages a publisher encodes per loop iteration.
const BATCH: u64 = 256;
/// A publisher stops encoding while this many bytes wait to be written.
const WBUF_HIGH: usize = 256 * 1024;
/// Most reads a task does per wake-up before processing.
const MAX_READ_PER_WAKE: usize = 512 * 1024;
/// Most QoS 1/2 messages in flight per publisher (packet ids are 16 bits).
const MAX_INFLIGHT: u32 = 65_000;
/// Delivery window: no progress for this long writes the missing deliveries off.
const STALL: Duration = Duration::from_secs(2);
/// Time allowed to connect (and subscribe) one client.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Keep-alive requested by every connection (runs are capped well below it).
const KEEP_ALIVE: u16 = 300;

/// Parameters of one pub/sub run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Number of publishers.
    pub pubs: usize,
    /// Number of subscribers.
    pub subs: usize,
    /// Number of topics.
    pub topics: usize,
    /// QoS of publishes and subscriptions.
    pub qos: QoS,
    /// Payload bytes per message (at least [`STAMP_LEN`]).
    pub payload: usize,
    /// Seconds of publishing.
    pub secs: f64,
    /// Total open-loop rate in messages per second (all publishers), or closed loop.
    pub rate: Option<f64>,
    /// Closed-loop window per publisher.
    pub window: u32,
    /// Most seconds to wait after publishing for outstanding deliveries and acks.
    pub drain_secs: f64,
    /// Connections per 127.0.0.x source address.
    pub per_source: usize,
    /// Connections being set up at once.
    pub connect_concurrency: usize,
    /// Subscribers connect with clean session 0 (MQTT 3.1.1), so the broker keeps their
    /// sessions: with a durable broker every QoS 1/2 delivery goes through its store.
    pub persistent: bool,
}

/// What a pub/sub run reports (flattened into the JSON line).
#[derive(Debug, Serialize)]
pub struct PubSubReport {
    /// Publishers requested.
    pub pubs: usize,
    /// Subscribers requested.
    pub subs: usize,
    /// Topics.
    pub topics: usize,
    /// QoS of the run.
    pub qos: u8,
    /// Payload bytes per message.
    pub payload: usize,
    /// "window" (closed loop) or "rate" (open loop).
    pub mode: &'static str,
    /// Closed-loop window per publisher.
    pub window: Option<u32>,
    /// Open-loop target rate, messages per second over all publishers.
    pub rate: Option<f64>,
    /// Subscribers held persistent sessions (clean session 0).
    pub persistent: bool,
    /// Publishers that connected.
    pub pubs_connected: usize,
    /// Subscribers that connected and got their SUBACK.
    pub subs_connected: usize,
    /// Seconds spent connecting and subscribing everyone.
    pub connect_secs: f64,
    /// Seconds of publishing (measured).
    pub secs: f64,
    /// Messages published.
    pub sent: u64,
    /// `sent / secs`.
    pub sent_per_sec: f64,
    /// QoS 1/2 publishes acknowledged (PUBACK / PUBCOMP).
    pub acked: u64,
    /// Deliveries the published messages should produce (sum of subscribers per topic).
    pub expected: u64,
    /// Deliveries received (after the drain).
    pub received: u64,
    /// `received` divided by the time from the start to the last delivery (at least `secs`).
    pub received_per_sec: f64,
    /// Deliveries received before publishing stopped.
    pub received_in_window: u64,
    /// `expected - received` when positive.
    pub loss: u64,
    /// `loss` as a percentage of `expected`.
    pub loss_pct: f64,
    /// Deliveries whose sequence number was not above the last one from that publisher
    /// (reordering or duplicates).
    pub out_of_order: u64,
    /// QoS 2 PUBLISH packets received again for a packet id still awaiting PUBREL.
    pub duplicates: u64,
    /// Deliveries a subscriber found missing from a publisher's sequence (broker drops).
    pub gaps: u64,
    /// Times a closed-loop publisher wrote off missing deliveries after 2 s without
    /// progress (the broker dropped messages, or stalled).
    pub window_stalls: u64,
    /// Seconds spent draining after publishing stopped.
    pub drain_secs: f64,
    /// End-to-end latency, 50th percentile, in microseconds.
    pub p50_us: u64,
    /// 90th percentile latency in µs.
    pub p90_us: u64,
    /// 99th percentile latency in µs.
    pub p99_us: u64,
    /// 99.9th percentile latency in µs.
    pub p999_us: u64,
    /// Largest latency in µs.
    pub max_us: u64,
    /// Mean latency in µs.
    pub mean_us: f64,
}

/// Phase of a run, broadcast to every task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Connections are being set up.
    Setup,
    /// Publishers publish.
    Run,
    /// Publishers stop publishing and wait for their acks.
    Stop,
    /// Everyone disconnects.
    Finish,
}

/// An atomic on its own cache line (per-publisher counters are hit by many subscribers).
#[repr(align(64))]
#[derive(Default)]
struct Padded(AtomicU64);

/// State shared by all tasks of one run.
struct Shared {
    epoch: Instant,
    qos: QoS,
    pubs: usize,
    topics: usize,
    /// ns since epoch when publishing stopped; 0 while running.
    stop_ns: AtomicU64,
    /// Deliveries received per publisher.
    delivered: Vec<Padded>,
    /// Wakes a publisher blocked on its delivery window.
    notify: Vec<Notify>,
    received: AtomicU64,
    expected: AtomicU64,
    last_recv_ns: AtomicU64,
    pubs_done: AtomicUsize,
    errors: ErrorLog,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }
}

/// A PUBLISH encoded once; only the packet id and the stamp change per message.
struct Template {
    bytes: Vec<u8>,
    pid_off: Option<usize>,
    stamp_off: usize,
}

impl Template {
    /// Encodes a PUBLISH for `topic` with the codec and checks that patching works.
    fn new(topic: &str, qos: QoS, payload: usize) -> Result<Template, BenchError> {
        let publish = Publish {
            qos,
            topic: ByteString::from(topic),
            packet_id: (qos != QoS::AtMostOnce).then_some(1),
            payload: Bytes::from(vec![0u8; payload]),
            ..Default::default()
        };
        let mut buf = BytesMut::new();
        put(&mut buf, &Packet::Publish(publish))?;
        let stamp_off = buf.len() - payload;
        let pid_off = (qos != QoS::AtMostOnce).then(|| stamp_off - 2);
        let template = Template {
            bytes: buf.to_vec(),
            pid_off,
            stamp_off,
        };
        // Self-check: a patched copy must decode to the same topic, id and stamp.
        let mut probe = BytesMut::new();
        template.emit(&mut probe, 0x1234, 42, 7, 9);
        match codec::decode(&mut probe, PROTOCOL, MAX_PACKET)? {
            Some(Packet::Publish(p))
                if p.topic == topic
                    && p.payload.len() == payload
                    && p.packet_id == pid_off.map(|_| 0x1234)
                    && parse_stamp(&p.payload) == Some((42, 7, 9))
                    && probe.is_empty() =>
            {
                Ok(template)
            }
            other => Err(BenchError::Protocol(format!(
                "PUBLISH template self-check failed: {other:?}"
            ))),
        }
    }

    /// Appends one message to `buf`.
    fn emit(&self, buf: &mut BytesMut, pid: u16, ts_ns: u64, publisher: u32, seq: u32) {
        let base = buf.len();
        buf.extend_from_slice(&self.bytes);
        if let Some(off) = self.pid_off {
            buf[base + off..base + off + 2].copy_from_slice(&pid.to_be_bytes());
        }
        let s = base + self.stamp_off;
        buf[s..s + 8].copy_from_slice(&ts_ns.to_be_bytes());
        buf[s + 8..s + 12].copy_from_slice(&publisher.to_be_bytes());
        buf[s + 12..s + 16].copy_from_slice(&seq.to_be_bytes());
    }
}

/// Reads the stamp at the start of a payload: (send ns, publisher id, sequence number).
fn parse_stamp(payload: &[u8]) -> Option<(u64, u32, u32)> {
    let ts = u64::from_be_bytes(payload.get(0..8)?.try_into().ok()?);
    let publisher = u32::from_be_bytes(payload.get(8..12)?.try_into().ok()?);
    let seq = u32::from_be_bytes(payload.get(12..16)?.try_into().ok()?);
    Some((ts, publisher, seq))
}

/// 65 536 flags, one per packet id.
struct PidSet(Vec<u64>);

impl PidSet {
    fn new() -> Self {
        PidSet(vec![0; 1024])
    }
    fn contains(&self, pid: u16) -> bool {
        self.0[(pid >> 6) as usize] & (1 << (pid & 63)) != 0
    }
    fn insert(&mut self, pid: u16) {
        self.0[(pid >> 6) as usize] |= 1 << (pid & 63);
    }
    /// Clears `pid`; true if it was set.
    fn remove(&mut self, pid: u16) -> bool {
        let was = self.contains(pid);
        self.0[(pid >> 6) as usize] &= !(1 << (pid & 63));
        was
    }
}

/// Reads whatever the socket has (bounded); Ok(false) when nothing was read.
fn read_available(stream: &TcpStream, rbuf: &mut BytesMut) -> Result<bool, BenchError> {
    let mut total = 0;
    while total < MAX_READ_PER_WAKE {
        rbuf.reserve(READ_CHUNK);
        let room = rbuf.capacity() - rbuf.len();
        match stream.try_read_buf(rbuf) {
            Ok(0) => return Err(BenchError::Closed),
            // A short read means the socket is drained: skip the read that would say so.
            Ok(n) if n < room => {
                total += n;
                break;
            }
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::Io("read", e)),
        }
    }
    Ok(total > 0)
}

/// Writes as much of `wbuf` as the socket takes; Ok(true) if anything was written.
fn write_available(stream: &TcpStream, wbuf: &mut BytesMut) -> Result<bool, BenchError> {
    let mut wrote = false;
    while !wbuf.is_empty() {
        match stream.try_write(wbuf) {
            Ok(0) => return Err(BenchError::Closed),
            Ok(n) => {
                wbuf.advance(n);
                wrote = true;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(BenchError::Io("write", e)),
        }
    }
    Ok(wrote)
}

/// Best-effort DISCONNECT before dropping a connection.
fn say_goodbye(client: &mut Client) {
    client.wbuf.clear();
    if put(&mut client.wbuf, &Packet::Disconnect(Default::default())).is_ok() {
        let _ = client.stream.try_write(&client.wbuf);
    }
}

/// What one publisher did.
#[derive(Default)]
struct PubStats {
    sent: u64,
    acked: u64,
    stalls: u64,
}

/// Everything a publisher task needs.
struct PubCtx {
    id: u32,
    client: Client,
    shared: Arc<Shared>,
    templates: Arc<Vec<Template>>,
    fan: Arc<Vec<u64>>,
    rate: Option<f64>,
    window: u32,
}

/// Per-publisher QoS 1/2 state.
struct Inflight {
    wait_ack: PidSet,
    wait_comp: PidSet,
    count: u32,
    next_pid: u16,
}

impl Inflight {
    /// Allocates a free packet id (caller keeps `count` below [`MAX_INFLIGHT`]).
    fn alloc(&mut self) -> u16 {
        for _ in 0..=u16::MAX as u32 {
            let pid = self.next_pid;
            self.next_pid = if pid == u16::MAX { 1 } else { pid + 1 };
            if !self.wait_ack.contains(pid) && !self.wait_comp.contains(pid) {
                self.wait_ack.insert(pid);
                self.count += 1;
                return pid;
            }
        }
        0
    }
}

async fn run_publisher(mut ctx: PubCtx, mut phase: watch::Receiver<Phase>) -> PubStats {
    let mut stats = PubStats::default();
    while *phase.borrow_and_update() == Phase::Setup {
        if phase.changed().await.is_err() {
            return stats;
        }
    }
    if let Err(e) = publish_loop(&mut ctx, &mut phase, &mut stats).await {
        ctx.shared
            .errors
            .record(format!("publisher {}: {e}", ctx.id));
    }
    ctx.shared.pubs_done.fetch_add(1, Ordering::Relaxed);
    // Keep the connection until everyone is done.
    while *phase.borrow_and_update() != Phase::Finish {
        if phase.changed().await.is_err() {
            break;
        }
    }
    say_goodbye(&mut ctx.client);
    stats
}

async fn publish_loop(
    ctx: &mut PubCtx,
    phase: &mut watch::Receiver<Phase>,
    stats: &mut PubStats,
) -> Result<(), BenchError> {
    let shared = Arc::clone(&ctx.shared);
    let qos = shared.qos;
    let k = ctx.templates.len();
    let id = ctx.id as usize;
    let fan_avg = ctx.fan.iter().sum::<u64>() as f64 / k as f64;
    let start = Instant::now();
    // Spread the publishers' open-loop schedules evenly over one interval.
    let offset = id as f64 / shared.pubs as f64;
    let mut next_topic = id % k;
    let mut seq: u32 = 0;
    let mut inflight = Inflight {
        wait_ack: PidSet::new(),
        wait_comp: PidSet::new(),
        count: 0,
        next_pid: 1,
    };
    let mut deliveries_sent: u64 = 0;
    let mut written_off: u64 = 0;
    let mut last_delivered: u64 = 0;
    // When the delivery window last closed (or made progress while closed).
    let mut blocked_since: Option<Instant> = None;
    let mut sending = true;
    let mut busy_rounds = 0u32;
    let min_room = u64::from(ctx.window / 4).clamp(1, BATCH);
    loop {
        match *phase.borrow_and_update() {
            Phase::Finish => return Ok(()),
            Phase::Stop => sending = false,
            Phase::Setup | Phase::Run => {}
        }
        let now = Instant::now();
        let mut progressed = false;
        let mut delivery_blocked = false;
        if sending {
            let mut room = BATCH;
            match ctx.rate {
                Some(rate) => {
                    let due = (now.duration_since(start).as_secs_f64() * rate + offset) as u64;
                    room = room.min(due.saturating_sub(stats.sent));
                }
                None => {
                    if qos != QoS::AtMostOnce {
                        room = room.min(u64::from(ctx.window.saturating_sub(inflight.count)));
                    }
                    if fan_avg > 0.0 {
                        let delivered = shared.delivered[id].0.load(Ordering::Relaxed);
                        let progress = delivered != last_delivered;
                        last_delivered = delivered;
                        let deficit = deliveries_sent
                            .saturating_sub(delivered)
                            .saturating_sub(written_off);
                        let limit = f64::from(ctx.window) * fan_avg;
                        let by_delivery = ((limit - deficit as f64) / fan_avg).floor().max(0.0);
                        let by_delivery = by_delivery as u64;
                        room = room.min(by_delivery);
                        if by_delivery < min_room {
                            delivery_blocked = true;
                            let since = match blocked_since {
                                Some(t) if !progress => t,
                                _ => now,
                            };
                            blocked_since = Some(since);
                            if now.duration_since(since) >= STALL {
                                written_off += deficit;
                                stats.stalls += 1;
                                blocked_since = None;
                                continue;
                            }
                        } else {
                            blocked_since = None;
                        }
                    }
                }
            }
            if qos != QoS::AtMostOnce {
                room = room.min(u64::from(MAX_INFLIGHT.saturating_sub(inflight.count)));
            }
            // Closed loop: wait until a quarter of the window is free, so batches (and the
            // broker's reads) stay large instead of trickling one message per ack.
            if ctx.rate.is_none() && room < min_room {
                room = 0;
            }
            if ctx.client.wbuf.len() >= WBUF_HIGH {
                room = 0;
            }
            if room > 0 {
                let ts = shared.now_ns();
                let mut batch_deliveries = 0;
                for _ in 0..room {
                    let pid = if qos == QoS::AtMostOnce {
                        0
                    } else {
                        inflight.alloc()
                    };
                    ctx.templates[next_topic].emit(&mut ctx.client.wbuf, pid, ts, ctx.id, seq);
                    batch_deliveries += ctx.fan[next_topic];
                    next_topic = (next_topic + 1) % k;
                    seq = seq.wrapping_add(1);
                }
                stats.sent += room;
                deliveries_sent += batch_deliveries;
                shared
                    .expected
                    .fetch_add(batch_deliveries, Ordering::Relaxed);
                progressed = true;
            }
        }
        progressed |= write_available(&ctx.client.stream, &mut ctx.client.wbuf)?;
        if read_available(&ctx.client.stream, &mut ctx.client.rbuf)? {
            progressed = true;
            while let Some(packet) = codec::decode(&mut ctx.client.rbuf, PROTOCOL, MAX_PACKET)? {
                handle_ack(
                    packet,
                    qos,
                    &mut inflight,
                    stats,
                    &mut ctx.client.wbuf,
                    &shared,
                    ctx.id,
                )?;
            }
            write_available(&ctx.client.stream, &mut ctx.client.wbuf)?;
        }
        if !sending && inflight.count == 0 && ctx.client.wbuf.is_empty() {
            return Ok(());
        }
        if progressed {
            busy_rounds += 1;
            if busy_rounds % 4 == 0 {
                tokio::task::yield_now().await;
            }
            continue;
        }
        let mut interest = Interest::READABLE;
        if !ctx.client.wbuf.is_empty() {
            interest |= Interest::WRITABLE;
        }
        let timer = match ctx.rate {
            Some(rate) if sending => {
                let at = (stats.sent + 1) as f64 - offset;
                Some(tokio::time::Instant::from_std(
                    start + Duration::from_secs_f64(at.max(0.0) / rate),
                ))
            }
            _ if delivery_blocked => {
                blocked_since.map(|t| tokio::time::Instant::from_std(t + STALL))
            }
            _ => None,
        };
        let sleep_until =
            timer.unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            ready = ctx.client.stream.ready(interest) => {
                ready.map_err(|e| BenchError::Io("poll", e))?;
            }
            _ = shared.notify[id].notified(), if delivery_blocked => {}
            _ = tokio::time::sleep_until(sleep_until), if timer.is_some() => {}
        }
    }
}

fn handle_ack(
    packet: Packet,
    qos: QoS,
    inflight: &mut Inflight,
    stats: &mut PubStats,
    wbuf: &mut BytesMut,
    shared: &Shared,
    id: u32,
) -> Result<(), BenchError> {
    match (packet, qos) {
        (Packet::PubAck(r), QoS::AtLeastOnce) => {
            if inflight.wait_ack.remove(r.packet_id) {
                inflight.count -= 1;
                stats.acked += 1;
            } else {
                shared.errors.record(format!(
                    "publisher {id}: PUBACK for unknown id {}",
                    r.packet_id
                ));
            }
        }
        (Packet::PubRec(r), QoS::ExactlyOnce) => {
            if inflight.wait_ack.remove(r.packet_id) {
                inflight.wait_comp.insert(r.packet_id);
                put_resp(wbuf, RespKind::Rel, r.packet_id)?;
            } else if inflight.wait_comp.contains(r.packet_id) {
                put_resp(wbuf, RespKind::Rel, r.packet_id)?;
            } else {
                shared.errors.record(format!(
                    "publisher {id}: PUBREC for unknown id {}",
                    r.packet_id
                ));
            }
        }
        (Packet::PubComp(r), QoS::ExactlyOnce) => {
            if inflight.wait_comp.remove(r.packet_id) {
                inflight.count -= 1;
                stats.acked += 1;
            } else {
                shared.errors.record(format!(
                    "publisher {id}: PUBCOMP for unknown id {}",
                    r.packet_id
                ));
            }
        }
        (Packet::PingResp, _) => {}
        (other, _) => {
            shared.errors.record(format!(
                "publisher {id}: unexpected {}",
                packet_name(&other)
            ));
        }
    }
    Ok(())
}

/// Short name of a packet for error messages.
fn packet_name(packet: &Packet) -> &'static str {
    match packet {
        Packet::Connect(_) => "CONNECT",
        Packet::ConnAck(_) => "CONNACK",
        Packet::Publish(_) => "PUBLISH",
        Packet::PubAck(_) => "PUBACK",
        Packet::PubRec(_) => "PUBREC",
        Packet::PubRel(_) => "PUBREL",
        Packet::PubComp(_) => "PUBCOMP",
        Packet::Subscribe(_) => "SUBSCRIBE",
        Packet::SubAck(_) => "SUBACK",
        Packet::Unsubscribe(_) => "UNSUBSCRIBE",
        Packet::UnsubAck(_) => "UNSUBACK",
        Packet::PingReq => "PINGREQ",
        Packet::PingResp => "PINGRESP",
        Packet::Disconnect(_) => "DISCONNECT",
        Packet::Auth(_) => "AUTH",
    }
}

/// What one subscriber saw.
struct SubStats {
    received: u64,
    gaps: u64,
    in_window: u64,
    out_of_order: u64,
    duplicates: u64,
    hist: Histogram<u64>,
}

/// A latency histogram in µs (1 µs .. 1 h); `sigfig` trades precision for memory.
fn new_histogram(sigfig: u8) -> Option<Histogram<u64>> {
    Histogram::new_with_bounds(1, 3_600_000_000, sigfig).ok()
}

async fn run_subscriber(
    mut client: Client,
    index: usize,
    shared: Arc<Shared>,
    mut phase: watch::Receiver<Phase>,
    hist: Histogram<u64>,
) -> SubStats {
    let mut stats = SubStats {
        received: 0,
        gaps: 0,
        in_window: 0,
        out_of_order: 0,
        duplicates: 0,
        hist,
    };
    let topic = index % shared.topics.max(1);
    if let Err(e) = subscribe_loop(&mut client, topic, &shared, &mut phase, &mut stats).await {
        shared.errors.record(format!("subscriber {index}: {e}"));
    }
    say_goodbye(&mut client);
    stats
}

async fn subscribe_loop(
    client: &mut Client,
    topic: usize,
    shared: &Shared,
    phase: &mut watch::Receiver<Phase>,
    stats: &mut SubStats,
) -> Result<(), BenchError> {
    let pubs = shared.pubs;
    let k = shared.topics as u64;
    // Per publisher: deliveries (received or found missing) not yet added to the shared
    // counters, and the next sequence number expected on this subscriber's topic. Publisher
    // j sends its n-th message to topic (j + n) % K, so this topic sees every K-th number.
    let mut pending = vec![0u64; pubs];
    let mut touched: Vec<usize> = Vec::with_capacity(pubs.min(1024));
    let mut next_seq: Vec<u64> = (0..pubs)
        .map(|j| (topic as u64 + k - j as u64 % k) % k)
        .collect();
    let mut awaiting_rel = PidSet::new();
    loop {
        if *phase.borrow_and_update() == Phase::Finish {
            return Ok(());
        }
        if read_available(&client.stream, &mut client.rbuf)? {
            let now_ns = shared.now_ns();
            let stop_ns = shared.stop_ns.load(Ordering::Relaxed);
            let mut batch = 0u64;
            while let Some(packet) = codec::decode(&mut client.rbuf, PROTOCOL, MAX_PACKET)? {
                match packet {
                    Packet::Publish(p) => {
                        if p.qos == QoS::ExactlyOnce {
                            let pid = p.packet_id.unwrap_or(0);
                            put_resp(&mut client.wbuf, RespKind::Rec, pid)?;
                            if awaiting_rel.contains(pid) {
                                stats.duplicates += 1;
                                continue;
                            }
                            awaiting_rel.insert(pid);
                        } else if p.qos == QoS::AtLeastOnce {
                            put_resp(&mut client.wbuf, RespKind::Ack, p.packet_id.unwrap_or(0))?;
                        }
                        let Some((ts, publisher, seq)) = parse_stamp(&p.payload) else {
                            shared.errors.record("PUBLISH payload without stamp");
                            continue;
                        };
                        let publisher = publisher as usize;
                        if publisher >= pubs {
                            shared
                                .errors
                                .record(format!("PUBLISH from unknown publisher {publisher}"));
                            continue;
                        }
                        let lat_us = now_ns.saturating_sub(ts) / 1000;
                        stats.hist.saturating_record(lat_us.max(1));
                        batch += 1;
                        if stop_ns == 0 || now_ns <= stop_ns {
                            stats.in_window += 1;
                        }
                        if pending[publisher] == 0 {
                            touched.push(publisher);
                        }
                        pending[publisher] += 1;
                        let seq = u64::from(seq);
                        let expected = next_seq[publisher];
                        if seq < expected || (seq - expected) % k != 0 {
                            stats.out_of_order += 1;
                        } else {
                            let missed = (seq - expected) / k;
                            stats.gaps += missed;
                            pending[publisher] += missed;
                            next_seq[publisher] = seq + k;
                        }
                    }
                    Packet::PubRel(r) => {
                        awaiting_rel.remove(r.packet_id);
                        put_resp(&mut client.wbuf, RespKind::Comp, r.packet_id)?;
                    }
                    Packet::PingResp => {}
                    other => {
                        shared
                            .errors
                            .record(format!("subscriber: unexpected {}", packet_name(&other)));
                    }
                }
            }
            if batch > 0 {
                stats.received += batch;
                shared.received.fetch_add(batch, Ordering::Relaxed);
                shared.last_recv_ns.fetch_max(now_ns, Ordering::Relaxed);
                for publisher in touched.drain(..) {
                    let n = std::mem::take(&mut pending[publisher]);
                    shared.delivered[publisher]
                        .0
                        .fetch_add(n, Ordering::Relaxed);
                    shared.notify[publisher].notify_one();
                }
            }
            write_available(&client.stream, &mut client.wbuf)?;
            continue;
        }
        let mut interest = Interest::READABLE;
        if !client.wbuf.is_empty() {
            write_available(&client.stream, &mut client.wbuf)?;
            if !client.wbuf.is_empty() {
                interest |= Interest::WRITABLE;
            }
        }
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            ready = client.stream.ready(interest) => {
                ready.map_err(|e| BenchError::Io("poll", e))?;
            }
        }
    }
}

/// Connects (and for subscribers subscribes) `count` clients, `concurrency` at a time.
async fn connect_all(
    addr: SocketAddr,
    count: usize,
    first_index: usize,
    cfg: &LoadConfig,
    prefix: &'static str,
    subscribe_to: Option<Arc<Vec<String>>>,
    errors: &ErrorLog,
) -> Vec<(usize, Client)> {
    let limit = Arc::new(Semaphore::new(cfg.connect_concurrency.max(1)));
    let mut set = JoinSet::new();
    let qos = cfg.qos;
    let persistent = cfg.persistent;
    for i in 0..count {
        let limit = Arc::clone(&limit);
        let source = source_addr(first_index + i, cfg.per_source);
        let topics = subscribe_to.clone();
        set.spawn(async move {
            let _permit = limit.acquire_owned().await;
            let id = format!("bench-{prefix}-{i}");
            // Only subscribers keep a session: a publisher's would hold nothing.
            let clean = !(persistent && topics.is_some());
            let mut client =
                Client::connect(addr, Some(source), &id, KEEP_ALIVE, clean, CONNECT_TIMEOUT)
                    .await?;
            if let Some(topics) = topics {
                let filter = &topics[i % topics.len()];
                client.subscribe(filter, qos, CONNECT_TIMEOUT).await?;
            }
            Ok::<_, BenchError>((i, client))
        });
    }
    let mut clients = Vec::with_capacity(count);
    while let Some(joined) = set.join_next().await {
        match joined {
            Ok(Ok(c)) => clients.push(c),
            Ok(Err(e)) => errors.record(format!("{prefix} connect: {e}")),
            Err(e) => errors.record(format!("{prefix} connect task: {e}")),
        }
    }
    clients.sort_by_key(|(i, _)| *i);
    clients
}

/// Runs one pub/sub scenario and returns its report plus resource use and errors.
pub async fn run(
    addr: SocketAddr,
    broker_pid: Option<u32>,
    cfg: &LoadConfig,
) -> (PubSubReport, ResourceReport, (u64, Vec<String>)) {
    let k = cfg.topics.max(1);
    let topic_names: Arc<Vec<String>> = Arc::new((0..k).map(|t| format!("bench/{t}")).collect());
    let mut fan = vec![0u64; k];
    for i in 0..cfg.subs {
        fan[i % k] += 1;
    }
    let fan = Arc::new(fan);
    let shared = Arc::new(Shared {
        epoch: Instant::now(),
        qos: cfg.qos,
        pubs: cfg.pubs,
        topics: k,
        stop_ns: AtomicU64::new(0),
        delivered: (0..cfg.pubs).map(|_| Padded::default()).collect(),
        notify: (0..cfg.pubs).map(|_| Notify::new()).collect(),
        received: AtomicU64::new(0),
        expected: AtomicU64::new(0),
        last_recv_ns: AtomicU64::new(0),
        pubs_done: AtomicUsize::new(0),
        errors: ErrorLog::default(),
    });
    let templates: Result<Vec<Template>, BenchError> = topic_names
        .iter()
        .map(|t| Template::new(t, cfg.qos, cfg.payload))
        .collect();
    let templates = match templates {
        Ok(t) => Arc::new(t),
        Err(e) => {
            shared.errors.record(e);
            Vec::new().into()
        }
    };

    let setup = Instant::now();
    let (phase_tx, phase_rx) = watch::channel(Phase::Setup);
    let mut sub_clients = Vec::new();
    let mut pub_clients = Vec::new();
    if !templates.is_empty() {
        sub_clients = connect_all(
            addr,
            cfg.subs,
            0,
            cfg,
            "s",
            Some(Arc::clone(&topic_names)),
            &shared.errors,
        )
        .await;
        pub_clients = connect_all(addr, cfg.pubs, cfg.subs, cfg, "p", None, &shared.errors).await;
    }
    let connect_secs = setup.elapsed().as_secs_f64();
    let subs_connected = sub_clients.len();
    let pubs_connected = pub_clients.len();

    let sigfig = if cfg.subs <= 256 { 3 } else { 2 };
    let mut sub_tasks = JoinSet::new();
    for (i, client) in sub_clients {
        if let Some(hist) = new_histogram(sigfig) {
            sub_tasks.spawn(run_subscriber(
                client,
                i,
                Arc::clone(&shared),
                phase_rx.clone(),
                hist,
            ));
        }
    }
    let mut pub_tasks = JoinSet::new();
    for (j, client) in pub_clients {
        let ctx = PubCtx {
            id: j as u32,
            client,
            shared: Arc::clone(&shared),
            templates: Arc::clone(&templates),
            fan: Arc::clone(&fan),
            rate: cfg.rate.map(|r| r / cfg.pubs.max(1) as f64),
            window: cfg.window.max(1),
        };
        pub_tasks.spawn(run_publisher(ctx, phase_rx.clone()));
    }

    let monitor = BrokerMonitor::start(broker_pid);
    let run_start = Instant::now();
    let run_start_ns = shared.now_ns();
    let _ = phase_tx.send(Phase::Run);
    let deadline = run_start + Duration::from_secs_f64(cfg.secs);
    while Instant::now() < deadline && monitor.broker_alive() {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::sleep(left.min(Duration::from_millis(200))).await;
    }
    if !monitor.broker_alive() {
        shared.errors.record("broker process exited during the run");
    }
    let secs = run_start.elapsed().as_secs_f64();
    shared
        .stop_ns
        .store(shared.now_ns().max(1), Ordering::Relaxed);
    let _ = phase_tx.send(Phase::Stop);

    let drain_start = Instant::now();
    let drain_deadline = drain_start + Duration::from_secs_f64(cfg.drain_secs);
    loop {
        let all_acked = shared.pubs_done.load(Ordering::Relaxed) >= pubs_connected;
        let all_received =
            shared.received.load(Ordering::Relaxed) >= shared.expected.load(Ordering::Relaxed);
        if (all_acked && all_received) || Instant::now() >= drain_deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let drain_secs = drain_start.elapsed().as_secs_f64();
    let resources = monitor.finish();
    let _ = phase_tx.send(Phase::Finish);

    let mut stats = PubStats::default();
    let join_deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(joined)) = tokio::time::timeout_at(join_deadline, pub_tasks.join_next()).await
    {
        match joined {
            Ok(s) => {
                stats.sent += s.sent;
                stats.acked += s.acked;
                stats.stalls += s.stalls;
            }
            Err(e) => shared.errors.record(format!("publisher task: {e}")),
        }
    }
    pub_tasks.abort_all();
    let mut hist = new_histogram(sigfig);
    let (mut received, mut gaps, mut in_window, mut out_of_order, mut duplicates) = (0, 0, 0, 0, 0);
    while let Ok(Some(joined)) = tokio::time::timeout_at(join_deadline, sub_tasks.join_next()).await
    {
        match joined {
            Ok(s) => {
                received += s.received;
                gaps += s.gaps;
                in_window += s.in_window;
                out_of_order += s.out_of_order;
                duplicates += s.duplicates;
                if let Some(h) = hist.as_mut() {
                    if h.add(&s.hist).is_err() {
                        shared.errors.record("histogram merge failed");
                    }
                }
            }
            Err(e) => shared.errors.record(format!("subscriber task: {e}")),
        }
    }
    sub_tasks.abort_all();

    let expected = shared.expected.load(Ordering::Relaxed);
    let last_recv = shared
        .last_recv_ns
        .load(Ordering::Relaxed)
        .saturating_sub(run_start_ns);
    let recv_span = (last_recv as f64 / 1e9).max(secs).max(1e-9);
    let loss = expected.saturating_sub(received);
    let pct = |h: &Histogram<u64>, q: f64| {
        if h.is_empty() {
            0
        } else {
            h.value_at_quantile(q)
        }
    };
    let (p50, p90, p99, p999, max, mean) = match &hist {
        Some(h) => (
            pct(h, 0.50),
            pct(h, 0.90),
            pct(h, 0.99),
            pct(h, 0.999),
            if h.is_empty() { 0 } else { h.max() },
            round3(h.mean()),
        ),
        None => (0, 0, 0, 0, 0, 0.0),
    };
    let report = PubSubReport {
        pubs: cfg.pubs,
        subs: cfg.subs,
        topics: k,
        qos: cfg.qos as u8,
        payload: cfg.payload,
        mode: if cfg.rate.is_some() { "rate" } else { "window" },
        window: cfg.rate.is_none().then_some(cfg.window),
        rate: cfg.rate,
        persistent: cfg.persistent,
        pubs_connected,
        subs_connected,
        connect_secs: round3(connect_secs),
        secs: round3(secs),
        sent: stats.sent,
        sent_per_sec: round3(stats.sent as f64 / secs.max(1e-9)),
        acked: stats.acked,
        expected,
        received,
        received_per_sec: round3(received as f64 / recv_span),
        received_in_window: in_window,
        loss,
        loss_pct: if expected > 0 {
            round3(loss as f64 * 100.0 / expected as f64)
        } else {
            0.0
        },
        out_of_order,
        duplicates,
        gaps,
        window_stalls: stats.stalls,
        drain_secs: round3(drain_secs),
        p50_us: p50,
        p90_us: p90,
        p99_us: p99,
        p999_us: p999,
        max_us: max,
        mean_us: mean,
    };
    (report, resources, shared.errors.snapshot())
}
