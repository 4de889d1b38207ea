//! [`Registry`]: the naming service of one node. One per node, on the node's main arbiter.
//!
//! Who talks to it: connections ask it to [`OpenSession`] (find, replace or start the session
//! of a client id); sessions send [`Subscribe`], [`Unsubscribe`], [`Retain`], [`EnsureTopic`]
//! (first publish to a name that has subscribers but no Topic yet), [`SessionEnded`] and,
//! when an offline session goes dormant, [`WakeAt`] (its expiry: the Registry wakes it then).
//! It tells sessions to [`Discard`] themselves when a clean start
//! replaces them, and Topics about their subscribers ([`SetSubscriber`]) and when to
//! [`Stop`].
//!
//! It owns every name and subscription of the node: client id → Session, topic name → Topic,
//! the filter trie of all subscriptions, the index of retained messages, and each client's
//! own filters. It publishes the read side through [`Routes`](super::Routes), so publishes
//! do not wait on it. What it keeps per client (the session's handle, its persistence, its
//! filters, its owner) lives in the client's record in the Routes
//! ([`Direct`](super::direct::Direct)), which it alone writes: it keeps no map of its own.
//!
//! It is the one place that resolves the clash between client ids and topic names: a
//! CONNECT with a client id equal to a subscribed topic name is refused, and so is a
//! subscription to a filter equal to an existing client id.
//!
//! Durable state: at start-up it restores the persistent sessions (offline, with their
//! subscriptions and queues, expiring on their own) and the retained messages the
//! [`Store`](crate::store::Store) loaded. It writes retained messages to the store (the
//! publisher's acknowledgement waits for that write) and deletes a persistent session's
//! record and queue when the session ends, expires or is replaced by a clean start.
//!
//! It never waits on another actor inside a handler (it only `do_send`s control messages to
//! Topics and Sessions), so requests to it always complete. Those `do_send`s cannot be
//! flooded by a client: each follows one request, and a session has at most one request
//! outstanding at a time because its connection waits for each packet to be handled.

use super::direct::{Direct, Filters};
use super::envelope::Envelope;
use super::ids::{ClientId, TopicName};
use super::routes::Subscription;
use super::session::{self, Discard, Session, Wake};
use super::slot::SessionRef;
use super::topic::{Intake, SetSubscriber, Stop, Subscriber, Topic};
use super::Node;
use crate::codec::QoS;
use crate::metrics::Metrics;
use crate::store::{Batch, Commit, Loaded, RetainedRecord};
use crate::topic::{self as topics, NameTrie};
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use slog::{debug, info, warn};
use std::collections::hash_map::{DefaultHasher, Entry};
use std::collections::{BTreeSet, HashMap};
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::thread::ThreadId;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The node's naming service; see the module documentation.
pub struct Registry {
    /// Dependencies, with this Registry's own address.
    node: Node,
    /// The same dependencies, shared by every session this Registry starts (one `Arc`
    /// instead of a copy of the bundle, with its Registry address, per session).
    session_node: Arc<Node>,
    /// Running Topic actors, searchable by filter.
    topics: NameTrie<Addr<Topic>>,
    /// Wildcard-free filters with at least one subscriber, with their subscriber counts:
    /// these names cannot become client ids.
    exact_filters: HashMap<String, usize>,
    /// Retained messages by topic name.
    retained: NameTrie<Envelope>,
    /// The thread of each worker arbiter (as they report it after start), in the order of
    /// `node.workers`.
    worker_threads: Vec<Option<ThreadId>>,
    /// Dormant offline sessions to wake when their expiry is due ([`WakeAt`]).
    expiries: BTreeSet<(Instant, ClientId)>,
    /// The timer for the earliest of `expiries`.
    expiry_timer: Option<(Instant, SpawnHandle)>,
}

impl Registry {
    /// A registry serving `node` (whose `registry` field is this actor's address), with
    /// the sessions and retained messages of `loaded` restored before it serves anyone.
    pub fn new(node: Node, loaded: Loaded) -> Self {
        let mut registry = Registry {
            session_node: Arc::new(node.clone()),
            node,
            topics: NameTrie::new(),
            exact_filters: HashMap::new(),
            retained: NameTrie::new(),
            worker_threads: Vec::new(),
            expiries: BTreeSet::new(),
            expiry_timer: None,
        };
        registry.restore(loaded);
        registry
    }
}

impl Actor for Registry {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        // Requests wait for room (send().await); only control messages bypass the bound.
        ctx.set_mailbox_capacity(1024);
        self.worker_threads = vec![None; self.node.workers.len()];
        for (index, worker) in self.node.workers.iter().enumerate() {
            let registry = ctx.address();
            worker.spawn(async move {
                let thread = std::thread::current().id();
                registry.do_send(WorkerThread { index, thread });
            });
        }
    }
}

