//! Parked connections: idle plain-TCP connections without a task.
//!
//! An attached connection that read and wrote nothing for `mqtt.park_after_ms` ends its
//! task (`Exit::Idle` in [`connection`](super::connection)) and leaves here: its socket, out
//! of tokio's reactor, and the few bytes of [`Idle`] state. Each worker arbiter has one
//! table per node (made on its first park; a node's connections all run on its own
//! arbiters, so there is one): a mio epoll set holding the parked sockets, the parked
//! connections in a slab, and one keeper task that wakes up when
//!
//! - a parked socket is readable (the client sent something, or closed);
//! - the session put something on the connection's link, asked it to close, or ended (the
//!   link holds a waker that queues the connection's key and rings the set's waker);
//! - a keep-alive runs out (checked once a second).
//!
//! It then takes the connection out of the table and starts a task that serves it again
//! (`tcp::resume`): the first read, write or timer happens there, exactly as if the
//! connection had never left. Parking costs the connection its task (~1.4 KB with its
//! buffers) and its tokio I/O registration (256 B); a parked connection keeps its 40-byte
//! slab entry (socket, generation and [`Idle`]; the slab grows by a quarter at a time) and
//! nothing else: its waker is a number, not an allocation.
//!
//! A connection's key is its slot in the slab and the slot's generation, bumped whenever
//! the slot is emptied: it is the connection's epoll token, and, with the table's id, the
//! data word of its waker. Wakes and readiness events for a connection that already left
//! name an old generation and are ignored (generations wrap after 2^24 reuses of a slot;
//! a wake that old would only resume a connection with nothing to do, which parks again).
//!
//! The keeper runs on the table's own arbiter, so nothing here is shared between threads
//! but the wake-up queue and the registry that lets a waker find it by id.

use super::connection::{Idle, Stamp};
use super::tcp;
use crate::actors::Node;
use crate::metrics::Metrics;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Registry, Token};
use slog::error;
use std::cell::RefCell;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::os::fd::AsRawFd;
use std::rc::{Rc, Weak};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{RawWaker, RawWakerVTable, Waker};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::time::{interval, MissedTickBehavior};

/// The token of the set's own waker (keys have 48 bits and never get there).
const WAKER: Token = Token(usize::MAX);
/// Readiness events taken from the set per call.
const EVENTS: usize = 256;
/// Calls per wake-up of the keeper before it lets other tasks run.
const ROUNDS: usize = 16;
/// How often keep-alive deadlines are checked.
const TICK: Duration = Duration::from_secs(1);
/// Bits of a key naming the slot (so at most 16.7 million connections per table).
const SLOT_BITS: u32 = 24;
/// Bits of a key holding the slot's generation.
const GENERATION_BITS: u32 = 24;
/// Bits of a waker's word below the table id: the key.
const KEY_BITS: u32 = SLOT_BITS + GENERATION_BITS;
/// Tables alive at once at most (their ids fill the rest of a waker's word).
const TABLE_IDS: usize = 1 << 16;
/// Slab entries a table keeps room for however few connections are parked.
const MIN_CAPACITY: usize = 64;

// A key and a table id share one word: a waker's data and an epoll token.
const _: () = assert!(usize::BITS >= 64, "parked connections need a 64-bit word");

thread_local! {
    /// This arbiter's tables (one per node), while their keepers run.
    static LOCAL: RefCell<Vec<Weak<Table>>> = const { RefCell::new(Vec::new()) };
}

/// Every table's wake-up queue, by table id: how a waker on any thread finds its table.
static TABLES: RwLock<Vec<Option<Arc<Shared>>>> = RwLock::new(Vec::new());

/// One arbiter's parked connections of one node.
struct Table {
    /// The table's index in [`TABLES`].
    id: usize,
    /// The node all the table's connections belong to.
    node: Arc<Node>,
    /// Registers parked sockets in the keeper's epoll set.
    registry: Registry,
    /// The parked connections.
    slab: RefCell<Slab<std::net::TcpStream, Idle>>,
    /// What other threads use to wake parked connections.
    shared: Arc<Shared>,
}

