//! [`Session`]: one actor per client id, alive while its client is connected and, for a
//! persistent session, until it expires after the client went away.
//!
//! Who talks to it: the client's connection [`Attach`]es to it after the Registry opened it,
//! forwards every packet it does not answer itself as [`Inbound`] (PUBLISH and its
//! acknowledgements as [`Piped`], within a bounded number of slots released when each is
//! fully handled, which is how a publisher is slowed down) and reports [`Detached`] when
//! the socket goes. Topics and other sessions (direct messages) send [`Deliver`]. The Registry
//! sends [`Discard`] when a clean start replaces the session. It sends the Registry
//! subscription changes, retained messages, topic start requests and [`SessionEnded`].
//!
//! It owns the client's MQTT state: subscriptions, the [`Outbox`] (bounded queue and
//! inflight window), inbound QoS 2 packet ids awaiting PUBREL, the will, the expiry timer
//! and the current connection ([`ClientLink`] with its epoch). Messages from a connection
//! whose epoch is not the current one are refused, so a taken-over connection can never
//! change the session; the old connection is closed exactly once, without its will.
//!
//! Publishing (from the client, or its will): a topic name that is a client id goes
//! straight to that session; otherwise the route snapshot names the Topic, or says that some
//! filter matches and the Registry must start the Topic first, or that nobody listens. A
//! QoS 1 message is acknowledged, and a QoS 2 message is PUBREC'd, only once it is in every
//! destination's mailbox. When a destination's mailbox is full the message waits for room,
//! which holds back the publisher's connection (and so the publisher, through TCP); the
//! client's later publishes wait in a queue behind it (`held_routes`), so they keep their
//! order, and are all routed at once when its wait ends.
//! Topics put messages for this client straight on its link through the outbound state it
//! shares with them ([`Direct`]: the link, its lane and the outbox) while the session has
//! nothing waiting for the link and, for QoS 1/2, the inflight window has room
//! ([`LaneDeliver`] otherwise). A publish to a Topic that never had a persistent subscriber
//! needs no store write, so its acknowledgement goes out once the Topic has the message.
//!
//! Durability: a persistent session (clean session = false, or MQTT 5 Session Expiry
//! Interval > 0) keeps its record (subscriptions, expiry, protocol) in the store, and every
//! QoS 1/2 message for it is in the store's queue before its publisher is acknowledged (the
//! Topic writes it, or this session for a direct message). A PUBLISH from the client is
//! answered (PUBACK/PUBREC) only once every store write it caused is durable; answers go out
//! in the order the PUBLISHes came, and the connection reads on meanwhile, up to
//! [`MAX_PENDING_ACKS`] unanswered PUBLISHes. When the client acknowledges a stored message
//! (PUBACK, or PUBCOMP) the session deletes it from the store; sending one and receiving its
//! PUBREC update its inflight state there. After a restart the Registry brings the session
//! back with [`Session::restored`]: offline, with its subscriptions, queue and expiry.
//!
//! Writing: packets are encoded into the link's bounded buffer (see [`ClientLink`]). When it
//! is full the session keeps messages in its Outbox and waits for room with a single
//! reservation; acknowledgements wait in a short control queue that, when over
//! [`CONTROL_BACKLOG`], holds back the client's next packet until the client reads.
//!
//! Hibernation: everybody addresses a session through its
//! [`SessionRef`](super::SessionRef). A session with nothing to do for
//! `session.hibernate_after` seconds (checked once per period: it goes between one and two
//! periods after its last activity) stops its actor and leaves in its slot a [`Dormant`]
//! record of what it holds that is not the default (48 bytes, inline in the slot, and a
//! boxed extra part only for rare state: a will, subscriptions, inbound QoS 2 ids,
//! permissions...); the first message that needs it starts the actor again,
//! rebuilt from the record, on the same arbiter (see the slot module for why nothing is
//! lost or reordered). Idle means: nothing queued or inflight, no control packet or
//! acknowledgement waiting, no publish held, no room reservation, no message pending on the
//! lane, no future of the actor's own pending (counted in `tasks`: routing, store writes,
//! the Registry's answers), not ending. An attached connection may stay: it answers PINGREQ
//! itself, Topics put QoS 0 messages on its link through the lane and QoS 1/2 ones through
//! [`Direct`] (which wakes a 3.x session to arm its resend timer), and the connection
//! applies PUBACKs of unstored messages itself. A dormant offline session's expiry is kept
//! by the Registry ([`WakeAt`]), which wakes it when it is due.

use super::direct::{Direct, Locked};
use super::envelope::Envelope;
use super::ids::ClientId;
use super::link::{AckKind, ClientLink, CloseReason, Epoch, Outbound, ReserveError};
use super::outbox::{Limits, Outbox, Outgoing};
use super::registry::{self, EnsureTopic, Retain, SessionEnded, SubscribeRefused, WakeAt};
use super::routes::{Offer, Subscription, TopicOffer};
use super::slot::{WeakSessionRef, Woken};
use super::topic::{Admission, Distribute};
use super::Node;
use crate::auth::Permissions;
use crate::codec::{
    self, reason, LastWill, Packet, Protocol, QoS, SubAck, SubscriptionOptions, UnsubAck,
};
use crate::config::QueueFull;
use crate::metrics::Metrics;
use crate::store::{
    self, Batch, Commit, Committed, InflightRecord, InflightStage, MessageRecord, QueuedRecord,
    SessionRecord, StoredSession, SubscriptionRecord,
};
use crate::topic::{validate_topic_filter, validate_topic_name};
use actix::dev::{EnvelopeProxy, MessageResponse};
use actix::fut::wrap_future;
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use slog::{debug, error, info, warn};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::num::NonZeroU32;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{oneshot, OwnedSemaphorePermit};

/// Mailbox size of a session.
pub const MAILBOX: usize = 64;

/// Acknowledgements a session holds for a client that does not read before it stops
/// taking the client's packets.
pub const CONTROL_BACKLOG: usize = 32;

/// PUBLISHes from the client waiting for their store writes before the connection waits
/// for the oldest of them.
pub const MAX_PENDING_ACKS: usize = 256;

/// A routing step that has to wait (for a Topic to start, or for room in a mailbox).
type Pending = Pin<Box<dyn Future<Output = ()>>>;

/// The publishes of the client held behind one whose routing waits, in order (boxed in
/// the session: only a publisher held back by a full mailbox or a starting Topic has one).
#[derive(Default)]
struct HeldRoutes(VecDeque<HeldRoute>);

/// A publish of the client held behind an earlier one whose routing waits.
struct HeldRoute {
    envelope: Envelope,
    acknowledge: bool,
    inbound: Option<(ClientId, u16)>,
    /// Gets the store writes of its routing, which its acknowledgement waits for.
    commits: oneshot::Sender<Vec<Committed>>,
    /// Completed once it is routed (its hand-over done).
    routed: oneshot::Sender<()>,
}

/// An acknowledgement waiting for the store writes of its PUBLISH.
struct PendingAck {
    /// Serial number, to find it when its writes complete.
    serial: u32,
    /// The connection the PUBLISH came from.
    epoch: Option<Epoch>,
    /// PUBACK or PUBREC; `None` once a write failed.
    ack: Option<Outbound>,
    /// Its writes completed.
    ready: bool,
}

/// The state of one client id; see the module documentation.
///
/// Every session actor is one tokio task allocation of the actix context (336 bytes), this
/// struct and the task header, rounded up to 128 bytes: at most 200 bytes here keep it at
/// 640. What an idle client does not need is allocated on use (`Lazy`, `Box`); the client
/// id lives in [`Direct`], and log lines go to the node's logger with the client id added
/// (no logger per session).
pub struct Session {
    /// Node dependencies (config, routes, registry, metrics, workers), shared by every
    /// session of the node.
    node: Arc<Node>,
    /// The attached connection, if the client is online.
    link: Option<ClientLink>,
    /// Protocol level of the last connection.
    protocol: Protocol,
    /// Outbound queue and inflight window, shared with Topics (QoS 1/2 direct path).
    direct: Arc<Direct>,
    /// Acknowledgements and SUBACK/UNSUBACK waiting for room on the link.
    control: Lazy<VecDeque<Outbound>>,
    /// Filters subscribed, with their options.
    subscriptions: Lazy<HashMap<String, Subscription>>,
    /// Inbound QoS 2 packet ids routed and PUBREC'd, awaiting PUBREL.
    inbound_qos2: Lazy<HashSet<u16>>,
    /// The will of the current connection (boxed: most clients have none, and a will is
    /// over 400 bytes).
    will: Option<Box<LastWill>>,
    /// How long the session outlives its connection, in seconds (zero: it ends with it).
    expiry_secs: u32,
    /// The expiry while offline, or the resend of unacknowledged messages while online.
    timer: Timer,
    /// Epoch of the link a room reservation is waiting on.
    waiting_for_room: Option<Epoch>,
    /// MQTT 5 Maximum Packet Size of the client (never 0: the codec refuses that).
    client_max_packet: Option<NonZeroU32>,
    /// Messages dropped since the outbox last had room (logged once per streak).
    overflow_streak: u32,
    /// The session is stopping; it accepts no new connection.
    ending: bool,
    /// What the attached connection's user may publish, subscribe and message.
    permissions: Permissions,
    /// A connection whose piped packet broke the protocol: its later packets are ignored.
    refused: Option<Epoch>,
    /// Set while the routing of one of the client's publishes waits (for a Topic to start,
    /// or for room in a mailbox): the later publishes, held in order until it is done.
    held_routes: Option<Box<HeldRoutes>>,
    /// Acknowledgements waiting for store writes, in PUBLISH order.
    acks: Lazy<VecDeque<PendingAck>>,
    /// Serial number of the next pending acknowledgement (wraps; at most
    /// [`MAX_PENDING_ACKS`] are pending at once).
    ack_serial: u32,
    /// How everybody addresses this session (see [`SessionRef`](super::SessionRef)).
    slot: WeakSessionRef,
    /// Futures of this actor still pending (a session waiting for anything is not idle).
    tasks: u32,
    /// Something happened since the last hibernation check.
    stirred: bool,
    /// This actor is the empty shell of a session gone dormant: stopping it changes nothing.
    hibernated: bool,
}

/// A session's one timer: the expiry runs only while the client is offline, the resend
/// only while it is online.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Timer {
    /// No timer runs.
    Idle,
    /// Restored offline after a restart: the expiry starts with the actor, after this many
    /// milliseconds.
    Restored(u64),
    /// Offline: the session expires at that instant.
    Expiry(SpawnHandle, Instant),
    /// Dormant and offline: the session expires at that instant (the Registry wakes it
    /// then; the actor's expiry starts again when it wakes).
    Until(Instant),
    /// Online, 3.x, something inflight: the periodic resend (see [`ArmRetry`]).
    Retry(SpawnHandle),
}

/// A collection an idle session does not need: nothing is allocated until it is first used,
/// and the actor holds 8 bytes instead of the collection's 32 or 48 (every session actor
/// is one allocation, rounded up to 128 bytes by tokio, so these add up per client). Its
/// methods are the collection's own that the session uses.
pub(super) struct Lazy<T>(Option<Box<T>>);

impl<T: std::fmt::Debug> std::fmt::Debug for Lazy<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl<T> Default for Lazy<T> {
    fn default() -> Self {
        Lazy(None)
    }
}

impl<T: Default> Lazy<T> {
    /// The collection, created on first use.
    fn get_mut(&mut self) -> &mut T {
        self.0.get_or_insert_with(Default::default)
    }
}

impl<T> Lazy<VecDeque<T>> {
    fn is_empty(&self) -> bool {
        self.0.as_ref().map_or(true, |q| q.is_empty())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.len())
    }

    fn push_back(&mut self, value: T) {
        self.get_mut().push_back(value);
    }

    /// The allocation is kept when the queue empties (it is on the publish path).
    fn pop_front(&mut self) -> Option<T> {
        self.0.as_mut()?.pop_front()
    }

    fn front(&self) -> Option<&T> {
        self.0.as_ref()?.front()
    }

    // A named type, not `impl Iterator`: the borrow then ends with its last use.
    fn iter_mut(
        &mut self,
    ) -> std::iter::Flatten<std::option::IntoIter<std::collections::vec_deque::IterMut<'_, T>>>
    {
        self.0
            .as_deref_mut()
            .map(VecDeque::iter_mut)
            .into_iter()
            .flatten()
    }

    /// Empties the queue and frees it.
    fn clear(&mut self) {
        self.0 = None;
    }
}

impl<T: std::hash::Hash + Eq> Lazy<HashSet<T>> {
    fn contains(&self, value: &T) -> bool {
        self.0.as_ref().is_some_and(|s| s.contains(value))
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |s| s.len())
    }

    fn insert(&mut self, value: T) -> bool {
        self.get_mut().insert(value)
    }

    /// The allocation is kept when the set empties (it is on the QoS 2 path).
    fn remove(&mut self, value: &T) -> bool {
        self.0.as_mut().is_some_and(|s| s.remove(value))
    }
}

impl<V> Lazy<HashMap<String, V>> {
    pub(super) fn contains_key(&self, key: &str) -> bool {
        self.0.as_ref().is_some_and(|m| m.contains_key(key))
    }

    pub(super) fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |m| m.len())
    }

    /// Adds or replaces the entry of `key`; returns the previous value.
    pub(super) fn insert(&mut self, key: String, value: V) -> Option<V> {
        self.0
            .get_or_insert_with(Default::default)
            .insert(key, value)
    }

    /// Removes the entry of `key`; the map is freed with its last entry.
    pub(super) fn remove(&mut self, key: &str) -> Option<V> {
        let map = self.0.as_mut()?;
        let removed = map.remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }

    /// Every (key, value).
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &V)> {
        self.0.iter().flat_map(|m| m.iter())
    }

    /// Every key.
    pub(super) fn keys(&self) -> impl Iterator<Item = &String> {
        self.iter().map(|(key, _)| key)
    }

    /// Every key, consuming the map.
    pub(super) fn into_keys(self) -> Vec<String> {
        self.0.map_or_else(Vec::new, |m| m.into_keys().collect())
    }
}

impl<K: std::hash::Hash + Eq, V> FromIterator<(K, V)> for Lazy<HashMap<K, V>> {
    /// Nothing is allocated for an empty iterator.
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let map: HashMap<K, V> = iter.into_iter().collect();
        Lazy((!map.is_empty()).then(|| Box::new(map)))
    }
}

impl<T: std::hash::Hash + Eq> FromIterator<T> for Lazy<HashSet<T>> {
    /// Nothing is allocated for an empty iterator.
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        let set: HashSet<T> = iter.into_iter().collect();
        Lazy((!set.is_empty()).then(|| Box::new(set)))
    }
}

#[cfg(test)]
mod lazy_tests {
    use super::Lazy;
    use std::collections::{HashMap, HashSet, VecDeque};

