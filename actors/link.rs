//! [`ClientLink`]: how a session writes to whichever connection is attached to it.
//!
//! The transport creates a link per connection with [`link`]: the session side
//! ([`ClientLink`]) is handed to the session in `Attach`, the transport keeps the other end
//! ([`LinkEnd`]). Both share one small *outlet*: a buffer of packets **already encoded** for
//! the wire, a close request and the connection task's waker, under one mutex.
//!
//! - Producers (the session through its [`ClientLink`], Topics through a session's
//!   [`Direct`](super::direct::Direct), the connection itself for CONNACK and PINGRESP)
//!   encode straight into the buffer. Only the first packet after the connection took the
//!   buffer wakes the connection's task (the waker is taken out of the outlet), so many
//!   deliveries between two writes cost one wake-up and go out in one write call
//!   (write-combining).
//! - The connection swaps the buffer for its own empty one under the lock and writes it
//!   outside the lock; the two buffers alternate, so a busy connection does not allocate,
//!   and a connection with nothing to write keeps at most one small buffer.
//! - The buffer is **bounded** ([`LINK_CAPACITY`] bytes): a client that does not read cannot
//!   make the broker buffer without limit. When it is full, [`ClientLink::try_send`] and
//!   [`ClientLink::try_reserve`] fail with `Full`, the session keeps messages in its own
//!   bounded queue and waits for room with [`ClientLink::reserve`] (woken when the
//!   connection takes the buffer, no polling). A reservation ([`Permit`]) always succeeds,
//!   so the bound may be overshot by the packets reserved before it was reached.
//! - A close request lets the session end the connection (takeover, shutdown) even when
//!   the buffer is full; the last [`ClientLink`] being dropped means the session is gone.
//!
//! Every link carries the connection's [`Epoch`], so a session can tell a stale
//! connection's messages from the current one's. Nothing here knows about sockets: TCP, TLS
//! and WebSocket connections all use this type.
//!
//! The Topics a session subscribes to write to its link too, through the session's shared
//! outbound state ([`Direct`](super::direct::Direct)), while the session has nothing of
//! its own waiting for that link (see there for why order is kept).

use super::outbox::Outgoing;
use crate::codec::{self, EncodeError, Packet, Protocol, PubResp};
use bytes::BytesMut;
use std::fmt;
use std::future::poll_fn;
use std::num::NonZeroU64;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, Waker};

/// Bytes of encoded packets a link buffers before producers have to wait (the session
/// queues on its side, a [`Direct`](super::direct::Direct) closes). The connection may be writing one more such
/// buffer at the same time.
pub const LINK_CAPACITY: usize = 64 * 1024;

/// An empty buffer of at most this many bytes is kept by an idle link; larger ones are
/// given back, so an idle connection holds (almost) nothing.
const IDLE_BUFFER: usize = 512;

/// One packet for a connection, kept small (a few words): PUBLISH packets are built from
/// the shared envelope only when encoded into the link, and rare packets are boxed.
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

/// Identifies one connection for its whole life; never reused within a process. Never
/// zero, so an `Option<Epoch>` (sessions keep a few) takes 8 bytes, not 16.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Epoch(NonZeroU64);

