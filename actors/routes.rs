//! [`Routes`]: the route snapshot that sessions read on the publish path without an actor
//! round trip.
//!
//! The [`Registry`](super::Registry) is its only writer; sessions only read it. It holds the
//! three things a publishing session must know: whether the topic name is a client id (a
//! direct message), which [`Topic`] actor serves the name, and — when no Topic
//! runs yet — whether any subscription filter matches the name at all. So a publish to a
//! name nobody subscribes to costs three lookups and no actor hop, and only the first
//! publish to a matching name asks the Registry to start its Topic.
//!
//! It also holds every client's record ([`Direct`]: the session's shared outbound state,
//! with its lane, and the Registry's fields, among them the handle on the session,
//! [`SessionRef`]), which Topics pick up when a session joins their subscriber set, to put
//! messages straight on the subscriber's link. The map holds the records alone, found by
//! the client id they carry: an idle client costs one word here, and the Registry keeps
//! no map of its own. Each running Topic carries a `stores`
//! flag, set by the Registry once a persistent subscriber joins it: a publisher's
//! acknowledgement waits for a store commit only for such Topics.
//!
//! Messages are offered to a named actor *through the stored address* ([`Routes::offer_topic`],
//! [`Routes::offer_session`]), never through a fresh clone of it. actix bounds a mailbox per
//! sender: a sender that fills it is parked and refused until the actor catches up, but a
//! fresh clone starts unparked and always gets one message in. Cloning the address per
//! publish would therefore let every publish into a full mailbox, without limit; sending
//! through the one stored sender makes the mailbox capacity hold for all publishers
//! together. (It also spares the two allocations an `Addr` clone costs.) A session's one
//! stored address is in its slot, which every [`SessionRef`] shares.
//!
//! Why concurrent maps rather than an immutable snapshot swapped on every change: the
//! name maps and the filter trie can hold millions of entries, and a copy-on-write snapshot
//! would copy all of them for each CONNECT or SUBSCRIBE. [`DashMap`] shards its locks, so
//! readers on different cores rarely meet; the filter trie sits behind one `RwLock` that
//! readers take only for a `has_match` walk (no allocation, no await), and only when a name
//! has no Topic yet. Each entry is written by the Registry alone, which serialises every
//! change, so readers see each change whole and in the order the Registry made it.

use super::direct::Direct;
use super::envelope::Envelope;
use super::ids::{ClientId, TopicName};
use super::session::Session;
use super::slot::SessionRef;
use super::topic::{Admission, Distribute, Intake, Topic};
use crate::codec::SubscriptionOptions;
use crate::topic::FilterTrie;
use actix::prelude::SendError;
use actix::{Addr, Handler, Message};
use dashmap::{DashMap, DashSet};
use std::borrow::Borrow;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// One client's subscription to one filter, as stored in the filter trie.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    /// Options from SUBSCRIBE (QoS is the granted QoS).
    pub options: SubscriptionOptions,
    /// MQTT 5 subscription identifier, if the SUBSCRIBE carried one.
    pub identifier: Option<u32>,
}

/// How a message offered to a named actor fared (`H`: the actor's handle, `R`: what is
/// handed back when no actor runs under the name).
#[derive(Debug)]
pub enum Offer<H, M, R = M> {
    /// It is in the actor's mailbox.
    Sent,
    /// The mailbox is full: the message is handed back, with the actor's handle to wait
    /// on (`send(..).await`; the caller bounds how many such waits it has at once).
    Full(H, M),
    /// The actor stopped after it was named here: the message is handed back.
    Closed(M),
    /// No actor runs under that name: the message (or what it was to be built from) is
    /// handed back.
    Absent(R),
}

/// A registered client's record in the session map, hashed and compared by its client id
/// (so the map is searched with a `&str`, and holds one word per client).
#[derive(Clone)]
struct Named(Arc<Direct>);

impl Named {
    fn name(&self) -> &str {
        self.0.client_id().as_str()
    }
}

