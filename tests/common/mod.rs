//! Shared helpers for the black-box tests in `tests/`.
//!
//! Every test file does `mod common;` and gets:
//! - [`TestBroker`]: a real fubar node on `127.0.0.1:0` with temporary data and log
//!   directories, shut down and cleaned up on drop;
//! - [`RawClient`]: a byte-level MQTT client over a `TcpStream` that speaks through fubar's own
//!   codec (or raw bytes), for tests that check exact wire behaviour;
//! - [`Client`]: a rumqttc client (MQTT 3.1.1 or 5) whose event loop runs in a task that
//!   forwards incoming publishes and acknowledgements into channels;
//! - small byte builders ([`frame`], [`mqtt_str`], [`raw_connect`]) for hand-made packets.
//!
//! Every wait has a timeout and every loop is bounded, so a broken broker fails a test
//! instead of hanging it.
#![allow(dead_code)]

use bytes::{Buf, BytesMut};
use fubar::codec::{self, ConnAck, Connect, LastWill, Packet, Protocol, QoS};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::{timeout, Instant};

/// How long any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// How long a test listens to conclude that something did *not* happen.
pub const QUIET: Duration = Duration::from_millis(600);

/// Largest packet the raw client accepts from the broker.
const RAW_MAX_PACKET: usize = 16 * 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Broker
// ---------------------------------------------------------------------------------------------

/// A running broker with its own temporary directories; shut down and removed on drop.
pub struct TestBroker {
    handle: Option<fubar::BrokerHandle>,
    /// Address of the MQTT listener.
    pub addr: SocketAddr,
    /// The configuration the broker was started with.
    pub config: fubar::Config,
    _dir: tempfile::TempDir,
}

impl TestBroker {
    /// Starts a broker with the compiled-in defaults (on port 0, loopback).
    pub fn start() -> TestBroker {
        TestBroker::start_with(|_| {})
    }

    /// Starts a broker after `tweak` has adjusted the default configuration.
    pub fn start_with(tweak: impl FnOnce(&mut fubar::Config)) -> TestBroker {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut cfg = fubar::Config::default();
        cfg.mqtt.port = 0;
        cfg.mqtt.bind = "127.0.0.1".into();
        cfg.node.data_dir = dir.path().join("data");
        cfg.node.log_dir = dir.path().join("log");
        cfg.http.port = 0;
        cfg.http.bind = "127.0.0.1".into();
        tweak(&mut cfg);
        let handle = fubar::Broker::start(cfg.clone(), fubar::logging::discard())
            .unwrap_or_else(|e| panic!("broker did not start: {e}"));
        let addr = handle.mqtt_addr();
        assert!(addr.ip().is_loopback(), "broker bound to {addr}");
        assert_ne!(addr.port(), 0, "broker reported port 0");
        TestBroker {
            handle: Some(handle),
            addr,
            config: cfg,
            _dir: dir,
        }
    }

    /// Port of the MQTT listener.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The broker's counters now.
    pub fn metrics(&self) -> fubar::metrics::MetricsSnapshot {
        self.handle.as_ref().expect("running").metrics()
    }

    /// The broker's accounts, IP access list and topic rules.
    pub fn security(&self) -> std::sync::Arc<fubar::auth::Security> {
        self.handle.as_ref().expect("running").security()
    }

    /// Address of the MQTTS listener (panics when TLS is off).
    pub fn tls_addr(&self) -> SocketAddr {
        self.handle
            .as_ref()
            .expect("running")
            .tls_addr()
            .expect("TLS listener")
    }

    /// Address of the HTTP server (admin API, `/metrics`).
    pub fn http_addr(&self) -> SocketAddr {
        self.handle.as_ref().expect("running").http_addr()
    }

    /// The admin API token: `http.token` if the test set one, else the token file the
    /// broker created in its data directory.
    pub fn admin_token(&self) -> String {
        if !self.config.http.token.is_empty() {
            return self.config.http.token.clone();
        }
        let path = self.config.node.data_dir.join("admin.token");
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
            .trim()
            .to_string()
    }

    /// Reloads the TLS certificate files.
    pub fn reload_tls(&self) -> fubar::Result<()> {
        self.handle.as_ref().expect("running").reload_tls()
    }
}