/// Which of `workers` (at least one) runs a Topic whose name hashes to `hash`: the one the
/// hash picks, or the next one when `threads` (each worker's thread, as far as known) says
/// that is the thread of `publisher`.
fn topic_worker(
    hash: u64,
    workers: usize,
    threads: &[Option<ThreadId>],
    publisher: Option<ThreadId>,
) -> usize {
    let n = workers.max(1);
    let index = (hash % n as u64) as usize;
    if publisher.is_some() && threads.get(index) == Some(&publisher) {
        (index + 1) % n
    } else {
        index
    }
}

/// A worker arbiter tells which thread it runs on.
#[derive(Message)]
#[rtype(result = "()")]
struct WorkerThread {
    index: usize,
    thread: ThreadId,
}

impl Handler<WorkerThread> for Registry {
    type Result = ();

    fn handle(&mut self, msg: WorkerThread, _ctx: &mut Self::Context) {
        if let Some(slot) = self.worker_threads.get_mut(msg.index) {
            *slot = Some(msg.thread);
        }
    }
}

/// Restarted in place by the [`Supervisor`](super::Supervisor) if it ever stops: state and
/// address are kept.
impl Drop for Registry {
    /// Unregisters every session as the node goes: a record holds its session's handle and
    /// the session holds its record, so the pair would otherwise outlive the node.
    fn drop(&mut self) {
        for client in self.node.routes.drain_sessions() {
            let (session, _, _) = client.lock().unregister();
            drop(session);
        }
    }
}

impl Supervised for Registry {
    fn restarting(&mut self, _ctx: &mut Context<Self>) {
        warn!(self.node.log, "registry restarting");
    }
}

/// Find, replace or create the session of a client id for a new connection.
#[derive(Message)]
#[rtype(result = "Result<SessionOpened, OpenSessionError>")]
pub struct OpenSession {
    /// The client id of the CONNECT (already assigned if the client sent none).
    pub client_id: ClientId,
    /// Clean session (3.x) / clean start (5.0): discard any existing session.
    pub clean_start: bool,
    /// The new connection wants its session kept after it disconnects.
    pub persistent: bool,
    /// Arbiter of the connection: a new session starts there.
    pub arbiter: ArbiterHandle,
    /// The connection's authenticated user (`None`: anonymous).
    pub owner: Option<Arc<str>>,
}

/// The session a connection should attach to.
#[derive(Debug)]
pub struct SessionOpened {
    /// The session.
    pub session: SessionRef,
    /// It existed already with state kept for this client (CONNACK session present).
    pub present: bool,
}

/// Why a client id cannot have a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OpenSessionError {
    /// The client id is a topic name somebody subscribes to.
    #[error("client id is a subscribed topic name")]
    IdentifierIsTopic,
    /// The client id has a session opened by another user.
    #[error("client id belongs to another user")]
    NotOwner,
    /// The Registry stopped before it could open the session.
    #[error("registry stopped")]
    RegistryStopped,
}

/// How long the Registry waits for a replaced session to stop saving its record.
const DISCARD_WAIT: Duration = Duration::from_secs(5);

impl Handler<OpenSession> for Registry {
    type Result = ActorResponse<Self, Result<SessionOpened, OpenSessionError>>;

    fn handle(&mut self, msg: OpenSession, ctx: &mut Self::Context) -> Self::Result {
        if self.exact_filters.contains_key(msg.client_id.as_str()) {
            return ActorResponse::reply(Err(OpenSessionError::IdentifierIsTopic));
        }
        let existing = self.node.routes.direct(msg.client_id.as_str());
        if let Some(client) = &existing {
            if client.owner() != msg.owner.as_ref() {
                return ActorResponse::reply(Err(OpenSessionError::NotOwner));
            }
            let (persistent, session) = {
                let record = client.lock();
                (record.persistent(), record.registered().cloned())
            };
            // A session stopped without a trace (its actor gone, its handle closed) is
            // replaced below like a discarded session.
            let resumed = session
                .filter(|_| persistent && !msg.clean_start)
                .filter(SessionRef::connected);
            if let Some(session) = resumed {
                if !msg.persistent {
                    // No longer kept after this connection: forget what the store has and
                    // stop storing new messages for it.
                    client.lock().forget_stored();
                    let mut batch = Batch::new();
                    batch.del_session(msg.client_id.as_str());
                    self.node.store.submit(batch);
                    self.refresh_topics(&msg.client_id);
                }
                return ActorResponse::reply(Ok(SessionOpened {
                    session,
                    present: true,
                }));
            }
        }
        let stored = existing.is_some_and(|c| c.lock().stored());
        if let Some(old) = self.remove_client(&msg.client_id) {
            debug!(self.node.log, "session replaced"; "client_id" => %msg.client_id);
            if !stored {
                old.do_send(Discard);
                return ActorResponse::reply(Ok(self.new_session(msg)));
            }
            // The replaced session may still be saving its record (its connection has just
            // gone, and its Detached can be handled after the deletion above): the new
            // session starts, and the record is deleted again, only once the old one has
            // stopped saving. Other requests wait meanwhile, so none sees it half done.
            let (opened, answer) = oneshot::channel();
            ctx.wait(
                async move {
                    let _ = tokio::time::timeout(DISCARD_WAIT, old.send(Discard)).await;
                }
                .into_actor(self)
                .map(move |(), act, _| {
                    let mut batch = Batch::new();
                    batch.del_session(msg.client_id.as_str());
                    act.node.store.submit(batch);
                    let _ = opened.send(act.new_session(msg));
                }),
            );
            return ActorResponse::r#async(
                async move { answer.await.map_err(|_| OpenSessionError::RegistryStopped) }
                    .into_actor(self),
            );
        }
        ActorResponse::reply(Ok(self.new_session(msg)))
    }
}

