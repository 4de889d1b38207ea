//! [`Broker::start`]: runs a whole node on its own threads and returns a [`BrokerHandle`].
//!
//! The node is an actix `System` on a thread of its own (it runs the accept loop, the
//! [`Supervisor`] and the Registry) plus one worker arbiter per core (`node.workers`, 0 =
//! one per core) that runs connections, sessions and topics. The TCP listener is bound on the
//! caller's thread before anything starts, so a bind error is returned directly and the
//! handle knows the actual port. The store is opened and loaded there too (a locked or
//! unreadable data dir is an error of `start`); the node restores that state before its
//! listener accepts anyone. Nothing here needs the caller's runtime: it works from
//! plain threads and from inside a tokio runtime, and several nodes can run in one process.

use crate::actors::Supervisor;
use crate::metrics::{Metrics, MetricsSnapshot};
use crate::store::{Loaded, Store};
use crate::transport::tcp;
use crate::{Config, Error, Result};
use actix::Actor;
use actix_rt::{Arbiter, ArbiterHandle, System};
use slog::{info, Logger};
use std::net::{IpAddr, SocketAddr};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

/// Starts broker nodes.
pub struct Broker;

/// A running broker node. Dropping it stops the node, like [`BrokerHandle::shutdown`].
pub struct BrokerHandle {
    mqtt_addr: SocketAddr,
    metrics: Arc<Metrics>,
    system: Option<System>,
    thread: Option<JoinHandle<()>>,
}

impl Broker {
    /// Starts a node on its own threads and returns once its listener is bound.
    pub fn start(config: Config, log: Logger) -> Result<BrokerHandle> {
        config.validate()?;
        let ip: IpAddr = config.mqtt.bind.parse().map_err(|_| {
            Error::Config(crate::config::ConfigError::Invalid(
                "mqtt.bind",
                format!("{:?} is not an IP address", config.mqtt.bind),
            ))
        })?;
        let wanted = SocketAddr::new(ip, config.mqtt.port);
        let io = |context: String| move |source| Error::Io { context, source };
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
        let metrics = Arc::new(Metrics::default());
        let (ready_tx, ready_rx) = mpsc::channel();
        let node_metrics = metrics.clone();
        let name = format!("fubar-{}", config.node.name);
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || {
                run_node(
                    config,
                    log,
                    listener,
                    node_metrics,
                    (store, loaded),
                    ready_tx,
                )
            })
            .map_err(io("starting the node thread".into()))?;
        match ready_rx.recv() {
            Ok(Ok(system)) => Ok(BrokerHandle {
                mqtt_addr,
                metrics,
                system: Some(system),
                thread: Some(thread),
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
            system.stop();
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for BrokerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The node thread: starts the System, the workers and the actors, serves until the System
/// is stopped, then stops and joins the workers (dropping every connection with them).
fn run_node(
    config: Config,
    log: Logger,
    listener: std::net::TcpListener,
    metrics: Arc<Metrics>,
    (store, loaded): (Store, Loaded),
    ready: mpsc::Sender<Result<System>>,
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
        let listener = tokio::net::TcpListener::from_std(listener).map_err(|source| Error::Io {
            context: "registering the MQTT listener".into(),
            source,
        })?;
        let supervisor = Supervisor::new(config, metrics, handles, node_log, store, loaded);
        let node = supervisor.node().clone();
        let addr = supervisor.start();
        tcp::spawn_listener(listener, node);
        Ok::<_, Error>(addr)
    });
    match started {
        Ok(supervisor) => {
            let _ = ready.send(Ok(System::current()));
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
