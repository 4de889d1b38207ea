//! Crash safety: runs the real `fubar` binary, keeps a persistent subscriber offline, streams
//! QoS 1 (and QoS 2) messages while the broker is killed with SIGKILL at random moments and
//! restarted on the same data dir, then checks that every message whose PUBACK (PUBREC) the
//! publisher received is delivered to the subscriber when it reconnects — duplicates allowed
//! at QoS 1, none at QoS 2 — and that the broker (and so its store) came back every time.

use bytes::BytesMut;
use fubar::codec::{self, Connect, Packet, Protocol, PubResp, QoS};
use std::collections::{BTreeSet, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const TOPIC: &str = "crash/t";
const SUBSCRIBER: &str = "crash-sub";
const PUBLISHER: &str = "crash-pub";
const KILLS: usize = 4;
const WINDOW: usize = 32;

/// A small xorshift generator: random kill points, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn new() -> Rng {
        let seed = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            | 1;
        eprintln!("crash test seed {seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// The broker process, on a fixed port and data dir.
struct Broker {
    child: Option<Child>,
    port: u16,
    dir: PathBuf,
    starts: usize,
}

impl Broker {
    fn new(dir: &Path) -> Broker {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        Broker {
            child: None,
            port,
            dir: dir.to_path_buf(),
            starts: 0,
        }
    }

    fn log_path(&self, n: usize) -> PathBuf {
        self.dir.join(format!("out-{n}.log"))
    }

    /// Starts the broker and waits until it accepts connections; panics (with its output)
    /// if it exits instead, e.g. because the store did not open.
    fn start(&mut self) {
        self.starts += 1;
        let out = std::fs::File::create(self.log_path(self.starts)).expect("log file");
        let err = out.try_clone().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_fubar"))
            .args([
                "run",
                "--mqtt-port",
                &self.port.to_string(),
                "--http-port",
                "0",
                "--data-dir",
            ])
            .arg(self.dir.join("data"))
            .env("FUBAR_MQTT__BIND", "127.0.0.1")
            .env("FUBAR_NODE__LOG_DIR", self.dir.join("log"))
            .env("FUBAR_NODE__LOG_LEVEL", "info")
            .env("FUBAR_NODE__WORKERS", "2")
            .env("FUBAR_SESSION__MAX_QUEUED_MESSAGES", "1000000")
            .env("FUBAR_SESSION__MAX_QUEUED_BYTES", "1000000000")
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("spawn fubar");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                let log = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
                panic!("broker start {} exited with {status}:\n{log}", self.starts);
            }
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                break;
            }
            assert!(Instant::now() < deadline, "broker did not listen in time");
            std::thread::sleep(Duration::from_millis(20));
        }
        // The log is written asynchronously: wait for the store's start-up line, whole.
        let complete = |log: &str| {
            log.find("store opened")
                .is_some_and(|at| log[at..].contains('\n'))
        };
        let mut log = String::new();
        while !complete(&log) {
            assert!(
                Instant::now() < deadline,
                "start {}: no store line in\n{log}",
                self.starts
            );
            std::thread::sleep(Duration::from_millis(20));
            log = std::fs::read_to_string(self.log_path(self.starts)).unwrap_or_default();
        }
        assert!(
            log.contains("discarded_entries: 0"),
            "start {}: the store found undecodable entries:\n{log}",
            self.starts
        );
    }

    /// SIGKILL by pid, then reap.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL");
            child.wait().expect("reap");
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A minimal MQTT 3.1.1 client that reports a dead connection instead of panicking.
struct Conn {
    stream: TcpStream,
    buf: BytesMut,
}

