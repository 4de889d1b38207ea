//! CONNECT policy: the decisions a connection makes about a CONNECT before its session
//! exists, as pure functions (keep-alive negotiation, client id rules, session expiry, the
//! CONNACK to send), plus the authentication step ([`authenticate`], [`authorize`]) that
//! asks [`crate::auth`]. The connection task in [`super::connection`] applies them.

use crate::actors::{session, ClientId};
use crate::auth::{AuthFailure, Gate, Permissions, Principal};
use crate::codec::{connack_v3, reason, ConnAck, Connect, Properties, Protocol};
use crate::config::Config;
use bytes::Bytes;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Keep-alive decided for one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepAlive {
    /// The value (seconds) the server tells the client about, when it differs from the
    /// client's: 3.x CONNACK payload for opted-in clients, MQTT 5 Server Keep Alive.
    pub announce: Option<u16>,
    /// Silence after which the server closes the connection (1.5 × keep-alive); `None`
    /// when keep-alive is off.
    pub timeout: Option<Duration>,
}

/// Clamps a client keep-alive into `[min, max]`; 0 (no keep-alive) counts as infinite.
pub fn negotiate_keep_alive(client: u16, [min, max]: [u16; 2]) -> u16 {
    if client == 0 {
        max
    } else {
        client.clamp(min, max)
    }
}

/// The keep-alive of a connection. MQTT 5 clients and 3.x clients that opted into the fubar
/// extensions (CONNECT flags bit 0) get the negotiated value and are held to it; other
/// clients keep their own value (0 = none).
pub fn keep_alive(connect: &Connect, range: [u16; 2]) -> KeepAlive {
    let opted_in = connect.protocol == Protocol::V5 || connect.max_recursion.is_some();
    let effective = if opted_in {
        negotiate_keep_alive(connect.keep_alive, range)
    } else {
        connect.keep_alive
    };
    KeepAlive {
        announce: (opted_in && effective != connect.keep_alive).then_some(effective),
        timeout: (effective > 0).then(|| Duration::from_millis(u64::from(effective) * 1500)),
    }
}

/// How long the session outlives the connection: MQTT 5 Session Expiry Interval (absent =
/// 0), capped by `session.max_age`; 3.x: 0 for a clean session, `max_age` otherwise.
pub fn session_expiry(connect: &Connect, max_age: u64) -> Duration {
    match connect.protocol {
        Protocol::V5 => session::session_expiry(
            connect.properties.session_expiry_interval.unwrap_or(0),
            max_age,
        ),
        Protocol::V31 | Protocol::V311 if connect.clean_start => Duration::ZERO,
        Protocol::V31 | Protocol::V311 => Duration::from_secs(max_age),
    }
}

/// The client id a connection uses, and whether the server assigned it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    /// The client's own id.
    Given(ClientId),
    /// An id the server made up for a client that sent none.
    Assigned(ClientId),
}

impl Identity {
    /// The id.
    pub fn id(&self) -> &ClientId {
        match self {
            Identity::Given(id) | Identity::Assigned(id) => id,
        }
    }
}

/// The client id rules: a non-empty id is used as sent (any UTF-8 up to 65535 bytes, in
/// every version); an empty one gets a fresh id with a clean session (3.x) or always
/// (MQTT 5); an empty id without clean session in 3.x is refused ([MQTT-3.1.3-8]).
pub fn identity(connect: &Connect) -> Option<Identity> {
    if !connect.client_id.is_empty() {
        return Some(Identity::Given(ClientId::from(connect.client_id.as_str())));
    }
    if connect.protocol == Protocol::V5 || connect.clean_start {
        return Some(Identity::Assigned(assign_client_id()));
    }
    None
}

/// A client id no other client of this process was given: `fubar-<start time>-<counter>`.
fn assign_client_id() -> ClientId {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    ClientId::from(format!("fubar-{start:x}-{n}"))
}

