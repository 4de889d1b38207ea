//! [`Broker::start`]: runs a whole node on its own threads and returns a [`BrokerHandle`].
//!
//! The node is an actix `System` on a thread of its own (it runs the accept loop, the
//! [`Supervisor`] and the Registry) plus one worker arbiter per core (`node.workers`, 0 =
//! one per core) that runs connections, sessions and topics. The TCP listener is bound on the
//! caller's thread before anything starts, so a bind error is returned directly and the
//! handle knows the actual port. The store is opened and loaded there too (a locked or
//! unreadable data dir is an error of `start`); the node restores that state before its
//! listener accepts anyone. The HTTP server (admin API, `/metrics`; see [`crate::admin`])
//! is bound like the MQTT listener and runs in the node's System too. Nothing here needs
//! the caller's runtime: it works from plain threads and from inside a tokio runtime, and
//! several nodes can run in one process.

use crate::actors::Supervisor;
use crate::admin::{self, AdminState, ListenerAddrs};
use crate::auth::Security;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::store::{Loaded, Store};
use crate::transport::tcp;
use crate::transport::tls::{self, TlsContext};
use crate::{Config, Error, Result};
use actix::Actor;
use actix_rt::{Arbiter, ArbiterHandle, System};
use slog::{info, Logger};
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a stopping node waits for its HTTP server to close before it stops anyway.
const HTTP_STOP_WAIT: Duration = Duration::from_secs(2);

/// How long shutdown waits for the last user of the store to let go of it.
const STORE_CLOSE_WAIT: Duration = Duration::from_secs(15);

/// Starts broker nodes.
pub struct Broker;

/// A running broker node. Dropping it stops the node, like [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    mqtt_addr: SocketAddr,
    /// Address of the HTTP server (admin API, `/metrics`).
    http_addr: SocketAddr,
    /// Stops the HTTP server.
    http: Option<actix_web::dev::ServerHandle>,
    /// Address of the MQTTS listener, when it runs.
    tls_addr: Option<SocketAddr>,
    /// Its certificate (reloadable).
    tls: Option<Arc<TlsContext>>,
    security: Arc<Security>,
    metrics: Arc<Metrics>,
    system: Option<System>,
    thread: Option<JoinHandle<()>>,
    /// Disconnects once the store is closed and the data dir free.
    store_closed: Option<std::sync::mpsc::Receiver<()>>,
}

