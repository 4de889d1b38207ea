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

use super::outbox::Outgoing;
use crate::codec::{Packet, Protocol, PubResp};
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
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

    /// The wire packet.
    pub fn into_packet(self) -> Packet {
        match self {
            Outbound::Publish {
                message,
                dup,
                packet_id,
            } => Packet::Publish(message.envelope.to_publish(
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