impl Conn {
    async fn connect(port: u16, client_id: &str, clean: bool) -> io::Result<(Conn, bool)> {
        let stream = timeout(
            Duration::from_secs(2),
            TcpStream::connect(("127.0.0.1", port)),
        )
        .await
        .map_err(|_| io::Error::from(io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            buf: BytesMut::new(),
        };
        conn.send(&Packet::Connect(Box::new(Connect {
            protocol: Protocol::V311,
            clean_start: clean,
            keep_alive: 60,
            client_id: client_id.into(),
            ..Default::default()
        })))
        .await?;
        match conn.recv(Duration::from_secs(5)).await? {
            Some(Packet::ConnAck(a)) if a.code == 0 => Ok((conn, a.session_present)),
            other => Err(io::Error::other(format!("no CONNACK: {other:?}"))),
        }
    }

    async fn send(&mut self, p: &Packet) -> io::Result<()> {
        let mut out = BytesMut::new();
        codec::encode(p, Protocol::V311, &mut out).map_err(io::Error::other)?;
        self.stream.write_all(&out).await
    }

    /// The next packet; `Ok(None)` after `dur` of silence, `Err` when the connection is gone.
    async fn recv(&mut self, dur: Duration) -> io::Result<Option<Packet>> {
        let deadline = tokio::time::Instant::now() + dur;
        loop {
            match codec::decode(&mut self.buf, Protocol::V311, 1 << 20) {
                Ok(Some(p)) => return Ok(Some(p)),
                Ok(None) => {}
                Err(e) => return Err(io::Error::other(format!("{e:?}"))),
            }
            self.buf.reserve(64 * 1024);
            match tokio::time::timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Err(_) => return Ok(None),
                Ok(Ok(0)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return Err(e),
            }
        }
    }
}

fn publish(idx: u64, qos: QoS, packet_id: u16, dup: bool) -> Packet {
    Packet::Publish(codec::Publish {
        qos,
        dup,
        topic: TOPIC.into(),
        packet_id: Some(packet_id),
        payload: bytes::Bytes::from(idx.to_be_bytes().to_vec()),
        ..Default::default()
    })
}

/// What the publisher knows: messages sent and those acknowledged (PUBACK, or PUBREC).
#[derive(Default)]
struct Publisher {
    next: u64,
    next_id: u16,
    /// QoS 1: waiting for PUBACK; QoS 2: waiting for PUBREC.
    unacked: HashMap<u16, u64>,
    /// QoS 2: PUBREC received, PUBREL sent, waiting for PUBCOMP.
    releasing: HashSet<u16>,
    acked: BTreeSet<u64>,
}

impl Publisher {
    fn packet_id(&mut self) -> u16 {
        loop {
            self.next_id = self.next_id.wrapping_add(1).max(1);
            let id = self.next_id;
            if !self.unacked.contains_key(&id) && !self.releasing.contains(&id) {
                return id;
            }
        }
    }

    /// One connection's worth of streaming; returns when the connection dies or `stop` is
    /// set (then after waiting briefly for outstanding acknowledgements).
    async fn run_connection(&mut self, conn: &mut Conn, qos: QoS, stop: &AtomicBool) {
        if qos == QoS::ExactlyOnce {
            // Same session: finish what the last connection left open.
            let resend: Vec<(u16, u64)> = self.unacked.iter().map(|(k, v)| (*k, *v)).collect();
            for (id, idx) in resend {
                if conn.send(&publish(idx, qos, id, true)).await.is_err() {
                    return;
                }
            }
            let releasing: Vec<u16> = self.releasing.iter().copied().collect();
            for id in releasing {
                if conn.send(&Packet::PubRel(PubResp::new(id))).await.is_err() {
                    return;
                }
            }
        } else {
            // A new clean session: what was not acknowledged is simply not counted.
            self.unacked.clear();
        }
        let mut stopping_since: Option<Instant> = None;
        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if stopping && stopping_since.is_none() {
                stopping_since = Some(Instant::now());
            }
            if let Some(t) = stopping_since {
                let open = self.unacked.len() + self.releasing.len();
                if open == 0 || t.elapsed() > Duration::from_secs(3) {
                    return;
                }
            }
            while !stopping && self.unacked.len() + self.releasing.len() < WINDOW {
                let id = self.packet_id();
                let idx = self.next;
                self.next += 1;
                self.unacked.insert(id, idx);
                if conn.send(&publish(idx, qos, id, false)).await.is_err() {
                    return;
                }
            }
            match conn.recv(Duration::from_millis(200)).await {
                Err(_) => return,
                Ok(None) => {}
                Ok(Some(Packet::PubAck(a))) if qos == QoS::AtLeastOnce => {
                    if let Some(idx) = self.unacked.remove(&a.packet_id) {
                        self.acked.insert(idx);
                    }
                }
                Ok(Some(Packet::PubRec(r))) if qos == QoS::ExactlyOnce => {
                    if let Some(idx) = self.unacked.remove(&r.packet_id) {
                        self.acked.insert(idx);
                        self.releasing.insert(r.packet_id);
                    }
                    if conn
                        .send(&Packet::PubRel(PubResp::new(r.packet_id)))
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Some(Packet::PubComp(c))) => {
                    self.releasing.remove(&c.packet_id);
                }
                Ok(Some(other)) => panic!("publisher got {other:?}"),
            }
        }
    }
}