    #[test]
    fn lazy_collections_allocate_on_first_use_and_free_when_cleared() {
        let mut queue: Lazy<VecDeque<u8>> = Lazy::default();
        assert!(queue.is_empty() && queue.0.is_none());
        assert_eq!(queue.pop_front(), None);
        queue.push_back(1);
        queue.push_back(2);
        assert_eq!((queue.len(), queue.front()), (2, Some(&1)));
        for v in queue.iter_mut() {
            *v += 10;
        }
        assert_eq!(queue.pop_front(), Some(11));
        queue.clear();
        assert!(queue.is_empty() && queue.0.is_none());

        let mut ids: Lazy<HashSet<u16>> = Vec::new().into_iter().collect();
        assert!(ids.0.is_none() && !ids.contains(&7) && !ids.remove(&7));
        assert!(ids.insert(7));
        assert!(!ids.insert(7));
        assert_eq!(ids.len(), 1);
        assert!(ids.remove(&7) && !ids.contains(&7));
        assert_eq!(ids.len(), 0);

        let mut map: Lazy<HashMap<String, u8>> = [("a".to_string(), 1)].into_iter().collect();
        assert!(map.contains_key("a") && !map.contains_key("b"));
        assert_eq!(map.insert("b".into(), 2), None);
        assert_eq!(map.insert("b".into(), 3), Some(2));
        let mut keys: Vec<_> = map.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["a", "b"]);
        assert_eq!(map.remove("a"), Some(1));
        assert_eq!(map.remove("b"), Some(3));
        assert!(map.0.is_none(), "the map is freed with its last entry");
        assert_eq!(map.len(), 0);
        map.insert("c".into(), 4);
        assert_eq!(map.into_keys(), vec!["c".to_string()]);
    }
}

/// Fresh outbound state for a session of `client_id`, opened by `owner`, on `node`: an empty
/// outbox with the configured limits, a closed lane, a clear queue-full flag. It is what the
/// session shares beyond its actor ([`Direct`]): the Registry makes it before it starts the
/// actor (on the connection's arbiter), registers the session's handle in it and it in the
/// route snapshot at once, and hands it to Topics.
pub fn shared(client_id: ClientId, owner: Option<Arc<str>>, node: &Node) -> Arc<Direct> {
    let s = &node.config.session;
    let outbox = Outbox::new(Limits {
        max_messages: s.max_queued_messages,
        max_bytes: s.max_queued_bytes,
        max_inflight: s.max_inflight,
    });
    Arc::new(Direct::new(client_id, owner, outbox))
}

impl Session {
    /// A new, empty, offline session with `shared` outbound state (made for its client id
    /// with [`shared`]). `node` is shared by every session of the node (the Registry hands
    /// out one `Arc`).
    pub fn new(node: impl Into<Arc<Node>>, shared: Arc<Direct>) -> Self {
        let node = node.into();
        Session {
            link: None,
            protocol: Protocol::V311,
            direct: shared,
            control: Lazy::default(),
            subscriptions: Lazy::default(),
            inbound_qos2: Lazy::default(),
            will: None,
            expiry_secs: 0,
            timer: Timer::Idle,
            waiting_for_room: None,
            client_max_packet: None,
            overflow_streak: 0,
            ending: false,
            permissions: Permissions::default(),
            refused: None,
            held_routes: None,
            acks: Lazy::default(),
            ack_serial: 0,
            slot: WeakSessionRef::default(),
            tasks: 0,
            stirred: false,
            hibernated: false,
            node,
        }
    }

    /// A session brought back from the store after a restart: offline, with its
    /// subscriptions, queue (messages that were inflight first, resent with DUP) and the
    /// expiry it had left.
    pub fn restored(
        node: impl Into<Arc<Node>>,
        shared: Arc<Direct>,
        stored: StoredSession,
    ) -> Self {
        let mut session = Session::new(node, shared);
        let record = stored.record;
        session.protocol = match record.protocol {
            3 => Protocol::V31,
            5 => Protocol::V5,
            _ => Protocol::V311,
        };
        session.expiry_secs = u32::try_from(record.expiry_secs).unwrap_or(u32::MAX);
        session.subscriptions = record
            .subscriptions
            .iter()
            .map(subscription_from_record)
            .collect();
        session.inbound_qos2 = stored.inbound.into_iter().collect();
        session.outbox().set_last_packet_id(record.last_packet_id);
        for (seq, queued, inflight) in stored.queue {
            let message = Outgoing {
                envelope: envelope_from_record(&queued.message),
                qos: QoS::from_u8(queued.qos).unwrap_or(QoS::AtLeastOnce),
                retain: queued.retain,
                subscription_ids: queued.subscription_ids,
                seq: Some(seq),
            };
            match inflight {
                Some(f) if message.qos > QoS::AtMostOnce => session.outbox().restore_inflight(
                    message,
                    f.packet_id,
                    f.stage == InflightStage::Comp,
                ),
                _ => session.outbox().restore(message),
            }
        }
        let away = record
            .disconnected_at_ms
            .map_or(0, |at| store::now_ms().saturating_sub(at));
        let left = u64::from(session.expiry_secs) * 1000;
        session.timer = Timer::Restored(left.saturating_sub(away));
        session
    }
}

impl Actor for Session {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        match self.timer {
            Timer::Restored(left) => {
                self.timer = Timer::Idle;
                self.count_queue();
                if self.link.is_none() {
                    self.expire_after(Duration::from_millis(left), ctx);
                }
            }
            // Woken from dormancy: the expiry goes on where it was.
            Timer::Until(at) => {
                self.timer = Timer::Idle;
                if self.link.is_none() {
                    self.expire_at(at, ctx);
                }
            }
            Timer::Idle | Timer::Expiry(..) | Timer::Retry(_) => {}
        }
        self.hibernate_later(ctx);
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        if self.hibernated {
            // The session lives on, dormant: its lane, outbox and link stay as they are.
            return;
        }
        if let Some(slot) = self.slot.upgrade() {
            slot.ended();
        }
        // Topics may still find the lane and the outbox in the route entry until the
        // Registry removes it: a closed lane and no link send them to the mailbox.
        {
            let mut outbox = self.outbox();
            outbox.set_link(None);
            outbox.uncount(&self.node.metrics);
        }
        if let Some(link) = self.link.take() {
            link.close(CloseReason::ServerShutdown);
        }
    }
}

/// Attach a connection that sent CONNECT for this client id (its CONNACK is already on
/// the link). The answer is the session's outbound state, where the connection applies
/// the client's PUBACKs and PUBCOMPs itself when nothing else is to be done
/// ([`Direct::try_release`]).
#[derive(Message)]
#[rtype(result = "Result<Arc<Direct>, SessionGone>")]
pub struct Attach {
    /// The connection's outbound handle.
    pub link: ClientLink,
    /// What the CONNECT asked for.
    pub options: AttachOptions,
}

/// Per-connection settings taken from CONNECT.
#[derive(Debug, Clone, Default)]
pub struct AttachOptions {
    /// The will to publish if the connection is lost.
    pub will: Option<LastWill>,
    /// How long the session outlives the connection (zero: it ends with it).
    pub expiry: Duration,
    /// MQTT 5 Receive Maximum of the client.
    pub receive_maximum: Option<u16>,
    /// MQTT 5 Maximum Packet Size of the client.
    pub max_packet_size: Option<u32>,
    /// What the connection's user may do (topic permissions).
    pub permissions: Permissions,
}

/// The session is stopping; ask the Registry for a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("session is ending")]
pub struct SessionGone;

impl Handler<Attach> for Session {
    type Result = Result<Arc<Direct>, SessionGone>;

    fn handle(&mut self, msg: Attach, ctx: &mut Self::Context) -> Self::Result {
        if self.ending {
            return Err(SessionGone);
        }
        if let Some(old) = self.link.take() {
            old.close(CloseReason::TakenOver);
            info!(self.node.log, "session taken over"; "client_id" => %self.client_id(),
                "old_connection" => %old.epoch(), "connection" => %msg.link.epoch());
        }
        self.stop_timer(ctx);
        let options = msg.options;
        self.protocol = msg.link.protocol();
        self.will = options.will.map(Box::new);
        self.expiry_secs = expiry_secs(options.expiry);
        self.client_max_packet = options.max_packet_size.and_then(NonZeroU32::new);
        self.permissions = options.permissions;
        let window = options
            .receive_maximum
            .map_or(self.node.config.session.max_inflight, |r| {
                r.min(self.node.config.session.max_inflight)
            });
        {
            // One step for Topics: the new link comes with every inflight message due again,
            // and a closed lane (they wait until this pump has resent what is due on it).
            let mut outbox = self.outbox();
            outbox.set_max_inflight(window);
            outbox.resend_all();
            outbox.set_link(Some(msg.link.clone()));
            outbox.set_queue_ok(false);
        }
        self.control.clear();
        self.link = Some(msg.link);
        if self.persistent() {
            self.save(None);
        }
        // Arms the resend timer (3.x) if anything is inflight.
        self.pump(ctx);
        Ok(self.direct.clone())
    }
}

/// A Topic put a QoS 1/2 message on the link of an idle 3.x session ([`Direct`]): its
/// resend timer must run. Sent once per transition from nothing inflight to something.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct ArmRetry;

impl Handler<ArmRetry> for Session {
    type Result = ();

    fn handle(&mut self, _msg: ArmRetry, ctx: &mut Self::Context) {
        self.arm_retry(ctx);
    }
}

/// A packet from the client, to be handled in order.
#[derive(Message)]
#[rtype(result = "Result<(), InboundError>")]
pub struct Inbound {
    /// Epoch of the connection it came from.
    pub epoch: Epoch,
    /// The packet: PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBSCRIBE or UNSUBSCRIBE.
    pub packet: Packet,
}

/// Why the connection must close after an inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InboundError {
    /// The connection is no longer the session's current one (taken over).
    #[error("connection was taken over")]
    Stale,
    /// The packet breaks the protocol; `reason` is the MQTT 5 DISCONNECT reason code.
    #[error("protocol violation: {what}")]
    Violation {
        /// MQTT 5 reason code for the DISCONNECT.
        reason: u8,
        /// What was wrong, citing the specification.
        what: &'static str,
    },
}

impl Handler<Inbound> for Session {
    type Result = ActorResponse<Self, Result<(), InboundError>>;

    fn handle(&mut self, msg: Inbound, ctx: &mut Self::Context) -> Self::Result {
        if self.link.as_ref().map(ClientLink::epoch) != Some(msg.epoch)
            || self.refused == Some(msg.epoch)
        {
            return ActorResponse::reply(Err(InboundError::Stale));
        }
        let v5 = self.protocol == Protocol::V5;
        match msg.packet {
            Packet::Publish(publish) => return self.on_publish(publish, ctx),
            Packet::Subscribe(subscribe) => return self.on_subscribe(subscribe),
            Packet::Unsubscribe(unsubscribe) => return self.on_unsubscribe(unsubscribe),
            Packet::PubAck(ack) => self.on_puback(ack.packet_id),
            Packet::PubRec(rec) => {
                let received = if v5 && rec.reason >= 0x80 {
                    None
                } else {
                    self.outbox().received(rec.packet_id).map(|m| m.seq)
                };
                if v5 && rec.reason >= 0x80 {
                    let refused = self.outbox().refused(rec.packet_id);
                    self.forget_stored(refused.and_then(|m| m.seq));
                } else if let Some(seq) = received {
                    if let Some(seq) = seq {
                        let mut batch = Batch::new();
                        let state = InflightRecord {
                            packet_id: rec.packet_id,
                            stage: InflightStage::Comp,
                        };
                        batch.put_inflight(self.client_id().as_str(), seq, &state);
                        self.node.store.submit(batch);
                    }
                } else {
                    debug!(self.node.log, "PUBREC for unknown packet id"; "client_id" => %self.client_id(), "packet_id" => rec.packet_id);
                    if v5 {
                        self.reply(Outbound::ack(
                            AckKind::PubRel,
                            rec.packet_id,
                            reason::PACKET_IDENTIFIER_NOT_FOUND,
                        ));
                    }
                }
            }
            Packet::PubRel(rel) => {
                // [MQTT-4.3.3-12] PUBCOMP also for an id already completed, so the client
                // cannot hang; MQTT 5 says the id was not found.
                let known = self.inbound_qos2.remove(&rel.packet_id);
                if known && self.persistent() {
                    let mut batch = Batch::new();
                    batch.del_inbound(self.client_id().as_str(), rel.packet_id);
                    self.node.store.submit(batch);
                }
                let code = if known || !v5 {
                    reason::SUCCESS
                } else {
                    reason::PACKET_IDENTIFIER_NOT_FOUND
                };
                self.reply(Outbound::ack(AckKind::PubComp, rel.packet_id, code));
            }
            Packet::PubComp(comp) => self.on_pubcomp(comp.packet_id),
            _ => {
                return ActorResponse::reply(Err(InboundError::Violation {
                    reason: reason::PROTOCOL_ERROR,
                    what: "[MQTT-3.1.0-1] unexpected packet type from a client",
                }))
            }
        }
        self.pump(ctx);
        self.settle()
    }
}

/// An [`Inbound`] packet the connection does not wait for (PUBLISH and the
/// acknowledgements), so that it can decode and hand over the next one at once. Order is
/// kept (one mailbox; routing that has to wait holds back the client's later publishes),
/// and so is backpressure: the connection holds a bounded number of permits and `permit` is
/// released only once the packet is fully handled. A protocol violation closes the link
/// with [`CloseReason::Violation`], and the connection's later packets are ignored.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Piped {
    /// The packet.
    pub inbound: Inbound,
    /// The connection's pipeline slot, held until the packet is handled.
    pub permit: OwnedSemaphorePermit,
}

impl Handler<Piped> for Session {
    type Result = ();

    fn handle(&mut self, msg: Piped, ctx: &mut Self::Context) {
        let Piped { inbound, permit } = msg;
        let epoch = inbound.epoch;
        // The client acknowledging a message: nothing to answer or wait for, so no response
        // is built (the common case of a subscriber's PUBACK).
        let current = self.link.as_ref().map(ClientLink::epoch) == Some(epoch)
            && self.refused != Some(epoch)
            && self.control.len() <= CONTROL_BACKLOG;
        match &inbound.packet {
            Packet::PubAck(ack) if current => {
                self.on_puback(ack.packet_id);
                self.pump(ctx);
                return;
            }
            Packet::PubComp(comp) if current => {
                self.on_pubcomp(comp.packet_id);
                self.pump(ctx);
                return;
            }
            _ => {}
        }
        let response = Handler::<Inbound>::handle(self, inbound, ctx);
        let (tx, mut rx) = oneshot::channel();
        MessageResponse::<Session, Inbound>::handle(response, ctx, Some(tx));
        match rx.try_recv() {
            Ok(result) => self.piped_result(epoch, result),
            Err(oneshot::error::TryRecvError::Empty) => {
                self.spawn_counted(
                    ctx,
                    wrap_future(rx).map(move |result, act: &mut Self, _| {
                        drop(permit);
                        if let Ok(result) = result {
                            act.piped_result(epoch, result);
                        }
                    }),
                );
            }
            Err(oneshot::error::TryRecvError::Closed) => {}
        }
    }
}

/// The client's connection went away.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Detached {
    /// Epoch of the connection that went away.
    pub epoch: Epoch,
    /// Publish the will: the connection was lost without DISCONNECT (or MQTT 5 DISCONNECT
    /// 0x04 asked for it).
    pub publish_will: bool,
    /// MQTT 5 DISCONNECT Session Expiry Interval, replacing the CONNECT value.
    pub session_expiry: Option<u32>,
}

