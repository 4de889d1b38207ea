//! [`Topic`]: one actor per topic name that has at least one matching subscriber.
//!
//! Who talks to it: the [`Registry`](super::Registry) starts it with its merged subscriber
//! set, keeps that set current with [`SetSubscriber`] whenever a matching subscription comes
//! or goes, and sends [`Stop`] after removing it from the route snapshot when no filter
//! matches the name any more. Publishing sessions send it [`Distribute`]; it fans each
//! message out to every subscriber's [`Session`](super::Session) as a [`Deliver`], once per session, at
//! min(published QoS, highest granted QoS of that session's matching filters). No
//! per-message matching and no payload copy: every delivery shares the same envelope.
//!
//! Fast path: while the subscriber's session has nothing waiting for its link, a delivery
//! goes straight onto the link through the session's shared outbound state ([`Direct`]: a
//! QoS 0 one through its *lane*; for a QoS 1/2 one, packet id and inflight entry taken
//! there, if the inflight window has room; while the window is full the message goes into
//! the session's queue there, to be sent on the next acknowledgement), so the common case
//! costs no actor message and no turn of the subscriber's session. Otherwise it goes to the
//! session as a [`LaneDeliver`], which keeps it behind what the session holds (see
//! [`Direct`] for the ordering argument).
//! Neither the lane nor the direct path needs the session's actor, so a dormant
//! (hibernating) subscriber stays dormant while it receives; a message for its mailbox wakes
//! it (see [`SessionRef`]).
//!
//! Backpressure: deliveries use `try_send`. A session's mailbox is full only while its
//! arbiter is busy: a client that does not read fills the session's own bounded queue
//! instead, and the session drops there what does not fit (QoS 0 first). So a full mailbox
//! means the node is short of CPU, and the answer is to slow publishers down, not to lose
//! messages: the Topic waits (`ctx.wait`) until every delivery that did not fit is in its
//! mailbox before it takes the next message. Its own mailbox then fills, and publishing
//! sessions wait for room, which holds back their connections. Per subscriber, messages
//! keep their order. This cannot deadlock: sessions never pause their mailbox (they only
//! spawn futures), so a session's mailbox always drains, even while that session is itself
//! waiting for room in this Topic's mailbox.
//!
//! The mailbox is bounded in bytes as well as in messages: publishes offered through the
//! route snapshot take room in the Topic's [`Intake`] (payload and topic bytes plus a fixed
//! cost per message, [`INTAKE_BYTES`] in all) and the Topic gives it back as it takes each
//! message out. A publisher finding no room waits for it, which holds its connection back.
//!
//! Durability: for a QoS 1/2 message, each *persistent* subscriber that gets it at QoS 1/2
//! is given a store sequence number, and all those queue entries (with the publisher's QoS 2
//! marker, if any) go to the store thread as one write whose [`Commit`]
//! the publisher waits on before its PUBACK/PUBREC. The deliveries carry the sequence number
//! so that the session deletes the entry when its client acknowledges. When the store
//! thread's queue is full, the Topic waits for room like it waits for a full mailbox. Under
//! `session.queue_full = "backpressure"`, a message for a session whose queue is over its
//! limit waits (polling the session's flag) until that session has room or has ended.

use super::direct::{Direct, Taken};
use super::envelope::Envelope;
use super::ids::{ClientId, TopicName};
use super::link::Wakes;
use super::outbox::Outgoing;
use super::routes::Routes;
use super::session::{self, Deliver, Durable, LaneDeliver, Persist};
use super::slot::SessionRef;
use crate::codec::QoS;
use crate::metrics::Metrics;
use crate::store::{Batch, Commit, Store};
use actix::prelude::*;
use slog::{debug, o, Logger};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// How often a Topic held back by a full session queue looks again.
const PRESSURE_POLL: Duration = Duration::from_millis(5);

/// Mailbox size of a Topic in messages: the messages that may wait for it before
/// publishers are held back (through the one stored sender, see [`Routes`]).
///
/// Large because of how actix holds senders back: once the mailbox is full, the shared
/// sender is parked and every publish takes the slow path (an address clone and a send
/// that waits). With 256, 1,000 publishers into one Topic (fan-in) spent most of their
/// time there: 110k/s instead of 375k/s. The bound that usually holds is the one in bytes,
/// [`INTAKE_BYTES`], which does not park anybody.
pub const MAILBOX: usize = 16384;