impl Epoch {
    /// A fresh epoch, greater than every earlier one.
    pub fn next() -> Epoch {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        // The counter starts at 1 and would take centuries to wrap.
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        Epoch(NonZeroU64::new(n).unwrap_or(NonZeroU64::MIN))
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

/// What a link's two ends share (see the module documentation). Every connection has one,
/// idle or parked, so it is kept in jemalloc's 160-byte class (with the `Arc` counts).
struct Outlet {
    epoch: Epoch,
    state: Mutex<OutletState>,
}

#[derive(Default)]
struct OutletState {
    /// Encoded packets not taken by the connection yet.
    buf: BytesMut,
    /// Producers waiting for room ([`ClientLink::reserve`], [`LinkEnd::send`]): the
    /// session's and the connection's tasks at most. Woken, and emptied, by the next take
    /// and by the end of the link; a waiter that went away leaves a spurious wake-up.
    room: Vec<Waker>,
    /// Bytes `buf` may hold before producers have to wait.
    limit: u32,
    /// The connection's protocol level, which packets are encoded for.
    protocol: Protocol,
    /// The connection task, while it waits for something to write; taken by the first
    /// producer that wakes it. A connection busy writing (its socket full) is not in here,
    /// so producers do not wake it for nothing.
    waker: Option<Waker>,
    /// The connection task, for a close request or the session's end.
    signal_waker: Option<Waker>,
    /// The session asked the connection to close.
    close: Option<CloseReason>,
    /// Live [`ClientLink`] handles; none left means the session is gone.
    links: u32,
    /// The connection takes no more packets.
    ended: bool,
    /// Packets that could not be encoded and were skipped.
    skipped: u32,
    /// The connection took packets since it last asked ([`LinkEnd::take_activity`]).
    taken: bool,
}

impl fmt::Debug for Outlet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Outlet")
            .field("epoch", &self.epoch)
            .finish_non_exhaustive()
    }
}

impl OutletState {
    /// The buffer holds its limit: producers have to wait.
    fn is_full(&self) -> bool {
        self.buf.len() >= self.limit as usize
    }
}

impl Outlet {
    fn lock(&self) -> MutexGuard<'_, OutletState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Encodes `packet` into the buffer (the caller checked room and that the link is
    /// open) and returns the connection's waker if it must be woken.
    fn put(&self, state: &mut OutletState, packet: Outbound) -> Option<Waker> {
        let mark = state.buf.len();
        if encode_outbound(packet, state.protocol, &mut state.buf).is_err() {
            state.buf.truncate(mark);
            state.skipped = state.skipped.saturating_add(1);
        }
        state.waker.take()
    }

    /// Queues `packet` if the link has room.
    fn try_send(&self, packet: Outbound) -> Result<(), SendError> {
        let mut state = self.lock();
        if state.ended {
            return Err(SendError::Closed);
        }
        if state.is_full() {
            return Err(SendError::Full(packet));
        }
        let waker = self.put(&mut state, packet);
        drop(state);
        wake(waker);
        Ok(())
    }

    /// Queues a QoS 0 PUBLISH if the link is open and has room; gives it back otherwise.
    ///
    /// The connection's wake-up, if one is due, is added to `wakes`.
    fn offer(&self, message: Outgoing, wakes: &mut Wakes) -> Result<(), Outgoing> {
        let mut state = self.lock();
        if state.ended || state.is_full() {
            return Err(message);
        }
        let packet = Outbound::Publish {
            message,
            dup: false,
            packet_id: None,
        };
        let waker = self.put(&mut state, packet);
        drop(state);
        wakes.add(waker);
        Ok(())
    }

    /// Queues `packet` whatever the buffer holds (room was reserved), unless the link ended.
    ///
    /// The connection's wake-up, if one is due, is added to `wakes`.
    fn push(&self, packet: Outbound, wakes: &mut Wakes) {
        let mut state = self.lock();
        if state.ended {
            return;
        }
        let waker = self.put(&mut state, packet);
        drop(state);
        wakes.add(waker);
    }

    /// Whether a packet could be queued now.
    fn room(&self) -> Result<(), ReserveError> {
        let state = self.lock();
        if state.ended {
            Err(ReserveError::Closed)
        } else if state.is_full() {
            Err(ReserveError::Full)
        } else {
            Ok(())
        }
    }