/// Makes `config` hash new passwords cheaply, so tests that create accounts stay fast
/// (argon2id with 64 KiB and one pass: same code path, far less work).
pub fn cheap_hashes(config: &mut fubar::Config) {
    config.auth.hash_memory_kib = 64;
    config.auth.hash_iterations = 1;
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// An HTTP answer: status code, lower-cased header lines, body.
#[derive(Debug)]
pub struct HttpAnswer {
    /// Status code.
    pub status: u16,
    /// Header lines, lower-cased (`content-type: application/json`).
    pub headers: Vec<String>,
    /// Body text (chunked transfer decoded).
    pub body: String,
}

impl HttpAnswer {
    /// The body parsed as JSON (panics if it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {:?}", self.body))
    }
}

/// One HTTP/1.1 request over a fresh connection (`Connection: close`); `token` becomes a
/// bearer `Authorization` header, `body` is sent as JSON.
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> HttpAnswer {
    let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() || matches!(method, "PUT" | "POST") {
        request.push_str("Content-Type: application/json\r\n");
    }
    request.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("http connect");
        stream
            .write_all(request.as_bytes())
            .await
            .expect("http write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("http read");
        raw
    };
    let raw = timeout(WAIT, exchange)
        .await
        .expect("http request timed out");
    let text = String::from_utf8(raw).expect("http answer is UTF-8");
    let (head, rest) = text.split_once("\r\n\r\n").expect("http head");
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .expect("http status line");
    let headers: Vec<String> = lines.map(str::to_ascii_lowercase).collect();
    let body = if headers.iter().any(|h| h == "transfer-encoding: chunked") {
        let mut body = String::new();
        let mut rest = rest;
        for _ in 0..10_000 {
            let (size, after) = rest.split_once("\r\n").expect("chunk size");
            let size = usize::from_str_radix(size.trim(), 16).expect("chunk size hex");
            if size == 0 {
                break;
            }
            body.push_str(&after[..size]);
            rest = &after[size + 2..];
        }
        body
    } else {
        rest.to_string()
    };
    HttpAnswer {
        status,
        headers,
        body,
    }
}

// ---------------------------------------------------------------------------------------------
// Byte builders
// ---------------------------------------------------------------------------------------------

/// MQTT variable byte integer.
pub fn varint(mut n: usize) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let mut b = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            b |= 0x80;
        }
        out.push(b);
        if n == 0 {
            return out;
        }
    }
}

/// A whole packet: first byte, remaining length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(varint(body.len()));
    out.extend_from_slice(body);
    out
}

