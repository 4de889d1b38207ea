//! Typed configuration.
//!
//! Sources, later ones win: the defaults compiled in from `config/fubar.toml`, an optional
//! operator file (`--config`), environment variables `FUBAR_<SECTION>__<KEY>`, and the
//! `fubar run` flags (applied by the caller through [`Overrides`]). Unknown keys are
//! rejected and [`Config::validate`] names the key of every bad value.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// The default configuration file, compiled in.
pub const DEFAULT_TOML: &str = include_str!("../config/fubar.toml");

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A source could not be read or parsed, or a key is unknown or has the wrong type.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is out of range; the first field names the key.
    #[error("configuration key `{0}`: {1}")]
    Invalid(&'static str, String),
}

/// The whole configuration of one node.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `[node]`: identity, directories, logging, threads.
    pub node: NodeConfig,
    /// `[mqtt]`: the MQTT listener and protocol limits.
    pub mqtt: MqttConfig,
    /// `[session]`: per-client session limits and timers.
    pub session: SessionConfig,
    /// `[auth]`: accounts, the IP access list, topic permissions, connect rate limit.
    pub auth: AuthConfig,
    /// `[tls]`: the MQTTS listener.
    pub tls: TlsConfig,
    /// `[http]`: the HTTP server (admin API, `/metrics`).
    pub http: HttpConfig,
    /// `[store]`: durable state on disk.
    pub store: StoreConfig,
}

/// `[node]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Node name.
    pub name: String,
    /// Directory for persistent state.
    pub data_dir: PathBuf,
    /// Directory for log files.
    pub log_dir: PathBuf,
    /// Minimum log level.
    pub log_level: String,
    /// Session worker threads; 0 = one per core.
    pub workers: usize,
}

/// `[mqtt]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MqttConfig {
    /// Bind address of the TCP listener.
    pub bind: String,
    /// Port of the TCP listener (0 = any free port).
    pub port: u16,
    /// Connection cap for this node.
    pub max_connections: usize,
    /// Largest inbound packet in bytes.
    pub max_packet_size: usize,
    /// Seconds allowed before CONNECT.
    pub connect_timeout: u64,
    /// Keep-alive clamp range [min, max] in seconds.
    pub valid_keep_alive: [u16; 2],
    /// Maximum topic filters per client.
    pub max_subscriptions: usize,
    /// Maximum topic name/filter length in bytes.
    pub max_topic_length: usize,
    /// Maximum topic levels.
    pub max_topic_levels: usize,
    /// Milliseconds without traffic after which a plain-TCP connection parks (its task ends
    /// and the socket waits in its worker's readiness table); 0 never parks.
    pub park_after_ms: u64,
}

/// `[session]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Seconds an offline persistent session lives on.
    pub max_age: u64,
    /// Outbound QoS 1/2 inflight window.
    pub max_inflight: u16,
    /// Seconds before an unacknowledged message is resent to a 3.x client.
    pub retry_interval: u64,
    /// Outbound queue cap in messages.
    pub max_queued_messages: usize,
    /// Outbound queue cap in payload bytes.
    pub max_queued_bytes: usize,
    /// Inbound QoS 2 messages awaiting PUBREL.
    pub max_inbound_pending: u16,
    /// What happens to a QoS 1/2 message for a session whose queue is full.
    pub queue_full: QueueFull,
    /// Seconds a session with nothing to do keeps its actor before it hibernates (0: never).
    pub hibernate_after: u64,
}

/// Policy for a QoS 1/2 message that does not fit in a session's queue.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum QueueFull {
    /// Refuse it for that session: counted in `dropped`, logged, deleted from the store.
    /// The publisher is still acknowledged (other subscribers may have it).
    Drop,
    /// Keep it (the queue grows past its limit) and hold the Topic, and so its publishers,
    /// until the session's queue is below its limit again or the session ends.
    Backpressure,
}