impl Handler<Detached> for Session {
    type Result = ();

    fn handle(&mut self, msg: Detached, ctx: &mut Self::Context) {
        if self.link.as_ref().map(ClientLink::epoch) != Some(msg.epoch) {
            return;
        }
        self.link = None;
        self.outbox().set_link(None);
        self.control.clear();
        self.stop_timer(ctx);
        if let Some(secs) = msg.session_expiry {
            self.expiry_secs = expiry_secs(session_expiry(secs, self.node.config.session.max_age));
        }
        let will = self.will.take();
        if msg.publish_will {
            if let Some(will) = will {
                info!(self.node.log, "publishing will";
                    "client_id" => %self.client_id(), "topic" => %will.topic);
                let envelope = Envelope::from_will(self.client_id().clone(), *will);
                // Detached from this actor so that a session ending now still publishes it.
                if let Some(pending) = route(&self.node, envelope, false, None).pending {
                    actix_rt::spawn(pending);
                }
            }
        }
        info!(self.node.log, "client detached"; "client_id" => %self.client_id(),
            "connection" => %msg.epoch, "expiry_secs" => self.expiry_secs);
        if self.expiry_secs == 0 {
            self.end(ctx);
        } else {
            self.save(None);
            self.expire_after(Duration::from_secs(self.expiry_secs.into()), ctx);
        }
    }
}

/// A message for this client, from a Topic or a direct message.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Deliver {
    /// The message.
    pub envelope: Envelope,
    /// Delivery QoS.
    pub qos: QoS,
    /// RETAIN flag on the wire.
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Whether and how the message is in the store.
    pub persist: Persist,
}

/// How a delivery is made durable.
#[derive(Debug)]
pub enum Persist {
    /// The sender (a Topic) stored it in this session's queue under this sequence number.
    Stored(u64),
    /// Not stored: the session is not persistent, or the delivery is QoS 0.
    Volatile,
    /// A direct message: the receiving session stores it if it is persistent.
    ByReceiver(Durable),
}

/// What a store write made for a publish reports back, and writes along with it.
#[derive(Debug, Default)]
pub struct Durable {
    /// Completed once the write is durable; dropped if nothing had to be written.
    pub commit: Option<Commit>,
    /// The publisher's client id and QoS 2 packet id, stored with the message so that a
    /// resend after a restart is recognised (only for a persistent publisher).
    pub inbound: Option<(ClientId, u16)>,
}

impl Handler<Deliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: Deliver, ctx: &mut Self::Context) {
        if self.ending {
            return;
        }
        let seq = match msg.persist {
            Persist::Stored(seq) => Some(seq),
            Persist::Volatile => None,
            Persist::ByReceiver(durable) => {
                if self.persistent() && msg.qos > QoS::AtMostOnce {
                    let seq = self.node.store.next_seq();
                    let record =
                        queued_record(&msg.envelope, msg.qos, msg.retain, &msg.subscription_ids);
                    let mut batch = Batch::new();
                    batch.put_queued(self.client_id().as_str(), seq, &record);
                    if let Some((from, packet_id)) = &durable.inbound {
                        batch.put_inbound(from.as_str(), *packet_id);
                    }
                    self.node.store.submit_durable(batch, durable.commit, None);
                    Some(seq)
                } else {
                    None
                }
            }
        };
        let outgoing = Outgoing {
            envelope: msg.envelope,
            qos: msg.qos,
            retain: msg.retain,
            subscription_ids: msg.subscription_ids,
            seq,
        };
        self.enqueue(outgoing);
        self.pump(ctx);
    }
}

/// A [`Deliver`] from a Topic that counted it as pending in this session's [`Direct`]: once
/// it is queued or written, later messages may take the lane again.
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct LaneDeliver(pub Deliver);

impl Handler<LaneDeliver> for Session {
    type Result = ();

    fn handle(&mut self, msg: LaneDeliver, ctx: &mut Self::Context) {
        Handler::<Deliver>::handle(self, msg.0, ctx);
        self.direct.settled();
    }
}

/// A clean start replaced this session: close the connection (without will) and stop.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Discard;

impl Handler<Discard> for Session {
    type Result = ();

    fn handle(&mut self, _msg: Discard, ctx: &mut Self::Context) {
        self.ending = true;
        self.will = None;
        self.outbox().set_link(None);
        if let Some(link) = self.link.take() {
            link.close(CloseReason::TakenOver);
        }
        debug!(self.node.log, "session discarded"; "client_id" => %self.client_id());
        ctx.stop();
    }
}

/// Sent by the session to itself, through its mailbox, once its slot is hibernating:
/// every message sent before is handled first (see [`SessionRef`](super::SessionRef) for the protocol).
#[derive(Message)]
#[rtype(result = "()")]
pub struct Hibernate;

impl Handler<Hibernate> for Session {
    type Result = ();

    fn handle(&mut self, _msg: Hibernate, ctx: &mut Self::Context) {
        let Some(slot) = self.slot.upgrade() else {
            return;
        };
        if let Timer::Retry(handle) = self.timer {
            // Its next tick would find nothing inflight. Stopped under the outbox's lock
            // (`arm_retry`), so that a Topic that puts a message in flight from now on tells
            // the session to arm it again (through the slot, which keeps it awake).
            ctx.cancel_future(handle);
            self.timer = Timer::Idle;
            self.arm_retry(ctx);
        }
        let idle = self.may_hibernate();
        let woken = slot.end_hibernation(idle, || self.leave_dormant(ctx));
        match woken {
            Woken::Dormant => {
                debug!(self.node.log, "session dormant"; "client_id" => %self.client_id());
                ctx.stop();
            }
            Woken::Live(queue) => {
                // Sent while it was hibernating: handled now, in order, before anything
                // that reaches the mailbox from here on.
                for mut envelope in queue {
                    if ctx.state() != ActorState::Running {
                        break;
                    }
                    EnvelopeProxy::handle(&mut envelope, self, ctx);
                }
                self.hibernate_later(ctx);
            }
        }
    }
}

/// Wakes a dormant session and does nothing else: its timers resume as it starts (the
/// Registry sends it when a dormant offline session's expiry is due).
#[derive(Message, Debug)]
#[rtype(result = "()")]
pub struct Wake;

impl Handler<Wake> for Session {
    type Result = ();

    fn handle(&mut self, _msg: Wake, _ctx: &mut Self::Context) {}
}

/// What a dormant session leaves in its slot, where its actor starts again from: only what
/// an idle session can hold that is not the default (see `Session::may_hibernate` for
/// what is empty then), so that the common idle session (no will, no subscriptions,
/// default permissions, anonymous, online) pays for this compact part only, and the rare
/// rest goes into one boxed `DormantExtras`. Everything else of the [`Session`] is its
/// default when it wakes: no control packet, acknowledgement, held publish, room
/// reservation or task is pending, the resend timer does not run, and the serial of the
/// next pending acknowledgement may start again (no pending one holds one).
pub struct Dormant {
    node: Arc<Node>,
    /// The arbiter its actor starts again on.
    arbiter: ArbiterHandle,
    direct: Arc<Direct>,
    link: Option<ClientLink>,
    /// `None` while all of it would be the default.
    extras: Option<Box<DormantExtras>>,
    expiry_secs: u32,
    protocol: Protocol,
}

/// The rarely non-default state of a dormant session (see [`Dormant`]).
#[derive(Default)]
struct DormantExtras {
    will: Option<Box<LastWill>>,
    subscriptions: Lazy<HashMap<String, Subscription>>,
    inbound_qos2: Lazy<HashSet<u16>>,
    /// Offline: when the session expires ([`Timer::Until`]).
    expires_at: Option<Instant>,
    permissions: Permissions,
    refused: Option<Epoch>,
    client_max_packet: Option<NonZeroU32>,
    overflow_streak: u32,
}

impl DormantExtras {
    /// True when every part is the default (then nothing needs to be kept).
    fn is_default(&self) -> bool {
        self.will.is_none()
            && self.subscriptions.0.is_none()
            && self.inbound_qos2.0.is_none()
            && self.expires_at.is_none()
            && self.permissions == Permissions::default()
            && self.refused.is_none()
            && self.client_max_packet.is_none()
            && self.overflow_streak == 0
    }
}

impl Session {
    /// Starts the actor of a dormant session again, on its arbiter, rebuilt from its
    /// record; `slot` is how everybody addresses it.
    pub(super) fn wake(dormant: Dormant, slot: WeakSessionRef) -> Addr<Session> {
        let Dormant {
            node,
            arbiter,
            direct,
            link,
            extras,
            expiry_secs,
            protocol,
        } = dormant;
        Metrics::sub(&node.metrics.sessions_dormant, 1);
        let mut session = Session::new(node, direct);
        session.slot = slot;
        session.link = link;
        session.expiry_secs = expiry_secs;
        session.protocol = protocol;
        if let Some(extras) = extras {
            let DormantExtras {
                will,
                subscriptions,
                inbound_qos2,
                expires_at,
                permissions,
                refused,
                client_max_packet,
                overflow_streak,
            } = *extras;
            session.will = will;
            session.subscriptions = subscriptions;
            session.inbound_qos2 = inbound_qos2;
            // The actor's expiry starts again as it starts.
            session.timer = expires_at.map_or(Timer::Idle, Timer::Until);
            session.permissions = permissions;
            session.refused = refused;
            session.client_max_packet = client_max_packet;
            session.overflow_streak = overflow_streak;
        }
        Session::start_in_arbiter(&arbiter, move |_| session)
    }

    /// How everybody addresses this session (set once, before the actor starts).
    pub(super) fn set_slot(&mut self, slot: WeakSessionRef) {
        self.slot = slot;
    }

    /// True when the session has nothing to do that needs its actor: nothing queued or
    /// inflight, no control packet or acknowledgement waiting, no publish held, no room
    /// reservation, no message pending on its lane, no future of its own pending, no resend
    /// timer, not ending. An attached connection may stay: it answers PINGREQ itself, and
    /// QoS 0 messages reach it through the lane.
    fn may_hibernate(&self) -> bool {
        // A resend timer with nothing inflight (the outbox is empty) is stopped as the
        // session hibernates.
        !self.ending
            && !self.hibernated
            && self.tasks == 0
            && self.control.is_empty()
            && self.acks.is_empty()
            && self.held_routes.is_none()
            && self.waiting_for_room.is_none()
            && !matches!(self.timer, Timer::Restored(_) | Timer::Until(_))
            && !self.direct.is_full()
            && self.direct.nothing_pending()
            && self.outbox().is_empty()
    }

    /// Checks for idleness after `session.hibernate_after` (0: never).
    fn hibernate_later(&mut self, ctx: &mut Context<Self>) {
        let secs = self.node.config.session.hibernate_after;
        if secs == 0 {
            return;
        }
        self.stirred = false;
        ctx.run_later(Duration::from_secs(secs), |act, ctx| {
            if act.ending {
                return;
            }
            // Idle now, and nothing happened for a whole period.
            if act.stirred || !act.try_hibernate(ctx) {
                act.hibernate_later(ctx);
            }
        });
    }

    /// Begins hibernating if the session is idle and nobody waits for room in its
    /// mailbox: its slot queues what is sent from now on, and the [`Hibernate`] it sends
    /// itself comes after everything sent before. True when it began.
    fn try_hibernate(&mut self, ctx: &mut Context<Self>) -> bool {
        if !self.begin_hibernation() {
            return false;
        }
        ctx.address().do_send(Hibernate);
        true
    }

    /// Sets the slot hibernating if the session is idle and nobody waits for room in its
    /// mailbox; the caller then sends [`Hibernate`] through the mailbox.
    fn begin_hibernation(&self) -> bool {
        self.may_hibernate()
            && self
                .slot
                .upgrade()
                .is_some_and(|slot| slot.begin_hibernation())
    }

    /// The record this idle session leaves in its slot (under the slot's lock); this actor
    /// is left an empty shell, which stops. Every field is taken apart here, so that a new
    /// one must be kept in the record or known to be the default when idle.
    fn leave_dormant(&mut self, ctx: &mut Context<Self>) -> Dormant {
        let shell = Session {
            hibernated: true,
            ..Session::new(self.node.clone(), self.direct.clone())
        };
        let Session {
            node,
            link,
            protocol,
            direct,
            control,
            subscriptions,
            inbound_qos2,
            will,
            expiry_secs,
            timer,
            waiting_for_room,
            client_max_packet,
            overflow_streak,
            ending,
            permissions,
            refused,
            held_routes,
            acks,
            ack_serial: _,
            slot: _,
            tasks,
            stirred: _,
            hibernated,
        } = std::mem::replace(self, shell);
        // What `may_hibernate` found empty; their allocations are let go.
        debug_assert!(control.is_empty() && acks.is_empty() && held_routes.is_none());
        debug_assert!(waiting_for_room.is_none() && tasks == 0 && !ending && !hibernated);
        let expires_at = match timer {
            Timer::Expiry(handle, at) => {
                ctx.cancel_future(handle);
                node.registry.do_send(WakeAt {
                    client_id: direct.client_id().clone(),
                    at,
                });
                Some(at)
            }
            Timer::Idle => None,
            // Not idle (`may_hibernate`), or stopped by the `Hibernate` handler.
            Timer::Restored(_) | Timer::Until(_) | Timer::Retry(_) => {
                debug_assert!(false, "a hibernating session's timer is {timer:?}");
                None
            }
        };
        let extras = DormantExtras {
            will,
            subscriptions,
            // Kept when it empties (on the QoS 2 path): not while dormant.
            inbound_qos2: Lazy(inbound_qos2.0.filter(|ids| !ids.is_empty())),
            expires_at,
            permissions,
            refused,
            client_max_packet,
            overflow_streak,
        };
        Metrics::incr(&node.metrics.sessions_dormant);
        Dormant {
            node,
            arbiter: Arbiter::current(),
            direct,
            link,
            extras: (!extras.is_default()).then(|| Box::new(extras)),
            expiry_secs,
            protocol,
        }
    }
}