/// A length-prefixed MQTT string / binary field.
pub fn mqtt_str(s: impl AsRef<[u8]>) -> Vec<u8> {
    let s = s.as_ref();
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// A hand-made CONNECT: protocol name and level, flags byte, keep-alive, then (for level 5)
/// the property block `props` (its length is prepended here), then `payload` as given.
pub fn raw_connect(
    name: &str,
    level: u8,
    flags: u8,
    keep_alive: u16,
    props: Option<&[u8]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut body = mqtt_str(name);
    body.push(level);
    body.push(flags);
    body.extend_from_slice(&keep_alive.to_be_bytes());
    if let Some(p) = props {
        body.extend(varint(p.len()));
        body.extend_from_slice(p);
    }
    body.extend_from_slice(payload);
    frame(0x10, &body)
}

/// Encodes a packet with fubar's codec.
pub fn encode(p: &Packet, protocol: Protocol) -> Vec<u8> {
    let mut buf = BytesMut::new();
    codec::encode(p, protocol, &mut buf).unwrap_or_else(|e| panic!("encode {p:?}: {e}"));
    buf.to_vec()
}

/// A CONNECT packet with the fields tests usually set.
pub fn connect_packet(
    protocol: Protocol,
    client_id: &str,
    clean: bool,
    keep_alive: u16,
) -> Connect {
    Connect {
        protocol,
        clean_start: clean,
        keep_alive,
        client_id: client_id.to_string(),
        ..Default::default()
    }
}

/// A will for [`Connect::will`].
pub fn will(topic: &str, payload: &[u8], qos: QoS, retain: bool) -> LastWill {
    LastWill {
        topic: topic.into(),
        payload: bytes::Bytes::copy_from_slice(payload),
        qos,
        retain,
        ..Default::default()
    }
}

/// A PUBLISH packet.
pub fn publish_packet(topic: &str, qos: QoS, packet_id: Option<u16>, payload: &[u8]) -> Packet {
    Packet::Publish(codec::Publish {
        qos,
        topic: topic.into(),
        packet_id,
        payload: bytes::Bytes::copy_from_slice(payload),
        ..Default::default()
    })
}

/// A SUBSCRIBE packet for one filter.
pub fn subscribe_packet(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::Subscribe(codec::Subscribe {
        packet_id,
        topics: vec![codec::SubscribeTopic {
            filter: filter.to_string(),
            options: codec::SubscriptionOptions {
                qos,
                ..Default::default()
            },
        }],
        ..Default::default()
    })
}

/// Reads the variable byte integer at `buf[1..]`: `Some((remaining_length, header_len))`,
/// `None` when incomplete. Panics on more than four length bytes (the broker never sends that).
fn peek_frame_len(buf: &[u8]) -> Option<(usize, usize)> {
    let mut len = 0usize;
    for i in 0..4 {
        let b = *buf.get(1 + i)?;
        len |= ((b & 0x7f) as usize) << (7 * i);
        if b & 0x80 == 0 {
            return Some((len, 2 + i));
        }
    }
    panic!("broker sent a remaining length longer than 4 bytes: {buf:02x?}");
}

// ---------------------------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------------------------

/// A TCP connection to `addr` from the local IP `source` (any port).
pub async fn connect_from(addr: SocketAddr, source: &str) -> std::io::Result<TcpStream> {
    let ip: std::net::IpAddr = source.parse().expect("source address");
    let socket = if ip.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.bind(SocketAddr::new(ip, 0))?;
    socket.connect(addr).await
}

/// A byte-level MQTT client.
pub struct RawClient {
    /// The socket.
    pub stream: TcpStream,
    /// Bytes read but not consumed yet.
    pub buf: BytesMut,
    /// Protocol used to encode and decode packets.
    pub protocol: Protocol,
}

impl RawClient {
    /// Opens a TCP connection (no MQTT yet).
    pub async fn open(addr: SocketAddr, protocol: Protocol) -> RawClient {
        RawClient::over(TcpStream::connect(addr), protocol).await
    }

    /// Opens a TCP connection from the local address `source` (e.g. 127.0.0.2, to test
    /// loopback addresses the default access list does not trust).
    pub async fn open_from(addr: SocketAddr, source: &str, protocol: Protocol) -> RawClient {
        RawClient::over(connect_from(addr, source), protocol).await
    }

    async fn over(
        connect: impl std::future::Future<Output = std::io::Result<TcpStream>>,
        protocol: Protocol,
    ) -> RawClient {
        let stream = timeout(WAIT, connect)
            .await
            .expect("tcp connect timed out")
            .expect("tcp connect");
        stream.set_nodelay(true).ok();
        RawClient {
            stream,
            buf: BytesMut::new(),
            protocol,
        }
    }

    /// Like [`RawClient::connect_with`], from the local address `source`.
    pub async fn connect_from(
        addr: SocketAddr,
        source: &str,
        connect: Connect,
    ) -> (RawClient, ConnAck) {
        let mut c = RawClient::open_from(addr, source, connect.protocol).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        let ack = c.expect_connack().await;
        (c, ack)
    }

    /// Opens a connection, sends `connect` and returns the client with the broker's CONNACK.
    pub async fn connect_with(addr: SocketAddr, connect: Connect) -> (RawClient, ConnAck) {
        let mut c = RawClient::open(addr, connect.protocol).await;
        c.send(&Packet::Connect(Box::new(connect))).await;
        let ack = c.expect_connack().await;
        (c, ack)
    }

    /// Connects with `client_id` and asserts CONNACK accepted; returns session present.
    pub async fn connect(
        addr: SocketAddr,
        protocol: Protocol,
        client_id: &str,
        clean: bool,
    ) -> (RawClient, bool) {
        let (c, ack) =
            RawClient::connect_with(addr, connect_packet(protocol, client_id, clean, 60)).await;
        assert_eq!(
            ack.code, 0,
            "CONNACK for {client_id:?} not accepted: {ack:?}"
        );
        (c, ack.session_present)
    }

    /// Sends a packet encoded with fubar's codec; panics if the socket fails.
    pub async fn send(&mut self, p: &Packet) {
        let bytes = encode(p, self.protocol);
        self.send_raw(&bytes)
            .await
            .unwrap_or_else(|e| panic!("send {p:?}: {e}"));
    }

    /// Sends raw bytes; the error is returned because tests of bad input expect failures.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        timeout(WAIT, self.stream.write_all(bytes))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "write timed out"))??;
        self.stream.flush().await
    }

    /// Reads more bytes into the buffer; `Ok(0)` means the peer closed.
    async fn fill(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(64 * 1024);
        self.stream.read_buf(&mut self.buf).await
    }

    /// The raw bytes of the next whole packet within `dur`, `None` on timeout. Panics if the
    /// connection closes first.
    pub async fn recv_frame_within(&mut self, dur: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + dur;
        loop {
            if let Some((len, hdr)) = peek_frame_len(&self.buf) {
                if self.buf.len() >= hdr + len {
                    return Some(self.buf.split_to(hdr + len).to_vec());
                }
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => return None,
                Ok(Ok(0)) => panic!(
                    "connection closed while waiting for a packet (buffered {:02x?})",
                    &self.buf[..]
                ),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read failed while waiting for a packet: {e}"),
            }
        }
    }

    /// The raw bytes of the next whole packet, or `None` when the broker closes the connection
    /// first; panics after [`WAIT`] with neither.
    pub async fn recv_frame_or_close(&mut self) -> Option<Vec<u8>> {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((len, hdr)) = peek_frame_len(&self.buf) {
                if self.buf.len() >= hdr + len {
                    return Some(self.buf.split_to(hdr + len).to_vec());
                }
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => panic!("neither a packet nor a close within {WAIT:?}"),
                Ok(Ok(0)) | Ok(Err(_)) => return None,
                Ok(Ok(_)) => {}
            }
        }
    }

    /// The raw bytes of the next whole packet; panics after [`WAIT`].
    pub async fn recv_frame(&mut self) -> Vec<u8> {
        self.recv_frame_within(WAIT)
            .await
            .expect("no packet from the broker within the timeout")
    }

    /// The next packet (decoded by fubar's codec) within `dur`, `None` on timeout.
    pub async fn recv_within(&mut self, dur: Duration) -> Option<Packet> {
        let bytes = self.recv_frame_within(dur).await?;
        let mut b = BytesMut::from(&bytes[..]);
        match codec::decode(&mut b, self.protocol, RAW_MAX_PACKET) {
            Ok(Some(p)) => Some(p),
            other => panic!("cannot decode packet {bytes:02x?} from broker: {other:?}"),
        }
    }

    /// The next packet; panics after [`WAIT`].
    pub async fn recv(&mut self) -> Packet {
        self.recv_within(WAIT)
            .await
            .expect("no packet from the broker within the timeout")
    }

    /// The next packet, which must be a CONNACK.
    pub async fn expect_connack(&mut self) -> ConnAck {
        match self.recv().await {
            Packet::ConnAck(a) => a,
            other => panic!("expected CONNACK, got {other:?}"),
        }
    }

    /// The next packet, which must be a PUBLISH.
    pub async fn expect_publish(&mut self) -> codec::Publish {
        match self.recv().await {
            Packet::Publish(p) => p,
            other => panic!("expected PUBLISH, got {other:?}"),
        }
    }

    /// Asserts that no packet arrives for `dur` (the connection must stay open).
    pub async fn expect_silence(&mut self, dur: Duration) {
        if let Some(p) = self.recv_within(dur).await {
            panic!("expected no packet, got {p:?}");
        }
    }

    /// Subscribes to one filter and returns the SUBACK return codes.
    pub async fn subscribe(&mut self, packet_id: u16, filter: &str, qos: QoS) -> Vec<u8> {
        self.send(&subscribe_packet(packet_id, filter, qos)).await;
        match self.recv().await {
            Packet::SubAck(a) => {
                assert_eq!(a.packet_id, packet_id, "SUBACK packet id");
                a.return_codes
            }
            other => panic!("expected SUBACK, got {other:?}"),
        }
    }

    /// Sends DISCONNECT and waits until the broker closes the socket.
    pub async fn disconnect(mut self) {
        self.send(&Packet::Disconnect(Default::default())).await;
        self.expect_closed(WAIT).await;
    }

    /// Asserts that the broker closes the connection within `dur` (read returns 0 or the
    /// connection is reset). Returns every byte received before the close, including bytes
    /// already buffered.
    pub async fn expect_closed(&mut self, dur: Duration) -> Vec<u8> {
        let deadline = Instant::now() + dur;
        loop {
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Err(_) => panic!(
                    "connection still open after {dur:?} (received {:02x?})",
                    &self.buf[..]
                ),
                Ok(Ok(0)) | Ok(Err(_)) => return self.buf.split().to_vec(),
                Ok(Ok(_)) => {
                    if self.buf.len() > RAW_MAX_PACKET {
                        panic!("broker keeps sending instead of closing");
                    }
                }
            }
        }
    }

    /// True when the connection is still open: a PINGREQ gets its PINGRESP.
    pub async fn is_alive(&mut self) -> bool {
        if self.send_raw(&[0xC0, 0x00]).await.is_err() {
            return false;
        }
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some((len, hdr)) = peek_frame_len(&self.buf) {
                if self.buf.len() >= hdr + len {
                    let first = self.buf[0];
                    self.buf.advance(hdr + len);
                    if first == 0xD0 {
                        return true;
                    }
                    continue;
                }
            }
            match tokio::time::timeout_at(deadline, self.fill()).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return false,
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// rumqttc clients
// ---------------------------------------------------------------------------------------------

/// Which rumqttc client to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    /// `rumqttc::` (MQTT 3.1.1).
    V4,
    /// `rumqttc::v5::` (MQTT 5).
    V5,
}