/// Bytes of messages offered to a Topic and not yet taken out of its mailbox, at most (one
/// message is always let in, however large).
pub const INTAKE_BYTES: usize = 8 * 1024 * 1024;

/// What a message costs in a Topic's [`Intake`] besides its payload and topic name: the
/// envelope, the mailbox entry and the `Distribute` around it.
const INTAKE_OVERHEAD: usize = 256;

/// The room in a Topic's mailbox, counted in bytes ([`INTAKE_BYTES`]). Publishers take room
/// before they offer a message ([`Intake::try_take`], or [`Intake::take`] to wait for it);
/// the Topic gives it back as it takes each message out of its mailbox. Shared by the Topic
/// and its entry in the route snapshot.
#[derive(Debug, Default)]
pub struct Intake {
    /// Bytes taken and not given back yet.
    bytes: AtomicUsize,
    /// Publishers waiting for room (so that giving room back signals only when one waits).
    waiting: AtomicUsize,
    /// The Topic stopped: nobody gives room back any more, so nobody waits for it.
    closed: AtomicBool,
    /// Signalled when room is given back while somebody waits.
    room: Notify,
}

impl Intake {
    /// What `envelope` costs in the intake.
    pub fn cost(envelope: &Envelope) -> usize {
        envelope.size() + INTAKE_OVERHEAD
    }

    /// Takes `cost` bytes if they fit, or if nothing is taken (so one message of any size
    /// gets in). False: no room now.
    pub fn try_take(&self, cost: usize) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return true;
        }
        let mut taken = self.bytes.load(Ordering::Relaxed);
        loop {
            if taken > 0 && taken.saturating_add(cost) > INTAKE_BYTES {
                return false;
            }
            match self.bytes.compare_exchange_weak(
                taken,
                taken + cost,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return true,
                Err(now) => taken = now,
            }
        }
    }

    /// Takes `cost` bytes, waiting until they fit.
    pub async fn take(&self, cost: usize) {
        // Counted while waiting, also when the wait is dropped (the publisher went away):
        // a count left behind would make every `give_back` signal for nobody.
        struct Waiting<'a>(&'a AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::AcqRel);
            }
        }
        self.waiting.fetch_add(1, Ordering::AcqRel);
        let _waiting = Waiting(&self.waiting);
        loop {
            let room = self.room.notified();
            tokio::pin!(room);
            // Registered before the check, so room given back in between is not missed.
            room.as_mut().enable();
            if self.try_take(cost) {
                return;
            }
            room.await;
        }
    }

    /// Gives back the `cost` bytes of a message taken out of the mailbox.
    pub fn give_back(&self, cost: usize) {
        self.bytes.fetch_sub(cost, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.room.notify_waiters();
        }
    }

    /// Bytes taken now.
    pub fn taken(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    /// The Topic stopped: lets every waiting and later publisher through (its message then
    /// finds the Topic gone, like one sent just before it stopped).
    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.room.notify_waiters();
    }
}

/// A message's room in its Topic's [`Intake`].
#[derive(Debug, Default)]
pub enum Admission {
    /// It took no room (it came another way than the route snapshot).
    #[default]
    Free,
    /// It took this many bytes, which the Topic gives back when it takes the message out.
    Taken(usize),
    /// It must take this many bytes of this intake before it is sent ([`Distribute::admit`]).
    Wait(Arc<Intake>, usize),
}

/// Message bytes a Topic fans out at most while it holds its subscribers' wake-ups, so that
/// a mailbox that keeps refilling neither holds their writes back for long nor fills their
/// links (64 KiB each), which would close their lanes.
const MAX_HELD_BYTES: usize = 16 * 1024;

/// One session in a Topic's merged subscriber set.
#[derive(Debug, Clone)]
pub struct Subscriber {
    /// The subscriber's session.
    pub session: SessionRef,
    /// Highest QoS granted over its filters that match this name.
    pub qos: QoS,
    /// MQTT 5 No Local on every matching filter: skip the subscriber's own publishes.
    pub no_local: bool,
    /// MQTT 5 Retain As Published on any matching filter: keep the published RETAIN flag.
    pub retain_as_published: bool,
    /// MQTT 5 subscription identifiers of the matching filters.
    pub subscription_ids: Vec<u32>,
    /// The session is persistent: its QoS 1/2 messages are stored before the publisher's
    /// acknowledgement.
    pub persistent: bool,
}

