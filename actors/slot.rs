//! [`SessionRef`]: how everybody addresses a [`Session`], whether its actor runs or it
//! hibernates.
//!
//! Who holds one: the Registry (per client), the route snapshot (per client id), every
//! Topic the client subscribes to, the client's connection, and — weakly — the session
//! itself and its shared outbound state ([`Direct`](super::direct::Direct)). Cloning one
//! clones an `Arc`; nobody keeps an `Addr<Session>` of their own.
//!
//! A session with nothing to do for `session.hibernate_after` seconds stops its actor and
//! leaves its state behind in the slot as a [`Dormant`] record (see the Session's module
//! documentation for when a session is idle). The first message sent to it through any
//! `SessionRef` starts a new actor from that record on the same arbiter, synchronously,
//! under the slot's lock (`Actor::start_in_arbiter` returns the address at once), and
//! puts the message in the new actor's mailbox.
//!
//! The slot is one of:
//! - **Live**: the actor runs; messages go to its mailbox through the one stored address
//!   (so that the mailbox's bound holds for all senders together, see
//!   [`Routes`](super::Routes)).
//! - **Hibernating**: the actor decided to hibernate and has sent itself a [`Hibernate`](super::session::Hibernate)
//!   message; messages sent meanwhile wait in a queue in the slot, in order.
//! - **Dormant**: the actor stopped; its state is the record.
//! - **Ended**: the session stopped for good; messages are dropped (`Closed`).
//!
//! Why no message is lost or reordered across hibernation and waking:
//! 1. Every send goes through the slot under its lock, so sends are totally ordered with
//!    the slot's transitions.
//! 2. Live → Hibernating happens under the lock, only when no sender waits for room in the
//!    mailbox (such a sender's message is not in the mailbox yet: it is counted in
//!    `waiters` until its send completes). The [`Hibernate`](super::session::Hibernate) message is then pushed into
//!    the mailbox (which takes it at once, whatever its fill), behind every message sent
//!    before the transition: those are all handled before it.
//! 3. While Hibernating, messages queue in the slot. The [`Hibernate`](super::session::Hibernate) handler, under the
//!    lock, stores the record and stops the actor only if the queue is empty and the
//!    session is still idle; otherwise the slot goes back to Live and the handler handles
//!    the queued messages, in order, before the actor takes anything from its mailbox
//!    again (later messages go to the mailbox, behind them).
//! 4. Dormant → Live happens under the lock in the send that finds the record: that
//!    message is the first in the new actor's mailbox, and every later one follows it.
//!
//! The stopped actor's `stopped` leaves the lane, the outbox and the Registry alone: the
//! session goes on, only its actor is gone. Its timers: the 3.x resend timer runs only
//! while something is inflight (never while dormant; a Topic that puts a message in
//! flight sends `ArmRetry` through here, which wakes the session), and the expiry of an
//! offline persistent session is kept by the Registry, which wakes the session at its
//! deadline.

use super::session::{Dormant, Session, MAILBOX};
use actix::dev::{Envelope, Request};
use actix::prelude::{Message, SendError};
use actix::{Actor, Addr, Handler, MailboxError};
use actix_rt::ArbiterHandle;
use std::collections::VecDeque;
use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use tokio::sync::oneshot;

/// A handle on one session, running or dormant; see the module documentation. Equal
/// handles address the same session.
#[derive(Clone)]
pub struct SessionRef {
    slot: Arc<Slot>,
}

/// A [`SessionRef`] that does not keep the session's slot alive.
#[derive(Clone, Default)]
pub struct WeakSessionRef {
    slot: Weak<Slot>,
}

/// The shared part of every [`SessionRef`] of one session.
struct Slot {
    inner: Mutex<Inner>,
}

struct Inner {
    state: State,
    /// Senders whose message may not be in the mailbox yet (a send that waits for room):
    /// the actor does not hibernate while there are any.
    waiters: u32,
}

enum State {
    Live(Addr<Session>),
    Hibernating(Box<Hibernating>),
    /// Inline: an idle session is one allocation, its slot. (The slot is then in jemalloc's
    /// 80-byte class, away from the 64-byte class, which the short-lived allocations of an
    /// actor fragment: a 64-byte slot allocated in a burst of connections cost three times
    /// its size once the burst's actors were gone.)
    Dormant(Dormant),
    Ended,
}