impl Registry {
    /// Starts a new session for `msg`'s client id (none is registered for it).
    fn new_session(&mut self, msg: OpenSession) -> SessionOpened {
        let shared = session::shared(msg.client_id, msg.owner, &self.session_node);
        let (node, theirs) = (self.session_node.clone(), shared.clone());
        let session = SessionRef::start(Session::new(node, theirs), &msg.arbiter);
        // Registered at once: Topics may pick it up as soon as the session is named (the
        // lane stays closed until a connection attaches).
        shared
            .lock()
            .register(session.clone(), msg.persistent, Filters::default());
        self.node.routes.insert_session(shared);
        Metrics::incr(&self.node.metrics.sessions);
        SessionOpened {
            session,
            present: false,
        }
    }
}

/// A session ended (clean disconnect or expiry) and stopped itself.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SessionEnded {
    /// Its client id.
    pub client_id: ClientId,
    /// The session, so that a newer session with the same id is left alone.
    pub session: SessionRef,
}

impl Handler<SessionEnded> for Registry {
    type Result = ();

    fn handle(&mut self, msg: SessionEnded, _ctx: &mut Self::Context) {
        let current = self
            .node
            .routes
            .direct(msg.client_id.as_str())
            .is_some_and(|c| c.is_of(&msg.session));
        if current {
            self.remove_client(&msg.client_id);
        }
    }
}

/// A session went dormant offline: wake it at `at`, when it expires (its actor, stopped,
/// has no timer).
#[derive(Message)]
#[rtype(result = "()")]
pub struct WakeAt {
    /// Its client id.
    pub client_id: ClientId,
    /// Its expiry.
    pub at: Instant,
}

impl Handler<WakeAt> for Registry {
    type Result = ();

    fn handle(&mut self, msg: WakeAt, ctx: &mut Self::Context) {
        self.expiries.insert((msg.at, msg.client_id));
        self.arm_expiries(ctx);
    }
}

impl Registry {
    /// Runs the expiry timer for the earliest dormant session to wake, if it does not run
    /// for that one already.
    fn arm_expiries(&mut self, ctx: &mut Context<Self>) {
        let Some((at, _)) = self.expiries.first() else {
            return;
        };
        let at = *at;
        if let Some((armed, handle)) = self.expiry_timer {
            if armed <= at {
                return;
            }
            ctx.cancel_future(handle);
        }
        let after = at.saturating_duration_since(Instant::now());
        let handle = ctx.run_later(after, |act, ctx| {
            act.expiry_timer = None;
            act.wake_expired();
            act.arm_expiries(ctx);
        });
        self.expiry_timer = Some((at, handle));
    }

    /// Wakes the sessions whose expiry is due: each ends itself as it starts, unless it got
    /// a connection meanwhile (then the entry here was stale and the wake-up costs nothing).
    fn wake_expired(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.expiries.first() {
            if *at > now {
                break;
            }
            if let Some((_, client_id)) = self.expiries.pop_first() {
                if let Some(session) = self.node.routes.session(client_id.as_str()) {
                    session.do_send(Wake);
                }
            }
        }
    }
}

/// Add or replace subscriptions of one client.
#[derive(Message)]
#[rtype(result = "Subscribed")]
pub struct Subscribe {
    /// The subscribing client.
    pub client_id: ClientId,
    /// Valid filters with their options (QoS = the QoS to grant), in request order.
    pub filters: Vec<(String, Subscription)>,
}

/// Outcome of [`Subscribe`].
#[derive(Debug, Default)]
pub struct Subscribed {
    /// Per filter, in request order: the granted QoS, or why it was refused.
    pub granted: Vec<Result<QoS, SubscribeRefused>>,
    /// Retained messages to send after the SUBACK, with their delivery QoS.
    pub retained: Vec<(Envelope, QoS)>,
}