impl Broker {
    /// Starts a node on its own threads and returns once its listener is bound.
    pub fn start(config: Config, log: Logger) -> Result<BrokerHandle> {
        config.validate()?;
        let started = Instant::now();
        let ip: IpAddr = config.mqtt.bind.parse().map_err(|_| {
            Error::Config(crate::config::ConfigError::Invalid(
                "mqtt.bind",
                format!("{:?} is not an IP address", config.mqtt.bind),
            ))
        })?;
        let wanted = SocketAddr::new(ip, config.mqtt.port);
        let io = |context: String| move |cause| Error::Io { context, cause };
        let listener = std::net::TcpListener::bind(wanted)
            .map_err(io(format!("binding the MQTT listener on {wanted}")))?;
        listener
            .set_nonblocking(true)
            .map_err(io("configuring the MQTT listener".into()))?;
        let mqtt_addr = listener
            .local_addr()
            .map_err(io("reading the MQTT listener address".into()))?;
        std::fs::create_dir_all(&config.node.data_dir).map_err(io(format!(
            "creating the data dir {}",
            config.node.data_dir.display()
        )))?;
        let store = Store::open(&config.node.data_dir, config.store.options())?;
        let loaded = store.load()?;
        info!(log, "store opened";
            "dir" => %config.node.data_dir.display(), "durability" => ?config.store.durability,
            "sessions" => loaded.sessions.len(), "retained" => loaded.retained.len(),
            "expired_sessions" => loaded.expired, "discarded_entries" => loaded.discarded);
        let store_closed = store.on_close();
        let security = Arc::new(Security::load(
            &config.auth,
            store.accounts()?,
            store.acl()?,
        )?);
        let tls_listener = if config.tls.enabled() {
            let context = Arc::new(TlsContext::load(&config.tls)?);
            let wanted = SocketAddr::new(ip, config.tls.port);
            let listener = std::net::TcpListener::bind(wanted)
                .map_err(io(format!("binding the MQTTS listener on {wanted}")))?;
            listener
                .set_nonblocking(true)
                .map_err(io("configuring the MQTTS listener".into()))?;
            let addr = listener
                .local_addr()
                .map_err(io("reading the MQTTS listener address".into()))?;
            Some((listener, addr, context))
        } else {
            None
        };
        let (http_listener, http_addr) = bind_http(&config)?;
        let token = admin::token::resolve(&config.http.token, &config.node.data_dir)?;
        let tls_addr = tls_listener.as_ref().map(|(_, addr, _)| *addr);
        let tls = tls_listener.as_ref().map(|(_, _, context)| context.clone());
        let node_tls = tls_listener.map(|(listener, _, context)| (listener, context));
        let metrics = Arc::new(Metrics::default());
        let admin = AdminState {
            store: store.clone(),
            node: config.node.name.clone(),
            started,
            listeners: ListenerAddrs {
                mqtt: mqtt_addr,
                mqtts: tls_addr,
                http: http_addr,
            },
            security: security.clone(),
            metrics: metrics.clone(),
            tls: tls.clone(),
            token,
            log: log.clone(),
        };
        let (ready_tx, ready_rx) = mpsc::channel();
        let node_metrics = metrics.clone();
        let node_security = security.clone();
        let name = format!("fubar-{}", config.node.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                let listeners = Listeners {
                    mqtt: listener,
                    tls: node_tls,
                    http: (http_listener, admin),
                };
                run_node(
                    config,
                    log,
                    listeners,
                    node_metrics,
                    node_security,
                    (store, loaded),
                    ready_tx,
                )
            })
            .map_err(io("starting the node thread".into()))?;
        match ready_rx.recv() {
            Ok(Ok((system, http))) => Ok(BrokerHandle {
                mqtt_addr,
                http_addr,
                http: Some(http),
                tls_addr,
                tls,
                security,
                metrics,
                system: Some(system),
                thread: Some(thread),
                store_closed: Some(store_closed),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            Err(_) => {
                let _ = thread.join();
                Err(Error::Runtime(
                    "the node thread ended during start-up".into(),
                ))
            }
        }
    }
}

impl BrokerHandle {
    /// Address of the plain MQTT listener (the actual port when the config said 0).
    pub fn mqtt_addr(&self) -> SocketAddr {
        self.mqtt_addr
    }

    /// Address of the HTTP server: admin API under `/api/v1`, Prometheus `/metrics` (the
    /// actual port when the config said 0).
    pub fn http_addr(&self) -> SocketAddr {
        self.http_addr
    }

    /// Address of the MQTTS listener, when `tls.cert_file` and `tls.key_file` are set.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.tls_addr
    }

    /// Reads the TLS certificate, key and client CA files again (as SIGHUP does): new
    /// connections get the new certificate, established ones stay up. On error the old
    /// certificate stays in use. Does nothing when TLS is off.
    pub fn reload_tls(&self) -> Result<()> {
        match &self.tls {
            Some(context) => Ok(context.reload()?),
            None => Ok(()),
        }
    }

    /// Accounts, the IP access list and topic rules of this node: changes take effect for
    /// the next CONNECT (see [`Security`] for what each method returns for the store).
    pub fn security(&self) -> Arc<Security> {
        self.security.clone()
    }