/// A subscriber with its session's ways around its mailbox (its shared outbound state: the
/// lane for QoS 0, the outbox for QoS 1/2), when the session has them. The shared state
/// also carries the session's queue-full flag (`session.queue_full = "backpressure"`): the
/// Topic waits before it gives a full session the next QoS 1/2 message.
struct Entry {
    subscriber: Subscriber,
    shared: Option<Arc<Direct>>,
}

/// One delivery of a message: to this session, around its mailbox if it can.
type Delivery = (SessionRef, Option<Arc<Direct>>, Deliver);

/// The fan-out point of one topic name.
pub struct Topic {
    /// Merged subscriber set: one entry per session.
    subscribers: HashMap<ClientId, Entry>,
    /// Where sessions' lanes are found.
    routes: Arc<Routes>,
    /// PUBLISH counters (deliveries through lanes count as sent).
    metrics: Arc<Metrics>,
    /// Logger carrying the topic name.
    log: Logger,
    /// Where queued messages of persistent subscribers are written.
    store: Store,
    /// Subscribers' connections to wake once this Topic has fanned out what its mailbox
    /// holds (see [`Wakes`]).
    wakes: Wakes,
    /// A flush of `wakes` is scheduled after the mailbox drain.
    flush_due: bool,
    /// Bytes of the messages fanned out since `wakes` was last flushed.
    held_bytes: usize,
    /// The room in this Topic's mailbox, shared with its route entry.
    intake: Arc<Intake>,
}

impl Topic {
    /// A Topic for `name` with the subscribers the Registry computed; `routes` gives the
    /// sessions' lanes.
    pub fn new(
        name: TopicName,
        subscribers: HashMap<ClientId, Subscriber>,
        routes: Arc<Routes>,
        metrics: Arc<Metrics>,
        log: &Logger,
        store: Store,
        intake: Arc<Intake>,
    ) -> Self {
        let log = log.new(o!("topic" => name.to_string()));
        let mut topic = Topic {
            subscribers: HashMap::with_capacity(subscribers.len()),
            routes,
            metrics,
            log,
            store,
            wakes: Wakes::default(),
            flush_due: false,
            held_bytes: 0,
            intake,
        };
        for (client_id, subscriber) in subscribers {
            topic.insert(client_id, subscriber);
        }
        topic
    }

    fn insert(&mut self, client_id: ClientId, subscriber: Subscriber) {
        let shared = self.routes.shared(client_id.as_str(), &subscriber.session);
        self.subscribers
            .insert(client_id, Entry { subscriber, shared });
    }
}

impl Actor for Topic {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX);
        debug!(self.log, "topic started"; "subscribers" => self.subscribers.len());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.intake.close();
    }
}

/// Fan a published message out to every subscriber.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Distribute {
    /// The message.
    pub envelope: Envelope,
    /// Completed once the copies for persistent subscribers are durable.
    pub durable: Durable,
    /// Its room in the Topic's intake.
    pub admission: Admission,
}

impl Distribute {
    /// Waits for room in the Topic's intake if the message must (see [`Admission::Wait`]).
    pub async fn admit(&mut self) {
        if let Admission::Wait(intake, cost) = &self.admission {
            intake.take(*cost).await;
            self.admission = Admission::Taken(*cost);
        }
    }
}

impl Handler<Distribute> for Topic {
    type Result = ();

    fn handle(&mut self, mut msg: Distribute, ctx: &mut Self::Context) {
        if let Admission::Taken(cost) = std::mem::take(&mut msg.admission) {
            self.intake.give_back(cost);
        }
        self.held_bytes += msg.envelope.size();
        self.distribute(msg, ctx);
        self.settle_wakes(ctx);
    }
}

