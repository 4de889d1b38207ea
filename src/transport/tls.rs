//! The MQTTS listener: MQTT over TLS (rustls with the ring provider).
//!
//! Runs when `tls.cert_file` and `tls.key_file` are set, on `mqtt.bind`:`tls.port`. It
//! shares the TCP listener's accept loop (IP access list and rate limit first), then does
//! the TLS handshake on the worker arbiter within `mqtt.connect_timeout` and serves the
//! decrypted stream with the same `connection::serve` as plain TCP, so everything after
//! the handshake (authentication included) is identical.
//!
//! With `tls.client_ca_file` set, a client must present a certificate that chains to one
//! of those CAs (mutual TLS); a client without one fails the handshake and is logged.
//!
//! [`TlsContext`] holds the current certificate. [`TlsContext::reload`] (SIGHUP, or
//! [`BrokerHandle::reload_tls`](crate::BrokerHandle::reload_tls)) reads the files again:
//! new connections get the new certificate while established ones keep theirs. A reload
//! that fails keeps the old certificate.

use super::connection;
use super::tcp::accept_loop;
use crate::actors::Node;
use crate::auth::{Gate, Security};
use crate::config::TlsConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use slog::{debug, info, warn};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;
use tokio_rustls::TlsAcceptor;

/// Why the TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file could not be read or parsed.
    #[error("TLS: cannot read {path}: {error}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
    /// A PEM file holds no certificate.
    #[error("TLS: no certificate in {0}")]
    NoCertificate(PathBuf),
    /// rustls refused the configuration (e.g. the key does not match the certificate).
    #[error("TLS: {0}")]
    Rustls(#[from] rustls::Error),
    /// The client certificate verifier could not be built.
    #[error("TLS: client CA {path}: {error}")]
    ClientCa {
        /// The CA file.
        path: PathBuf,
        /// What went wrong.
        error: String,
    },
}

/// The listener's certificate, replaceable while it runs.
#[derive(Debug)]
pub struct TlsContext {
    /// Where the files are.
    paths: TlsConfig,
    /// The configuration new connections use.
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsContext {
    /// Loads the certificate, key and (optional) client CA named in `paths`.
    pub fn load(paths: &TlsConfig) -> Result<TlsContext, TlsError> {
        Ok(TlsContext {
            current: RwLock::new(server_config(paths)?),
            paths: paths.clone(),
        })
    }

    /// Reads the files again; on success new connections use the new certificate.
    pub fn reload(&self) -> Result<(), TlsError> {
        let fresh = server_config(&self.paths)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = fresh;
        Ok(())
    }

    /// The acceptor for the next connection.
    fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }
}

/// Builds a rustls server configuration from the files in `paths`.
fn server_config(paths: &TlsConfig) -> Result<Arc<ServerConfig>, TlsError> {
    let pem = |path: &Path| {
        let path = path.to_path_buf();
        move |e: rustls::pki_types::pem::Error| TlsError::Pem {
            path,
            error: e.to_string(),
        }
    };
    let certs = read_certs(&paths.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&paths.key_file).map_err(pem(&paths.key_file))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = if paths.client_ca_file.as_os_str().is_empty() {
        builder.with_no_client_auth()
    } else {
        let ca_error = |error: String| TlsError::ClientCa {
            path: paths.client_ca_file.clone(),
            error,
        };
        let mut roots = RootCertStore::empty();
        for cert in read_certs(&paths.client_ca_file)? {
            roots.add(cert).map_err(|e| ca_error(e.to_string()))?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| ca_error(e.to_string()))?;
        builder.with_client_cert_verifier(verifier)
    };
    let config = builder.with_single_cert(certs, key)?;
    Ok(Arc::new(config))
}

/// Every certificate of a PEM file (at least one).
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |e: rustls::pki_types::pem::Error| TlsError::Pem {
        path: path.to_path_buf(),
        error: e.to_string(),
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(error)?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(path.to_path_buf()));
    }
    Ok(certs)
}

/// Runs the MQTTS accept loop of `listener` on the current arbiter until the node stops.
pub fn spawn_listener(
    listener: TcpListener,
    node: Node,
    security: Arc<Security>,
    tls: Arc<TlsContext>,
) {
    let handle = move |stream, peer, node, gate| serve(stream, peer, node, gate, tls.clone());
    actix_rt::spawn(accept_loop(listener, node, security, handle));
}

/// Completes the handshake within `mqtt.connect_timeout`, then serves the connection.
async fn serve(
    stream: TcpStream,
    peer: SocketAddr,
    node: Arc<Node>,
    gate: Gate,
    tls: Arc<TlsContext>,
) {
    if let Err(e) = stream.set_nodelay(true) {
        debug!(node.log, "TCP_NODELAY not set"; "error" => %e);
    }
    let limit = Duration::from_secs(node.config.mqtt.connect_timeout);
    let stream = match timeout(limit, tls.acceptor().accept(stream)).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            info!(node.log, "TLS handshake failed"; "peer" => %peer, "error" => %e);
            return;
        }
        Err(_) => {
            warn!(node.log, "TLS handshake timed out"; "peer" => %peer);
            return;
        }
    };
    let (reader, writer) = tokio::io::split(stream);
    // A TLS session's state lives in the stream, so a TLS connection never parks.
    connection::serve(reader, writer, peer, node, gate, None).await;
}
