//! One client connection, in one task: the CONNECT handshake, the read loop and the writes.
//!
//! `serve` works on any byte stream split into a reader and a writer, so TCP, TLS and
//! WebSocket connections share it. It reads into a buffer, decodes packets and:
//!
//! - before CONNECT: waits at most `mqtt.connect_timeout` for the first packet, which must
//!   be CONNECT ([MQTT-3.1.0-1]); answers an unsupported protocol with CONNACK 1 / 0x84;
//!   applies `mqtt.max_connections`, the client id rules and keep-alive negotiation; asks
//!   the Registry for the session, puts the CONNACK on the new link and attaches to the
//!   session (which then sends what it kept for the client, after the CONNACK);
//! - after CONNECT: answers PINGREQ itself and forwards every other client packet to the
//!   session. PUBLISH and its acknowledgements are *piped* ([`Piped`]): handed over without
//!   waiting, within `PIPELINE` (128) slots not yet fully handled: a packet takes one slot
//!   and a PUBLISH one more per KiB of payload, so a large one takes them all (the
//!   publisher's backpressure, bounded in packets and in bytes: slots come back only once
//!   the packet's routing is done), so one read's worth of
//!   packets costs the session one wake-up instead of one round trip each; SUBSCRIBE and
//!   UNSUBSCRIBE are waited for. It closes on DISCONNECT, on a protocol violation (MQTT 5:
//!   DISCONNECT with the reason first; the session reports violations in piped packets
//!   through the link's close signal), on 1.5 × keep-alive without a complete packet, or
//!   when the session asks (takeover). Before telling the session it detached, it waits
//!   until every piped packet was handled.
//!
//! Writing happens in the same task (`Outflow`, polled beside everything the connection
//! waits for): producers encode packets straight into the link's bounded buffer (see
//! [`link`](mod@crate::actors::link)) and wake the task once per batch; the connection takes the
//! whole buffer and writes it with as few calls as the socket allows, then flushes. So a
//! connection is one task, whatever it is doing, and many deliveries between two wake-ups
//! go out in one write.
//!
//! Memory of a quiet connection: the read buffer shrinks to `IDLE_READ_BUFFER` (64) bytes
//! once a read did not fill it, the link keeps at most one small buffer, the logger is
//! built only when something is logged, and the handshake's state is boxed so it does not
//! stay in the task. An idle one (nothing read or written for `mqtt.park_after_ms`) on a
//! transport with a `Parker` leaves its task altogether: the read loop ends with
//! `Exit::Idle`, and what the connection needs to go on (`Idle`) waits with its socket in
//! `park` until `Idle::resume` serves it again.

use super::connect;
use crate::actors::direct::Direct;
use crate::actors::link::{Outbound, SendError, Signal};
use crate::actors::registry::{OpenSession, OpenSessionError};
use crate::actors::session::{Attach, AttachOptions, Detached, Inbound, InboundError, Piped};
use crate::actors::{link, ClientId, CloseReason, Epoch, LinkEnd, Node, SessionRef};
use crate::auth::{Gate, Principal};
use crate::codec::{
    self, connack_v3, reason, DecodeError, Disconnect, Packet, Properties, Protocol,
};
use crate::metrics::Metrics;
use crate::topic::validate_topic_name;
use actix::MailboxError;
use bytes::BytesMut;
use slog::{debug, info, o, warn, Logger};
use std::future::{poll_fn, Future};
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;
use tokio::time::{sleep_until, timeout, Instant};

/// Bytes reserved before each read while the client sends a lot.
const READ_CHUNK: usize = 4096;
/// Read buffer of a quiet connection (a PINGREQ is 2 bytes): an empty buffer larger than this
/// is replaced by one this small unless the last read filled the buffer, so idle
/// connections hold almost nothing; a read that fills it switches back to [`READ_CHUNK`].
const IDLE_READ_BUFFER: usize = 64;
/// Batches a connection writes in a row before it lets the arbiter's other tasks run.
const WRITE_ROUNDS: usize = 8;

/// Batches smaller than this wait one turn of the arbiter before they are written (see
/// `Outflow::poll_pump`).
const LINGER_BELOW: usize = 4096;
/// Time allowed for a last packet (CONNACK refusal, DISCONNECT) to be written.
const FINAL_WRITE: Duration = Duration::from_secs(2);
/// Slots for PUBLISH and acknowledgement packets handed to the session and not yet handled
/// (see [`Piped`] and `pipeline_slots`): 128 small packets, or fewer large ones, before the
/// connection waits. Larger than a closed-loop publisher's usual window, so that one read's
/// worth of PUBLISHes reaches the session (and its Topic) in one go.
const PIPELINE: usize = 128;
/// Attempts to attach when the session found was ending at that moment.
const ATTACH_ATTEMPTS: usize = 3;

/// Why a connection ended.
#[derive(Debug)]
enum Exit {
    /// The client sent DISCONNECT.
    Disconnect {
        /// MQTT 5 reason 0x04: publish the will anyway.
        will: bool,
        /// MQTT 5 Session Expiry Interval update.
        session_expiry: Option<u32>,
    },
    /// End of stream or read error without DISCONNECT.
    Lost(String),
    /// The writer failed (the peer is gone).
    WriteFailed,
    /// No complete packet within 1.5 × keep-alive.
    KeepAliveTimeout,
    /// The client broke the protocol.
    Violation {
        /// MQTT 5 DISCONNECT reason code.
        reason: u8,
        /// What was wrong.
        what: String,
    },
    /// The session closed the connection.
    Closed(CloseReason),
    /// The session is gone.
    SessionGone,
    /// Nothing came or went for `mqtt.park_after_ms`: the connection may park. Never
    /// concluded: the caller parks the connection or runs it again.
    Idle,
}

impl Exit {
    fn from_decode(e: DecodeError) -> Exit {
        let reason = match e {
            DecodeError::PacketTooLarge { .. } => reason::PACKET_TOO_LARGE,
            DecodeError::UnsupportedProtocol { .. } => reason::PROTOCOL_ERROR,
            DecodeError::Malformed(_) => reason::MALFORMED_PACKET,
        };
        Exit::Violation {
            reason,
            what: e.to_string(),
        }
    }

    /// The client's will is published for every end but a normal DISCONNECT and a takeover.
    fn publishes_will(&self) -> bool {
        match self {
            Exit::Disconnect { will, .. } => *will,
            Exit::Lost(_) | Exit::WriteFailed | Exit::KeepAliveTimeout | Exit::Violation { .. } => {
                true
            }
            Exit::Closed(_) | Exit::SessionGone | Exit::Idle => false,
        }
    }

    /// The MQTT 5 DISCONNECT the server sends before closing, if any.
    fn disconnect_reason(&self) -> Option<u8> {
        match self {
            Exit::Violation { reason, .. } => Some(*reason),
            Exit::KeepAliveTimeout => Some(reason::KEEP_ALIVE_TIMEOUT),
            Exit::Closed(CloseReason::TakenOver) => Some(reason::SESSION_TAKEN_OVER),
            Exit::Closed(CloseReason::Violation { reason, .. }) => Some(*reason),
            Exit::Closed(CloseReason::ServerShutdown) | Exit::SessionGone => {
                Some(reason::SERVER_SHUTTING_DOWN)
            }
            Exit::Disconnect { .. } | Exit::Lost(_) | Exit::WriteFailed | Exit::Idle => None,
        }
    }
}

