//! [`Direct`]: a session's outbound state (its [`Outbox`], the attached link and its
//! *lane*), shared with the Topics that deliver to it so that a message can go straight
//! onto the subscriber's link, without a message to (and a turn of) the session actor.
//!
//! Who uses it: the [`Session`](super::Session) owns it and does everything it did with its
//! outbox through [`Direct::lock`]; it registers it in the [`Routes`](super::Routes), where
//! Topics pick it up. A Topic calls [`Direct::try_deliver`] for each delivery, under the
//! one (uncontended) lock:
//! - a QoS 0 message goes on the link if the lane is open and the link has room;
//! - a QoS 1/2 message goes on the link if the lane is open (so no message of this
//!   session's Topics is still in its mailbox, and the outbox has no queued message and no
//!   resend due) and the inflight window and the link have room: the packet id is assigned,
//!   the inflight entry recorded (and, for a stored message, its inflight state in the
//!   store) and the PUBLISH put on the link.
//!
//! Otherwise the message is counted as *pending* and handed back, and goes through the
//! session's mailbox (`LaneDeliver`). The acknowledgement of a QoS 1/2 message comes back
//! through the session, which finds the entry in its outbox whichever way the PUBLISH went
//! out; a reconnect resends it with DUP like any other inflight message.
//!
//! Order per subscriber is kept because the lane is open only while the session has nothing
//! waiting for its link (no queued message, no resend, no control packet, no room
//! reservation) and no message handed back here is still unsettled:
//! - a message handed back is pending until the session calls [`Direct::settled`], once it
//!   queued or wrote it, so no later message of that Topic overtakes it; a Topic that sends
//!   a message to the mailbox without trying here counts it with [`Direct::hold`];
//! - the session sets the lane ([`Locked::set_lane`]) after every change of its queue or
//!   link, and changes them only under this lock: a session that queues anything closes the
//!   lane before the message that made it queue is settled, and reopens it only once
//!   everything it held went on the link.
//!
//! A full link closes the lane too, so a client that does not read gets its messages
//! through the session's bounded queue, where QoS 0 drops are counted.
//!
//! It is also the Registry's record of the client (the Routes' session map holds these
//! and nothing else, keyed by their client ids): who may take the session over, the
//! Registry's handle on the session, whether it is persistent or has state in the store,
//! and the client's subscriptions by filter. Only the Registry reads or writes those, under
//! the same lock, so an idle client costs one allocation here and one word in one map.
//! The Registry never holds this lock while it takes the filter trie's or the session
//! slot's, or drops a session handle under it.
//!
//! A 3.x session runs its resend timer only while something is inflight. A message that
//! goes out here while the timer is not armed arms it ([`State`]'s flag, under the same
//! lock) and tells the session with one [`ArmRetry`] to its mailbox: one per transition
//! from nothing inflight to something, never one per message.

use super::ids::ClientId;
use super::link::{ClientLink, Epoch, Outbound, Wakes};
use super::outbox::{Outbox, Outgoing};
use super::routes::Subscription;
use super::session::{ArmRetry, Lazy};
use super::slot::SessionRef;
use crate::codec::{Protocol, QoS};
use crate::metrics::Metrics;
use crate::store::{Batch, InflightRecord, InflightStage, Store};
use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Instant;

/// What [`Direct::try_deliver`] did with a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Put on the link (counts as a PUBLISH sent).
    Written,
    /// Put in the session's queue, behind a full inflight window.
    Queued,
}

/// A session's outbound state shared with its Topics; see the module documentation.
///
/// Every session has one, idle or not, so it is kept in jemalloc's 192-byte class (with
/// the `Arc` counts): the node's store and metrics are handed in by the callers that need
/// them, and the lane and the Registry's fields are fields of the locked state.
#[derive(Debug)]
pub struct Direct {
    client_id: ClientId,
    /// The authenticated user that opened the session (`None`: anonymous); only the same
    /// owner may take it over.
    owner: Option<Arc<str>>,
    state: Mutex<State>,
    /// Set while the session's queue is over its limit under
    /// `session.queue_full = "backpressure"` (written by the session, read by Topics).
    full: AtomicBool,
}