impl Session {
    fn on_publish(
        &mut self,
        publish: codec::Publish,
        ctx: &mut Context<Self>,
    ) -> ActorResponse<Self, Result<(), InboundError>> {
        if publish.properties.topic_alias.is_some() {
            return ActorResponse::reply(Err(InboundError::Violation {
                reason: reason::TOPIC_ALIAS_INVALID,
                what: "[MQTT-3.3.2-8] topic alias above the server's Topic Alias Maximum (0)",
            }));
        }
        let cfg = &self.node.config.mqtt;
        if let Err(e) =
            validate_topic_name(&publish.topic, cfg.max_topic_length, cfg.max_topic_levels)
        {
            warn!(self.node.log, "invalid topic name in PUBLISH"; "client_id" => %self.client_id(), "error" => %e);
            return ActorResponse::reply(Err(InboundError::Violation {
                reason: reason::TOPIC_NAME_INVALID,
                what: "[MQTT-3.3.2-2] invalid topic name in PUBLISH",
            }));
        }
        if let Some(refused) = self.refuse_publish(&publish, ctx) {
            return refused;
        }
        let qos = publish.qos;
        let packet_id = publish.packet_id.unwrap_or(0);
        let ack = match qos {
            QoS::AtMostOnce => None,
            QoS::AtLeastOnce => Some(Outbound::ack(AckKind::PubAck, packet_id, reason::SUCCESS)),
            QoS::ExactlyOnce => {
                let rec = Outbound::ack(AckKind::PubRec, packet_id, reason::SUCCESS);
                if self.inbound_qos2.contains(&packet_id) {
                    // A resend of a message already routed: acknowledge (after the
                    // acknowledgements still waiting for their routing), do not route again.
                    self.ack_in_order(rec, ctx);
                    return self.settle();
                }
                if self.inbound_qos2.len()
                    >= usize::from(self.node.config.session.max_inbound_pending)
                {
                    return ActorResponse::reply(Err(InboundError::Violation {
                        reason: reason::RECEIVE_MAXIMUM_EXCEEDED,
                        what: "[MQTT-3.3.4-7] more QoS 2 messages awaiting PUBREL than Receive Maximum",
                    }));
                }
                self.inbound_qos2.insert(packet_id);
                Some(rec)
            }
        };
        let envelope = Envelope::from_publish(self.client_id().clone(), publish);
        let inbound = (qos == QoS::ExactlyOnce && self.persistent())
            .then(|| (self.client_id().clone(), packet_id));
        let acknowledge = ack.is_some();
        let (pending, commits) = match self.held_routes.as_mut() {
            None => {
                let routed = route(&self.node, envelope, acknowledge, inbound);
                let pending = routed.pending.map(|pending| {
                    // Later publishes of this client wait behind this one.
                    self.held_routes = Some(Box::default());
                    let (routed, done) = oneshot::channel();
                    self.resume_routes_after(pending, routed, ctx);
                    Box::pin(async move {
                        let _ = done.await;
                    }) as Pending
                });
                (pending, Commits::Now(routed.commits))
            }
            // An earlier publish is still being routed: this one goes after it.
            Some(held) => {
                let (commits, later) = oneshot::channel();
                let (routed, done) = oneshot::channel();
                held.0.push_back(HeldRoute {
                    envelope,
                    acknowledge,
                    inbound,
                    commits,
                    routed,
                });
                let pending: Pending = Box::pin(async move {
                    let _ = done.await;
                });
                (Some(pending), Commits::Later(later))
            }
        };
        let Some(ack) = ack else {
            return match pending {
                None => self.settle(),
                Some(pending) => self.respond(wrap_future(pending).map(|(), _, _| Ok(()))),
            };
        };
        if commits.is_empty() && pending.is_none() && self.acks.is_empty() {
            // Nothing to wait for (no subscriber, or none persistent and no retain).
            self.reply(ack);
            self.pump(ctx);
            return self.settle();
        }
        let serial = self.queue_ack(ack, false);
        let durable = commits.wait();
        let over = self.acks.len() > MAX_PENDING_ACKS;
        match (pending, over) {
            (pending, true) => {
                // Too many answers outstanding: this PUBLISH waits for its own writes.
                let all = async move {
                    if let Some(pending) = pending {
                        pending.await;
                    }
                    durable.await
                };
                self.respond(wrap_future(all).map(move |outcome, act: &mut Self, ctx| {
                    act.ack_ready(serial, outcome, ctx);
                    Ok(())
                }))
            }
            (pending, false) => {
                self.spawn_counted(
                    ctx,
                    wrap_future(durable).map(move |outcome, act: &mut Self, ctx| {
                        act.ack_ready(serial, outcome, ctx)
                    }),
                );
                match pending {
                    None => self.settle(),
                    Some(pending) => self.respond(wrap_future(pending).map(|(), _, _| Ok(()))),
                }
            }
        }
    }

    /// Waits for the `pending` hand-over of a publish, tells it through `routed`, then
    /// routes the publishes held behind it.
    fn resume_routes_after(
        &mut self,
        pending: Pending,
        routed: oneshot::Sender<()>,
        ctx: &mut Context<Self>,
    ) {
        self.spawn_counted(
            ctx,
            wrap_future(pending).map(move |(), act: &mut Self, ctx| {
                let _ = routed.send(());
                act.resume_routes(ctx);
            }),
        );
    }

    /// Routes the held publishes in order, all in this turn (so that their Topics get them
    /// together), until one has to wait again; with none left, routing stops holding.
    fn resume_routes(&mut self, ctx: &mut Context<Self>) {
        while let Some(next) = self
            .held_routes
            .as_mut()
            .and_then(|held| held.0.pop_front())
        {
            let routed = route(&self.node, next.envelope, next.acknowledge, next.inbound);
            let _ = next.commits.send(routed.commits);
            match routed.pending {
                None => {
                    let _ = next.routed.send(());
                }
                Some(pending) => {
                    self.resume_routes_after(pending, next.routed, ctx);
                    return;
                }
            }
        }
        self.held_routes = None;
    }

    /// Sends an acknowledgement that waits for nothing, after those still waiting for their
    /// writes (acknowledgements go out in PUBLISH order).
    fn ack_in_order(&mut self, ack: Outbound, ctx: &mut Context<Self>) {
        if self.acks.is_empty() {
            self.reply(ack);
            self.pump(ctx);
            return;
        }
        self.queue_ack(ack, true);
    }

    /// Puts an acknowledgement at the end of those waiting (ready: nothing to wait for
    /// but the ones before it); returns its serial number.
    fn queue_ack(&mut self, ack: Outbound, ready: bool) -> u32 {
        let serial = self.ack_serial;
        self.ack_serial = serial.wrapping_add(1);
        self.acks.push_back(PendingAck {
            serial,
            epoch: self.link.as_ref().map(ClientLink::epoch),
            ack: Some(ack),
            ready,
        });
        serial
    }

    fn on_subscribe(
        &mut self,
        subscribe: codec::Subscribe,
    ) -> ActorResponse<Self, Result<(), InboundError>> {
        let v5 = self.protocol == Protocol::V5;
        let failure = move |code: u8| if v5 { code } else { 0x80 };
        let cfg = &self.node.config.mqtt;
        let identifier = subscribe
            .properties
            .subscription_identifiers
            .first()
            .copied();
        let mut codes = vec![0u8; subscribe.topics.len()];
        let mut positions = Vec::new();
        let mut requests: Vec<(String, Subscription)> = Vec::new();
        let mut added = 0usize;
        for (i, entry) in subscribe.topics.into_iter().enumerate() {
            if let Err(e) =
                validate_topic_filter(&entry.filter, cfg.max_topic_length, cfg.max_topic_levels)
            {
                debug!(self.node.log, "invalid filter refused"; "client_id" => %self.client_id(), "error" => %e);
                codes[i] = failure(reason::TOPIC_FILTER_INVALID);
                continue;
            }
            if entry.filter.starts_with("$share/") {
                codes[i] = failure(reason::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED);
                continue;
            }
            if !self.permissions.may_subscribe(&entry.filter) {
                info!(self.node.log, "subscription not authorized"; "client_id" => %self.client_id(), "filter" => &entry.filter);
                codes[i] = failure(reason::NOT_AUTHORIZED);
                continue;
            }
            let new = !self.subscriptions.contains_key(&entry.filter)
                && !requests.iter().any(|(f, _)| *f == entry.filter);
            if new && self.subscriptions.len() + added >= cfg.max_subscriptions {
                codes[i] = failure(reason::QUOTA_EXCEEDED);
                continue;
            }
            added += usize::from(new);
            positions.push(i);
            requests.push((
                entry.filter,
                Subscription {
                    options: entry.options,
                    identifier,
                },
            ));
        }
        let packet_id = subscribe.packet_id;
        let epoch = self.link.as_ref().map(ClientLink::epoch);
        let recorded: Vec<(String, Subscription)> = requests.clone();
        let request = self.node.registry.send(registry::Subscribe {
            client_id: self.client_id().clone(),
            filters: requests,
        });
        self.respond(
            wrap_future(request).then(move |result, act: &mut Self, _ctx| {
                let mut retained = Vec::new();
                match result {
                    Ok(subscribed) => {
                        let outcomes = positions.into_iter().zip(recorded).zip(subscribed.granted);
                        for ((i, (filter, subscription)), outcome) in outcomes {
                            codes[i] = match outcome {
                                Ok(qos) => {
                                    act.subscriptions.insert(filter, subscription);
                                    qos as u8
                                }
                                Err(SubscribeRefused::ClientId) => failure(reason::NOT_AUTHORIZED),
                                Err(SubscribeRefused::NoSession) => {
                                    failure(reason::UNSPECIFIED_ERROR)
                                }
                            };
                        }
                        retained = subscribed.retained;
                    }
                    Err(_) => {
                        for i in positions {
                            codes[i] = failure(reason::UNSPECIFIED_ERROR);
                        }
                    }
                }
                // A persistent session's subscriptions are durable before the SUBACK.
                let saved = act.persistent().then(|| {
                    let (commit, committed) = store::commit();
                    act.save(Some(commit));
                    committed
                });
                wrap_future(async move {
                    match saved {
                        Some(committed) => committed.wait().await,
                        None => Ok(()),
                    }
                })
                .map(move |outcome, act: &mut Self, ctx| {
                    if let Err(e) = outcome {
                        act.store_failed(&e);
                        return Ok(());
                    }
                    if act.link.as_ref().map(ClientLink::epoch) == epoch {
                        act.reply(Outbound::packet(Packet::SubAck(SubAck {
                            packet_id,
                            return_codes: codes,
                            ..Default::default()
                        })));
                    }
                    // Retained messages go out after the SUBACK, with RETAIN=1 ([MQTT-3.3.1-8]).
                    let ids: Vec<u32> = identifier.into_iter().collect();
                    for (envelope, qos) in retained {
                        act.enqueue(Outgoing {
                            envelope,
                            qos,
                            retain: true,
                            subscription_ids: ids.clone(),
                            seq: None,
                        });
                    }
                    act.pump(ctx);
                    Ok(())
                })
            }),
        )
    }

    fn on_unsubscribe(
        &mut self,
        unsubscribe: codec::Unsubscribe,
    ) -> ActorResponse<Self, Result<(), InboundError>> {
        let v5 = self.protocol == Protocol::V5;
        let reason_codes: Vec<u8> = unsubscribe
            .filters
            .iter()
            .map(|f| match (self.subscriptions.remove(f).is_some(), v5) {
                (_, false) => None,
                (true, true) => Some(reason::SUCCESS),
                (false, true) => Some(reason::NO_SUBSCRIPTION_EXISTED),
            })
            .collect::<Option<Vec<u8>>>()
            .unwrap_or_default();
        let packet_id = unsubscribe.packet_id;
        let epoch = self.link.as_ref().map(ClientLink::epoch);
        let request = self.node.registry.send(registry::Unsubscribe {
            client_id: self.client_id().clone(),
            filters: unsubscribe.filters,
        });
        // UNSUBACK only after the Registry stopped routing to these filters.
        self.respond(wrap_future(request).map(move |_, act: &mut Self, ctx| {
            if act.persistent() {
                act.save(None);
            }
            if act.link.as_ref().map(ClientLink::epoch) == epoch {
                act.reply(Outbound::packet(Packet::UnsubAck(UnsubAck {
                    packet_id,
                    reason_codes,
                    ..Default::default()
                })));
                act.pump(ctx);
            }
            Ok(())
        }))
    }

    /// Checks a PUBLISH against the topic permissions (a topic that is a client id is a
    /// direct message). A refused QoS 1/2 message is acknowledged with reason 0x87 (MQTT 5)
    /// or, for 3.x, positively unless `auth.disconnect_on_denied`, so the client does not
    /// resend it forever; it is never routed. `None`: go ahead.
    fn refuse_publish(
        &mut self,
        publish: &codec::Publish,
        ctx: &mut Context<Self>,
    ) -> Option<ActorResponse<Self, Result<(), InboundError>>> {
        if self.permissions.is_unrestricted() {
            return None;
        }
        let topic: &str = &publish.topic;
        let allowed = if self.node.routes.is_session(topic) {
            self.permissions.may_message(topic)
        } else {
            self.permissions.may_publish(topic)
        };
        if allowed {
            return None;
        }
        info!(self.node.log, "publish not authorized"; "client_id" => %self.client_id(), "topic" => topic);
        let v5 = self.protocol == Protocol::V5;
        if !v5 && self.permissions.disconnect_on_denied() {
            return Some(ActorResponse::reply(Err(InboundError::Violation {
                reason: reason::NOT_AUTHORIZED,
                what: "publish not authorized",
            })));
        }
        let code = if v5 {
            reason::NOT_AUTHORIZED
        } else {
            reason::SUCCESS
        };
        let packet_id = publish.packet_id.unwrap_or(0);
        let kind = match publish.qos {
            QoS::AtMostOnce => return Some(self.settle()),
            QoS::AtLeastOnce => AckKind::PubAck,
            QoS::ExactlyOnce => AckKind::PubRec,
        };
        // In PUBLISH order, behind acknowledgements still waiting for their writes.
        self.ack_in_order(Outbound::ack(kind, packet_id, code), ctx);
        Some(self.settle())
    }

    /// `fut`, counted in `tasks` until it completes: a session with a future of its own
    /// pending is not idle.
    fn counted<F>(&mut self, fut: F) -> impl ActorFuture<Self, Output = F::Output> + 'static
    where
        F: ActorFuture<Self> + 'static,
    {
        self.tasks += 1;
        fut.map(|out, act: &mut Self, _| {
            act.tasks = act.tasks.saturating_sub(1);
            out
        })
    }

    /// Runs `fut` beside the mailbox, counted in `tasks`.
    fn spawn_counted<F>(&mut self, ctx: &mut Context<Self>, fut: F)
    where
        F: ActorFuture<Self, Output = ()> + 'static,
    {
        let fut = self.counted(fut);
        ctx.spawn(fut);
    }

    /// The answer to an inbound packet once `fut` completes, counted in `tasks`.
    fn respond<F>(&mut self, fut: F) -> ActorResponse<Self, Result<(), InboundError>>
    where
        F: ActorFuture<Self, Output = Result<(), InboundError>> + 'static,
    {
        ActorResponse::r#async(self.counted(fut))
    }