/// Why one filter of a SUBSCRIBE was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeRefused {
    /// The filter is another session's client id (direct messaging owns that name).
    #[error("filter is a client id")]
    ClientId,
    /// The session is not registered any more.
    #[error("session unknown")]
    NoSession,
}

impl Handler<Subscribe> for Registry {
    type Result = MessageResult<Subscribe>;

    fn handle(&mut self, msg: Subscribe, _ctx: &mut Self::Context) -> Self::Result {
        let mut out = Subscribed::default();
        for (filter, subscription) in msg.filters {
            let outcome = self.subscribe(&msg.client_id, filter, subscription, &mut out.retained);
            out.granted.push(outcome);
        }
        MessageResult(out)
    }
}

/// Remove subscriptions of one client.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Unsubscribe {
    /// The client.
    pub client_id: ClientId,
    /// Filters to remove; unknown ones are ignored.
    pub filters: Vec<String>,
}

impl Handler<Unsubscribe> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Unsubscribe, _ctx: &mut Self::Context) {
        let Some(client) = self.node.routes.direct(msg.client_id.as_str()) else {
            return;
        };
        let removed: Vec<String> = {
            let mut record = client.lock();
            let filters = record.filters();
            msg.filters
                .into_iter()
                .filter(|f| filters.remove(f).is_some())
                .collect()
        };
        self.forget_filters(&msg.client_id, &removed);
    }
}

/// Set (non-empty payload) or clear (empty payload) the retained message of a topic.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Retain {
    /// A message published with RETAIN=1.
    pub envelope: Envelope,
    /// Completed once the change is durable.
    pub commit: Option<Commit>,
}

impl Handler<Retain> for Registry {
    type Result = ();

    fn handle(&mut self, msg: Retain, _ctx: &mut Self::Context) {
        let name = msg.envelope.topic.clone();
        let mut batch = Batch::new();
        if msg.envelope.clears_retained() {
            batch.del_retained(name.as_str());
            if self.retained.remove(name.as_str()).is_some() {
                Metrics::sub(&self.node.metrics.retained, 1);
            }
        } else {
            let record = RetainedRecord {
                message: session::message_record(&msg.envelope),
            };
            batch.put_retained(name.as_str(), &record);
            if self.retained.insert(name.as_str(), msg.envelope).is_none() {
                Metrics::incr(&self.node.metrics.retained);
            }
        }
        self.node.store.submit_durable(batch, msg.commit, None);
    }
}

/// The Topic actor for a name, started if subscriptions match it; `None` if none does.
#[derive(Message)]
#[rtype(result = "Option<Addr<Topic>>")]
pub struct EnsureTopic {
    /// The topic name.
    pub name: TopicName,
    /// The thread of the session publishing to it, if that is why it starts: the Topic then
    /// runs on another worker (see `Registry::start_topic`).
    pub from: Option<ThreadId>,
}

impl Handler<EnsureTopic> for Registry {
    type Result = Option<Addr<Topic>>;

    fn handle(&mut self, msg: EnsureTopic, _ctx: &mut Self::Context) -> Self::Result {
        if let Some(topic) = self.topics.get(msg.name.as_str()) {
            return Some(topic.clone());
        }
        // Collected first: no client's record is locked under the trie's lock.
        let mut matched: Vec<(ClientId, Subscription)> = Vec::new();
        self.node
            .routes
            .filters()
            .for_each_match(msg.name.as_str(), |_filter, client_id, subscription| {
                matched.push((client_id.clone(), *subscription))
            });
        let mut subscribers: HashMap<ClientId, Subscriber> = HashMap::new();
        for (client_id, subscription) in matched {
            match subscribers.entry(client_id) {
                Entry::Occupied(mut e) => merge(e.get_mut(), &subscription),
                Entry::Vacant(e) => {
                    let client = self.node.routes.direct(e.key().as_str());
                    if let Some(subscriber) = client.and_then(|c| subscriber(&c, &subscription)) {
                        e.insert(subscriber);
                    }
                }
            }
        }
        if subscribers.is_empty() {
            return None;
        }
        let topic = self.start_topic(msg.name.clone(), subscribers, msg.from);
        Some(topic)
    }
}

