//! One client connection: the CONNECT handshake, the read loop and the writer task.
//!
//! [`serve`] works on any byte stream split into a reader and a writer, so TCP, TLS and
//! WebSocket connections share it. It reads into a buffer, decodes packets and:
//!
//! - before CONNECT: waits at most `mqtt.connect_timeout` for the first packet, which must
//!   be CONNECT ([MQTT-3.1.0-1]); answers an unsupported protocol with CONNACK 1 / 0x84;
//!   applies `mqtt.max_connections`, the client id rules and keep-alive negotiation; asks
//!   the Registry for the session, puts the CONNACK on the new link and attaches to the
//!   session (which then sends what it kept for the client, after the CONNACK);
//! - after CONNECT: answers PINGREQ itself and forwards every other client packet to the
//!   session. PUBLISH and its acknowledgements are *piped* ([`Piped`]): handed over without
//!   waiting, up to `PIPELINE` (32) not yet fully handled (the publisher's backpressure: a
//!   slot comes back only once the packet's routing is done), so one read's worth of
//!   packets costs the session one wake-up instead of one round trip each; SUBSCRIBE and
//!   UNSUBSCRIBE are waited for. It closes on DISCONNECT, on a protocol violation (MQTT 5:
//!   DISCONNECT with the reason first; the session reports violations in piped packets
//!   through the link's close signal), on 1.5 × keep-alive without a complete packet, or
//!   when the session asks (takeover). Before telling the session it detached, it waits
//!   until every piped packet was handled.
//!
//! Writing is a separate task owning the writer: it takes every packet waiting in the
//! link's bounded channel, encodes them into one buffer and writes it with one call (an
//! MQTT 3.x PUBLISH straight from the shared message, without building a packet).
//!
//! Memory of an idle connection: the read buffer shrinks to `IDLE_READ_BUFFER` (64) bytes
//! once a read did not fill it, the writer keeps at most `IDLE_WRITE_BUFFER` (512) bytes between
//! batches, and the handshake's state is boxed so it does not stay in the task.

use super::connect;
use crate::actors::link::Outbound;
use crate::actors::registry::{OpenSession, OpenSessionError};
use crate::actors::session::{Attach, AttachOptions, Detached, Inbound, InboundError, Piped};
use crate::actors::{link, ClientId, CloseReason, Epoch, LinkEnd, Node, Session};
use crate::auth::{Gate, Principal};
use crate::codec::{
    self, connack_v3, reason, DecodeError, Disconnect, Packet, Properties, Protocol,
};
use crate::metrics::Metrics;
use crate::topic::validate_topic_name;
use actix::{Addr, MailboxError};
use bytes::BytesMut;
use slog::{debug, info, o, warn, Logger};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::{sleep, timeout, Instant};

/// Bytes reserved before each read while the client sends a lot.
const READ_CHUNK: usize = 4096;
/// Read buffer of a quiet connection (a PINGREQ is 2 bytes): an empty buffer larger than this
/// is replaced by one this small unless the last read filled the buffer, so idle
/// connections hold almost nothing; a read that fills it switches back to [`READ_CHUNK`].
const IDLE_READ_BUFFER: usize = 64;
/// Write buffer an idle connection may keep between batches.
const IDLE_WRITE_BUFFER: usize = 512;
/// The writer stops batching once this many bytes are encoded.
const WRITE_BATCH: usize = 64 * 1024;
/// Time allowed for a last packet (CONNACK refusal, DISCONNECT) to be written.
const FINAL_WRITE: Duration = Duration::from_secs(2);
/// PUBLISH and acknowledgement packets handed to the session before the connection waits
/// for the first of them to be handled (see [`Piped`]).
const PIPELINE: usize = 32;
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
            Exit::Closed(_) | Exit::SessionGone => false,
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
            Exit::Disconnect { .. } | Exit::Lost(_) | Exit::WriteFailed => None,
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
    node: Node,
    log: Logger,
    epoch: Epoch,
    protocol: Protocol,
}

/// An attached connection: its session and the transport end of its link.
struct Established {
    client_id: ClientId,
    session: Addr<Session>,
    end: LinkEnd,
    keep_alive: Option<Duration>,
    /// MQTT 5: the CONNECT set no Session Expiry Interval ([MQTT-3.14.2-2]).
    expiry_was_zero: bool,
}