impl Hash for Named {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl PartialEq for Named {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Named {}

impl Borrow<str> for Named {
    fn borrow(&self) -> &str {
        self.name()
    }
}

/// How a message offered to a running Topic fared ([`Routes::offer_topic`]): when no
/// Topic runs, the envelope is handed back, not built into a message.
pub type TopicOffer = Offer<Addr<Topic>, Distribute, Envelope>;

/// A running Topic and whether a publish to it must wait for store writes.
struct TopicRoute {
    topic: Addr<Topic>,
    /// Set (by the Registry, before it acknowledges the subscription) once a persistent
    /// subscriber joined the Topic, and never cleared while it runs: a publisher's
    /// acknowledgement must then wait for the Topic's store write. While it is clear, the
    /// Topic stores nothing and the publisher is acknowledged once the message is in its
    /// mailbox.
    stores: AtomicBool,
    /// The room in the Topic's mailbox, in bytes.
    intake: Arc<Intake>,
}

/// Names → actors and the filter trie; see the module documentation.
pub struct Routes {
    sessions: DashSet<Named>,
    topics: DashMap<TopicName, TopicRoute>,
    filters: RwLock<FilterTrie<ClientId, Subscription>>,
}

impl Default for Routes {
    fn default() -> Self {
        Routes::new()
    }
}

/// Offers `msg` to a session through its handle (the one stored sender of its slot).
fn offer<M>(session: &SessionRef, msg: M) -> Offer<SessionRef, M>
where
    Session: Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    match session.try_send(msg) {
        Ok(()) => Offer::Sent,
        Err(SendError::Full(msg)) => Offer::Full(session.clone(), msg),
        Err(SendError::Closed(msg)) => Offer::Closed(msg),
    }
}

impl Routes {
    /// Empty routes.
    pub fn new() -> Self {
        Routes {
            sessions: DashSet::new(),
            topics: DashMap::new(),
            filters: RwLock::new(FilterTrie::new()),
        }
    }

    /// The session of client id `name`, if one exists (online or offline).
    pub fn session(&self, name: &str) -> Option<SessionRef> {
        self.direct(name)?.session()
    }

    /// The record registered for client id `name`, cloned out of the map (its lock is never
    /// taken under the map's).
    pub(super) fn direct(&self, name: &str) -> Option<Arc<Direct>> {
        self.sessions.get(name).map(|entry| entry.key().0.clone())
    }

    /// Offers `msg` to the session of client id `name` through its stored handle (see the
    /// module documentation for why not through a clone of an address).
    pub fn offer_session<M>(&self, name: &str, msg: M) -> Offer<SessionRef, M>
    where
        Session: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let Some(direct) = self.direct(name) else {
            return Offer::Absent(msg);
        };
        match direct.session() {
            Some(session) => offer(&session, msg),
            None => Offer::Closed(msg),
        }
    }

    /// True when client id `name` has a session (online or offline).
    pub fn is_session(&self, name: &str) -> bool {
        self.sessions.contains(name)
    }

    /// The Topic actor serving topic `name`, if one runs.
    pub fn topic(&self, name: &str) -> Option<Addr<Topic>> {
        self.topics.get(name).map(|a| a.value().topic.clone())
    }

    /// Whether the Topic serving `name` (if one runs) may have to store a QoS 1/2 message
    /// (it has had a persistent subscriber).
    #[cfg(test)]
    pub(crate) fn topic_stores(&self, name: &str) -> Option<bool> {
        self.topics
            .get(name)
            .map(|a| a.value().stores.load(Ordering::Acquire))
    }

    /// Bytes taken in the intake of the Topic serving `name` (if one runs).
    #[cfg(test)]
    pub(crate) fn topic_intake(&self, name: &str) -> Option<usize> {
        self.topics.get(name).map(|a| a.value().intake.taken())
    }