/// Why reading a packet stopped.
enum ReadError {
    /// End of stream.
    Eof,
    /// The socket failed.
    Io(std::io::Error),
    /// The bytes are not MQTT.
    Decode(DecodeError),
}

/// The reading side of one connection.
struct Connection<R> {
    reader: R,
    buf: BytesMut,
    /// The last read filled the free space of the buffer: more is probably waiting.
    busy: bool,
    node: Arc<Node>,
    peer: SocketAddr,
    epoch: Epoch,
    protocol: Protocol,
    /// When the client last sent a complete packet (only those count for the keep-alive).
    last_packet: Instant,
}

/// An attached connection: its session and the transport end of its link.
struct Established {
    session: SessionRef,
    /// The session's outbound state, where the client's PUBACKs and PUBCOMPs are applied
    /// when that is all they need.
    direct: Arc<Direct>,
    end: LinkEnd,
    keep_alive: Option<Duration>,
    /// MQTT 5: the CONNECT set no Session Expiry Interval ([MQTT-3.14.2-2]).
    expiry_was_zero: bool,
}

/// The writing side of an attached connection: the packets taken from the link and how far
/// they are written. It is polled beside whatever the connection task waits for, so the
/// connection writes while it reads, waits for its session or drains its pipeline, and a
/// batch is never cut in the middle.
struct Outflow<W> {
    writer: W,
    /// The batch being written (empty when there is none).
    out: BytesMut,
    /// Bytes of `out` already written.
    written: usize,
    /// The small batch waiting in the link was left there for one turn of the arbiter.
    lingered: bool,
}

impl<W: AsyncWrite + Unpin> Outflow<W> {
    /// Writes every batch the link has, taking the next one as soon as the last is
    /// flushed. `Ready` only with a write error (the peer is gone); `Pending` while the
    /// socket or the link has nothing to offer (the task is woken by either).
    fn poll_pump(&mut self, cx: &mut Context<'_>, end: &LinkEnd) -> Poll<std::io::Error> {
        for _ in 0..WRITE_ROUNDS {
            if self.out.is_empty() && !self.lingered {
                // A small batch waits one turn of the arbiter (every other ready task runs
                // once) so that what its producers add meanwhile goes in the same write. A
                // connection woken per message otherwise writes each on its own: in a
                // 1 -> 1000 fan-out, 5 messages per `sendto` instead of 70.
                let waiting = end.buffered();
                if waiting > 0 && waiting < LINGER_BELOW {
                    self.lingered = true;
                    cx.waker().wake_by_ref();
                    return Poll::Pending;
                }
            }
            self.lingered = false;
            while self.written < self.out.len() {
                match Pin::new(&mut self.writer).poll_write(cx, &self.out[self.written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(std::io::ErrorKind::WriteZero.into()),
                    Poll::Ready(Ok(n)) => self.written += n,
                    Poll::Ready(Err(e)) => return Poll::Ready(e),
                    Poll::Pending => return Poll::Pending,
                }
            }
            if !self.out.is_empty() {
                match Pin::new(&mut self.writer).poll_flush(cx) {
                    Poll::Ready(Ok(())) => {}
                    Poll::Ready(Err(e)) => return Poll::Ready(e),
                    Poll::Pending => return Poll::Pending,
                }
                self.out.clear();
                self.written = 0;
            }
            if end.poll_take(cx, &mut self.out).is_pending() {
                return Poll::Pending;
            }
        }
        // Producers keep the link busy: let the arbiter's other tasks run, then go on.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Runs `task` while writing what the link gets; a write error ends both. The task is
    /// pinned by the caller, so it is stored once in the connection's state.
    async fn beside<F: Future>(
        &mut self,
        end: &LinkEnd,
        mut task: Pin<&mut F>,
    ) -> Result<F::Output, std::io::Error> {
        poll_fn(|cx| {
            if let Poll::Ready(e) = self.poll_pump(cx, end) {
                return Poll::Ready(Err(e));
            }
            task.as_mut().poll(cx).map(Ok)
        })
        .await
    }

    /// Ends the link and writes what is left (the rest of the current batch, what was
    /// queued since, then `last`), then shuts the writer down, within [`FINAL_WRITE`].
    async fn finish(
        mut self,
        end: &LinkEnd,
        last: Option<Packet>,
        protocol: Protocol,
        log: &Logger,
    ) {
        let mut rest = self.out.split_off(self.written);
        rest.extend_from_slice(&end.end());
        if let Some(last) = last {
            encode(&last, protocol, &mut rest, log);
        }
        write_final(&mut self.writer, rest).await;
    }
}

/// Parks an idle attached connection: takes its two halves and what it keeps while idle
/// (see [`park`](super::park)). Only transports that can hand their socket to a readiness
/// table have one (plain TCP).
pub(crate) type Parker<R, W> = fn(R, W, Arc<Node>, Idle);

/// Serves one client connection until it closes. `gate` authenticates its CONNECT;
/// `parker`, if any, parks the connection while it is idle.
pub(crate) async fn serve<R, W>(
    reader: R,
    writer: W,
    peer: SocketAddr,
    node: Arc<Node>,
    gate: Gate,
    parker: Option<Parker<R, W>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let conn = Connection::new(
        reader,
        node,
        peer,
        Epoch::next(),
        Protocol::V311,
        Instant::now(),
    );
    // Boxed like every rare or one-off wait, so that the task's own state (what an active
    // connection keeps) holds only the read loop. The handshake owns the connection
    // meanwhile: a local lent to it would keep its room in the task beside the read loop.
    let opened = Box::pin(async move {
        let (mut conn, mut writer) = (conn, writer);
        let established = handshake(&mut conn, &mut writer, gate).await?;
        Some((conn, writer, established))
    });
    let Some((mut conn, writer, established)) = opened.await else {
        return;
    };
    conn.last_packet = Instant::now();
    attached(conn, writer, established, parker).await;
}

/// Serves an attached connection: reads, writes and hands packets to its session until it
/// ends, or, idle and with a `parker`, until it parks.
async fn attached<R, W>(
    mut conn: Connection<R>,
    writer: W,
    established: Established,
    parker: Option<Parker<R, W>>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let pipeline = Arc::new(Semaphore::new(PIPELINE));
    let mut outflow = Outflow {
        writer,
        out: BytesMut::new(),
        written: 0,
        lingered: false,
    };
    let exit = loop {
        let result = {
            let run = pin!(conn.run(&established, &pipeline, parker.is_some()));
            outflow.beside(&established.end, run).await
        };
        match result {
            Ok(Exit::Idle) => {
                // A batch the client does not read keeps the connection in its task.
                if let (Some(park), true) = (parker, outflow.out.is_empty()) {
                    let (reader, node, idle) = conn.into_idle(established);
                    park(reader, outflow.writer, node, idle);
                    return;
                }
            }
            Ok(exit) => break exit,
            Err(e) => {
                debug!(conn.log(), "write failed"; "error" => %e);
                break Exit::WriteFailed;
            }
        }
    };
    let Established {
        session,
        direct,
        end,
        ..
    } = established;
    let client_id = direct.client_id().clone();
    Box::pin(conclude(
        conn, outflow, exit, client_id, session, end, pipeline,
    ))
    .await;
}

/// An idle attached connection without its socket, its node and its peer address: what a
/// parked connection keeps (32 bytes; the table of parked connections holds the node, the
/// socket knows the peer). The rest of the connection is found again on resume: its epoch
/// and protocol in its link, its client id in its [`Direct`].
pub(crate) struct Idle {
    session: SessionRef,
    direct: Arc<Direct>,
    end: LinkEnd,
    /// When the client last sent a complete packet (a [`Stamp`]).
    last_packet: u32,
    /// The keep-alive in milliseconds (0: none; it is at most 98,302,500) and, in
    /// [`EXPIRY_WAS_ZERO`], `Established::expiry_was_zero`.
    keep_alive: u32,
}

/// The bit of [`Idle::keep_alive`] holding `Established::expiry_was_zero`.
const EXPIRY_WAS_ZERO: u32 = 1 << 31;

/// The process's clock for parked connections: milliseconds since its first reading,
/// wrapping every 49.7 days. Differences of two stamps are right for intervals shorter than
/// that; a parked keep-alive (at most 27.3 hours) is always one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp(u32);

/// When [`Stamp`] counts from.
static STAMP_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

impl Stamp {
    /// The stamp of `now`.
    pub(crate) fn now() -> Stamp {
        Stamp::of(Instant::now())
    }

    /// The stamp of `at` (rounded down to the millisecond).
    fn of(at: Instant) -> Stamp {
        let start = *STAMP_START.get_or_init(Instant::now);
        // Truncating to 32 bits is the wrap-around.
        match at.checked_duration_since(start) {
            Some(since) => Stamp(since.as_millis() as u32),
            None => Stamp(0u32.wrapping_sub((start - at).as_millis() as u32)),
        }
    }

    /// Milliseconds from `earlier` to `self`.
    fn since(self, earlier: Stamp) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }
}

impl Idle {
    /// Whether the client's keep-alive ran out before `now` (`false` without one).
    pub(super) fn expired(&self, now: Stamp) -> bool {
        let keep_alive = self.keep_alive & !EXPIRY_WAS_ZERO;
        // Both stamps are rounded down: only more than the keep-alive is surely past it.
        keep_alive != 0 && now.since(Stamp(self.last_packet)) > keep_alive
    }