    /// Waits until a packet can be queued; fails when the link ended.
    async fn wait_for_room(&self) -> Result<(), ReserveError> {
        poll_fn(|cx| {
            let mut state = self.lock();
            if state.ended {
                return Poll::Ready(Err(ReserveError::Closed));
            }
            if !state.is_full() {
                return Poll::Ready(Ok(()));
            }
            // Registered under the lock the taker takes: no take is missed.
            if !state.room.iter().any(|w| w.will_wake(cx.waker())) {
                state.room.push(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// Ends the link: no packet is taken any more and waiting producers fail. Returns what
    /// was still buffered.
    fn end(&self) -> BytesMut {
        let mut state = self.lock();
        state.ended = true;
        state.waker = None;
        state.signal_waker = None;
        let rest = std::mem::take(&mut state.buf);
        wake_room(state);
        rest
    }
}

/// Wakes the producers waiting for room ([`OutletState::room`]), after the lock is let go.
fn wake_room(mut state: MutexGuard<'_, OutletState>) {
    let room = std::mem::take(&mut state.room);
    drop(state);
    room.into_iter().for_each(Waker::wake);
}

fn wake(waker: Option<Waker>) {
    if let Some(waker) = waker {
        waker.wake();
    }
}

/// Connection wake-ups held back by a producer that is handing out many messages, so that
/// each connection is woken once for all of them and writes them with one syscall.
///
/// Why: a connection woken for every message writes every message on its own as soon as
/// its thread is free. In a 1 → 1000 fan-out that placement made the difference between
/// 4 and 48 messages per `sendto`, and between 0.3M and 1.5M deliveries/s. A Topic that
/// holds its wake-ups until it has fanned out everything in its mailbox gives each
/// subscriber all of those messages in one write, whatever thread the subscriber is on.
///
/// Dropping it wakes everything it holds, so a wake-up can be delayed but never lost.
#[derive(Debug, Default)]
pub struct Wakes {
    wakers: Vec<Waker>,
}

impl Wakes {
    /// Holds `waker` back (nothing if `None`).
    pub fn add(&mut self, waker: Option<Waker>) {
        if let Some(waker) = waker {
            self.wakers.push(waker);
        }
    }

    /// True when none is held.
    pub fn is_empty(&self) -> bool {
        self.wakers.is_empty()
    }

    /// Wakes every connection held, keeping the allocation for the next batch.
    pub fn wake_all(&mut self) {
        for waker in self.wakers.drain(..) {
            waker.wake();
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.wake_all();
    }
}

/// Encodes one packet for a connection speaking `protocol`. An MQTT 3.x PUBLISH is written
/// straight from the shared message, without building a [`Packet`].
fn encode_outbound(
    packet: Outbound,
    protocol: Protocol,
    out: &mut BytesMut,
) -> Result<(), EncodeError> {
    match packet {
        Outbound::Publish {
            message,
            dup,
            packet_id,
        } if protocol != Protocol::V5 => codec::encode_publish_v3(
            message.envelope.topic.as_str(),
            &message.envelope.payload,
            message.qos,
            message.retain,
            dup,
            packet_id,
            out,
        ),
        packet => codec::encode(&packet.into_packet_for(protocol), protocol, out),
    }
}

/// The session's handle on its connection. Cloning it is cheap.
#[derive(Debug)]
pub struct ClientLink {
    outlet: Arc<Outlet>,
}

impl Clone for ClientLink {
    fn clone(&self) -> Self {
        self.outlet.lock().links += 1;
        ClientLink {
            outlet: self.outlet.clone(),
        }
    }
}

impl Drop for ClientLink {
    fn drop(&mut self) {
        let mut state = self.outlet.lock();
        state.links = state.links.saturating_sub(1);
        if state.links == 0 {
            // The session is gone: the connection hears it.
            let waker = state.signal_waker.take();
            drop(state);
            wake(waker);
        }
    }
}

/// The transport's end of a link: the connection takes the encoded packets from it, hears
/// close requests through it and writes its own replies (CONNACK, PINGRESP) into it.
#[derive(Debug)]
pub struct LinkEnd {
    outlet: Arc<Outlet>,
}

/// What the session told the connection through the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// The session asked the connection to close.
    Close(CloseReason),
    /// The session is gone (its last [`ClientLink`] was dropped).
    SessionGone,
}

/// Creates a link for a connection speaking `protocol`, buffering at most `capacity`
/// bytes of encoded packets before producers have to wait.
pub fn link(epoch: Epoch, protocol: Protocol, capacity: usize) -> (ClientLink, LinkEnd) {
    let outlet = Arc::new(Outlet {
        epoch,
        state: Mutex::new(OutletState {
            limit: u32::try_from(capacity).unwrap_or(u32::MAX).max(1),
            protocol,
            links: 1,
            ..Default::default()
        }),
    });
    let end = LinkEnd {
        outlet: outlet.clone(),
    };
    (ClientLink { outlet }, end)
}

impl LinkEnd {
    /// Waits for encoded packets: when some are buffered, swaps them into `out` (which must
    /// be empty; its capacity becomes the link's next buffer) and returns `Ready`. With
    /// nothing to write it keeps at most one small buffer and registers the task's waker.
    pub fn poll_take(&self, cx: &mut Context<'_>, out: &mut BytesMut) -> Poll<()> {
        debug_assert!(out.is_empty());
        let mut state = self.outlet.lock();
        if !state.buf.is_empty() {
            state.taken = true;
            std::mem::swap(&mut state.buf, out);
            if state.buf.capacity() > LINK_CAPACITY * 2 {
                state.buf = BytesMut::new();
            }
            wake_room(state);
            return Poll::Ready(());
        }
        // Idle: one small buffer is kept (in the link, where the next packet goes).
        if state.buf.capacity() > IDLE_BUFFER {
            state.buf = BytesMut::new();
        }
        let spare = std::mem::take(out);
        if state.buf.capacity() == 0 && spare.capacity() <= IDLE_BUFFER {
            state.buf = spare;
        }
        register(&mut state.waker, cx);
        Poll::Pending
    }

    /// Bytes encoded and waiting to be taken.
    pub fn buffered(&self) -> usize {
        self.outlet.lock().buf.len()
    }

    /// Whether the connection took packets since it last asked: its write activity.
    pub fn take_activity(&self) -> bool {
        std::mem::take(&mut self.outlet.lock().taken)
    }

    /// The connection's epoch (a parked connection keeps it here only).
    pub fn epoch(&self) -> Epoch {
        self.outlet.epoch
    }

    /// The protocol level the client speaks (a parked connection keeps it here only).
    pub fn protocol(&self) -> Protocol {
        self.outlet.lock().protocol
    }

    /// For a connection that leaves its task (a parked one): registers `waker` for all it
    /// waits for on the link (packets to write, a close request, the session's end) and
    /// drops the idle buffer. `true` when one of them is there already (then nothing is
    /// registered).
    pub fn watch(&self, waker: &Waker) -> bool {
        let mut state = self.outlet.lock();
        if !state.buf.is_empty() || state.close.is_some() || state.links == 0 {
            return true;
        }
        state.buf = BytesMut::new();
        state.waker = Some(waker.clone());
        state.signal_waker = Some(waker.clone());
        false
    }

    /// Waits for a close request or the session's end.
    pub fn poll_signal(&self, cx: &mut Context<'_>) -> Poll<Signal> {
        let mut state = self.outlet.lock();
        if let Some(reason) = state.close {
            return Poll::Ready(Signal::Close(reason));
        }
        if state.links == 0 {
            return Poll::Ready(Signal::SessionGone);
        }
        register(&mut state.signal_waker, cx);
        Poll::Pending
    }

    /// Waits for a close request or the session's end.
    pub async fn signal(&self) -> Signal {
        poll_fn(|cx| self.poll_signal(cx)).await
    }

    /// The close request, if the session made one.
    pub fn close_reason(&self) -> Option<CloseReason> {
        self.outlet.lock().close
    }

    /// Queues a reply of the connection's own if there is room.
    pub fn try_send(&self, packet: Outbound) -> Result<(), SendError> {
        self.outlet.try_send(packet)
    }

    /// Queues a reply of the connection's own, waiting for room first.
    pub async fn send(&self, packet: Outbound) -> Result<(), ReserveError> {
        self.outlet.wait_for_room().await?;
        self.outlet.push(packet, &mut Wakes::default());
        Ok(())
    }

    /// Ends the link: producers get `Closed` from now on. Returns the packets still
    /// buffered, to be written last.
    pub fn end(&self) -> BytesMut {
        self.outlet.end()
    }

    /// Packets that could not be encoded and were skipped so far.
    pub fn skipped(&self) -> u32 {
        self.outlet.lock().skipped
    }

    /// The next packet written to the link, decoded (for tests that play the connection).
    #[cfg(test)]
    pub async fn recv(&mut self) -> Option<Packet> {
        poll_fn(|cx| {
            let mut state = self.outlet.lock();
            let protocol = state.protocol;
            match codec::decode(&mut state.buf, protocol, usize::MAX) {
                Ok(Some(packet)) => {
                    wake_room(state);
                    Poll::Ready(Some(packet))
                }
                Ok(None) if state.ended => Poll::Ready(None),
                Ok(None) => {
                    register(&mut state.waker, cx);
                    Poll::Pending
                }
                Err(e) => panic!("undecodable link contents: {e}"),
            }
        })
        .await
    }

    /// The next packet written to the link, decoded, if one is there now (tests).
    #[cfg(test)]
    pub fn try_recv(&mut self) -> Option<Packet> {
        let mut state = self.outlet.lock();
        let protocol = state.protocol;
        match codec::decode(&mut state.buf, protocol, usize::MAX) {
            Ok(packet) => packet,
            Err(e) => panic!("undecodable link contents: {e}"),
        }
    }
}

impl Drop for LinkEnd {
    fn drop(&mut self) {
        self.outlet.end();
    }
}

/// Keeps the task's waker in `slot` (cloned only when it changed).
fn register(slot: &mut Option<Waker>, cx: &mut Context<'_>) {
    match slot {
        Some(waker) if waker.will_wake(cx.waker()) => {}
        _ => *slot = Some(cx.waker().clone()),
    }
}

/// Room for one packet on a link, reserved by [`ClientLink::try_reserve`].
#[derive(Debug)]
pub struct Permit<'a> {
    outlet: &'a Outlet,
}

impl Permit<'_> {
    /// Queues the packet in the reserved room (dropped if the link ended meanwhile).
    pub fn send(self, packet: Outbound) {
        self.outlet.push(packet, &mut Wakes::default());
    }

    /// [`Permit::send`], holding the connection's wake-up in `wakes`.
    pub fn send_held(self, packet: Outbound, wakes: &mut Wakes) {
        self.outlet.push(packet, wakes);
    }
}

/// Room for one packet on a link, reserved by [`ClientLink::reserve`].
#[derive(Debug)]
pub struct OwnedPermit {
    link: ClientLink,
}

impl OwnedPermit {
    /// Queues the packet in the reserved room (dropped if the link ended meanwhile).
    pub fn send(self, packet: Outbound) {
        self.link.outlet.push(packet, &mut Wakes::default());
    }
}

/// A packet could not be queued on a link.
#[derive(Debug, PartialEq, Eq)]
pub enum SendError {
    /// The link is full; the item is handed back.
    Full(Outbound),
    /// The connection is gone.
    Closed,
}

/// No room could be reserved on a link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReserveError {
    /// The link is full.
    Full,
    /// The connection is gone.
    Closed,
}

impl ClientLink {
    /// The connection's epoch.
    pub fn epoch(&self) -> Epoch {
        self.outlet.epoch
    }

    /// The protocol level the client speaks.
    pub fn protocol(&self) -> Protocol {
        self.outlet.lock().protocol
    }

    /// Queues a packet if there is room.
    pub fn try_send(&self, packet: Outbound) -> Result<(), SendError> {
        self.outlet.try_send(packet)
    }

    /// Queues a QoS 0 PUBLISH if the link is open and has room; gives it back otherwise.
    ///
    /// The connection's wake-up, if one is due, is added to `wakes`.
    pub fn offer(&self, message: Outgoing, wakes: &mut Wakes) -> Result<(), Outgoing> {
        self.outlet.offer(message, wakes)
    }

    /// Reserves room for one packet if there is some.
    pub fn try_reserve(&self) -> Result<Permit<'_>, ReserveError> {
        self.outlet.room()?;
        Ok(Permit {
            outlet: &self.outlet,
        })
    }

    /// Waits for room for one packet; fails when the connection is gone.
    pub async fn reserve(self) -> Result<OwnedPermit, ReserveError> {
        self.outlet.wait_for_room().await?;
        Ok(OwnedPermit { link: self })
    }

    /// Asks the connection to close. Idempotent; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut state = self.outlet.lock();
        if state.close.is_some() {
            return;
        }
        state.close = Some(reason);
        let waker = state.signal_waker.take();
        drop(state);
        wake(waker);
    }