/// The wake-up queue of a table, filled by link wakers on any thread.
struct Shared {
    /// Keys woken since the keeper last looked.
    woken: Mutex<Vec<u64>>,
    /// Makes the epoll set readable, so the keeper runs.
    waker: mio::Waker,
}

impl Shared {
    /// Queues `key` for the keeper.
    fn push(&self, key: u64) {
        let mut woken = self.woken.lock().unwrap_or_else(PoisonError::into_inner);
        woken.push(key);
        // The first key rings; later ones find the keeper about to run.
        if woken.len() == 1 {
            drop(woken);
            // Failing to ring means the set is gone, and with it the connection.
            let _ = self.waker.wake();
        }
    }
}

/// Names one occupant of a slab slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Key {
    slot: u32,
    /// Below 2^[`GENERATION_BITS`].
    generation: u32,
}

impl Key {
    /// The key as a number below 2^[`KEY_BITS`].
    fn word(self) -> u64 {
        (u64::from(self.generation) << SLOT_BITS) | u64::from(self.slot)
    }

    /// The key whose [`word`](Key::word) `word` is (higher bits are ignored).
    fn from_word(word: u64) -> Key {
        Key {
            slot: (word & ((1 << SLOT_BITS) - 1)) as u32,
            generation: ((word >> SLOT_BITS) & ((1 << GENERATION_BITS) - 1)) as u32,
        }
    }

    /// The connection's epoll token.
    fn token(self) -> Token {
        Token(self.word() as usize)
    }
}

/// Records kept inline in a vector, found by [`Key`]. `S` (the socket) and `T` (the rest)
/// sit beside the slot's generation, so a 4-byte socket and a 32-byte record make a 40-byte
/// entry. Slots are reused lowest first, so the occupied ones gather at the front and the
/// vector can shrink when most of its connections leave.
struct Slab<S, T> {
    entries: Vec<Entry<S, T>>,
    /// Free slots, lowest first. May also hold slots past the end of `entries` or taken
    /// again (skipped when popped; dropped when they outnumber the free slots).
    free: BinaryHeap<Reverse<u32>>,
    /// Occupied slots.
    len: usize,
    /// The generation of slots added at the end: above that of every slot cut off the end
    /// (until generations wrap).
    fresh: u32,
}

/// One slot of a [`Slab`].
enum Entry<S, T> {
    Occupied {
        generation: u32,
        socket: S,
        value: T,
    },
    Free {
        generation: u32,
    },
}

impl<S, T> Entry<S, T> {
    fn generation(&self) -> u32 {
        match self {
            Entry::Occupied { generation, .. } | Entry::Free { generation } => *generation,
        }
    }
}

impl<S, T> Slab<S, T> {
    fn new() -> Self {
        Slab {
            entries: Vec::new(),
            free: BinaryHeap::new(),
            len: 0,
            fresh: 0,
        }
    }

    /// Puts `socket` and `value` in the lowest free slot; gives them back when every slot a
    /// key can name is taken.
    fn insert(&mut self, socket: S, value: T) -> Result<Key, (S, T)> {
        while let Some(Reverse(slot)) = self.free.pop() {
            if let Some(entry @ Entry::Free { .. }) = self.entries.get_mut(slot as usize) {
                let generation = entry.generation();
                *entry = Entry::Occupied {
                    generation,
                    socket,
                    value,
                };
                self.len += 1;
                return Ok(Key { slot, generation });
            }
        }
        let slot = self.entries.len();
        if slot >= 1 << SLOT_BITS {
            return Err((socket, value));
        }
        if slot == self.entries.capacity() {
            // A quarter at a time: at most a fifth of the entries stand empty.
            self.entries.reserve_exact((slot / 4).max(MIN_CAPACITY));
        }
        let generation = self.fresh;
        self.entries.push(Entry::Occupied {
            generation,
            socket,
            value,
        });
        self.len += 1;
        Ok(Key {
            slot: slot as u32,
            generation,
        })
    }

