//! [`Envelope`]: the internal routing unit, distinct from the wire `Publish`.
//!
//! A publishing session wraps what it received (or its client's will) in an envelope once;
//! topics and sessions then pass clones around. An envelope is an `Arc`, so a fan-out to a
//! thousand subscribers costs a thousand reference-count increments and no copy of the
//! payload, topic or properties. Each receiving session turns it back into a wire
//! [`Publish`] with its own QoS, RETAIN flag, packet id and subscription identifiers.

use super::ids::{ClientId, TopicName};
use crate::codec::{LastWill, Properties, Protocol, Publish, QoS};
use bytes::Bytes;
use std::ops::Deref;
use std::sync::Arc;

/// One application message on its way through the broker.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// Client id of the publisher (the will owner for a will).
    pub from: ClientId,
    /// Topic name it was published to.
    pub topic: TopicName,
    /// QoS it was published with.
    pub qos: QoS,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// Application payload, shared with the publisher's read buffer.
    pub payload: Bytes,
    /// MQTT 5 properties forwarded to subscribers (never the topic alias or subscription
    /// identifiers: those belong to one connection or one subscription).
    pub properties: Properties,
}

/// A shared, immutable [`Message`].
#[derive(Debug, Clone)]
pub struct Envelope(Arc<Message>);

impl Envelope {
    /// Wraps a message.
    pub fn new(message: Message) -> Self {
        Envelope(Arc::new(message))
    }

    /// Builds the envelope of a PUBLISH received from `from`.
    pub fn from_publish(from: ClientId, publish: Publish) -> Self {
        Envelope::new(Message {
            from,
            topic: TopicName::from(publish.topic),
            qos: publish.qos,
            retain: publish.retain,
            payload: publish.payload,
            properties: forwarded(publish.properties),
        })
    }

    /// Builds the envelope of `owner`'s will.
    pub fn from_will(owner: ClientId, will: LastWill) -> Self {
        Envelope::new(Message {
            from: owner,
            topic: TopicName::from(will.topic),
            qos: will.qos,
            retain: will.retain,
            payload: will.payload,
            properties: forwarded(will.properties),
        })
    }

    /// Approximate memory held by this message, for queue byte limits.
    pub fn size(&self) -> usize {
        self.payload.len() + self.topic.len()
    }

    /// True for a RETAIN publish with an empty payload: it clears the retained message.
    pub fn clears_retained(&self) -> bool {
        self.retain && self.payload.is_empty()
    }

    /// The wire PUBLISH one subscriber receives.
    pub fn to_publish(
        &self,
        qos: QoS,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
        subscription_ids: &[u32],
    ) -> Publish {
        self.to_publish_for(Protocol::V5, qos, retain, dup, packet_id, subscription_ids)
    }

    /// The wire PUBLISH one subscriber speaking `protocol` receives: for MQTT 3.x, which has
    /// no properties, none are copied.
    pub fn to_publish_for(
        &self,
        protocol: Protocol,
        qos: QoS,
        retain: bool,
        dup: bool,
        packet_id: Option<u16>,
        subscription_ids: &[u32],
    ) -> Publish {
        let properties = if protocol == Protocol::V5 {
            let mut properties = self.properties.clone();
            properties
                .subscription_identifiers
                .extend_from_slice(subscription_ids);
            properties
        } else {
            Properties::default()
        };
        Publish {
            dup,
            qos,
            retain,
            topic: self.topic.as_bytestring().clone(),
            packet_id,
            payload: self.payload.clone(),
            properties,
        }
    }
}

impl PartialEq for Envelope {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0 == other.0
    }
}

impl Eq for Envelope {}

impl Deref for Envelope {
    type Target = Message;

    fn deref(&self) -> &Message {
        &self.0
    }
}

/// The properties of an inbound PUBLISH or will that travel on to subscribers.
/// MQTT 5 §3.3.2.3: the topic alias is per connection and subscription identifiers are added
/// per subscription, so neither is forwarded.
fn forwarded(mut properties: Properties) -> Properties {
    properties.topic_alias = None;
    properties.subscription_identifiers.clear();
    properties.will_delay_interval = None;
    properties
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_round_trip_shares_the_payload() {
        let payload = Bytes::from_static(b"hello");
        let props = Properties {
            topic_alias: Some(3),
            subscription_identifiers: vec![9],
            content_type: Some("text/plain".into()),
            ..Default::default()
        };
        let env = Envelope::from_publish(
            ClientId::from("pub"),
            Publish {
                qos: QoS::ExactlyOnce,
                retain: true,
                topic: "a/b".into(),
                packet_id: Some(7),
                payload: payload.clone(),
                properties: props,
                ..Default::default()
            },
        );
        let out = env.to_publish(QoS::AtLeastOnce, false, true, Some(42), &[5]);
        assert_eq!(out.topic, "a/b");
        assert_eq!(out.qos, QoS::AtLeastOnce);
        assert!(!out.retain);
        assert!(out.dup);
        assert_eq!(out.packet_id, Some(42));
        assert_eq!(
            out.payload.as_ptr(),
            payload.as_ptr(),
            "payload must not be copied"
        );
        assert_eq!(out.properties.topic_alias, None);
        assert_eq!(out.properties.subscription_identifiers, vec![5]);
        assert_eq!(out.properties.content_type.as_deref(), Some("text/plain"));
    }

    #[test]
    fn empty_retained_publish_clears() {
        let env = Envelope::new(Message {
            from: ClientId::from("c"),
            topic: TopicName::from("t"),
            qos: QoS::AtMostOnce,
            retain: true,
            payload: Bytes::new(),
            properties: Properties::default(),
        });
        assert!(env.clears_retained());
    }
}
