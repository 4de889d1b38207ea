//! The plain MQTT (TCP) listener, and the accept loop it shares with the TLS listener.
//!
//! The accept loop runs on the node's main arbiter. Every accepted socket first passes the
//! node's [`Security`] ([`Security::admit`]): a `deny` entry or the connect rate limit
//! closes it at once, before a byte is read, with a log line naming the peer. An admitted
//! socket is handed to the next worker arbiter round-robin and served there; the socket
//! travels as a `std` socket and is registered again inside the target arbiter, because a
//! tokio socket belongs to the runtime that registered it. Sessions created for the
//! connection start on the same arbiter, so the usual path stays on one thread.

use super::connection::{self, Idle};
use super::park;
use crate::actors::Node;
use crate::auth::{Gate, Rejection, Security};
use slog::{debug, info, warn};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the accept loop of `listener` on the current arbiter until the node stops.
pub fn spawn_listener(listener: TcpListener, node: Node, security: Arc<Security>) {
    actix_rt::spawn(accept_loop(listener, node, security, serve));
}

/// Accepts sockets, admits them through `security` and runs `handle` for each admitted
/// one on a worker arbiter (or on the current one when the node has no workers).
pub(crate) async fn accept_loop<H, F>(
    listener: TcpListener,
    node: Node,
    security: Arc<Security>,
    handle: H,
) where
    H: Fn(TcpStream, SocketAddr, Arc<Node>, Gate) -> F + Clone + Send + 'static,
    F: Future<Output = ()> + Send + 'static,
{
    // Shared by every connection: a `Node` copy is 120 bytes in each connection's task,
    // plus an allocation for its Registry address.
    let node = Arc::new(node);
    let mut next = 0usize;
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                warn!(node.log, "accept failed"; "error" => %e);
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(gate) = admit(&security, peer, &node) else {
            // Dropping the stream closes the socket.
            continue;
        };
        if node.workers.is_empty() {
            actix_rt::spawn(handle(stream, peer, node.clone(), gate));
            continue;
        }
        let socket = match stream.into_std() {
            Ok(socket) => socket,
            Err(e) => {
                debug!(node.log, "socket lost before hand-over"; "peer" => %peer, "error" => %e);
                continue;
            }
        };
        let worker = &node.workers[next % node.workers.len()];
        next = next.wrapping_add(1);
        let conn_node = node.clone();
        let handle = handle.clone();
        let handed = worker.spawn(async move {
            match TcpStream::from_std(socket) {
                Ok(stream) => handle(stream, peer, conn_node, gate).await,
                Err(e) => warn!(conn_node.log, "socket registration failed"; "peer" => %peer, "error" => %e),
            }
        });
        if !handed {
            warn!(node.log, "worker arbiter stopped; connection dropped"; "peer" => %peer);
        }
    }
}

/// The gate of an accepted socket, or `None` (logged) when it must be closed at once.
fn admit(security: &Arc<Security>, peer: SocketAddr, node: &Node) -> Option<Gate> {
    match security.admit(peer) {
        Ok(gate) => Some(gate),
        Err(Rejection::Denied) => {
            info!(node.log, "connection refused by the IP access list"; "peer" => %peer);
            None
        }
        Err(Rejection::RateLimited { first: true }) => {
            warn!(node.log, "connect rate limit exceeded, closing connections from this source";
                "peer" => %peer);
            None
        }
        Err(Rejection::RateLimited { first: false }) => {
            debug!(node.log, "connect rate limit exceeded"; "peer" => %peer);
            None
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, node: Arc<Node>, gate: Gate) {
    // MQTT packets are small and latency matters more than segment count.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(node.log, "TCP_NODELAY not set"; "error" => %e);
    }
    let (reader, writer) = stream.into_split();
    connection::serve(reader, writer, peer, node, gate, Some(park)).await;
}

/// Parks an idle connection of `node` (see [`park`](super::park)): its socket leaves tokio's
/// reactor for the arbiter's table of parked connections.
fn park(reader: OwnedReadHalf, writer: OwnedWriteHalf, node: Arc<Node>, idle: Idle) {
    let stream = match reader.reunite(writer) {
        Ok(stream) => stream,
        Err(e) => {
            let peer = e.0.peer_addr().ok();
            let error = std::io::Error::other("halves of different sockets");
            return idle.abandon(&node, peer, &error);
        }
    };
    let peer = stream.peer_addr().ok();
    match stream.into_std() {
        Ok(socket) => park::park(socket, node, idle),
        Err(e) => idle.abandon(&node, peer, &e),
    }
}

/// Serves a parked connection of `node` again, on the current arbiter.
pub(super) async fn resume(socket: std::net::TcpStream, node: Arc<Node>, idle: Idle) {
    // A socket that cannot name its peer any more is reset: the first read says so and
    // ends the connection as usual (its log then names the peer 0.0.0.0:0).
    let peer = socket.peer_addr().ok();
    match TcpStream::from_std(socket) {
        Ok(stream) => {
            let (reader, writer) = stream.into_split();
            let peer = peer.unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            idle.resume(reader, writer, node, peer, Some(park)).await;
        }
        Err(e) => idle.abandon(&node, peer, &e),
    }
}
