//! The MQTTS listener: certificates made by `priv/ssl/ca/new-certs.sh`, publish/subscribe
//! through rumqttc (rustls) and the Mosquitto clients, mutual TLS, and certificate reload
//! without dropping established connections. Skipped loudly without `openssl`.

mod common;

use common::*;
use rumqttc::{
    AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS, TlsConfiguration, Transport,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, RootCertStore};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;

fn skip() -> bool {
    if have_binary("openssl") {
        return false;
    }
    eprintln!("SKIP: openssl not installed; TLS certificates cannot be generated");
    true
}

/// Runs new-certs.sh into `dir` (replacing what is there: a new CA each time).
fn new_certs(dir: &Path) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("priv/ssl/ca/new-certs.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(dir)
        .stdout(Stdio::null())
        .status()
        .expect("run new-certs.sh");
    assert!(status.success(), "new-certs.sh failed");
}

/// A broker with TLS on, using the certificates in `dir` (mTLS when `mtls`).
fn tls_broker(dir: &Path, mtls: bool) -> TestBroker {
    let dir = dir.to_path_buf();
    TestBroker::start_with(move |c| {
        c.tls.port = 0;
        c.tls.cert_file = dir.join("cert.pem");
        c.tls.key_file = dir.join("key.pem");
        if mtls {
            c.tls.client_ca_file = dir.join("ca.pem");
        }
    })
}

