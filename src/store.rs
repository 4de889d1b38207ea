//! [`Store`]: the node's durable state on sled — the only module that imports sled.
//!
//! Who talks to it: `Broker::start` opens it and [`Store::load`]s what the last run left
//! (persistent sessions with their queues, retained messages); the Registry, Topics and
//! Sessions send it writes. Every blocking sled call happens either at start-up (open,
//! load) or on the **store thread**: actors only build a [`Batch`] (plain bytes, no I/O)
//! and hand it over through a channel, so an actor thread never waits on the disk.
//!
//! # Group commit
//!
//! The store thread takes the first waiting request, then everything else already queued
//! (and, for up to `store.commit_delay_us`, what arrives meanwhile) until the group holds
//! `store.commit_batch` operations; it applies the group and makes it durable with **one**
//! `flush` (fsync), then completes the [`Commit`]s of the group's requests. A publisher's
//! PUBACK/PUBREC waits on such a commit (`store.durability = "strict"`), so many messages
//! share each fsync; in `"relaxed"` mode the commit is completed as soon as the write is
//! queued and the write asks for no fsync, so a crash loses the acknowledged writes not yet
//! flushed: those since sled's last periodic flush (every 500 ms) and whatever still waits
//! for the store thread (at most `store.max_pending` publish-path requests). Requests that carry a [`Permit`] (the publish path) are
//! limited to `store.max_pending` waiting at a time, which slows publishers down when the
//! disk cannot keep up; control writes (acknowledged deliveries, session records) are few
//! per client action and are not limited.
//!
//! # Layout
//!
//! Every value is one format-version byte followed by a postcard-encoded record (see
//! [`Record`]); a value with an unknown version is refused, never guessed at. Keys:
//!
//! | tree | key | value |
//! |---|---|---|
//! | `sessions` | client id | [`SessionRecord`] |
//! | `queues` | `q` · client · seq (u64 BE) | [`QueuedRecord`]: a QoS 1/2 message not yet acknowledged |
//! | `queues` | `f` · client · seq (u64 BE) | [`InflightRecord`]: packet id and stage of a sent one |
//! | `queues` | `i` · client · packet id (u16 BE) | [`InboundRecord`]: QoS 2 from the client awaiting PUBREL |
//! | `retained` | topic name | [`RetainedRecord`] |
//! | `traces` | `c`/`t` · client id or topic name | [`TraceRecord`] |
//! | `settings` | section · key | [`SettingRecord`] |
//! | `accounts` | username | [`AccountRecord`]: argon2id PHC hash and topic rules |
//! | `acl` | address or CIDR range as text (`10.0.0.0/8`) | [`AclRecord`] |
//!
//! "client" is the client id prefixed with its length (u16 BE), so one client's entries form
//! one key range in sequence order and no id is a prefix of another's range. Queue entries,
//! inflight state and inbound QoS 2 markers share one tree so that a message queued for
//! several subscribers together with its publisher's QoS 2 marker is written by one atomic
//! sled batch. Sequence numbers are node-wide and increasing (restored as max + 1), so a
//! client's queue comes back in the order it was filled.
//!
//! Adding a tree: a [`TreeId`] variant with its name, a key function, a record type that
//! implements [`Record`], and `Batch::put_*`/`del_*` plus a typed read.

use crate::auth::{AccountRecord, AclRecord, IpNet};
use crate::codec::{Properties, QoS};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

/// Sub-directory of the data dir that holds the sled database.
pub const DB_DIR: &str = "sled";

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another process (or another node in this process) has the database open.
    #[error("data dir {path} is locked by another running broker; stop it first")]
    Locked {
        /// The database directory.
        path: String,
    },
    /// The database could not be opened.
    #[error("cannot open the store in {path}: {reason}")]
    Open {
        /// The database directory.
        path: String,
        /// What sled reported.
        reason: String,
    },
    /// A read, write or flush failed.
    #[error("store I/O: {0}")]
    Io(String),
    /// A stored value has a format version this build does not know.
    #[error("stored {tree} value has format version {found}, expected {expected}")]
    Version {
        /// The tree of the value.
        tree: &'static str,
        /// The version byte found.
        found: u8,
        /// The version this build writes.
        expected: u8,
    },
    /// A stored key or value could not be decoded.
    #[error("corrupt {tree} entry: {reason}")]
    Corrupt {
        /// The tree of the entry.
        tree: &'static str,
        /// What was wrong.
        reason: String,
    },
    /// A record could not be encoded.
    #[error("cannot encode a {tree} record: {reason}")]
    Encode {
        /// The tree of the record.
        tree: &'static str,
        /// What postcard reported.
        reason: String,
    },
    /// The store thread has stopped.
    #[error("the store is closed")]
    Closed,
}

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Io(e.to_string())
    }
}

/// When a publisher's acknowledgement may go out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// After the group commit that made the message durable (fsync).
    Strict,
    /// As soon as the write is queued for the store thread.
    Relaxed,
}

/// Tuning of the store thread (the `[store]` section).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Options {
    /// Strict or relaxed acknowledgements.
    pub durability: Durability,
    /// Most operations in one group commit.
    pub commit_batch: usize,
    /// How long the store thread waits for more writes to join a group.
    pub commit_delay: Duration,
    /// Publish-path write requests waiting for the store thread before publishers wait.
    pub max_pending: usize,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Strict,
            commit_batch: 4096,
            commit_delay: Duration::from_micros(500),
            max_pending: 1024,
            cache_bytes: 64 << 20,
        }
    }
}

/// The trees of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TreeId {
    /// Persistent sessions.
    Sessions,
    /// Queued messages, inflight state and inbound QoS 2 markers.
    Queues,
    /// Retained messages.
    Retained,
    /// Trace flags.
    Traces,
    /// Runtime settings.
    Settings,
    /// Accounts (username → password hash and topic rules).
    Accounts,
    /// The IP access list (address or range → verdict).
    Acl,
}

impl TreeId {
    const ALL: [TreeId; 7] = [
        TreeId::Sessions,
        TreeId::Queues,
        TreeId::Retained,
        TreeId::Traces,
        TreeId::Settings,
        TreeId::Accounts,
        TreeId::Acl,
    ];