    /// Registers `waker` for everything the session may send the connection (see
    /// [`LinkEnd::watch`]); `true` when something is there already.
    pub(super) fn watch(&self, waker: &Waker) -> bool {
        self.end.watch(waker)
    }

    /// Serves the connection again, on the halves of its socket, connected to `peer`.
    pub(super) async fn resume<R, W>(
        self,
        reader: R,
        writer: W,
        node: Arc<Node>,
        peer: SocketAddr,
        parker: Option<Parker<R, W>>,
    ) where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin + 'static,
    {
        let (established, last_packet) = self.wake_up(Instant::now());
        let conn = Connection::new(
            reader,
            node,
            peer,
            established.end.epoch(),
            established.end.protocol(),
            last_packet,
        );
        attached(conn, writer, established, parker).await;
    }

    /// What the connection had before it parked, as of `now`: its `Established` and when
    /// the client last sent a packet. That instant is never earlier than the real one (both
    /// stamps are rounded down), so a keep-alive never runs out early: at most 2 ms late.
    fn wake_up(self, now: Instant) -> (Established, Instant) {
        let elapsed = Stamp::of(now)
            .since(Stamp(self.last_packet))
            .saturating_sub(1);
        let last_packet = now
            .checked_sub(Duration::from_millis(u64::from(elapsed)))
            .unwrap_or(now);
        let keep_alive = self.keep_alive & !EXPIRY_WAS_ZERO;
        let established = Established {
            session: self.session,
            direct: self.direct,
            keep_alive: (keep_alive != 0).then(|| Duration::from_millis(u64::from(keep_alive))),
            expiry_was_zero: self.keep_alive & EXPIRY_WAS_ZERO != 0,
            end: self.end,
        };
        (established, last_packet)
    }