    /// Counters of this node.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.metrics.snapshot()
    }

    /// Stops the node: closes every client socket and waits for its threads to end.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        if let Some(system) = self.system.take() {
            // The HTTP server first, so its accept thread lets go of the port; then the
            // System (on its own arbiter, after the server is down).
            let scheduled = match self.http.take() {
                Some(http) => system.arbiter().spawn(async move {
                    let _ = tokio::time::timeout(HTTP_STOP_WAIT, http.stop(false)).await;
                    System::current().stop();
                }),
                None => false,
            };
            if !scheduled {
                system.stop();
            }
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        // The HTTP workers may hold the store a moment longer: return only once the data
        // dir is free for the next node (bounded, like the store's own shutdown).
        if let Some(closed) = self.store_closed.take() {
            let _ = closed.recv_timeout(STORE_CLOSE_WAIT);
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The sockets a node serves, bound by [`Broker::start`].
struct Listeners {
    /// The plain MQTT listener.
    mqtt: std::net::TcpListener,
    /// The MQTTS listener and its certificate, when TLS is on.
    tls: Option<(std::net::TcpListener, Arc<TlsContext>)>,
    /// The HTTP listener and what its handlers need.
    http: (std::net::TcpListener, AdminState),
}

/// Binds the `[http]` listener (before the node starts, so errors reach the caller).
fn bind_http(config: &Config) -> Result<(std::net::TcpListener, SocketAddr)> {
    let ip: IpAddr = config.http.bind.parse().map_err(|_| {
        Error::Config(crate::config::ConfigError::Invalid(
            "http.bind",
            format!("{:?} is not an IP address", config.http.bind),
        ))
    })?;
    let wanted = SocketAddr::new(ip, config.http.port);
    let io = |context: String| move |cause| Error::Io { context, cause };
    let listener = std::net::TcpListener::bind(wanted)
        .map_err(io(format!("binding the HTTP listener on {wanted}")))?;
    listener
        .set_nonblocking(true)
        .map_err(io("configuring the HTTP listener".into()))?;
    let addr = listener
        .local_addr()
        .map_err(io("reading the HTTP listener address".into()))?;
    Ok((listener, addr))
}

/// The node thread: starts the System, the workers and the actors, serves until the System
/// is stopped, then stops and joins the workers (dropping every connection with them).
fn run_node(
    config: Config,
    log: Logger,
    listeners: Listeners,
    metrics: Arc<Metrics>,
    security: Arc<Security>,
    (store, loaded): (Store, Loaded),
    ready: mpsc::Sender<Result<(System, actix_web::dev::ServerHandle)>>,
) {
    let runner = System::new();
    let count = match config.node.workers {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let workers: Vec<Arbiter> = (0..count).map(|_| Arbiter::new()).collect();
    let handles: Arc<[ArbiterHandle]> = workers.iter().map(Arbiter::handle).collect();
    let config = Arc::new(config);
    let node_log = log.clone();
    let started = runner.block_on(async move {
        let register = |context: &str| {
            let context = context.to_string();
            move |cause| Error::Io { context, cause }
        };
        let listener = tokio::net::TcpListener::from_std(listeners.mqtt)
            .map_err(register("registering the MQTT listener"))?;
        let tls_listener = match listeners.tls {
            Some((socket, context)) => Some((
                tokio::net::TcpListener::from_std(socket)
                    .map_err(register("registering the MQTTS listener"))?,
                context,
            )),
            None => None,
        };
        let (http_listener, admin) = listeners.http;
        let http =
            admin::serve(http_listener, admin).map_err(register("starting the HTTP server"))?;
        let http_handle = http.handle();
        let supervisor = Supervisor::new(config, metrics, handles, node_log, store, loaded);
        let node = supervisor.node().clone();
        let addr = supervisor.start();
        if let Some((tls_listener, context)) = tls_listener {
            reload_on_sighup(context.clone(), node.log.clone());
            tls::spawn_listener(tls_listener, node.clone(), security.clone(), context);
        }
        tcp::spawn_listener(listener, node, security);
        actix_rt::spawn(http);
        Ok::<_, Error>((addr, http_handle))
    });
    match started {
        Ok((supervisor, http)) => {
            let _ = ready.send(Ok((System::current(), http)));
            if let Err(e) = runner.run() {
                info!(log, "node runtime ended with an error"; "error" => %e);
            }
            drop(supervisor);
        }
        Err(e) => {
            let _ = ready.send(Err(e));
        }
    }
    for worker in &workers {
        worker.stop();
    }
    for worker in workers {
        let _ = worker.join();
    }
}

/// Reloads the TLS certificate on every SIGHUP while the node runs.
fn reload_on_sighup(context: Arc<TlsContext>, log: Logger) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(e) => {
            slog::warn!(log, "no SIGHUP handler: TLS reload only through the API"; "error" => %e);
            return;
        }
    };
    actix_rt::spawn(async move {
        while hangups.recv().await.is_some() {
            match context.reload() {
                Ok(()) => info!(log, "TLS certificate reloaded"),
                Err(e) => {
                    slog::error!(log, "TLS reload failed, keeping the old certificate"; "error" => %e)
                }
            }
        }
    });
}
