//! [`Outbox`]: a session's outbound message state, without any actor or I/O.
//!
//! Messages for the client wait in a FIFO queue bounded by `session.max_queued_messages`
//! and `session.max_queued_bytes`. QoS 1/2 messages move to the inflight window
//! (`session.max_inflight`, or less if an MQTT 5 client asked for a smaller Receive Maximum)
//! when sent, with a packet id that no inflight message uses, and stay there until
//! acknowledged (PUBACK, or PUBREC → PUBREL → PUBCOMP). Entries marked *unsent* (after a
//! reconnect, a 3.x retry, or a PUBREC that needs its PUBREL) go out before anything new,
//! in their original order. The session asks [`Outbox::next_packet`] whenever its link has
//! room; nothing here blocks or allocates per message beyond the queue entries.
//!
//! Overflow policy: a QoS 0 message that does not fit is dropped; a QoS 1/2 message evicts
//! the oldest queued QoS 0 messages first and is dropped only when only QoS 1/2 messages are
//! left. The caller counts and logs what [`Outbox::push`] reports.

use super::envelope::Envelope;
use super::link::{AckKind, Outbound};
use crate::codec::QoS;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Queue and window sizes of one session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Messages waiting to be sent.
    pub max_messages: usize,
    /// Bytes (payload + topic) waiting to be sent.
    pub max_bytes: usize,
    /// QoS 1/2 messages sent and not yet acknowledged.
    pub max_inflight: u16,
}

/// A message waiting for this client, already degraded to the QoS it is delivered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The shared message.
    pub envelope: Envelope,
    /// Delivery QoS: min(published, granted), or the publisher's for direct messages.
    pub qos: QoS,
    /// RETAIN flag on the wire.
    pub retain: bool,
    /// MQTT 5 subscription identifiers of the matching subscriptions.
    pub subscription_ids: Vec<u32>,
    /// Sequence number of its copy in the store's queue of this session, if stored.
    pub seq: Option<u64>,
}

/// What [`Outbox::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushOutcome {
    /// The new message was queued.
    pub accepted: bool,
    /// Older QoS 0 messages dropped to make room.
    pub evicted: usize,
}

/// Where an inflight message is in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    Ack,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    Rec,
    /// PUBREL sent (or due), waiting for PUBCOMP.
    Comp,
}

#[derive(Debug)]
struct Inflight {
    packet_id: u16,
    message: Outgoing,
    stage: Stage,
    /// Must be (re)sent at the next opportunity.
    unsent: bool,
    /// The PUBLISH went out at least once, so a resend carries DUP=1.
    published: bool,
    sent_at: Instant,
}

/// A session's outbound queue and inflight window. Every session has one, idle or not, so
/// it is kept at 88 bytes: the limits are stored in 32 bits (a queue limit above 4 GiB or
/// 4 billion messages per session is taken as that much), and counters are no wider than
/// what they count.
#[derive(Debug)]
pub struct Outbox {
    queue: VecDeque<Outgoing>,
    queued_bytes: usize,
    inflight: VecDeque<Inflight>,
    max_messages: u32,
    max_bytes: u32,
    /// Inflight entries marked unsent (so the common case, none, needs no search).
    unsent: u32,
    max_inflight: u16,
    last_id: u16,
}

impl Outbox {
    /// An empty outbox.
    pub fn new(limits: Limits) -> Self {
        Outbox {
            queue: VecDeque::new(),
            queued_bytes: 0,
            inflight: VecDeque::new(),
            max_messages: u32::try_from(limits.max_messages).unwrap_or(u32::MAX),
            max_bytes: u32::try_from(limits.max_bytes).unwrap_or(u32::MAX),
            unsent: 0,
            max_inflight: limits.max_inflight,
            last_id: 0,
        }
    }

    /// Changes the inflight window (never below 1); messages already inflight stay.
    pub fn set_max_inflight(&mut self, max: u16) {
        self.max_inflight = max.max(1);
    }

    /// The queue's message limit.
    fn max_messages(&self) -> usize {
        self.max_messages as usize
    }

    /// The queue's byte limit.
    fn max_bytes(&self) -> usize {
        self.max_bytes as usize
    }

    /// Messages held: waiting plus inflight.
    pub fn len(&self) -> usize {
        self.queue.len() + self.inflight.len()
    }