/// What [`Direct::lock`] guards.
#[derive(Debug)]
pub struct State {
    /// The session's queue and inflight window.
    pub outbox: Outbox,
    /// The attached connection (set and cleared by the session only).
    pub link: Option<ClientLink>,
    /// The Registry's handle on the session: set when it registers the session, taken when
    /// it unregisters it (so the cycle through the session's own handle on this state
    /// lasts exactly as long as the registration). Topics use it to tell the session to arm
    /// its resend timer.
    session: Option<SessionRef>,
    /// The client's subscriptions by filter (the Registry's).
    filters: Filters,
    /// Outbox length last added to the node's `queued` gauge.
    counted: u32,
    /// Messages handed back to go through the session's mailbox and not settled yet (at
    /// most a mailbox's worth).
    pending: u32,
    /// The lane: the session has nothing waiting for the link.
    lane_open: bool,
    /// Topics may put messages in the queue themselves (set by the session: attached, not
    /// ending, no limit on the client's packet size to check).
    queue_ok: bool,
    /// The session's 3.x resend timer runs (or an [`ArmRetry`] is on its way to start it);
    /// cleared by the session, under this lock, when it stops the timer.
    retry_armed: bool,
    /// The session outlives its connection (the Registry's).
    persistent: bool,
    /// The session may have state in the store: it was persistent at some point (the
    /// Registry's).
    stored: bool,
}

/// One client's subscriptions by filter; allocates nothing until the first one.
pub(super) type Filters = Lazy<HashMap<String, Subscription>>;

impl State {
    /// True while a message may go straight on the link: the lane is open, nothing handed
    /// back is unsettled, and a link is attached.
    fn lane_is_open(&self) -> bool {
        self.lane_open && self.pending == 0 && self.link.is_some()
    }
}

/// The locked state; dereferences to the [`Outbox`].
pub struct Locked<'a>(MutexGuard<'a, State>);

impl Deref for Locked<'_> {
    type Target = Outbox;

    fn deref(&self) -> &Outbox {
        &self.0.outbox
    }
}

impl DerefMut for Locked<'_> {
    fn deref_mut(&mut self) -> &mut Outbox {
        &mut self.0.outbox
    }
}

impl Locked<'_> {
    /// Sets (or clears) the link Topics may write to, with the lane closed until the session
    /// opens it ([`Locked::set_lane`]). The resend timer counts as not armed for a new link
    /// (the session stops its timer whenever it changes the link).
    pub fn set_link(&mut self, link: Option<ClientLink>) {
        self.0.link = link;
        self.0.lane_open = false;
        self.0.retry_armed = false;
    }

    /// Opens the lane (the session has nothing waiting for its link) or closes it.
    pub fn set_lane(&mut self, open: bool) {
        self.0.lane_open = open;
    }

    /// Records whether the session's resend timer must run, which is while anything is
    /// inflight, and returns it. The session calls this to start the timer, and from the
    /// timer's tick to stop it: a Topic that sends a message afterwards finds it unarmed and
    /// tells the session.
    pub fn arm_retry(&mut self) -> bool {
        self.0.retry_armed = self.0.outbox.inflight_len() > 0;
        self.0.retry_armed
    }

    /// Lets Topics queue messages themselves while the window is full, or not.
    pub fn set_queue_ok(&mut self, ok: bool) {
        self.0.queue_ok = ok;
    }

    /// Brings the node's `queued` gauge in step with the outbox length.
    pub fn count(&mut self, metrics: &Metrics) {
        let now = u32::try_from(self.0.outbox.len()).unwrap_or(u32::MAX);
        let counted = &mut self.0.counted;
        if now > *counted {
            Metrics::add(&metrics.queued, u64::from(now - *counted));
        } else if now < *counted {
            Metrics::sub(&metrics.queued, u64::from(*counted - now));
        }
        *counted = now;
    }

    /// Takes the outbox out of the `queued` gauge (the session stops).
    pub fn uncount(&mut self, metrics: &Metrics) {
        Metrics::sub(&metrics.queued, u64::from(self.0.counted));
        self.0.counted = 0;
    }
}