impl Registry {
    /// Brings back the persistent sessions and retained messages of the last run.
    fn restore(&mut self, loaded: Loaded) {
        let (count, retained, expired) =
            (loaded.sessions.len(), loaded.retained.len(), loaded.expired);
        let workers = self.node.workers.clone();
        for (n, stored) in loaded.sessions.into_iter().enumerate() {
            let client_id = ClientId::from(stored.client_id.clone());
            if self.node.routes.is_session(client_id.as_str()) {
                continue;
            }
            let owner = stored.record.owner.as_deref().map(Arc::from);
            let filters: Filters = stored
                .record
                .subscriptions
                .iter()
                .map(session::subscription_from_record)
                .collect();
            let shared = session::shared(client_id.clone(), owner, &self.session_node);
            let (node, theirs) = (self.session_node.clone(), shared.clone());
            let session = Session::restored(node, theirs, stored);
            let session = if workers.is_empty() {
                SessionRef::start(session, &Arbiter::current())
            } else {
                SessionRef::start(session, &workers[n % workers.len()])
            };
            {
                let mut trie = self.node.routes.filters_mut();
                for (filter, subscription) in filters.iter() {
                    trie.insert(filter, client_id.clone(), *subscription);
                    Metrics::incr(&self.node.metrics.subscriptions);
                    if !topics::is_wildcard(filter) {
                        *self.exact_filters.entry(filter.clone()).or_insert(0) += 1;
                    }
                }
            }
            shared.lock().register(session, true, filters);
            self.node.routes.insert_session(shared);
            Metrics::incr(&self.node.metrics.sessions);
        }
        for record in loaded.retained {
            let envelope = session::envelope_from_record(&record.message);
            let name = envelope.topic.clone();
            if self.retained.insert(name.as_str(), envelope).is_none() {
                Metrics::incr(&self.node.metrics.retained);
            }
        }
        info!(self.node.log, "state restored";
            "sessions" => count, "retained" => retained, "expired_sessions" => expired);
    }

    /// Tells the Topic of `name` the client's current merged entry (`None`: no filter of the
    /// client matches it any more, or the client is gone).
    fn send_merged(&self, client_id: &ClientId, name: &TopicName, topic: &Addr<Topic>) {
        let subscriber = self.merged(client_id, name.as_str());
        if subscriber.as_ref().is_some_and(|s| s.persistent) {
            // Before the subscription is acknowledged: later publishes wait for the store.
            self.node.routes.mark_stores(name.as_str());
        }
        topic.do_send(SetSubscriber {
            client_id: client_id.clone(),
            subscriber,
        });
    }

    /// Sends every running Topic that one of the client's filters matches the client's
    /// current merged entry (after its persistence changed).
    fn refresh_topics(&mut self, client_id: &ClientId) {
        let Some(client) = self.node.routes.direct(client_id.as_str()) else {
            return;
        };
        let filters: Vec<String> = client.lock().filters().keys().cloned().collect();
        let mut affected: HashMap<TopicName, Addr<Topic>> = HashMap::new();
        for filter in &filters {
            self.topics.for_each_match(filter, |name, topic| {
                affected.insert(TopicName::from(name), topic.clone());
            });
        }
        for (name, topic) in affected {
            self.send_merged(client_id, &name, &topic);
        }
    }

    /// Adds one subscription; collects the retained messages it should receive.
    fn subscribe(
        &mut self,
        client_id: &ClientId,
        filter: String,
        subscription: Subscription,
        retained: &mut Vec<(Envelope, QoS)>,
    ) -> Result<QoS, SubscribeRefused> {
        if self.node.routes.is_session(&filter) {
            return Err(SubscribeRefused::ClientId);
        }
        let Some(client) = self.node.routes.direct(client_id.as_str()) else {
            return Err(SubscribeRefused::NoSession);
        };
        let existed = client
            .lock()
            .filters()
            .insert(filter.clone(), subscription)
            .is_some();
        self.node
            .routes
            .filters_mut()
            .insert(&filter, client_id.clone(), subscription);
        if !existed {
            Metrics::incr(&self.node.metrics.subscriptions);
            if !topics::is_wildcard(&filter) {
                *self.exact_filters.entry(filter.clone()).or_insert(0) += 1;
            }
        }
        // Running Topics whose name the filter matches get the client's new merged entry.
        let mut affected = Vec::new();
        self.topics.for_each_match(&filter, |name, topic| {
            affected.push((TopicName::from(name), topic.clone()))
        });
        for (name, topic) in affected {
            self.send_merged(client_id, &name, &topic);
        }
        let granted = subscription.options.qos;
        let send_retained = match subscription.options.retain_handling {
            0 => true,
            1 => !existed,
            _ => false,
        };
        if send_retained {
            self.retained.for_each_match(&filter, |_name, envelope| {
                retained.push((envelope.clone(), envelope.qos.min(granted)));
            });
        }
        Ok(granted)
    }

    /// Unregisters a client and everything it subscribed; returns its session (if its
    /// actor still has a mailbox).
    fn remove_client(&mut self, client_id: &ClientId) -> Option<SessionRef> {
        let client = self.node.routes.remove_session(client_id.as_str())?;
        let (session, stored, filters) = client.lock().unregister();
        let session = session.filter(SessionRef::connected);
        if stored {
            let mut batch = Batch::new();
            batch.del_session(client_id.as_str());
            self.node.store.submit(batch);
        }
        Metrics::sub(&self.node.metrics.sessions, 1);
        self.forget_filters(client_id, &filters.into_keys());
        session
    }

