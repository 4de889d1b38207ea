//! Transports: listeners that own sockets and bind each connection to a session.
//!
//! - [`tcp`]: the plain MQTT listener; accepts sockets, admits them through the node's
//!   [`Security`](crate::auth::Security) (IP access list, connect rate limit) and hands each
//!   to a worker arbiter.
//! - [`tls`]: the MQTTS listener (rustls): the same accept loop, a TLS handshake, then the
//!   same connection task; its certificate can be reloaded while it runs.
//! - [`connection`]: the per-connection task shared by every transport (CONNECT handshake,
//!   read loop, keep-alive and writes, all in one task).
//! - `park`: idle plain-TCP connections without a task: their sockets wait in one epoll
//!   set per worker arbiter until the client or the session has something for them.
//! - [`connect`]: CONNECT policy as pure functions (keep-alive negotiation, client ids,
//!   session expiry, CONNACK contents).
//!
//! Sessions never see a socket: a connection gives its session a
//! [`ClientLink`](crate::actors::ClientLink) and forwards decoded packets to it.

pub mod connect;
pub mod connection;
mod park;
pub mod tcp;
pub mod tls;
