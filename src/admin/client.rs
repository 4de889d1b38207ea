//! The operator CLI's side of the admin API: `fubar state`, `fubar account ...`,
//! `fubar acl ...` and `fubar tls reload` as HTTP requests to a running node.
//!
//! `main.rs` hands a parsed command to [`state`], [`account`], [`acl`] or [`tls`]; each
//! finds the node ([`Target::resolve`]: `--url`, else `http://127.0.0.1:<http.port>` from
//! the node's configuration; `--token` / `FUBAR_ADMIN_TOKEN`, else `http.token`, else
//! `<node.data_dir>/admin.token`), makes one request with `awc` in a small actix `System`
//! and returns the text to print. Every failure is a [`ClientError`] whose message says
//! what to do about it.

use super::token;
use crate::cli::{
    AccountAction, AccountCommand, AclAction, AclCommand, AdminArgs, TlsAction, TlsCommand,
};
use crate::config::{Config, ConfigError};
use awc::error::SendRequestError;
use awc::http::{header, Method, StatusCode};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::io::{BufRead, IsTerminal};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

/// How long one request may take (password hashing on the node included).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest response body read.
const RESPONSE_LIMIT: usize = 16 * 1024 * 1024;

/// Why an operator command failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The node's configuration (for the default URL or token) could not be loaded.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No token given and the token file could not be read.
    #[error("no admin token: {0} (pass --token or set FUBAR_ADMIN_TOKEN)")]
    Token(#[from] token::TokenError),
    /// Nothing answered at the URL.
    #[error("cannot reach the node at {url}: {reason} (is it running? see --url)")]
    Unreachable {
        /// The URL tried.
        url: String,
        /// Why.
        reason: String,
    },
    /// The node refused the token.
    #[error("the node at {url} refused the admin token (see --token, FUBAR_ADMIN_TOKEN, <data_dir>/admin.token)")]
    Unauthorized {
        /// The node's URL.
        url: String,
    },
    /// The node answered with an error.
    #[error("{message}")]
    Api {
        /// HTTP status.
        status: u16,
        /// The node's `error` text.
        message: String,
    },
    /// The node's answer made no sense.
    #[error("unexpected answer from {url}: {reason}")]
    BadResponse {
        /// The node's URL.
        url: String,
        /// What was wrong.
        reason: String,
    },
    /// The password could not be read.
    #[error("password: {0}")]
    Password(String),
    /// The client's runtime failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Where a node's admin API is and the token to present.
#[derive(Debug, Clone)]
pub struct Target {
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// The bearer token.
    pub token: String,
}

impl Target {
    /// The URL and token from the flags, falling back on the node's configuration
    /// (loaded like `fubar run` loads it) and its token file.
    pub fn resolve(args: &AdminArgs) -> Result<Target, ClientError> {
        let load = || Config::from_sources(args.config.as_deref(), true, &args.overrides());
        let url = match &args.url {
            Some(url) => url.trim_end_matches('/').to_string(),
            None => default_url(&load()?),
        };
        let token = match args.token.as_deref().map(str::trim) {
            Some(token) if !token.is_empty() => token.to_string(),
            _ => {
                let config = load()?;
                if config.http.token.is_empty() {
                    token::read(&token::token_path(&config.node.data_dir))?
                } else {
                    config.http.token
                }
            }
        };
        Ok(Target { url, token })
    }

    /// Sends one request and returns the status and JSON body (`Null` when empty).
    fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, Value), ClientError> {
        let url = format!("{}{path}", self.url);
        let system = actix_rt::System::new();
        let answer = system.block_on(async {
            let client = awc::Client::builder().timeout(REQUEST_TIMEOUT).finish();
            let request = client
                .request(method, url.as_str())
                .insert_header((header::AUTHORIZATION, format!("Bearer {}", self.token)));
            let sent = match body {
                Some(body) => request.send_json(&body).await,
                None => request.send().await,
            };
            let mut response = sent.map_err(|e| self.send_error(e))?;
            let status = response.status();
            let bytes = response
                .body()
                .limit(RESPONSE_LIMIT)
                .await
                .map_err(|e| self.bad(e.to_string()))?;
            Ok::<_, ClientError>((status, bytes))
        });
        let (status, bytes) = answer?;
        let value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .map_err(|e| self.bad(format!("{status}, body is not JSON ({e})")))?
        };
        if status == StatusCode::UNAUTHORIZED {
            return Err(ClientError::Unauthorized {
                url: self.url.clone(),
            });
        }
        if !status.is_success() {
            let message = value
                .get("error")
                .and_then(Value::as_str)
                .map_or_else(|| format!("the node answered {status}"), str::to_string);
            return Err(ClientError::Api {
                status: status.as_u16(),
                message,
            });
        }
        Ok((status, value))
    }

    fn send_error(&self, e: SendRequestError) -> ClientError {
        match e {
            SendRequestError::Connect(e) => ClientError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            },
            SendRequestError::Timeout => ClientError::Unreachable {
                url: self.url.clone(),
                reason: "no answer within 30 s".into(),
            },
            SendRequestError::Url(e) => self.bad(format!("invalid URL: {e}")),
            e => ClientError::Unreachable {
                url: self.url.clone(),
                reason: e.to_string(),
            },
        }
    }

    fn bad(&self, reason: String) -> ClientError {
        ClientError::BadResponse {
            url: self.url.clone(),
            reason,
        }
    }
}

