//! [`ClientLink`]: how a session writes to whichever connection is attached to it.
//!
//! The transport creates a link per connection with [`link`]: the session side
//! ([`ClientLink`]) is handed to the session in `Attach`, the transport keeps the other end
//! ([`LinkEnd`]). Packets travel through a **bounded** channel to the connection's writer
//! task, so a client that does not read cannot make the broker buffer without limit: when the
//! channel is full the session keeps messages in its own bounded queue and waits for room.
//! A separate close signal lets the session end the connection (takeover, shutdown) even
//! when the packet channel is full. Every link carries the connection's [`Epoch`], so a
//! session can tell a stale connection's messages from the current one's.
//!
//! Nothing here knows about sockets: TCP, TLS and WebSocket connections all use this type.
//!
//! A session also owns a [`Lane`]: the Topics it subscribes to put QoS 0 messages straight
//! on its link through it, without a message to the session actor, while the session has
//! nothing of its own waiting for that link (see [`Lane`] for why order is kept).

use super::outbox::Outgoing;
use crate::codec::{Packet, Protocol, PubResp};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use tokio::sync::{mpsc, watch};

/// Packets a link buffers before the session has to queue on its side.
pub const LINK_CAPACITY: usize = 128;

/// One item for a connection's writer, kept small (a few words) because every
/// connection's channel holds up to [`LINK_CAPACITY`] of them: PUBLISH packets are built
/// from the shared envelope only when written, and rare packets are boxed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// A PUBLISH to the client.
    Publish {
        /// The message, with its delivery QoS, RETAIN flag and subscription identifiers.
        message: Outgoing,
        /// DUP flag.
        dup: bool,
        /// Packet id (QoS 1/2).
        packet_id: Option<u16>,
    },
    /// PUBACK, PUBREC, PUBREL or PUBCOMP.
    Ack {
        /// Which one.
        kind: AckKind,
        /// Its packet id.
        packet_id: u16,
        /// MQTT 5 reason code (0 = success).
        reason: u8,
    },
    /// PINGRESP.
    PingResp,
    /// Any other packet (CONNACK, SUBACK, UNSUBACK, DISCONNECT).
    Other(Box<Packet>),
}

/// The four acknowledgement packets of the PUBLISH flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckKind {
    /// PUBACK (QoS 1).
    PubAck,
    /// PUBREC (QoS 2, step 1).
    PubRec,
    /// PUBREL (QoS 2, step 2).
    PubRel,
    /// PUBCOMP (QoS 2, step 3).
    PubComp,
}

impl Outbound {
    /// An acknowledgement with a reason code.
    pub fn ack(kind: AckKind, packet_id: u16, reason: u8) -> Self {
        Outbound::Ack {
            kind,
            packet_id,
            reason,
        }
    }

    /// A packet that has no compact form.
    pub fn packet(packet: Packet) -> Self {
        Outbound::Other(Box::new(packet))
    }

    /// True for a PUBLISH.
    pub fn is_publish(&self) -> bool {
        matches!(self, Outbound::Publish { .. })
    }

    /// The wire packet, with every MQTT 5 field.
    pub fn into_packet(self) -> Packet {
        self.into_packet_for(Protocol::V5)
    }

    /// The wire packet for a connection speaking `protocol` (MQTT 3.x PUBLISH packets carry
    /// no properties, so none are copied for them).
    pub fn into_packet_for(self, protocol: Protocol) -> Packet {
        match self {
            Outbound::Publish {
                message,
                dup,
                packet_id,
            } => Packet::Publish(message.envelope.to_publish_for(
                protocol,
                message.qos,
                message.retain,
                dup,
                packet_id,
                &message.subscription_ids,
            )),
            Outbound::Ack {
                kind,
                packet_id,
                reason,
            } => {
                let resp = PubResp {
                    packet_id,
                    reason,
                    ..Default::default()
                };
                match kind {
                    AckKind::PubAck => Packet::PubAck(resp),
                    AckKind::PubRec => Packet::PubRec(resp),
                    AckKind::PubRel => Packet::PubRel(resp),
                    AckKind::PubComp => Packet::PubComp(resp),
                }
            }
            Outbound::PingResp => Packet::PingResp,
            Outbound::Other(packet) => *packet,
        }
    }
}

/// Identifies one connection for its whole life; never reused within a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(u64);