/// The actor is about to hibernate: its address, and what was sent meanwhile.
struct Hibernating {
    addr: Addr<Session>,
    queue: VecDeque<Envelope<Session>>,
}

/// How a [`Hibernate`](super::session::Hibernate) ended ([`SessionRef::end_hibernation`]).
pub(super) enum Woken {
    /// The session is dormant: the actor stops.
    Dormant,
    /// The actor stays; it handles these messages, sent meanwhile, first.
    Live(VecDeque<Envelope<Session>>),
}

impl Inner {
    /// Starts the actor again if the session is dormant (`slot` is this `Inner`'s).
    fn wake(&mut self, slot: &Arc<Slot>) {
        if matches!(self.state, State::Dormant(_)) {
            if let State::Dormant(dormant) = std::mem::replace(&mut self.state, State::Ended) {
                let weak = WeakSessionRef {
                    slot: Arc::downgrade(slot),
                };
                self.state = State::Live(Session::wake(dormant, weak));
            }
        }
    }
}

/// A send that may wait for room in the mailbox: counted in the slot's `waiters` until it
/// completes or is dropped.
struct Waiter(Arc<Slot>);

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut inner = self.0.lock();
        inner.waiters = inner.waiters.saturating_sub(1);
    }
}

/// Where a [`SessionRef::send`] went.
enum Sent<M>
where
    Session: Handler<M>,
    M: Message + Send + 'static,
    M::Result: Send,
{
    Mailbox(Request<Session, M>, Waiter),
    Queued(oneshot::Receiver<M::Result>),
    Closed,
}

impl Slot {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl SessionRef {
    /// Starts `session`'s actor on `arbiter` and returns its handle (which the session and
    /// its outbound state know, weakly).
    pub fn start(mut session: Session, arbiter: &ArbiterHandle) -> SessionRef {
        let slot = Arc::new_cyclic(|weak: &Weak<Slot>| {
            let weak = WeakSessionRef { slot: weak.clone() };
            session.set_slot(weak);
            let addr = Session::start_in_arbiter(arbiter, move |_| session);
            Slot {
                inner: Mutex::new(Inner {
                    state: State::Live(addr),
                    waiters: 0,
                }),
            }
        });
        SessionRef { slot }
    }

    /// Sends `msg` and waits for the answer (waking the session if it is dormant).
    pub fn send<M>(&self, msg: M) -> impl Future<Output = Result<M::Result, MailboxError>> + Send
    where
        Session: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let sent = {
            let mut inner = self.slot.lock();
            inner.wake(&self.slot);
            let inner = &mut *inner;
            match &mut inner.state {
                State::Live(addr) => {
                    inner.waiters += 1;
                    Sent::Mailbox(addr.send(msg), Waiter(self.slot.clone()))
                }
                State::Hibernating(h) => {
                    let (tx, rx) = oneshot::channel();
                    h.queue.push_back(Envelope::new(msg, Some(tx)));
                    Sent::Queued(rx)
                }
                State::Dormant(_) | State::Ended => Sent::Closed,
            }
        };
        async move {
            match sent {
                Sent::Mailbox(request, _waiter) => request.await,
                Sent::Queued(rx) => rx.await.map_err(|_| MailboxError::Closed),
                Sent::Closed => Err(MailboxError::Closed),
            }
        }
    }