    /// The sled tree name.
    pub fn name(self) -> &'static str {
        match self {
            TreeId::Sessions => "sessions",
            TreeId::Queues => "queues",
            TreeId::Retained => "retained",
            TreeId::Traces => "traces",
            TreeId::Settings => "settings",
            TreeId::Accounts => "accounts",
            TreeId::Acl => "acl",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A stored value type: which tree it lives in and the format version it is written with.
pub trait Record: Serialize + DeserializeOwned {
    /// The tree holding records of this type.
    const TREE: TreeId;
    /// Format version byte written before the encoded record.
    const VERSION: u8;
}

/// Encodes a record as its version byte followed by postcard.
pub fn encode<R: Record>(record: &R) -> Result<Vec<u8>, StoreError> {
    postcard::to_extend(record, vec![R::VERSION]).map_err(|e| StoreError::Encode {
        tree: R::TREE.name(),
        reason: e.to_string(),
    })
}

/// Decodes a value written by [`encode`], refusing unknown versions.
pub fn decode<R: Record>(bytes: &[u8]) -> Result<R, StoreError> {
    let tree = R::TREE.name();
    match bytes.split_first() {
        None => Err(StoreError::Corrupt {
            tree,
            reason: "empty value".into(),
        }),
        Some((&version, rest)) if version == R::VERSION => {
            postcard::from_bytes(rest).map_err(|e| StoreError::Corrupt {
                tree,
                reason: e.to_string(),
            })
        }
        Some((&found, _)) => Err(StoreError::Version {
            tree,
            found,
            expected: R::VERSION,
        }),
    }
}

/// One subscription of a persistent session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SubscriptionRecord {
    /// Topic filter.
    pub filter: String,
    /// Granted QoS (0..=2).
    pub qos: u8,
    /// MQTT 5 No Local.
    pub no_local: bool,
    /// MQTT 5 Retain As Published.
    pub retain_as_published: bool,
    /// MQTT 5 Retain Handling.
    pub retain_handling: u8,
    /// MQTT 5 subscription identifier.
    pub identifier: Option<u32>,
}

/// A persistent session (tree `sessions`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Protocol level of the last connection (3, 4 or 5).
    pub protocol: u8,
    /// Seconds the session outlives its connection.
    pub expiry_secs: u64,
    /// When the client went away (ms since the Unix epoch); `None` while connected.
    pub disconnected_at_ms: Option<u64>,
    /// Last outbound packet id used.
    pub last_packet_id: u16,
    /// The user that owns the client id (`None`: anonymous); only it may resume the session.
    pub owner: Option<String>,
    /// Its subscriptions.
    pub subscriptions: Vec<SubscriptionRecord>,
}

impl Record for SessionRecord {
    const TREE: TreeId = TreeId::Sessions;
    const VERSION: u8 = 1;
}

/// An application message as stored (queued or retained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// Publisher's client id.
    pub from: String,
    /// Topic name.
    pub topic: String,
    /// QoS it was published with.
    pub qos: u8,
    /// RETAIN flag it was published with.
    pub retain: bool,
    /// Payload.
    pub payload: Vec<u8>,
    /// MQTT 5 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// MQTT 5 Message Expiry Interval.
    pub message_expiry_interval: Option<u32>,
    /// MQTT 5 Content Type.
    pub content_type: Option<String>,
    /// MQTT 5 Response Topic.
    pub response_topic: Option<String>,
    /// MQTT 5 Correlation Data.
    pub correlation_data: Option<Vec<u8>>,
    /// MQTT 5 User Properties.
    pub user_properties: Vec<(String, String)>,
}

impl MessageRecord {
    /// The record of a message, keeping the MQTT 5 properties that travel to subscribers.
    pub fn new(
        from: &str,
        topic: &str,
        qos: QoS,
        retain: bool,
        payload: &[u8],
        properties: &Properties,
    ) -> Self {
        MessageRecord {
            from: from.to_owned(),
            topic: topic.to_owned(),
            qos: qos as u8,
            retain,
            payload: payload.to_vec(),
            payload_format_indicator: properties.payload_format_indicator,
            message_expiry_interval: properties.message_expiry_interval,
            content_type: properties.content_type.clone(),
            response_topic: properties.response_topic.clone(),
            correlation_data: properties.correlation_data.as_ref().map(|d| d.to_vec()),
            user_properties: properties.user_properties.clone(),
        }
    }

    /// The stored QoS (0 if the byte is out of range).
    pub fn qos(&self) -> QoS {
        QoS::from_u8(self.qos).unwrap_or_default()
    }

    /// The MQTT 5 properties stored with the message.
    pub fn properties(&self) -> Properties {
        Properties {
            payload_format_indicator: self.payload_format_indicator,
            message_expiry_interval: self.message_expiry_interval,
            content_type: self.content_type.clone(),
            response_topic: self.response_topic.clone(),
            correlation_data: self.correlation_data.clone().map(Into::into),
            user_properties: self.user_properties.clone(),
            ..Default::default()
        }
    }
}

/// A QoS 1/2 message queued for a persistent session (tree `queues`, `q` keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedRecord {
    /// The message.
    pub message: MessageRecord,
    /// Delivery QoS for this session.
    pub qos: u8,
    /// RETAIN flag on the wire.
    pub retain: bool,
    /// MQTT 5 subscription identifiers.
    pub subscription_ids: Vec<u32>,
}

impl Record for QueuedRecord {
    const TREE: TreeId = TreeId::Queues;
    const VERSION: u8 = 1;
}

/// Where a sent QoS 1/2 message is in its acknowledgement flow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InflightStage {
    /// QoS 1 PUBLISH sent, waiting for PUBACK.
    Ack,
    /// QoS 2 PUBLISH sent, waiting for PUBREC.
    Rec,
    /// PUBREC received, PUBREL due or sent, waiting for PUBCOMP.
    Comp,
}