    /// Ends a connection of `node` whose socket (connected to `peer`, if it can still say)
    /// was lost while it parked or woke up: like a connection lost without DISCONNECT (the
    /// will is published), with nothing written.
    pub(super) fn abandon(self, node: &Node, peer: Option<SocketAddr>, error: &std::io::Error) {
        let epoch = self.end.epoch();
        self.end.end();
        self.session.do_send(Detached {
            epoch,
            publish_will: true,
            session_expiry: None,
        });
        let log = match peer {
            Some(peer) => connection_log(node, peer, epoch),
            None => node.log.new(o!("connection" => epoch.to_string())),
        };
        info!(log, "connection lost"; "client_id" => %self.direct.client_id(),
            "reason" => "socket lost while parking", "error" => %error);
        Metrics::sub(&node.metrics.connections, 1);
    }
}

/// The end of an attached connection: waits until its piped packets are handled (writing
/// meanwhile), tells the session, logs why it ended and writes what is left, with the
/// MQTT 5 DISCONNECT last.
async fn conclude<R, W>(
    conn: Connection<R>,
    mut outflow: Outflow<W>,
    mut exit: Exit,
    client_id: ClientId,
    session: SessionRef,
    end: LinkEnd,
    pipeline: Arc<Semaphore>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let session_expiry = match &exit {
        Exit::Disconnect { session_expiry, .. } => *session_expiry,
        _ => None,
    };
    // Every packet handed over is handled (its routing done) before the session hears that
    // the connection went: a PUBLISH right before DISCONNECT is never cut short. Writing
    // goes on meanwhile (the session may wait for room to acknowledge).
    let mut drain = pin!(timeout(FINAL_WRITE, pipeline.acquire_many(PIPELINE as u32)));
    if matches!(exit, Exit::WriteFailed) {
        end.end();
        let _ = drain.await;
    } else if let Err(e) = outflow.beside(&end, drain.as_mut()).await {
        debug!(conn.log(), "write failed"; "error" => %e);
        exit = Exit::WriteFailed;
        end.end();
    }
    session.do_send(Detached {
        epoch: conn.epoch,
        publish_will: exit.publishes_will(),
        session_expiry,
    });
    let log = conn.log();
    conn.log_exit(&client_id, &exit);
    let skipped = end.skipped();
    if skipped > 0 {
        warn!(log, "packets not encodable, skipped"; "count" => skipped);
    }
    let last = if conn.protocol == Protocol::V5 {
        exit.disconnect_reason().map(|reason| {
            Packet::Disconnect(Disconnect {
                reason,
                properties: Properties::default(),
            })
        })
    } else {
        None
    };
    if !matches!(exit, Exit::WriteFailed) {
        outflow.finish(&end, last, conn.protocol, &log).await;
    }
    Metrics::sub(&conn.node.metrics.connections, 1);
}

/// The CONNECT handshake: reads the CONNECT, authenticates it, applies
/// `mqtt.max_connections` and attaches the session, or writes the refusal. `None` ends the
/// connection. Counted in `connections` once established.
async fn handshake<R, W>(
    conn: &mut Connection<R>,
    writer: &mut W,
    gate: Gate,
) -> Option<Established>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let connect_timeout = Duration::from_secs(conn.node.config.mqtt.connect_timeout);
    // The rare and the one-off waits are boxed so that the task's own state (what an idle
    // connection keeps) holds only the read loop.
    let connect = match Box::pin(timeout(connect_timeout, conn.read_packet())).await {
        Err(_) => {
            debug!(conn.log(), "no CONNECT within connect_timeout");
            return None;
        }
        Ok(Ok(Packet::Connect(connect))) => *connect,
        Ok(Ok(_)) => {
            warn!(conn.log(), "[MQTT-3.1.0-1] first packet is not CONNECT");
            return None;
        }
        Ok(Err(ReadError::Decode(DecodeError::UnsupportedProtocol { name, level }))) => {
            info!(conn.log(), "unsupported protocol"; "name" => name, "level" => level);
            // The level is unknown, so the 3.1.1 form is the one every client can read
            // ([MQTT-3.1.2-2]); an MQTT 5 client never gets here.
            let code = connack_v3::UNACCEPTABLE_PROTOCOL;
            let refusal = Packet::ConnAck(connect::refused(Protocol::V311, code, code));
            Box::pin(write_last(
                writer,
                Some(refusal),
                Protocol::V311,
                &conn.log(),
            ))
            .await;
            return None;
        }
        Ok(Err(ReadError::Decode(e))) => {
            warn!(conn.log(), "malformed CONNECT"; "error" => %e);
            return None;
        }
        Ok(Err(ReadError::Eof)) => return None,
        Ok(Err(ReadError::Io(e))) => {
            debug!(conn.log(), "read failed before CONNECT"; "error" => %e);
            return None;
        }
    };
    conn.protocol = connect.protocol;
    // Boxed: the password check's state must not stay in every idle connection's task.
    let principal = match Box::pin(connect::authenticate(
        &gate,
        &connect,
        connect_timeout,
        &conn.log(),
    ))
    .await
    {
        Ok(principal) => principal,
        Err(refusal) => {
            let refusal = Some(Packet::ConnAck(refusal));
            Box::pin(write_last(writer, refusal, conn.protocol, &conn.log())).await;
            return None;
        }
    };
    let metrics = conn.node.metrics.clone();
    if !metrics.try_open_connection(conn.node.config.mqtt.max_connections) {
        warn!(conn.log(), "connection refused: max_connections reached");
        let refusal = connect::refused(
            conn.protocol,
            connack_v3::SERVER_UNAVAILABLE,
            reason::SERVER_BUSY,
        );
        Box::pin(write_last(
            writer,
            Some(Packet::ConnAck(refusal)),
            conn.protocol,
            &conn.log(),
        ))
        .await;
        return None;
    }
    // Boxed: the handshake's state is large and must not stay in every idle connection's task.
    let established = match Box::pin(conn.establish(connect, principal)).await {
        Ok(established) => established,
        Err(refusal) => {
            Box::pin(write_last(
                writer,
                refusal.map(Packet::ConnAck),
                conn.protocol,
                &conn.log(),
            ))
            .await;
            Metrics::sub(&metrics.connections, 1);
            return None;
        }
    };
    Some(established)
}

impl<R: AsyncRead + Unpin> Connection<R> {
    /// A connection reading from `reader` with a small empty buffer.
    fn new(
        reader: R,
        node: Arc<Node>,
        peer: SocketAddr,
        epoch: Epoch,
        protocol: Protocol,
        last_packet: Instant,
    ) -> Self {
        Connection {
            reader,
            buf: BytesMut::with_capacity(IDLE_READ_BUFFER),
            busy: false,
            node,
            peer,
            epoch,
            protocol,
            last_packet,
        }
    }

    /// Takes the socket's reading half and the node out; the rest, with `established`, is
    /// what the connection keeps while it is parked (the read buffer is empty and goes; the
    /// epoch and protocol are in the link, the client id in the `Direct`, and the peer
    /// address in the socket).
    fn into_idle(self, established: Established) -> (R, Arc<Node>, Idle) {
        let Established {
            session,
            direct,
            end,
            keep_alive,
            expiry_was_zero,
            ..
        } = established;
        // At most 65,535 s x 1.5 (`connect::keep_alive`): well below the flag bit.
        let keep_alive = keep_alive.map_or(0, |ka| {
            u32::try_from(ka.as_millis())
                .map_or(EXPIRY_WAS_ZERO - 1, |ms| ms.clamp(1, EXPIRY_WAS_ZERO - 1))
        });
        let idle = Idle {
            session,
            direct,
            end,
            last_packet: Stamp::of(self.last_packet).0,
            keep_alive: keep_alive | if expiry_was_zero { EXPIRY_WAS_ZERO } else { 0 },
        };
        (self.reader, self.node, idle)
    }

    /// The connection's logger, built when something is logged (an idle connection keeps
    /// none).
    fn log(&self) -> Logger {
        connection_log(&self.node, self.peer, self.epoch)
    }

    /// Reads until one packet is decoded.
    async fn read_packet(&mut self) -> Result<Packet, ReadError> {
        let max = self.node.config.mqtt.max_packet_size;
        loop {
            match codec::decode(&mut self.buf, self.protocol, max) {
                Ok(Some(packet)) => return Ok(packet),
                Ok(None) => {}
                Err(e) => return Err(ReadError::Decode(e)),
            }
            self.reserve();
            let free = self.buf.capacity() - self.buf.len();
            match self.reader.read_buf(&mut self.buf).await {
                Ok(0) => return Err(ReadError::Eof),
                Ok(n) => self.busy = n == free,
                Err(e) => return Err(ReadError::Io(e)),
            }
        }
    }

