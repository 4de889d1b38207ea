//! The plain MQTT (TCP) listener.
//!
//! The accept loop runs on the node's main arbiter. Each accepted socket is handed to the
//! next worker arbiter round-robin and served there by [`connection::serve`]; the socket
//! travels as a `std` socket and is registered again inside the target arbiter, because a
//! tokio socket belongs to the runtime that registered it. Sessions created for the
//! connection start on the same arbiter, so the usual path stays on one thread.

use super::connection;
use crate::actors::Node;
use slog::{debug, warn};
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};

/// Pause after a failed accept (e.g. out of file descriptors) before trying again.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Runs the accept loop of `listener` on the current arbiter until the node stops.
pub fn spawn_listener(listener: TcpListener, node: Node) {
    actix_rt::spawn(accept_loop(listener, node));
}

async fn accept_loop(listener: TcpListener, node: Node) {
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
        if node.workers.is_empty() {
            actix_rt::spawn(serve(stream, peer, node.clone()));
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
        let handed = worker.spawn(async move {
            match TcpStream::from_std(socket) {
                Ok(stream) => serve(stream, peer, conn_node).await,
                Err(e) => warn!(conn_node.log, "socket registration failed"; "peer" => %peer, "error" => %e),
            }
        });
        if !handed {
            warn!(node.log, "worker arbiter stopped; connection dropped"; "peer" => %peer);
        }
    }
}

async fn serve(stream: TcpStream, peer: SocketAddr, node: Node) {
    // MQTT packets are small and latency matters more than segment count.
    if let Err(e) = stream.set_nodelay(true) {
        debug!(node.log, "TCP_NODELAY not set"; "error" => %e);
    }
    let (reader, writer) = stream.into_split();
    connection::serve(reader, writer, peer, node).await;
}
