//! Parked connections: idle plain-TCP connections without a task.
//!
//! An attached connection that read and wrote nothing for `mqtt.park_after_ms` ends its
//! task (`Exit::Idle` in [`connection`](super::connection)) and leaves here: its socket, out
//! of tokio's reactor, and the few bytes of [`Idle`] state. Each worker arbiter has one
//! table (made on its first park): a mio epoll set holding the parked sockets, the parked
//! connections by key, and one keeper task that wakes up when
//!
//! - a parked socket is readable (the client sent something, or closed);
//! - the session put something on the connection's link, asked it to close, or ended (the
//!   link holds a waker that queues the connection's key and rings the set's waker);
//! - a keep-alive runs out (checked once a second).
//!
//! It then takes the connection out of the table and starts a task that serves it again
//! (`tcp::resume`): the first read, write or timer happens there, exactly as if the
//! connection had never left. Parking costs the connection its task (~1.4 KB with its
//! buffers) and its tokio I/O registration (256 B); a parked connection keeps ~220 B (its
//! record, its waker and a map slot).
//!
//! The keeper runs on the table's own arbiter, so nothing here is shared between threads
//! but the wake-up queue. Wakes for a connection that already left are ignored: a key is
//! never reused.

use super::connection::Idle;
use super::tcp;
use crate::metrics::Metrics;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slog::{error, Logger};
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Wake, Waker};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::{interval, Instant, MissedTickBehavior};

/// The token of the set's own waker (keys count up from 0 and never get there).
const WAKER: Token = Token(usize::MAX);
/// Readiness events taken from the set per call.
const EVENTS: usize = 256;
/// Calls per wake-up of the keeper before it lets other tasks run.
const ROUNDS: usize = 16;
/// How often keep-alive deadlines are checked.
const TICK: Duration = Duration::from_secs(1);

thread_local! {
    /// This arbiter's table, while its keeper runs.
    static TABLE: RefCell<Weak<Table>> = const { RefCell::new(Weak::new()) };
}

/// One arbiter's parked connections.
struct Table {
    /// Registers parked sockets in the keeper's epoll set.
    registry: Registry,
    /// Parked connections by key.
    parked: RefCell<HashMap<u64, Box<Sleeper>>>,
    /// The next key.
    next: Cell<u64>,
    /// What other threads use to wake parked connections.
    shared: Arc<Shared>,
    log: Logger,
}

/// A parked connection.
struct Sleeper {
    socket: std::net::TcpStream,
    idle: Idle,
}

/// The wake-up queue of a table, filled by link wakers on any thread.
struct Shared {
    woken: Mutex<Vec<u64>>,
    /// Makes the epoll set readable, so the keeper runs.
    waker: mio::Waker,
}

/// The waker a parked connection leaves in its link.
struct Wakeup {
    shared: Arc<Shared>,
    key: u64,
}

impl Wake for Wakeup {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        let mut woken = self
            .shared
            .woken
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        woken.push(self.key);
        // The first key rings; later ones find the keeper about to run.
        if woken.len() == 1 {
            drop(woken);
            // Failing to ring means the set is gone, and with it the connection.
            let _ = self.shared.waker.wake();
        }
    }
}

impl Drop for Table {
    fn drop(&mut self) {
        for sleeper in self.parked.get_mut().values() {
            Metrics::sub(&sleeper.idle.node().metrics.parked, 1);
        }
    }
}

/// Parks an idle connection on the current arbiter. If that fails (no epoll set could be
/// made), the connection goes on in a new task.
pub(super) fn park(socket: std::net::TcpStream, idle: Idle) {
    let table = match table(&idle) {
        Ok(table) => table,
        Err(e) => {
            error!(idle.node().log, "cannot park idle connections"; "error" => %e);
            actix_rt::spawn(tcp::resume(socket, idle));
            return;
        }
    };
    let key = table.next.get();
    table.next.set(key + 1);
    let fd = socket.as_raw_fd();
    if let Err(e) =
        table
            .registry
            .register(&mut SourceFd(&fd), Token(key as usize), Interest::READABLE)
    {
        error!(table.log, "cannot park a connection"; "error" => %e);
        actix_rt::spawn(tcp::resume(socket, idle));
        return;
    }
    Metrics::incr(&idle.node().metrics.parked);
    let waker = Waker::from(Arc::new(Wakeup {
        shared: table.shared.clone(),
        key,
    }));
    let ready = idle.watch(&waker);
    table
        .parked
        .borrow_mut()
        .insert(key, Box::new(Sleeper { socket, idle }));
    if ready {
        waker.wake();
    }
}