impl Topic {
    /// Wakes the subscribers' connections now when this Topic is about to wait (or holds
    /// many), or else once its mailbox is drained: the context runs spawned futures only
    /// after it has handled every message waiting in the mailbox.
    fn settle_wakes(&mut self, ctx: &mut Context<Self>) {
        if self.wakes.is_empty() {
            self.held_bytes = 0;
            return;
        }
        if ctx.waiting() || self.held_bytes >= MAX_HELD_BYTES {
            self.flush_wakes();
        } else if !self.flush_due {
            self.flush_due = true;
            ctx.spawn(fut::ready(()).map(|(), act: &mut Topic, _| {
                act.flush_due = false;
                act.flush_wakes();
            }));
        }
    }

    fn flush_wakes(&mut self) {
        self.held_bytes = 0;
        self.wakes.wake_all();
    }

    fn distribute(&mut self, msg: Distribute, ctx: &mut Context<Self>) {
        let envelope = msg.envelope;
        if envelope.qos == QoS::AtMostOnce {
            // Nothing to store and no queue limit to wait for: straight out, unstaged.
            drop(msg.durable);
            let mut waiting = Vec::new();
            let mut direct = 0u64;
            for (_, sub, shared) in recipients(&self.subscribers, &envelope) {
                let deliver = Deliver {
                    envelope: envelope.clone(),
                    qos: QoS::AtMostOnce,
                    retain: envelope.retain && sub.retain_as_published,
                    subscription_ids: sub.subscription_ids.clone(),
                    persist: Persist::Volatile,
                };
                let (node, wakes) = ((&self.store, &*self.metrics), &mut self.wakes);
                let session = &sub.session;
                if let Some(w) = deliver_one(session, shared, deliver, node, &mut direct, wakes) {
                    waiting.push((sub.session.clone(), w));
                }
            }
            self.fanned_out(waiting, direct, ctx);
            return;
        }
        let mut batch = Batch::new();
        let mut deliveries = Vec::with_capacity(self.subscribers.len());
        let mut full = Vec::new();
        for (client_id, sub, shared) in recipients(&self.subscribers, &envelope) {
            let qos = envelope.qos.min(sub.qos);
            let retain = envelope.retain && sub.retain_as_published;
            if let Some(direct) = shared.filter(|d| qos > QoS::AtMostOnce && d.is_full()) {
                full.push((sub.session.clone(), direct.clone()));
            }
            let persist = if sub.persistent && qos > QoS::AtMostOnce {
                let seq = self.store.next_seq();
                let record = session::queued_record(&envelope, qos, retain, &sub.subscription_ids);
                batch.put_queued(client_id.as_str(), seq, &record);
                Persist::Stored(seq)
            } else {
                Persist::Volatile
            };
            let deliver = Deliver {
                envelope: envelope.clone(),
                qos,
                retain,
                subscription_ids: sub.subscription_ids.clone(),
                persist,
            };
            deliveries.push((sub.session.clone(), shared.cloned(), deliver));
        }
        if let (Some((client_id, packet_id)), false) = (&msg.durable.inbound, batch.is_empty()) {
            batch.put_inbound(client_id.as_str(), *packet_id);
        }
        let commit = msg.durable.commit;
        if full.is_empty() {
            self.store_and_fan_out(batch, commit, deliveries, ctx);
            return;
        }
        // session.queue_full = "backpressure": this message (and so every later one) waits
        // until these sessions have room again, or have ended.
        ctx.wait(
            async move {
                for (session, direct) in full {
                    while direct.is_full() && session.connected() {
                        tokio::time::sleep(PRESSURE_POLL).await;
                    }
                }
            }
            .into_actor(self)
            .map(move |(), act, ctx| act.store_and_fan_out(batch, commit, deliveries, ctx)),
        );
    }
}

impl Topic {
    /// Hands the queue entries to the store thread, then the deliveries to the sessions:
    /// a session can only see (and acknowledge, and delete) an entry already submitted.
    fn store_and_fan_out(
        &mut self,
        batch: Batch,
        commit: Option<Commit>,
        deliveries: Vec<Delivery>,
        ctx: &mut Context<Self>,
    ) {
        if batch.is_empty() {
            // Nothing to store: dropping the commit tells the publisher so.
            drop(commit);
            self.fan_out(deliveries, ctx);
            return;
        }
        match self.store.try_permit() {
            Some(permit) => {
                self.store.submit_durable(batch, commit, Some(permit));
                self.fan_out(deliveries, ctx);
            }
            None => {
                let store = self.store.clone();
                ctx.wait(
                    async move {
                        let permit = store.permit().await.ok();
                        store.submit_durable(batch, commit, permit);
                    }
                    .into_actor(self)
                    .map(move |(), act, ctx| act.fan_out(deliveries, ctx)),
                );
            }
        }
    }