    /// Validates the CONNECT, opens and attaches the session. `Err` carries the CONNACK
    /// refusal to send, or `None` to close without one.
    async fn establish(
        &mut self,
        connect: codec::Connect,
        principal: Principal,
    ) -> Result<Established, Option<codec::ConnAck>> {
        let protocol = connect.protocol;
        let config = self.node.config.clone();
        let Some(identity) = connect::identity(&connect) else {
            info!(
                self.log(),
                "[MQTT-3.1.3-8] empty client id without clean session refused"
            );
            return Err(Some(connect::refused(
                protocol,
                connack_v3::IDENTIFIER_REJECTED,
                reason::CLIENT_IDENTIFIER_NOT_VALID,
            )));
        };
        if let Some(will) = &connect.will {
            let mqtt = &config.mqtt;
            if let Err(e) =
                validate_topic_name(&will.topic, mqtt.max_topic_length, mqtt.max_topic_levels)
            {
                warn!(self.log(), "[MQTT-3.1.3-11] invalid will topic"; "error" => %e);
                return Err((protocol == Protocol::V5)
                    .then(|| connect::refused(protocol, 0, reason::TOPIC_NAME_INVALID)));
            }
        }
        let keep_alive = connect::keep_alive(&connect, config.mqtt.valid_keep_alive);
        let expiry = connect::session_expiry(&connect, config.session.max_age);
        let client_id = identity.id().clone();
        let permissions = connect::authorize(&principal, &client_id, &connect, &self.log())
            .map_err(|refusal| Some(*refusal))?;
        let options = AttachOptions {
            will: connect.will,
            expiry,
            receive_maximum: connect.properties.receive_maximum,
            max_packet_size: connect.properties.maximum_packet_size,
            permissions,
        };
        for _ in 0..ATTACH_ATTEMPTS {
            let opened = self
                .node
                .registry
                .send(OpenSession {
                    client_id: client_id.clone(),
                    clean_start: connect.clean_start,
                    persistent: !expiry.is_zero(),
                    arbiter: actix_rt::Arbiter::current(),
                    owner: principal.owner(),
                })
                .await;
            let opened = match opened {
                Ok(Ok(opened)) => opened,
                Ok(Err(OpenSessionError::IdentifierIsTopic)) => {
                    info!(self.log(), "client id refused: it is a subscribed topic name";
                        "client_id" => %client_id);
                    return Err(Some(connect::refused(
                        protocol,
                        connack_v3::IDENTIFIER_REJECTED,
                        reason::CLIENT_IDENTIFIER_NOT_VALID,
                    )));
                }
                Ok(Err(OpenSessionError::NotOwner)) => {
                    warn!(self.log(), "takeover refused: client id belongs to another user";
                        "client_id" => %client_id, "username" => principal.username().unwrap_or(""));
                    return Err(Some(connect::not_owner(protocol)));
                }
                Ok(Err(OpenSessionError::RegistryStopped)) | Err(_) => break,
            };
            let (link, end) = link::link(self.epoch, protocol, link::LINK_CAPACITY);
            let connack =
                connect::accepted(protocol, opened.present, &keep_alive, &identity, &config);
            // The link is new and empty, so the CONNACK always fits; it precedes anything
            // the session sends once attached.
            if end
                .try_send(Outbound::packet(Packet::ConnAck(connack)))
                .is_err()
            {
                break;
            }
            let attach = Attach {
                link,
                options: options.clone(),
            };
            if let Ok(Ok(direct)) = opened.session.send(attach).await {
                info!(self.log(), "client connected";
                    "client_id" => %client_id, "protocol" => protocol.level(),
                    "clean_start" => connect.clean_start, "session_present" => opened.present,
                    "keep_alive" => connect.keep_alive);
                return Ok(Established {
                    session: opened.session,
                    direct,
                    end,
                    keep_alive: keep_alive.timeout,
                    expiry_was_zero: connect.properties.session_expiry_interval.unwrap_or(0) == 0,
                });
            }
        }
        warn!(self.log(), "no session could be attached"; "client_id" => %client_id);
        Err(Some(connect::refused(
            protocol,
            connack_v3::SERVER_UNAVAILABLE,
            reason::SERVER_UNAVAILABLE,
        )))
    }