    /// The outbox, locked (Topics may be writing to it through the direct path).
    fn outbox(&self) -> Locked<'_> {
        self.direct.lock()
    }

    /// PUBACK from the client: the QoS 1 message is done with.
    fn on_puback(&mut self, packet_id: u16) {
        match self.outbox().acked(packet_id) {
            Some(message) => self.forget_stored(message.seq),
            None => {
                debug!(self.node.log, "PUBACK for unknown packet id"; "client_id" => %self.client_id(), "packet_id" => packet_id)
            }
        }
    }

    /// PUBCOMP from the client: the QoS 2 message is done with.
    fn on_pubcomp(&mut self, packet_id: u16) {
        match self.outbox().completed(packet_id) {
            Some(message) => self.forget_stored(message.seq),
            None => {
                debug!(self.node.log, "PUBCOMP for unknown packet id"; "client_id" => %self.client_id(), "packet_id" => packet_id)
            }
        }
    }

    /// Acts on the outcome of a piped packet: a violation closes its connection.
    fn piped_result(&mut self, epoch: Epoch, result: Result<(), InboundError>) {
        if let Err(InboundError::Violation { reason, what }) = result {
            self.refused = Some(epoch);
            if let Some(link) = self.link.as_ref().filter(|l| l.epoch() == epoch) {
                link.close(CloseReason::Violation { reason, what });
                // Neither Topics nor the connection (its acknowledgements) use it any more.
                self.outbox().set_link(None);
            }
        }
    }

    /// Queues an acknowledgement for the client (sent by the next [`Session::pump`]).
    fn reply(&mut self, packet: Outbound) {
        if self.link.is_some() {
            self.control.push_back(packet);
        }
    }

    /// Puts a message in the outbox, counting what the overflow policy drops.
    fn enqueue(&mut self, message: Outgoing) {
        if let Some(max) = self.client_max_packet {
            let packet = Packet::Publish(message.envelope.to_publish(
                message.qos,
                message.retain,
                false,
                (message.qos > QoS::AtMostOnce).then_some(u16::MAX),
                &message.subscription_ids,
            ));
            if codec::encoded_len(&packet, self.protocol) > max.get() as usize {
                // [MQTT-3.1.2-25] never send a packet larger than the client accepts.
                Metrics::incr(&self.node.metrics.dropped);
                self.forget_stored(message.seq);
                debug!(
                    self.node.log,
                    "message larger than the client's Maximum Packet Size dropped";
                    "client_id" => %self.client_id()
                );
                return;
            }
        }
        let qos = message.qos;
        let seq = message.seq;
        let backpressure = self.node.config.session.queue_full == QueueFull::Backpressure;
        if backpressure && qos > QoS::AtMostOnce && self.outbox().is_full() {
            // Kept past the limit; Topics hold their publishers until the queue has room.
            if !self.direct.set_full(true) {
                warn!(self.node.log, "session queue full, slowing publishers down"; "client_id" => %self.client_id(),
                    "queued" => self.outbox().len(), "policy" => "backpressure");
            }
            self.outbox().restore(message);
            self.count_queue();
            return;
        }
        let outcome = self.outbox().push(message);
        if !outcome.accepted {
            // session.queue_full = "drop": refused for this session, counted and logged.
            self.forget_stored(seq);
        }
        let dropped = (outcome.evicted + usize::from(!outcome.accepted)) as u64;
        if dropped > 0 {
            Metrics::add(&self.node.metrics.dropped, dropped);
            if self.overflow_streak == 0 {
                warn!(self.node.log, "session queue full, dropping messages"; "client_id" => %self.client_id(),
                    "qos" => qos as u8, "queued" => self.outbox().len(),
                    "policy" => "drop");
            }
            self.overflow_streak = self
                .overflow_streak
                .saturating_add(u32::try_from(dropped).unwrap_or(u32::MAX));
        } else if self.overflow_streak > 0 {
            info!(self.node.log, "session queue has room again"; "client_id" => %self.client_id(), "dropped" => self.overflow_streak);
            self.overflow_streak = 0;
        }
        self.count_queue();
    }

    /// Writes control packets, then resends, then queued messages, while the link has room.
    /// When it is full, waits (once per link) for room and continues from there.
    fn pump(&mut self, ctx: &mut Context<Self>) {
        self.stirred = true;
        let Some(link) = self.link.take() else {
            return;
        };
        if self.waiting_for_room != Some(link.epoch()) {
            let mut now = None;
            loop {
                if self.control.is_empty() && !self.outbox().has_sendable() {
                    break;
                }
                match link.try_reserve() {
                    Ok(permit) => {
                        if !self.send_next(&mut now, |packet| permit.send(packet)) {
                            break;
                        }
                    }
                    Err(ReserveError::Full) => {
                        self.wait_for_room(link.clone(), ctx);
                        break;
                    }
                    // The connection is closing; its Detached follows.
                    Err(ReserveError::Closed) => break,
                }
            }
        }
        self.link = Some(link);
        self.count_queue();
        self.sync_lane();
        self.arm_retry(ctx);
    }

    /// Starts the 3.x resend timer if a message is inflight on the attached link and the
    /// timer is not running. Each tick marks what has waited `retry_interval` for its
    /// acknowledgement for resending (so a message is resent between 1 and 2 intervals
    /// after it went out); a tick that finds nothing inflight stops the timer.
    fn arm_retry(&mut self, ctx: &mut Context<Self>) {
        if self.timer != Timer::Idle || self.link.is_none() || self.protocol == Protocol::V5 {
            return;
        }
        if !self.outbox().arm_retry() {
            return;
        }
        let interval = Duration::from_secs(self.node.config.session.retry_interval);
        let handle = ctx.run_interval(interval, move |act, ctx| {
            let (due, inflight) = {
                let mut outbox = act.outbox();
                let due = outbox.resend_older_than(Instant::now(), interval);
                (due, outbox.arm_retry())
            };
            if !inflight {
                act.stop_timer(ctx);
            }
            if due > 0 {
                act.pump(ctx);
            }
        });
        self.timer = Timer::Retry(handle);
    }

    /// Stops the expiry or resend timer, if one runs.
    fn stop_timer(&mut self, ctx: &mut Context<Self>) {
        if let Timer::Expiry(handle, _) | Timer::Retry(handle) = self.timer {
            ctx.cancel_future(handle);
        }
        self.timer = Timer::Idle;
    }

    /// Ends the (offline) session after `after`.
    fn expire_after(&mut self, after: Duration, ctx: &mut Context<Self>) {
        let now = Instant::now();
        // Beyond what the clock counts (never, with expiries of at most 136 years): as far
        // as tokio's timers go.
        let at = now
            .checked_add(after)
            .or_else(|| now.checked_add(Duration::from_secs(30 * 365 * 86_400)))
            .unwrap_or(now);
        self.expire_at(at, ctx);
    }

    /// Ends the (offline) session at `at`.
    fn expire_at(&mut self, at: Instant, ctx: &mut Context<Self>) {
        let after = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(after, |act, ctx| {
            info!(act.node.log, "session expired"; "client_id" => %act.client_id());
            act.timer = Timer::Idle;
            act.end(ctx);
        });
        self.timer = Timer::Expiry(handle, at);
    }

    /// The client id this session belongs to.
    fn client_id(&self) -> &ClientId {
        self.direct.client_id()
    }

    /// Opens the lane while nothing of this session waits for the link, closes it otherwise.
    /// Under the outbox's lock, so that a Topic that just queued a message (and closed the
    /// lane behind it) is never overruled.
    fn sync_lane(&self) {
        let mut outbox = self.outbox();
        let ready = self.link.is_some() && self.client_max_packet.is_none() && !self.ending;
        outbox.set_queue_ok(ready);
        let idle =
            ready && self.control.is_empty() && outbox.is_idle() && self.waiting_for_room.is_none();
        outbox.set_lane(idle);
    }

    /// Writes the next packet with `send`: control packets first, then the outbox (read
    /// once from the clock, into `now`). False when there was nothing to write. An outbox
    /// packet is written under the outbox's lock, so a Topic can never slip a message in
    /// between taking it out and writing it.
    fn send_next(&mut self, now: &mut Option<Instant>, send: impl FnOnce(Outbound)) -> bool {
        if let Some(packet) = self.control.pop_front() {
            send(packet);
            return true;
        }
        let mut outbox = self.direct.lock();
        let Some(packet) = outbox.next_packet(*now.get_or_insert_with(Instant::now)) else {
            return false;
        };
        if packet.is_publish() {
            Metrics::incr(&self.node.metrics.publish_out);
            self.direct.record_sent(&packet, &self.node.store);
        }
        send(packet);
        true
    }

    /// Reserves room on a full link and continues pumping once it is there.
    fn wait_for_room(&mut self, link: ClientLink, ctx: &mut Context<Self>) {
        let epoch = link.epoch();
        self.waiting_for_room = Some(epoch);
        self.spawn_counted(
            ctx,
            wrap_future(link.reserve()).map(move |permit, act: &mut Self, ctx| {
                if act.waiting_for_room == Some(epoch) {
                    act.waiting_for_room = None;
                }
                let current = act.link.as_ref().map(ClientLink::epoch) == Some(epoch);
                if let (Ok(permit), true) = (permit, current) {
                    act.send_next(&mut None, |packet| {
                        permit.send(packet);
                    });
                }
                act.pump(ctx);
            }),
        );
    }

    /// Finishes an inbound packet: when too many acknowledgements wait for a client that
    /// does not read, its next packet is taken only once one of them got out.
    fn settle(&mut self) -> ActorResponse<Self, Result<(), InboundError>> {
        let Some(link) = self.link.clone() else {
            return ActorResponse::reply(Ok(()));
        };
        if self.control.len() <= CONTROL_BACKLOG {
            return ActorResponse::reply(Ok(()));
        }
        let epoch = link.epoch();
        self.respond(
            wrap_future(link.reserve()).map(move |permit, act: &mut Self, ctx| {
                let current = act.link.as_ref().map(ClientLink::epoch) == Some(epoch);
                if let (Ok(permit), true) = (permit, current) {
                    if let Some(packet) = act.control.pop_front() {
                        permit.send(packet);
                    }
                }
                act.pump(ctx);
                Ok(())
            }),
        )
    }

    /// The session outlives its connection, so its state is kept in the store.
    fn persistent(&self) -> bool {
        self.expiry_secs != 0
    }

    /// The session's record as stored.
    fn record(&self) -> SessionRecord {
        SessionRecord {
            protocol: self.protocol.level(),
            expiry_secs: self.expiry_secs.into(),
            disconnected_at_ms: self.link.is_none().then(store::now_ms),
            last_packet_id: self.outbox().last_packet_id(),
            owner: self.direct.owner().map(|owner| owner.to_string()),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(filter, subscription)| subscription_record(filter, subscription))
                .collect(),
        }
    }

    /// Writes the session's record; `commit` is completed once it is durable.
    fn save(&self, commit: Option<Commit>) {
        if self.ending {
            return;
        }
        let mut batch = Batch::new();
        batch.put_session(self.client_id().as_str(), &self.record());
        match commit {
            Some(commit) => self.node.store.submit_durable(batch, Some(commit), None),
            None => self.node.store.submit(batch),
        }
    }

    /// Deletes a stored message that is done with (acknowledged, refused or dropped).
    fn forget_stored(&self, seq: Option<u64>) {
        if let Some(seq) = seq {
            let mut batch = Batch::new();
            batch.del_queued(self.client_id().as_str(), seq);
            self.node.store.submit(batch);
        }
    }

    /// The store writes of pending acknowledgement `serial` completed: sends, in PUBLISH
    /// order, every acknowledgement whose writes are all done.
    fn ack_ready(
        &mut self,
        serial: u32,
        outcome: Result<(), store::StoreError>,
        ctx: &mut Context<Self>,
    ) {
        if let Some(entry) = self.acks.iter_mut().find(|a| a.serial == serial) {
            entry.ready = true;
            if let Err(e) = &outcome {
                entry.ack = None;
                self.store_failed(e);
            }
        }
        let current = self.link.as_ref().map(ClientLink::epoch);
        while self.acks.front().is_some_and(|a| a.ready) {
            if let Some(PendingAck {
                epoch,
                ack: Some(ack),
                ..
            }) = self.acks.pop_front()
            {
                if epoch.is_some() && epoch == current {
                    self.reply(ack);
                }
            }
        }
        self.pump(ctx);
    }

    /// A store write failed: the client is not acknowledged and its connection is closed,
    /// so that it sends again once the store works.
    fn store_failed(&mut self, e: &store::StoreError) {
        error!(self.node.log, "store write failed; closing the connection"; "client_id" => %self.client_id(), "error" => %e);
        if let Some(link) = &self.link {
            link.close(CloseReason::ServerShutdown);
        }
    }

    /// Keeps the node's `queued` gauge in step with this outbox, and the full flag.
    fn count_queue(&mut self) {
        if self.direct.is_full() && !self.outbox().is_full() {
            self.direct.set_full(false);
            info!(self.node.log, "session queue has room again"; "client_id" => %self.client_id());
        }
        self.outbox().count(&self.node.metrics);
    }

    /// Ends the session: the Registry forgets it and its subscriptions.
    fn end(&mut self, ctx: &mut Context<Self>) {
        self.ending = true;
        if let Some(session) = self.slot.upgrade() {
            self.node.registry.do_send(SessionEnded {
                client_id: self.client_id().clone(),
                session,
            });
        }
        ctx.stop();
    }
}

/// What routing a message left to wait for.
struct Routed {
    /// Hand-over that has to wait (for a Topic to start, or for room in a mailbox).
    pending: Option<Pending>,
    /// Store writes the publisher's acknowledgement waits for.
    commits: Vec<Committed>,
}

/// The store writes a publisher's acknowledgement waits for: known at once, or once an
/// earlier publish's routing let this one be routed.
enum Commits {
    Now(Vec<Committed>),
    Later(oneshot::Receiver<Vec<Committed>>),
}

impl Commits {
    /// Nothing to wait for (known now).
    fn is_empty(&self) -> bool {
        matches!(self, Commits::Now(c) if c.is_empty())
    }

    /// Completes when every write is durable, or with the first store error.
    async fn wait(self) -> Result<(), store::StoreError> {
        let commits = match self {
            Commits::Now(commits) => commits,
            // Dropped unsent: the session stopped before routing it; nothing was written.
            Commits::Later(later) => later.await.unwrap_or_default(),
        };
        for commit in commits {
            commit.wait().await?;
        }
        Ok(())
    }
}

