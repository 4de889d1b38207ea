//! The HTTP admin API, `/metrics` and the `fubar` operator commands, against a real node.
//!
//! Requests are plain HTTP/1.1 over TCP (`common::http`); MQTT clients connect from
//! loopback addresses the default access list does not trust (127.0.0.2, 127.0.0.3), so
//! what the API changes is observed the way a remote client would see it.

mod common;

use bytes::Bytes;
use common::*;
use fubar::codec::{Connect, Packet, Protocol, QoS};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output, Stdio};

fn login(id: &str, user: &str, password: &str) -> Connect {
    Connect {
        username: Some(user.to_string()),
        password: Some(Bytes::copy_from_slice(password.as_bytes())),
        ..connect_packet(Protocol::V311, id, true, 60)
    }
}

/// CONNACK code for `user`/`password` from the untrusted address 127.0.0.2.
async fn remote_login(broker: &TestBroker, id: &str, user: &str, password: &str) -> u8 {
    let (_c, ack) =
        RawClient::connect_from(broker.addr, "127.0.0.2", login(id, user, password)).await;
    ack.code
}

#[tokio::test]
async fn api_needs_the_token() {
    let broker = TestBroker::start();
    let http = broker.http_addr();
    let token = broker.admin_token();
    assert_eq!(token.len(), 64, "{token}");
    let path = broker.config.node.data_dir.join("admin.token");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", path.display());

    let last = if token.ends_with('0') { "1" } else { "0" };
    let same_length = format!("{}{last}", &token[..63]);
    for wrong in [
        None,
        Some("nope"),
        Some(&token[..63]),
        Some(same_length.as_str()),
    ] {
        for path in [
            "/api/v1/state",
            "/api/v1/accounts",
            "/api/v1/nothing",
            "/api/x",
        ] {
            let answer = common::http(http, "GET", path, wrong, None).await;
            assert_eq!(answer.status, 401, "{path} {wrong:?}: {answer:?}");
            assert!(answer.json()["error"].as_str().unwrap().contains("token"));
            assert!(answer
                .headers
                .iter()
                .any(|h| h == "www-authenticate: bearer"));
        }
    }
    // Changes are refused too, and change nothing.
    let body = r#"{"password": "pw"}"#;
    let answer = common::http(
        http,
        "PUT",
        "/api/v1/accounts/eve",
        Some("nope"),
        Some(body),
    )
    .await;
    assert_eq!(answer.status, 401);
    assert!(broker.security().account("eve").is_none());

    let answer = common::http(http, "GET", "/api/v1/state", Some(&token), None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let state = answer.json();
    assert_eq!(state["node"], "fubar");
    assert_eq!(state["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(state["listeners"]["mqtt"], broker.addr.to_string());
    assert_eq!(state["listeners"]["http"], http.to_string());
    assert!(state["listeners"]["mqtts"].is_null());
    assert_eq!(state["metrics"]["connections"], 0);

    let answer = common::http(http, "GET", "/api/v1/nothing", Some(&token), None).await;
    assert_eq!(answer.status, 404);
    assert!(answer.json()["error"].is_string());
    let answer = common::http(http, "POST", "/api/v1/state", Some(&token), None).await;
    assert_eq!(answer.status, 405);
    assert!(answer.json()["error"].is_string());
    let answer = common::http(http, "POST", "/api/v1/tls/reload", Some(&token), None).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["reloaded"], false);

    // The HTTP port is released when the node stops.
    drop(broker);
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
}

#[tokio::test]
async fn configured_token_replaces_the_file() {
    let broker = TestBroker::start_with(|c| c.http.token = "configured-token-0123456789".into());
    assert!(!broker.config.node.data_dir.join("admin.token").exists());
    let http = broker.http_addr();
    let ok = common::http(
        http,
        "GET",
        "/api/v1/accounts",
        Some("configured-token-0123456789"),
        None,
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(ok.json()["accounts"], serde_json::json!([]));
    let bad = common::http(
        http,
        "GET",
        "/api/v1/accounts",
        Some("configured-token-012345678"),
        None,
    )
    .await;
    assert_eq!(bad.status, 401);
}

#[tokio::test]
async fn accounts_through_the_api_decide_mqtt_logins() {
    let broker = TestBroker::start_with(cheap_hashes);
    let (http, token) = (broker.http_addr(), broker.admin_token());
    let t = Some(token.as_str());

    let body = r#"{"password": "wonderland", "rules": ["allow publish,subscribe a/%c/#"]}"#;
    let answer = common::http(http, "PUT", "/api/v1/accounts/alice", t, Some(body)).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    assert_eq!(answer.json()["rules"][0], "allow publish,subscribe a/%c/#");
    assert!(!answer.body.contains("argon2"), "{answer:?}");

    assert_eq!(remote_login(&broker, "c1", "alice", "wonderland").await, 0);
    assert_eq!(remote_login(&broker, "c2", "alice", "wrong").await, 4);

    // Rules only: the password stays.
    let body = r#"{"rules": ["deny all #"]}"#;
    let answer = common::http(http, "PUT", "/api/v1/accounts/alice", t, Some(body)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = common::http(http, "GET", "/api/v1/accounts/alice", t, None).await;
    assert_eq!(
        answer.json(),
        serde_json::json!({"username": "alice", "rules": ["deny all #"]})
    );
    let (mut c, ack) =
        RawClient::connect_from(broker.addr, "127.0.0.2", login("c3", "alice", "wonderland")).await;
    assert_eq!(ack.code, 0);
    assert_eq!(c.subscribe(1, "a/c3/x", QoS::AtMostOnce).await, vec![0x80]);

    // A new password replaces the old one and keeps the rules.
    let body = r#"{"password": "looking-glass"}"#;
    let answer = common::http(http, "PUT", "/api/v1/accounts/alice", t, Some(body)).await;
    assert_eq!(answer.status, 200);
    assert_eq!(answer.json()["rules"][0], "deny all #");
    assert_eq!(remote_login(&broker, "c4", "alice", "wonderland").await, 4);
    assert_eq!(
        remote_login(&broker, "c5", "alice", "looking-glass").await,
        0
    );

    let answer = common::http(http, "GET", "/api/v1/accounts", t, None).await;
    assert_eq!(answer.json()["accounts"][0]["username"], "alice");

    let answer = common::http(http, "DELETE", "/api/v1/accounts/alice", t, None).await;
    assert_eq!(answer.status, 204);
    assert_eq!(
        remote_login(&broker, "c6", "alice", "looking-glass").await,
        4
    );
    let answer = common::http(http, "DELETE", "/api/v1/accounts/alice", t, None).await;
    assert_eq!(answer.status, 404);
    assert!(answer.json()["error"].as_str().unwrap().contains("alice"));
    let answer = common::http(http, "GET", "/api/v1/accounts/alice", t, None).await;
    assert_eq!(answer.status, 404);
}

#[tokio::test]
async fn acl_through_the_api_closes_and_reopens_an_address() {
    let broker = TestBroker::start_with(cheap_hashes);
    let (http, token) = (broker.http_addr(), broker.admin_token());
    let t = Some(token.as_str());
    broker
        .security()
        .set_account("carol", b"pw", vec![])
        .unwrap();

    let body = r#"{"network": "127.0.0.3/32", "allow": false}"#;
    let answer = common::http(http, "PUT", "/api/v1/acl", t, Some(body)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_eq!(
        answer.json(),
        serde_json::json!({"network": "127.0.0.3", "allow": false})
    );

    let mut c = RawClient::open_from(broker.addr, "127.0.0.3", Protocol::V311).await;
    let connect = Packet::Connect(Box::new(login("c", "carol", "pw")));
    let _ = c.send_raw(&encode(&connect, Protocol::V311)).await;
    assert_eq!(c.expect_closed(WAIT).await, Vec::<u8>::new());

    let answer = common::http(http, "GET", "/api/v1/acl/lookup?ip=127.0.0.3", t, None).await;
    assert_eq!(answer.json()["verdict"], "deny");
    let answer = common::http(http, "GET", "/api/v1/acl/lookup?ip=127.0.0.2", t, None).await;
    assert!(answer.json()["verdict"].is_null());
    let answer = common::http(http, "GET", "/api/v1/acl", t, None).await;
    let entries = answer.json()["acl"].as_array().unwrap().clone();
    assert!(entries.contains(&serde_json::json!({"network": "127.0.0.3", "allow": false})));
    assert!(entries.contains(&serde_json::json!({"network": "127.0.0.1", "allow": true})));

    let answer = common::http(
        http,
        "DELETE",
        "/api/v1/acl?network=127.0.0.3%2F32",
        t,
        None,
    )
    .await;
    assert_eq!(answer.status, 204, "{answer:?}");
    let (_c, ack) =
        RawClient::connect_from(broker.addr, "127.0.0.3", login("c", "carol", "pw")).await;
    assert_eq!(ack.code, 0);
    let answer = common::http(http, "DELETE", "/api/v1/acl?network=127.0.0.3", t, None).await;
    assert_eq!(answer.status, 404);

    // allow=true: the address connects without credentials.
    let body = r#"{"network": "127.0.0.0/29", "allow": true}"#;
    assert_eq!(
        common::http(http, "PUT", "/api/v1/acl", t, Some(body))
            .await
            .status,
        200
    );
    let (_c, ack) = RawClient::connect_from(
        broker.addr,
        "127.0.0.4",
        connect_packet(Protocol::V311, "anon", true, 60),
    )
    .await;
    assert_eq!(ack.code, 0);
}

#[tokio::test]
async fn bad_requests_get_400_with_a_reason() {
    let broker = TestBroker::start_with(cheap_hashes);
    let (http, token) = (broker.http_addr(), broker.admin_token());
    let t = Some(token.as_str());
    let big = format!(r#"{{"password": "{}"}}"#, "x".repeat(100 * 1024));
    let cases: [(&str, &str, Option<&str>); 11] = [
        ("PUT", "/api/v1/accounts/bob", Some("{not json")),
        ("PUT", "/api/v1/accounts/bob", Some(r#"{"password": 5}"#)),
        (
            "PUT",
            "/api/v1/accounts/bob",
            Some(r#"{"password": "p", "extra": 1}"#),
        ),
        (
            "PUT",
            "/api/v1/accounts/bob",
            Some(r#"{"password": "p", "rules": ["fly away"]}"#),
        ),
        ("PUT", "/api/v1/accounts/bob", Some("{}")),
        ("PUT", "/api/v1/accounts/bob", Some(r#"{"password": ""}"#)),
        ("PUT", "/api/v1/accounts/a+b", Some(r#"{"password": "p"}"#)),
        (
            "PUT",
            "/api/v1/acl",
            Some(r#"{"network": "10.0.0.0/40", "allow": true}"#),
        ),
        ("GET", "/api/v1/acl/lookup?ip=nowhere", None),
        ("GET", "/api/v1/acl/lookup", None),
        ("PUT", "/api/v1/accounts/bob", Some(big.as_str())),
    ];
    for (method, path, body) in cases {
        let answer = common::http(http, method, path, t, body).await;
        assert_eq!(answer.status, 400, "{method} {path} {body:?}: {answer:?}");
        let error = answer.json()["error"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(!error.is_empty(), "{answer:?}");
    }
    assert!(broker.security().accounts().is_empty());
    // Rules for an account that does not exist.
    let body = r#"{"rules": ["allow all #"]}"#;
    let answer = common::http(http, "PUT", "/api/v1/accounts/nobody", t, Some(body)).await;
    assert_eq!(answer.status, 404, "{answer:?}");
    // The node still serves.
    let answer = common::http(http, "GET", "/api/v1/state", t, None).await;
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn metrics_are_prometheus_text_without_a_token() {
    let broker = TestBroker::start();
    let (mut c, _) = RawClient::connect(broker.addr, Protocol::V311, "m1", true).await;
    for i in 0..3u16 {
        c.send(&publish_packet("m/t", QoS::AtLeastOnce, Some(i + 1), b"x"))
            .await;
        c.recv().await;
    }
    let answer = common::http(broker.http_addr(), "GET", "/metrics", None, None).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert!(
        answer
            .headers
            .iter()
            .any(|h| h.starts_with("content-type: text/plain; version=0.0.4")),
        "{:?}",
        answer.headers
    );
    let text = &answer.body;
    assert!(
        text.contains("# TYPE fubar_connections gauge\nfubar_connections 1\n"),
        "{text}"
    );
    assert!(
        text.contains("\nfubar_publish_received_total 3\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE fubar_publish_sent_total counter\n"),
        "{text}"
    );
    assert!(text.contains("\nfubar_sessions 1\n"), "{text}");
    // Read-only.
    let answer = common::http(broker.http_addr(), "POST", "/metrics", None, Some("{}")).await;
    assert_ne!(answer.status, 200);
}

/// Runs the real `fubar` binary with `stdin` piped in.
fn fubar(args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fubar"))
        .args(args)
        .env_remove("FUBAR_ADMIN_TOKEN")
        .env_remove("FUBAR_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fubar");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().expect("fubar output")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test]
async fn cli_commands_talk_to_the_node() {
    let broker = TestBroker::start_with(cheap_hashes);
    let url = format!("http://{}", broker.http_addr());
    let token = broker.admin_token();
    let data_dir = broker.config.node.data_dir.to_str().unwrap().to_string();
    let port = broker.http_addr().port().to_string();

    // Explicit --url and --token; the password comes from stdin.
    let out = fubar(
        &[
            "account",
            "set",
            "dave",
            "--rule",
            "allow all d/#",
            "--url",
            &url,
            "--token",
            &token,
        ],
        "s3cret\n",
    );
    assert!(
        out.status.success(),
        "{}{}",
        text(&out.stdout),
        text(&out.stderr)
    );
    assert_eq!(text(&out.stdout), "account dave created\n");
    assert_eq!(remote_login(&broker, "d1", "dave", "s3cret").await, 0);
    assert_eq!(remote_login(&broker, "d2", "dave", "s3cret\n").await, 4);

    // The token from the node's data directory, the URL from --http-port.
    let out = fubar(
        &[
            "account",
            "all",
            "--data-dir",
            &data_dir,
            "--http-port",
            &port,
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "dave\n  allow all d/#\n");

    let out = fubar(
        &[
            "acl",
            "set",
            "127.0.0.3",
            "--deny",
            "--url",
            &url,
            "--token",
            &token,
        ],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(broker
        .security()
        .acl_lookup("127.0.0.3".parse().unwrap())
        .is_some());
    let out = fubar(&["acl", "all", "--url", &url, "--token", &token], "");
    assert!(
        text(&out.stdout).contains("127.0.0.3"),
        "{}",
        text(&out.stdout)
    );

    let out = fubar(&["state", "--url", &url, "--token", &token], "");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains(&broker.addr.to_string()),
        "{}",
        text(&out.stdout)
    );

    let out = fubar(
        &["account", "del", "dave", "--url", &url, "--token", &token],
        "",
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(broker.security().account("dave").is_none());

    // Failures: exit code 1 and a reason.
    let out = fubar(
        &["account", "get", "dave", "--url", &url, "--token", &token],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).starts_with("fubar: no account \"dave\""),
        "{}",
        text(&out.stderr)
    );
    let out = fubar(
        &["account", "all", "--url", &url, "--token", "wrong-token"],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("refused the admin token"),
        "{}",
        text(&out.stderr)
    );
    let out = fubar(
        &["account", "set", "erin", "--url", &url, "--token", &token],
        "",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("password"),
        "{}",
        text(&out.stderr)
    );
    assert!(broker.security().account("erin").is_none());

    let dead = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap()
    };
    let dead_url = format!("http://{dead}");
    let out = fubar(&["state", "--url", &dead_url, "--token", &token], "");
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.starts_with("fubar: cannot reach the node at "), "{err}");
    assert!(err.contains(&dead_url), "{err}");
}

/// Accounts and ACL entries made through the API, and the owner of a persistent session,
/// survive a restart on the same data dir; `fubar reset` would be the only way to lose them.
#[tokio::test]
async fn accounts_acl_and_session_owners_survive_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().to_path_buf();
    let start = |data: std::path::PathBuf| {
        TestBroker::start_with(move |c| {
            cheap_hashes(c);
            c.node.data_dir = data;
        })
    };
    let broker = start(data.clone());
    let (http, token) = (broker.http_addr(), broker.admin_token());
    let t = Some(token.as_str());
    let body = r#"{"password": "wonderland", "rules": ["deny publish secret/#"]}"#;
    let answer = common::http(http, "PUT", "/api/v1/accounts/alice", t, Some(body)).await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let answer = common::http(
        http,
        "PUT",
        "/api/v1/accounts/bob",
        t,
        Some(r#"{"password": "builder"}"#),
    )
    .await;
    assert_eq!(answer.status, 201, "{answer:?}");
    let body = r#"{"network": "127.0.0.3/32", "allow": false}"#;
    assert_eq!(
        common::http(http, "PUT", "/api/v1/acl", t, Some(body))
            .await
            .status,
        200
    );
    // alice owns a persistent session.
    let persistent = Connect {
        clean_start: false,
        ..login("owned", "alice", "wonderland")
    };
    let (c, ack) = RawClient::connect_from(broker.addr, "127.0.0.2", persistent).await;
    assert_eq!(ack.code, 0);
    c.disconnect().await;
    drop(broker);

    let broker = start(data);
    assert_eq!(remote_login(&broker, "a1", "alice", "wonderland").await, 0);
    assert_eq!(remote_login(&broker, "a2", "alice", "wrong").await, 4);
    assert_eq!(remote_login(&broker, "b1", "bob", "builder").await, 0);
    let account = broker.security().account("alice").expect("alice restored");
    assert_eq!(account.rules.len(), 1, "rules restored: {account:?}");
    // The stored deny entry still closes the socket before any byte.
    let mut c = RawClient::open_from(broker.addr, "127.0.0.3", Protocol::V311).await;
    let connect = Packet::Connect(Box::new(login("c", "bob", "builder")));
    let _ = c.send_raw(&encode(&connect, Protocol::V311)).await;
    assert_eq!(c.expect_closed(WAIT).await, Vec::<u8>::new());
    // bob may not resume alice's restored session; alice may, and finds it.
    let resume = |user: &str, password: &str| Connect {
        clean_start: false,
        ..login("owned", user, password)
    };
    let (_c, ack) =
        RawClient::connect_from(broker.addr, "127.0.0.2", resume("bob", "builder")).await;
    assert_eq!(ack.code, 2, "another user's session");
    let (_c, ack) =
        RawClient::connect_from(broker.addr, "127.0.0.2", resume("alice", "wonderland")).await;
    assert_eq!(ack.code, 0);
    assert!(
        ack.session_present,
        "the owner resumes the restored session"
    );
}