/// `http://<bind or 127.0.0.1>:<http.port>`.
fn default_url(config: &Config) -> String {
    let host = match config.http.bind.parse::<IpAddr>() {
        Ok(ip) if !ip.is_unspecified() => ip,
        _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
    };
    format!("http://{}", SocketAddr::new(host, config.http.port))
}

/// Percent-encodes a path segment or query value (everything but RFC 3986 unreserved).
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// Text of a JSON field for display (`-` when missing or null).
fn show(value: &Value, key: &str) -> String {
    match value.get(key) {
        None | Some(Value::Null) => "-".into(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

fn duration(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m {s}s"),
        _ => format!("{d}d {h}h {m}m {s}s"),
    }
}

/// `fubar state`.
pub fn state(args: &AdminArgs) -> Result<String, ClientError> {
    let target = Target::resolve(args)?;
    let (_, v) = target.call(Method::GET, "/api/v1/state", None)?;
    let mut out = String::new();
    let listeners = &v["listeners"];
    let metrics = &v["metrics"];
    let _ = writeln!(out, "== {} running at {} ==", show(&v, "node"), target.url);
    let mut line = |name: &str, value: String| {
        let _ = writeln!(out, "{name:<14}: {value}");
    };
    line("node", show(&v, "node"));
    line("version", show(&v, "version"));
    line(
        "uptime",
        v["uptime_secs"]
            .as_u64()
            .map_or_else(|| "-".into(), duration),
    );
    line(
        "listeners",
        format!(
            "mqtt {}, mqtts {}, http {}",
            show(listeners, "mqtt"),
            show(listeners, "mqtts"),
            show(listeners, "http")
        ),
    );
    for key in [
        "connections",
        "sessions",
        "topics",
        "subscriptions",
        "retained",
        "queued",
        "publish_in",
        "publish_out",
        "dropped",
    ] {
        line(key, show(metrics, key));
    }
    line("accounts", show(&v, "accounts"));
    line("acl entries", show(&v, "acl_entries"));
    Ok(out)
}

/// One account as `name` plus its rules, one per line.
fn account_lines(out: &mut String, account: &Value) {
    let _ = writeln!(out, "{}", show(account, "username"));
    let rules = account["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() {
        let _ = writeln!(out, "  (no rules of its own)");
    }
    for rule in rules {
        let _ = writeln!(out, "  {}", rule.as_str().unwrap_or_default());
    }
}

/// `fubar account set|get|del|all`.
pub fn account(command: &AccountCommand) -> Result<String, ClientError> {
    let mut out = String::new();
    match &command.action {
        AccountAction::Set { username, rules } => {
            // Read the password before anything else can fail halfway.
            let password = read_password(username)?;
            let target = Target::resolve(&command.admin)?;
            let mut body = json!({ "password": password });
            if !rules.is_empty() {
                body["rules"] = json!(rules);
            }
            let path = format!("/api/v1/accounts/{}", encode(username));
            let (status, _) = target.call(Method::PUT, &path, Some(body))?;
            let what = if status == StatusCode::CREATED {
                "created"
            } else {
                "updated"
            };
            let _ = writeln!(out, "account {username} {what}");
        }
        AccountAction::Get { username } => {
            let target = Target::resolve(&command.admin)?;
            let path = format!("/api/v1/accounts/{}", encode(username));
            let (_, v) = target.call(Method::GET, &path, None)?;
            account_lines(&mut out, &v);
        }
        AccountAction::Del { username } => {
            let target = Target::resolve(&command.admin)?;
            let path = format!("/api/v1/accounts/{}", encode(username));
            target.call(Method::DELETE, &path, None)?;
            let _ = writeln!(out, "account {username} deleted");
        }
        AccountAction::All => {
            let target = Target::resolve(&command.admin)?;
            let (_, v) = target.call(Method::GET, "/api/v1/accounts", None)?;
            let accounts = v["accounts"].as_array().cloned().unwrap_or_default();
            if accounts.is_empty() {
                let _ = writeln!(out, "no accounts");
            }
            for account in &accounts {
                account_lines(&mut out, account);
            }
        }
    }
    Ok(out)
}

/// Reads a password: prompted twice without echo on a terminal, else the first line of
/// stdin (without its line ending).
pub fn read_password(username: &str) -> Result<String, ClientError> {
    let fail = |e: std::io::Error| ClientError::Password(e.to_string());
    let password = if std::io::stdin().is_terminal() {
        let first =
            rpassword::prompt_password(format!("Password for {username}: ")).map_err(fail)?;
        let again = rpassword::prompt_password("Again: ").map_err(fail)?;
        if first != again {
            return Err(ClientError::Password("the two entries differ".into()));
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map_err(fail)?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        return Err(ClientError::Password(
            "empty (pipe it on stdin or type it at the prompt)".into(),
        ));
    }
    Ok(password)
}

/// `fubar acl set|get|del|all`.
pub fn acl(command: &AclCommand) -> Result<String, ClientError> {
    let target = Target::resolve(&command.admin)?;
    let mut out = String::new();
    match &command.action {
        AclAction::Set { network, allow, .. } => {
            let body = json!({ "network": network, "allow": allow });
            let (_, v) = target.call(Method::PUT, "/api/v1/acl", Some(body))?;
            let _ = writeln!(out, "{} {}", show(&v, "network"), verdict_word(&v["allow"]));
        }
        AclAction::Get { ip } => {
            let path = format!("/api/v1/acl/lookup?ip={}", encode(ip));
            let (_, v) = target.call(Method::GET, &path, None)?;
            let meaning = match v["verdict"].as_str() {
                Some("allow") => "allow: connects without credentials",
                Some("deny") => "deny: closed right after accept",
                _ => "no entry: credentials required",
            };
            let _ = writeln!(out, "{} {meaning}", show(&v, "ip"));
        }
        AclAction::Del { network } => {
            let path = format!("/api/v1/acl?network={}", encode(network));
            target.call(Method::DELETE, &path, None)?;
            let _ = writeln!(out, "{network} removed");
        }
        AclAction::All => {
            let (_, v) = target.call(Method::GET, "/api/v1/acl", None)?;
            let entries = v["acl"].as_array().cloned().unwrap_or_default();
            if entries.is_empty() {
                let _ = writeln!(out, "no entries");
            }
            for entry in &entries {
                let _ = writeln!(
                    out,
                    "{:<40} {}",
                    show(entry, "network"),
                    verdict_word(&entry["allow"])
                );
            }
        }
    }
    Ok(out)
}

fn verdict_word(allow: &Value) -> &'static str {
    match allow.as_bool() {
        Some(true) => "allow",
        Some(false) => "deny",
        None => "?",
    }
}

/// `fubar tls reload`.
pub fn tls(command: &TlsCommand) -> Result<String, ClientError> {
    let target = Target::resolve(&command.admin)?;
    match command.action {
        TlsAction::Reload => {
            let (_, v) = target.call(Method::POST, "/api/v1/tls/reload", None)?;
            Ok(if v["reloaded"].as_bool() == Some(true) {
                "TLS certificate reloaded\n".into()
            } else {
                "TLS is off on this node: nothing to reload\n".into()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoding_keeps_unreserved_only() {
        assert_eq!(encode("alice"), "alice");
        assert_eq!(encode("10.0.0.0/8"), "10.0.0.0%2F8");
        assert_eq!(encode("a b?&é"), "a%20b%3F%26%C3%A9");
    }

    #[test]
    fn default_url_uses_loopback_for_wildcard_bind() {
        let mut config = Config::default();
        config.http.port = 8099;
        assert_eq!(default_url(&config), "http://127.0.0.1:8099");
        config.http.bind = "::1".into();
        assert_eq!(default_url(&config), "http://[::1]:8099");
    }

    #[test]
    fn token_from_the_data_dir() {
        let dir = tempfile::tempdir().unwrap();
        let written = token::resolve("", dir.path()).unwrap();
        let args = AdminArgs {
            data_dir: Some(dir.path().to_path_buf()),
            http_port: Some(8111),
            ..AdminArgs::default()
        };
        let target = Target::resolve(&args).unwrap();
        assert_eq!(target.token, written);
        assert_eq!(target.url, "http://127.0.0.1:8111");
        let missing = AdminArgs {
            data_dir: Some(dir.path().join("nowhere")),
            ..AdminArgs::default()
        };
        let err = Target::resolve(&missing).unwrap_err().to_string();
        assert!(
            err.contains("admin.token") && err.contains("--token"),
            "{err}"
        );
    }

    #[test]
    fn uptime_is_readable() {
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(65), "1m 5s");
        assert_eq!(duration(3600 * 25 + 1), "1d 1h 0m 1s");
    }
}