    /// The read loop of an attached connection. A `parkable` one ends with [`Exit::Idle`]
    /// once nothing was read or written for `mqtt.park_after_ms` (checked by the same timer
    /// as the keep-alive: at most 1.25 times that after the last write).
    async fn run(
        &mut self,
        established: &Established,
        pipeline: &Arc<Semaphore>,
        parkable: bool,
    ) -> Exit {
        let Established {
            session,
            direct,
            end,
            keep_alive,
            expiry_was_zero,
            ..
        } = established;
        let (keep_alive, expiry_was_zero) = (*keep_alive, *expiry_was_zero);
        let max = self.node.config.mqtt.max_packet_size;
        let park_after = match self.node.config.mqtt.park_after_ms {
            0 => None,
            ms => parkable.then(|| Duration::from_millis(ms)),
        };
        // One timer for the keep-alive and the idle check; never polled without either.
        let armed = keep_alive.is_some() || park_after.is_some();
        // Writes are seen when the timer fires: while they go on, it fires every quarter of
        // `park_after`, so a connection parks at most 1.25 x `park_after` after its last
        // write (exactly that long after its last read).
        let mut last_active = Instant::now();
        let mut writing = true;
        let idle = sleep_until(self.next_check(keep_alive, park_after, last_active, writing));
        tokio::pin!(idle);
        loop {
            // `last_packet` is read once per batch of packets. The timer is not moved for
            // each: when it fires, it is set again from `last_packet` unless that has
            // passed.
            let mut fresh = true;
            loop {
                // The decoded packet (over 400 bytes) must not live across an await, or
                // every connection's task would keep room for it: the step is computed in
                // its own statement.
                let step = match codec::decode(&mut self.buf, self.protocol, max) {
                    Ok(Some(packet)) => {
                        if std::mem::take(&mut fresh) && armed {
                            self.last_packet = Instant::now();
                        }
                        self.dispatch(packet, session, direct, end, pipeline, expiry_was_zero)
                    }
                    Ok(None) => break,
                    Err(e) => return Exit::from_decode(e),
                };
                match step {
                    Step::Next => {}
                    Step::Exit(exit) => return exit,
                    Step::Wait(wait) => {
                        if let Some(exit) = wait.await {
                            return exit;
                        }
                    }
                }
            }
            self.reserve();
            let free = self.buf.capacity() - self.buf.len();
            tokio::select! {
                biased;
                signal = end.signal() => return closed(signal),
                _ = &mut idle, if armed => {
                    let now = Instant::now();
                    if keep_alive.is_some_and(|ka| self.last_packet + ka <= now) {
                        return Exit::KeepAliveTimeout;
                    }
                    if let Some(after) = park_after {
                        let busy = end.take_activity()
                            || !self.buf.is_empty()
                            || pipeline.available_permits() < PIPELINE
                            || end.buffered() > 0;
                        writing = busy;
                        if busy {
                            last_active = now;
                        } else if self.last_packet.max(last_active) + after <= now {
                            return Exit::Idle;
                        }
                    }
                    let next = self.next_check(keep_alive, park_after, last_active, writing);
                    idle.as_mut().reset(next);
                }
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) => return Exit::Lost("closed by peer".into()),
                    Ok(n) => self.busy = n == free,
                    Err(e) => return Exit::Lost(e.to_string()),
                },
            }
        }
    }

    /// When the read loop's timer fires next: at the keep-alive deadline, or earlier for
    /// the idle check (soon while the connection is `writing`).
    fn next_check(
        &self,
        keep_alive: Option<Duration>,
        park_after: Option<Duration>,
        last_active: Instant,
        writing: bool,
    ) -> Instant {
        let keep_alive = keep_alive.map(|ka| self.last_packet + ka);
        let park = park_after.map(|after| match writing {
            true => last_active + after / 4,
            false => self.last_packet.max(last_active) + after,
        });
        match (keep_alive, park) {
            (Some(a), Some(b)) => a.min(b),
            (Some(t), None) | (None, Some(t)) => t,
            (None, None) => last_active + Duration::from_secs(3600),
        }
    }

    /// Handles one packet of an attached connection. Most packets are handed over at once;
    /// the rare waits (a full pipeline or mailbox, SUBSCRIBE) are boxed, so the task's own
    /// state (what every idle connection keeps) does not hold them.
    fn dispatch<'a>(
        &self,
        packet: Packet,
        session: &'a SessionRef,
        direct: &Direct,
        end: &'a LinkEnd,
        pipeline: &'a Arc<Semaphore>,
        expiry_was_zero: bool,
    ) -> Step<'a> {
        let epoch = self.epoch;
        let metrics = &self.node.metrics;
        match packet {
            Packet::PingReq => match end.try_send(Outbound::PingResp) {
                Ok(()) => Step::Next,
                Err(SendError::Closed) => Step::Exit(Exit::SessionGone),
                // A client that pings without reading waits for room like any producer.
                Err(SendError::Full(_)) => Step::Wait(Box::pin(async move {
                    tokio::select! {
                        biased;
                        signal = end.signal() => Some(closed(signal)),
                        sent = end.send(Outbound::PingResp) => sent.err().map(|_| Exit::SessionGone),
                    }
                })),
            },
            Packet::Disconnect(d) => {
                let v5 = self.protocol == Protocol::V5;
                let session_expiry = d.properties.session_expiry_interval;
                if v5 && expiry_was_zero && session_expiry.is_some_and(|s| s > 0) {
                    return Step::Exit(Exit::Violation {
                        reason: reason::PROTOCOL_ERROR,
                        what: "[MQTT-3.14.2-2] session expiry set on DISCONNECT after 0 on CONNECT"
                            .into(),
                    });
                }
                Step::Exit(Exit::Disconnect {
                    will: v5 && d.reason == reason::DISCONNECT_WITH_WILL,
                    session_expiry,
                })
            }
            Packet::Connect(_) => Step::Exit(Exit::Violation {
                reason: reason::PROTOCOL_ERROR,
                what: "[MQTT-3.1.0-2] second CONNECT".into(),
            }),
            Packet::Auth(_) => Step::Exit(Exit::Violation {
                reason: reason::PROTOCOL_ERROR,
                what: "[MQTT-4.12.0-1] AUTH without an authentication method".into(),
            }),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Step::Exit(Exit::Violation {
                    reason: reason::PROTOCOL_ERROR,
                    what: "server-to-client packet sent by a client".into(),
                })
            }
            packet @ (Packet::Subscribe(_) | Packet::Unsubscribe(_)) => {
                // Waited for: the session answers after the Registry did.
                Step::Wait(Box::pin(async move {
                    let handled = session.send(Inbound { epoch, packet });
                    tokio::select! {
                        biased;
                        signal = end.signal() => Some(closed(signal)),
                        result = handled => inbound_result(result),
                    }
                }))
            }
            // A subscriber acknowledging a message: usually nothing but the outbox changes,
            // so the session actor is not involved.
            Packet::PubAck(ack) if direct.try_release(epoch, ack.packet_id, false, metrics) => {
                Step::Next
            }
            Packet::PubComp(comp) if direct.try_release(epoch, comp.packet_id, true, metrics) => {
                Step::Next
            }
            packet @ (Packet::Publish(_)
            | Packet::PubAck(_)
            | Packet::PubRec(_)
            | Packet::PubRel(_)
            | Packet::PubComp(_)) => {
                if matches!(packet, Packet::Publish(_)) {
                    Metrics::incr(&self.node.metrics.publish_in);
                }
                // Handed over without waiting for the session, within the pipeline's slots:
                // the client's next packet is decoded and sent while this one is handled.
                let slots = pipeline_slots(&packet);
                let Ok(permit) = pipeline.clone().try_acquire_many_owned(slots) else {
                    return Step::Wait(Box::pin(async move {
                        let permit = tokio::select! {
                            biased;
                            signal = end.signal() => return Some(closed(signal)),
                            permit = pipeline.clone().acquire_many_owned(slots) => match permit {
                                Ok(permit) => permit,
                                Err(_) => return Some(Exit::SessionGone),
                            },
                        };
                        pipe(
                            session,
                            end,
                            Piped {
                                inbound: Inbound { epoch, packet },
                                permit,
                            },
                        )
                        .await
                    }));
                };
                let piped = Piped {
                    inbound: Inbound { epoch, packet },
                    permit,
                };
                match session.try_send(piped) {
                    Ok(()) => Step::Next,
                    Err(actix::prelude::SendError::Closed(_)) => Step::Exit(Exit::SessionGone),
                    Err(actix::prelude::SendError::Full(piped)) => {
                        Step::Wait(Box::pin(pipe(session, end, piped)))
                    }
                }
            }
        }
    }

    /// Makes room for the next read: a busy connection reads up to [`READ_CHUNK`] at a
    /// time, a quiet one with an empty buffer keeps only `IDLE_READ_BUFFER` (64) bytes.
    fn reserve(&mut self) {
        let free = self.buf.capacity() - self.buf.len();
        if self.buf.is_empty() && !self.busy {
            if self.buf.capacity() > IDLE_READ_BUFFER {
                self.buf = BytesMut::with_capacity(IDLE_READ_BUFFER);
            }
        } else if self.busy && free < READ_CHUNK / 4 {
            self.buf.reserve(READ_CHUNK);
        } else if free == 0 {
            // A packet larger than the buffer is still arriving.
            self.buf.reserve(self.buf.len().max(IDLE_READ_BUFFER));
        }
    }

    fn log_exit(&self, client_id: &ClientId, exit: &Exit) {
        let log = self.log().new(o!("client_id" => client_id.to_string()));
        match exit {
            Exit::Disconnect { .. } => info!(log, "client disconnected"),
            Exit::Lost(why) => info!(log, "connection lost"; "reason" => why),
            Exit::WriteFailed => info!(log, "connection lost"; "reason" => "write failed"),
            Exit::KeepAliveTimeout => info!(log, "keep-alive timeout"),
            Exit::Violation { reason, what } => {
                warn!(log, "protocol error, closing"; "reason" => reason, "error" => what)
            }
            Exit::Closed(why) => info!(log, "connection closed by the session"; "why" => ?why),
            Exit::SessionGone => info!(log, "session ended, closing"),
            Exit::Idle => debug!(log, "idle"),
        }
    }
}

/// The logger of one connection (built when something is logged).
fn connection_log(node: &Node, peer: SocketAddr, epoch: Epoch) -> Logger {
    node.log
        .new(o!("peer" => peer.to_string(), "connection" => epoch.to_string()))
}