/// Reconnects the publisher after every kill until `stop`; returns what it knows.
async fn publish_through_crashes(port: u16, qos: QoS, stop: Arc<AtomicBool>) -> Publisher {
    let mut publisher = Publisher::default();
    let clean = qos != QoS::ExactlyOnce;
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        match Conn::connect(port, PUBLISHER, clean).await {
            Ok((mut conn, _)) => {
                publisher.run_connection(&mut conn, qos, &stop).await;
                if stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
    publisher
}

/// Connects the persistent subscriber and takes everything queued for it, acknowledging
/// each message; returns the indices received, in order.
async fn drain(port: u16, qos: QoS) -> Vec<u64> {
    let (mut conn, present) = Conn::connect(port, SUBSCRIBER, false)
        .await
        .expect("subscriber reconnects");
    assert!(present, "the persistent session survived the crashes");
    let mut got = Vec::new();
    loop {
        let packet = conn
            .recv(Duration::from_secs(2))
            .await
            .expect("subscriber connection stays up");
        match packet {
            None => break,
            Some(Packet::Publish(p)) => {
                let bytes: [u8; 8] = p.payload.as_ref().try_into().expect("8-byte payload");
                got.push(u64::from_be_bytes(bytes));
                let id = p.packet_id.expect("QoS 1/2 has a packet id");
                let ack = if p.qos == QoS::ExactlyOnce {
                    Packet::PubRec(PubResp::new(id))
                } else {
                    Packet::PubAck(PubResp::new(id))
                };
                assert_eq!(p.qos, qos, "delivered at the subscribed QoS");
                conn.send(&ack).await.expect("ack");
            }
            Some(Packet::PubRel(r)) => conn
                .send(&Packet::PubComp(PubResp::new(r.packet_id)))
                .await
                .expect("pubcomp"),
            Some(other) => panic!("subscriber got {other:?}"),
        }
    }
    got
}

fn crash_run(qos: QoS) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut broker = Broker::new(dir.path());
    let mut rng = Rng::new();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    broker.start();
    rt.block_on(async {
        let (mut sub, _) = Conn::connect(broker.port, SUBSCRIBER, false)
            .await
            .expect("subscriber connects");
        sub.send(&Packet::Subscribe(codec::Subscribe {
            packet_id: 1,
            topics: vec![codec::SubscribeTopic {
                filter: TOPIC.into(),
                options: codec::SubscriptionOptions {
                    qos,
                    ..Default::default()
                },
            }],
            ..Default::default()
        }))
        .await
        .expect("subscribe");
        match sub.recv(Duration::from_secs(5)).await {
            Ok(Some(Packet::SubAck(a))) => assert_eq!(a.return_codes, vec![qos as u8]),
            other => panic!("no SUBACK: {other:?}"),
        }
        sub.send(&Packet::Disconnect(Default::default()))
            .await
            .expect("disconnect");
    });
    let stop = Arc::new(AtomicBool::new(false));
    let publisher = rt.spawn(publish_through_crashes(broker.port, qos, stop.clone()));
    for _ in 0..KILLS {
        std::thread::sleep(Duration::from_millis(250 + rng.below(700)));
        broker.kill();
        std::thread::sleep(Duration::from_millis(rng.below(100)));
        broker.start();
    }
    std::thread::sleep(Duration::from_millis(300 + rng.below(300)));
    stop.store(true, Ordering::Relaxed);
    let publisher = rt.block_on(publisher).expect("publisher task");
    // One more crash with nothing in flight, so the final state also comes from disk.
    broker.kill();
    broker.start();
    let got = rt.block_on(drain(broker.port, qos));
    let received: BTreeSet<u64> = got.iter().copied().collect();
    let missing: Vec<u64> = publisher.acked.difference(&received).copied().collect();
    eprintln!(
        "{qos:?}: sent {}, acknowledged {}, delivered {} ({} distinct), broker starts {}",
        publisher.next,
        publisher.acked.len(),
        got.len(),
        received.len(),
        broker.starts
    );
    assert!(
        publisher.acked.len() >= 50,
        "too few messages were acknowledged to test anything: {}",
        publisher.acked.len()
    );
    assert!(
        missing.is_empty(),
        "{} acknowledged messages were lost, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        received.iter().all(|i| *i < publisher.next),
        "delivered a message never sent"
    );
    if qos == QoS::ExactlyOnce {
        assert_eq!(got.len(), received.len(), "QoS 2 delivered duplicates");
    }
}

#[test]
fn acknowledged_qos1_messages_survive_sigkill() {
    crash_run(QoS::AtLeastOnce);
}

#[test]
fn acknowledged_qos2_messages_survive_sigkill_exactly_once() {
    crash_run(QoS::ExactlyOnce);
}