    /// True when nothing is waiting or inflight.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.inflight.is_empty()
    }

    /// True when nothing waits to be sent: no queued message and no resend due (messages
    /// inflight and already written do not count).
    pub fn is_idle(&self) -> bool {
        self.queue.is_empty() && self.unsent == 0
    }

    /// True when the waiting queue has reached its message or byte limit.
    pub fn is_full(&self) -> bool {
        self.queue.len() >= self.max_messages() || self.queued_bytes >= self.max_bytes()
    }

    /// Messages inflight.
    pub fn inflight_len(&self) -> usize {
        self.inflight.len()
    }

    /// Queues a message, applying the overflow policy.
    pub fn push(&mut self, message: Outgoing) -> PushOutcome {
        let size = message.envelope.size();
        let fits =
            |q: &Self| q.queue.len() < q.max_messages() && q.queued_bytes + size <= q.max_bytes();
        let mut evicted = 0;
        if message.qos > QoS::AtMostOnce {
            while !fits(self) && self.evict_oldest_qos0() {
                evicted += 1;
            }
        }
        if !fits(self) {
            return PushOutcome {
                accepted: false,
                evicted,
            };
        }
        self.queued_bytes += size;
        self.queue.push_back(message);
        PushOutcome {
            accepted: true,
            evicted,
        }
    }

    /// True when [`Outbox::next_packet`] would return a packet.
    pub fn has_sendable(&self) -> bool {
        self.unsent > 0
            || self.queue.front().is_some_and(|m| {
                m.qos == QoS::AtMostOnce || self.inflight.len() < usize::from(self.max_inflight)
            })
    }

    /// The next packet to write, if any: pending resends first, then the queue head if the
    /// inflight window allows it.
    pub fn next_packet(&mut self, now: Instant) -> Option<Outbound> {
        let due = self.unsent > 0;
        if let Some(entry) = self.inflight.iter_mut().filter(|_| due).find(|e| e.unsent) {
            entry.unsent = false;
            self.unsent -= 1;
            entry.sent_at = now;
            return Some(match entry.stage {
                Stage::Comp => Outbound::ack(AckKind::PubRel, entry.packet_id, 0),
                Stage::Ack | Stage::Rec => {
                    let dup = entry.published;
                    entry.published = true;
                    publish(&entry.message, dup, Some(entry.packet_id))
                }
            });
        }
        let head = self.queue.front()?;
        if head.qos > QoS::AtMostOnce && self.inflight.len() >= usize::from(self.max_inflight) {
            return None;
        }
        let message = self.queue.pop_front()?;
        self.queued_bytes -= message.envelope.size();
        Some(self.send_now(message, now))
    }

    /// True when `message` fits in the queue as it is (nothing evicted, nothing dropped).
    pub fn has_room_for(&self, message: &Outgoing) -> bool {
        self.queue.len() < self.max_messages()
            && self.queued_bytes + message.envelope.size() <= self.max_bytes()
    }

    /// True when the inflight window has room for one more QoS 1/2 message.
    pub fn has_window(&self) -> bool {
        self.inflight.len() < usize::from(self.max_inflight)
    }

    /// The PUBLISH for a message sent at once, without queueing it: a QoS 1/2 message gets
    /// a packet id and enters the inflight window (the caller checked [`Outbox::has_window`]
    /// and, to keep order, [`Outbox::is_idle`]).
    pub fn send_now(&mut self, message: Outgoing, now: Instant) -> Outbound {
        if message.qos == QoS::AtMostOnce {
            return publish(&message, false, None);
        }
        let packet_id = self.allocate_id();
        let packet = publish(&message, false, Some(packet_id));
        let stage = if message.qos == QoS::AtLeastOnce {
            Stage::Ack
        } else {
            Stage::Rec
        };
        self.inflight.push_back(Inflight {
            packet_id,
            message,
            stage,
            unsent: false,
            published: true,
            sent_at: now,
        });
        packet
    }

    /// PUBACK received: the acknowledged message, `None` if no QoS 1 message had that id.
    pub fn acked(&mut self, packet_id: u16) -> Option<Outgoing> {
        self.remove_in_stage(packet_id, Stage::Ack)
    }

    /// PUBREC received: the message is delivered, PUBREL becomes due. `None` if no QoS 2
    /// message had that id. A repeated PUBREC makes the PUBREL due again.
    pub fn received(&mut self, packet_id: u16) -> Option<&Outgoing> {
        let i = self
            .inflight
            .iter()
            .position(|e| e.packet_id == packet_id)?;
        let e = &mut self.inflight[i];
        if !matches!(e.stage, Stage::Rec | Stage::Comp) {
            return None;
        }
        e.stage = Stage::Comp;
        if !e.unsent {
            e.unsent = true;
            self.unsent += 1;
        }
        Some(&self.inflight[i].message)
    }

    /// PUBCOMP received: the completed message, `None` if no PUBREL was outstanding for
    /// that id.
    pub fn completed(&mut self, packet_id: u16) -> Option<Outgoing> {
        self.remove_in_stage(packet_id, Stage::Comp)
    }

    /// Forgets an inflight QoS 2 message the client refused (MQTT 5 PUBREC with an error
    /// reason code).
    pub fn refused(&mut self, packet_id: u16) -> Option<Outgoing> {
        self.remove_in_stage(packet_id, Stage::Rec)
    }

    /// Puts back a message restored from the store, ignoring the limits (it was accepted
    /// before the restart).
    pub fn restore(&mut self, message: Outgoing) {
        self.queued_bytes += message.envelope.size();
        self.queue.push_back(message);
    }

    /// Puts back a QoS 1/2 message that was inflight with `packet_id` before the restart,
    /// to be resent first (with DUP, or as PUBREL if `released`: its PUBREC had come).
    pub fn restore_inflight(&mut self, message: Outgoing, packet_id: u16, released: bool) {
        let stage = match (message.qos, released) {
            (QoS::ExactlyOnce, true) => Stage::Comp,
            (QoS::ExactlyOnce, false) => Stage::Rec,
            _ => Stage::Ack,
        };
        self.inflight.push_back(Inflight {
            packet_id,
            message,
            stage,
            unsent: true,
            published: true,
            sent_at: Instant::now(),
        });
        self.unsent += 1;
    }

    /// The last packet id handed out.
    pub fn last_packet_id(&self) -> u16 {
        self.last_id
    }

    /// Continues packet ids after `id` (restored session).
    pub fn set_last_packet_id(&mut self, id: u16) {
        self.last_id = id;
    }

    /// Marks every inflight message for resending (the client reconnected).
    pub fn resend_all(&mut self) {
        for e in &mut self.inflight {
            e.unsent = true;
        }
        self.unsent = u32::try_from(self.inflight.len()).unwrap_or(u32::MAX);
    }

    /// Marks inflight messages sent at least `interval` ago for resending (3.x retry);
    /// returns how many.
    pub fn resend_older_than(&mut self, now: Instant, interval: Duration) -> usize {
        let mut n: u32 = 0;
        for e in &mut self.inflight {
            if !e.unsent && now.saturating_duration_since(e.sent_at) >= interval {
                e.unsent = true;
                n += 1;
            }
        }
        self.unsent += n;
        n as usize
    }

    /// PUBACK (`completed` false) or PUBCOMP (true) received for a message that was never
    /// stored: forgets it and returns true. False, changing nothing, when no such message
    /// is inflight in that stage or it is in the store (whose copy must be deleted too).
    pub fn release_unstored(&mut self, packet_id: u16, completed: bool) -> bool {
        let stage = if completed { Stage::Comp } else { Stage::Ack };
        let found = self
            .inflight
            .iter()
            .position(|e| e.packet_id == packet_id && e.stage == stage);
        match found {
            Some(i) if self.inflight[i].message.seq.is_none() => {
                self.remove_in_stage(packet_id, stage);
                true
            }
            _ => false,
        }
    }

    fn remove_in_stage(&mut self, packet_id: u16, stage: Stage) -> Option<Outgoing> {
        // Acknowledgements usually arrive in order, so the search stops at the front.
        let i = self
            .inflight
            .iter()
            .position(|e| e.packet_id == packet_id && e.stage == stage)?;
        let entry = self.inflight.remove(i)?;
        if entry.unsent {
            self.unsent -= 1;
        }
        Some(entry.message)
    }

    fn evict_oldest_qos0(&mut self) -> bool {
        match self.queue.iter().position(|m| m.qos == QoS::AtMostOnce) {
            Some(i) => {
                if let Some(m) = self.queue.remove(i) {
                    self.queued_bytes -= m.envelope.size();
                }
                true
            }
            None => false,
        }
    }

    /// The next packet id after the last one that no inflight message uses. Callers only
    /// allocate while the window (at most 65535) has room, so a free id always exists.
    fn allocate_id(&mut self) -> u16 {
        loop {
            self.last_id = if self.last_id == u16::MAX {
                1
            } else {
                self.last_id + 1
            };
            let id = self.last_id;
            if !self.inflight.iter().any(|e| e.packet_id == id) {
                return id;
            }
        }
    }
}