    /// The record named by `key`, if it is still there.
    fn get(&self, key: Key) -> Option<&T> {
        match self.entries.get(key.slot as usize) {
            Some(Entry::Occupied {
                generation, value, ..
            }) if *generation == key.generation => Some(value),
            _ => None,
        }
    }

    /// Takes out the occupant named by `key`, if it is still there; the slot's next
    /// occupant has the next generation.
    fn remove(&mut self, key: Key) -> Option<(S, T)> {
        let entry = self.entries.get_mut(key.slot as usize)?;
        if !matches!(entry, Entry::Occupied { generation, .. } if *generation == key.generation) {
            return None;
        }
        let next = (key.generation + 1) & ((1 << GENERATION_BITS) - 1);
        let Entry::Occupied { socket, value, .. } =
            std::mem::replace(entry, Entry::Free { generation: next })
        else {
            return None;
        };
        self.len -= 1;
        self.free.push(Reverse(key.slot));
        self.trim();
        Some((socket, value))
    }

    /// Cuts free slots off the end and gives memory back once most of it stands empty.
    fn trim(&mut self) {
        while let Some(Entry::Free { generation }) = self.entries.last() {
            self.fresh = self.fresh.max(*generation);
            self.entries.pop();
        }
        let free = self.entries.len() - self.len;
        if self.free.len() > 2 * free + MIN_CAPACITY {
            let entries = &self.entries;
            self.free.retain(|Reverse(slot)| {
                matches!(entries.get(*slot as usize), Some(Entry::Free { .. }))
            });
            self.free.shrink_to_fit();
        }
        let room = (self.entries.len() + self.entries.len() / 4).max(MIN_CAPACITY);
        if self.entries.capacity() > 2 * room {
            self.entries.shrink_to(room);
        }
    }

    /// The keys of the occupants `pick` picks.
    fn keys<'a>(&'a self, mut pick: impl FnMut(&T) -> bool + 'a) -> impl Iterator<Item = Key> + 'a {
        self.entries
            .iter()
            .enumerate()
            .filter_map(move |(slot, entry)| match entry {
                Entry::Occupied {
                    generation, value, ..
                } if pick(value) => Some(Key {
                    slot: slot as u32,
                    generation: *generation,
                }),
                _ => None,
            })
    }
}

/// What a parked connection's waker does: the data word is a number (table id above
/// [`KEY_BITS`], key below), never a pointer, so cloning and dropping do nothing.
static VTABLE: RawWakerVTable = RawWakerVTable::new(clone_word, ring, ring, drop_word);

fn clone_word(word: *const ()) -> RawWaker {
    RawWaker::new(word, &VTABLE)
}

fn drop_word(_: *const ()) {}

/// Queues the key of `word` on its table, if that table is still there.
fn ring(word: *const ()) {
    let word = word as usize as u64;
    let id = (word >> KEY_BITS) as usize;
    let tables = TABLES.read().unwrap_or_else(PoisonError::into_inner);
    if let Some(Some(shared)) = tables.get(id) {
        shared.push(word & ((1 << KEY_BITS) - 1));
    }
}

/// The waker of connection `key` in table `id`: makes no allocation.
fn waker(id: usize, key: Key) -> Waker {
    let word = ((id as u64) << KEY_BITS) | key.word();
    // SAFETY: `VTABLE`'s functions never dereference the data word (it is a number, not a
    // pointer), keep no state, and are safe to call from any thread (`ring` only takes
    // locks), so every `RawWaker` with this word and vtable meets `RawWaker`'s contract,
    // including its clones.
    unsafe { Waker::from_raw(RawWaker::new(word as usize as *const (), &VTABLE)) }
}

impl Drop for Table {
    fn drop(&mut self) {
        Metrics::sub(&self.node.metrics.parked, self.slab.get_mut().len as u64);
        let mut tables = TABLES.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(entry) = tables.get_mut(self.id) {
            *entry = None;
        }
    }
}

