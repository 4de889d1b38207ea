//! Who may connect and what they may do: accounts, the IP access list, topic permissions
//! and the connect rate limit.
//!
//! [`Security`] is one per node, created by `Broker::start` from `[auth]` and shared
//! (`Arc`) by the listeners and the [`BrokerHandle`](crate::BrokerHandle) (which exposes it
//! to tests, the admin API and the CLI through [`BrokerHandle::security`]). The
//! transports ask it, for every accepted socket, whether the peer may go on
//! ([`Security::admit`]: `deny` entries and the rate limit close the socket before a byte
//! is read), and, once CONNECT arrived, to authenticate it ([`Gate::authenticate`]):
//!
//! - a peer an `allow` entry covers needs no credentials (if it sends a username, the
//!   password must still match, so it cannot pose as someone else);
//! - any other peer must send a username and password that match an account; a wrong
//!   password and an unknown user are refused alike, after the same work (an unknown user
//!   is verified against a dummy hash), with CONNACK 4 (MQTT 5: 0x86);
//! - with `auth.enabled = false` everyone gets in as anonymous with no topic rules.
//!
//! Password checks are slow by design, so they run on tokio's blocking pool, at most
//! `auth.max_concurrent_verifications` at once.
//!
//! The result is a [`Principal`]: the username (owner of the sessions it opens; a client
//! id can only be taken over by the same owner) and its topic rules, compiled per client
//! id into [`Permissions`] that the Session checks on PUBLISH and SUBSCRIBE.
//!
//! Persistence is a thin layer outside: [`Security::load`] takes stored
//! [`AccountRecord`]s and [`AclRecord`]s, and every change method returns the record to
//! write (or says that one was deleted).
//!
//! [`BrokerHandle::security`]: crate::BrokerHandle::security

pub mod accounts;
pub mod acl;
pub mod password;
pub mod rate;
pub mod rules;

pub use accounts::{AccountError, AccountInfo, AccountRecord, Accounts};
pub use acl::{AclRecord, AclVerdict, IpAcl, IpNet};
pub use password::HashCost;
pub use rules::{Access, Permissions, TopicRule};

use crate::codec::Connect;
use crate::config::{AuthConfig, ConfigError};
use rate::{RateLimiter, RateVerdict};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// `[auth]` checked and parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Credentials required from untrusted peers.
    pub enabled: bool,
    /// ACL entries from the configuration.
    pub acl: Vec<(IpNet, AclVerdict)>,
    /// Rules for every client, after the account's.
    pub rules: Arc<[TopicRule]>,
    /// What no rule decides.
    pub default_policy: Access,
    /// Disconnect 3.x clients on a refused PUBLISH.
    pub disconnect_on_denied: bool,
    /// Cost of new hashes.
    pub cost: HashCost,
    /// Concurrent password checks.
    pub max_concurrent_verifications: usize,
    /// Connections per second per untrusted source (0 = off).
    pub connect_rate: f64,
    /// Burst of the rate limit.
    pub connect_burst: u32,
}