/// A PUBLISH received by a rumqttc client, the same shape for both versions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Msg {
    /// Topic name.
    pub topic: String,
    /// Payload.
    pub payload: Vec<u8>,
    /// QoS of the delivery.
    pub qos: u8,
    /// RETAIN flag.
    pub retain: bool,
    /// DUP flag.
    pub dup: bool,
}

/// Control events from a rumqttc event loop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ctl {
    /// CONNACK: session present, return/reason code.
    ConnAck {
        /// Session present flag.
        session_present: bool,
        /// 0 on success.
        code: u8,
        /// MQTT 5 Server Keep Alive property.
        server_keep_alive: Option<u16>,
        /// MQTT 5 Assigned Client Identifier property.
        assigned_client_id: Option<String>,
    },
    /// SUBACK return codes.
    SubAck(Vec<u8>),
    /// UNSUBACK.
    UnsubAck,
    /// PUBACK for an outgoing QoS 1 publish.
    PubAck(u16),
    /// PUBCOMP for an outgoing QoS 2 publish.
    PubComp(u16),
    /// DISCONNECT from the broker (MQTT 5).
    Disconnect,
    /// The event loop ended (error or our DISCONNECT was sent).
    Closed(String),
}

/// Options of a rumqttc client.
#[derive(Debug, Clone)]
pub struct Opts {
    /// rumqttc flavour.
    pub version: Version,
    /// Client id.
    pub id: String,
    /// Clean session / clean start.
    pub clean: bool,
    /// Keep-alive in seconds.
    pub keep_alive: u64,
    /// Will: topic, payload, qos, retain.
    pub will: Option<(String, Vec<u8>, u8, bool)>,
    /// MQTT 5 session expiry interval.
    pub session_expiry: Option<u32>,
}

