//! fubar: a scalable MQTT broker for messenger and pub/sub applications.
//!
//! Speaks MQTT 3.1, 3.1.1 and 5.0 to any standard client, plus fubar's extensions
//! (keep-alive negotiation, alternate server, direct messaging between client ids).
//!
//! # Layout
//!
//! Layers depend one way: [`codec`] (pure bytes ↔ packets) → [`transport`] (sockets) →
//! [`actors`] (broker logic) → [`store`] (durable state).
//!
//! - [`codec`]: MQTT packet types, `decode` and `encode` for every protocol version.
//! - [`transport`]: the TCP and TLS listeners; one connection task per socket that decodes packets,
//!   drives the client's session and writes what the session sends back.
//! - [`actors`]: `Session` (one per client id), `Topic` (one per topic name with
//!   subscribers), `Registry` (names, subscriptions, retained messages, route snapshot),
//!   `Supervisor` (starts the node's actors).
//! - [`topic`]: topic name/filter validation and matching; the filter and retained-name
//!   tries the Registry keeps.
//! - [`auth`]: accounts (argon2id hashes), the IP access list, topic permissions and the
//!   connect rate limit; consulted by the transports at accept and CONNECT time.
//! - [`config`]: typed configuration from `config/fubar.toml`, `FUBAR_*` env and flags.
//! - [`logging`]: slog to the terminal, `log/console.log` and `log/error.log`.
//! - [`store`]: the only sled user: persistent sessions, queued and inflight messages,
//!   retained messages, trace flags and settings; group commit on its own thread.
//! - [`broker`]: [`Broker::start`] runs a node and returns a [`BrokerHandle`].
//! - [`admin`]: the HTTP server (admin API under `/api/v1`, `/metrics`) and the operator
//!   CLI's client for it.
#![warn(missing_docs)]

pub mod admin;
pub mod auth;
pub mod cli;
pub mod codec;
pub mod config;
pub mod logging;
pub mod store;
pub mod topic;
pub mod transport;

#[path = "../actors/mod.rs"]
pub mod actors;

pub mod broker;

pub use broker::{Broker, BrokerHandle};
pub use config::Config;

/// Errors a broker operation can end with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A socket or file operation failed.
    // The cause is in the message and deliberately not a `source()`, so that printing
    // the error chain (`fubar: ...`) does not repeat it.
    #[error("{context}: {cause}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// The TLS certificate, key or client CA could not be loaded.
    #[error(transparent)]
    Tls(#[from] transport::tls::TlsError),
    /// The admin token could not be read or created.
    #[error(transparent)]
    AdminToken(#[from] admin::token::TokenError),
    /// The durable store failed (at open: locked or unreadable data dir).
    #[error(transparent)]
    Store(#[from] store::StoreError),
    /// The broker stopped or could not start its runtime.
    #[error("broker runtime: {0}")]
    Runtime(String),
}

/// Result alias for broker operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;
pub mod metrics;