impl Settings {
    /// Parses and checks `[auth]`; errors name the key.
    pub fn from_config(cfg: &AuthConfig) -> Result<Settings, ConfigError> {
        let mut acl = Vec::new();
        for (key, list, verdict) in [
            ("auth.allow", &cfg.allow, AclVerdict::Allow),
            ("auth.deny", &cfg.deny, AclVerdict::Deny),
        ] {
            for entry in list {
                let net = entry
                    .parse::<IpNet>()
                    .map_err(|e| ConfigError::Invalid(key, e.to_string()))?;
                acl.push((net, verdict));
            }
        }
        let rules = cfg
            .rules
            .iter()
            .map(|r| r.parse::<TopicRule>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::Invalid("auth.rules", e.to_string()))?;
        let default_policy = match cfg.default_policy.as_str() {
            "allow" => Access::Allow,
            "deny" => Access::Deny,
            _ => {
                return Err(ConfigError::Invalid(
                    "auth.default_policy",
                    "must be \"allow\" or \"deny\"".into(),
                ))
            }
        };
        let cost = HashCost {
            memory_kib: cfg.hash_memory_kib,
            iterations: cfg.hash_iterations,
            parallelism: cfg.hash_parallelism,
        };
        password::check_cost(cost)
            .map_err(|e| ConfigError::Invalid("auth.hash_memory_kib", e.to_string()))?;
        if cfg.max_concurrent_verifications == 0 {
            return Err(ConfigError::Invalid(
                "auth.max_concurrent_verifications",
                "must be at least 1".into(),
            ));
        }
        if !(cfg.connect_rate >= 0.0 && cfg.connect_rate.is_finite()) {
            return Err(ConfigError::Invalid(
                "auth.connect_rate",
                "must be a number >= 0".into(),
            ));
        }
        if cfg.connect_burst == 0 {
            return Err(ConfigError::Invalid(
                "auth.connect_burst",
                "must be at least 1".into(),
            ));
        }
        Ok(Settings {
            enabled: cfg.enabled,
            acl,
            rules: Arc::from(rules),
            default_policy,
            disconnect_on_denied: cfg.disconnect_on_denied,
            cost,
            max_concurrent_verifications: cfg.max_concurrent_verifications,
            connect_rate: cfg.connect_rate,
            connect_burst: cfg.connect_burst,
        })
    }
}

/// Why an account change failed.
pub type SecurityError = AccountError;

/// Why a socket is closed right after accept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    /// A `deny` entry covers the peer.
    Denied,
    /// The peer connects faster than `auth.connect_rate`; `first` for the first refusal of
    /// a streak (the one worth logging).
    RateLimited {
        /// First refusal since the source was last under the limit.
        first: bool,
    },
}

/// Why CONNECT credentials were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AuthFailure {
    /// Unknown user, wrong or missing password (CONNACK 4 / 0x86).
    #[error("bad username or password")]
    BadCredentials,
    /// No verification slot within the time allowed (CONNACK 3 / 0x88).
    #[error("authentication unavailable")]
    Unavailable,
}

/// The node's security state; see the module documentation.
#[derive(Debug)]
pub struct Security {
    settings: Settings,
    accounts: RwLock<Accounts>,
    acl: RwLock<IpAcl>,
    limiter: Mutex<RateLimiter>,
    verifications: Arc<Semaphore>,
    /// Hash checked for unknown users, so they cost what a known user costs.
    dummy_hash: String,
    /// The configured rules compiled once, when they name no `%c`/`%u`: the permissions
    /// of every client without rules of its own, shared instead of compiled per
    /// connection.
    shared: Option<Permissions>,
}

impl Security {
    /// Security from the configuration alone (no stored accounts or ACL entries).
    pub fn new(cfg: &AuthConfig) -> Result<Security, ConfigError> {
        Security::load(cfg, [], [])
    }

    /// Security from the configuration plus stored records. Stored ACL entries are
    /// applied after the configured ones, so they win for the same range.
    pub fn load(
        cfg: &AuthConfig,
        accounts: impl IntoIterator<Item = (String, AccountRecord)>,
        acl: impl IntoIterator<Item = (IpNet, AclRecord)>,
    ) -> Result<Security, ConfigError> {
        let settings = Settings::from_config(cfg)?;
        let configured = settings
            .acl
            .iter()
            .map(|(net, verdict)| (*net, AclRecord { verdict: *verdict }));
        let acl = IpAcl::load(configured.chain(acl));
        let dummy_hash = password::hash(b"fubar dummy password", settings.cost)
            .map_err(|e| ConfigError::Invalid("auth.hash_memory_kib", e.to_string()))?;
        let shared = Permissions::compile_shared(&settings.rules, settings.default_policy)
            .map(|p| p.with_disconnect_on_denied(settings.disconnect_on_denied));
        Ok(Security {
            shared,
            limiter: Mutex::new(RateLimiter::new(
                settings.connect_rate,
                settings.connect_burst,
            )),
            verifications: Arc::new(Semaphore::new(settings.max_concurrent_verifications)),
            accounts: RwLock::new(Accounts::load(accounts)),
            acl: RwLock::new(acl),
            dummy_hash,
            settings,
        })
    }