impl Opts {
    /// Defaults: clean session, keep-alive 60 s, no will.
    pub fn new(version: Version, id: &str) -> Opts {
        Opts {
            version,
            id: id.to_string(),
            clean: true,
            keep_alive: 60,
            will: None,
            session_expiry: None,
        }
    }

    /// Sets clean session.
    pub fn clean(mut self, clean: bool) -> Opts {
        self.clean = clean;
        self
    }

    /// Sets a will.
    pub fn will(mut self, topic: &str, payload: &[u8], qos: u8, retain: bool) -> Opts {
        self.will = Some((topic.to_string(), payload.to_vec(), qos, retain));
        self
    }

    /// Sets the MQTT 5 session expiry interval.
    pub fn session_expiry(mut self, secs: u32) -> Opts {
        self.session_expiry = Some(secs);
        self
    }
}

enum Inner {
    V4(rumqttc::AsyncClient),
    V5(rumqttc::v5::AsyncClient),
}

/// A connected rumqttc client whose event loop runs in a task.
pub struct Client {
    inner: Inner,
    /// Incoming publishes.
    pub msgs: mpsc::UnboundedReceiver<Msg>,
    ctl: mpsc::UnboundedReceiver<Ctl>,
    task: tokio::task::JoinHandle<()>,
    /// The CONNACK this client got.
    pub connack: Ctl,
    /// Client id.
    pub id: String,
}

fn qos4(q: u8) -> rumqttc::QoS {
    match q {
        0 => rumqttc::QoS::AtMostOnce,
        1 => rumqttc::QoS::AtLeastOnce,
        _ => rumqttc::QoS::ExactlyOnce,
    }
}

fn qos5(q: u8) -> rumqttc::v5::mqttbytes::QoS {
    use rumqttc::v5::mqttbytes::QoS as Q;
    match q {
        0 => Q::AtMostOnce,
        1 => Q::AtLeastOnce,
        _ => Q::ExactlyOnce,
    }
}