    /// Hands each delivery to its session (a QoS 0 one straight to the link when the lane
    /// is open).
    fn fan_out(&mut self, deliveries: Vec<Delivery>, ctx: &mut Context<Self>) {
        let mut waiting = Vec::new();
        let mut direct = 0u64;
        for (session, shared, deliver) in deliveries {
            let (node, wakes) = ((&self.store, &*self.metrics), &mut self.wakes);
            let shared = shared.as_ref();
            if let Some(w) = deliver_one(&session, shared, deliver, node, &mut direct, wakes) {
                waiting.push((session, w));
            }
        }
        self.fanned_out(waiting, direct, ctx);
    }

    /// Counts the deliveries that went straight to links and pauses this Topic until those
    /// that found a full mailbox are in (see the module documentation).
    fn fanned_out(
        &mut self,
        waiting: Vec<(SessionRef, Waiting)>,
        direct: u64,
        ctx: &mut Context<Self>,
    ) {
        if direct > 0 {
            Metrics::add(&self.metrics.publish_out, direct);
        }
        if !waiting.is_empty() {
            ctx.wait(
                async move {
                    for (session, deliver) in waiting {
                        // A closed mailbox means the session ended meanwhile: no reader left.
                        match deliver {
                            Waiting::Plain(d) => {
                                let _ = session.send(d).await;
                            }
                            Waiting::Lane(d) => {
                                let _ = session.send(d).await;
                            }
                        }
                    }
                }
                .into_actor(self),
            );
        }
        // Wakes the connections this fan-out wrote to: now if this Topic is about to wait,
        // else after the mailbox drain. Also when the fan-out comes after a wait (for the
        // store, or a full queue), which no Distribute handler follows.
        self.settle_wakes(ctx);
    }
}

/// Hands one delivery to `session`: straight onto the link when the session is idle (a
/// QoS 0 one through its lane, a QoS 1/2 one through its shared outbox, which records a
/// stored message's inflight state in the node's store and counts its queue in the node's
/// metrics), counted in `direct`. Returns it when the session's mailbox is full.
fn deliver_one(
    session: &SessionRef,
    shared: Option<&Arc<Direct>>,
    deliver: Deliver,
    node: (&Store, &Metrics),
    direct: &mut u64,
    wakes: &mut Wakes,
) -> Option<Waiting> {
    match shared {
        Some(shared) => {
            // Every delivery of a session with a shared state that does not go straight out
            // is counted as pending there (so no later message overtakes it).
            let deliver = if matches!(deliver.persist, Persist::ByReceiver(_)) {
                shared.hold();
                deliver
            } else {
                match shared.try_deliver(outgoing(deliver), node, wakes) {
                    Ok(taken) => {
                        // A queued one counts as sent when the session sends it.
                        *direct += u64::from(taken == Taken::Written);
                        return None;
                    }
                    Err(outgoing) => delivery(outgoing),
                }
            };
            match session.try_send(LaneDeliver(deliver)) {
                Ok(()) => None,
                Err(SendError::Closed(_)) => {
                    shared.settled();
                    None
                }
                Err(SendError::Full(deliver)) => Some(Waiting::Lane(deliver)),
            }
        }
        // Closed: the session ended; the Registry is removing it from this Topic.
        None => match session.try_send(deliver) {
            Ok(()) | Err(SendError::Closed(_)) => None,
            Err(SendError::Full(deliver)) => Some(Waiting::Plain(deliver)),
        },
    }
}

/// The subscribers that get `envelope` (all but its publisher where it asked for No Local),
/// with their ways around the mailbox.
fn recipients<'a>(
    subscribers: &'a HashMap<ClientId, Entry>,
    envelope: &'a Envelope,
) -> impl Iterator<Item = (&'a ClientId, &'a Subscriber, Option<&'a Arc<Direct>>)> {
    subscribers
        .iter()
        .filter(move |(client_id, entry)| {
            !(entry.subscriber.no_local && envelope.from == **client_id)
        })
        .map(|(client_id, entry)| (client_id, &entry.subscriber, entry.shared.as_ref()))
}