    /// The parsed `[auth]` settings.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Decides about a freshly accepted socket from `peer`: `Ok` with the [`Gate`] its
    /// CONNECT must pass, or the reason to close it at once.
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Gate, Rejection> {
        let ip = peer.ip();
        let verdict = read(&self.acl).lookup(ip);
        if verdict == Some(AclVerdict::Deny) {
            return Err(Rejection::Denied);
        }
        let trusted = verdict == Some(AclVerdict::Allow);
        if !trusted {
            let limited = lock(&self.limiter).check(ip, Instant::now());
            match limited {
                RateVerdict::Pass => {}
                RateVerdict::FirstRefusal => return Err(Rejection::RateLimited { first: true }),
                RateVerdict::Refused => return Err(Rejection::RateLimited { first: false }),
            }
        }
        Ok(Gate {
            security: self.clone(),
            trusted,
        })
    }

    /// Creates or replaces an account. Hashes the password (tens of milliseconds with the
    /// default cost: call it from a blocking context). Returns the record to store.
    pub fn set_account(
        &self,
        username: &str,
        password: &[u8],
        rules: Vec<TopicRule>,
    ) -> Result<AccountRecord, SecurityError> {
        // Hash outside the lock: validation first, then one insert.
        accounts::validate_username(username)?;
        let mut scratch = Accounts::default();
        let record = scratch.set(username, password, rules, self.settings.cost)?;
        write(&self.accounts).put(username, record.clone());
        Ok(record)
    }

    /// Puts a stored or replicated account record as it is.
    pub fn put_account(&self, username: &str, record: AccountRecord) {
        write(&self.accounts).put(username, record);
    }

    /// Replaces the rules of an account; returns the record to store.
    pub fn set_rules(
        &self,
        username: &str,
        rules: Vec<TopicRule>,
    ) -> Result<AccountRecord, SecurityError> {
        write(&self.accounts).set_rules(username, rules)
    }

    /// Deletes an account; `true` if it existed (delete the stored record too).
    pub fn delete_account(&self, username: &str) -> bool {
        write(&self.accounts).remove(username)
    }

    /// An account without its hash.
    pub fn account(&self, username: &str) -> Option<AccountInfo> {
        let accounts = read(&self.accounts);
        accounts.get(username).map(|a| AccountInfo {
            username: username.to_string(),
            rules: a.rules.to_vec(),
        })
    }

    /// The stored form of an account (with its hash).
    pub fn account_record(&self, username: &str) -> Option<AccountRecord> {
        read(&self.accounts).record(username)
    }

    /// Every account without hashes, by username.
    pub fn accounts(&self) -> Vec<AccountInfo> {
        read(&self.accounts).list()
    }

    /// Sets the ACL entry of a range; returns the record to store.
    pub fn set_acl(&self, net: IpNet, verdict: AclVerdict) -> AclRecord {
        write(&self.acl).set(net, verdict)
    }

    /// Removes the ACL entry of a range; `true` if there was one.
    pub fn delete_acl(&self, net: &IpNet) -> bool {
        write(&self.acl).remove(net)
    }

    /// The verdict for one address (most specific entry), if any entry covers it.
    pub fn acl_lookup(&self, ip: IpAddr) -> Option<AclVerdict> {
        read(&self.acl).lookup(ip)
    }

    /// Every ACL entry, in address order.
    pub fn acl(&self) -> Vec<(IpNet, AclVerdict)> {
        read(&self.acl).entries().collect()
    }

