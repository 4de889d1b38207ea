//! Interoperability with the Eclipse Mosquitto command-line clients (`mosquitto_sub`,
//! `mosquitto_pub`) over MQTT 3.1.1 and 5. Skipped loudly when the binaries are missing
//! (CI installs them).

mod common;

use common::*;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn skip() -> bool {
    if have_binary("mosquitto_sub") && have_binary("mosquitto_pub") {
        return false;
    }
    eprintln!("SKIP: mosquitto_sub/mosquitto_pub not installed; mosquitto interop not tested");
    true
}

/// A child process killed (by its pid) when dropped.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Runs `mosquitto_sub` for one message while `mosquitto_pub` publishes `hello` (repeated
/// until the subscriber has it, since we cannot see when its SUBSCRIBE is done). Returns the
/// subscriber's stdout.
fn exchange(b: &TestBroker, sub_version: &str, pub_version: &str, tag: &str) -> String {
    let port = b.port().to_string();
    let topic = format!("mosq/{tag}");
    let mut sub = Proc(
        Command::new("mosquitto_sub")
            .args(["-h", "127.0.0.1", "-p", &port, "-V", sub_version])
            .args([
                "-i",
                &format!("mosq-sub-{tag}"),
                "-t",
                &topic,
                "-C",
                "1",
                "-q",
                "1",
            ])
            .args(["-W", "20"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn mosquitto_sub"),
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut published = 0;
    loop {
        if let Some(status) = sub.0.try_wait().expect("try_wait") {
            let mut out = String::new();
            sub.0
                .stdout
                .take()
                .expect("stdout")
                .read_to_string(&mut out)
                .expect("read stdout");
            let mut err = String::new();
            if let Some(mut e) = sub.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            assert!(
                status.success(),
                "mosquitto_sub -V {sub_version} failed: {status}; stdout {out:?}; stderr {err:?}"
            );
            return out;
        }
        assert!(
            Instant::now() < deadline,
            "mosquitto_sub -V {sub_version} got nothing after {published} publishes"
        );
        if published < 20 {
            let st = Command::new("mosquitto_pub")
                .args(["-h", "127.0.0.1", "-p", &port, "-V", pub_version])
                .args(["-i", &format!("mosq-pub-{tag}-{published}"), "-t", &topic])
                .args(["-q", "1", "-m", "hello"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()
                .expect("run mosquitto_pub");
            assert!(
                st.status.success(),
                "mosquitto_pub -V {pub_version} failed: {}; stderr {:?}",
                st.status,
                String::from_utf8_lossy(&st.stderr)
            );
            published += 1;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

#[test]
fn mosquitto_311_pub_to_311_sub() {
    if skip() {
        return;
    }
    let b = TestBroker::start();
    assert_eq!(
        exchange(&b, "mqttv311", "mqttv311", "311").trim_end(),
        "hello"
    );
}

#[test]
fn mosquitto_5_pub_to_5_sub() {
    if skip() {
        return;
    }
    let b = TestBroker::start();
    assert_eq!(exchange(&b, "5", "5", "5").trim_end(), "hello");
}

#[test]
fn mosquitto_mixed_versions() {
    if skip() {
        return;
    }
    let b = TestBroker::start();
    assert_eq!(
        exchange(&b, "5", "mqttv311", "5from311").trim_end(),
        "hello"
    );
    assert_eq!(exchange(&b, "mqttv31", "5", "31from5").trim_end(), "hello");
}

#[test]
fn mosquitto_sub_gets_retained_message() {
    if skip() {
        return;
    }
    let b = TestBroker::start();
    let port = b.port().to_string();
    let st = Command::new("mosquitto_pub")
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311"])
        .args([
            "-i",
            "mosq-ret-pub",
            "-t",
            "mosq/ret",
            "-q",
            "1",
            "-r",
            "-m",
            "kept",
        ])
        .output()
        .expect("run mosquitto_pub");
    assert!(st.status.success(), "{st:?}");
    let out = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port, "-V", "mqttv311"])
        .args([
            "-i",
            "mosq-ret-sub",
            "-t",
            "mosq/ret",
            "-C",
            "1",
            "-W",
            "10",
            "-v",
        ])
        .output()
        .expect("run mosquitto_sub");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim_end(),
        "mosq/ret kept"
    );
}