impl Epoch {
    /// A fresh epoch, greater than every earlier one.
    pub fn next() -> Epoch {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        Epoch(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

impl fmt::Display for Epoch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Why a session closes its connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Another connection with the same client id took the session over (MQTT 5: 0x8E).
    TakenOver,
    /// The node is shutting down (MQTT 5: 0x8B).
    ServerShutdown,
    /// A packet the connection did not wait for broke the protocol.
    Violation {
        /// MQTT 5 DISCONNECT reason code.
        reason: u8,
        /// What was wrong, citing the specification.
        what: &'static str,
    },
}

/// The session's handle on its connection. Cloning it is cheap.
#[derive(Debug, Clone)]
pub struct ClientLink {
    epoch: Epoch,
    protocol: Protocol,
    packets: mpsc::Sender<Outbound>,
    close: watch::Sender<Option<CloseReason>>,
}

/// The transport's end of a link.
#[derive(Debug)]
pub struct LinkEnd {
    /// Packets to write, in order.
    pub packets: mpsc::Receiver<Outbound>,
    /// Set once when the session wants the connection closed; the sender side disappearing
    /// means the session itself is gone.
    pub close: watch::Receiver<Option<CloseReason>>,
    /// A sender into the same packet channel, for replies the connection writes itself
    /// (CONNACK, PINGRESP).
    pub replies: mpsc::Sender<Outbound>,
}

/// Creates a link for a connection speaking `protocol`.
pub fn link(epoch: Epoch, protocol: Protocol, capacity: usize) -> (ClientLink, LinkEnd) {
    let (tx, rx) = mpsc::channel(capacity.max(1));
    let (close_tx, close_rx) = watch::channel(None);
    let end = LinkEnd {
        packets: rx,
        close: close_rx,
        replies: tx.clone(),
    };
    let link = ClientLink {
        epoch,
        protocol,
        packets: tx,
        close: close_tx,
    };
    (link, end)
}

/// A session's fast lane: how a Topic puts a QoS 0 message straight on the subscriber's
/// link, without a message to (and a turn of) the session actor.
///
/// Order is kept because the lane is open only while the session has nothing waiting for
/// its link (no queued message, no resend, no control packet, no room reservation) and no
/// message that came through the lane's fallback is still in the session's mailbox:
/// - a Topic that cannot use the lane ([`Lane::try_deliver`] gives the message back) counts
///   the message as *pending* and sends it to the session's mailbox instead
///   (`LaneDeliver`); the session calls [`Lane::settled`] once it queued or wrote it, so no
///   later message of that Topic overtakes it;
/// - the session calls [`Lane::sync`] after every change of its queue or link: a session
///   that queues anything closes the lane before the message that made it queue is
///   settled, and reopens it only once everything it held went on the link.
///
/// A full link closes the lane too, so a client that does not read gets its messages
/// through the session's bounded queue, where QoS 0 drops are counted. Everything is under
/// one uncontended mutex: a Topic and the session may run on different arbiters.
#[derive(Debug, Default)]
pub struct Lane {
    state: Mutex<LaneState>,
}

#[derive(Debug, Default)]
struct LaneState {
    /// The attached connection's channel.
    link: Option<(Epoch, mpsc::Sender<Outbound>)>,
    /// The session has nothing waiting for the link.
    open: bool,
    /// Messages handed to the session's mailbox through this lane and not settled yet.
    pending: usize,
}

impl Lane {
    /// Puts a QoS 0 message on the link if the lane is open and the link has room;
    /// otherwise counts it as pending and gives it back, to be sent to the session's
    /// mailbox (which then calls [`Lane::settled`]).
    pub fn try_deliver(&self, message: Outgoing) -> Result<(), Outgoing> {
        let mut state = self.lock();
        if state.open && state.pending == 0 {
            if let Some((_, packets)) = &state.link {
                if let Ok(permit) = packets.try_reserve() {
                    permit.send(Outbound::Publish {
                        message,
                        dup: false,
                        packet_id: None,
                    });
                    return Ok(());
                }
                // Full (or closing): the session's queue takes over until it is idle again.
                state.open = false;
            }
        }
        state.pending += 1;
        Err(message)
    }

    /// Counts a message that is sent to the session's mailbox without trying the lane
    /// (QoS 1/2), so that no later QoS 0 message overtakes it.
    pub fn hold(&self) {
        self.lock().pending += 1;
    }

    /// A message that came through the lane's fallback was queued or written.
    pub fn settled(&self) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
    }

    /// The session's state changed: `link` is the attached connection (if any) and `idle`
    /// says whether the session has nothing waiting for it.
    pub fn sync(&self, link: Option<&ClientLink>, idle: bool) {
        let mut state = self.lock();
        match link {
            Some(link) => {
                if state.link.as_ref().map(|(epoch, _)| *epoch) != Some(link.epoch) {
                    state.link = Some((link.epoch, link.packets.clone()));
                }
                state.open = idle;
            }
            None => {
                state.link = None;
                state.open = false;
            }
        }
    }

    /// True while Topics may write to the link directly.
    pub fn is_open(&self) -> bool {
        let state = self.lock();
        state.open && state.pending == 0 && state.link.is_some()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LaneState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// For the QoS 1/2 direct path ([`Direct`](super::direct::Direct)).
impl Lane {
    /// True when no message handed to the session's mailbox through this lane is still
    /// unsettled, so a message put in the session's queue now keeps its order.
    pub fn nothing_pending(&self) -> bool {
        self.lock().pending == 0
    }
}

/// A packet could not be queued on a link.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The channel is full; the item is handed back.
    Full(Outbound),
    /// The connection is gone.
    Closed,
}

/// No room could be reserved on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// The channel is full.
    Full,
    /// The connection is gone.
    Closed,
}

impl ClientLink {
    /// The connection's epoch.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// The protocol level the client speaks.
    pub fn protocol(&self) -> Protocol {
        self.protocol
    }