/// Routes a message published by a client (or its will). Everything that could be done at
/// once is done; returns what has to wait. With `acknowledge`, the store writes the message
/// causes report back through `Routed::commits`; `inbound` (a persistent publisher's QoS 2
/// packet id) is written along with the message.
fn route(
    node: &Node,
    envelope: Envelope,
    acknowledge: bool,
    inbound: Option<(ClientId, u16)>,
) -> Routed {
    let routes = &node.routes;
    let mut commits = Vec::new();
    let mut durable = || {
        if acknowledge {
            let (commit, committed) = store::commit();
            commits.push(committed);
            Some(commit)
        } else {
            None
        }
    };
    // A client id as topic: a direct message, delivered with the publisher's QoS.
    if routes.is_session(envelope.topic.as_str()) {
        let name = envelope.topic.clone();
        let deliver = Deliver {
            qos: envelope.qos,
            retain: false,
            subscription_ids: Vec::new(),
            persist: Persist::ByReceiver(Durable {
                commit: durable(),
                inbound,
            }),
            envelope,
        };
        let pending: Option<Pending> = match routes.offer_session(name.as_str(), deliver) {
            // Gone meanwhile: the receiving session ended, nothing to deliver to.
            Offer::Sent | Offer::Closed(_) | Offer::Absent(_) => None,
            Offer::Full(target, deliver) => Some(Box::pin(async move {
                let _ = target.send(deliver).await;
            })),
        };
        return Routed { pending, commits };
    }
    let retain = envelope.retain.then(|| {
        match node.registry.try_send(Retain {
            envelope: envelope.clone(),
            commit: durable(),
        }) {
            Ok(()) | Err(SendError::Closed(_)) => None,
            Err(SendError::Full(msg)) => {
                let registry = node.registry.clone();
                Some(Box::pin(async move {
                    let _ = registry.send(msg).await;
                }) as Pending)
            }
        }
    });
    // A Topic that never had a persistent subscriber writes nothing: the publisher is
    // answered once the message is in its mailbox, without a store commit to wait for.
    // Under the backpressure policy the answer also waits for full queues.
    let backpressure = node.config.session.queue_full == QueueFull::Backpressure;
    let mut inbound = inbound;
    let offered = routes.offer_topic(envelope, |envelope, stores| Distribute {
        admission: Admission::Free,
        envelope,
        durable: Durable {
            commit: if stores || backpressure {
                durable()
            } else {
                None
            },
            inbound: inbound.take(),
        },
    });
    let deliver: Option<Pending> = match offered {
        TopicOffer::Sent => None,
        // Not in the mailbox yet: the answer waits until the Topic has room and has it.
        TopicOffer::Full(topic, mut msg) => {
            if msg.durable.commit.is_none() {
                msg.durable.commit = durable();
            }
            Some(Box::pin(async move {
                msg.admit().await;
                let _ = topic.send(msg).await;
            }))
        }
        // The Topic stopped after we looked it up: ask for the current one.
        TopicOffer::Closed(mut msg) => {
            if msg.durable.commit.is_none() {
                msg.durable.commit = durable();
            }
            Some(start_topic_and_send(node, msg))
        }
        TopicOffer::Absent(envelope) if routes.has_subscriber(envelope.topic.as_str()) => {
            let distribute = Distribute {
                admission: Admission::Free,
                envelope,
                durable: Durable {
                    commit: durable(),
                    inbound,
                },
            };
            Some(start_topic_and_send(node, distribute))
        }
        TopicOffer::Absent(_) => None,
    };
    let pending = match (retain.flatten(), deliver) {
        (None, None) => None,
        (Some(one), None) | (None, Some(one)) => Some(one),
        (Some(first), Some(second)) => Some(Box::pin(async move {
            first.await;
            second.await;
        }) as Pending),
    };
    Routed { pending, commits }
}

/// Asks the Registry for the Topic of the message's name (starting it), then hands it over.
fn start_topic_and_send(node: &Node, distribute: Distribute) -> Pending {
    let registry = node.registry.clone();
    let from = Some(std::thread::current().id());
    Box::pin(async move {
        let name = distribute.envelope.topic.clone();
        if let Ok(Some(topic)) = registry.send(EnsureTopic { name, from }).await {
            let _ = topic.send(distribute).await;
        }
    })
}

/// The stored form of a message.
pub fn message_record(envelope: &Envelope) -> MessageRecord {
    MessageRecord::new(
        envelope.from.as_str(),
        envelope.topic.as_str(),
        envelope.qos,
        envelope.retain,
        &envelope.payload,
        &envelope.properties,
    )
}

/// The stored form of a message queued for one session.
pub fn queued_record(
    envelope: &Envelope,
    qos: QoS,
    retain: bool,
    subscription_ids: &[u32],
) -> QueuedRecord {
    QueuedRecord {
        message: message_record(envelope),
        qos: qos as u8,
        retain,
        subscription_ids: subscription_ids.to_vec(),
    }
}

/// A message back from its stored form.
pub fn envelope_from_record(record: &MessageRecord) -> Envelope {
    Envelope::new(crate::actors::envelope::Message {
        from: ClientId::from(record.from.as_str()),
        topic: crate::actors::ids::TopicName::from(record.topic.as_str()),
        qos: record.qos(),
        retain: record.retain,
        payload: bytes::Bytes::from(record.payload.clone()),
        properties: record.properties(),
    })
}

/// The stored form of one subscription.
pub fn subscription_record(filter: &str, subscription: &Subscription) -> SubscriptionRecord {
    let options = &subscription.options;
    SubscriptionRecord {
        filter: filter.to_owned(),
        qos: options.qos as u8,
        no_local: options.no_local,
        retain_as_published: options.retain_as_published,
        retain_handling: options.retain_handling,
        identifier: subscription.identifier,
    }
}

/// A subscription back from its stored form.
pub fn subscription_from_record(record: &SubscriptionRecord) -> (String, Subscription) {
    let options = SubscriptionOptions {
        qos: QoS::from_u8(record.qos).unwrap_or_default(),
        no_local: record.no_local,
        retain_as_published: record.retain_as_published,
        retain_handling: record.retain_handling,
    };
    (
        record.filter.clone(),
        Subscription {
            options,
            identifier: record.identifier,
        },
    )
}

/// The session lifetime for an MQTT 5 Session Expiry Interval, capped by `session.max_age`.
pub fn session_expiry(secs: u32, max_age: u64) -> Duration {
    Duration::from_secs(u64::from(secs).min(max_age))
}