/// A delivery that did not fit in a session's mailbox.
enum Waiting {
    Plain(Deliver),
    Lane(LaneDeliver),
}

/// A delivery from a Topic as the session's outbox holds it (with the sequence number of
/// its stored copy, if any).
fn outgoing(deliver: Deliver) -> Outgoing {
    let seq = match deliver.persist {
        Persist::Stored(seq) => Some(seq),
        Persist::Volatile | Persist::ByReceiver(_) => None,
    };
    Outgoing {
        envelope: deliver.envelope,
        qos: deliver.qos,
        retain: deliver.retain,
        subscription_ids: deliver.subscription_ids,
        seq,
    }
}

/// A delivery the lane or the shared outbox did not take, back as a message for the
/// session.
fn delivery(outgoing: Outgoing) -> Deliver {
    let persist = match outgoing.seq {
        Some(seq) => Persist::Stored(seq),
        None => Persist::Volatile,
    };
    Deliver {
        envelope: outgoing.envelope,
        qos: outgoing.qos,
        retain: outgoing.retain,
        subscription_ids: outgoing.subscription_ids,
        persist,
    }
}

/// Add, update (`Some`) or remove (`None`) one session of the merged subscriber set.
#[derive(Message)]
#[rtype(result = "()")]
pub struct SetSubscriber {
    /// The subscribing client.
    pub client_id: ClientId,
    /// Its merged entry, or `None` when none of its filters matches any more.
    pub subscriber: Option<Subscriber>,
}

impl Handler<SetSubscriber> for Topic {
    type Result = ();

    fn handle(&mut self, msg: SetSubscriber, _ctx: &mut Self::Context) {
        match msg.subscriber {
            Some(subscriber) => self.insert(msg.client_id, subscriber),
            None => {
                self.subscribers.remove(&msg.client_id);
            }
        }
    }
}

/// The Registry removed this Topic from the routes: stop once the mailbox is handled.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Stop;

impl Handler<Stop> for Topic {
    type Result = ();

