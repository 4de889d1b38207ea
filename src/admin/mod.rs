//! The node's HTTP server: the admin API under `/api/v1` and Prometheus metrics at
//! `/metrics`, plus the operator CLI's client for that API.
//!
//! [`Broker::start`](crate::Broker::start) binds the `[http]` listener, resolves the admin
//! token ([`token`]) and builds an [`AdminState`]; the node thread then starts the server
//! with [`serve`] inside the node's actix `System`, beside the MQTT listeners. Handlers
//! ([`api`]) reach the node only through what the state holds: the shared
//! [`Security`] (accounts, IP access list), the [`Metrics`] counters and the reloadable
//! [`TlsContext`]. Every change to accounts or the access list goes through
//! [`AdminState::persist`], the single hook where the store writes the change.
//!
//! The `fubar state | account | acl | tls` commands ([`client`]) are this API's client.
//! MQTT over WebSocket (`/mqtt`) will be served by the same server.

pub mod api;
pub mod client;
pub mod prometheus;
pub mod token;

use crate::auth::{AccountRecord, AclRecord, IpNet, Security};
use crate::metrics::Metrics;
use crate::store::{Batch, Store};
use crate::transport::tls::TlsContext;
use actix_web::{web, App, HttpServer};
use slog::Logger;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub use api::ApiError;

/// Addresses a node listens on, as `GET /api/v1/state` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListenerAddrs {
    /// The plain MQTT listener.
    pub mqtt: SocketAddr,
    /// The MQTTS listener, when TLS is on.
    pub mqtts: Option<SocketAddr>,
    /// The HTTP server.
    pub http: SocketAddr,
}

/// A change the admin API made to the node's security state, as the store must record it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// An account was created or changed (password or rules).
    AccountSet {
        /// The username (the key).
        username: String,
        /// The account as stored: hash and rules.
        record: AccountRecord,
    },
    /// An account was deleted.
    AccountDeleted {
        /// The username.
        username: String,
    },
    /// An IP access list entry was set.
    AclSet {
        /// The range (the key).
        network: IpNet,
        /// Its verdict.
        record: AclRecord,
    },
    /// An IP access list entry was removed.
    AclDeleted {
        /// The range.
        network: IpNet,
    },
}

/// Everything the HTTP handlers need, shared by all of them (`web::Data`).
pub struct AdminState {
    /// Node name.
    pub node: String,
    /// When the node started (for the uptime).
    pub started: Instant,
    /// The node's listener addresses.
    pub listeners: ListenerAddrs,
    /// Accounts and the IP access list.
    pub security: Arc<Security>,
    /// The node's counters.
    pub metrics: Arc<Metrics>,
    /// The MQTTS certificate, when TLS is on.
    pub tls: Option<Arc<TlsContext>>,
    /// The bearer token every `/api` request must present.
    pub token: String,
    /// The node's logger (admin changes are logged at info).
    pub log: Logger,
    /// Where accounts and the IP access list are kept across restarts.
    pub store: Store,
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the token.
        f.debug_struct("AdminState")
            .field("node", &self.node)
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

impl AdminState {
    /// Writes a change the admin API made to accounts or the IP access list to the store,
    /// once, after it took effect in memory, and waits until it is on disk (in either
    /// durability mode) before the API answers; a store error is answered with 500.
    pub async fn persist(&self, change: Change) -> Result<(), ApiError> {
        let mut batch = Batch::new();
        match &change {
            Change::AccountSet { username, record } => batch.put_account(username, record),
            Change::AccountDeleted { username } => batch.del_account(username),
            Change::AclSet { network, record } => batch.put_acl(network, record),
            Change::AclDeleted { network } => batch.del_acl(network),
        }
        self.store
            .submit_flushed(batch)
            .wait()
            .await
            .map_err(|e| ApiError::Internal(format!("the change is in effect but not saved: {e}")))
    }
}

/// Starts the HTTP server on `listener` (already bound) in the current actix `System`.
/// The returned server must be spawned (or awaited) to run; its handle stops it.
pub fn serve(
    listener: std::net::TcpListener,
    state: AdminState,
) -> std::io::Result<actix_web::dev::Server> {
    let data = web::Data::new(state);
    let server =
        HttpServer::new(move || App::new().app_data(data.clone()).configure(api::configure))
            // The admin API is light; the node's own signal handling stops everything.
            .workers(1)
            .disable_signals()
            .shutdown_timeout(1)
            .listen(listener)?
            .run();
    Ok(server)
}