/// What is left to do for one packet of an attached connection.
enum Step<'a> {
    /// Handled; go on with the next one.
    Next,
    /// The connection ends.
    Exit(Exit),
    /// Handled once this is done (`Some` ends the connection).
    Wait(Pin<Box<dyn Future<Output = Option<Exit>> + Send + 'a>>),
}

/// Hands a piped packet to the session, waiting for room in its mailbox: everything before
/// it is in the mailbox already, so waiting keeps the order.
/// Pipeline slots `packet` takes: one, and for a PUBLISH one more per KiB of payload, up to
/// all of them.
fn pipeline_slots(packet: &Packet) -> u32 {
    let extra = match packet {
        Packet::Publish(p) => p.payload.len() / 1024,
        _ => 0,
    };
    (1 + extra).min(PIPELINE) as u32
}

async fn pipe(session: &SessionRef, end: &LinkEnd, piped: Piped) -> Option<Exit> {
    match session.try_send(piped) {
        Ok(()) => None,
        Err(actix::prelude::SendError::Closed(_)) => Some(Exit::SessionGone),
        Err(actix::prelude::SendError::Full(piped)) => tokio::select! {
            biased;
            signal = end.signal() => Some(closed(signal)),
            sent = session.send(piped) => sent.err().map(|_| Exit::SessionGone),
        },
    }
}

/// The exit for the session's answer to a packet the connection waited for.
fn inbound_result(result: Result<Result<(), InboundError>, MailboxError>) -> Option<Exit> {
    match result {
        Ok(Ok(())) => None,
        Ok(Err(InboundError::Stale)) => Some(Exit::Closed(CloseReason::TakenOver)),
        Ok(Err(InboundError::Violation { reason, what })) => Some(Exit::Violation {
            reason,
            what: what.into(),
        }),
        Err(_) => Some(Exit::SessionGone),
    }
}

/// The exit for a close signal: the reason the session gave, or its disappearance.
fn closed(signal: Signal) -> Exit {
    match signal {
        Signal::Close(CloseReason::Violation { reason, what }) => Exit::Violation {
            reason,
            what: what.into(),
        },
        Signal::Close(reason) => Exit::Closed(reason),
        Signal::SessionGone => Exit::SessionGone,
    }
}

/// Writes one last packet (if any) and shuts the writer down, within [`FINAL_WRITE`].
async fn write_last<W: AsyncWrite + Unpin>(
    writer: &mut W,
    packet: Option<Packet>,
    protocol: Protocol,
    log: &Logger,
) {
    let mut out = BytesMut::new();
    if let Some(packet) = packet {
        encode(&packet, protocol, &mut out, log);
    }
    write_final(writer, out).await;
}

/// Writes the last bytes (if any) and shuts the writer down, within [`FINAL_WRITE`].
async fn write_final<W: AsyncWrite + Unpin>(writer: &mut W, out: BytesMut) {
    let _ = timeout(FINAL_WRITE, async {
        if !out.is_empty() {
            writer.write_all(&out).await?;
        }
        writer.shutdown().await
    })
    .await;
}