/// A rustls client configuration trusting `ca`, with an optional client certificate.
fn client_config(ca: &Path, client: Option<(PathBuf, PathBuf)>) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).expect("ca file") {
        roots.add(cert.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots);
    let config = match client {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert");
            let key = PrivateKeyDer::from_pem_file(key).expect("client key");
            builder
                .with_client_auth_cert(chain, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    Arc::new(config)
}

/// A rumqttc client over TLS to `port`; returns once CONNACK arrived, or the error.
async fn tls_client(
    port: u16,
    id: &str,
    config: Arc<ClientConfig>,
) -> Result<(AsyncClient, EventLoop), String> {
    let mut options = MqttOptions::new(id, "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(30));
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(config)));
    let (client, mut events) = AsyncClient::new(options, 16);
    loop {
        match timeout(WAIT, events.poll()).await {
            Err(_) => return Err("no CONNACK in time".into()),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return if ack.code == rumqttc::ConnectReturnCode::Success {
                    Ok((client, events))
                } else {
                    Err(format!("refused: {:?}", ack.code))
                };
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// Polls `events` until a PUBLISH arrives (or fails after [`WAIT`]).
async fn next_publish(events: &mut EventLoop) -> rumqttc::Publish {
    let deadline = Instant::now() + WAIT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match timeout(left, events.poll()).await {
            Err(_) => panic!("no PUBLISH in time"),
            Ok(Err(e)) => panic!("connection failed: {e}"),
            Ok(Ok(Event::Incoming(Packet::Publish(p)))) => return p,
            Ok(Ok(_)) => {}
        }
    }
}

/// Subscribes `sub` to `topic`, then publishes through `publisher` until `sub` gets it.
async fn round_trip(
    sub: &AsyncClient,
    sub_events: &mut EventLoop,
    publisher: &AsyncClient,
    pub_events: &mut EventLoop,
    topic: &str,
) {
    sub.subscribe(topic, QoS::AtLeastOnce)
        .await
        .expect("subscribe");
    loop {
        match timeout(WAIT, sub_events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::SubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no SUBACK: {other:?}"),
        }
    }
    publisher
        .publish(topic, QoS::AtLeastOnce, false, b"over tls".to_vec())
        .await
        .expect("publish");
    // Drive the publisher until its PUBACK, so the message is on its way.
    loop {
        match timeout(WAIT, pub_events.poll()).await {
            Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => break,
            Ok(Ok(_)) => {}
            other => panic!("no PUBACK: {other:?}"),
        }
    }
    let got = next_publish(sub_events).await;
    assert_eq!(
        (got.topic.as_str(), &got.payload[..]),
        (topic, &b"over tls"[..])
    );
}

#[tokio::test]
async fn pub_sub_over_tls_with_the_generated_ca() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    new_certs(dir.path());
    let broker = tls_broker(dir.path(), false);
    let port = broker.tls_addr().port();
    let config = client_config(&dir.path().join("ca.pem"), None);
    let (sub, mut sub_events) = tls_client(port, "tls-sub", config.clone()).await.unwrap();
    let (publisher, mut pub_events) = tls_client(port, "tls-pub", config).await.unwrap();
    round_trip(
        &sub,
        &mut sub_events,
        &publisher,
        &mut pub_events,
        "secure/a",
    )
    .await;

    // A client that does not trust the CA cannot connect.
    let other = tempfile::tempdir().unwrap();
    new_certs(other.path());
    let stranger = client_config(&other.path().join("ca.pem"), None);
    assert!(tls_client(port, "stranger", stranger).await.is_err());
    // Plain MQTT on the TLS port is not MQTT: the handshake fails and the socket closes.
    let mut raw = RawClient::open(broker.tls_addr(), fubar::codec::Protocol::V311).await;
    raw.send(&fubar::codec::Packet::Connect(Box::new(connect_packet(
        fubar::codec::Protocol::V311,
        "plain",
        true,
        60,
    ))))
    .await;
    raw.expect_closed(WAIT).await;
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    new_certs(dir.path());
    let broker = tls_broker(dir.path(), true);
    let port = broker.tls_addr().port();
    let ca = dir.path().join("ca.pem");
    let refused = tls_client(port, "no-cert", client_config(&ca, None)).await;
    assert!(refused.is_err(), "connected without a client certificate");
    let with_cert = client_config(
        &ca,
        Some((
            dir.path().join("client-cert.pem"),
            dir.path().join("client-key.pem"),
        )),
    );
    let (sub, mut sub_events) = tls_client(port, "m-sub", with_cert.clone()).await.unwrap();
    let (publisher, mut pub_events) = tls_client(port, "m-pub", with_cert).await.unwrap();
    round_trip(&sub, &mut sub_events, &publisher, &mut pub_events, "mtls/a").await;
}

#[tokio::test]
async fn reload_serves_the_new_certificate_and_keeps_connections() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    new_certs(dir.path());
    let old_ca = tempfile::tempdir().unwrap();
    std::fs::copy(dir.path().join("ca.pem"), old_ca.path().join("ca.pem")).unwrap();
    let broker = tls_broker(dir.path(), false);
    let port = broker.tls_addr().port();
    let old = client_config(&old_ca.path().join("ca.pem"), None);
    let (sub, mut sub_events) = tls_client(port, "keep-sub", old.clone()).await.unwrap();
    let (publisher, mut pub_events) = tls_client(port, "keep-pub", old.clone()).await.unwrap();

    // A new CA and server certificate on disk, then reload.
    new_certs(dir.path());
    broker.reload_tls().expect("reload");
    let new = client_config(&dir.path().join("ca.pem"), None);
    assert!(
        tls_client(port, "old-trust", old).await.is_err(),
        "old certificate still served"
    );
    tls_client(port, "new-trust", new)
        .await
        .expect("new certificate");
    // Connections made before the reload still work.
    round_trip(&sub, &mut sub_events, &publisher, &mut pub_events, "keep/a").await;

    // A broken file fails the reload and keeps the current certificate.
    std::fs::write(dir.path().join("cert.pem"), "not a certificate").unwrap();
    assert!(broker.reload_tls().is_err());
    let new = client_config(&dir.path().join("ca.pem"), None);
    tls_client(port, "still-new", new)
        .await
        .expect("certificate kept");
}

#[tokio::test]
async fn mosquitto_clients_over_tls() {
    if skip() || !have_binary("mosquitto_sub") || !have_binary("mosquitto_pub") {
        eprintln!("SKIP: mosquitto clients not installed; mosquitto over TLS not tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    new_certs(dir.path());
    let broker = tls_broker(dir.path(), false);
    let port = broker.tls_addr().port().to_string();
    let ca = dir.path().join("ca.pem");
    let ca = ca.to_str().unwrap();
    let mut sub = Command::new("mosquitto_sub")
        .args(["-h", "localhost", "-p", &port, "--cafile", ca])
        .args([
            "-t",
            "mosq/tls",
            "-C",
            "1",
            "-W",
            "20",
            "-i",
            "mosq-tls-sub",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mosquitto_sub");
    let deadline = Instant::now() + Duration::from_secs(15);
    let result = loop {
        if let Some(status) = sub.try_wait().expect("try_wait") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        let published = Command::new("mosquitto_pub")
            .args(["-h", "localhost", "-p", &port, "--cafile", ca])
            .args(["-t", "mosq/tls", "-m", "hello tls", "-i", "mosq-tls-pub"])
            .status()
            .expect("run mosquitto_pub");
        assert!(published.success(), "mosquitto_pub over TLS failed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let Some(status) = result else {
        let _ = sub.kill();
        let _ = sub.wait();
        panic!("mosquitto_sub got nothing over TLS");
    };
    let output = sub.wait_with_output().expect("mosquitto_sub output");
    assert!(
        status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "hello tls");
}
