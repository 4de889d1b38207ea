//! MQTT packet types shared by every protocol version fubar speaks.
//!
//! One set of types covers MQTT 3.1 (`MQIsdp`/3), 3.1.1 (`MQTT`/4) and 5.0 (`MQTT`/5).
//! Fields that only exist in 5.0 (reason codes, properties) are ignored when a packet is
//! encoded for an older version and left at their defaults when one is decoded from it.
//! The fubar extensions (CONNECT `max_recursion`, CONNACK keep-alive payload and alternate
//! server) are plain fields here; `codec::decode`/`codec::encode` own their wire format.

use bytes::Bytes;
use bytestring::ByteString;

/// The protocol level a connection speaks, fixed by its CONNECT.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Protocol {
    /// MQTT 3.1: protocol name `MQIsdp`, level 3.
    V31,
    /// MQTT 3.1.1: protocol name `MQTT`, level 4.
    #[default]
    V311,
    /// MQTT 5.0: protocol name `MQTT`, level 5.
    V5,
}

impl Protocol {
    /// The protocol level byte carried in CONNECT.
    pub fn level(self) -> u8 {
        match self {
            Protocol::V31 => 3,
            Protocol::V311 => 4,
            Protocol::V5 => 5,
        }
    }

    /// The protocol name carried in CONNECT.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::V31 => "MQIsdp",
            Protocol::V311 | Protocol::V5 => "MQTT",
        }
    }
}

/// Quality of service of a message or a subscription.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[repr(u8)]
pub enum QoS {
    /// At most once.
    #[default]
    AtMostOnce = 0,
    /// At least once.
    AtLeastOnce = 1,
    /// Exactly once.
    ExactlyOnce = 2,
}

impl QoS {
    /// Parses the two QoS bits; 3 is not a QoS (`None`).
    pub fn from_u8(v: u8) -> Option<QoS> {
        match v {
            0 => Some(QoS::AtMostOnce),
            1 => Some(QoS::AtLeastOnce),
            2 => Some(QoS::ExactlyOnce),
            _ => None,
        }
    }
}

/// Every MQTT control packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet {
    /// CONNECT (type 1).
    Connect(Box<Connect>),
    /// CONNACK (type 2).
    ConnAck(ConnAck),
    /// PUBLISH (type 3).
    Publish(Publish),
    /// PUBACK (type 4).
    PubAck(PubResp),
    /// PUBREC (type 5).
    PubRec(PubResp),
    /// PUBREL (type 6).
    PubRel(PubResp),
    /// PUBCOMP (type 7).
    PubComp(PubResp),
    /// SUBSCRIBE (type 8).
    Subscribe(Subscribe),
    /// SUBACK (type 9).
    SubAck(SubAck),
    /// UNSUBSCRIBE (type 10).
    Unsubscribe(Unsubscribe),
    /// UNSUBACK (type 11).
    UnsubAck(UnsubAck),
    /// PINGREQ (type 12).
    PingReq,
    /// PINGRESP (type 13).
    PingResp,
    /// DISCONNECT (type 14).
    Disconnect(Disconnect),
    /// AUTH (type 15, MQTT 5 only).
    Auth(Auth),
}

/// CONNECT: the first packet of every connection.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Connect {
    /// Protocol name and level.
    pub protocol: Protocol,
    /// Clean session (3.x) / clean start (5.0).
    pub clean_start: bool,
    /// Keep-alive in seconds requested by the client; 0 disables it.
    pub keep_alive: u16,
    /// Client identifier; may be empty.
    pub client_id: String,
    /// Will message, when the will flag is set.
    pub will: Option<LastWill>,
    /// User name, when its flag is set.
    pub username: Option<String>,
    /// Password, when its flag is set.
    pub password: Option<Bytes>,
    /// fubar extension (3.1/3.1.1 only): `Some` when CONNECT flags bit 0 is set; the u16
    /// appended after all other payload fields.
    pub max_recursion: Option<u16>,
    /// MQTT 5 CONNECT properties.
    pub properties: Properties,
}

