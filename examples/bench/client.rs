//! MQTT 3.1.1 client plumbing for the load generator, built on `fubar::codec`.
//!
//! [`Client::connect`] opens a TCP connection (optionally from a given 127.0.0.x source
//! address), sends CONNECT (clean session, or a persistent session for `--persistent`
//! subscribers) and waits for an accepted CONNACK;
//! [`Client::subscribe`] waits for the SUBACK. After that the scenario drivers in
//! `pubsub.rs` and `conn.rs` own the socket and its buffers and drive them non-blocking.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::time::Duration;

use bytes::BytesMut;
use fubar::codec::{
    self, Connect, DecodeError, EncodeError, Packet, Protocol, PubResp, QoS, Subscribe,
    SubscribeTopic, SubscriptionOptions,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// Protocol every benchmark connection speaks.
pub const PROTOCOL: Protocol = Protocol::V311;
/// Largest packet the generator accepts from a broker.
pub const MAX_PACKET: usize = 1 << 20;
/// Read buffer capacity reserved before each read.
pub const READ_CHUNK: usize = 64 * 1024;

/// Why a benchmark connection failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A socket operation failed.
    #[error("{0}: {1}")]
    Io(&'static str, io::Error),
    /// The broker sent bytes that are not a valid MQTT packet.
    #[error("decode: {0}")]
    Decode(#[from] DecodeError),
    /// A packet could not be encoded (generator bug or bad parameters).
    #[error("encode: {0}")]
    Encode(#[from] EncodeError),
    /// The broker did not answer in time.
    #[error("timed out waiting for {0}")]
    Timeout(&'static str),
    /// The broker closed the connection.
    #[error("connection closed by broker")]
    Closed,
    /// CONNACK with a non-zero return code.
    #[error("CONNACK refused with code {0}")]
    Refused(u8),
    /// SUBACK with a failure return code.
    #[error("SUBACK refused with code {0:#x}")]
    SubscribeRefused(u8),
    /// The broker sent a packet that does not fit the exchange.
    #[error("protocol: {0}")]
    Protocol(String),
}

/// Appends the encoding of `packet` to `buf`.
pub fn put(buf: &mut BytesMut, packet: &Packet) -> Result<(), BenchError> {
    codec::encode(packet, PROTOCOL, buf)?;
    Ok(())
}

/// Appends a PUBACK/PUBREC/PUBREL/PUBCOMP for `packet_id`; `kind` picks which.
pub fn put_resp(buf: &mut BytesMut, kind: RespKind, packet_id: u16) -> Result<(), BenchError> {
    let resp = PubResp::new(packet_id);
    let packet = match kind {
        RespKind::Ack => Packet::PubAck(resp),
        RespKind::Rec => Packet::PubRec(resp),
        RespKind::Rel => Packet::PubRel(resp),
        RespKind::Comp => Packet::PubComp(resp),
    };
    put(buf, &packet)
}

/// Which acknowledgement [`put_resp`] writes.
#[derive(Debug, Clone, Copy)]
pub enum RespKind {
    /// PUBACK (QoS 1 receiver).
    Ack,
    /// PUBREC (QoS 2 receiver, step 1).
    Rec,
    /// PUBREL (QoS 2 sender, step 2).
    Rel,
    /// PUBCOMP (QoS 2 receiver, step 3).
    Comp,
}

/// Source address for connection number `index`: 127.0.0.1 for the first `per_source`
/// connections, 127.0.0.2 for the next, and so on (ephemeral ports run out near 28k per
/// source address).
pub fn source_addr(index: usize, per_source: usize) -> IpAddr {
    let n = (index / per_source.max(1)).min(250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1 + n))
}

/// Sets IP_BIND_ADDRESS_NO_PORT: the source port is then picked at connect time by the
/// whole 4-tuple, so ports held in TIME_WAIT by earlier runs (towards other broker ports)
/// do not run the range dry. Best effort: without it bind picks the port itself.
fn bind_no_port(socket: &TcpSocket) {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a descriptor we own, with a pointer to a live c_int.
    unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

/// An established MQTT connection with its buffers.
pub struct Client {
    /// The socket (no-delay set).
    pub stream: TcpStream,
    /// Bytes read but not yet decoded.
    pub rbuf: BytesMut,
    /// Bytes encoded but not yet written.
    pub wbuf: BytesMut,
}

impl Client {
    /// Connects from `source` to `addr` and completes CONNECT/CONNACK within `timeout`;
    /// `clean` is the CONNECT's clean-session flag (false: the broker keeps the session,
    /// its subscriptions and its QoS 1/2 queue after the connection ends).
    pub async fn connect(
        addr: SocketAddr,
        source: Option<IpAddr>,
        client_id: &str,
        keep_alive: u16,
        clean: bool,
        timeout: Duration,
    ) -> Result<Client, BenchError> {
        let run = async {
            let socket = TcpSocket::new_v4().map_err(|e| BenchError::Io("socket", e))?;
            if let Some(ip) = source {
                bind_no_port(&socket);
                socket
                    .bind(SocketAddr::new(ip, 0))
                    .map_err(|e| BenchError::Io("bind", e))?;
            }
            let stream = socket
                .connect(addr)
                .await
                .map_err(|e| BenchError::Io("connect", e))?;
            stream
                .set_nodelay(true)
                .map_err(|e| BenchError::Io("set_nodelay", e))?;
            let mut client = Client {
                stream,
                rbuf: BytesMut::with_capacity(4096),
                wbuf: BytesMut::with_capacity(256),
            };
            let connect = Connect {
                protocol: PROTOCOL,
                clean_start: clean,
                keep_alive,
                client_id: client_id.to_owned(),
                ..Default::default()
            };
            put(&mut client.wbuf, &Packet::Connect(Box::new(connect)))?;
            client.flush().await?;
            match client.read_packet().await? {
                Packet::ConnAck(ack) if ack.code == 0 => Ok(client),
                Packet::ConnAck(ack) => Err(BenchError::Refused(ack.code)),
                other => Err(BenchError::Protocol(format!(
                    "expected CONNACK, got {other:?}"
                ))),
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| BenchError::Timeout("CONNACK"))?
    }

    /// Subscribes to `filter` at `qos` and waits for a SUBACK granting it.
    pub async fn subscribe(
        &mut self,
        filter: &str,
        qos: QoS,
        timeout: Duration,
    ) -> Result<(), BenchError> {
        let run = async {
            let sub = Subscribe {
                packet_id: 1,
                topics: vec![SubscribeTopic {
                    filter: filter.to_owned(),
                    options: SubscriptionOptions {
                        qos,
                        ..Default::default()
                    },
                }],
                ..Default::default()
            };
            put(&mut self.wbuf, &Packet::Subscribe(sub))?;
            self.flush().await?;
            match self.read_packet().await? {
                Packet::SubAck(ack) if ack.packet_id == 1 => match ack.return_codes.first() {
                    Some(&code) if code <= 2 => Ok(()),
                    Some(&code) => Err(BenchError::SubscribeRefused(code)),
                    None => Err(BenchError::Protocol("SUBACK without return code".into())),
                },
                other => Err(BenchError::Protocol(format!(
                    "expected SUBACK, got {other:?}"
                ))),
            }
        };
        tokio::time::timeout(timeout, run)
            .await
            .map_err(|_| BenchError::Timeout("SUBACK"))?
    }

    /// Writes all of `wbuf`.
    pub async fn flush(&mut self) -> Result<(), BenchError> {
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(|e| BenchError::Io("write", e))?;
        self.wbuf.clear();
        Ok(())
    }

    /// Reads until one whole packet is decoded.
    pub async fn read_packet(&mut self) -> Result<Packet, BenchError> {
        loop {
            if let Some(packet) = codec::decode(&mut self.rbuf, PROTOCOL, MAX_PACKET)? {
                return Ok(packet);
            }
            self.rbuf.reserve(4096);
            let n = self
                .stream
                .read_buf(&mut self.rbuf)
                .await
                .map_err(|e| BenchError::Io("read", e))?;
            if n == 0 {
                return Err(BenchError::Closed);
            }
        }
    }
}

/// Error counter plus the first few messages, shared by all tasks of a run.
#[derive(Default)]
pub struct ErrorLog {
    inner: Mutex<(u64, Vec<String>)>,
}

impl ErrorLog {
    /// Most messages kept for the report.
    const KEEP: usize = 8;

    /// Counts one error and keeps its text if there is room.
    pub fn record(&self, what: impl std::fmt::Display) {
        if let Ok(mut guard) = self.inner.lock() {
            guard.0 += 1;
            if guard.1.len() < Self::KEEP {
                guard.1.push(what.to_string());
            }
        }
    }

    /// Number of errors and the kept messages.
    pub fn snapshot(&self) -> (u64, Vec<String>) {
        match self.inner.lock() {
            Ok(guard) => guard.clone(),
            Err(_) => (0, Vec::new()),
        }
    }
}