/// Inflight state of a queued message (tree `queues`, `f` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InflightRecord {
    /// Packet id it was sent with.
    pub packet_id: u16,
    /// Stage of its flow.
    pub stage: InflightStage,
}

impl Record for InflightRecord {
    const TREE: TreeId = TreeId::Queues;
    const VERSION: u8 = 1;
}

/// A QoS 2 message from the client that was PUBREC'd and awaits PUBREL (tree `queues`,
/// `i` keys): a resend after a restart is acknowledged without being routed again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InboundRecord {}

impl Record for InboundRecord {
    const TREE: TreeId = TreeId::Queues;
    const VERSION: u8 = 1;
}

/// A retained message (tree `retained`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RetainedRecord {
    /// The message.
    pub message: MessageRecord,
}

impl Record for RetainedRecord {
    const TREE: TreeId = TreeId::Retained;
    const VERSION: u8 = 1;
}

/// What a trace flag applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TraceTarget {
    /// A client id.
    Client,
    /// A topic name.
    Topic,
}

/// A trace flag (tree `traces`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRecord {
    /// Tracing is on.
    pub on: bool,
}

impl Record for TraceRecord {
    const TREE: TreeId = TreeId::Traces;
    const VERSION: u8 = 1;
}

/// A runtime setting (tree `settings`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingRecord {
    /// The value as the operator gave it.
    pub value: String,
}

impl Record for SettingRecord {
    const TREE: TreeId = TreeId::Settings;
    const VERSION: u8 = 1;
}

impl Record for AccountRecord {
    const TREE: TreeId = TreeId::Accounts;
    const VERSION: u8 = 1;
}

impl Record for AclRecord {
    const TREE: TreeId = TreeId::Acl;
    const VERSION: u8 = 1;
}

const QUEUED: u8 = b'q';
const INFLIGHT: u8 = b'f';
const INBOUND: u8 = b'i';

/// `tag · len(client) · client`: the start of one client's entries of one kind.
fn client_prefix(tag: u8, client_id: &str) -> Vec<u8> {
    let id = client_id.as_bytes();
    let len = u16::try_from(id.len()).unwrap_or(u16::MAX);
    let mut key = Vec::with_capacity(3 + id.len() + 8);
    key.push(tag);
    key.extend_from_slice(&len.to_be_bytes());
    key.extend_from_slice(&id[..usize::from(len)]);
    key
}

fn seq_key(tag: u8, client_id: &str, seq: u64) -> Vec<u8> {
    let mut key = client_prefix(tag, client_id);
    key.extend_from_slice(&seq.to_be_bytes());
    key
}

fn inbound_key(client_id: &str, packet_id: u16) -> Vec<u8> {
    let mut key = client_prefix(INBOUND, client_id);
    key.extend_from_slice(&packet_id.to_be_bytes());
    key
}

fn trace_key(target: TraceTarget, name: &str) -> Vec<u8> {
    let mut key = vec![match target {
        TraceTarget::Client => b'c',
        TraceTarget::Topic => b't',
    }];
    key.extend_from_slice(name.as_bytes());
    key
}

fn setting_key(section: &str, key: &str) -> Vec<u8> {
    let mut out = client_prefix(b's', section);
    out.extend_from_slice(key.as_bytes());
    out
}

/// Splits a `queues` key into (tag, client id, suffix).
fn split_queue_key(key: &[u8]) -> Option<(u8, &str, &[u8])> {
    let (&tag, rest) = key.split_first()?;
    let len = usize::from(u16::from_be_bytes([*rest.first()?, *rest.get(1)?]));
    let id = rest.get(2..2 + len)?;
    let suffix = rest.get(2 + len..)?;
    Some((tag, std::str::from_utf8(id).ok()?, suffix))
}

/// One write of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    Put(TreeId, Vec<u8>, Vec<u8>),
    Del(TreeId, Vec<u8>),
    DelPrefix(TreeId, Vec<u8>),
}