/// The will message declared in CONNECT.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LastWill {
    /// Topic the will is published to.
    pub topic: ByteString,
    /// Will payload.
    pub payload: Bytes,
    /// QoS of the will publish.
    pub qos: QoS,
    /// Retain flag of the will publish.
    pub retain: bool,
    /// MQTT 5 will properties.
    pub properties: Properties,
}

/// CONNACK return codes of MQTT 3.1 / 3.1.1 (plus fubar's code 6).
pub mod connack_v3 {
    /// Connection accepted.
    pub const ACCEPTED: u8 = 0;
    /// Unacceptable protocol version.
    pub const UNACCEPTABLE_PROTOCOL: u8 = 1;
    /// Identifier rejected.
    pub const IDENTIFIER_REJECTED: u8 = 2;
    /// Server unavailable.
    pub const SERVER_UNAVAILABLE: u8 = 3;
    /// Bad user name or password.
    pub const BAD_USERNAME_PASSWORD: u8 = 4;
    /// Not authorized.
    pub const NOT_AUTHORIZED: u8 = 5;
    /// fubar extension: use the alternate server named in the payload.
    pub const ALT_SERVER: u8 = 6;
}

/// MQTT 5 reason codes (section 2.4 of the 5.0 specification).
pub mod reason {
    #![allow(missing_docs)]
    pub const SUCCESS: u8 = 0x00;
    pub const GRANTED_QOS_1: u8 = 0x01;
    pub const GRANTED_QOS_2: u8 = 0x02;
    pub const DISCONNECT_WITH_WILL: u8 = 0x04;
    pub const NO_MATCHING_SUBSCRIBERS: u8 = 0x10;
    pub const NO_SUBSCRIPTION_EXISTED: u8 = 0x11;
    pub const CONTINUE_AUTHENTICATION: u8 = 0x18;
    pub const RE_AUTHENTICATE: u8 = 0x19;
    pub const UNSPECIFIED_ERROR: u8 = 0x80;
    pub const MALFORMED_PACKET: u8 = 0x81;
    pub const PROTOCOL_ERROR: u8 = 0x82;
    pub const IMPLEMENTATION_SPECIFIC_ERROR: u8 = 0x83;
    pub const UNSUPPORTED_PROTOCOL_VERSION: u8 = 0x84;
    pub const CLIENT_IDENTIFIER_NOT_VALID: u8 = 0x85;
    pub const BAD_USER_NAME_OR_PASSWORD: u8 = 0x86;
    pub const NOT_AUTHORIZED: u8 = 0x87;
    pub const SERVER_UNAVAILABLE: u8 = 0x88;
    pub const SERVER_BUSY: u8 = 0x89;
    pub const BANNED: u8 = 0x8A;
    pub const SERVER_SHUTTING_DOWN: u8 = 0x8B;
    pub const BAD_AUTHENTICATION_METHOD: u8 = 0x8C;
    pub const KEEP_ALIVE_TIMEOUT: u8 = 0x8D;
    pub const SESSION_TAKEN_OVER: u8 = 0x8E;
    pub const TOPIC_FILTER_INVALID: u8 = 0x8F;
    pub const TOPIC_NAME_INVALID: u8 = 0x90;
    pub const PACKET_IDENTIFIER_IN_USE: u8 = 0x91;
    pub const PACKET_IDENTIFIER_NOT_FOUND: u8 = 0x92;
    pub const RECEIVE_MAXIMUM_EXCEEDED: u8 = 0x93;
    pub const TOPIC_ALIAS_INVALID: u8 = 0x94;
    pub const PACKET_TOO_LARGE: u8 = 0x95;
    pub const MESSAGE_RATE_TOO_HIGH: u8 = 0x96;
    pub const QUOTA_EXCEEDED: u8 = 0x97;
    pub const ADMINISTRATIVE_ACTION: u8 = 0x98;
    pub const PAYLOAD_FORMAT_INVALID: u8 = 0x99;
    pub const RETAIN_NOT_SUPPORTED: u8 = 0x9A;
    pub const QOS_NOT_SUPPORTED: u8 = 0x9B;
    pub const USE_ANOTHER_SERVER: u8 = 0x9C;
    pub const SERVER_MOVED: u8 = 0x9D;
    pub const SHARED_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0x9E;
    pub const CONNECTION_RATE_EXCEEDED: u8 = 0x9F;
    pub const MAXIMUM_CONNECT_TIME: u8 = 0xA0;
    pub const SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED: u8 = 0xA1;
    pub const WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED: u8 = 0xA2;
}