/// The Registry's record of the client.
impl Locked<'_> {
    /// Registers `session` (started for this state), persistent or not, with `filters`.
    pub(super) fn register(&mut self, session: SessionRef, persistent: bool, filters: Filters) {
        self.0.session = Some(session);
        self.0.persistent = persistent;
        self.0.stored = persistent;
        self.0.filters = filters;
    }

    /// Unregisters the session: its handle (to be dropped without this lock), whether it
    /// may have state in the store, and its filters.
    pub(super) fn unregister(&mut self) -> (Option<SessionRef>, bool, Filters) {
        let session = self.0.session.take();
        (session, self.0.stored, std::mem::take(&mut self.0.filters))
    }

    /// The registered session.
    pub(super) fn registered(&self) -> Option<&SessionRef> {
        self.0.session.as_ref()
    }

    /// True when the session outlives its connection.
    pub(super) fn persistent(&self) -> bool {
        self.0.persistent
    }

    /// True when the session may have state in the store.
    pub(super) fn stored(&self) -> bool {
        self.0.stored
    }

    /// The session is no longer persistent, and its state in the store is deleted.
    pub(super) fn forget_stored(&mut self) {
        self.0.persistent = false;
        self.0.stored = false;
    }

    /// The client's subscriptions by filter.
    pub(super) fn filters(&mut self) -> &mut Filters {
        &mut self.0.filters
    }
}

impl Direct {
    /// The shared state of `client_id`'s session opened by `owner`, around its `outbox`,
    /// with a closed lane; not registered yet.
    pub fn new(client_id: ClientId, owner: Option<Arc<str>>, outbox: Outbox) -> Self {
        Direct {
            client_id,
            owner,
            full: AtomicBool::new(false),
            state: Mutex::new(State {
                outbox,
                link: None,
                session: None,
                filters: Filters::default(),
                counted: 0,
                pending: 0,
                lane_open: false,
                queue_ok: false,
                retry_armed: false,
                persistent: false,
                stored: false,
            }),
        }
    }

    /// The user that opened the session (`None`: anonymous).
    pub fn owner(&self) -> Option<&Arc<str>> {
        self.owner.as_ref()
    }