/// The current arbiter's table, made (with its keeper) if there is none.
fn table(idle: &Idle) -> std::io::Result<Rc<Table>> {
    if let Some(table) = TABLE.with(|t| t.borrow().upgrade()) {
        return Ok(table);
    }
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let waker = mio::Waker::new(&registry, WAKER)?;
    // SAFETY: the epoll descriptor belongs to `poll`, which the `AsyncFd` owns from here
    // on: it stays open, and `as_raw_fd` returns it, until the `AsyncFd` is dropped.
    let poll = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let table = Rc::new(Table {
        registry,
        parked: RefCell::new(HashMap::new()),
        next: Cell::new(0),
        shared: Arc::new(Shared {
            woken: Mutex::new(Vec::new()),
            waker,
        }),
        log: idle.node().log.clone(),
    });
    TABLE.with(|t| *t.borrow_mut() = Rc::downgrade(&table));
    actix_rt::spawn(keep(table.clone(), poll));
    Ok(table)
}

/// The keeper: wakes parked connections until its arbiter stops.
async fn keep(table: Rc<Table>, mut poll: AsyncFd<Poll>) {
    let mut events = Events::with_capacity(EVENTS);
    let mut ready = Vec::new();
    let mut tick = interval(TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            guard = poll.readable_mut() => {
                let mut guard = match guard {
                    Ok(guard) => guard,
                    Err(e) => {
                        error!(table.log, "parked connections' readiness failed"; "error" => %e);
                        break;
                    }
                };
                let mut drained = false;
                for _ in 0..ROUNDS {
                    match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            error!(table.log, "parked connections' readiness failed"; "error" => %e);
                            drained = true;
                            break;
                        }
                    }
                    let mut taken = 0;
                    for event in events.iter() {
                        taken += 1;
                        if event.token() != WAKER {
                            ready.push(event.token().0 as u64);
                        }
                    }
                    if taken < EVENTS {
                        drained = true;
                        break;
                    }
                }
                // Readiness is kept when events may be left: the keeper comes back at once.
                if drained {
                    guard.clear_ready();
                }
                ready.append(&mut table.shared.woken.lock().unwrap_or_else(PoisonError::into_inner));
                for key in ready.drain(..) {
                    wake(&table, key);
                }
            }
            _ = tick.tick() => {
                let now = Instant::now();
                ready.extend(table.parked.borrow().iter().filter_map(|(key, sleeper)| {
                    sleeper.idle.deadline().is_some_and(|d| d <= now).then_some(*key)
                }));
                for key in ready.drain(..) {
                    wake(&table, key);
                }
            }
        }
    }
    // Nothing can wake them here any more: every parked connection goes back to a task.
    TABLE.with(|t| *t.borrow_mut() = Weak::new());
    let keys: Vec<u64> = table.parked.borrow().keys().copied().collect();
    for key in keys {
        wake(&table, key);
    }
}

/// Takes connection `key` out of the table (if it is still there) and serves it again.
fn wake(table: &Table, key: u64) {
    let Some(sleeper) = table.parked.borrow_mut().remove(&key) else {
        return;
    };
    let Sleeper { socket, idle } = *sleeper;
    // The socket goes back to tokio's reactor; if it cannot leave the set, its later
    // events name a key that is gone.
    let _ = table
        .registry
        .deregister(&mut SourceFd(&socket.as_raw_fd()));
    Metrics::sub(&idle.node().metrics.parked, 1);
    actix_rt::spawn(tcp::resume(socket, idle));
}