/// CONNACK. For 3.x `code` is a return code (`connack_v3`), for 5.0 a reason code.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnAck {
    /// Session present flag.
    pub session_present: bool,
    /// Return code (3.x) or reason code (5.0).
    pub code: u8,
    /// fubar extension (3.x, code 6): the alternate server and the max_recursion to use next.
    pub alt_server: Option<AltServer>,
    /// fubar extension (3.x): bytes after the defined fields. The keep-alive negotiation
    /// payload is two bytes here (u16 BE seconds); see [`ConnAck::negotiated_keep_alive`].
    pub extra: Bytes,
    /// MQTT 5 CONNACK properties.
    pub properties: Properties,
}

impl ConnAck {
    /// The keep-alive suggested by a fubar server in an accepted 3.x CONNACK, if any.
    pub fn negotiated_keep_alive(&self) -> Option<u16> {
        match (self.code, self.extra.as_ref()) {
            (connack_v3::ACCEPTED, [hi, lo]) => Some(u16::from_be_bytes([*hi, *lo])),
            _ => None,
        }
    }
}

/// Payload of the fubar alternate-server CONNACK (code 6).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AltServer {
    /// Address of the server to connect to instead, e.g. `tcp://10.0.0.2:1883`.
    pub address: String,
    /// The max_recursion the client should send to that server.
    pub max_recursion: u16,
}

/// PUBLISH.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Publish {
    /// DUP flag.
    pub dup: bool,
    /// QoS of this delivery.
    pub qos: QoS,
    /// RETAIN flag.
    pub retain: bool,
    /// Topic name (may be empty in 5.0 when a topic alias is used).
    pub topic: ByteString,
    /// Packet identifier; `Some` exactly when `qos > 0`.
    pub packet_id: Option<u16>,
    /// Application payload: a slice of the read buffer, shared, never copied.
    pub payload: Bytes,
    /// MQTT 5 PUBLISH properties.
    pub properties: Properties,
}

/// PUBACK, PUBREC, PUBREL and PUBCOMP: a packet id plus (5.0) a reason code and properties.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PubResp {
    /// Packet identifier.
    pub packet_id: u16,
    /// Reason code (5.0 only; 0 = success).
    pub reason: u8,
    /// MQTT 5 properties (reason string, user properties).
    pub properties: Properties,
}

impl PubResp {
    /// A success response for `packet_id`.
    pub fn new(packet_id: u16) -> Self {
        PubResp {
            packet_id,
            ..Default::default()
        }
    }
}

/// Subscription options of one SUBSCRIBE entry (3.x uses only `qos`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SubscriptionOptions {
    /// Maximum QoS requested.
    pub qos: QoS,
    /// 5.0: do not deliver the subscriber's own publishes.
    pub no_local: bool,
    /// 5.0: keep the RETAIN flag as published.
    pub retain_as_published: bool,
    /// 5.0: 0 = send retained on subscribe, 1 = only if new, 2 = never.
    pub retain_handling: u8,
}

/// One topic filter with its options in a SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubscribeTopic {
    /// Topic filter, possibly with `+`/`#` wildcards.
    pub filter: String,
    /// Options requested for it.
    pub options: SubscriptionOptions,
}

/// SUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// At least one topic filter.
    pub topics: Vec<SubscribeTopic>,
    /// MQTT 5 properties (subscription identifier, user properties).
    pub properties: Properties,
}