/// The CONNACK of an accepted connection.
pub fn accepted(
    protocol: Protocol,
    session_present: bool,
    keep_alive: &KeepAlive,
    identity: &Identity,
    config: &Config,
) -> ConnAck {
    // MQTT 3.1 has no session present flag.
    let session_present = session_present && protocol != Protocol::V31;
    match protocol {
        Protocol::V5 => ConnAck {
            session_present,
            code: reason::SUCCESS,
            properties: Properties {
                server_keep_alive: keep_alive.announce,
                assigned_client_identifier: match identity {
                    Identity::Assigned(id) => Some(id.to_string()),
                    Identity::Given(_) => None,
                },
                receive_maximum: Some(config.session.max_inbound_pending),
                maximum_packet_size: u32::try_from(config.mqtt.max_packet_size).ok(),
                shared_subscription_available: Some(0),
                ..Default::default()
            },
            ..Default::default()
        },
        Protocol::V31 | Protocol::V311 => ConnAck {
            session_present,
            code: connack_v3::ACCEPTED,
            extra: keep_alive
                .announce
                .map(|secs| Bytes::copy_from_slice(&secs.to_be_bytes()))
                .unwrap_or_default(),
            ..Default::default()
        },
    }
}

/// The CONNACK refusing a connection: `v3` for 3.x clients, `v5` for MQTT 5 clients.
pub fn refused(protocol: Protocol, v3: u8, v5: u8) -> ConnAck {
    ConnAck {
        code: if protocol == Protocol::V5 { v5 } else { v3 },
        ..Default::default()
    }
}

/// Authenticates a CONNECT at `gate` within `limit`; `Err` is the CONNACK refusal. Every
/// refusal is logged with the peer (carried by `log`).
pub async fn authenticate(
    gate: &Gate,
    connect: &Connect,
    limit: Duration,
    log: &slog::Logger,
) -> Result<Principal, ConnAck> {
    match gate.authenticate(connect, limit).await {
        Ok(principal) => Ok(principal),
        Err(failure @ AuthFailure::BadCredentials) => {
            slog::warn!(log, "authentication failed";
                "username" => connect.username.as_deref().unwrap_or(""), "error" => %failure);
            Err(refused(
                connect.protocol,
                connack_v3::BAD_USERNAME_PASSWORD,
                reason::BAD_USER_NAME_OR_PASSWORD,
            ))
        }
        Err(failure @ AuthFailure::Unavailable) => {
            slog::warn!(log, "authentication not done in time"; "error" => %failure);
            Err(refused(
                connect.protocol,
                connack_v3::SERVER_UNAVAILABLE,
                reason::SERVER_UNAVAILABLE,
            ))
        }
    }
}

/// The permissions of an authenticated client as `client_id`; a will it may not publish
/// refuses the connection (CONNACK 5 / 0x87).
pub fn authorize(
    principal: &Principal,
    client_id: &ClientId,
    connect: &Connect,
    log: &slog::Logger,
) -> Result<Permissions, Box<ConnAck>> {
    let permissions = principal.permissions(client_id.as_str());
    if let Some(will) = &connect.will {
        if !permissions.may_publish(&will.topic) {
            slog::warn!(log, "will topic not authorized"; "topic" => %will.topic);
            return Err(Box::new(refused(
                connect.protocol,
                connack_v3::NOT_AUTHORIZED,
                reason::NOT_AUTHORIZED,
            )));
        }
    }
    Ok(permissions)
}