/// Parks an idle connection of `node` on the current arbiter. If that fails (no epoll set
/// could be made), the connection goes on in a new task.
pub(super) fn park(socket: std::net::TcpStream, node: Arc<Node>, idle: Idle) {
    let table = match table(&node) {
        Ok(table) => table,
        Err(e) => {
            error!(node.log, "cannot park idle connections"; "error" => %e);
            actix_rt::spawn(tcp::resume(socket, node, idle));
            return;
        }
    };
    let fd = socket.as_raw_fd();
    let inserted = table.slab.borrow_mut().insert(socket, idle);
    let key = match inserted {
        Ok(key) => key,
        Err((socket, idle)) => {
            error!(node.log, "cannot park a connection"; "error" => "the table is full");
            actix_rt::spawn(tcp::resume(socket, node, idle));
            return;
        }
    };
    if let Err(e) = table
        .registry
        .register(&mut SourceFd(&fd), key.token(), Interest::READABLE)
    {
        error!(node.log, "cannot park a connection"; "error" => %e);
        let removed = table.slab.borrow_mut().remove(key);
        if let Some((socket, idle)) = removed {
            actix_rt::spawn(tcp::resume(socket, node, idle));
        }
        return;
    }
    Metrics::incr(&node.metrics.parked);
    let waker = waker(table.id, key);
    let ready = table
        .slab
        .borrow()
        .get(key)
        .is_some_and(|idle| idle.watch(&waker));
    if ready {
        waker.wake();
    }
}

/// The current arbiter's table for `node`, made (with its keeper) if there is none.
fn table(node: &Arc<Node>) -> std::io::Result<Rc<Table>> {
    let found = LOCAL.with(|local| {
        local
            .borrow()
            .iter()
            .filter_map(Weak::upgrade)
            .find(|table| Arc::ptr_eq(&table.node, node))
    });
    if let Some(table) = found {
        return Ok(table);
    }
    let poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let shared = Arc::new(Shared {
        woken: Mutex::new(Vec::new()),
        waker: mio::Waker::new(&registry, WAKER)?,
    });
    // SAFETY: the epoll descriptor belongs to `poll`, which the `AsyncFd` owns from here
    // on: it stays open, and `as_raw_fd` returns it, until the `AsyncFd` is dropped.
    let poll = unsafe { AsyncFd::register_with_interest(poll, tokio::io::Interest::READABLE) }
        .map_err(|e| e.into_parts().1)?;
    let id = enlist(shared.clone())?;
    let table = Rc::new(Table {
        id,
        node: node.clone(),
        registry,
        slab: RefCell::new(Slab::new()),
        shared,
    });
    LOCAL.with(|local| {
        let mut local = local.borrow_mut();
        local.retain(|table| table.strong_count() > 0);
        local.push(Rc::downgrade(&table));
    });
    actix_rt::spawn(keep(table.clone(), poll));
    Ok(table)
}

/// Gives `shared` a table id (a free one, or the next).
fn enlist(shared: Arc<Shared>) -> std::io::Result<usize> {
    let mut tables = TABLES.write().unwrap_or_else(PoisonError::into_inner);
    if let Some(id) = tables.iter().position(Option::is_none) {
        tables[id] = Some(shared);
        return Ok(id);
    }
    if tables.len() >= TABLE_IDS {
        return Err(std::io::Error::other(
            "too many tables of parked connections",
        ));
    }
    tables.push(Some(shared));
    Ok(tables.len() - 1)
}