/// Writes to apply together; built on any thread without I/O, applied by the store
/// thread. The writes to one tree are applied atomically.
#[derive(Debug, Default)]
pub struct Batch {
    ops: Vec<Op>,
    error: Option<StoreError>,
    /// Must be applied as one sled batch per tree (it holds an inbound QoS 2 marker).
    atomic: bool,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Batch::default()
    }

    /// True when nothing was added.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty() && self.error.is_none()
    }

    /// Number of writes.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    fn put<R: Record>(&mut self, key: Vec<u8>, record: &R) {
        match encode(record) {
            Ok(value) => self.ops.push(Op::Put(R::TREE, key, value)),
            Err(e) => self.error = Some(e),
        }
    }

    /// Stores a persistent session's record.
    pub fn put_session(&mut self, client_id: &str, record: &SessionRecord) {
        self.put(client_id.as_bytes().to_vec(), record);
    }

    /// Deletes a session with its queue, inflight state and inbound markers.
    pub fn del_session(&mut self, client_id: &str) {
        self.ops
            .push(Op::Del(TreeId::Sessions, client_id.as_bytes().to_vec()));
        for tag in [QUEUED, INFLIGHT, INBOUND] {
            self.ops
                .push(Op::DelPrefix(TreeId::Queues, client_prefix(tag, client_id)));
        }
    }

    /// Queues a message for a session under sequence number `seq`.
    pub fn put_queued(&mut self, client_id: &str, seq: u64, record: &QueuedRecord) {
        self.put(seq_key(QUEUED, client_id, seq), record);
    }

    /// Deletes a queued message and its inflight state (the client acknowledged it).
    pub fn del_queued(&mut self, client_id: &str, seq: u64) {
        self.ops
            .push(Op::Del(TreeId::Queues, seq_key(QUEUED, client_id, seq)));
        self.ops
            .push(Op::Del(TreeId::Queues, seq_key(INFLIGHT, client_id, seq)));
    }

    /// Records the inflight state of queued message `seq`.
    pub fn put_inflight(&mut self, client_id: &str, seq: u64, record: &InflightRecord) {
        self.put(seq_key(INFLIGHT, client_id, seq), record);
    }

    /// Marks inbound QoS 2 packet id `packet_id` of a client as PUBREC'd.
    pub fn put_inbound(&mut self, client_id: &str, packet_id: u16) {
        // The marker must never be on disk without the queue entries it was written with
        // (a resend would then be acknowledged but never delivered), nor they without it (a
        // resend would be delivered twice).
        self.atomic = true;
        self.put(inbound_key(client_id, packet_id), &InboundRecord {});
    }

    /// Forgets an inbound QoS 2 packet id (PUBREL received).
    pub fn del_inbound(&mut self, client_id: &str, packet_id: u16) {
        self.ops
            .push(Op::Del(TreeId::Queues, inbound_key(client_id, packet_id)));
    }

    /// Sets the retained message of a topic.
    pub fn put_retained(&mut self, topic: &str, record: &RetainedRecord) {
        self.put(topic.as_bytes().to_vec(), record);
    }

    /// Clears the retained message of a topic.
    pub fn del_retained(&mut self, topic: &str) {
        self.ops
            .push(Op::Del(TreeId::Retained, topic.as_bytes().to_vec()));
    }

    /// Sets a trace flag.
    pub fn put_trace(&mut self, target: TraceTarget, name: &str, record: &TraceRecord) {
        self.put(trace_key(target, name), record);
    }

    /// Removes a trace flag.
    pub fn del_trace(&mut self, target: TraceTarget, name: &str) {
        self.ops
            .push(Op::Del(TreeId::Traces, trace_key(target, name)));
    }

    /// Sets a runtime setting.
    pub fn put_setting(&mut self, section: &str, key: &str, record: &SettingRecord) {
        self.put(setting_key(section, key), record);
    }

    /// Removes a runtime setting.
    pub fn del_setting(&mut self, section: &str, key: &str) {
        self.ops
            .push(Op::Del(TreeId::Settings, setting_key(section, key)));
    }

    /// Creates or replaces an account.
    pub fn put_account(&mut self, username: &str, record: &AccountRecord) {
        self.put(username.as_bytes().to_vec(), record);
    }

    /// Removes an account.
    pub fn del_account(&mut self, username: &str) {
        self.ops
            .push(Op::Del(TreeId::Accounts, username.as_bytes().to_vec()));
    }

    /// Sets the verdict of an address or range.
    pub fn put_acl(&mut self, network: &IpNet, record: &AclRecord) {
        self.put(network.to_string().into_bytes(), record);
    }

    /// Removes the entry of an address or range.
    pub fn del_acl(&mut self, network: &IpNet) {
        self.ops
            .push(Op::Del(TreeId::Acl, network.to_string().into_bytes()));
    }
}

/// Completed by the store thread once a write is durable (or failed). Dropping it unused
/// tells the waiter that there was nothing to make durable.
#[derive(Debug)]
pub struct Commit(Notify);

#[derive(Debug)]
enum Notify {
    /// An async waiter ([`Committed`]).
    Task(oneshot::Sender<Result<(), StoreError>>),
    /// A thread blocked in [`Store::write_blocking`].
    Thread(mpsc::SyncSender<Result<(), StoreError>>),
}

/// Waits for its [`Commit`].
#[derive(Debug)]
pub struct Committed(oneshot::Receiver<Result<(), StoreError>>);

/// A new commit and the handle that waits for it.
pub fn commit() -> (Commit, Committed) {
    let (tx, rx) = oneshot::channel();
    (Commit(Notify::Task(tx)), Committed(rx))
}

impl Commit {
    /// Reports the outcome to the waiter.
    pub fn complete(self, outcome: Result<(), StoreError>) {
        // The waiter may have gone (its connection closed): nothing left to tell.
        match self.0 {
            Notify::Task(tx) => {
                let _ = tx.send(outcome);
            }
            Notify::Thread(tx) => {
                let _ = tx.send(outcome);
            }
        }
    }
}

impl Committed {
    /// The outcome: `Ok` once durable, or when the commit was dropped because nothing had
    /// to be written.
    pub async fn wait(self) -> Result<(), StoreError> {
        self.0.await.unwrap_or(Ok(()))
    }
}

/// A place in the store thread's bounded publish-path queue.
#[derive(Debug)]
pub struct Permit {
    _held: OwnedSemaphorePermit,
}

struct Request {
    batch: Batch,
    commit: Option<Commit>,
    durable: bool,
    _permit: Option<Permit>,
}

/// A persistent session as loaded at start-up.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredSession {
    /// Its client id.
    pub client_id: String,
    /// Its record.
    pub record: SessionRecord,
    /// Queued messages in order: sequence number, message, inflight state if sent.
    pub queue: Vec<(u64, QueuedRecord, Option<InflightRecord>)>,
    /// Inbound QoS 2 packet ids awaiting PUBREL.
    pub inbound: Vec<u16>,
}

/// Everything [`Store::load`] found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Loaded {
    /// Persistent sessions that have not expired.
    pub sessions: Vec<StoredSession>,
    /// Retained messages.
    pub retained: Vec<RetainedRecord>,
    /// Sessions found expired and deleted.
    pub expired: usize,
    /// Entries that could not be decoded and were deleted.
    pub discarded: usize,
}

struct Inner {
    trees: Vec<sled::Tree>,
    path: PathBuf,
    options: Options,
    seq: AtomicU64,
    permits: Arc<Semaphore>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// Signalled by the store thread when it has written everything and exits.
    exited: Mutex<mpsc::Receiver<()>>,
    /// Dropped last, after the trees (and so sled's lock on the directory): their
    /// receivers ([`Store::on_close`]) learn that the data dir is free again.
    closers: Mutex<Vec<mpsc::Sender<()>>>,
}

/// How long dropping the last [`Store`] waits for the store thread to finish its queue.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(10);