/// `[store]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// `"strict"`: acknowledge a publisher after the fsync; `"relaxed"`: once queued.
    pub durability: crate::store::Durability,
    /// Most write operations in one group commit (one fsync).
    pub commit_batch: usize,
    /// Microseconds the store thread waits for more writes to join a group commit.
    pub commit_delay_us: u64,
    /// Publish-path write requests waiting for the store thread before publishers wait.
    pub max_pending: usize,
    /// sled page cache in bytes.
    pub cache_bytes: u64,
}

impl StoreConfig {
    /// The store options these settings describe.
    pub fn options(&self) -> crate::store::Options {
        crate::store::Options {
            durability: self.durability,
            commit_batch: self.commit_batch,
            commit_delay: std::time::Duration::from_micros(self.commit_delay_us),
            max_pending: self.max_pending,
            cache_bytes: self.cache_bytes,
        }
    }
}

/// `[auth]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Require credentials from clients that no `allow` entry trusts.
    pub enabled: bool,
    /// Addresses / CIDR ranges whose clients connect without credentials.
    pub allow: Vec<String>,
    /// Addresses / CIDR ranges whose sockets are closed right after accept.
    pub deny: Vec<String>,
    /// Topic rules for every client, tried after the account's own rules.
    pub rules: Vec<String>,
    /// `"allow"` or `"deny"`: what no rule decides.
    pub default_policy: String,
    /// Disconnect a 3.x client whose PUBLISH was refused (MQTT 5 clients get a reason code).
    pub disconnect_on_denied: bool,
    /// argon2id memory cost of new password hashes, KiB.
    pub hash_memory_kib: u32,
    /// argon2id passes of new password hashes.
    pub hash_iterations: u32,
    /// argon2id lanes of new password hashes.
    pub hash_parallelism: u32,
    /// Password verifications running at once (each on a blocking thread).
    pub max_concurrent_verifications: usize,
    /// New connections per second allowed from one untrusted source address; 0 = no limit.
    pub connect_rate: f64,
    /// Connections a source may open at once before `connect_rate` applies.
    pub connect_burst: u32,
}

/// `[tls]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// Port of the MQTTS listener (0 = any free port); the listener runs only when
    /// `cert_file` and `key_file` are set.
    pub port: u16,
    /// Server certificate chain (PEM), leaf first.
    pub cert_file: PathBuf,
    /// Private key of the certificate (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// CA certificates (PEM) that client certificates must chain to; set = mTLS.
    pub client_ca_file: PathBuf,
}

impl TlsConfig {
    /// True when the MQTTS listener should run.
    pub fn enabled(&self) -> bool {
        !self.cert_file.as_os_str().is_empty() && !self.key_file.as_os_str().is_empty()
    }
}

/// `[http]` section.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// Bind address of the HTTP server.
    pub bind: String,
    /// Port of the HTTP server (0 = any free port).
    pub port: u16,
    /// Bearer token of the admin API; empty = read or create `<node.data_dir>/admin.token`.
    pub token: String,
}

/// Shortest `http.token` accepted, in characters.
pub const MIN_TOKEN_LEN: usize = 16;