    /// Offers a message to the Topic serving `envelope`'s name, built by `make` from the
    /// envelope and the Topic's `stores` flag, through the Topic's stored address (see the
    /// module documentation). The message takes room in the Topic's [`Intake`]; without
    /// room it comes back as [`Offer::Full`], to be sent once [`Distribute::admit`] got it.
    pub fn offer_topic(
        &self,
        envelope: Envelope,
        make: impl FnOnce(Envelope, bool) -> Distribute,
    ) -> TopicOffer {
        let Some(entry) = self.topics.get(envelope.topic.as_str()) else {
            return Offer::Absent(envelope);
        };
        let route = entry.value();
        let cost = Intake::cost(&envelope);
        let mut msg = make(envelope, route.stores.load(Ordering::Acquire));
        if !route.intake.try_take(cost) {
            msg.admission = Admission::Wait(route.intake.clone(), cost);
            return Offer::Full(route.topic.clone(), msg);
        }
        msg.admission = Admission::Taken(cost);
        match route.topic.try_send(msg) {
            Ok(()) => Offer::Sent,
            Err(SendError::Full(msg)) => Offer::Full(route.topic.clone(), msg),
            Err(SendError::Closed(mut msg)) => {
                // Nobody will give this room back, and the next Topic has its own intake.
                route.intake.give_back(cost);
                msg.admission = Admission::Free;
                Offer::Closed(msg)
            }
        }
    }

    /// True when at least one subscription filter matches topic `name`.
    pub fn has_subscriber(&self, name: &str) -> bool {
        self.filters().has_match(name)
    }

    /// The record (shared outbound state, with the lane) of `session`, registered for
    /// client id `name`; `None` when `session` is not the one registered for the name.
    pub fn shared(&self, name: &str, session: &SessionRef) -> Option<Arc<Direct>> {
        self.direct(name).filter(|direct| direct.is_of(session))
    }

    /// Number of sessions registered.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Read access to the filter trie.
    pub(super) fn filters(&self) -> RwLockReadGuard<'_, FilterTrie<ClientId, Subscription>> {
        self.filters.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Write access to the filter trie (Registry only).
    pub(super) fn filters_mut(&self) -> RwLockWriteGuard<'_, FilterTrie<ClientId, Subscription>> {
        self.filters.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers a client's record, under the client id it carries (Registry only, after it
    /// registered the session in it and unregistered the client's previous record).
    pub(super) fn insert_session(&self, direct: Arc<Direct>) {
        // A set keeps the entry it has: make sure the new record is the one found.
        let previous = self.sessions.remove(direct.client_id().as_str());
        debug_assert!(previous.is_none(), "a client registered twice");
        self.sessions.insert(Named(direct));
    }

    /// Unregisters the record of client id `name` and returns it (Registry only).
    pub(super) fn remove_session(&self, name: &str) -> Option<Arc<Direct>> {
        self.sessions.remove(name).map(|named| named.0)
    }

    /// Unregisters every record and returns them (Registry only, as it stops for good).
    pub(super) fn drain_sessions(&self) -> Vec<Arc<Direct>> {
        let all = self.sessions.iter().map(|named| named.0.clone()).collect();
        self.sessions.clear();
        all
    }

    /// Registers a topic (Registry only); `stores`: it starts with a persistent subscriber.
    pub(super) fn insert_topic(
        &self,
        name: TopicName,
        topic: Addr<Topic>,
        stores: bool,
        intake: Arc<Intake>,
    ) {
        let stores = AtomicBool::new(stores);
        self.topics.insert(
            name,
            TopicRoute {
                topic,
                stores,
                intake,
            },
        );
    }

    /// A persistent subscriber joins the Topic of `name` (Registry only, before it
    /// acknowledges the subscription).
    pub(super) fn mark_stores(&self, name: &str) {
        if let Some(route) = self.topics.get(name) {
            route.value().stores.store(true, Ordering::Release);
        }
    }

    /// Unregisters a topic (Registry only).
    pub(super) fn remove_topic(&self, name: &str) {
        self.topics.remove(name);
    }
}