/// What an attached connection hears from its session, and its own way to reply.
struct Signals {
    /// The session's close request (or its disappearance).
    close: watch::Receiver<Option<CloseReason>>,
    /// Replies the connection writes itself (PINGRESP).
    replies: mpsc::Sender<Outbound>,
    /// Pipeline slots: packets handed to the session and not fully handled yet.
    pipeline: Arc<Semaphore>,
}

/// Serves one client connection until it closes. `gate` authenticates its CONNECT.
pub async fn serve<R, W>(reader: R, mut writer: W, peer: SocketAddr, node: Node, gate: Gate)
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + 'static,
{
    let epoch = Epoch::next();
    let log = node
        .log
        .new(o!("peer" => peer.to_string(), "connection" => epoch.to_string()));
    let mut conn = Connection {
        reader,
        buf: BytesMut::with_capacity(IDLE_READ_BUFFER),
        busy: false,
        node,
        log,
        epoch,
        protocol: Protocol::V311,
    };
    let connect_timeout = Duration::from_secs(conn.node.config.mqtt.connect_timeout);
    // The rare and the one-off waits are boxed so that the task's own state (what an idle
    // connection keeps) holds only the read loop.
    let connect = match Box::pin(timeout(connect_timeout, conn.read_packet())).await {
        Err(_) => {
            debug!(conn.log, "no CONNECT within connect_timeout");
            return;
        }
        Ok(Ok(Packet::Connect(connect))) => *connect,
        Ok(Ok(_)) => {
            warn!(conn.log, "[MQTT-3.1.0-1] first packet is not CONNECT");
            return;
        }
        Ok(Err(ReadError::Decode(DecodeError::UnsupportedProtocol { name, level }))) => {
            info!(conn.log, "unsupported protocol"; "name" => name, "level" => level);
            // The level is unknown, so the 3.1.1 form is the one every client can read
            // ([MQTT-3.1.2-2]); an MQTT 5 client never gets here.
            let code = connack_v3::UNACCEPTABLE_PROTOCOL;
            let refusal = Packet::ConnAck(connect::refused(Protocol::V311, code, code));
            Box::pin(write_last(
                &mut writer,
                Some(refusal),
                Protocol::V311,
                &conn.log,
            ))
            .await;
            return;
        }
        Ok(Err(ReadError::Decode(e))) => {
            warn!(conn.log, "malformed CONNECT"; "error" => %e);
            return;
        }
        Ok(Err(ReadError::Eof)) => return,
        Ok(Err(ReadError::Io(e))) => {
            debug!(conn.log, "read failed before CONNECT"; "error" => %e);
            return;
        }
    };
    conn.protocol = connect.protocol;
    // Boxed: the password check's state must not stay in every idle connection's task.
    let principal = match Box::pin(connect::authenticate(
        &gate,
        &connect,
        connect_timeout,
        &conn.log,
    ))
    .await
    {
        Ok(principal) => principal,
        Err(refusal) => {
            let refusal = Some(Packet::ConnAck(refusal));
            Box::pin(write_last(&mut writer, refusal, conn.protocol, &conn.log)).await;
            return;
        }
    };
    let metrics = conn.node.metrics.clone();
    if !metrics.try_open_connection(conn.node.config.mqtt.max_connections) {
        warn!(conn.log, "connection refused: max_connections reached");
        let refusal = connect::refused(
            conn.protocol,
            connack_v3::SERVER_UNAVAILABLE,
            reason::SERVER_BUSY,
        );
        Box::pin(write_last(
            &mut writer,
            Some(Packet::ConnAck(refusal)),
            conn.protocol,
            &conn.log,
        ))
        .await;
        return;
    }
    // Boxed: the handshake's state is large and must not stay in every idle connection's task.
    let established = match Box::pin(conn.establish(connect, principal)).await {
        Ok(established) => established,
        Err(refusal) => {
            Box::pin(write_last(
                &mut writer,
                refusal.map(Packet::ConnAck),
                conn.protocol,
                &conn.log,
            ))
            .await;
            Metrics::sub(&metrics.connections, 1);
            return;
        }
    };
    let Established {
        client_id,
        session,
        end,
        keep_alive,
        expiry_was_zero,
    } = established;
    let LinkEnd {
        packets,
        close,
        replies,
    } = end;
    let mut signals = Signals {
        close,
        replies,
        pipeline: Arc::new(Semaphore::new(PIPELINE)),
    };
    let (finish_tx, finish_rx) = oneshot::channel();
    let mut writer_task = actix_rt::spawn(write_loop(
        writer,
        packets,
        finish_rx,
        conn.protocol,
        conn.log.clone(),
    ));
    let exit = conn
        .run(
            &session,
            &mut signals,
            keep_alive,
            expiry_was_zero,
            &mut writer_task,
        )
        .await;
    let session_expiry = match &exit {
        Exit::Disconnect { session_expiry, .. } => *session_expiry,
        _ => None,
    };
    // Every packet handed over is handled (its routing done) before the session hears that
    // the connection went: a PUBLISH right before DISCONNECT is never cut short.
    let _ = Box::pin(timeout(
        FINAL_WRITE,
        signals.pipeline.acquire_many(PIPELINE as u32),
    ))
    .await;
    session.do_send(Detached {
        epoch,
        publish_will: exit.publishes_will(),
        session_expiry,
    });
    conn.log_exit(&client_id, &exit);
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
        let _ = finish_tx.send(last);
        if Box::pin(timeout(FINAL_WRITE * 2, &mut writer_task))
            .await
            .is_err()
        {
            writer_task.abort();
        }
    }
    Metrics::sub(&metrics.connections, 1);
}