/// Values given on the command line; `None` keeps the configured value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--node`.
    pub node: Option<String>,
    /// `--mqtt-port`.
    pub mqtt_port: Option<u16>,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--mqtts-port`.
    pub mqtts_port: Option<u16>,
    /// `--http-port`.
    pub http_port: Option<u16>,
}

impl Default for Config {
    fn default() -> Self {
        // The compiled-in file is part of the build and covered by a unit test, so this
        // cannot fail at run time.
        Config::from_sources(None, false, &Overrides::default())
            .unwrap_or_else(|e| panic!("built-in config/fubar.toml is invalid: {e}"))
    }
}

impl Config {
    /// Loads defaults, then `file` (if any), then `FUBAR_*` environment variables (when
    /// `use_env`), then `overrides`, and validates the result.
    pub fn from_sources(
        file: Option<&Path>,
        use_env: bool,
        overrides: &Overrides,
    ) -> Result<Config, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path.to_path_buf()).format(config::FileFormat::Toml),
            );
        }
        if use_env {
            // Only FUBAR_<SECTION>__<KEY> names are configuration keys; other FUBAR_*
            // variables (FUBAR_CONFIG) belong to the command line.
            let vars: config::Map<String, String> = std::env::vars()
                .filter(|(k, _)| k.starts_with("FUBAR_") && k.contains("__"))
                .collect();
            builder = builder.add_source(
                config::Environment::with_prefix("FUBAR")
                    .prefix_separator("_")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("mqtt.valid_keep_alive")
                    .with_list_parse_key("auth.allow")
                    .with_list_parse_key("auth.deny")
                    .with_list_parse_key("auth.rules")
                    .try_parsing(true)
                    .source(Some(vars)),
            );
        }
        let mut cfg: Config = builder.build()?.try_deserialize()?;
        if let Some(node) = &overrides.node {
            cfg.node.name = node.clone();
        }
        if let Some(port) = overrides.mqtt_port {
            cfg.mqtt.port = port;
        }
        if let Some(dir) = &overrides.data_dir {
            cfg.node.data_dir = dir.clone();
        }
        if let Some(port) = overrides.mqtts_port {
            cfg.tls.port = port;
        }
        if let Some(port) = overrides.http_port {
            cfg.http.port = port;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    /// The configuration as TOML text, in the layout of `config/fubar.toml`.
    pub fn to_toml(&self) -> String {
        // Every field is a plain string, number, path or array: serialization cannot fail.
        toml::to_string(self).unwrap_or_else(|e| format!("# cannot render configuration: {e}\n"))
    }

    /// Checks every value that serde's types do not already constrain.
    pub fn validate(&self) -> Result<(), ConfigError> {
        fn bad(key: &'static str, msg: impl Into<String>) -> Result<(), ConfigError> {
            Err(ConfigError::Invalid(key, msg.into()))
        }
        if self.node.name.is_empty() {
            return bad("node.name", "must not be empty");
        }
        if !matches!(
            self.node.log_level.as_str(),
            "trace" | "debug" | "info" | "warning" | "error" | "critical"
        ) {
            return bad(
                "node.log_level",
                "must be one of trace, debug, info, warning, error, critical",
            );
        }
        if self.mqtt.bind.parse::<std::net::IpAddr>().is_err() {
            return bad(
                "mqtt.bind",
                format!("{:?} is not an IP address", self.mqtt.bind),
            );
        }
        if self.mqtt.max_connections == 0 {
            return bad("mqtt.max_connections", "must be at least 1");
        }
        if !(64..=268_435_460).contains(&self.mqtt.max_packet_size) {
            return bad(
                "mqtt.max_packet_size",
                "must be between 64 and 268435460 bytes",
            );
        }
        if self.mqtt.connect_timeout == 0 {
            return bad("mqtt.connect_timeout", "must be at least 1 second");
        }
        let [min, max] = self.mqtt.valid_keep_alive;
        if min == 0 || min > max {
            return bad(
                "mqtt.valid_keep_alive",
                "must be [min, max] with 0 < min <= max",
            );
        }
        if self.mqtt.max_topic_length == 0 || self.mqtt.max_topic_length > 65535 {
            return bad("mqtt.max_topic_length", "must be between 1 and 65535");
        }
        if self.mqtt.max_topic_levels == 0 {
            return bad("mqtt.max_topic_levels", "must be at least 1");
        }
        if self.session.max_inflight == 0 {
            return bad("session.max_inflight", "must be at least 1");
        }
        if self.session.retry_interval == 0 {
            return bad("session.retry_interval", "must be at least 1 second");
        }
        if self.session.max_queued_messages == 0 {
            return bad("session.max_queued_messages", "must be at least 1");
        }
        if self.session.max_inbound_pending == 0 {
            return bad("session.max_inbound_pending", "must be at least 1");
        }
        crate::auth::Settings::from_config(&self.auth)?;
        if self.tls.cert_file.as_os_str().is_empty() != self.tls.key_file.as_os_str().is_empty() {
            return bad(
                "tls.key_file",
                "tls.cert_file and tls.key_file must be set together",
            );
        }
        if self.http.bind.parse::<std::net::IpAddr>().is_err() {
            return bad(
                "http.bind",
                format!("{:?} is not an IP address", self.http.bind),
            );
        }
        let token = &self.http.token;
        if !token.is_empty()
            && (token.chars().count() < MIN_TOKEN_LEN
                || token.chars().any(|c| c.is_whitespace() || c.is_control()))
        {
            return bad(
                "http.token",
                format!("must be empty or at least {MIN_TOKEN_LEN} characters without spaces"),
            );
        }
        if self.store.commit_batch == 0 {
            return bad("store.commit_batch", "must be at least 1");
        }
        if self.store.commit_delay_us > 1_000_000 {
            return bad("store.commit_delay_us", "must be at most 1000000 (1 s)");
        }
        if self.store.max_pending == 0 {
            return bad("store.max_pending", "must be at least 1");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_load_and_validate() {
        let cfg = Config::from_sources(None, false, &Overrides::default()).unwrap();
        assert_eq!(cfg.mqtt.port, 1883);
        assert_eq!(cfg.mqtt.valid_keep_alive, [1800, 3600]);
        assert_eq!(cfg.session.max_age, 172800);
        assert_eq!(cfg.store.durability, crate::store::Durability::Strict);
    }

    #[test]
    fn durability_is_strict_or_relaxed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.toml");
        std::fs::write(&path, "[store]\ndurability = \"relaxed\"\n").unwrap();
        let cfg = Config::from_sources(Some(&path), false, &Overrides::default()).unwrap();
        assert_eq!(cfg.store.durability, crate::store::Durability::Relaxed);
        std::fs::write(&path, "[store]\ndurability = \"sometimes\"\n").unwrap();
        let err = Config::from_sources(Some(&path), false, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("sometimes"), "{err}");
    }

    #[test]
    fn overrides_win() {
        let o = Overrides {
            node: Some("n2".into()),
            mqtt_port: Some(0),
            data_dir: Some("/tmp/x".into()),
            mqtts_port: Some(8884),
            http_port: Some(0),
        };
        let cfg = Config::from_sources(None, false, &o).unwrap();
        assert_eq!(cfg.node.name, "n2");
        assert_eq!(cfg.mqtt.port, 0);
        assert_eq!(cfg.node.data_dir, PathBuf::from("/tmp/x"));
        assert_eq!(cfg.tls.port, 8884);
        assert_eq!(cfg.http.port, 0);
    }

    #[test]
    fn http_defaults_and_token_check() {
        let cfg = Config::default();
        assert_eq!(cfg.http.bind, "0.0.0.0");
        assert_eq!(cfg.http.port, 8080);
        assert!(cfg.http.token.is_empty());
        let mut bad = cfg.clone();
        bad.http.token = "short".into();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("http.token"), "{err}");
        let mut bad = cfg.clone();
        bad.http.bind = "localhost".into();
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("http.bind"), "{err}");
        let mut good = cfg;
        good.http.token = "0123456789abcdef0123".into();
        good.validate().unwrap();
    }

    #[test]
    fn auth_defaults_trust_loopback_only() {
        let cfg = Config::default();
        assert!(cfg.auth.enabled);
        assert_eq!(cfg.auth.allow, vec!["127.0.0.1", "::1"]);
        assert!(!cfg.tls.enabled());
        let mut bad = cfg.clone();
        bad.auth.allow.push("10.0.0.0/40".into());
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("auth.allow"), "{err}");
        let mut bad = cfg;
        bad.auth.rules.push("allow fly #".into());
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("auth.rules"), "{err}");
    }

    #[test]
    fn invalid_value_names_its_key() {
        let mut cfg = Config::default();
        cfg.mqtt.valid_keep_alive = [10, 5];
        let err = cfg.validate().unwrap_err().to_string();
        assert!(err.contains("mqtt.valid_keep_alive"), "{err}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let dir = std::env::temp_dir().join(format!("fubar-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("bad.toml");
        std::fs::write(&path, "[mqtt]\nprot = 1\n").unwrap();
        let err = Config::from_sources(Some(&path), false, &Overrides::default()).unwrap_err();
        assert!(err.to_string().contains("prot"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