    fn handle(&mut self, _msg: Stop, ctx: &mut Self::Context) {
        debug!(self.log, "topic stopping");
        ctx.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::envelope::Message;
    use crate::actors::registry::EnsureTopic;
    use crate::actors::session::Inbound;
    use crate::actors::testing::{next, node, nothing, subscribe};
    use crate::codec::{Packet, Properties, PubResp};
    use bytes::Bytes;
    use std::future::Future;
    use std::pin::Pin;

    fn envelope(i: u32, qos: QoS) -> Envelope {
        Envelope::new(Message {
            from: ClientId::from("p"),
            topic: TopicName::from("t"),
            qos,
            retain: false,
            payload: Bytes::from(i.to_be_bytes().to_vec()),
            properties: Properties::default(),
        })
    }

    /// The Topic of "t" (which has a subscriber).
    async fn topic_t(node: &crate::actors::Node) -> Addr<Topic> {
        node.registry
            .send(EnsureTopic {
                name: "t".into(),
                from: None,
            })
            .await
            .unwrap()
            .expect("a topic for a subscribed name")
    }

    /// Polls `fut` once: true when it completed.
    fn ready<F: Future>(fut: Pin<&mut F>) -> bool {
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        fut.poll(&mut cx).is_ready()
    }

    #[test]
    fn intake_bounds_the_bytes_waiting_and_lets_a_waiter_in_when_room_comes_back() {
        let intake = Intake::default();
        // However large, one message gets into an empty intake.
        assert!(intake.try_take(3 * INTAKE_BYTES));
        assert!(!intake.try_take(1));
        intake.give_back(3 * INTAKE_BYTES);
        let half = INTAKE_BYTES / 2;
        assert!(intake.try_take(half));
        assert!(intake.try_take(half));
        assert!(!intake.try_take(1), "full");
        assert_eq!(intake.taken(), INTAKE_BYTES);
        // A publisher waits for room...
        let mut waiter = std::pin::pin!(intake.take(half));
        assert!(!ready(waiter.as_mut()));
        assert!(!ready(waiter.as_mut()));
        // ...and gets it once the Topic took enough out of its mailbox.
        intake.give_back(half);
        assert!(ready(waiter.as_mut()));
        assert_eq!(intake.taken(), INTAKE_BYTES);
        // A publisher that stops waiting is no longer counted as waiting.
        {
            let mut gone = std::pin::pin!(intake.take(half));
            assert!(!ready(gone.as_mut()));
            assert_eq!(intake.waiting.load(Ordering::Relaxed), 1);
        }
        assert_eq!(intake.waiting.load(Ordering::Relaxed), 0);
        // A stopped Topic holds nobody back.
        let mut waiter = std::pin::pin!(intake.take(half));
        assert!(!ready(waiter.as_mut()));
        intake.close();
        assert!(ready(waiter.as_mut()));
        assert!(intake.try_take(INTAKE_BYTES));
    }

    #[actix_rt::test]
    async fn full_mailbox_loses_nothing_and_keeps_order() {
        let node = node();
        let (session, epoch, mut end) = subscribe(&node, "sub", "t", QoS::AtLeastOnce).await;
        let topic = topic_t(&node).await;
        // Sent in one go, the Topic handles them before the session runs, so the session's
        // mailbox (64) fills and the rest waits in the Topic's backlog.
        let n = 150u32;
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce] {
            for i in 0..n {
                topic.do_send(Distribute {
                    envelope: envelope(i, qos),
                    durable: Durable::default(),
                    admission: Admission::Free,
                });
            }
            for i in 0..n {
                match next(&mut end).await {
                    Packet::Publish(p) => {
                        assert_eq!(p.payload.as_ref(), i.to_be_bytes(), "in order, none lost");
                        if let Some(id) = p.packet_id {
                            let ack = Packet::PubAck(PubResp::new(id));
                            session
                                .send(Inbound { epoch, packet: ack })
                                .await
                                .unwrap()
                                .unwrap();
                        }
                    }
                    other => panic!("{other:?}"),
                }
            }
        }
        nothing(&mut end).await;
        assert_eq!(node.metrics.snapshot().dropped, 0);
    }

    #[actix_rt::test]
    async fn lane_keeps_order_across_a_full_link_and_mixed_qos() {
        let node = node();
        let (session, epoch, mut end) = subscribe(&node, "sub", "t", QoS::AtLeastOnce).await;
        let (_quiet, _, mut quiet_end) = subscribe(&node, "sub0", "t", QoS::AtMostOnce).await;
        let topic = topic_t(&node).await;
        // More than the link holds (128): the lane closes, the sessions queue, then the
        // lane reopens once they drained; QoS 1 messages in between always take the mailbox.
        let n = 400u32;
        let qos_of = |i: u32| {
            if i % 7 == 3 {
                QoS::AtLeastOnce
            } else {
                QoS::AtMostOnce
            }
        };
        for i in 0..n {
            topic.do_send(Distribute {
                envelope: envelope(i, qos_of(i)),
                durable: Durable::default(),
                admission: Admission::Free,
            });
        }
        for i in 0..n {
            match next(&mut end).await {
                Packet::Publish(p) => {
                    assert_eq!(p.payload.as_ref(), i.to_be_bytes(), "in order, none lost");
                    assert_eq!(p.qos, qos_of(i));
                    if let Some(id) = p.packet_id {
                        let ack = Packet::PubAck(PubResp::new(id));
                        session
                            .send(Inbound { epoch, packet: ack })
                            .await
                            .unwrap()
                            .unwrap();
                    }
                }
                other => panic!("{other:?}"),
            }
            match next(&mut quiet_end).await {
                Packet::Publish(p) => {
                    assert_eq!(p.payload.as_ref(), i.to_be_bytes(), "in order, none lost");
                    assert_eq!(p.qos, QoS::AtMostOnce);
                }
                other => panic!("{other:?}"),
            }
        }
        nothing(&mut end).await;
        nothing(&mut quiet_end).await;
        assert_eq!(node.metrics.snapshot().dropped, 0);
        assert_eq!(node.metrics.snapshot().publish_out, 2 * u64::from(n));
    }
}
