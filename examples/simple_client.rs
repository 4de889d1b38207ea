//! A small MQTT 3.1.1 command-line client for trying fubar by hand.
//!
//! ```text
//! cargo run --example simple_client -- --host 127.0.0.1 --port 1883 --id c1 sub 'a/#'
//! cargo run --example simple_client -- --id c2 pub a/b hello --qos 1 --retain
//! cargo run --example simple_client -- --id c2 direct c1 'hi there'
//! ```
//!
//! `sub` prints every received message as `topic qos payload` until interrupted (or until
//! `--count` messages arrived). `pub` publishes one message and waits for its acknowledgement.
//! `direct` publishes to another client's id, which fubar delivers straight to that client
//! (it receives a PUBLISH whose topic is its own id).

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, Packet, QoS};
use std::time::Duration;

/// Command-line arguments.
#[derive(Parser, Debug)]
#[command(about = "Minimal MQTT client for manual tests of fubar")]
struct Args {
    /// Broker host.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Broker port.
    #[arg(long, default_value_t = 1883)]
    port: u16,
    /// Client id (default: a name derived from the process id).
    #[arg(long)]
    id: Option<String>,
    /// Keep the session when disconnected (clean session = 0).
    #[arg(long)]
    persistent: bool,
    /// Keep-alive in seconds.
    #[arg(long, default_value_t = 60)]
    keep_alive: u64,
    /// What to do.
    #[command(subcommand)]
    command: Cmd,
}

/// The client's actions.
#[derive(Subcommand, Debug)]
enum Cmd {
    /// Subscribe to one or more topic filters and print what arrives.
    Sub {
        /// Topic filters (wildcards allowed).
        #[arg(required = true)]
        topics: Vec<String>,
        /// Requested QoS.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Exit after this many messages.
        #[arg(long)]
        count: Option<u64>,
    },
    /// Publish one message.
    Pub {
        /// Topic name.
        topic: String,
        /// Message payload.
        message: String,
        /// QoS of the publish.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
        /// Set the RETAIN flag.
        #[arg(long)]
        retain: bool,
    },
    /// Send a direct message to another client id (fubar extension).
    Direct {
        /// The receiver's client id.
        client_id: String,
        /// Message payload.
        message: String,
        /// QoS of the publish.
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=2))]
        qos: u8,
    },
}

fn qos(q: u8) -> QoS {
    match q {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let id = args
        .id
        .clone()
        .unwrap_or_else(|| format!("simple-{}", std::process::id()));
    let mut opts = MqttOptions::new(id, args.host.clone(), args.port);
    opts.set_clean_session(!args.persistent);
    opts.set_keep_alive(Duration::from_secs(args.keep_alive.max(1)));
    opts.set_max_packet_size(16 * 1024 * 1024, 16 * 1024 * 1024);
    let (client, mut eventloop) = AsyncClient::new(opts, 64);

    match args.command {
        Cmd::Sub {
            topics,
            qos: q,
            count,
        } => {
            for t in &topics {
                client.subscribe(t.as_str(), qos(q)).await?;
            }
            let mut seen = 0u64;
            loop {
                match eventloop.poll().await.context("connection to the broker")? {
                    Event::Incoming(Packet::ConnAck(a)) => {
                        eprintln!("connected (session present: {})", a.session_present);
                    }
                    Event::Incoming(Packet::SubAck(a)) => {
                        eprintln!("subscribed: {:?}", a.return_codes);
                    }
                    Event::Incoming(Packet::Publish(p)) => {
                        println!(
                            "{} {} {}",
                            p.topic,
                            p.qos as u8,
                            String::from_utf8_lossy(&p.payload)
                        );
                        seen += 1;
                        if count.is_some_and(|c| seen >= c) {
                            client.disconnect().await?;
                        }
                    }
                    Event::Outgoing(Outgoing::Disconnect) => return Ok(()),
                    _ => {}
                }
            }
        }
        Cmd::Pub {
            topic,
            message,
            qos: q,
            retain,
        } => publish_one(&client, &mut eventloop, &topic, message, q, retain).await,
        Cmd::Direct {
            client_id,
            message,
            qos: q,
        } => publish_one(&client, &mut eventloop, &client_id, message, q, false).await,
    }
}

/// Publishes one message, waits for the acknowledgement its QoS calls for, disconnects.
async fn publish_one(
    client: &AsyncClient,
    eventloop: &mut rumqttc::EventLoop,
    topic: &str,
    message: String,
    q: u8,
    retain: bool,
) -> Result<()> {
    client.publish(topic, qos(q), retain, message).await?;
    let mut disconnecting = false;
    // Bounded: connect, publish, at most a few acknowledgements, disconnect.
    for _ in 0..32 {
        let event = eventloop.poll().await.context("connection to the broker")?;
        let done = match event {
            Event::Incoming(Packet::ConnAck(a))
                if a.code != rumqttc::ConnectReturnCode::Success =>
            {
                bail!("connection refused: {:?}", a.code)
            }
            Event::Outgoing(Outgoing::Publish(_)) if q == 0 => true,
            Event::Incoming(Packet::PubAck(_)) if q == 1 => true,
            Event::Incoming(Packet::PubComp(_)) if q == 2 => true,
            Event::Outgoing(Outgoing::Disconnect) => return Ok(()),
            _ => false,
        };
        if done && !disconnecting {
            eprintln!("published to {topic} at QoS {q}");
            client.disconnect().await?;
            disconnecting = true;
        }
    }
    bail!("no acknowledgement from the broker")
}