/// The CONNACK refusing a client id that has a session opened by another user: 3.x code 2
/// "identifier rejected" (the client may pick another id), MQTT 5 0x87 "not authorized".
pub fn not_owner(protocol: Protocol) -> ConnAck {
    refused(
        protocol,
        connack_v3::IDENTIFIER_REJECTED,
        reason::NOT_AUTHORIZED,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn connect(protocol: Protocol, keep_alive: u16, opted_in: bool) -> Connect {
        Connect {
            protocol,
            keep_alive,
            client_id: "c".into(),
            max_recursion: opted_in.then_some(3),
            ..Default::default()
        }
    }

    #[test]
    fn keep_alive_is_clamped_and_zero_means_max() {
        assert_eq!(negotiate_keep_alive(600, [1800, 3600]), 1800);
        assert_eq!(negotiate_keep_alive(0, [1800, 3600]), 3600);
        assert_eq!(negotiate_keep_alive(7200, [1800, 3600]), 3600);
        assert_eq!(negotiate_keep_alive(2000, [1800, 3600]), 2000);
    }

    #[test]
    fn opted_in_client_is_told_and_held_to_the_negotiated_value() {
        let ka = keep_alive(&connect(Protocol::V311, 600, true), [1800, 3600]);
        assert_eq!(ka.announce, Some(1800));
        assert_eq!(ka.timeout, Some(Duration::from_secs(2700)));
        let ka = keep_alive(&connect(Protocol::V31, 2000, true), [1800, 3600]);
        assert_eq!(ka.announce, None);
        assert_eq!(ka.timeout, Some(Duration::from_secs(3000)));
    }

    #[test]
    fn plain_client_keeps_its_own_value() {
        let ka = keep_alive(&connect(Protocol::V311, 10, false), [1800, 3600]);
        assert_eq!(
            ka,
            KeepAlive {
                announce: None,
                timeout: Some(Duration::from_secs(15))
            }
        );
        let ka = keep_alive(&connect(Protocol::V311, 0, false), [1800, 3600]);
        assert_eq!(
            ka,
            KeepAlive {
                announce: None,
                timeout: None
            }
        );
    }

    #[test]
    fn v5_client_gets_server_keep_alive() {
        let ka = keep_alive(&connect(Protocol::V5, 0, false), [60, 120]);
        assert_eq!(ka.announce, Some(120));
        assert_eq!(ka.timeout, Some(Duration::from_secs(180)));
    }

    #[test]
    fn opted_in_connack_carries_the_keep_alive_payload() {
        let cfg = Config::default();
        let ka = keep_alive(&connect(Protocol::V311, 600, true), [1800, 3600]);
        let ack = accepted(
            Protocol::V311,
            false,
            &ka,
            &Identity::Given("c".into()),
            &cfg,
        );
        assert_eq!(ack.code, 0);
        assert_eq!(ack.negotiated_keep_alive(), Some(1800));
        let plain = keep_alive(&connect(Protocol::V311, 600, false), [1800, 3600]);
        let ack = accepted(
            Protocol::V311,
            true,
            &plain,
            &Identity::Given("c".into()),
            &cfg,
        );
        assert!(ack.extra.is_empty());
        assert!(ack.session_present);
    }

    #[test]
    fn empty_client_id_rules() {
        let mut c = connect(Protocol::V311, 0, false);
        c.client_id.clear();
        c.clean_start = false;
        assert_eq!(identity(&c), None);
        c.clean_start = true;
        let a = identity(&c).unwrap();
        let b = identity(&c).unwrap();
        assert!(matches!(a, Identity::Assigned(_)));
        assert_ne!(a.id(), b.id());
        c.protocol = Protocol::V5;
        c.clean_start = false;
        assert!(matches!(identity(&c), Some(Identity::Assigned(_))));
        let given = connect(Protocol::V31, 0, false);
        assert_eq!(identity(&given), Some(Identity::Given("c".into())));
    }

    #[test]
    fn session_expiry_by_version() {
        let mut c = connect(Protocol::V311, 0, false);
        c.clean_start = true;
        assert_eq!(session_expiry(&c, 100), Duration::ZERO);
        c.clean_start = false;
        assert_eq!(session_expiry(&c, 100), Duration::from_secs(100));
        c.protocol = Protocol::V5;
        assert_eq!(session_expiry(&c, 100), Duration::ZERO);
        c.properties.session_expiry_interval = Some(u32::MAX);
        assert_eq!(session_expiry(&c, 100), Duration::from_secs(100));
        c.properties.session_expiry_interval = Some(30);
        assert_eq!(session_expiry(&c, 100), Duration::from_secs(30));
    }
}