/// A session lifetime in whole seconds as the session keeps it: a fraction of a second
/// counts as a second (so a non-zero lifetime stays non-zero), beyond `u32::MAX` seconds
/// (136 years) is capped.
fn expiry_secs(expiry: Duration) -> u32 {
    let secs = expiry.as_secs() + u64::from(expiry.subsec_nanos() > 0);
    u32::try_from(secs).unwrap_or(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::testing::{attach, attach_as, next, node, node_with, nothing};
    use crate::actors::topic::INTAKE_BYTES;
    use crate::actors::SessionRef;
    use crate::codec::{PubResp, Publish, SubscribeTopic};
    use bytes::Bytes;
    use std::sync::atomic::Ordering;

    fn publish(topic: &str, qos: QoS, packet_id: Option<u16>) -> Packet {
        Packet::Publish(Publish {
            qos,
            topic: topic.into(),
            packet_id,
            payload: Bytes::from_static(b"m"),
            ..Default::default()
        })
    }

    fn subscribe(filter: &str, qos: QoS) -> Packet {
        Packet::Subscribe(codec::Subscribe {
            packet_id: 1,
            topics: vec![SubscribeTopic {
                filter: filter.into(),
                options: SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            ..Default::default()
        })
    }

    async fn inbound(
        session: &SessionRef,
        epoch: Epoch,
        packet: Packet,
    ) -> Result<(), InboundError> {
        session
            .send(Inbound { epoch, packet })
            .await
            .expect("mailbox")
    }

    #[actix_rt::test]
    async fn qos2_duplicate_is_acknowledged_but_routed_once() {
        let node = node();
        let (sub, sub_epoch, mut sub_end) =
            attach(&node, "sub", true, AttachOptions::default()).await;
        inbound(&sub, sub_epoch, subscribe("t", QoS::ExactlyOnce))
            .await
            .unwrap();
        assert!(matches!(next(&mut sub_end).await, Packet::SubAck(a) if a.return_codes == vec![2]));
        let (publ, epoch, mut end) = attach(&node, "pub", true, AttachOptions::default()).await;
        for _ in 0..2 {
            inbound(&publ, epoch, publish("t", QoS::ExactlyOnce, Some(5)))
                .await
                .unwrap();
            assert_eq!(next(&mut end).await, Packet::PubRec(PubResp::new(5)));
        }
        assert!(
            matches!(next(&mut sub_end).await, Packet::Publish(p) if p.qos == QoS::ExactlyOnce)
        );
        nothing(&mut sub_end).await;
        for _ in 0..2 {
            inbound(&publ, epoch, Packet::PubRel(PubResp::new(5)))
                .await
                .unwrap();
            assert_eq!(next(&mut end).await, Packet::PubComp(PubResp::new(5)));
        }
        // After completion the same id is a new message.
        inbound(&publ, epoch, publish("t", QoS::ExactlyOnce, Some(5)))
            .await
            .unwrap();
        assert_eq!(next(&mut end).await, Packet::PubRec(PubResp::new(5)));
        assert!(matches!(next(&mut sub_end).await, Packet::Publish(_)));
    }

    #[actix_rt::test]
    async fn inbound_qos2_window_is_bounded() {
        let node = node();
        let (s, epoch, mut end) = attach(&node, "c", true, AttachOptions::default()).await;
        let max = node.config.session.max_inbound_pending;
        for id in 1..=max {
            inbound(&s, epoch, publish("x", QoS::ExactlyOnce, Some(id)))
                .await
                .unwrap();
            assert_eq!(next(&mut end).await, Packet::PubRec(PubResp::new(id)));
        }
        let over = inbound(&s, epoch, publish("x", QoS::ExactlyOnce, Some(max + 1))).await;
        assert!(matches!(
            over,
            Err(InboundError::Violation {
                reason: reason::RECEIVE_MAXIMUM_EXCEEDED,
                ..
            })
        ));
    }

    #[actix_rt::test]
    async fn takeover_closes_the_old_link_and_refuses_its_packets() {
        let node = node();
        let options = AttachOptions {
            expiry: Duration::from_secs(60),
            ..Default::default()
        };
        let (s1, old, old_end) = attach(&node, "c", false, options.clone()).await;
        let (s2, new, mut new_end) = attach(&node, "c", false, options).await;
        assert_eq!(s1, s2, "a persistent session is reused");
        assert_eq!(old_end.close_reason(), Some(CloseReason::TakenOver));
        assert_eq!(
            inbound(&s1, old, Packet::PubAck(PubResp::new(1))).await,
            Err(InboundError::Stale)
        );
        // The old connection's end is ignored: the new one keeps working.
        s1.send(Detached {
            epoch: old,
            publish_will: true,
            session_expiry: None,
        })
        .await
        .unwrap();
        inbound(&s1, new, subscribe("a", QoS::AtMostOnce))
            .await
            .unwrap();
        assert!(matches!(next(&mut new_end).await, Packet::SubAck(_)));
    }

    #[actix_rt::test]
    async fn will_is_published_only_on_abnormal_loss() {
        let node = node();
        let (_b, _, mut b_end) = attach(&node, "b", true, AttachOptions::default()).await;
        let will = LastWill {
            topic: "b".into(),
            payload: Bytes::from_static(b"gone"),
            ..Default::default()
        };
        let options = AttachOptions {
            will: Some(will),
            ..Default::default()
        };
        let (a, epoch, _a_end) = attach(&node, "a", true, options.clone()).await;
        a.send(Detached {
            epoch,
            publish_will: false,
            session_expiry: None,
        })
        .await
        .unwrap();
        nothing(&mut b_end).await;
        let (a, epoch, _a_end) = attach(&node, "a", true, options).await;
        a.send(Detached {
            epoch,
            publish_will: true,
            session_expiry: None,
        })
        .await
        .unwrap();
        match next(&mut b_end).await {
            Packet::Publish(p) => {
                assert_eq!((p.topic.as_ref(), p.payload.as_ref()), ("b", &b"gone"[..]))
            }
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn offline_persistent_session_queues_and_resends_with_dup() {
        let node = node();
        let options = persistent();
        offline_subscriber(&node, "p", "q").await;
        let (publ, pe, _pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        inbound(&publ, pe, publish("q", QoS::AtLeastOnce, Some(1)))
            .await
            .unwrap();
        assert_eq!(node.metrics.snapshot().queued, 1);
        let (_s, _, mut end) = attach(&node, "p", false, options.clone()).await;
        let first = match next(&mut end).await {
            Packet::Publish(p) => p,
            other => panic!("{other:?}"),
        };
        assert!(!first.dup);
        let (_s, _, mut end) = attach(&node, "p", false, options).await;
        match next(&mut end).await {
            Packet::Publish(p) => assert_eq!((p.dup, p.packet_id), (true, first.packet_id)),
            other => panic!("{other:?}"),
        }
    }

    fn persistent() -> AttachOptions {
        AttachOptions {
            expiry: Duration::from_secs(60),
            ..Default::default()
        }
    }

    async fn publish_qos1(
        publ: &SessionRef,
        epoch: Epoch,
        end: &mut crate::actors::LinkEnd,
        id: u16,
    ) {
        inbound(publ, epoch, publish("q", QoS::AtLeastOnce, Some(id)))
            .await
            .unwrap();
        assert_eq!(next(end).await, Packet::PubAck(PubResp::new(id)));
    }

    #[actix_rt::test]
    async fn stored_before_puback_and_deleted_when_the_subscriber_acknowledges() {
        let node = node();
        let (s, epoch, mut end) = attach(&node, "p", false, persistent()).await;
        inbound(&s, epoch, subscribe("q", QoS::AtLeastOnce))
            .await
            .unwrap();
        next(&mut end).await;
        let record = node
            .store
            .session("p")
            .unwrap()
            .expect("durable before SUBACK");
        assert_eq!(record.subscriptions[0].filter, "q");
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        publish_qos1(&publ, pe, &mut pend, 1).await;
        assert_eq!(
            node.store.queued_seqs("p").unwrap().len(),
            1,
            "in the subscriber's stored queue before the PUBACK"
        );
        let id = match next(&mut end).await {
            Packet::Publish(p) => p.packet_id.unwrap(),
            other => panic!("{other:?}"),
        };
        inbound(&s, epoch, Packet::PubAck(PubResp::new(id)))
            .await
            .unwrap();
        node.store.sync().unwrap();
        assert!(node.store.queued_seqs("p").unwrap().is_empty());
        // A clean session's messages are never stored.
        let (c, ce, mut cend) = attach(&node, "c", true, AttachOptions::default()).await;
        inbound(&c, ce, subscribe("q", QoS::AtLeastOnce))
            .await
            .unwrap();
        next(&mut cend).await;
        publish_qos1(&publ, pe, &mut pend, 2).await;
        next(&mut cend).await;
        node.store.sync().unwrap();
        assert!(node.store.queued_seqs("c").unwrap().is_empty());
    }

    #[actix_rt::test]
    async fn a_persistent_subscriber_joining_a_running_topic_is_stored_before_puback() {
        let node = node();
        // A clean subscriber and one publish: the Topic runs, and has stored nothing.
        let (c, ce, mut cend) = attach(&node, "c", true, AttachOptions::default()).await;
        inbound(&c, ce, subscribe("q", QoS::AtLeastOnce))
            .await
            .unwrap();
        next(&mut cend).await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        publish_qos1(&publ, pe, &mut pend, 1).await;
        assert!(node.routes.topic_stores("q") == Some(false));
        // A persistent subscriber joins the running Topic: the next PUBACK waits for its copy.
        let (s, epoch, mut end) = attach(&node, "p", false, persistent()).await;
        inbound(&s, epoch, subscribe("q", QoS::AtLeastOnce))
            .await
            .unwrap();
        next(&mut end).await;
        assert!(node.routes.topic_stores("q") == Some(true));
        publish_qos1(&publ, pe, &mut pend, 2).await;
        assert_eq!(
            node.store.queued_seqs("p").unwrap().len(),
            1,
            "in the subscriber's stored queue before the PUBACK"
        );
    }

    #[actix_rt::test]
    async fn a_message_sent_straight_by_the_topic_is_resent_with_dup_and_acknowledged() {
        let node = node();
        let options = persistent();
        let FirstInflight {
            publ,
            pe,
            mut pend,
            end: _first_link,
            first,
        } = first_inflight(&node).await;
        assert_eq!((first.dup, node.metrics.snapshot().queued), (false, 1));
        // Reconnect without acknowledging: the same packet id again, with DUP.
        let (s, epoch, mut end) = attach(&node, "p", false, options).await;
        let again = match next(&mut end).await {
            Packet::Publish(p) => p,
            other => panic!("{other:?}"),
        };
        assert_eq!((again.dup, again.packet_id), (true, first.packet_id));
        let ack = Packet::PubAck(PubResp::new(again.packet_id.unwrap()));
        inbound(&s, epoch, ack).await.unwrap();
        node.store.sync().unwrap();
        assert!(node.store.queued_seqs("p").unwrap().is_empty());
        assert_eq!(node.metrics.snapshot().queued, 0);
        // Acknowledged: the next message gets through the idle session at once.
        publish_qos1(&publ, pe, &mut pend, 2).await;
        match next(&mut end).await {
            Packet::Publish(p) => assert!(!p.dup),
            other => panic!("{other:?}"),
        }
    }

    /// Whether the session's resend timer runs.
    #[derive(Message)]
    #[rtype(result = "bool")]
    struct RetryArmed;

    impl Handler<RetryArmed> for Session {
        type Result = bool;

        fn handle(&mut self, _msg: RetryArmed, _ctx: &mut Self::Context) -> bool {
            matches!(self.timer, Timer::Retry(_))
        }
    }

    /// A persistent subscriber "p" of "q" (QoS 1), online, and the first message a publisher
    /// "pub" sent to "q", inflight to "p".
    struct FirstInflight {
        publ: SessionRef,
        pe: Epoch,
        pend: crate::actors::LinkEnd,
        /// "p"'s link.
        end: crate::actors::LinkEnd,
        /// The PUBLISH "p" got.
        first: Publish,
    }

    async fn first_inflight(node: &Node) -> FirstInflight {
        let (s, epoch, mut end) = attach(node, "p", false, persistent()).await;
        inbound(&s, epoch, subscribe("q", QoS::AtLeastOnce))
            .await
            .unwrap();
        next(&mut end).await;
        let (publ, pe, mut pend) = attach(node, "pub", true, AttachOptions::default()).await;
        publish_qos1(&publ, pe, &mut pend, 1).await;
        let first = publish_packet(&mut end, Duration::from_secs(1)).await;
        FirstInflight {
            publ,
            pe,
            pend,
            end,
            first,
        }
    }

    async fn publish_packet(end: &mut crate::actors::LinkEnd, within: Duration) -> Publish {
        match tokio::time::timeout(within, end.recv()).await {
            Ok(Some(Packet::Publish(p))) => p,
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn the_resend_timer_runs_only_while_a_message_is_inflight() {
        let mut config = crate::Config::default();
        config.session.retry_interval = 1;
        let node = node_with(config);
        let (s, epoch, mut end) =
            crate::actors::testing::subscribe(&node, "s", "q", QoS::AtLeastOnce).await;
        assert!(!s.send(RetryArmed).await.unwrap(), "idle: no timer");
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        publish_qos1(&publ, pe, &mut pend, 1).await;
        // Written by the Topic straight on the link: the session was told to arm the timer.
        let first = publish_packet(&mut end, Duration::from_secs(1)).await;
        assert!(!first.dup);
        assert!(
            s.send(RetryArmed).await.unwrap(),
            "armed with a message inflight"
        );
        // Not acknowledged: resent with DUP within two intervals.
        let again = publish_packet(&mut end, Duration::from_millis(2500)).await;
        assert_eq!((again.dup, again.packet_id), (true, first.packet_id));
        let ack = Packet::PubAck(PubResp::new(again.packet_id.unwrap()));
        inbound(&s, epoch, ack).await.unwrap();
        // The next tick finds nothing inflight and stops the timer; nothing more is sent.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(
            !s.send(RetryArmed).await.unwrap(),
            "stopped once nothing is inflight"
        );
        nothing(&mut end).await;
        // The next message arms it again, and is resent in time as well.
        publish_qos1(&publ, pe, &mut pend, 2).await;
        let second = publish_packet(&mut end, Duration::from_secs(1)).await;
        assert!(!second.dup && second.packet_id != first.packet_id);
        assert!(s.send(RetryArmed).await.unwrap(), "armed again");
        let again = publish_packet(&mut end, Duration::from_millis(2500)).await;
        assert_eq!((again.dup, again.packet_id), (true, second.packet_id));
    }

    #[actix_rt::test]
    async fn a_reconnect_arms_the_resend_timer_only_for_what_is_inflight() {
        let mut config = crate::Config::default();
        config.session.retry_interval = 1;
        let node = node_with(config);
        let options = persistent();
        let FirstInflight {
            end: _first_link,
            first,
            ..
        } = first_inflight(&node).await;
        // Reconnect: the message is resent at once, and again after the interval.
        let (s, epoch, mut end) = attach(&node, "p", false, options.clone()).await;
        let again = publish_packet(&mut end, Duration::from_secs(1)).await;
        assert_eq!((again.dup, again.packet_id), (true, first.packet_id));
        assert!(s.send(RetryArmed).await.unwrap());
        let third = publish_packet(&mut end, Duration::from_millis(2500)).await;
        assert_eq!((third.dup, third.packet_id), (true, first.packet_id));
        let ack = Packet::PubAck(PubResp::new(first.packet_id.unwrap()));
        inbound(&s, epoch, ack).await.unwrap();
        // Reconnect with nothing inflight: no timer.
        let (s, _, mut end) = attach(&node, "p", false, options).await;
        assert!(!s.send(RetryArmed).await.unwrap());
        nothing(&mut end).await;
    }

    #[actix_rt::test]
    async fn a_held_back_topic_takes_no_more_than_its_intake_and_loses_nothing() {
        let (node, publ, pe, _pend) = over_a_full_queue().await;
        // The subscriber's queue is over its limit, so the Topic waits, and what is
        // published meanwhile piles up in its mailbox, up to its intake.
        const MIB: usize = 1024 * 1024;
        let big = |id: u16| {
            let mut p = publish("q", QoS::AtLeastOnce, Some(id));
            if let Packet::Publish(p) = &mut p {
                p.payload = vec![id as u8; MIB].into();
            }
            p
        };
        let n = 20u16;
        for id in 4..4 + n {
            publ.do_send(Inbound {
                epoch: pe,
                packet: big(id),
            });
        }
        let bound = INTAKE_BYTES + MIB + 1024;
        let mut taken = 0;
        for _ in 0..200 {
            taken = node.routes.topic_intake("q").expect("a running Topic");
            if taken >= INTAKE_BYTES - MIB {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(taken >= INTAKE_BYTES - MIB, "the intake fills: {taken}");
        // The rest waits in the publisher's session, not in the Topic's mailbox.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let taken = node.routes.topic_intake("q").expect("a running Topic");
        assert!(taken <= bound, "{taken} bytes in the Topic's mailbox");
        // The subscriber comes back: every message arrives, in order.
        let got = come_back_and_read(&node, "p", 3 + usize::from(n)).await;
        for (id, p) in (4..4 + n).zip(&got[3..]) {
            assert_eq!((p.payload.len(), p.payload[0]), (MIB, id as u8));
        }
        assert_eq!(node.metrics.snapshot().dropped, 0);
    }

    /// A persistent session `id` subscribed to `filter` at QoS 1, then left offline.
    async fn offline_subscriber(node: &Node, id: &str, filter: &str) {
        offline_subscriber_with(node, id, filter, persistent()).await;
    }

    /// A session attached with `options` that subscribes to `filter` at QoS 1 and goes
    /// offline.
    async fn offline_subscriber_with(
        node: &Node,
        id: &str,
        filter: &str,
        options: AttachOptions,
    ) -> SessionRef {
        let (s, epoch, mut end) = attach(node, id, false, options).await;
        inbound(&s, epoch, subscribe(filter, QoS::AtLeastOnce))
            .await
            .unwrap();
        next(&mut end).await;
        s.send(Detached {
            epoch,
            publish_will: false,
            session_expiry: None,
        })
        .await
        .unwrap();
        s
    }

    #[actix_rt::test]
    async fn full_queue_drop_policy_refuses_counts_and_forgets() {
        let mut config = crate::Config::default();
        config.session.max_queued_messages = 2;
        let node = node_with(config);
        offline_subscriber(&node, "p", "q").await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        for id in 1..=3 {
            publish_qos1(&publ, pe, &mut pend, id).await;
        }
        node.store.sync().unwrap();
        assert_eq!(node.metrics.snapshot().dropped, 1);
        assert_eq!(
            node.store.queued_seqs("p").unwrap().len(),
            2,
            "refused copy deleted"
        );
    }

    #[actix_rt::test]
    async fn a_delivery_fanned_out_after_the_topic_waited_wakes_its_connection() {
        let mut config = crate::Config::default();
        config.session.max_queued_messages = 2;
        config.session.queue_full = QueueFull::Backpressure;
        let node = node_with(config);
        offline_subscriber(&node, "p", "q").await;
        let (_a, _, mut a_end) =
            crate::actors::testing::subscribe(&node, "a", "q", QoS::AtLeastOnce).await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        for id in 1..=3 {
            publish_qos1(&publ, pe, &mut pend, id).await;
            assert!(matches!(next(&mut a_end).await, Packet::Publish(_)));
        }
        // p's queue is over its limit: message 4 waits in the Topic, and "a"'s connection
        // waits for it (registered for a wake-up).
        inbound(&publ, pe, publish("q", QoS::AtLeastOnce, Some(4)))
            .await
            .unwrap();
        let (got, waited) = oneshot::channel();
        actix_rt::spawn(async move {
            let _ = got.send(a_end.recv().await);
        });
        tokio::task::yield_now().await;
        // p comes back and reads: the Topic fans message 4 out after its wait, and no
        // other message follows that would wake "a"'s connection.
        come_back_and_read(&node, "p", 4).await;
        // Only a wake-up makes the waiting task look at its link again.
        let got = tokio::time::timeout(Duration::from_secs(2), waited)
            .await
            .expect("the connection is woken")
            .unwrap();
        assert!(
            matches!(&got, Some(Packet::Publish(p)) if p.packet_id.is_some()),
            "{got:?}"
        );
    }

    /// The persistent session `id` reconnects and reads (and acknowledges) `n` PUBLISHes,
    /// which it returns.
    async fn come_back_and_read(node: &Node, id: &str, n: usize) -> Vec<Publish> {
        let (s, epoch, mut end) = attach(node, id, false, persistent()).await;
        let mut got = Vec::with_capacity(n);
        for _ in 0..n {
            match next(&mut end).await {
                Packet::Publish(p) => {
                    let ack = Packet::PubAck(PubResp::new(p.packet_id.unwrap()));
                    inbound(&s, epoch, ack).await.unwrap();
                    got.push(p);
                }
                other => panic!("{other:?}"),
            }
        }
        got
    }

    /// Under `queue_full = "backpressure"` with a queue of 2: an offline persistent
    /// subscriber "p" of "q", and a publisher "pub" whose three QoS 1 messages to "q" put
    /// that queue over its limit.
    async fn over_a_full_queue() -> (Node, SessionRef, Epoch, crate::actors::LinkEnd) {
        let mut config = crate::Config::default();
        config.session.max_queued_messages = 2;
        config.session.queue_full = QueueFull::Backpressure;
        let node = node_with(config);
        offline_subscriber(&node, "p", "q").await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        for id in 1..=3 {
            publish_qos1(&publ, pe, &mut pend, id).await;
        }
        (node, publ, pe, pend)
    }

    #[actix_rt::test]
    async fn full_queue_backpressure_policy_holds_the_publisher_until_there_is_room() {
        let (node, publ, pe, mut pend) = over_a_full_queue().await;
        // The queue is over its limit: the next message waits in the Topic.
        inbound(&publ, pe, publish("q", QoS::AtLeastOnce, Some(4)))
            .await
            .unwrap();
        nothing(&mut pend).await;
        assert_eq!(node.metrics.snapshot().dropped, 0);
        // The subscriber comes back and reads: the publisher gets its PUBACK.
        come_back_and_read(&node, "p", 4).await;
        assert_eq!(next(&mut pend).await, Packet::PubAck(PubResp::new(4)));
    }

    /// A node whose sessions hibernate after a second with nothing to do.
    fn sleepy_node() -> Node {
        let mut config = crate::Config::default();
        config.session.hibernate_after = 1;
        node_with(config)
    }

    #[test]
    fn a_dormant_session_and_its_record_go_with_the_node() {
        // The record holds the session's handle and the dormant session holds its record:
        // the Registry breaks the pair up when it goes.
        let system = actix_rt::System::new();
        let (record, end) = system.block_on(async {
            let node = sleepy_node();
            let (s, _epoch, end) = attach(&node, "d", true, AttachOptions::default()).await;
            until_dormant(&s).await;
            let record = Arc::downgrade(&node.routes.direct("d").expect("registered"));
            (record, end)
        });
        drop(system);
        assert!(record.upgrade().is_none(), "the record outlived the node");
        drop(end);
    }

    /// Waits (at most 5 s) until `session` is dormant.
    async fn until_dormant(session: &SessionRef) {
        for _ in 0..100 {
            if session.is_dormant() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{session:?} did not hibernate");
    }

    /// A message on "t" with `i` as payload.
    fn envelope(i: u32, qos: QoS) -> Envelope {
        Envelope::new(crate::actors::envelope::Message {
            from: ClientId::from("p"),
            topic: crate::actors::TopicName::from("t"),
            qos,
            retain: false,
            payload: Bytes::from(i.to_be_bytes().to_vec()),
            properties: codec::Properties::default(),
        })
    }

    /// The Topic of "t" (which has a subscriber).
    async fn topic_t(node: &Node) -> Addr<crate::actors::Topic> {
        node.registry
            .send(EnsureTopic {
                name: "t".into(),
                from: None,
            })
            .await
            .unwrap()
            .expect("a topic for a subscribed name")
    }

    fn distribute(i: u32, qos: QoS) -> Distribute {
        Distribute {
            envelope: envelope(i, qos),
            durable: Durable::default(),
            admission: Admission::Free,
        }
    }

    #[actix_rt::test]
    async fn an_idle_session_hibernates_and_a_publish_wakes_it() {
        let node = sleepy_node();
        let (s, epoch, mut end) =
            crate::actors::testing::subscribe(&node, "s", "q", QoS::AtLeastOnce).await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        assert!(!s.is_dormant() && !publ.is_dormant());
        until_dormant(&s).await;
        until_dormant(&publ).await;
        let m = node.metrics.snapshot();
        assert_eq!((m.sessions, m.sessions_dormant), (2, 2));
        // The PUBLISH wakes the publisher; the Topic writes the message to the subscriber's
        // link itself and wakes the subscriber to arm its resend timer (3.1.1).
        publish_qos1(&publ, pe, &mut pend, 1).await;
        let first = publish_packet(&mut end, Duration::from_secs(1)).await;
        assert!(!first.dup);
        assert!(s.send(RetryArmed).await.unwrap(), "the resend timer runs");
        assert_eq!(node.metrics.snapshot().sessions_dormant, 0);
        // Nothing inflight any more: both hibernate again, the resend timer stopped.
        let ack = Packet::PubAck(PubResp::new(first.packet_id.unwrap()));
        inbound(&s, epoch, ack).await.unwrap();
        until_dormant(&s).await;
        until_dormant(&publ).await;
        assert_eq!(node.metrics.snapshot().sessions_dormant, 2);
        // Woken again, it works as before: the resend timer arms for the next message.
        publish_qos1(&publ, pe, &mut pend, 2).await;
        let second = publish_packet(&mut end, Duration::from_secs(1)).await;
        assert_ne!(second.packet_id, first.packet_id);
        assert!(s.send(RetryArmed).await.unwrap());
        assert_eq!(node.metrics.snapshot().sessions, 2);
    }

    #[actix_rt::test]
    async fn hibernate_after_zero_keeps_every_actor() {
        let mut config = crate::Config::default();
        config.session.hibernate_after = 0;
        let node = node_with(config);
        let (s, _, _end) = attach(&node, "s", true, AttachOptions::default()).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!s.is_dormant());
        assert_eq!(node.metrics.snapshot().sessions_dormant, 0);
    }

    #[actix_rt::test]
    async fn a_session_with_a_message_inflight_does_not_hibernate() {
        let node = sleepy_node();
        let (s, epoch, mut end) =
            crate::actors::testing::subscribe(&node, "s", "q", QoS::AtLeastOnce).await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        publish_qos1(&publ, pe, &mut pend, 1).await;
        let first = publish_packet(&mut end, Duration::from_secs(1)).await;
        tokio::time::sleep(Duration::from_millis(2500)).await;
        assert!(!s.is_dormant(), "unacknowledged: it stays");
        let ack = Packet::PubAck(PubResp::new(first.packet_id.unwrap()));
        inbound(&s, epoch, ack).await.unwrap();
        until_dormant(&s).await;
    }

    #[actix_rt::test]
    async fn qos0_messages_reach_a_dormant_subscriber_without_waking_it() {
        let node = sleepy_node();
        let (s, _, mut end) =
            crate::actors::testing::subscribe(&node, "s", "t", QoS::AtMostOnce).await;
        let topic = topic_t(&node).await;
        until_dormant(&s).await;
        for i in 0..50 {
            topic.do_send(distribute(i, QoS::AtMostOnce));
        }
        for i in 0..50u32 {
            match next(&mut end).await {
                Packet::Publish(p) => assert_eq!(p.payload.as_ref(), i.to_be_bytes()),
                other => panic!("{other:?}"),
            }
        }
        assert!(s.is_dormant(), "the lane needs no actor");
        assert_eq!(node.metrics.snapshot().sessions_dormant, 1);
    }

    #[actix_rt::test]
    async fn subscribe_and_a_direct_message_wake_a_dormant_session() {
        let node = sleepy_node();
        let (s, epoch, mut end) = attach(&node, "s", true, AttachOptions::default()).await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        until_dormant(&s).await;
        // SUBSCRIBE: answered as ever.
        inbound(&s, epoch, subscribe("q", QoS::AtLeastOnce))
            .await
            .unwrap();
        assert!(matches!(next(&mut end).await, Packet::SubAck(a) if a.return_codes == vec![1]));
        until_dormant(&s).await;
        until_dormant(&publ).await;
        // A direct message (topic = client id "s") wakes the receiver through its slot.
        inbound(&publ, pe, publish("s", QoS::AtLeastOnce, Some(7)))
            .await
            .unwrap();
        assert_eq!(next(&mut pend).await, Packet::PubAck(PubResp::new(7)));
        match next(&mut end).await {
            Packet::Publish(p) => assert_eq!((p.topic.as_ref(), p.qos), ("s", QoS::AtLeastOnce)),
            other => panic!("{other:?}"),
        }
    }

    #[actix_rt::test]
    async fn a_qos1_message_for_a_dormant_offline_session_is_kept_for_its_client() {
        let node = sleepy_node();
        offline_subscriber(&node, "p", "q").await;
        let p = node.routes.session("p").expect("registered");
        until_dormant(&p).await;
        let (publ, pe, mut pend) = attach(&node, "pub", true, AttachOptions::default()).await;
        publish_qos1(&publ, pe, &mut pend, 1).await;
        node.store.sync().unwrap();
        assert_eq!(node.store.queued_seqs("p").unwrap().len(), 1);
        assert_eq!(node.metrics.snapshot().queued, 1);
        let got = come_back_and_read(&node, "p", 1).await;
        assert_eq!(&*got[0].topic, "q");
    }

    #[actix_rt::test]
    async fn a_dormant_session_is_taken_over_or_replaced_like_a_running_one() {
        let node = sleepy_node();
        let (s1, old, old_end) = attach(&node, "c", false, persistent()).await;
        until_dormant(&s1).await;
        // Takeover: the same session, the old link closed, the new one works.
        let (s2, new, mut new_end) = attach(&node, "c", false, persistent()).await;
        assert_eq!(s1, s2);
        assert_eq!(old_end.close_reason(), Some(CloseReason::TakenOver));
        assert_eq!(
            inbound(&s1, old, Packet::PubAck(PubResp::new(1))).await,
            Err(InboundError::Stale)
        );
        until_dormant(&s2).await;
        inbound(&s2, new, subscribe("a", QoS::AtMostOnce))
            .await
            .unwrap();
        assert!(matches!(next(&mut new_end).await, Packet::SubAck(_)));
        until_dormant(&s2).await;
        // A clean start replaces it: discarded, its link closed, its subscription gone.
        let (s3, _, _end) = attach(&node, "c", true, AttachOptions::default()).await;
        assert_ne!(s3, s2);
        assert_eq!(new_end.close_reason(), Some(CloseReason::TakenOver));
        assert!(!s2.connected());
        assert!(!node.routes.has_subscriber("a"));
        let m = node.metrics.snapshot();
        assert_eq!((m.sessions, m.sessions_dormant), (1, 0));
    }

    #[actix_rt::test]
    async fn a_disconnect_wakes_a_dormant_session_which_publishes_its_will_and_ends() {
        let node = sleepy_node();
        let (_b, _, mut b_end) =
            crate::actors::testing::subscribe(&node, "b", "w", QoS::AtMostOnce).await;
        let options = AttachOptions {
            will: Some(LastWill {
                topic: "w".into(),
                payload: Bytes::from_static(b"gone"),
                ..Default::default()
            }),
            ..Default::default()
        };
        let (a, epoch, _a_end) = attach(&node, "a", true, options).await;
        until_dormant(&a).await;
        a.do_send(Detached {
            epoch,
            publish_will: true,
            session_expiry: None,
        });
        match next(&mut b_end).await {
            Packet::Publish(p) => assert_eq!(p.payload.as_ref(), b"gone"),
            other => panic!("{other:?}"),
        }
        for _ in 0..100 {
            if node.routes.session("a").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(node.routes.session("a").is_none(), "ended");
        assert!(!a.connected());
        assert_eq!(node.metrics.snapshot().sessions, 1);
    }

    #[actix_rt::test]
    async fn a_dormant_offline_session_still_expires() {
        let node = sleepy_node();
        let options = AttachOptions {
            expiry: Duration::from_secs(6),
            ..Default::default()
        };
        let s = offline_subscriber_with(&node, "p", "q", options).await;
        assert!(node.store.session("p").unwrap().is_some());
        until_dormant(&s).await;
        // Its actor is gone; the Registry wakes it when it is due, and it ends.
        for _ in 0..100 {
            if node.routes.session("p").is_none() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(node.routes.session("p").is_none(), "expired");
        assert!(!s.connected());
        node.store.sync().unwrap();
        assert!(node.store.session("p").unwrap().is_none());
        let m = node.metrics.snapshot();
        assert_eq!((m.sessions, m.sessions_dormant, m.subscriptions), (0, 0, 0));
    }

    #[test]
    fn the_dormant_record_is_compact() {
        // jemalloc's 48-byte class; the rare state is boxed apart (`DormantExtras`).
        let size = std::mem::size_of::<Dormant>();
        assert!(size <= 48, "Dormant is {size} bytes");
    }

    #[actix_rt::test]
    async fn a_plain_idle_session_keeps_no_extras_and_a_rare_one_gets_them_back_on_wake() {
        let node = sleepy_node();
        let (plain, _, _plain_end) = attach(&node, "plain", true, AttachOptions::default()).await;
        until_dormant(&plain).await;
        assert_eq!(plain.with_dormant(|d| d.extras.is_none()), Some(true));
        let rules: Vec<crate::auth::TopicRule> = vec!["deny subscribe secret/#".parse().unwrap()];
        let options = AttachOptions {
            permissions: Permissions::compile(&rules, crate::auth::Access::Allow, "rare", None),
            max_packet_size: Some(100),
            ..persistent()
        };
        let alice = Some(Arc::from("alice"));
        let (rare, epoch, mut end) = attach_as(&node, "rare", false, options, alice).await;
        until_dormant(&rare).await;
        assert_eq!(rare.with_dormant(|d| d.extras.is_some()), Some(true));
        // Its permissions: the filter is refused.
        inbound(&rare, epoch, subscribe("secret/x", QoS::AtMostOnce))
            .await
            .unwrap();
        assert!(matches!(next(&mut end).await, Packet::SubAck(a) if a.return_codes == vec![0x80]));
        until_dormant(&rare).await;
        // Its Maximum Packet Size: a bigger message is dropped, a small one goes out.
        let big = Envelope::new(crate::actors::envelope::Message {
            from: ClientId::from("p"),
            topic: crate::actors::TopicName::from("t"),
            qos: QoS::AtMostOnce,
            retain: false,
            payload: Bytes::from(vec![0u8; 200]),
            properties: codec::Properties::default(),
        });
        for envelope in [big, envelope(1, QoS::AtMostOnce)] {
            rare.send(Deliver {
                envelope,
                qos: QoS::AtMostOnce,
                retain: false,
                subscription_ids: Vec::new(),
                persist: Persist::Volatile,
            })
            .await
            .unwrap();
        }
        match next(&mut end).await {
            Packet::Publish(p) => assert_eq!(p.payload.as_ref(), 1u32.to_be_bytes()),
            other => panic!("{other:?}"),
        }
        assert_eq!(node.metrics.snapshot().dropped, 1);
        until_dormant(&rare).await;
        // Its owner: written with the record as the client goes.
        rare.send(Detached {
            epoch,
            publish_will: false,
            session_expiry: None,
        })
        .await
        .unwrap();
        node.store.sync().unwrap();
        let record = node.store.session("rare").unwrap().expect("persistent");
        assert_eq!(record.owner.as_deref(), Some("alice"));
    }

    /// Begins hibernating if the session is idle (as its timer would), counting in the atomic
    /// when it began, and sends [`Hibernate`] after the delay: what is sent meanwhile waits
    /// in the slot.
    #[derive(Message)]
    #[rtype(result = "()")]
    struct TryHibernate(Arc<std::sync::atomic::AtomicUsize>, Duration);

    impl Handler<TryHibernate> for Session {
        type Result = ();

        fn handle(&mut self, msg: TryHibernate, ctx: &mut Self::Context) {
            if self.begin_hibernation() {
                msg.0.fetch_add(1, Ordering::Relaxed);
                ctx.run_later(msg.1, |_, ctx| ctx.address().do_send(Hibernate));
            }
        }
    }

    /// Opens clean session `id` on `arbiter`, attaches a 3.1.1 link with `options` and
    /// subscribes it to "t" at QoS 1; the reader task it spawns collects the payloads of the
    /// first `n` PUBLISHes (acknowledging each QoS 1 one through the session).
    async fn reading_subscriber(
        node: &Node,
        id: &str,
        arbiter: &actix_rt::Arbiter,
        options: AttachOptions,
        n: usize,
    ) -> (SessionRef, tokio::task::JoinHandle<Vec<u32>>) {
        let opened = node
            .registry
            .send(registry::OpenSession {
                client_id: ClientId::from(id),
                clean_start: true,
                persistent: false,
                arbiter: arbiter.handle(),
                owner: None,
            })
            .await
            .unwrap()
            .unwrap();
        let s = opened.session;
        let epoch = Epoch::next();
        let capacity = crate::actors::link::LINK_CAPACITY;
        let (link, mut end) = crate::actors::link(epoch, Protocol::V311, capacity);
        s.send(Attach { link, options }).await.unwrap().unwrap();
        inbound(&s, epoch, subscribe("t", QoS::AtLeastOnce))
            .await
            .unwrap();
        assert!(matches!(next(&mut end).await, Packet::SubAck(_)));
        let session = s.clone();
        let reader = actix_rt::spawn(async move {
            let mut got = Vec::with_capacity(n);
            while got.len() < n {
                match tokio::time::timeout(Duration::from_secs(5), end.recv()).await {
                    Ok(Some(Packet::Publish(p))) => {
                        if let Some(id) = p.packet_id {
                            let ack = Packet::PubAck(PubResp::new(id));
                            session.do_send(Inbound { epoch, packet: ack });
                        }
                        let payload: [u8; 4] = p.payload.as_ref().try_into().unwrap();
                        got.push(u32::from_be_bytes(payload));
                    }
                    other => panic!("after {} messages: {other:?}", got.len()),
                }
            }
            got
        });
        (s, reader)
    }

    #[actix_rt::test]
    async fn nothing_is_lost_or_reordered_across_hibernation_under_a_concurrent_publisher() {
        let node = node();
        // The subscribers run on an arbiter of their own, so they hibernate and wake while
        // the Topic (on the test's arbiter) fans out to them. "a" takes the lane and the
        // direct path; "b", with a Maximum Packet Size to check, gets every message through
        // its mailbox (or its slot's queue while it hibernates).
        let arbiter = actix_rt::Arbiter::new();
        let n = 3000u32;
        let (a, a_reader) =
            reading_subscriber(&node, "a", &arbiter, AttachOptions::default(), n as usize).await;
        let options = AttachOptions {
            max_packet_size: Some(1 << 20),
            ..Default::default()
        };
        let (b, b_reader) = reading_subscriber(&node, "b", &arbiter, options, n as usize).await;
        let topic = topic_t(&node).await;
        let qos = |i: u32| {
            if i % 3 == 0 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            }
        };
        let began = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut slept = 0;
        for i in 0..n {
            topic.do_send(distribute(i, qos(i)));
            if i % 10 == 9 {
                let delay = Duration::from_micros(u64::from(i % 7) * 300);
                a.do_send(TryHibernate(began.clone(), delay));
                b.do_send(TryHibernate(began.clone(), delay));
            }
            // Now and then publish into sessions that have just gone dormant (once the
            // readers have caught up, they are idle).
            if i % 200 == 199 {
                for _ in 0..500 {
                    if a.is_dormant() && b.is_dormant() {
                        slept += 1;
                        break;
                    }
                    for s in [&a, &b] {
                        if !s.is_dormant() {
                            s.do_send(TryHibernate(began.clone(), Duration::ZERO));
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
            if i % 50 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let all: Vec<u32> = (0..n).collect();
        assert_eq!(a_reader.await.unwrap(), all, "every message, in order");
        assert_eq!(b_reader.await.unwrap(), all, "every message, in order");
        // Every acknowledgement was applied: nothing is left inflight.
        for _ in 0..200 {
            if node.metrics.snapshot().queued == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(node.metrics.snapshot().queued, 0, "acknowledged");
        let began = began.load(Ordering::Relaxed);
        assert!(began > 10, "hibernation began {began} times");
        assert!(slept > 3, "dormant {slept} times");
        assert_eq!(node.metrics.snapshot().dropped, 0);
        arbiter.stop();
    }
}