/// SUBACK: one return/reason code per requested filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubAck {
    /// Packet identifier of the SUBSCRIBE.
    pub packet_id: u16,
    /// Granted QoS (0..=2) or failure (0x80 / 5.0 reason codes), in request order.
    pub return_codes: Vec<u8>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

/// UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Unsubscribe {
    /// Packet identifier.
    pub packet_id: u16,
    /// At least one topic filter.
    pub filters: Vec<String>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

/// UNSUBACK.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UnsubAck {
    /// Packet identifier of the UNSUBSCRIBE.
    pub packet_id: u16,
    /// 5.0 reason codes, one per filter (empty and not encoded for 3.x).
    pub reason_codes: Vec<u8>,
    /// MQTT 5 properties.
    pub properties: Properties,
}

/// DISCONNECT (3.x has no fields; 5.0 has a reason code and properties).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Disconnect {
    /// Reason code (5.0 only; 0 = normal disconnection).
    pub reason: u8,
    /// MQTT 5 properties.
    pub properties: Properties,
}

/// AUTH (5.0 only).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Auth {
    /// Reason code.
    pub reason: u8,
    /// Properties (authentication method and data).
    pub properties: Properties,
}

/// MQTT 5 properties. One struct for every packet kind; the decoder rejects a property that
/// the packet kind does not allow, the encoder writes only the ones that are set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Properties {
    /// 0x01 Payload Format Indicator.
    pub payload_format_indicator: Option<u8>,
    /// 0x02 Message Expiry Interval (seconds).
    pub message_expiry_interval: Option<u32>,
    /// 0x03 Content Type.
    pub content_type: Option<String>,
    /// 0x08 Response Topic.
    pub response_topic: Option<String>,
    /// 0x09 Correlation Data.
    pub correlation_data: Option<Bytes>,
    /// 0x0B Subscription Identifier (several in a PUBLISH, at most one in SUBSCRIBE).
    pub subscription_identifiers: Vec<u32>,
    /// 0x11 Session Expiry Interval (seconds).
    pub session_expiry_interval: Option<u32>,
    /// 0x12 Assigned Client Identifier.
    pub assigned_client_identifier: Option<String>,
    /// 0x13 Server Keep Alive (seconds).
    pub server_keep_alive: Option<u16>,
    /// 0x15 Authentication Method.
    pub authentication_method: Option<String>,
    /// 0x16 Authentication Data.
    pub authentication_data: Option<Bytes>,
    /// 0x17 Request Problem Information.
    pub request_problem_information: Option<u8>,
    /// 0x18 Will Delay Interval (seconds).
    pub will_delay_interval: Option<u32>,
    /// 0x19 Request Response Information.
    pub request_response_information: Option<u8>,
    /// 0x1A Response Information.
    pub response_information: Option<String>,
    /// 0x1C Server Reference.
    pub server_reference: Option<String>,
    /// 0x1F Reason String.
    pub reason_string: Option<String>,
    /// 0x21 Receive Maximum.
    pub receive_maximum: Option<u16>,
    /// 0x22 Topic Alias Maximum.
    pub topic_alias_maximum: Option<u16>,
    /// 0x23 Topic Alias.
    pub topic_alias: Option<u16>,
    /// 0x24 Maximum QoS.
    pub maximum_qos: Option<u8>,
    /// 0x25 Retain Available.
    pub retain_available: Option<u8>,
    /// 0x26 User Property (name, value), order preserved, repeats allowed.
    pub user_properties: Vec<(String, String)>,
    /// 0x27 Maximum Packet Size.
    pub maximum_packet_size: Option<u32>,
    /// 0x28 Wildcard Subscription Available.
    pub wildcard_subscription_available: Option<u8>,
    /// 0x29 Subscription Identifier Available.
    pub subscription_identifier_available: Option<u8>,
    /// 0x2A Shared Subscription Available.
    pub shared_subscription_available: Option<u8>,
}

impl Properties {
    /// True when no property is set.
    pub fn is_empty(&self) -> bool {
        *self == Properties::default()
    }
}