    /// Sends `msg` if the mailbox has room (waking the session if it is dormant); hands
    /// it back otherwise.
    pub fn try_send<M>(&self, msg: M) -> Result<(), SendError<M>>
    where
        Session: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let mut inner = self.slot.lock();
        inner.wake(&self.slot);
        match &mut inner.state {
            State::Live(addr) => addr.try_send(msg),
            State::Hibernating(h) if h.queue.len() >= MAILBOX => Err(SendError::Full(msg)),
            State::Hibernating(h) => {
                h.queue.push_back(Envelope::new(msg, None));
                Ok(())
            }
            State::Dormant(_) | State::Ended => Err(SendError::Closed(msg)),
        }
    }

    /// Sends `msg` whatever the mailbox's fill (waking the session if it is dormant);
    /// for control messages only.
    pub fn do_send<M>(&self, msg: M)
    where
        Session: Handler<M>,
        M: Message + Send + 'static,
        M::Result: Send,
    {
        let mut inner = self.slot.lock();
        inner.wake(&self.slot);
        match &mut inner.state {
            State::Live(addr) => addr.do_send(msg),
            State::Hibernating(h) => h.queue.push_back(Envelope::new(msg, None)),
            State::Dormant(_) | State::Ended => {}
        }
    }

    /// False once the session has stopped for good (a dormant session is connected).
    pub fn connected(&self) -> bool {
        match &self.slot.lock().state {
            State::Live(addr) => addr.connected(),
            State::Hibernating(_) | State::Dormant(_) => true,
            State::Ended => false,
        }
    }

    /// True while the session is dormant (its actor stopped, its state kept here).
    pub fn is_dormant(&self) -> bool {
        matches!(self.slot.lock().state, State::Dormant(_))
    }

    /// `f` of the session's record while it is dormant.
    #[cfg(test)]
    pub(super) fn with_dormant<R>(&self, f: impl FnOnce(&Dormant) -> R) -> Option<R> {
        match &self.slot.lock().state {
            State::Dormant(dormant) => Some(f(dormant)),
            _ => None,
        }
    }

    /// A weak handle on the same session.
    pub fn downgrade(&self) -> WeakSessionRef {
        WeakSessionRef {
            slot: Arc::downgrade(&self.slot),
        }
    }

    /// Live → Hibernating, unless a sender waits for room in the mailbox (or the slot is
    /// not live). True when hibernation began: the caller sends itself [`Hibernate`](super::session::Hibernate).
    pub(super) fn begin_hibernation(&self) -> bool {
        let mut inner = self.slot.lock();
        if inner.waiters > 0 {
            return false;
        }
        match std::mem::replace(&mut inner.state, State::Ended) {
            State::Live(addr) => {
                inner.state = State::Hibernating(Box::new(Hibernating {
                    addr,
                    queue: VecDeque::new(),
                }));
                true
            }
            other => {
                inner.state = other;
                false
            }
        }
    }

    /// Ends a hibernation: when nothing was sent meanwhile, nobody waits and the session is
    /// `still_idle`, the slot keeps the record `dormant` makes (under the lock) and the
    /// actor must stop; otherwise the slot is live again and the actor handles what was
    /// sent meanwhile.
    pub(super) fn end_hibernation(
        &self,
        still_idle: bool,
        dormant: impl FnOnce() -> Dormant,
    ) -> Woken {
        let mut inner = self.slot.lock();
        let State::Hibernating(h) = std::mem::replace(&mut inner.state, State::Ended) else {
            // Not hibernating (never happens): nothing changes.
            return Woken::Live(VecDeque::new());
        };
        if still_idle && h.queue.is_empty() && inner.waiters == 0 {
            inner.state = State::Dormant(dormant());
            return Woken::Dormant;
        }
        let Hibernating { addr, queue } = *h;
        inner.state = State::Live(addr);
        Woken::Live(queue)
    }

    /// The session stopped for good: its address is let go, later messages are dropped.
    pub(super) fn ended(&self) {
        let state = std::mem::replace(&mut self.slot.lock().state, State::Ended);
        // Dropped outside the lock.
        drop(state);
    }
}

impl WeakSessionRef {
    /// The session's handle, if anybody still holds one.
    pub fn upgrade(&self) -> Option<SessionRef> {
        self.slot.upgrade().map(|slot| SessionRef { slot })
    }

    /// True when this is a weak handle on `session`.
    pub fn is(&self, session: &SessionRef) -> bool {
        std::ptr::eq(self.slot.as_ptr(), Arc::as_ptr(&session.slot))
    }
}

impl PartialEq for SessionRef {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.slot, &other.slot)
    }
}

impl Eq for SessionRef {}

impl fmt::Debug for SessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match &self.slot.lock().state {
            State::Live(_) => "live",
            State::Hibernating(_) => "hibernating",
            State::Dormant(_) => "dormant",
            State::Ended => "ended",
        };
        f.debug_struct("SessionRef")
            .field("slot", &Arc::as_ptr(&self.slot))
            .field("state", &state)
            .finish()
    }
}

impl fmt::Debug for WeakSessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WeakSessionRef").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_idle_session_is_one_80_byte_allocation() {
        // The record's niche carries the state's tag, so a dormant session costs no more
        // than its slot.
        assert_eq!(std::mem::size_of::<State>(), std::mem::size_of::<Dormant>());
        // With the `Arc` counts, 80 bytes: in jemalloc's 80-byte class, not the 64-byte one.
        let size = std::mem::size_of::<Slot>();
        assert!(size > 48 && size <= 64, "Slot is {size} bytes");
    }
}