/// The keeper: wakes parked connections until its arbiter stops.
async fn keep(table: Rc<Table>, mut poll: AsyncFd<Poll>) {
    let log = &table.node.log;
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
                        error!(log, "parked connections' readiness failed"; "error" => %e);
                        break;
                    }
                };
                let mut drained = false;
                for _ in 0..ROUNDS {
                    match guard.get_inner_mut().poll(&mut events, Some(Duration::ZERO)) {
                        Ok(()) => {}
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(e) => {
                            error!(log, "parked connections' readiness failed"; "error" => %e);
                            drained = true;
                            break;
                        }
                    }
                    let mut taken = 0;
                    for event in events.iter() {
                        taken += 1;
                        if event.token() != WAKER {
                            ready.push(Key::from_word(event.token().0 as u64));
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
                ready.extend(
                    table.shared.woken.lock().unwrap_or_else(PoisonError::into_inner)
                        .drain(..).map(Key::from_word),
                );
                for key in ready.drain(..) {
                    wake(&table, key);
                }
            }
            _ = tick.tick() => {
                let now = Stamp::now();
                ready.extend(table.slab.borrow().keys(|idle| idle.expired(now)));
                for key in ready.drain(..) {
                    wake(&table, key);
                }
            }
        }
    }
    // Nothing can wake them here any more: every parked connection goes back to a task.
    LOCAL.with(|local| {
        local
            .borrow_mut()
            .retain(|other| !std::ptr::eq(other.as_ptr(), Rc::as_ptr(&table)));
    });
    let keys: Vec<Key> = table.slab.borrow().keys(|_| true).collect();
    for key in keys {
        wake(&table, key);
    }
}