    /// Removes `filters` of `client_id` from the trie and updates the Topics they matched
    /// (the client's own `filters` map is already updated). Stops Topics left with no
    /// matching filter.
    fn forget_filters(&mut self, client_id: &ClientId, filters: &[String]) {
        if filters.is_empty() {
            return;
        }
        let mut affected: HashMap<TopicName, Addr<Topic>> = HashMap::new();
        {
            let mut trie = self.node.routes.filters_mut();
            for filter in filters {
                if trie.remove(filter, client_id).is_none() {
                    continue;
                }
                Metrics::sub(&self.node.metrics.subscriptions, 1);
                if !topics::is_wildcard(filter) {
                    if let Entry::Occupied(mut e) = self.exact_filters.entry(filter.clone()) {
                        *e.get_mut() -= 1;
                        if *e.get() == 0 {
                            e.remove();
                        }
                    }
                }
                self.topics.for_each_match(filter, |name, topic| {
                    affected.insert(TopicName::from(name), topic.clone());
                });
            }
        }
        for (name, topic) in affected {
            // None when the client is gone too.
            self.send_merged(client_id, &name, &topic);
            if !self.node.routes.filters().has_match(name.as_str()) {
                self.stop_topic(&name, &topic);
            }
        }
    }

    /// The merged subscriber entry of `client_id` for topic `name`, from its own filters.
    fn merged(&self, client_id: &ClientId, name: &str) -> Option<Subscriber> {
        let client = self.node.routes.direct(client_id.as_str())?;
        let matching: Vec<Subscription> = client
            .lock()
            .filters()
            .iter()
            .filter(|(filter, _)| topics::matches(filter, name))
            .map(|(_, subscription)| *subscription)
            .collect();
        let (first, rest) = matching.split_first()?;
        let mut out = subscriber(&client, first)?;
        for subscription in rest {
            merge(&mut out, subscription);
        }
        Some(out)
    }

    /// Starts the Topic of `name` on a worker chosen by the name's hash, unless that is the
    /// worker of `publisher` (the thread of the session whose publish starts it): then on
    /// the next one. A Topic on its publisher's worker gets that publisher's messages a few
    /// at a time (they take turns on one thread) and wakes its subscribers for each few: a
    /// 1 -> 1000 fan-out measured 2.7-3.3M deliveries/s there, 3.5-3.9M on the other worker.
    fn start_topic(
        &mut self,
        name: TopicName,
        subscribers: HashMap<ClientId, Subscriber>,
        publisher: Option<ThreadId>,
    ) -> Addr<Topic> {
        let workers = &self.node.workers;
        let log = self.node.log.clone();
        let store = self.node.store.clone();
        let (routes, metrics) = (self.node.routes.clone(), self.node.metrics.clone());
        let topic_name = name.clone();
        let stores = subscribers.values().any(|s| s.persistent);
        let intake = Arc::new(Intake::default());
        let topic_intake = intake.clone();
        let make = move || {
            Topic::new(
                topic_name,
                subscribers,
                routes,
                metrics,
                &log,
                store,
                topic_intake,
            )
        };
        let topic = if workers.is_empty() {
            make().start()
        } else {
            let mut h = DefaultHasher::new();
            name.hash(&mut h);
            let index = topic_worker(h.finish(), workers.len(), &self.worker_threads, publisher);
            Topic::start_in_arbiter(&workers[index], move |_| make())
        };
        self.topics.insert(name.as_str(), topic.clone());
        self.node
            .routes
            .insert_topic(name, topic.clone(), stores, intake);
        Metrics::incr(&self.node.metrics.topics);
        topic
    }

    fn stop_topic(&mut self, name: &TopicName, topic: &Addr<Topic>) {
        self.node.routes.remove_topic(name.as_str());
        self.topics.remove(name.as_str());
        Metrics::sub(&self.node.metrics.topics, 1);
        topic.do_send(Stop);
        debug!(self.node.log, "topic stopped"; "topic" => %name);
    }
}

/// The subscriber entry of `client` for one matching subscription. `None` when its session
/// is no longer registered or has stopped (its entry is about to be removed).
fn subscriber(client: &Direct, subscription: &Subscription) -> Option<Subscriber> {
    let (session, persistent) = {
        let record = client.lock();
        (record.registered()?.clone(), record.persistent())
    };
    if !session.connected() {
        return None;
    }
    Some(Subscriber {
        session,
        persistent,
        qos: subscription.options.qos,
        no_local: subscription.options.no_local,
        retain_as_published: subscription.options.retain_as_published,
        subscription_ids: subscription.identifier.into_iter().collect(),
    })
}