    /// Checks a password against an account (or the dummy hash), on the blocking pool,
    /// within `limit`.
    async fn verify(
        &self,
        username: &str,
        password: Option<&[u8]>,
        limit: Duration,
    ) -> Result<bool, AuthFailure> {
        let (hash, known) = match read(&self.accounts).get(username) {
            Some(account) => (account.password_hash.clone(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let has_password = password.is_some();
        let password = password.unwrap_or_default().to_vec();
        let semaphore = self.verifications.clone();
        let work = async move {
            let _permit = semaphore.acquire_owned().await.ok()?;
            tokio::task::spawn_blocking(move || password::verify(&password, &hash))
                .await
                .ok()
        };
        match tokio::time::timeout(limit, work).await {
            Ok(Some(matched)) => Ok(matched && known && has_password),
            Ok(None) | Err(_) => Err(AuthFailure::Unavailable),
        }
    }
}

/// Poisoning cannot leave these tables half-changed (every change is one insert or remove),
/// so a poisoned lock is used as it is.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write().unwrap_or_else(PoisonError::into_inner)
}

fn lock<T>(lock: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    lock.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An admitted socket's way through authentication.
#[derive(Debug, Clone)]
pub struct Gate {
    security: Arc<Security>,
    /// An `allow` entry covers the peer.
    trusted: bool,
}

impl Gate {
    /// True when an `allow` entry covers the peer.
    pub fn trusted(&self) -> bool {
        self.trusted
    }

    /// Checks the CONNECT credentials within `limit`; see the module documentation.
    pub async fn authenticate(
        &self,
        connect: &Connect,
        limit: Duration,
    ) -> Result<Principal, AuthFailure> {
        let settings = &self.security.settings;
        if !settings.enabled {
            return Ok(Principal::anonymous(None, settings, None));
        }
        let username = match connect.username.as_deref() {
            None if self.trusted => {
                let shared = self.security.shared.clone();
                return Ok(Principal::anonymous(
                    Some(settings.rules.clone()),
                    settings,
                    shared,
                ));
            }
            // Untrusted peers are looked up even without a username (as ""), so a refusal
            // always costs one verification.
            None => "",
            Some(name) => name,
        };
        let password = connect.password.as_deref();
        if !self.security.verify(username, password, limit).await? {
            return Err(AuthFailure::BadCredentials);
        }
        let own = read(&self.security.accounts)
            .get(username)
            .map(|a| a.rules.clone())
            .unwrap_or_else(|| Arc::from(Vec::new()));
        let shared = if own.is_empty() {
            self.security.shared.clone()
        } else {
            None
        };
        Ok(Principal {
            username: Some(Arc::from(username)),
            own_rules: own,
            rules: Some(settings.rules.clone()),
            shared,
            default_policy: settings.default_policy,
            disconnect_on_denied: settings.disconnect_on_denied,
        })
    }
}

/// Who a connection is, once authenticated.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account; `None` for an anonymous (trusted or auth-disabled) client.
    username: Option<Arc<str>>,
    /// The account's rules.
    own_rules: Arc<[TopicRule]>,
    /// The configured rules; `None` = no rules at all (authentication disabled).
    rules: Option<Arc<[TopicRule]>>,
    /// `rules` compiled once for every client, when this one has no rules of its own and
    /// the configured ones name no `%c`/`%u`.
    shared: Option<Permissions>,
    default_policy: Access,
    disconnect_on_denied: bool,
}

impl Principal {
    fn anonymous(
        rules: Option<Arc<[TopicRule]>>,
        settings: &Settings,
        shared: Option<Permissions>,
    ) -> Principal {
        Principal {
            username: None,
            own_rules: Arc::from(Vec::new()),
            rules,
            shared,
            default_policy: settings.default_policy,
            disconnect_on_denied: settings.disconnect_on_denied,
        }
    }

    /// The authenticated username, `None` for anonymous clients.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The owner recorded on the sessions this connection opens.
    pub fn owner(&self) -> Option<Arc<str>> {
        self.username.clone()
    }

    /// Whether a 3.x client is disconnected on a refused PUBLISH.
    pub fn disconnect_on_denied(&self) -> bool {
        self.disconnect_on_denied
    }

    /// The permissions of this principal connected as `client_id` (shared with other
    /// clients when they cannot differ).
    pub fn permissions(&self, client_id: &str) -> Permissions {
        match (&self.rules, &self.shared) {
            (None, _) => Permissions::allow_all(),
            (Some(_), Some(shared)) => shared.clone(),
            (Some(rules), None) => Permissions::compile(
                self.own_rules.iter().chain(rules.iter()),
                self.default_policy,
                client_id,
                self.username(),
            )
            .with_disconnect_on_denied(self.disconnect_on_denied),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Config;
    use bytes::Bytes;

    fn cheap() -> AuthConfig {
        let mut cfg = Config::default().auth;
        cfg.hash_memory_kib = 64;
        cfg.hash_iterations = 1;
        cfg
    }

    fn connect(user: Option<&str>, password: Option<&str>) -> Connect {
        Connect {
            client_id: "c1".into(),
            username: user.map(str::to_string),
            password: password.map(|p| Bytes::copy_from_slice(p.as_bytes())),
            ..Default::default()
        }
    }

    fn peer(ip: &str) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), 5000)
    }

    const LIMIT: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn trusted_peer_needs_no_credentials_others_do() {
        let security = Arc::new(Security::new(&cheap()).unwrap());
        security.set_account("alice", b"pw", vec![]).unwrap();
        let local = security.admit(peer("127.0.0.1")).unwrap();
        assert!(local.trusted());
        let anon = local
            .authenticate(&connect(None, None), LIMIT)
            .await
            .unwrap();
        assert_eq!(anon.username(), None);
        // A trusted peer that names a user must know the password.
        assert_eq!(
            local
                .authenticate(&connect(Some("alice"), Some("nope")), LIMIT)
                .await
                .unwrap_err(),
            AuthFailure::BadCredentials
        );
        let remote = security.admit(peer("10.0.0.1")).unwrap();
        assert!(!remote.trusted());
        for (user, pw) in [
            (None, None),
            (Some("alice"), None),
            (Some("alice"), Some("x")),
            (Some("bob"), Some("pw")),
        ] {
            assert_eq!(
                remote
                    .authenticate(&connect(user, pw), LIMIT)
                    .await
                    .unwrap_err(),
                AuthFailure::BadCredentials,
                "{user:?} {pw:?}"
            );
        }
        let alice = remote
            .authenticate(&connect(Some("alice"), Some("pw")), LIMIT)
            .await
            .unwrap();
        assert_eq!(alice.username(), Some("alice"));
        assert_eq!(alice.owner().as_deref(), Some("alice"));
    }

    #[tokio::test]
    async fn disabled_auth_lets_anyone_in_unrestricted() {
        let mut cfg = cheap();
        cfg.enabled = false;
        cfg.default_policy = "deny".into();
        let security = Arc::new(Security::new(&cfg).unwrap());
        let gate = security.admit(peer("10.0.0.1")).unwrap();
        let p = gate
            .authenticate(&connect(Some("x"), Some("y")), LIMIT)
            .await
            .unwrap();
        assert_eq!(p.username(), None);
        assert!(p.permissions("c").is_unrestricted());
    }

    #[test]
    fn deny_and_rate_limit_reject_at_admission() {
        let mut cfg = cheap();
        cfg.deny = vec!["10.0.0.0/8".into()];
        cfg.allow.push("10.1.0.0/16".into());
        cfg.connect_rate = 1.0;
        cfg.connect_burst = 2;
        let security = Arc::new(Security::new(&cfg).unwrap());
        assert_eq!(
            security.admit(peer("10.2.0.1")).unwrap_err(),
            Rejection::Denied
        );
        assert!(security.admit(peer("10.1.0.1")).unwrap().trusted());
        let far = peer("192.0.2.1");
        assert!(security.admit(far).is_ok());
        assert!(security.admit(far).is_ok());
        assert_eq!(
            security.admit(far).unwrap_err(),
            Rejection::RateLimited { first: true }
        );
        assert_eq!(
            security.admit(far).unwrap_err(),
            Rejection::RateLimited { first: false }
        );
        // Trusted peers are not rate limited.
        for _ in 0..10 {
            assert!(security.admit(peer("127.0.0.1")).is_ok());
        }
        // Runtime entries change the verdict at once.
        security.set_acl("192.0.2.0/24".parse().unwrap(), AclVerdict::Deny);
        assert_eq!(security.admit(far).unwrap_err(), Rejection::Denied);
        assert!(security.delete_acl(&"192.0.2.0/24".parse().unwrap()));
    }

    #[test]
    fn principal_rules_combine_account_config_and_default() {
        let mut cfg = cheap();
        cfg.rules = vec!["allow subscribe public/#".into()];
        cfg.default_policy = "deny".into();
        let security = Security::new(&cfg).unwrap();
        let rules = vec!["allow publish clients/%c/#".parse().unwrap()];
        security.set_account("dev", b"pw", rules).unwrap();
        let p = Principal {
            username: Some(Arc::from("dev")),
            own_rules: security.read_rules("dev"),
            rules: Some(security.settings.rules.clone()),
            shared: None,
            default_policy: Access::Deny,
            disconnect_on_denied: false,
        };
        let perms = p.permissions("d1");
        assert!(perms.may_publish("clients/d1/x"));
        assert!(!perms.may_publish("clients/d2/x"));
        assert!(perms.may_subscribe("public/+"));
        assert!(!perms.may_subscribe("clients/d1/x"));
    }

    #[tokio::test]
    async fn clients_without_own_rules_share_the_compiled_configured_rules() {
        let mut cfg = cheap();
        cfg.rules = vec!["deny publish secret/#".into()];
        let security = Arc::new(Security::new(&cfg).unwrap());
        security.set_account("plain", b"pw", vec![]).unwrap();
        let own = vec!["allow publish mine/#".parse().unwrap()];
        security.set_account("owner", b"pw", own).unwrap();
        let gate = security.admit(peer("127.0.0.1")).unwrap();
        let login = |user| connect(user, user.map(|_| "pw"));
        let anon = gate.authenticate(&login(None), LIMIT).await.unwrap();
        let plain = gate
            .authenticate(&login(Some("plain")), LIMIT)
            .await
            .unwrap();
        let owner = gate
            .authenticate(&login(Some("owner")), LIMIT)
            .await
            .unwrap();
        let (a, b, c) = (
            anon.permissions("c1"),
            plain.permissions("c2"),
            owner.permissions("c3"),
        );
        assert!(a.shares_rules_with(&b));
        assert!(!a.shares_rules_with(&c));
        for p in [&a, &b, &c] {
            assert!(!p.may_publish("secret/x"));
            assert!(p.may_publish("open/x"));
        }
        assert!(c.may_publish("mine/x"));
        // A placeholder makes the rules personal: compiled per client, still correct.
        cfg.rules = vec!["allow publish clients/%c/#".into()];
        cfg.default_policy = "deny".into();
        let security = Arc::new(Security::new(&cfg).unwrap());
        let gate = security.admit(peer("127.0.0.1")).unwrap();
        let anon = gate.authenticate(&login(None), LIMIT).await.unwrap();
        let (x, y) = (anon.permissions("x"), anon.permissions("y"));
        assert!(!x.shares_rules_with(&y));
        assert!(x.may_publish("clients/x/t") && !x.may_publish("clients/y/t"));
        assert!(y.may_publish("clients/y/t"));
        // No rules at all: one shared empty list.
        assert!(Permissions::allow_all().shares_rules_with(&Permissions::allow_all()));
    }

    impl Security {
        fn read_rules(&self, user: &str) -> Arc<[TopicRule]> {
            read(&self.accounts)
                .get(user)
                .map(|a| a.rules.clone())
                .unwrap()
        }
    }

    #[test]
    fn stored_acl_entries_override_configured_ones() {
        let cfg = cheap();
        let stored = [(
            "127.0.0.1".parse().unwrap(),
            AclRecord {
                verdict: AclVerdict::Deny,
            },
        )];
        let security = Arc::new(Security::load(&cfg, [], stored).unwrap());
        assert_eq!(
            security.admit(peer("127.0.0.1")).unwrap_err(),
            Rejection::Denied
        );
        assert!(security.admit(peer("::1")).unwrap().trusted());
    }
}