fn spawn_v4(
    mut el: rumqttc::EventLoop,
    msgs: mpsc::UnboundedSender<Msg>,
    ctl: mpsc::UnboundedSender<Ctl>,
) -> tokio::task::JoinHandle<()> {
    use rumqttc::{Event, Outgoing, Packet as P, SubscribeReasonCode};
    tokio::spawn(async move {
        loop {
            let ev = match el.poll().await {
                Ok(ev) => ev,
                Err(e) => {
                    let _ = ctl.send(Ctl::Closed(e.to_string()));
                    return;
                }
            };
            let sent = match ev {
                Event::Incoming(P::Publish(p)) => msgs
                    .send(Msg {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                        dup: p.dup,
                    })
                    .is_ok(),
                Event::Incoming(P::ConnAck(a)) => ctl
                    .send(Ctl::ConnAck {
                        session_present: a.session_present,
                        code: a.code as u8,
                        server_keep_alive: None,
                        assigned_client_id: None,
                    })
                    .is_ok(),
                Event::Incoming(P::SubAck(a)) => ctl
                    .send(Ctl::SubAck(
                        a.return_codes
                            .iter()
                            .map(|c| match c {
                                SubscribeReasonCode::Success(q) => *q as u8,
                                SubscribeReasonCode::Failure => 0x80,
                            })
                            .collect(),
                    ))
                    .is_ok(),
                Event::Incoming(P::UnsubAck(_)) => ctl.send(Ctl::UnsubAck).is_ok(),
                Event::Incoming(P::PubAck(a)) => ctl.send(Ctl::PubAck(a.pkid)).is_ok(),
                Event::Incoming(P::PubComp(a)) => ctl.send(Ctl::PubComp(a.pkid)).is_ok(),
                Event::Incoming(P::Disconnect) => ctl.send(Ctl::Disconnect).is_ok(),
                Event::Outgoing(Outgoing::Disconnect) => {
                    let _ = ctl.send(Ctl::Closed("disconnect sent".into()));
                    return;
                }
                _ => true,
            };
            if !sent {
                return;
            }
        }
    })
}

fn spawn_v5(
    mut el: rumqttc::v5::EventLoop,
    msgs: mpsc::UnboundedSender<Msg>,
    ctl: mpsc::UnboundedSender<Ctl>,
) -> tokio::task::JoinHandle<()> {
    use rumqttc::v5::mqttbytes::v5::{Packet as P, SubscribeReasonCode as R};
    use rumqttc::v5::Event;
    use rumqttc::Outgoing;
    tokio::spawn(async move {
        loop {
            let ev = match el.poll().await {
                Ok(ev) => ev,
                Err(e) => {
                    let _ = ctl.send(Ctl::Closed(e.to_string()));
                    return;
                }
            };
            let sent = match ev {
                Event::Incoming(P::Publish(p)) => msgs
                    .send(Msg {
                        topic: String::from_utf8_lossy(&p.topic).into_owned(),
                        payload: p.payload.to_vec(),
                        qos: p.qos as u8,
                        retain: p.retain,
                        dup: p.dup,
                    })
                    .is_ok(),
                Event::Incoming(P::ConnAck(a)) => {
                    let props = a.properties.clone();
                    let code = match a.code {
                        rumqttc::v5::mqttbytes::v5::ConnectReturnCode::Success => 0,
                        _ => 0x80,
                    };
                    ctl.send(Ctl::ConnAck {
                        session_present: a.session_present,
                        code,
                        server_keep_alive: props.as_ref().and_then(|p| p.server_keep_alive),
                        assigned_client_id: props.and_then(|p| p.assigned_client_identifier),
                    })
                    .is_ok()
                }
                Event::Incoming(P::SubAck(a)) => ctl
                    .send(Ctl::SubAck(
                        a.return_codes
                            .iter()
                            .map(|c| match c {
                                R::Success(q) => *q as u8,
                                R::Failure | R::Unspecified => 0x80,
                                R::ImplementationSpecific => 0x83,
                                R::NotAuthorized => 0x87,
                                R::TopicFilterInvalid => 0x8F,
                                R::PkidInUse => 0x91,
                                R::QuotaExceeded => 0x97,
                                R::SharedSubscriptionsNotSupported => 0x9E,
                                R::SubscriptionIdNotSupported => 0xA1,
                                R::WildcardSubscriptionsNotSupported => 0xA2,
                            })
                            .collect(),
                    ))
                    .is_ok(),
                Event::Incoming(P::UnsubAck(_)) => ctl.send(Ctl::UnsubAck).is_ok(),
                Event::Incoming(P::PubAck(a)) => ctl.send(Ctl::PubAck(a.pkid)).is_ok(),
                Event::Incoming(P::PubComp(a)) => ctl.send(Ctl::PubComp(a.pkid)).is_ok(),
                Event::Incoming(P::Disconnect(_)) => ctl.send(Ctl::Disconnect).is_ok(),
                Event::Outgoing(Outgoing::Disconnect) => {
                    let _ = ctl.send(Ctl::Closed("disconnect sent".into()));
                    return;
                }
                _ => true,
            };
            if !sent {
                return;
            }
        }
    })
}