/// Folds one more matching subscription of the same client into its entry: highest QoS,
/// No Local only if every filter asks for it, Retain As Published if any does.
fn merge(entry: &mut Subscriber, subscription: &Subscription) {
    entry.qos = entry.qos.max(subscription.options.qos);
    entry.no_local &= subscription.options.no_local;
    entry.retain_as_published |= subscription.options.retain_as_published;
    entry.subscription_ids.extend(subscription.identifier);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::envelope::Message;
    use crate::actors::session::AttachOptions;
    use crate::actors::testing::{attach, node};
    use crate::codec::{Properties, SubscriptionOptions};
    use bytes::Bytes;

    fn sub(qos: QoS) -> Subscription {
        Subscription {
            options: SubscriptionOptions {
                qos,
                ..Default::default()
            },
            identifier: None,
        }
    }

    fn retained(topic: &str, qos: QoS, payload: &'static [u8]) -> Envelope {
        Envelope::new(Message {
            from: ClientId::from("p"),
            topic: TopicName::from(topic),
            qos,
            retain: true,
            payload: Bytes::from_static(payload),
            properties: Properties::default(),
        })
    }

    async fn subscribe(node: &Node, id: &str, filter: &str, qos: QoS) -> Subscribed {
        node.registry
            .send(Subscribe {
                client_id: ClientId::from(id),
                filters: vec![(filter.into(), sub(qos))],
            })
            .await
            .unwrap()
    }

    #[actix_rt::test]
    async fn client_ids_and_topic_names_do_not_clash() {
        let node = node();
        attach(&node, "alice", true, AttachOptions::default()).await;
        attach(&node, "bob", true, AttachOptions::default()).await;
        let out = subscribe(&node, "bob", "alice", QoS::AtMostOnce).await;
        assert_eq!(out.granted, vec![Err(SubscribeRefused::ClientId)]);
        let out = subscribe(&node, "bob", "news", QoS::AtLeastOnce).await;
        assert_eq!(out.granted, vec![Ok(QoS::AtLeastOnce)]);
        let refused = node
            .registry
            .send(OpenSession {
                client_id: ClientId::from("news"),
                clean_start: true,
                persistent: false,
                arbiter: actix_rt::Arbiter::current(),
                owner: None,
            })
            .await
            .unwrap();
        assert_eq!(refused.err(), Some(OpenSessionError::IdentifierIsTopic));
        // A wildcard filter that happens to match the id does not reserve it.
        subscribe(&node, "bob", "carol/#", QoS::AtMostOnce).await;
        attach(&node, "carol", true, AttachOptions::default()).await;
    }

    #[actix_rt::test]
    async fn topics_start_on_demand_and_stop_with_their_last_filter() {
        let node = node();
        attach(&node, "c", true, AttachOptions::default()).await;
        let none = node
            .registry
            .send(EnsureTopic {
                name: "a/b".into(),
                from: None,
            })
            .await
            .unwrap();
        assert!(none.is_none());
        subscribe(&node, "c", "a/+", QoS::AtMostOnce).await;
        subscribe(&node, "c", "a/b", QoS::ExactlyOnce).await;
        assert!(node.routes.has_subscriber("a/b"));
        let topic = node
            .registry
            .send(EnsureTopic {
                name: "a/b".into(),
                from: None,
            })
            .await
            .unwrap();
        assert!(topic.is_some());
        assert!(node.routes.topic("a/b").is_some());
        assert_eq!(node.metrics.snapshot().topics, 1);
        let unsubscribe = |filter: &str| Unsubscribe {
            client_id: ClientId::from("c"),
            filters: vec![filter.into()],
        };
        node.registry.send(unsubscribe("a/b")).await.unwrap();
        assert!(node.routes.topic("a/b").is_some(), "a/+ still matches");
        node.registry.send(unsubscribe("a/+")).await.unwrap();
        assert!(node.routes.topic("a/b").is_none());
        assert!(!node.routes.has_subscriber("a/b"));
        assert_eq!(node.metrics.snapshot().topics, 0);
        assert_eq!(node.metrics.snapshot().subscriptions, 0);
    }

    #[actix_rt::test]
    async fn retained_messages_are_set_cleared_and_degraded() {
        let node = node();
        attach(&node, "c", true, AttachOptions::default()).await;
        let reg = &node.registry;
        reg.send(Retain {
            envelope: retained("r/1", QoS::ExactlyOnce, b"one"),
            commit: None,
        })
        .await
        .unwrap();
        reg.send(Retain {
            envelope: retained("r/2", QoS::AtMostOnce, b"two"),
            commit: None,
        })
        .await
        .unwrap();
        let out = subscribe(&node, "c", "r/#", QoS::AtLeastOnce).await;
        let mut got: Vec<_> = out
            .retained
            .iter()
            .map(|(e, q)| (e.topic.to_string(), *q))
            .collect();
        got.sort();
        assert_eq!(
            got,
            vec![
                ("r/1".into(), QoS::AtLeastOnce),
                ("r/2".into(), QoS::AtMostOnce)
            ]
        );
        reg.send(Retain {
            envelope: retained("r/1", QoS::AtMostOnce, b""),
            commit: None,
        })
        .await
        .unwrap();
        let out = subscribe(&node, "c", "r/1", QoS::AtLeastOnce).await;
        assert!(out.retained.is_empty());
        assert_eq!(node.metrics.snapshot().retained, 1);
    }

    #[actix_rt::test]
    async fn a_replaced_session_saving_late_does_not_bring_its_record_back() {
        let node = node();
        let persistent = AttachOptions {
            expiry: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let (old, epoch, _end) = attach(&node, "c", false, persistent).await;
        // A clean start reaches the Registry just before the old session handles its
        // connection's end, which saves the session's record.
        let open = node.registry.send(OpenSession {
            client_id: ClientId::from("c"),
            clean_start: true,
            persistent: false,
            arbiter: actix_rt::Arbiter::current(),
            owner: None,
        });
        old.do_send(super::super::session::Detached {
            epoch,
            publish_will: false,
            session_expiry: None,
        });
        let opened = open.await.unwrap().unwrap();
        assert!(!opened.present);
        assert_ne!(opened.session, old);
        node.store.sync().unwrap();
        let loaded = node.store.load().unwrap();
        assert!(
            loaded.sessions.iter().all(|s| s.client_id != "c"),
            "the replaced session's record is gone"
        );
    }

    #[test]
    fn a_topic_starts_away_from_the_worker_of_its_publisher() {
        let here = std::thread::current().id();
        let there = std::thread::spawn(|| std::thread::current().id())
            .join()
            .unwrap();
        let threads = [Some(here), Some(there)];
        // By the hash, unless that is the publisher's worker.
        assert_eq!(topic_worker(4, 2, &threads, None), 0);
        assert_eq!(topic_worker(5, 2, &threads, None), 1);
        assert_eq!(topic_worker(4, 2, &threads, Some(there)), 0);
        assert_eq!(topic_worker(4, 2, &threads, Some(here)), 1);
        assert_eq!(topic_worker(5, 2, &threads, Some(there)), 0);
        // Workers that have not reported their thread yet, or only one worker: the hash.
        assert_eq!(topic_worker(4, 2, &[None, None], Some(here)), 0);
        assert_eq!(topic_worker(7, 1, &[Some(here)], Some(here)), 0);
        assert_eq!(topic_worker(5, 2, &[], Some(here)), 1);
    }

    #[actix_rt::test]
    async fn a_stale_session_end_leaves_the_newer_session_registered() {
        let node = node();
        let (old, _, _) = attach(&node, "c", true, AttachOptions::default()).await;
        let (new, _, _) = attach(&node, "c", true, AttachOptions::default()).await;
        assert_ne!(old, new);
        node.registry
            .send(SessionEnded {
                client_id: ClientId::from("c"),
                session: old,
            })
            .await
            .unwrap();
        assert_eq!(node.routes.session("c"), Some(new.clone()));
        assert_eq!(node.metrics.snapshot().sessions, 1);
        // The registered session is still the one handed out, and it takes subscriptions.
        let out = subscribe(&node, "c", "t", QoS::AtLeastOnce).await;
        assert_eq!(out.granted, vec![Ok(QoS::AtLeastOnce)]);
        node.registry
            .send(SessionEnded {
                client_id: ClientId::from("c"),
                session: new,
            })
            .await
            .unwrap();
        assert_eq!(node.routes.session("c"), None);
        assert_eq!(node.metrics.snapshot().sessions, 0);
        assert_eq!(node.metrics.snapshot().subscriptions, 0);
    }

    #[test]
    fn idle_state_stays_small() {
        use std::mem::size_of;
        // Every session actor is one tokio task allocation rounded up to 128 bytes; with the
        // actix context (336 bytes) and the task header (104), a Session of at most 200 bytes
        // keeps it at 640. A new field that is not needed while the client is idle belongs in
        // a `Lazy` or a `Box`.
        assert!(
            size_of::<Session>() <= 200,
            "Session: {}",
            size_of::<Session>()
        );
    }

    #[actix_rt::test]
    async fn clean_start_discards_the_old_session_and_its_subscriptions() {
        let node = node();
        let persistent = AttachOptions {
            expiry: std::time::Duration::from_secs(60),
            ..Default::default()
        };
        let (old, _, old_end) = attach(&node, "c", false, persistent).await;
        subscribe(&node, "c", "x", QoS::AtMostOnce).await;
        let (new, _, _) = attach(&node, "c", true, AttachOptions::default()).await;
        assert_ne!(old, new);
        assert_eq!(
            old_end.close_reason(),
            Some(crate::actors::CloseReason::TakenOver)
        );
        assert!(!node.routes.has_subscriber("x"));
        assert_eq!(node.metrics.snapshot().sessions, 1);
    }
}
