//! The broker logic: actors and what they pass between them.
//!
//! - [`Session`]: one per client id; the client's MQTT state, its outbound queue and the
//!   publish path. Addressed through a [`SessionRef`], also while it hibernates (an idle
//!   session's actor stops and leaves its state in the handle's slot until a message
//!   needs it).
//! - [`Topic`]: one per topic name with subscribers; fans messages out to sessions.
//! - [`Registry`]: one per node; names, subscriptions, retained messages, route snapshot.
//! - [`Supervisor`]: starts the node's actors and hands out their dependencies.
//!
//! Durable state goes to the [`Store`] thread: Topics queue QoS 1/2
//! messages for persistent subscribers there (the publisher's acknowledgement waits for that
//! write), sessions record what their clients acknowledged, the Registry writes session
//! records, retained messages and deletions, and restores it all at start-up.
//!
//! Supporting types: [`ClientId`] and [`TopicName`], the [`Envelope`] that carries a
//! message between actors, the [`ClientLink`] through which a session writes to its
//! connection, the [`Routes`] snapshot and the session's [`Outbox`](outbox::Outbox).
//!
//! ```text
//! socket ─▶ connection ─Inbound─▶ Session ─Distribute─▶ Topic ─Deliver─▶ Session ─▶ link ─▶ socket
//!                                    │  └──────────── Deliver (direct message) ──────┘
//!                                    └─Subscribe/EnsureTopic/Retain─▶ Registry ─▶ Routes (read by sessions)
//! ```
//! Actors import no socket types: the transport owns sockets and talks to sessions through
//! these messages and [`ClientLink`].

pub mod direct;
pub mod envelope;
pub mod ids;
pub mod link;
pub mod outbox;
pub mod registry;
pub mod routes;
pub mod session;
pub mod slot;
pub mod supervisor;
pub mod topic;

pub use envelope::{Envelope, Message};
pub use ids::{ClientId, TopicName};
pub use link::{link, ClientLink, CloseReason, Epoch, LinkEnd};
pub use registry::Registry;
pub use routes::Routes;
pub use session::Session;
pub use slot::SessionRef;
pub use supervisor::Supervisor;
pub use topic::Topic;

use crate::metrics::Metrics;
use crate::store::Store;
use crate::Config;
use actix::Addr;
use actix_rt::ArbiterHandle;
use slog::Logger;
use std::sync::Arc;

/// What every actor and connection of a node depends on, passed in through constructors.
/// Cloning it clones a few `Arc`s.
#[derive(Clone)]
pub struct Node {
    /// The node's configuration.
    pub config: Arc<Config>,
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The route snapshot (written by the Registry only).
    pub routes: Arc<Routes>,
    /// The Registry.
    pub registry: Addr<Registry>,
    /// Worker arbiters: connections and sessions round-robin, topics by name hash.
    pub workers: Arc<[ArbiterHandle]>,
    /// The node logger.
    pub log: Logger,
    /// The durable store (writes go to its thread; actors never block on it).
    pub store: Store,
}

/// Helpers for the actor tests: a node without workers (everything runs on the test's
/// arbiter) and a fake connection.
#[cfg(test)]
pub(crate) mod testing {
    use super::link::{LinkEnd, LINK_CAPACITY};
    use super::registry::OpenSession;
    use super::session::{Attach, AttachOptions};
    use super::*;
    use crate::codec::{Packet, Protocol};
    use std::time::Duration;

    /// A message from "p" on topic "t", delivered at `qos`, not stored.
    pub fn outgoing(qos: crate::codec::QoS, payload: &'static [u8]) -> super::outbox::Outgoing {
        super::outbox::Outgoing {
            envelope: super::envelope::Envelope::new(super::envelope::Message {
                from: ids::ClientId::from("p"),
                topic: ids::TopicName::from("t"),
                qos,
                retain: false,
                payload: bytes::Bytes::from_static(payload),
                properties: crate::codec::Properties::default(),
            }),
            qos,
            retain: false,
            subscription_ids: Vec::new(),
            seq: None,
        }
    }

    /// A node with the default config, a temporary store and no worker arbiters.
    pub fn node() -> Node {
        node_with(Config::default())
    }

    /// A node with `config`, a temporary store and no worker arbiters.
    pub fn node_with(config: Config) -> Node {
        let store = Store::temporary(config.store.options()).expect("store");
        let supervisor = Supervisor::new(
            Arc::new(config),
            Arc::new(Metrics::default()),
            Arc::from(Vec::new()),
            crate::logging::discard(),
            store,
            crate::store::Loaded::default(),
        );
        supervisor.node().clone()
    }

    /// Opens the session of `id` and attaches a new link to it, as a connection would.
    pub async fn attach(
        node: &Node,
        id: &str,
        clean_start: bool,
        options: AttachOptions,
    ) -> (SessionRef, Epoch, LinkEnd) {
        attach_as(node, id, clean_start, options, None).await
    }

    /// [`attach`] for the authenticated user `owner`.
    pub async fn attach_as(
        node: &Node,
        id: &str,
        clean_start: bool,
        options: AttachOptions,
        owner: Option<Arc<str>>,
    ) -> (SessionRef, Epoch, LinkEnd) {
        let opened = node
            .registry
            .send(OpenSession {
                client_id: ClientId::from(id),
                clean_start,
                persistent: !options.expiry.is_zero(),
                arbiter: actix_rt::Arbiter::current(),
                owner,
            })
            .await
            .expect("registry")
            .expect("session");
        let epoch = Epoch::next();
        let (link, end) = link::link(epoch, Protocol::V311, LINK_CAPACITY);
        opened
            .session
            .send(Attach { link, options })
            .await
            .expect("mailbox")
            .expect("attached");
        (opened.session, epoch, end)
    }

    /// Opens the clean session of `id`, subscribes it to `filter` at `qos` and waits for the
    /// SUBACK.
    pub async fn subscribe(
        node: &Node,
        id: &str,
        filter: &str,
        qos: crate::codec::QoS,
    ) -> (SessionRef, Epoch, LinkEnd) {
        let (session, epoch, mut end) = attach(node, id, true, AttachOptions::default()).await;
        let subscribe = Packet::Subscribe(crate::codec::Subscribe {
            packet_id: 1,
            topics: vec![crate::codec::SubscribeTopic {
                filter: filter.into(),
                options: crate::codec::SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            ..Default::default()
        });
        session
            .send(super::session::Inbound {
                epoch,
                packet: subscribe,
            })
            .await
            .expect("mailbox")
            .expect("subscribed");
        assert!(matches!(next(&mut end).await, Packet::SubAck(_)));
        (session, epoch, end)
    }

    /// The next packet written to a link, within a second.
    pub async fn next(end: &mut LinkEnd) -> Packet {
        tokio::time::timeout(Duration::from_secs(1), end.recv())
            .await
            .expect("a packet in time")
            .expect("link open")
    }

    /// Asserts that nothing is written to a link for a while.
    pub async fn nothing(end: &mut LinkEnd) {
        if let Ok(Some(p)) = tokio::time::timeout(Duration::from_millis(100), end.recv()).await {
            panic!("unexpected packet {p:?}");
        }
    }
}