    /// True once the connection has stopped taking packets.
    pub fn is_closed(&self) -> bool {
        self.outlet.lock().ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::envelope::Envelope;
    use crate::codec::QoS;
    use std::sync::atomic::AtomicUsize;
    use std::task::Wake;

    /// A waker that counts its wake-ups.
    #[derive(Default)]
    struct Counter(AtomicUsize);

    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn counting() -> (Arc<Counter>, Waker) {
        let counter = Arc::new(Counter::default());
        (counter.clone(), Waker::from(counter))
    }

    fn message(i: u16) -> Outgoing {
        let publish = codec::Publish {
            topic: "t".into(),
            payload: i.to_be_bytes().to_vec().into(),
            ..Default::default()
        };
        Outgoing {
            envelope: Envelope::from_publish(crate::actors::ClientId::from("p"), publish),
            qos: QoS::AtMostOnce,
            retain: false,
            subscription_ids: Vec::new(),
            seq: None,
        }
    }

    fn decode_all(mut bytes: BytesMut, protocol: Protocol) -> Vec<Packet> {
        let mut out = Vec::new();
        while let Some(p) = codec::decode(&mut bytes, protocol, usize::MAX).unwrap() {
            out.push(p);
        }
        assert!(bytes.is_empty());
        out
    }

    #[test]
    fn epochs_increase() {
        let a = Epoch::next();
        let b = Epoch::next();
        assert!(b > a);
        assert_eq!(std::mem::size_of::<Option<Epoch>>(), 8);
    }

    #[tokio::test]
    async fn full_link_hands_the_packet_back() {
        let (link, mut end) = link(Epoch::next(), Protocol::V311, 1);
        assert_eq!(link.try_send(Outbound::PingResp), Ok(()));
        let ack = Outbound::ack(AckKind::PubAck, 1, 0);
        assert_eq!(link.try_send(ack.clone()), Err(SendError::Full(ack)));
        assert!(matches!(link.try_reserve(), Err(ReserveError::Full)));
        assert_eq!(end.recv().await, Some(Packet::PingResp));
        assert!(link.try_reserve().is_ok());
        drop(end);
        assert_eq!(link.try_send(Outbound::PingResp), Err(SendError::Closed));
        assert!(link.is_closed());
    }

    #[test]
    fn an_outlet_stays_in_its_allocation_class() {
        // With the `Arc` counts, 160 bytes: one more word would make every connection's
        // outlet a 192-byte allocation.
        assert!(
            std::mem::size_of::<Outlet>() <= 144,
            "Outlet: {}",
            std::mem::size_of::<Outlet>()
        );
    }

    #[tokio::test]
    async fn every_producer_waiting_for_room_is_woken_by_one_take() {
        let (link, end) = link(Epoch::next(), Protocol::V311, 2);
        let end = Arc::new(end);
        link.try_send(Outbound::PingResp).unwrap();
        // The session waits for a reservation, the connection to answer a PINGREQ.
        let session = tokio::spawn(link.clone().reserve());
        let connection = tokio::spawn({
            let end = end.clone();
            async move { end.send(Outbound::PingResp).await }
        });
        for _ in 0..3 {
            tokio::task::yield_now().await;
        }
        assert!(!session.is_finished() && !connection.is_finished());
        let mut out = BytesMut::new();
        poll_fn(|cx| end.poll_take(cx, &mut out)).await;
        let within = std::time::Duration::from_secs(5);
        let permit = tokio::time::timeout(within, session).await;
        assert!(matches!(permit, Ok(Ok(Ok(_)))), "the session got room");
        let sent = tokio::time::timeout(within, connection).await;
        assert!(matches!(sent, Ok(Ok(Ok(())))), "the connection got room");
        assert!(end.outlet.lock().room.is_empty(), "no waker kept");
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
    fn first_close_reason_wins_and_wakes_the_connection() {
        let (link, end) = link(Epoch::next(), Protocol::V5, 4);
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        assert!(end.poll_signal(&mut cx).is_pending());
        link.close(CloseReason::TakenOver);
        link.close(CloseReason::ServerShutdown);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(end.close_reason(), Some(CloseReason::TakenOver));
        assert_eq!(
            end.poll_signal(&mut cx),
            Poll::Ready(Signal::Close(CloseReason::TakenOver))
        );
    }

    #[test]
    fn a_connection_busy_writing_is_not_woken_by_producers() {
        let (link, end) = link(Epoch::next(), Protocol::V311, LINK_CAPACITY);
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        // Waiting for a close request only (its socket is full, it is not taking packets).
        assert!(end.poll_signal(&mut cx).is_pending());
        for _ in 0..10 {
            link.try_send(Outbound::PingResp).unwrap();
        }
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        link.close(CloseReason::ServerShutdown);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_last_dropped_handle_means_the_session_is_gone() {
        let (link, end) = link(Epoch::next(), Protocol::V311, 4);
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let copy = link.clone();
        drop(link);
        assert!(end.poll_signal(&mut cx).is_pending());
        assert_eq!(wakes.0.load(Ordering::SeqCst), 0);
        drop(copy);
        assert_eq!(wakes.0.load(Ordering::SeqCst), 1);
        assert_eq!(end.poll_signal(&mut cx), Poll::Ready(Signal::SessionGone));
    }

    #[test]
    fn deliveries_between_two_takes_cost_one_wake_and_one_buffer() {
        let (link, end) = link(Epoch::next(), Protocol::V311, LINK_CAPACITY);
        let (wakes, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut out = BytesMut::new();
        assert!(end.poll_take(&mut cx, &mut out).is_pending());
        for i in 0..100 {
            assert_eq!(link.offer(message(i), &mut Wakes::default()), Ok(()));
        }
        assert_eq!(
            wakes.0.load(Ordering::SeqCst),
            1,
            "one wake for 100 packets"
        );
        assert!(end.poll_take(&mut cx, &mut out).is_ready());
        let payloads: Vec<u16> = decode_all(out.split(), Protocol::V311)
            .into_iter()
            .map(|p| match p {
                Packet::Publish(p) => u16::from_be_bytes([p.payload[0], p.payload[1]]),
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(payloads, (0..100).collect::<Vec<_>>());
        // The next packet after a take wakes the connection again.
        assert!(end.poll_take(&mut cx, &mut out).is_pending());
        link.try_send(Outbound::PingResp).unwrap();
        assert_eq!(wakes.0.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn held_wakes_reach_the_connections_only_when_flushed_or_dropped() {
        let (link_a, end_a) = link(Epoch::next(), Protocol::V311, LINK_CAPACITY);
        let (link_b, end_b) = link(Epoch::next(), Protocol::V311, LINK_CAPACITY);
        let (count_a, waker_a) = counting();
        let (count_b, waker_b) = counting();
        let mut out = BytesMut::new();
        assert!(end_a
            .poll_take(&mut Context::from_waker(&waker_a), &mut out)
            .is_pending());
        assert!(end_b
            .poll_take(&mut Context::from_waker(&waker_b), &mut out)
            .is_pending());
        let mut wakes = Wakes::default();
        for i in 0..10 {
            assert_eq!(link_a.offer(message(i), &mut wakes), Ok(()));
            assert_eq!(link_b.offer(message(i), &mut wakes), Ok(()));
        }
        assert_eq!(count_a.0.load(Ordering::SeqCst), 0, "held, not woken");
        assert_eq!(count_b.0.load(Ordering::SeqCst), 0, "held, not woken");
        wakes.wake_all();
        assert_eq!(
            count_a.0.load(Ordering::SeqCst),
            1,
            "one wake for 10 packets"
        );
        assert_eq!(
            count_b.0.load(Ordering::SeqCst),
            1,
            "one wake for 10 packets"
        );
        // A batch dropped before it is flushed still wakes what it holds.
        assert!(end_a
            .poll_take(&mut Context::from_waker(&waker_a), &mut out)
            .is_ready());
        out.clear();
        assert!(end_a
            .poll_take(&mut Context::from_waker(&waker_a), &mut out)
            .is_pending());
        let mut dropped = Wakes::default();
        assert_eq!(link_a.offer(message(10), &mut dropped), Ok(()));
        assert_eq!(count_a.0.load(Ordering::SeqCst), 1);
        drop(dropped);
        assert_eq!(count_a.0.load(Ordering::SeqCst), 2, "dropping wakes");
    }

    #[test]
    fn an_idle_link_keeps_at_most_one_small_buffer() {
        let (link, end) = link(Epoch::next(), Protocol::V311, LINK_CAPACITY);
        let (_, waker) = counting();
        let mut cx = Context::from_waker(&waker);
        let mut out = BytesMut::new();
        for _ in 0..200 {
            link.try_send(Outbound::packet(Packet::Publish(codec::Publish {
                topic: "a/b".into(),
                payload: vec![7; 100].into(),
                ..Default::default()
            })))
            .unwrap();
        }
        assert!(end.poll_take(&mut cx, &mut out).is_ready());
        assert!(out.len() > IDLE_BUFFER);
        out.clear();
        assert!(end.poll_take(&mut cx, &mut out).is_pending());
        assert_eq!(out.capacity(), 0, "the large buffer is given back");
        assert!(end.outlet.lock().buf.capacity() <= IDLE_BUFFER);
    }

    #[tokio::test]
    async fn reserve_waits_for_the_connection_to_take_the_buffer() {
        let (link, end) = link(Epoch::next(), Protocol::V311, 2);
        link.try_send(Outbound::PingResp).unwrap();
        let waiting = tokio::spawn(link.clone().reserve());
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        let mut out = BytesMut::new();
        poll_fn(|cx| end.poll_take(cx, &mut out)).await;
        let permit = tokio::time::timeout(std::time::Duration::from_secs(1), waiting)
            .await
            .expect("room in time")
            .expect("task")
            .expect("link open");
        permit.send(Outbound::ack(AckKind::PubAck, 3, 0));
        let mut next = BytesMut::new();
        poll_fn(|cx| end.poll_take(cx, &mut next)).await;
        assert_eq!(
            decode_all(next, Protocol::V311),
            vec![Packet::PubAck(PubResp::new(3))]
        );
        // An ended link fails a waiting reservation.
        link.try_send(Outbound::PingResp).unwrap();
        let waiting = tokio::spawn(link.clone().reserve());
        tokio::task::yield_now().await;
        let rest = end.end();
        assert_eq!(rest.len(), 2);
        assert!(matches!(
            waiting.await.expect("task"),
            Err(ReserveError::Closed)
        ));
    }
}