impl<R: AsyncRead + Unpin> Connection<R> {
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
                self.log,
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
                warn!(self.log, "[MQTT-3.1.3-11] invalid will topic"; "error" => %e);
                return Err((protocol == Protocol::V5)
                    .then(|| connect::refused(protocol, 0, reason::TOPIC_NAME_INVALID)));
            }
        }
        let keep_alive = connect::keep_alive(&connect, config.mqtt.valid_keep_alive);
        let expiry = connect::session_expiry(&connect, config.session.max_age);
        let client_id = identity.id().clone();
        let permissions = connect::authorize(&principal, &client_id, &connect, &self.log)
            .map_err(|refusal| Some(*refusal))?;
        let options = AttachOptions {
            will: connect.will,
            expiry,
            receive_maximum: connect.properties.receive_maximum,
            max_packet_size: connect.properties.maximum_packet_size,
            permissions,
            owner: principal.owner(),
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
                    info!(self.log, "client id refused: it is a subscribed topic name";
                        "client_id" => %client_id);
                    return Err(Some(connect::refused(
                        protocol,
                        connack_v3::IDENTIFIER_REJECTED,
                        reason::CLIENT_IDENTIFIER_NOT_VALID,
                    )));
                }
                Ok(Err(OpenSessionError::NotOwner)) => {
                    warn!(self.log, "takeover refused: client id belongs to another user";
                        "client_id" => %client_id, "username" => principal.username().unwrap_or(""));
                    return Err(Some(connect::not_owner(protocol)));
                }
                Err(_) => break,
            };
            let (link, end) = link::link(self.epoch, protocol, link::LINK_CAPACITY);
            let connack =
                connect::accepted(protocol, opened.present, &keep_alive, &identity, &config);
            // The channel is new and empty, so the CONNACK always fits; it precedes anything
            // the session sends once attached.
            if end
                .replies
                .try_send(Outbound::packet(Packet::ConnAck(connack)))
                .is_err()
            {
                break;
            }
            let attach = Attach {
                link,
                options: options.clone(),
            };
            if let Ok(Ok(())) = opened.session.send(attach).await {
                info!(self.log, "client connected";
                    "client_id" => %client_id, "protocol" => protocol.level(),
                    "clean_start" => connect.clean_start, "session_present" => opened.present,
                    "keep_alive" => connect.keep_alive);
                return Ok(Established {
                    client_id,
                    session: opened.session,
                    end,
                    keep_alive: keep_alive.timeout,
                    expiry_was_zero: connect.properties.session_expiry_interval.unwrap_or(0) == 0,
                });
            }
        }
        warn!(self.log, "no session could be attached"; "client_id" => %client_id);
        Err(Some(connect::refused(
            protocol,
            connack_v3::SERVER_UNAVAILABLE,
            reason::SERVER_UNAVAILABLE,
        )))
    }

    /// The read loop of an attached connection.
    async fn run(
        &mut self,
        session: &Addr<Session>,
        end: &mut Signals,
        keep_alive: Option<Duration>,
        expiry_was_zero: bool,
        writer: &mut JoinHandle<()>,
    ) -> Exit {
        let max = self.node.config.mqtt.max_packet_size;
        // Disabled (keep_alive None) the timer is never polled.
        let idle = sleep(keep_alive.unwrap_or(Duration::from_secs(3600)));
        tokio::pin!(idle);
        loop {
            loop {
                match codec::decode(&mut self.buf, self.protocol, max) {
                    Ok(Some(packet)) => {
                        // Only complete inbound packets count as activity.
                        if let Some(d) = keep_alive {
                            idle.as_mut().reset(Instant::now() + d);
                        }
                        if let Some(exit) =
                            self.dispatch(packet, session, end, expiry_was_zero).await
                        {
                            return exit;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => return Exit::from_decode(e),
                }
            }
            self.reserve();
            let free = self.buf.capacity() - self.buf.len();
            tokio::select! {
                biased;
                changed = end.close.changed() => return closed(changed, &end.close),
                _ = &mut *writer => return Exit::WriteFailed,
                _ = &mut idle, if keep_alive.is_some() => return Exit::KeepAliveTimeout,
                read = self.reader.read_buf(&mut self.buf) => match read {
                    Ok(0) => return Exit::Lost("closed by peer".into()),
                    Ok(n) => self.busy = n == free,
                    Err(e) => return Exit::Lost(e.to_string()),
                },
            }
        }
    }

    /// Handles one packet of an attached connection; `Some` ends the connection.
    async fn dispatch(
        &mut self,
        packet: Packet,
        session: &Addr<Session>,
        end: &mut Signals,
        expiry_was_zero: bool,
    ) -> Option<Exit> {
        match packet {
            Packet::PingReq => match end.replies.try_send(Outbound::PingResp) {
                Ok(()) => None,
                Err(mpsc::error::TrySendError::Closed(_)) => Some(Exit::SessionGone),
                Err(mpsc::error::TrySendError::Full(_)) => {
                    let sent = Box::pin(end.replies.send(Outbound::PingResp));
                    tokio::select! {
                        biased;
                        changed = end.close.changed() => Some(closed(changed, &end.close)),
                        sent = sent => sent.err().map(|_| Exit::SessionGone),
                    }
                }
            },
            Packet::Disconnect(d) => {
                let v5 = self.protocol == Protocol::V5;
                let session_expiry = d.properties.session_expiry_interval;
                if v5 && expiry_was_zero && session_expiry.is_some_and(|s| s > 0) {
                    return Some(Exit::Violation {
                        reason: reason::PROTOCOL_ERROR,
                        what: "[MQTT-3.14.2-2] session expiry set on DISCONNECT after 0 on CONNECT"
                            .into(),
                    });
                }
                Some(Exit::Disconnect {
                    will: v5 && d.reason == reason::DISCONNECT_WITH_WILL,
                    session_expiry,
                })
            }
            Packet::Connect(_) => Some(Exit::Violation {
                reason: reason::PROTOCOL_ERROR,
                what: "[MQTT-3.1.0-2] second CONNECT".into(),
            }),
            Packet::Auth(_) => Some(Exit::Violation {
                reason: reason::PROTOCOL_ERROR,
                what: "[MQTT-4.12.0-1] AUTH without an authentication method".into(),
            }),
            Packet::ConnAck(_) | Packet::SubAck(_) | Packet::UnsubAck(_) | Packet::PingResp => {
                Some(Exit::Violation {
                    reason: reason::PROTOCOL_ERROR,
                    what: "server-to-client packet sent by a client".into(),
                })
            }
            packet @ (Packet::Subscribe(_) | Packet::Unsubscribe(_)) => {
                // Waited for: the session answers after the Registry did.
                let handled = Box::pin(session.send(Inbound {
                    epoch: self.epoch,
                    packet,
                }));
                tokio::select! {
                    biased;
                    changed = end.close.changed() => Some(closed(changed, &end.close)),
                    result = handled => inbound_result(result),
                }
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
                let permit = match end.pipeline.clone().try_acquire_owned() {
                    Ok(permit) => permit,
                    Err(_) => tokio::select! {
                        biased;
                        changed = end.close.changed() => return Some(closed(changed, &end.close)),
                        permit = Box::pin(end.pipeline.clone().acquire_owned()) => match permit {
                            Ok(permit) => permit,
                            Err(_) => return Some(Exit::SessionGone),
                        },
                    },
                };
                let piped = Piped {
                    inbound: Inbound {
                        epoch: self.epoch,
                        packet,
                    },
                    permit,
                };
                match session.try_send(piped) {
                    Ok(()) => None,
                    Err(actix::prelude::SendError::Closed(_)) => Some(Exit::SessionGone),
                    // Everything before it is in the mailbox already, so waiting for room
                    // keeps the order.
                    Err(actix::prelude::SendError::Full(piped)) => tokio::select! {
                        biased;
                        changed = end.close.changed() => Some(closed(changed, &end.close)),
                        sent = Box::pin(session.send(piped)) => sent.err().map(|_| Exit::SessionGone),
                    },
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
        let log = self.log.new(o!("client_id" => client_id.to_string()));
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
        }
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
fn closed(
    changed: Result<(), watch::error::RecvError>,
    close: &watch::Receiver<Option<CloseReason>>,
) -> Exit {
    match (changed, *close.borrow()) {
        (_, Some(CloseReason::Violation { reason, what })) => Exit::Violation {
            reason,
            what: what.into(),
        },
        (_, Some(reason)) => Exit::Closed(reason),
        (_, None) => Exit::SessionGone,
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

/// The writer task: batches every waiting packet into one buffer and writes it at once.
/// Ends when the connection sends `finish` (with an optional last packet) or on a write
/// error.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut packets: mpsc::Receiver<Outbound>,
    mut finish: oneshot::Receiver<Option<Packet>>,
    protocol: Protocol,
    log: Logger,
) {
    let mut out = BytesMut::new();
    loop {
        tokio::select! {
            biased;
            last = &mut finish => {
                // What the connection queued before it ended (a CONNACK, acknowledgements)
                // goes out first, then the last packet.
                while out.len() < WRITE_BATCH {
                    match packets.try_recv() {
                        Ok(packet) => encode_outbound(packet, protocol, &mut out, &log),
                        Err(_) => break,
                    }
                }
                if let Some(last) = last.ok().flatten() {
                    encode(&last, protocol, &mut out, &log);
                }
                Box::pin(write_final(&mut writer, out)).await;
                return;
            }
            next = packets.recv() => {
                let Some(packet) = next else {
                    Box::pin(write_final(&mut writer, BytesMut::new())).await;
                    return;
                };
                encode_outbound(packet, protocol, &mut out, &log);
                while out.len() < WRITE_BATCH {
                    match packets.try_recv() {
                        Ok(packet) => encode_outbound(packet, protocol, &mut out, &log),
                        Err(_) => break,
                    }
                }
                let written = async {
                    writer.write_all(&out).await?;
                    writer.flush().await
                };
                tokio::select! {
                    biased;
                    // Closing while the client does not read: drop what is unwritten.
                    _ = &mut finish => return,
                    result = written => if let Err(e) = result {
                        debug!(log, "write failed"; "error" => %e);
                        return;
                    },
                }
                out.clear();
                // Nothing more to write: give a large buffer back, an idle connection keeps
                // at most a small one (reused by the next batch, so no allocation churn).
                if out.capacity() > WRITE_BATCH * 2
                    || (out.capacity() > IDLE_WRITE_BUFFER && packets.is_empty())
                {
                    out = BytesMut::new();
                }
            }
        }
    }
}

/// Appends one queued packet. An MQTT 3.x PUBLISH is written straight from the shared
/// message, without building a [`Packet`] (no reference count touched per subscriber).
fn encode_outbound(packet: Outbound, protocol: Protocol, out: &mut BytesMut, log: &Logger) {
    match packet {
        Outbound::Publish {
            message,
            dup,
            packet_id,
        } if protocol != Protocol::V5 => {
            let mark = out.len();
            if let Err(e) = codec::encode_publish_v3(
                message.envelope.topic.as_str(),
                &message.envelope.payload,
                message.qos,
                message.retain,
                dup,
                packet_id,
                out,
            ) {
                out.truncate(mark);
                warn!(log, "packet not encodable, skipped"; "error" => %e);
            }
        }
        packet => encode(&packet.into_packet_for(protocol), protocol, out, log),
    }
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
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let security = Arc::new(
            crate::auth::Security::new(&node.config.auth).expect("default [auth] is valid"),
        );
        let gate = security
            .admit(peer)
            .expect("loopback is allowed by default");
        actix_rt::spawn(serve(reader, writer, peer, node.clone(), gate));
        client
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
    async fn piped_publishes_keep_their_order_and_acks() {
        let node = node();
        let mut end = subscriber(&node, "t").await;
        let mut client = client(&node);
        // One write: more publishes than the pipeline has slots, acknowledged in order.
        let n = 3 * PIPELINE as u16;
        let mut packets = vec![connect("pub")];
        packets.extend((1..=n).map(|i| publish("t", QoS::AtLeastOnce, i)));
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