/// Handle on the node's store; cloning it is cheap. The store thread stops, after writing
/// everything handed to it, when the last handle is dropped.
#[derive(Clone)]
pub struct Store {
    // Declared first so that it is dropped before `inner`, whose drop joins the thread.
    sender: mpsc::Sender<Request>,
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.inner.path)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the store in `data_dir` and starts the store thread.
    pub fn open(data_dir: &Path, options: Options) -> Result<Store, StoreError> {
        let path = data_dir.join(DB_DIR);
        let config = sled::Config::new()
            .path(&path)
            .cache_capacity(options.cache_bytes)
            .flush_every_ms(Some(500));
        Store::start(config, path, options)
    }

    /// A store in a temporary directory that is removed when the store is dropped (tests).
    pub fn temporary(options: Options) -> Result<Store, StoreError> {
        let config = sled::Config::new().temporary(true);
        Store::start(config, PathBuf::from("(temporary)"), options)
    }

    fn start(config: sled::Config, path: PathBuf, options: Options) -> Result<Store, StoreError> {
        let shown = path.display().to_string();
        let db = config.open().map_err(|e| {
            let reason = e.to_string();
            if reason.contains("could not acquire lock") {
                StoreError::Locked {
                    path: shown.clone(),
                }
            } else {
                StoreError::Open {
                    path: shown.clone(),
                    reason,
                }
            }
        })?;
        let trees = TreeId::ALL
            .iter()
            .map(|t| db.open_tree(t.name()))
            .collect::<Result<Vec<_>, _>>()?;
        let (sender, receiver) = mpsc::channel();
        let writer = Writer {
            db: db.clone(),
            trees: trees.clone(),
            options,
            receiver,
        };
        let (exit_tx, exited) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("fubar-store".into())
            .spawn(move || {
                writer.run();
                let _ = exit_tx.send(());
            })
            .map_err(|e| StoreError::Io(format!("starting the store thread: {e}")))?;
        let inner = Inner {
            trees,
            path,
            options,
            seq: AtomicU64::new(1),
            permits: Arc::new(Semaphore::new(options.max_pending.max(1))),
            thread: Mutex::new(Some(thread)),
            exited: Mutex::new(exited),
            closers: Mutex::new(Vec::new()),
        };
        let store = Store {
            inner: Arc::new(inner),
            sender,
        };
        store
            .inner
            .seq
            .store(store.max_seq()? + 1, Ordering::Relaxed);
        Ok(store)
    }

    /// The durability mode.
    pub fn durability(&self) -> Durability {
        self.inner.options.durability
    }

    /// A new node-wide sequence number for a queued message.
    pub fn next_seq(&self) -> u64 {
        self.inner.seq.fetch_add(1, Ordering::Relaxed)
    }

    /// A place in the publish-path queue if one is free now.
    pub fn try_permit(&self) -> Option<Permit> {
        self.inner
            .permits
            .clone()
            .try_acquire_owned()
            .ok()
            .map(|held| Permit { _held: held })
    }

    /// Waits for a place in the publish-path queue.
    pub async fn permit(&self) -> Result<Permit, StoreError> {
        self.inner
            .permits
            .clone()
            .acquire_owned()
            .await
            .map(|held| Permit { _held: held })
            .map_err(|_| StoreError::Closed)
    }

    /// Hands a batch to the store thread without waiting; it is made durable with the next
    /// group commit that includes a durable write, or by sled's own flush within 500 ms.
    pub fn submit(&self, batch: Batch) {
        self.send(batch, None, false, None);
    }

    /// Hands a batch to the store thread; `commit` is completed once the batch is durable
    /// (strict mode), or at once (relaxed mode, where the batch is written without a flush of
    /// its own and becomes durable with sled's periodic flush, within 500 ms, or with the
    /// next strict write).
    pub fn submit_durable(&self, batch: Batch, commit: Option<Commit>, permit: Option<Permit>) {
        match (self.durability(), commit) {
            (Durability::Relaxed, commit) if batch.error.is_none() => {
                if let Some(c) = commit {
                    c.complete(Ok(()));
                }
                self.send(batch, None, false, permit);
            }
            (_, commit) => self.send(batch, commit, true, permit),
        }
    }

    fn send(&self, batch: Batch, commit: Option<Commit>, durable: bool, permit: Option<Permit>) {
        let request = Request {
            batch,
            commit,
            durable,
            _permit: permit,
        };
        if let Err(mpsc::SendError(request)) = self.sender.send(request) {
            if let Some(commit) = request.commit {
                commit.complete(Err(StoreError::Closed));
            }
        }
    }

    /// A receiver that disconnects once the last handle is gone, the store thread has
    /// written everything and the database is closed (its directory lock released), e.g.
    /// for a node that must not return from shutdown before another may open the data dir.
    pub fn on_close(&self) -> mpsc::Receiver<()> {
        let (tx, rx) = mpsc::channel();
        self.inner
            .closers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(tx);
        rx
    }

    /// Hands a batch to the store thread and returns what waits until it is durable, in
    /// either durability mode (operator changes such as accounts are always flushed).
    pub fn submit_flushed(&self, batch: Batch) -> Committed {
        let (commit, committed) = commit();
        self.send(batch, Some(commit), true, None);
        committed
    }

    /// Writes a batch and waits until it is durable, from a thread that may block (CLI,
    /// tests; never an actor thread).
    pub fn write_blocking(&self, batch: Batch) -> Result<(), StoreError> {
        let (tx, rx) = mpsc::sync_channel(1);
        // Not through submit_durable: this waits for the flush even in relaxed mode.
        self.send(batch, Some(Commit(Notify::Thread(tx))), true, None);
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    fn tree(&self, id: TreeId) -> &sled::Tree {
        &self.inner.trees[id.index()]
    }

    fn max_seq(&self) -> Result<u64, StoreError> {
        let mut max = 0;
        for item in self.tree(TreeId::Queues).scan_prefix([QUEUED]) {
            let (key, _) = item?;
            if let Some((_, _, suffix)) = split_queue_key(&key) {
                if let Ok(bytes) = <[u8; 8]>::try_from(suffix) {
                    max = max.max(u64::from_be_bytes(bytes));
                }
            }
        }
        Ok(max)
    }

    /// Reads what the last run left (start-up only: blocking). Sessions whose client has
    /// been away longer than their expiry, and entries that cannot be decoded, are deleted.
    pub fn load(&self) -> Result<Loaded, StoreError> {
        let now = now_ms();
        let mut loaded = Loaded::default();
        let mut sessions: HashMap<String, StoredSession> = HashMap::new();
        let mut garbage = Batch::new();
        for item in self.tree(TreeId::Sessions).iter() {
            let (key, value) = item?;
            let id = String::from_utf8_lossy(&key).into_owned();
            match decode::<SessionRecord>(&value) {
                Ok(record) => {
                    let expired = record.disconnected_at_ms.is_some_and(|at| {
                        now.saturating_sub(at) >= record.expiry_secs.saturating_mul(1000)
                    });
                    if expired {
                        loaded.expired += 1;
                        garbage.del_session(&id);
                    } else {
                        sessions.insert(
                            id.clone(),
                            StoredSession {
                                client_id: id,
                                record,
                                queue: Vec::new(),
                                inbound: Vec::new(),
                            },
                        );
                    }
                }
                Err(_) => {
                    loaded.discarded += 1;
                    garbage.del_session(&id);
                }
            }
        }
        let mut inflight: HashMap<(String, u64), InflightRecord> = HashMap::new();
        for item in self.tree(TreeId::Queues).iter() {
            let (key, value) = item?;
            let Some((tag, id, suffix)) = split_queue_key(&key) else {
                loaded.discarded += 1;
                garbage.ops.push(Op::Del(TreeId::Queues, key.to_vec()));
                continue;
            };
            let Some(session) = sessions.get_mut(id) else {
                // Left over from a session that ended or expired.
                garbage.ops.push(Op::Del(TreeId::Queues, key.to_vec()));
                continue;
            };
            let ok = match (tag, suffix.len()) {
                (QUEUED, 8) => decode::<QueuedRecord>(&value).map(|r| {
                    let seq = u64::from_be_bytes(suffix.try_into().unwrap_or([0; 8]));
                    session.queue.push((seq, r, None));
                }),
                (INFLIGHT, 8) => decode::<InflightRecord>(&value).map(|r| {
                    let seq = u64::from_be_bytes(suffix.try_into().unwrap_or([0; 8]));
                    inflight.insert((id.to_owned(), seq), r);
                }),
                (INBOUND, 2) => decode::<InboundRecord>(&value).map(|_| {
                    session
                        .inbound
                        .push(u16::from_be_bytes(suffix.try_into().unwrap_or([0; 2])));
                }),
                _ => Err(StoreError::Corrupt {
                    tree: "queues",
                    reason: "unknown key".into(),
                }),
            };
            if ok.is_err() {
                loaded.discarded += 1;
                garbage.ops.push(Op::Del(TreeId::Queues, key.to_vec()));
            }
        }
        for session in sessions.values_mut() {
            // Keys are in sequence order already; inflight entries without a message are
            // left over from an acknowledgement and ignored.
            for (seq, _, state) in &mut session.queue {
                *state = inflight.remove(&(session.client_id.clone(), *seq));
            }
        }
        for ((id, seq), _) in inflight {
            garbage
                .ops
                .push(Op::Del(TreeId::Queues, seq_key(INFLIGHT, &id, seq)));
        }
        for item in self.tree(TreeId::Retained).iter() {
            let (key, value) = item?;
            match decode::<RetainedRecord>(&value) {
                Ok(r) => loaded.retained.push(r),
                Err(_) => {
                    loaded.discarded += 1;
                    garbage.ops.push(Op::Del(TreeId::Retained, key.to_vec()));
                }
            }
        }
        let mut list: Vec<StoredSession> = sessions.into_values().collect();
        list.sort_by(|a, b| a.client_id.cmp(&b.client_id));
        loaded.sessions = list;
        if !garbage.is_empty() {
            self.write_blocking(garbage)?;
        }
        Ok(loaded)
    }

    /// The trace flags (blocking read).
    pub fn traces(&self) -> Result<Vec<(TraceTarget, String, TraceRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(TreeId::Traces).iter() {
            let (key, value) = item?;
            let target = match key.first() {
                Some(b'c') => TraceTarget::Client,
                Some(b't') => TraceTarget::Topic,
                _ => continue,
            };
            let name = String::from_utf8_lossy(&key[1..]).into_owned();
            out.push((target, name, decode(&value)?));
        }
        Ok(out)
    }

    /// One runtime setting (blocking read).
    pub fn setting(&self, section: &str, key: &str) -> Result<Option<SettingRecord>, StoreError> {
        self.tree(TreeId::Settings)
            .get(setting_key(section, key))?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Every account (start-up only: blocking read). A record that cannot be decoded is an
    /// error: the node must not start with an account silently missing.
    pub fn accounts(&self) -> Result<Vec<(String, AccountRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(TreeId::Accounts).iter() {
            let (key, value) = item?;
            let name = String::from_utf8(key.to_vec()).map_err(|_| StoreError::Corrupt {
                tree: TreeId::Accounts.name(),
                reason: "username is not UTF-8".into(),
            })?;
            out.push((name, decode(&value)?));
        }
        Ok(out)
    }

    /// The stored IP access list entries (start-up only: blocking read); an undecodable
    /// entry is an error, like for [`Store::accounts`].
    pub fn acl(&self) -> Result<Vec<(IpNet, AclRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self.tree(TreeId::Acl).iter() {
            let (key, value) = item?;
            let net = std::str::from_utf8(&key)
                .ok()
                .and_then(|text| text.parse::<IpNet>().ok())
                .ok_or_else(|| StoreError::Corrupt {
                    tree: TreeId::Acl.name(),
                    reason: format!(
                        "{:?} is not an address or range",
                        String::from_utf8_lossy(&key)
                    ),
                })?;
            out.push((net, decode(&value)?));
        }
        Ok(out)
    }

    /// The session record of a client (blocking read).
    pub fn session(&self, client_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        self.tree(TreeId::Sessions)
            .get(client_id.as_bytes())?
            .map(|v| decode(&v))
            .transpose()
    }

    /// Sequence numbers of a client's queued messages, in order (blocking read).
    pub fn queued_seqs(&self, client_id: &str) -> Result<Vec<u64>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .tree(TreeId::Queues)
            .scan_prefix(client_prefix(QUEUED, client_id))
        {
            let (key, _) = item?;
            if let Some((_, _, suffix)) = split_queue_key(&key) {
                if let Ok(bytes) = <[u8; 8]>::try_from(suffix) {
                    out.push(u64::from_be_bytes(bytes));
                }
            }
        }
        Ok(out)
    }

    /// Waits until everything submitted so far is written and durable (blocking; never on
    /// an actor thread).
    pub fn sync(&self) -> Result<(), StoreError> {
        self.write_blocking(Batch::new())
    }
}