    /// The client id of the session.
    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }

    /// The session, while it is registered.
    pub fn session(&self) -> Option<SessionRef> {
        self.lock().0.session.clone()
    }

    /// True when this is the state of `session`, registered.
    pub fn is_of(&self, session: &SessionRef) -> bool {
        self.lock().0.session.as_ref() == Some(session)
    }

    /// True while the session's queue is over its limit under the backpressure policy:
    /// a Topic waits before it gives the session another QoS 1/2 message.
    pub fn is_full(&self) -> bool {
        self.full.load(Ordering::Relaxed)
    }

    /// Sets or clears the queue-full flag (the session only); returns the previous value.
    pub fn set_full(&self, full: bool) -> bool {
        self.full.swap(full, Ordering::Relaxed)
    }

    /// Locks the state. Never held across an await.
    pub fn lock(&self) -> Locked<'_> {
        Locked(self.state.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Counts a message that is sent to the session's mailbox without trying
    /// [`Direct::try_deliver`], so that no later message overtakes it.
    pub fn hold(&self) {
        let state = &mut *self.lock().0;
        state.pending = state.pending.saturating_add(1);
    }

    /// A message handed back by [`Direct::try_deliver`] (or counted by [`Direct::hold`])
    /// was queued or written by the session.
    pub fn settled(&self) {
        let state = &mut *self.lock().0;
        state.pending = state.pending.saturating_sub(1);
    }

    /// True when no message handed to the session's mailbox is still unsettled, so a
    /// message put in the session's queue now keeps its order.
    pub fn nothing_pending(&self) -> bool {
        self.lock().0.pending == 0
    }

    /// True while Topics may write to the link directly.
    #[cfg(test)]
    fn lane_is_open(&self) -> bool {
        self.lock().0.lane_is_open()
    }

    /// Puts a message straight on the link when the session's lane is open and the link
    /// (and, for QoS 1/2, the inflight window) has room. While the window is full a QoS 1/2
    /// message goes in the session's queue instead (if it fits there as is, and nothing is
    /// pending), and the lane closes behind it: the session's next acknowledgement sends it.
    /// A QoS 0 message that finds the link full closes the lane: the session's queue takes
    /// over until it is idle again.
    ///
    /// Otherwise the message is counted as pending and handed back: the caller sends it to
    /// the session's mailbox, whose handler calls [`Direct::settled`].
    ///
    /// The connection's wake-up, if one is due, is added to `wakes`. When the message is
    /// the first inflight of a 3.x client, the session is told to arm its resend timer.
    pub fn try_deliver(
        &self,
        message: Outgoing,
        node: (&Store, &Metrics),
        wakes: &mut Wakes,
    ) -> Result<Taken, Outgoing> {
        let mut locked = self.lock();
        let outcome = if message.qos == QoS::AtMostOnce {
            Self::offer(&mut locked.0, message, wakes)
        } else {
            self.send(&mut locked, message, node, wakes)
        };
        match outcome {
            Ok((taken, arm)) => {
                drop(locked);
                tell_arm_retry(arm);
                Ok(taken)
            }
            Err(message) => {
                locked.0.pending = locked.0.pending.saturating_add(1);
                Err(message)
            }
        }
    }

    /// The QoS 0 part of [`Direct::try_deliver`].
    fn offer(
        state: &mut State,
        message: Outgoing,
        wakes: &mut Wakes,
    ) -> Result<(Taken, Option<SessionRef>), Outgoing> {
        if !state.lane_is_open() {
            return Err(message);
        }
        let Some(link) = &state.link else {
            return Err(message);
        };
        match link.offer(message, wakes) {
            Ok(()) => Ok((Taken::Written, None)),
            Err(message) => {
                state.lane_open = false;
                Err(message)
            }
        }
    }

    /// The QoS 1/2 part of [`Direct::try_deliver`].
    fn send(
        &self,
        locked: &mut Locked<'_>,
        message: Outgoing,
        (store, metrics): (&Store, &Metrics),
        wakes: &mut Wakes,
    ) -> Result<(Taken, Option<SessionRef>), Outgoing> {
        let state = &mut *locked.0;
        let Some(link) = &state.link else {
            return Err(message);
        };
        let taken = if !state.outbox.has_window() {
            // Every inflight message brings an acknowledgement, after which the session
            // pumps its queue: nothing put there now can be forgotten.
            if !state.queue_ok || !state.outbox.has_room_for(&message) || state.pending != 0 {
                return Err(message);
            }
            state.lane_open = false;
            state.outbox.push(message);
            Taken::Queued
        } else {
            if !state.outbox.is_idle() || !state.lane_is_open() {
                return Err(message);
            }
            let Ok(permit) = link.try_reserve() else {
                return Err(message);
            };
            let packet = state.outbox.send_now(message, Instant::now());
            self.record_sent(&packet, store);
            permit.send_held(packet, wakes);
            Taken::Written
        };
        let arm = retry_unarmed(state);
        locked.count(metrics);
        Ok((taken, arm))
    }

    /// The client on the connection of `epoch` acknowledged a QoS 1 message (PUBACK,
    /// `completed` false) or completed a QoS 2 one (PUBCOMP, true). Applied here, by the
    /// connection, without a turn of the session actor, when that is all there is to do:
    /// the connection is the session's current one, the message was never stored (no copy
    /// to delete) and nothing waits in the queue for the window this frees. False
    /// otherwise, changing nothing: the session handles the packet.
    pub fn try_release(
        &self,
        epoch: Epoch,
        packet_id: u16,
        completed: bool,
        metrics: &Metrics,
    ) -> bool {
        let mut locked = self.lock();
        let state = &mut *locked.0;
        let current = state.link.as_ref().map(ClientLink::epoch) == Some(epoch);
        if !current || !state.outbox.is_idle() {
            return false;
        }
        if !state.outbox.release_unstored(packet_id, completed) {
            return false;
        }
        locked.count(metrics);
        true
    }

    /// A PUBLISH of a stored message is going out for the first time: its inflight state
    /// (packet id, stage) goes to the store, so that a restart resends it with DUP.
    pub fn record_sent(&self, packet: &Outbound, store: &Store) {
        if let Outbound::Publish {
            message,
            dup: false,
            packet_id: Some(packet_id),
        } = packet
        {
            if let Some(seq) = message.seq {
                let stage = if message.qos == QoS::ExactlyOnce {
                    InflightStage::Rec
                } else {
                    InflightStage::Ack
                };
                let mut batch = Batch::new();
                let state = InflightRecord {
                    packet_id: *packet_id,
                    stage,
                };
                batch.put_inflight(self.client_id.as_str(), seq, &state);
                store.submit(batch);
            }
        }
    }
}