/// Takes connection `key` out of the table (if it is still there) and serves it again.
fn wake(table: &Table, key: Key) {
    let Some((socket, idle)) = table.slab.borrow_mut().remove(key) else {
        return;
    };
    // The socket goes back to tokio's reactor; if it cannot leave the set, its later
    // events name a generation that is gone.
    let _ = table
        .registry
        .deregister(&mut SourceFd(&socket.as_raw_fd()));
    Metrics::sub(&table.node.metrics.parked, 1);
    actix_rt::spawn(tcp::resume(socket, table.node.clone(), idle));
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    /// Counts the allocations each thread makes (for `a_waker_allocates_nothing`).
    struct Counting;

    thread_local! {
        static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    }

    fn allocations() -> u64 {
        ALLOCATIONS.with(Cell::get)
    }

    // SAFETY: every call goes to `System` unchanged; the thread-local counter has no
    // destructor and is only read or written with `try_with`, so counting never allocates
    // or fails.
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            // SAFETY: the caller's guarantees are `System::alloc`'s.
            unsafe { System.alloc(layout) }
        }

        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: `ptr` came from `System` with `layout`.
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[global_allocator]
    static COUNTING: Counting = Counting;

    #[test]
    fn a_parked_connection_is_a_40_byte_entry() {
        assert_eq!(std::mem::size_of::<Idle>(), 32);
        assert_eq!(std::mem::size_of::<Entry<std::net::TcpStream, Idle>>(), 40);
    }

    #[test]
    fn a_reused_slot_has_the_next_generation_and_old_keys_miss() {
        let mut slab = Slab::new();
        let first = slab.insert(1u32, "first").expect("room");
        let other = slab.insert(2u32, "other").expect("room");
        assert_eq!(slab.remove(first), Some((1, "first")));
        let second = slab.insert(3u32, "second").expect("room");
        assert_eq!(second.slot, first.slot, "the free slot is reused");
        assert_eq!(second.generation, first.generation + 1);
        // The old key (as a stale epoll token or wake-up would name it) finds nothing.
        assert_eq!(slab.get(first), None);
        assert_eq!(slab.remove(first), None);
        assert_eq!(slab.get(second), Some(&"second"));
        assert_eq!(slab.get(other), Some(&"other"));
        assert_eq!(slab.len, 2);
    }

    #[test]
    fn a_stale_token_is_ignored() {
        let mut slab = Slab::new();
        let old = slab.insert(1u32, "old").expect("room");
        let token = old.token();
        assert_ne!(token, WAKER);
        assert_eq!(Key::from_word(token.0 as u64), old);
        slab.remove(old);
        let new = slab.insert(2u32, "new").expect("room");
        assert_eq!(slab.remove(Key::from_word(token.0 as u64)), None);
        assert_eq!(
            slab.remove(Key::from_word(new.token().0 as u64)),
            Some((2, "new"))
        );
    }

    #[test]
    fn free_slots_are_reused_lowest_first_and_the_slab_shrinks() {
        let mut slab = Slab::new();
        let keys: Vec<Key> = (0..1000u32)
            .map(|i| slab.insert(i, i).expect("room"))
            .collect();
        assert!(slab.entries.capacity() >= 1000);
        assert!(
            slab.entries.capacity() <= 1000 + 1000 / 4 + MIN_CAPACITY,
            "grows by a quarter: {}",
            slab.entries.capacity()
        );
        slab.remove(keys[7]);
        slab.remove(keys[3]);
        assert_eq!(slab.insert(0, 0).expect("room").slot, 3);
        assert_eq!(slab.insert(0, 0).expect("room").slot, 7);
        let last = keys[999];
        for key in &keys {
            slab.remove(*key);
        }
        // Two of them were taken again: slots 3 and 7 keep the vector that long.
        assert_eq!(slab.len, 2);
        assert_eq!(slab.entries.len(), 8);
        assert!(
            slab.entries.capacity() <= 2 * MIN_CAPACITY,
            "kept {}",
            slab.entries.capacity()
        );
        assert!(slab.free.len() <= 2 * 6 + MIN_CAPACITY);
        // A slot cut off the end comes back with a generation no old key has.
        let again = (0..998)
            .map(|i| slab.insert(i, i).expect("room"))
            .last()
            .expect("inserted");
        assert_eq!(again.slot, last.slot);
        assert_ne!(again.generation, last.generation);
        assert_eq!(slab.remove(last), None);
    }

    /// A table's wake-up queue, registered like a real one.
    fn shared() -> (Poll, Arc<Shared>, usize) {
        let poll = Poll::new().expect("epoll");
        let shared = Arc::new(Shared {
            woken: Mutex::new(Vec::with_capacity(16)),
            waker: mio::Waker::new(poll.registry(), WAKER).expect("eventfd"),
        });
        let id = enlist(shared.clone()).expect("an id");
        (poll, shared, id)
    }

    fn unlist(id: usize) {
        TABLES.write().expect("registry")[id] = None;
    }

    #[test]
    fn a_waker_queues_its_key_on_its_table_and_allocates_nothing() {
        let (mut poll, shared, id) = shared();
        let key = Key {
            slot: 5,
            generation: 9,
        };
        let before = allocations();
        let waker = waker(id, key);
        let clone = waker.clone();
        waker.wake_by_ref();
        drop(waker);
        clone.wake();
        assert_eq!(
            allocations(),
            before,
            "a parked connection's waker allocated"
        );
        // The counter sees allocations (of this thread).
        let boxed = std::hint::black_box(Box::new(key));
        assert_eq!(allocations(), before + 1);
        drop(boxed);
        assert_eq!(
            *shared.woken.lock().expect("queue"),
            vec![key.word(), key.word()]
        );
        let mut events = Events::with_capacity(4);
        poll.poll(&mut events, Some(Duration::from_secs(5)))
            .expect("poll");
        assert!(
            events.iter().any(|e| e.token() == WAKER),
            "the keeper's set was not rung"
        );
        unlist(id);
    }

    #[test]
    fn a_stale_wake_up_is_ignored() {
        let (_poll, shared, id) = shared();
        let mut slab = Slab::new();
        let old = slab.insert(1u32, "old").expect("room");
        let stale = waker(id, old);
        slab.remove(old);
        let new = slab.insert(2u32, "new").expect("room");
        assert_eq!(new.slot, old.slot);
        stale.wake();
        let woken: Vec<u64> = shared.woken.lock().expect("queue").drain(..).collect();
        assert_eq!(woken, vec![old.word()]);
        for word in woken {
            assert_eq!(slab.remove(Key::from_word(word)), None);
        }
        assert_eq!(slab.get(new), Some(&"new"));
        // A waker whose table is gone does nothing.
        unlist(id);
        waker(id, new).wake();
        assert!(shared.woken.lock().expect("queue").is_empty());
    }
}