impl Client {
    /// Connects a clean-session client and waits for its CONNACK (which must accept).
    pub async fn connect(addr: SocketAddr, version: Version, id: &str) -> Client {
        Client::connect_opts(addr, Opts::new(version, id)).await
    }

    /// Connects with `opts` and waits for an accepting CONNACK.
    pub async fn connect_opts(addr: SocketAddr, opts: Opts) -> Client {
        let c = Client::try_connect(addr, opts).await;
        match &c.connack {
            Ctl::ConnAck { code: 0, .. } => c,
            other => panic!("client {} not accepted: {other:?}", c.id),
        }
    }

    /// Connects with `opts` and returns whatever the broker answered first.
    pub async fn try_connect(addr: SocketAddr, opts: Opts) -> Client {
        let (mtx, msgs) = mpsc::unbounded_channel();
        let (ctx, mut ctl) = mpsc::unbounded_channel();
        let host = addr.ip().to_string();
        let (inner, task) = match opts.version {
            Version::V4 => {
                let mut o = rumqttc::MqttOptions::new(opts.id.clone(), host, addr.port());
                o.set_clean_session(opts.clean);
                o.set_keep_alive(Duration::from_secs(opts.keep_alive));
                o.set_max_packet_size(4 * 1024 * 1024, 4 * 1024 * 1024);
                if let Some((t, p, q, r)) = &opts.will {
                    o.set_last_will(rumqttc::LastWill::new(t, p.clone(), qos4(*q), *r));
                }
                let (c, el) = rumqttc::AsyncClient::new(o, 1024);
                (Inner::V4(c), spawn_v4(el, mtx, ctx))
            }
            Version::V5 => {
                let mut o = rumqttc::v5::MqttOptions::new(opts.id.clone(), host, addr.port());
                o.set_clean_start(opts.clean);
                o.set_keep_alive(Duration::from_secs(opts.keep_alive));
                o.set_max_packet_size(Some(4 * 1024 * 1024));
                if opts.session_expiry.is_some() {
                    o.set_session_expiry_interval(opts.session_expiry);
                }
                if let Some((t, p, q, r)) = &opts.will {
                    o.set_last_will(rumqttc::v5::mqttbytes::v5::LastWill::new(
                        t,
                        p.clone(),
                        qos5(*q),
                        *r,
                        None,
                    ));
                }
                let (c, el) = rumqttc::v5::AsyncClient::new(o, 1024);
                (Inner::V5(c), spawn_v5(el, mtx, ctx))
            }
        };
        let connack = match timeout(WAIT, ctl.recv()).await {
            Ok(Some(c)) => c,
            Ok(None) => panic!("client {}: event loop ended before CONNACK", opts.id),
            Err(_) => panic!("client {}: no CONNACK within {WAIT:?}", opts.id),
        };
        Client {
            inner,
            msgs,
            ctl,
            task,
            connack,
            id: opts.id,
        }
    }

    /// Session present flag of the CONNACK.
    pub fn session_present(&self) -> bool {
        matches!(
            self.connack,
            Ctl::ConnAck {
                session_present: true,
                ..
            }
        )
    }