fn publish(message: &Outgoing, dup: bool, packet_id: Option<u16>) -> Outbound {
    Outbound::Publish {
        message: message.clone(),
        dup,
        packet_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{Packet, PubResp, Publish};

    fn msg(qos: QoS, payload: &'static [u8]) -> Outgoing {
        crate::actors::testing::outgoing(qos, payload)
    }

    fn limits(max_messages: usize, max_bytes: usize, max_inflight: u16) -> Limits {
        Limits {
            max_messages,
            max_bytes,
            max_inflight,
        }
    }

    fn as_publish(p: Option<Outbound>) -> Publish {
        match p.map(Outbound::into_packet) {
            Some(Packet::Publish(p)) => p,
            other => panic!("expected a PUBLISH, got {other:?}"),
        }
    }

    #[test]
    fn qos0_overflow_drops_the_new_message() {
        let mut o = Outbox::new(limits(2, 1000, 4));
        assert!(o.push(msg(QoS::AtMostOnce, b"a")).accepted);
        assert!(o.push(msg(QoS::AtMostOnce, b"b")).accepted);
        let r = o.push(msg(QoS::AtMostOnce, b"c"));
        assert_eq!(
            r,
            PushOutcome {
                accepted: false,
                evicted: 0
            }
        );
        assert_eq!(o.len(), 2);
    }

    #[test]
    fn qos1_evicts_oldest_qos0_then_is_refused() {
        let mut o = Outbox::new(limits(2, 1000, 4));
        o.push(msg(QoS::AtMostOnce, b"a"));
        o.push(msg(QoS::AtLeastOnce, b"b"));
        let r = o.push(msg(QoS::AtLeastOnce, b"c"));
        assert_eq!(
            r,
            PushOutcome {
                accepted: true,
                evicted: 1
            }
        );
        let r = o.push(msg(QoS::ExactlyOnce, b"d"));
        assert_eq!(
            r,
            PushOutcome {
                accepted: false,
                evicted: 0
            }
        );
        let now = Instant::now();
        assert_eq!(as_publish(o.next_packet(now)).payload, "b");
        assert_eq!(as_publish(o.next_packet(now)).payload, "c");
    }

    #[test]
    fn byte_limit_applies() {
        let mut o = Outbox::new(limits(100, 6, 4));
        // size = payload + topic ("t") = 3 bytes each
        assert!(o.push(msg(QoS::AtLeastOnce, b"ab")).accepted);
        assert!(o.push(msg(QoS::AtLeastOnce, b"cd")).accepted);
        assert!(!o.push(msg(QoS::AtLeastOnce, b"ef")).accepted);
        o.next_packet(Instant::now());
        assert!(
            o.push(msg(QoS::AtLeastOnce, b"ef")).accepted,
            "sent bytes are freed"
        );
    }

    #[test]
    fn inflight_window_holds_back_qos1_but_not_ack_flow() {
        let mut o = Outbox::new(limits(10, 1000, 1));
        o.push(msg(QoS::AtLeastOnce, b"1"));
        o.push(msg(QoS::AtLeastOnce, b"2"));
        let now = Instant::now();
        let first = as_publish(o.next_packet(now));
        assert_eq!(first.packet_id, Some(1));
        assert!(!o.has_sendable());
        assert_eq!(o.next_packet(now), None);
        assert!(o.acked(1).is_some());
        assert!(o.acked(1).is_none(), "a second PUBACK is unknown");
        assert_eq!(as_publish(o.next_packet(now)).packet_id, Some(2));
    }

    #[test]
    fn packet_ids_skip_ids_still_inflight() {
        let mut o = Outbox::new(limits(10, 1000, 3));
        let now = Instant::now();
        o.last_id = u16::MAX - 1;
        for _ in 0..3 {
            o.push(msg(QoS::AtLeastOnce, b"x"));
        }
        let ids: Vec<_> = (0..3)
            .map(|_| as_publish(o.next_packet(now)).packet_id)
            .collect();
        assert_eq!(ids, vec![Some(u16::MAX), Some(1), Some(2)]);
        assert!(o.acked(1).is_some());
        o.last_id = u16::MAX - 1;
        o.push(msg(QoS::AtLeastOnce, b"y"));
        // 65535 and 2 are still inflight: the next free id after 65534 is 1.
        assert_eq!(as_publish(o.next_packet(now)).packet_id, Some(1));
    }

    #[test]
    fn qos2_flow_sends_pubrel_then_completes() {
        let mut o = Outbox::new(limits(10, 1000, 4));
        let now = Instant::now();
        o.push(msg(QoS::ExactlyOnce, b"x"));
        let p = as_publish(o.next_packet(now));
        let id = p.packet_id.unwrap();
        assert!(
            o.completed(id).is_none(),
            "PUBCOMP before PUBREC is unknown"
        );
        assert!(o.received(id).is_some());
        assert_eq!(
            o.next_packet(now).map(Outbound::into_packet),
            Some(Packet::PubRel(PubResp::new(id)))
        );
        assert!(
            o.received(id).is_some(),
            "a repeated PUBREC is answered again"
        );
        assert_eq!(
            o.next_packet(now).map(Outbound::into_packet),
            Some(Packet::PubRel(PubResp::new(id)))
        );
        assert!(o.completed(id).is_some());
        assert!(o.is_empty());
    }

    #[test]
    fn reconnect_resends_inflight_with_dup_in_order_before_new() {
        let mut o = Outbox::new(limits(10, 1000, 4));
        let now = Instant::now();
        o.push(msg(QoS::AtLeastOnce, b"1"));
        o.push(msg(QoS::ExactlyOnce, b"2"));
        o.push(msg(QoS::AtLeastOnce, b"3"));
        let a = as_publish(o.next_packet(now));
        let b = as_publish(o.next_packet(now));
        assert!(o.received(b.packet_id.unwrap()).is_some());
        o.resend_all();
        let again = as_publish(o.next_packet(now));
        assert_eq!((again.packet_id, again.dup), (a.packet_id, true));
        assert_eq!(
            o.next_packet(now).map(Outbound::into_packet),
            Some(Packet::PubRel(PubResp::new(b.packet_id.unwrap())))
        );
        let third = as_publish(o.next_packet(now));
        assert_eq!((third.payload.as_ref(), third.dup), (&b"3"[..], false));
    }

    #[test]
    fn unsent_entries_are_counted_through_every_flow() {
        let mut o = Outbox::new(limits(10, 1000, 4));
        let now = Instant::now();
        o.push(msg(QoS::AtLeastOnce, b"1"));
        o.push(msg(QoS::ExactlyOnce, b"2"));
        let a = as_publish(o.next_packet(now)).packet_id.unwrap();
        let b = as_publish(o.next_packet(now)).packet_id.unwrap();
        assert!(o.is_idle());
        o.resend_all();
        assert!(!o.is_idle() && o.has_sendable());
        // Acknowledged before the resend went out: one left to resend.
        assert!(o.acked(a).is_some());
        assert!(!o.is_idle());
        assert_eq!(as_publish(o.next_packet(now)).packet_id, Some(b));
        assert!(o.is_idle() && !o.has_sendable());
        // PUBREC twice before the PUBREL went out: one PUBREL due.
        assert!(o.received(b).is_some());
        assert!(o.received(b).is_some());
        assert!(o.next_packet(now).is_some());
        assert!(o.is_idle() && o.next_packet(now).is_none());
        assert!(o.completed(b).is_some());
        assert!(o.is_empty());
    }

    #[test]
    fn retry_marks_only_old_messages() {
        let mut o = Outbox::new(limits(10, 1000, 4));
        let t0 = Instant::now();
        o.push(msg(QoS::AtLeastOnce, b"1"));
        o.next_packet(t0);
        o.push(msg(QoS::AtLeastOnce, b"2"));
        o.next_packet(t0 + Duration::from_secs(15));
        assert_eq!(
            o.resend_older_than(t0 + Duration::from_secs(20), Duration::from_secs(20)),
            1
        );
        let p = as_publish(o.next_packet(t0 + Duration::from_secs(20)));
        assert_eq!((p.payload.as_ref(), p.dup), (&b"1"[..], true));
        assert_eq!(o.next_packet(t0 + Duration::from_secs(20)), None);
    }
}