impl Drop for Inner {
    fn drop(&mut self) {
        // Every sender went with the last Store: the thread drains the queue and exits.
        // Bounded, because sled 0.34 can deadlock inside a write under heavy churn (see
        // the report of issue 4): shutting down must not hang with it.
        let exited = self
            .exited
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .recv_timeout(SHUTDOWN_WAIT);
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let (Some(thread), Ok(())) = (thread, exited) {
            let _ = thread.join();
        }
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The store thread.
struct Writer {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    options: Options,
    receiver: mpsc::Receiver<Request>,
}

impl Writer {
    fn run(self) {
        let max_ops = self.options.commit_batch.max(1);
        while let Ok(first) = self.receiver.recv() {
            let mut ops = first.batch.len();
            let mut group = vec![first];
            let deadline = Instant::now() + self.options.commit_delay;
            while ops < max_ops {
                let next = match self.receiver.try_recv() {
                    Ok(r) => r,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                    Err(mpsc::TryRecvError::Empty) => {
                        let left = deadline.saturating_duration_since(Instant::now());
                        if left.is_zero() {
                            break;
                        }
                        match self.receiver.recv_timeout(left) {
                            Ok(r) => r,
                            Err(_) => break,
                        }
                    }
                };
                ops += next.batch.len();
                group.push(next);
            }
            self.commit(group);
        }
        let _ = self.db.flush();
    }

    /// Applies a group of requests, flushes once if any asked for durability, and
    /// completes their commits.
    fn commit(&self, group: Vec<Request>) {
        let mut outcomes = Vec::with_capacity(group.len());
        let mut durable = false;
        for request in &group {
            durable |= request.durable;
            outcomes.push(self.apply(&request.batch));
        }
        let flushed = if durable {
            self.db.flush().map(|_| ()).map_err(StoreError::from)
        } else {
            Ok(())
        };
        for (request, outcome) in group.into_iter().zip(outcomes) {
            if let Some(commit) = request.commit {
                commit.complete(outcome.and(flushed.clone()));
            }
        }
    }

    /// Applies one batch: plain inserts and removes, or one atomic sled batch per tree if
    /// the batch asks for it. (sled's `apply_batch` costs far more: measured here, 20 000
    /// single-entry batches with a flush every 1 000 took 2.1 s against 0.13 s for inserts,
    /// almost all of it in the flushes.)
    fn apply(&self, batch: &Batch) -> Result<(), StoreError> {
        if let Some(e) = &batch.error {
            return Err(e.clone());
        }
        if !batch.atomic {
            for op in &batch.ops {
                match op {
                    Op::Put(t, k, v) => {
                        self.trees[t.index()].insert(k.as_slice(), v.as_slice())?;
                    }
                    Op::Del(t, k) => {
                        self.trees[t.index()].remove(k.as_slice())?;
                    }
                    Op::DelPrefix(t, prefix) => {
                        let tree = &self.trees[t.index()];
                        for item in tree.scan_prefix(prefix) {
                            let (key, _) = item?;
                            tree.remove(key)?;
                        }
                    }
                }
            }
            return Ok(());
        }
        let mut per_tree: Vec<Option<sled::Batch>> = TreeId::ALL.iter().map(|_| None).collect();
        for op in &batch.ops {
            match op {
                Op::Put(t, k, v) => per_tree[t.index()]
                    .get_or_insert_with(sled::Batch::default)
                    .insert(k.as_slice(), v.as_slice()),
                Op::Del(t, k) => per_tree[t.index()]
                    .get_or_insert_with(sled::Batch::default)
                    .remove(k.as_slice()),
                Op::DelPrefix(t, prefix) => {
                    let b = per_tree[t.index()].get_or_insert_with(sled::Batch::default);
                    for item in self.trees[t.index()].scan_prefix(prefix) {
                        let (key, _) = item?;
                        b.remove(key);
                    }
                }
            }
        }
        for (i, b) in per_tree.into_iter().enumerate() {
            if let Some(b) = b {
                self.trees[i].apply_batch(b)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn message(payload: &[u8]) -> MessageRecord {
        let props = Properties {
            content_type: Some("text/plain".into()),
            correlation_data: Some(Bytes::from_static(b"cd")),
            user_properties: vec![("k".into(), "v".into())],
            ..Default::default()
        };
        MessageRecord::new("pub", "a/b", QoS::ExactlyOnce, true, payload, &props)
    }

    fn queued(payload: &[u8]) -> QueuedRecord {
        QueuedRecord {
            message: message(payload),
            qos: 1,
            retain: false,
            subscription_ids: vec![7],
        }
    }

    fn session(expiry_secs: u64, disconnected_at_ms: Option<u64>) -> SessionRecord {
        SessionRecord {
            protocol: 5,
            expiry_secs,
            disconnected_at_ms,
            last_packet_id: 9,
            owner: Some("alice".into()),
            subscriptions: vec![SubscriptionRecord {
                filter: "a/#".into(),
                qos: 2,
                no_local: true,
                retain_as_published: false,
                retain_handling: 1,
                identifier: Some(3),
            }],
        }
    }

    #[test]
    fn records_round_trip_with_their_version_byte() {
        let q = queued(b"payload");
        let bytes = encode(&q).unwrap();
        assert_eq!(bytes[0], QueuedRecord::VERSION);
        assert_eq!(decode::<QueuedRecord>(&bytes).unwrap(), q);
        assert_eq!(
            q.message.properties().content_type.as_deref(),
            Some("text/plain")
        );
        assert_eq!(q.message.qos(), QoS::ExactlyOnce);
        let s = session(60, Some(5));
        assert_eq!(decode::<SessionRecord>(&encode(&s).unwrap()).unwrap(), s);
        let i = InflightRecord {
            packet_id: 4,
            stage: InflightStage::Comp,
        };
        assert_eq!(decode::<InflightRecord>(&encode(&i).unwrap()).unwrap(), i);
    }

    #[test]
    fn unknown_version_and_garbage_are_refused() {
        let mut bytes = encode(&session(1, None)).unwrap();
        bytes[0] = 99;
        assert_eq!(
            decode::<SessionRecord>(&bytes),
            Err(StoreError::Version {
                tree: "sessions",
                found: 99,
                expected: 1
            })
        );
        assert!(matches!(
            decode::<SessionRecord>(&[1, 0xff, 0xff]),
            Err(StoreError::Corrupt { .. })
        ));
        assert!(matches!(
            decode::<SessionRecord>(&[]),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn queue_keys_keep_clients_apart_and_sequence_order() {
        // "a" with seq 2^56 must not sort into the range of client "a\x01...".
        let a = seq_key(QUEUED, "a", 1 << 56);
        let ab = seq_key(QUEUED, "ab", 0);
        assert!(!ab.starts_with(&client_prefix(QUEUED, "a")));
        assert!(seq_key(QUEUED, "c", 2) < seq_key(QUEUED, "c", 256));
        assert_eq!(
            split_queue_key(&a),
            Some((QUEUED, "a", &(1u64 << 56).to_be_bytes()[..]))
        );
    }

    #[test]
    fn load_restores_sessions_queues_in_order_and_drops_expired() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path(), Options::default()).unwrap();
            let mut b = Batch::new();
            b.put_session("live", &session(3600, Some(now_ms())));
            b.put_session("online", &session(3600, None));
            b.put_session("old", &session(1, Some(now_ms() - 10_000)));
            for seq in [300u64, 5, 70] {
                b.put_queued("live", seq, &queued(&seq.to_be_bytes()));
            }
            b.put_inflight(
                "live",
                5,
                &InflightRecord {
                    packet_id: 1,
                    stage: InflightStage::Ack,
                },
            );
            b.put_queued("old", 1000, &queued(b"x"));
            b.put_queued("ghost", 1001, &queued(b"x"));
            b.put_inbound("live", 42);
            b.put_retained(
                "r",
                &RetainedRecord {
                    message: message(b"kept"),
                },
            );
            store.write_blocking(b).unwrap();
            let mut acked = Batch::new();
            acked.del_queued("live", 70);
            store.write_blocking(acked).unwrap();
            store.sync().unwrap();
        }
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let loaded = store.load().unwrap();
        assert_eq!(loaded.expired, 1);
        let ids: Vec<_> = loaded
            .sessions
            .iter()
            .map(|s| s.client_id.as_str())
            .collect();
        assert_eq!(ids, vec!["live", "online"]);
        let live = &loaded.sessions[0];
        let seqs: Vec<u64> = live.queue.iter().map(|(s, _, _)| *s).collect();
        assert_eq!(seqs, vec![5, 300]);
        assert_eq!(live.queue[0].2.map(|f| f.packet_id), Some(1));
        assert_eq!(live.queue[1].2, None);
        assert_eq!(live.inbound, vec![42]);
        assert_eq!(loaded.retained.len(), 1);
        assert!(
            store.session("old").unwrap().is_none(),
            "expired is deleted"
        );
        assert!(store.queued_seqs("old").unwrap().is_empty());
        assert!(
            store.queued_seqs("ghost").unwrap().is_empty(),
            "orphans are deleted"
        );
        assert!(
            store.next_seq() > 1001,
            "sequence numbers continue after the max"
        );
    }

    #[test]
    fn a_second_open_of_the_same_dir_is_refused_as_locked() {
        let dir = tempfile::tempdir().unwrap();
        let _first = Store::open(dir.path(), Options::default()).unwrap();
        match Store::open(dir.path(), Options::default()) {
            Err(StoreError::Locked { .. }) => {}
            other => panic!("expected Locked, got {other:?}"),
        }
    }

    #[test]
    fn deleting_a_session_removes_its_entries_only() {
        let store = Store::temporary(Options::default()).unwrap();
        let mut b = Batch::new();
        b.put_session("a", &session(60, None));
        b.put_session("ab", &session(60, None));
        b.put_queued("a", 1, &queued(b"1"));
        b.put_queued("ab", 2, &queued(b"2"));
        b.put_inbound("a", 1);
        store.write_blocking(b).unwrap();
        let mut d = Batch::new();
        d.del_session("a");
        store.write_blocking(d).unwrap();
        assert!(store.session("a").unwrap().is_none());
        assert!(store.queued_seqs("a").unwrap().is_empty());
        assert_eq!(store.queued_seqs("ab").unwrap(), vec![2]);
        assert!(store.session("ab").unwrap().is_some());
    }

    #[test]
    fn relaxed_commits_complete_before_the_write() {
        let store = Store::temporary(Options {
            durability: Durability::Relaxed,
            ..Options::default()
        })
        .unwrap();
        let (c, mut committed) = commit();
        store.submit_durable(Batch::new(), Some(c), None);
        assert_eq!(committed.0.try_recv(), Ok(Ok(())));
    }

    #[test]
    fn settings_and_traces_round_trip() {
        let store = Store::temporary(Options::default()).unwrap();
        let mut b = Batch::new();
        b.put_setting("session", "max_age", &SettingRecord { value: "60".into() });
        b.put_trace(TraceTarget::Client, "c1", &TraceRecord { on: true });
        store.write_blocking(b).unwrap();
        assert_eq!(
            store
                .setting("session", "max_age")
                .unwrap()
                .map(|s| s.value),
            Some("60".into())
        );
        assert_eq!(
            store.traces().unwrap(),
            vec![(TraceTarget::Client, "c1".into(), TraceRecord { on: true })]
        );
    }
}
