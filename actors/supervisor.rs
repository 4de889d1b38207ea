//! [`Supervisor`]: starts the node's actors in order and hands out their dependencies.
//!
//! Who talks to it: `Broker::start` creates it on the node's main arbiter with the worker
//! arbiters, and the transport asks it for the [`Node`] bundle ([`GetNode`]) that every
//! connection and session is built from. It creates the route snapshot, then the
//! [`Registry`] under an actix supervisor, so that a Registry which stops is restarted in
//! place with its state and its address (the only failure actix can recover from: a panic
//! ends the whole arbiter thread, which is why no handler may panic). Sessions and Topics
//! are started by the Registry on the worker arbiters. It hands the Registry what the
//! [`Store`] loaded at start-up, which the Registry restores before serving anything.

use super::registry::Registry;
use super::routes::Routes;
use super::Node;
use crate::metrics::Metrics;
use crate::store::{Loaded, Store};
use crate::Config;
use actix::prelude::*;
use actix_rt::ArbiterHandle;
use slog::{info, Logger};
use std::sync::Arc;

/// Owner of the node's singletons.
pub struct Supervisor {
    /// Dependencies of every actor of the node.
    node: Node,
}

impl Supervisor {
    /// Starts the Registry on the current arbiter and returns the supervisor (not yet
    /// started) holding the node's dependencies. `workers` run sessions and topics;
    /// `loaded` is the state the store kept from the last run.
    pub fn new(
        config: Arc<Config>,
        metrics: Arc<Metrics>,
        workers: Arc<[ArbiterHandle]>,
        log: Logger,
        store: Store,
        loaded: Loaded,
    ) -> Self {
        let routes = Arc::new(Routes::new());
        let registry_log = log.clone();
        let (c, m, r, w, s) = (
            config.clone(),
            metrics.clone(),
            routes.clone(),
            workers.clone(),
            store.clone(),
        );
        let registry = actix::Supervisor::start(move |ctx: &mut Context<Registry>| {
            Registry::new(
                Node {
                    config: c,
                    metrics: m,
                    routes: r,
                    registry: ctx.address(),
                    workers: w,
                    log: registry_log,
                    store: s,
                },
                loaded,
            )
        });
        Supervisor {
            node: Node {
                config,
                metrics,
                routes,
                registry,
                workers,
                log,
                store,
            },
        }
    }

    /// The dependency bundle (also available through [`GetNode`]).
    pub fn node(&self) -> &Node {
        &self.node
    }
}

impl Actor for Supervisor {
    type Context = Context<Self>;

    fn started(&mut self, _ctx: &mut Self::Context) {
        info!(self.node.log, "node started"; "workers" => self.node.workers.len());
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        info!(self.node.log, "node stopped");
    }
}

/// The dependency bundle of this node.
#[derive(Message)]
#[rtype(result = "Node")]
pub struct GetNode;

impl Handler<GetNode> for Supervisor {
    type Result = MessageResult<GetNode>;

    fn handle(&mut self, _msg: GetNode, _ctx: &mut Self::Context) -> Self::Result {
        MessageResult(self.node.clone())
    }
}