/// With something inflight on a 3.x link and the session's resend timer not armed: arms
/// it and returns the session to tell.
fn retry_unarmed(state: &mut State) -> Option<SessionRef> {
    let v5 = state.link.as_ref().map(ClientLink::protocol) == Some(Protocol::V5);
    if state.retry_armed || v5 || state.outbox.inflight_len() == 0 {
        return None;
    }
    state.retry_armed = true;
    state.session.clone()
}

/// Tells the session (a dormant one wakes) to start its resend timer; called without the
/// lock, which the handle is dropped outside of.
fn tell_arm_retry(session: Option<SessionRef>) {
    if let Some(session) = session {
        session.do_send(ArmRetry);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::actors::link::{link, LINK_CAPACITY};
    use crate::actors::outbox::Limits;
    use crate::actors::outbox::Outgoing;
    use crate::codec::{Packet, Protocol};

    fn message(qos: QoS) -> Outgoing {
        crate::actors::testing::outgoing(qos, b"m")
    }

    /// A session's shared state, with the node's store and metrics its callers hand in.
    struct Fixture {
        d: Direct,
        store: Store,
        metrics: Metrics,
    }

    impl Fixture {
        fn deliver(&self, message: Outgoing) -> Result<Taken, Outgoing> {
            let node = (&self.store, &self.metrics);
            self.d.try_deliver(message, node, &mut Wakes::default())
        }

        fn release(&self, epoch: Epoch, packet_id: u16, completed: bool) -> bool {
            self.d
                .try_release(epoch, packet_id, completed, &self.metrics)
        }
    }

    fn direct(max_inflight: u16) -> Fixture {
        let store = Store::temporary(Default::default()).expect("store");
        let outbox = Outbox::new(Limits {
            max_messages: 10,
            max_bytes: 1000,
            max_inflight,
        });
        let d = Direct::new(ClientId::from("s"), None, outbox);
        Fixture {
            d,
            store,
            metrics: Metrics::default(),
        }
    }

    #[test]
    fn stays_in_its_allocation_class() {
        // With the `Arc` counts, 192 bytes: one more word would make every client's
        // record a 224-byte allocation.
        assert!(
            std::mem::size_of::<Direct>() <= 176,
            "Direct: {}",
            std::mem::size_of::<Direct>()
        );
    }

    #[test]
    fn goes_straight_out_only_while_the_session_is_idle_and_the_window_has_room() {
        let f = direct(1);
        let d = &f.d;
        let (client, mut end) = link(Epoch::next(), Protocol::V311, LINK_CAPACITY);
        // No link attached yet, and a closed lane: handed back, and pending.
        assert!(f.deliver(message(QoS::AtLeastOnce)).is_err());
        d.settled();
        d.lock().set_link(Some(client.clone()));
        assert!(f.deliver(message(QoS::AtLeastOnce)).is_err());
        d.settled();
        d.lock().set_lane(true);
        assert!(d.lane_is_open());
        assert_eq!(f.deliver(message(QoS::AtLeastOnce)), Ok(Taken::Written));
        let id = match end.try_recv() {
            Some(Packet::Publish(p)) => p.packet_id.expect("a packet id"),
            other => panic!("{other:?}"),
        };
        assert_eq!(d.lock().inflight_len(), 1);
        // The window (1) is full: handed back, unless the session lets Topics queue.
        assert!(f.deliver(message(QoS::AtLeastOnce)).is_err());
        assert!(
            f.deliver(message(QoS::AtLeastOnce)).is_err(),
            "one is pending"
        );
        d.settled();
        d.settled();
        d.lock().set_queue_ok(true);
        assert_eq!(f.deliver(message(QoS::AtLeastOnce)), Ok(Taken::Queued));
        assert_eq!(d.lock().len(), 2, "one inflight, one queued");
        assert!(
            !d.lane_is_open(),
            "the lane is closed behind the queued message"
        );
        assert!(f.deliver(message(QoS::AtMostOnce)).is_err(), "QoS 0 too");
        d.settled();
        assert!(end.try_recv().is_none());
        // Window room again, but something is queued: the session sends it first.
        assert!(d.lock().acked(id).is_some());
        assert!(f.deliver(message(QoS::AtLeastOnce)).is_err());
        d.settled();
        // A message of this session's Topic still in its mailbox: nothing overtakes it.
        d.lock().next_packet(Instant::now());
        d.lock().set_lane(true);
        d.hold();
        assert!(f.deliver(message(QoS::AtLeastOnce)).is_err());
        assert!(f.deliver(message(QoS::AtMostOnce)).is_err());
        assert!(end.try_recv().is_none());
        d.settled();
        d.settled();
        d.settled();
        assert!(d.nothing_pending());
        assert_eq!(f.deliver(message(QoS::AtMostOnce)), Ok(Taken::Written));
        assert!(matches!(end.try_recv(), Some(Packet::Publish(_))));
    }

    #[test]
    fn a_full_link_closes_the_lane_until_the_session_reopens_it() {
        let f = direct(10);
        let d = &f.d;
        let (client, end) = link(Epoch::next(), Protocol::V5, 1);
        let first = crate::actors::testing::outgoing(QoS::AtMostOnce, b"1");
        let second = crate::actors::testing::outgoing(QoS::AtMostOnce, b"2");
        d.lock().set_link(Some(client));
        assert!(!d.lane_is_open(), "a new link comes with a closed lane");
        d.lock().set_lane(true);
        assert_eq!(f.deliver(first), Ok(Taken::Written));
        assert!(f.deliver(second.clone()).is_err(), "the link is full");
        assert!(!d.lane_is_open());
        d.settled();
        // Room again, but only the session reopens the lane.
        let mut out = bytes::BytesMut::new();
        let waker = std::task::Waker::noop();
        assert!(end
            .poll_take(&mut std::task::Context::from_waker(waker), &mut out)
            .is_ready());
        assert!(!d.lane_is_open());
        assert!(f.deliver(second.clone()).is_err());
        d.settled();
        d.lock().set_lane(true);
        assert_eq!(f.deliver(second), Ok(Taken::Written));
    }

    /// Sends `message` the way the session does and returns its packet id.
    fn sent(d: &Direct, message: Outgoing) -> u16 {
        match d.lock().send_now(message, Instant::now()) {
            Outbound::Publish {
                packet_id: Some(id),
                ..
            } => id,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_connection_releases_only_what_needs_nothing_more_from_the_session() {
        let f = direct(3);
        let d = &f.d;
        let epoch = Epoch::next();
        let (client, _end) = link(epoch, Protocol::V311, LINK_CAPACITY);
        let qos1 = sent(d, message(QoS::AtLeastOnce));
        // Not attached (or no longer the current connection): the session decides.
        assert!(!f.release(epoch, qos1, false));
        d.lock().set_link(Some(client));
        assert!(!f.release(Epoch::next(), qos1, false));
        // Unknown id, or the wrong acknowledgement for the stage: left to the session.
        assert!(!f.release(epoch, qos1.wrapping_add(7), false));
        assert!(!f.release(epoch, qos1, true));
        assert_eq!(d.lock().inflight_len(), 1);
        assert!(f.release(epoch, qos1, false));
        assert_eq!(d.lock().inflight_len(), 0);
        // A stored message: its copy must be deleted, which is the session's job.
        let mut stored = message(QoS::AtLeastOnce);
        stored.seq = Some(9);
        let stored = sent(d, stored);
        assert!(!f.release(epoch, stored, false));
        assert!(d.lock().acked(stored).is_some());
        // QoS 2: PUBCOMP once PUBREC came (PUBREL sent).
        let qos2 = sent(d, message(QoS::ExactlyOnce));
        assert!(!f.release(epoch, qos2, true), "no PUBREC yet");
        assert!(d.lock().received(qos2).is_some());
        assert!(d.lock().next_packet(Instant::now()).is_some(), "the PUBREL");
        assert!(f.release(epoch, qos2, true));
        // A message queued behind the window: the acknowledgement must make the session
        // send it, so the session gets it.
        let first = sent(d, message(QoS::AtLeastOnce));
        d.lock().push(message(QoS::AtLeastOnce));
        assert!(!f.release(epoch, first, false));
        assert_eq!(d.lock().len(), 2, "nothing changed");
    }
}