/// Appends one packet; a packet that cannot be encoded is logged and skipped.
fn encode(packet: &Packet, protocol: Protocol, out: &mut BytesMut, log: &Logger) {
    let mark = out.len();
    if let Err(e) = codec::encode(packet, protocol, out) {
        out.truncate(mark);
        warn!(log, "packet not encodable, skipped"; "error" => %e);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::testing::{next, node, nothing};
    use crate::codec::{Connect, Publish, QoS};
    use tokio::io::DuplexStream;

    /// Serves one in-memory connection on `node`; returns the client's end.
    fn client(node: &Node) -> DuplexStream {
        let (client, server) = tokio::io::duplex(1 << 20);
        let (reader, writer) = tokio::io::split(server);
        let (peer, gate) = loopback(node);
        actix_rt::spawn(serve(
            reader,
            writer,
            peer,
            Arc::new(node.clone()),
            gate,
            None,
        ));
        client
    }

    /// A loopback peer and the gate the default security admits it with.
    fn loopback(node: &Node) -> (SocketAddr, Gate) {
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let security = Arc::new(
            crate::auth::Security::new(&node.config.auth).expect("default [auth] is valid"),
        );
        let gate = security
            .admit(peer)
            .expect("loopback is allowed by default");
        (peer, gate)
    }

    fn bytes(packets: &[Packet]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for p in packets {
            codec::encode(p, Protocol::V311, &mut out).unwrap();
        }
        out.to_vec()
    }

    fn connect(id: &str) -> Packet {
        Packet::Connect(Box::new(Connect {
            protocol: Protocol::V311,
            client_id: id.into(),
            clean_start: true,
            keep_alive: 60,
            ..Default::default()
        }))
    }

    fn publish(topic: &str, qos: QoS, i: u16) -> Packet {
        Packet::Publish(Publish {
            qos,
            topic: topic.into(),
            packet_id: (qos > QoS::AtMostOnce).then_some(i),
            payload: i.to_be_bytes().to_vec().into(),
            ..Default::default()
        })
    }

    /// Reads packets from the client's end until `n` were decoded or the stream ended.
    async fn read(client: &mut DuplexStream, n: usize) -> Vec<Packet> {
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        while out.len() < n {
            while let Some(p) = codec::decode(&mut buf, Protocol::V311, 1 << 20).unwrap() {
                out.push(p);
            }
            if out.len() >= n {
                break;
            }
            match timeout(Duration::from_secs(2), client.read_buf(&mut buf)).await {
                Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
                Ok(Ok(_)) => {}
            }
        }
        out
    }

    async fn subscriber(node: &Node, filter: &str) -> LinkEnd {
        crate::actors::testing::subscribe(node, "sub", filter, QoS::AtMostOnce)
            .await
            .2
    }

    #[actix_rt::test]
    async fn an_active_connection_is_one_small_task() {
        let node = node();
        let (_client, server) = tokio::io::duplex(64);
        let (reader, writer) = tokio::io::split(server);
        let (peer, gate) = loopback(&node);
        let task = serve(reader, writer, peer, Arc::new(node.clone()), gate, None);
        let size = std::mem::size_of_val(&task);
        eprintln!("connection future: {size} bytes");
        eprintln!(
            "idle (parked) {} established {} session {} client id {}",
            std::mem::size_of::<Idle>(),
            std::mem::size_of::<Established>(),
            std::mem::size_of::<SessionRef>(),
            std::mem::size_of::<ClientId>(),
        );
        eprintln!(
            "packet {} node {} sleep {} connect {} established {} exit {} logger {} reader {} writer {}",
            std::mem::size_of::<Packet>(),
            std::mem::size_of::<Node>(),
            std::mem::size_of::<tokio::time::Sleep>(),
            std::mem::size_of::<codec::Connect>(),
            std::mem::size_of::<Established>(),
            std::mem::size_of::<Exit>(),
            std::mem::size_of::<Logger>(),
            std::mem::size_of::<tokio::io::ReadHalf<DuplexStream>>(),
            std::mem::size_of::<tokio::io::WriteHalf<DuplexStream>>(),
        );
        // The parts of an attached connection's state.
        let (session, _, end) =
            crate::actors::testing::attach(&node, "sizes", true, Default::default()).await;
        let (reader, writer) = tokio::io::split(tokio::io::duplex(64).1);
        let mut conn = Connection {
            reader,
            buf: BytesMut::new(),
            busy: false,
            node: Arc::new(node.clone()),
            peer,
            epoch: Epoch::next(),
            protocol: Protocol::V311,
            last_packet: Instant::now(),
        };
        let pipeline = Arc::new(Semaphore::new(PIPELINE));
        let mut outflow = Outflow {
            writer,
            out: BytesMut::new(),
            written: 0,
            lingered: false,
        };
        let conn_size = std::mem::size_of_val(&conn);
        let direct = Direct::new(
            ClientId::from("sizes"),
            None,
            crate::actors::outbox::Outbox::new(crate::actors::outbox::Limits {
                max_messages: 1,
                max_bytes: 1,
                max_inflight: 1,
            }),
        );
        let established = Established {
            session,
            direct: Arc::new(direct),
            end,
            keep_alive: None,
            expiry_was_zero: false,
        };
        let run = conn.run(&established, &pipeline, false);
        let run_size = std::mem::size_of_val(&run);
        let run = pin!(run);
        let beside = outflow.beside(&established.end, run);
        eprintln!(
            "connection {conn_size} run {run_size} beside {}",
            std::mem::size_of_val(&beside)
        );
        // An active connection's task. An idle one parks (plain TCP) and keeps no task.
        let limit = 1024;
        assert!(size <= limit, "connection future is {size} bytes");
    }

    #[actix_rt::test]
    async fn a_parked_connection_comes_back_as_it_left() {
        let node = node();
        let (session, _, end) =
            crate::actors::testing::attach(&node, "parks", true, Default::default()).await;
        let epoch = end.epoch();
        let direct = Direct::new(
            ClientId::from("parks"),
            None,
            crate::actors::outbox::Outbox::new(crate::actors::outbox::Limits {
                max_messages: 1,
                max_bytes: 1,
                max_inflight: 1,
            }),
        );
        let mut established = Established {
            session,
            direct: Arc::new(direct),
            end,
            keep_alive: Some(Duration::from_millis(1500)),
            expiry_was_zero: true,
        };
        let (peer, _) = loopback(&node);
        let node = Arc::new(node);
        let left = Instant::now() - Duration::from_millis(700);
        for keep_alive in [Some(Duration::from_millis(1500)), None] {
            established.keep_alive = keep_alive;
            established.expiry_was_zero = keep_alive.is_some();
            let (reader, _) = tokio::io::split(tokio::io::duplex(64).1);
            let conn = Connection::new(reader, node.clone(), peer, epoch, Protocol::V311, left);
            let (_, _, idle) = conn.into_idle(established);
            let after = |ms| Stamp::of(left + Duration::from_millis(ms));
            assert!(!idle.expired(after(1500)));
            assert_eq!(idle.expired(after(1502)), keep_alive.is_some());
            let (back, last_packet) = idle.wake_up(left + Duration::from_millis(900));
            assert_eq!(back.keep_alive, keep_alive);
            assert_eq!(back.expiry_was_zero, keep_alive.is_some());
            assert_eq!(back.direct.client_id(), &ClientId::from("parks"));
            assert_eq!(back.end.epoch(), epoch);
            assert_eq!(back.end.protocol(), Protocol::V311);
            assert!(
                last_packet >= left && last_packet <= left + Duration::from_millis(2),
                "last packet moved by {:?}",
                last_packet.saturating_duration_since(left)
            );
            established = back;
        }
    }

    #[actix_rt::test]
    async fn piped_publishes_keep_their_order_and_acks() {
        publishes_keep_their_order_and_acks("t", "t").await;
    }

    #[test]
    fn a_large_publish_takes_more_pipeline_slots() {
        let sized = |len: usize| {
            let mut p = publish("t", QoS::AtLeastOnce, 1);
            if let Packet::Publish(p) = &mut p {
                p.payload = vec![0; len].into();
            }
            pipeline_slots(&p)
        };
        assert_eq!(sized(0), 1);
        assert_eq!(sized(1023), 1);
        assert_eq!(sized(4096), 5);
        assert_eq!(sized(100 << 20), PIPELINE as u32, "at most all of them");
        assert_eq!(pipeline_slots(&Packet::PubAck(codec::PubResp::new(1))), 1);
    }

    #[actix_rt::test]
    async fn publishes_held_behind_a_starting_topic_keep_their_order_and_acks() {
        // No Topic serves "t/x" until the first publish starts it: that publish's routing
        // waits, and the ones after it are held, then routed together.
        publishes_keep_their_order_and_acks("t/+", "t/x").await;
    }

    async fn publishes_keep_their_order_and_acks(filter: &str, topic: &str) {
        let node = node();
        let mut end = subscriber(&node, filter).await;
        let mut client = client(&node);
        // One write: more publishes than the pipeline has slots, acknowledged in order.
        let n = 3 * PIPELINE as u16;
        let mut packets = vec![connect("pub")];
        packets.extend((1..=n).map(|i| publish(topic, QoS::AtLeastOnce, i)));
        client.write_all(&bytes(&packets)).await.unwrap();
        let got = read(&mut client, 1 + usize::from(n)).await;
        assert!(matches!(got[0], Packet::ConnAck(_)));
        let acks: Vec<u16> = got[1..]
            .iter()
            .map(|p| match p {
                Packet::PubAck(a) => a.packet_id,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(acks, (1..=n).collect::<Vec<_>>());
        for i in 1..=n {
            match next(&mut end).await {
                Packet::Publish(p) => assert_eq!(p.payload.as_ref(), i.to_be_bytes()),
                other => panic!("{other:?}"),
            }
        }
    }

    #[actix_rt::test]
    async fn a_piped_violation_closes_and_later_packets_are_ignored() {
        let node = node();
        let mut end = subscriber(&node, "#").await;
        let mut client = client(&node);
        // Well formed, but deeper than `mqtt.max_topic_levels`: the session refuses it.
        let deep = vec!["x"; node.config.mqtt.max_topic_levels + 1].join("/");
        let packets = [
            connect("pub"),
            publish("ok", QoS::AtMostOnce, 1),
            publish(&deep, QoS::AtMostOnce, 2),
            publish("ok", QoS::AtMostOnce, 3),
            publish("ok", QoS::AtLeastOnce, 4),
        ];
        client.write_all(&bytes(&packets)).await.unwrap();
        let got = read(&mut client, 10).await;
        assert_eq!(got.len(), 1, "only the CONNACK, then the close: {got:?}");
        match next(&mut end).await {
            Packet::Publish(p) => assert_eq!(p.payload.as_ref(), 1u16.to_be_bytes()),
            other => panic!("{other:?}"),
        }
        nothing(&mut end).await;
    }
}