    /// The next control event matching `pred` within [`WAIT`]; other events are skipped.
    pub async fn wait_ctl(&mut self, what: &str, pred: impl Fn(&Ctl) -> bool) -> Ctl {
        let deadline = Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.ctl.recv()).await {
                Ok(Some(c)) if pred(&c) => return c,
                Ok(Some(Ctl::Closed(e))) => {
                    panic!(
                        "client {}: connection closed ({e}) waiting for {what}",
                        self.id
                    )
                }
                Ok(Some(_)) => {}
                Ok(None) => panic!("client {}: event loop gone waiting for {what}", self.id),
                Err(_) => panic!("client {}: no {what} within {WAIT:?}", self.id),
            }
        }
    }

    /// Subscribes and waits for the SUBACK; returns its codes.
    pub async fn subscribe(&mut self, filter: &str, qos: u8) -> Vec<u8> {
        match &self.inner {
            Inner::V4(c) => c
                .subscribe(filter, qos4(qos))
                .await
                .map_err(|e| e.to_string()),
            Inner::V5(c) => c
                .subscribe(filter, qos5(qos))
                .await
                .map_err(|e| e.to_string()),
        }
        .expect("subscribe request");
        match self
            .wait_ctl("SUBACK", |c| matches!(c, Ctl::SubAck(_)))
            .await
        {
            Ctl::SubAck(codes) => codes,
            _ => unreachable!(),
        }
    }

    /// Subscribes and asserts the granted QoS.
    pub async fn subscribe_ok(&mut self, filter: &str, qos: u8) {
        let codes = self.subscribe(filter, qos).await;
        assert_eq!(codes, vec![qos], "SUBACK for {filter:?}");
    }

    /// Unsubscribes and waits for the UNSUBACK.
    pub async fn unsubscribe(&mut self, filter: &str) {
        match &self.inner {
            Inner::V4(c) => c.unsubscribe(filter).await.map_err(|e| e.to_string()),
            Inner::V5(c) => c.unsubscribe(filter).await.map_err(|e| e.to_string()),
        }
        .expect("unsubscribe request");
        self.wait_ctl("UNSUBACK", |c| matches!(c, Ctl::UnsubAck))
            .await;
    }

    /// Queues a publish without waiting for its acknowledgement.
    pub async fn publish(&self, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
        match &self.inner {
            Inner::V4(c) => c
                .publish(topic, qos4(qos), retain, payload.to_vec())
                .await
                .map_err(|e| e.to_string()),
            Inner::V5(c) => c
                .publish(topic, qos5(qos), retain, payload.to_vec())
                .await
                .map_err(|e| e.to_string()),
        }
        .expect("publish request");
    }

    /// Publishes and, for QoS 1/2, waits for PUBACK/PUBCOMP.
    pub async fn publish_acked(&mut self, topic: &str, qos: u8, retain: bool, payload: &[u8]) {
        self.publish(topic, qos, retain, payload).await;
        self.wait_acks(qos, 1).await;
    }

    /// Waits for `n` PUBACKs (qos 1) or PUBCOMPs (qos 2); nothing for qos 0.
    pub async fn wait_acks(&mut self, qos: u8, n: usize) {
        for _ in 0..n {
            match qos {
                1 => {
                    self.wait_ctl("PUBACK", |c| matches!(c, Ctl::PubAck(_)))
                        .await;
                }
                2 => {
                    self.wait_ctl("PUBCOMP", |c| matches!(c, Ctl::PubComp(_)))
                        .await;
                }
                _ => return,
            }
        }
    }

    /// The next publish within `dur`, or `None`.
    pub async fn recv_within(&mut self, dur: Duration) -> Option<Msg> {
        timeout(dur, self.msgs.recv()).await.ok().flatten()
    }

    /// The next publish; panics after [`WAIT`].
    pub async fn recv(&mut self) -> Msg {
        match self.recv_within(WAIT).await {
            Some(m) => m,
            None => panic!("client {}: no PUBLISH within {WAIT:?}", self.id),
        }
    }

    /// Asserts that no publish arrives for `dur`.
    pub async fn expect_silence(&mut self, dur: Duration) {
        if let Some(m) = self.recv_within(dur).await {
            panic!("client {}: expected no PUBLISH, got {m:?}", self.id);
        }
    }

    /// Sends DISCONNECT and waits until the event loop has written it and stopped.
    pub async fn disconnect(mut self) {
        match &self.inner {
            Inner::V4(c) => c.disconnect().await.map_err(|e| e.to_string()),
            Inner::V5(c) => c.disconnect().await.map_err(|e| e.to_string()),
        }
        .expect("disconnect request");
        self.wait_ctl("close after DISCONNECT", |c| matches!(c, Ctl::Closed(_)))
            .await;
        let _ = timeout(WAIT, &mut self.task).await;
    }

    /// Drops the connection without DISCONNECT (the event loop and its socket are dropped).
    pub async fn kill(mut self) {
        self.task.abort();
        let _ = timeout(WAIT, &mut self.task).await;
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Publishes `payload` from `publisher` to `topic` until `subscriber` receives it (up to
/// `tries` times, QoS 1); used where a subscription made by one connection must be visible
/// to another before the real test starts. Returns the received message.
pub async fn sync_via(publisher: &mut Client, subscriber: &mut Client, topic: &str) -> Msg {
    let payload = format!("sync-{}", subscriber.id);
    publisher
        .publish_acked(topic, 1, false, payload.as_bytes())
        .await;
    let m = subscriber.recv().await;
    assert_eq!(m.topic, topic);
    assert_eq!(m.payload, payload.as_bytes());
    m
}

/// True when `name` is an executable on PATH.
pub fn have_binary(name: &str) -> bool {
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|d| d.join(name).is_file()))
        .unwrap_or(false)
}

/// Resident set size of this process in KiB, from `/proc/self/status`.
pub fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS line")
}