    /// Queues a packet if there is room.
    pub fn try_send(&self, packet: Outbound) -> Result<(), SendError> {
        self.packets.try_send(packet).map_err(|e| match e {
            mpsc::error::TrySendError::Full(p) => SendError::Full(p),
            mpsc::error::TrySendError::Closed(_) => SendError::Closed,
        })
    }

    /// Reserves room for one packet if there is some.
    pub fn try_reserve(&self) -> Result<mpsc::Permit<'_, Outbound>, ReserveError> {
        self.packets.try_reserve().map_err(|e| match e {
            mpsc::error::TrySendError::Full(()) => ReserveError::Full,
            mpsc::error::TrySendError::Closed(()) => ReserveError::Closed,
        })
    }

    /// Waits for room for one packet; fails when the connection is gone.
    pub async fn reserve(self) -> Result<mpsc::OwnedPermit<Outbound>, ReserveError> {
        self.packets
            .reserve_owned()
            .await
            .map_err(|_| ReserveError::Closed)
    }

    /// Asks the connection to close. Idempotent; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        self.close.send_if_modified(|current| {
            if current.is_none() {
                *current = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// True once the connection has stopped reading packets.
    pub fn is_closed(&self) -> bool {
        self.packets.is_closed()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epochs_increase() {
        let a = Epoch::next();
        let b = Epoch::next();
        assert!(b > a);
    }

    #[test]
    fn full_link_hands_the_packet_back() {
        let (link, mut end) = link(Epoch::next(), Protocol::V311, 1);
        assert_eq!(link.try_send(Outbound::PingResp), Ok(()));
        let ack = Outbound::ack(AckKind::PubAck, 1, 0);
        assert_eq!(link.try_send(ack.clone()), Err(SendError::Full(ack)));
        assert_eq!(end.packets.try_recv().ok(), Some(Outbound::PingResp));
        drop(end);
        assert_eq!(link.try_send(Outbound::PingResp), Err(SendError::Closed));
    }

    #[test]
    fn outbound_items_stay_small() {
        assert!(
            std::mem::size_of::<Outbound>() <= 64,
            "{}",
            std::mem::size_of::<Outbound>()
        );
        assert_eq!(
            Outbound::ack(AckKind::PubRel, 9, 0x92).into_packet(),
            Packet::PubRel(PubResp {
                packet_id: 9,
                reason: 0x92,
                ..Default::default()
            })
        );
    }

    #[test]
    fn first_close_reason_wins() {
        let (link, end) = link(Epoch::next(), Protocol::V5, 4);
        link.close(CloseReason::TakenOver);
        link.close(CloseReason::ServerShutdown);
        assert_eq!(*end.close.borrow(), Some(CloseReason::TakenOver));
    }
}
