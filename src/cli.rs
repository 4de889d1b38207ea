//! The `fubar` command line: what an operator can type, parsed with clap.
//!
//! `main.rs` turns a [`Cli`] into actions; this module only describes the commands so the
//! same definitions serve the binary, its `--help` and the tests. The operator commands
//! (`state`, `account`, `acl`, `tls`) talk to a running node's admin API through
//! [`crate::admin::client`].

use crate::config::Overrides;
use clap::{ArgGroup, Args, Parser, Subcommand};
use std::path::PathBuf;

/// fubar: a scalable MQTT broker.
#[derive(Debug, Parser)]
#[command(name = "fubar", version, about = "Scalable MQTT message broker")]
pub struct Cli {
    /// What to do; `run` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Node options for the implicit `run`.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a broker node in the foreground until SIGINT/SIGTERM.
    Run(NodeArgs),
    /// Print the effective configuration (defaults + file + FUBAR_* env + flags) as TOML.
    PrintConfig(NodeArgs),
    /// Show a running node's name, version, uptime, listeners and counters.
    State(AdminArgs),
    /// Manage the accounts of a running node.
    Account(AccountCommand),
    /// Manage the IP access list of a running node.
    Acl(AclCommand),
    /// Manage the MQTTS listener of a running node.
    Tls(TlsCommand),
    /// Delete the node's data dir: every account, ACL entry, persistent session, queued
    /// and retained message, trace flag and setting. Refused while a broker uses it.
    Reset(ResetArgs),
}

/// How to reach a running node's admin API.
#[derive(Debug, Args, Clone, Default)]
pub struct AdminArgs {
    /// Base URL of the node's HTTP server [default: http://127.0.0.1:<http.port>].
    #[arg(long, global = true)]
    pub url: Option<String>,
    /// Admin token [default: http.token, else <node.data_dir>/admin.token].
    #[arg(long, global = true, env = "FUBAR_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Configuration file of the node (for the default URL and token).
    #[arg(long, global = true, env = "FUBAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory of the node (where admin.token is; overrides node.data_dir).
    #[arg(long, global = true)]
    pub data_dir: Option<PathBuf>,
    /// HTTP port of the node (overrides http.port for the default URL).
    #[arg(long, global = true)]
    pub http_port: Option<u16>,
}

impl AdminArgs {
    /// The flag values that override configuration keys.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.data_dir.clone(),
            http_port: self.http_port,
            ..Overrides::default()
        }
    }
}

/// `fubar account ...`.
#[derive(Debug, Args)]
pub struct AccountCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: AccountAction,
    /// Where the node is.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// Account subcommands.
#[derive(Debug, Subcommand)]
pub enum AccountAction {
    /// Create an account or change its password; the password is read from stdin
    /// (prompted without echo on a terminal, else the first line).
    Set {
        /// The username.
        username: String,
        /// A topic rule, e.g. "allow publish,subscribe devices/%c/#" (repeatable; replaces
        /// the account's rules; without any the rules stay as they are).
        #[arg(long = "rule", value_name = "RULE")]
        rules: Vec<String>,
    },
    /// Show an account and its topic rules.
    Get {
        /// The username.
        username: String,
    },
    /// Delete an account.
    Del {
        /// The username.
        username: String,
    },
    /// List every account.
    All,
}

/// `fubar acl ...`.
#[derive(Debug, Args)]
pub struct AclCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: AclAction,
    /// Where the node is.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// IP access list subcommands.
#[derive(Debug, Subcommand)]
pub enum AclAction {
    /// Allow (connect without credentials) or deny (close at once) an address or range.
    #[command(group(ArgGroup::new("verdict").required(true).args(["allow", "deny"])))]
    Set {
        /// An address or CIDR range: 10.0.0.0/8, 192.168.0.100, fd00::/8.
        network: String,
        /// Clients from the range connect without a username and password.
        #[arg(long)]
        allow: bool,
        /// Sockets from the range are closed right after accept.
        #[arg(long)]
        deny: bool,
    },
    /// Show the verdict for one address (the most specific entry covering it).
    Get {
        /// An IP address.
        ip: String,
    },
    /// Remove the entry of an address or range.
    Del {
        /// The address or range, as given to `acl set`.
        network: String,
    },
    /// List every entry.
    All,
}

/// `fubar tls ...`.
#[derive(Debug, Args)]
pub struct TlsCommand {
    /// What to do.
    #[command(subcommand)]
    pub action: TlsAction,
    /// Where the node is.
    #[command(flatten)]
    pub admin: AdminArgs,
}

/// TLS subcommands.
#[derive(Debug, Subcommand)]
pub enum TlsAction {
    /// Read the certificate, key and client CA files again (like SIGHUP).
    Reload,
}

/// Options of `fubar reset`.
#[derive(Debug, Args, Clone, Default)]
pub struct ResetArgs {
    /// Do not ask for confirmation.
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Which node's configuration (and so data dir) to use.
    #[command(flatten)]
    pub node: NodeArgs,
}

/// Options that select and override a node's configuration.
#[derive(Debug, Args, Clone, Default)]
pub struct NodeArgs {
    /// Node name (overrides node.name).
    #[arg(long)]
    pub node: Option<String>,
    /// Port of the plain MQTT listener (overrides mqtt.port; 0 = any free port).
    #[arg(long)]
    pub mqtt_port: Option<u16>,
    /// Port of the MQTTS (TLS) listener (overrides tls.port; the listener runs when
    /// tls.cert_file and tls.key_file are set).
    #[arg(long)]
    pub mqtts_port: Option<u16>,
    /// Port of the HTTP server: admin API and /metrics (overrides http.port; 0 = any free
    /// port).
    #[arg(long)]
    pub http_port: Option<u16>,
    /// Configuration file (TOML) layered over the built-in defaults.
    #[arg(long, env = "FUBAR_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for persistent state (overrides node.data_dir).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

impl NodeArgs {
    /// The flag values that override configuration keys.
    pub fn overrides(&self) -> Overrides {
        Overrides {
            node: self.node.clone(),
            mqtt_port: self.mqtt_port,
            data_dir: self.data_dir.clone(),
            mqtts_port: self.mqtts_port,
            http_port: self.http_port,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_invocation_means_run_with_flags() {
        let cli = Cli::try_parse_from(["fubar", "--mqtt-port", "1884", "--node", "n1"]).unwrap();
        assert!(cli.command.is_none());
        assert_eq!(cli.node.mqtt_port, Some(1884));
        assert_eq!(cli.node.node.as_deref(), Some("n1"));
    }

    #[test]
    fn run_subcommand_takes_node_flags() {
        let cli = Cli::try_parse_from(["fubar", "run", "--data-dir", "/tmp/d"]).unwrap();
        match cli.command {
            Some(Command::Run(args)) => {
                assert_eq!(args.overrides().data_dir, Some(PathBuf::from("/tmp/d")))
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn admin_commands_parse() {
        let cli = Cli::try_parse_from([
            "fubar",
            "account",
            "set",
            "bob",
            "--rule",
            "allow all a/#",
            "--rule",
            "deny all #",
            "--url",
            "http://127.0.0.1:9",
            "--token",
            "t",
        ])
        .unwrap();
        match cli.command {
            Some(Command::Account(AccountCommand {
                action: AccountAction::Set { username, rules },
                admin,
            })) => {
                assert_eq!(username, "bob");
                assert_eq!(rules, ["allow all a/#", "deny all #"]);
                assert_eq!(admin.url.as_deref(), Some("http://127.0.0.1:9"));
                assert_eq!(admin.token.as_deref(), Some("t"));
            }
            other => panic!("unexpected {other:?}"),
        }
        let cli = Cli::try_parse_from(["fubar", "acl", "set", "10.0.0.0/8", "--deny"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Acl(AclCommand {
                action: AclAction::Set {
                    deny: true,
                    allow: false,
                    ..
                },
                ..
            }))
        ));
        assert!(Cli::try_parse_from(["fubar", "acl", "set", "10.0.0.0/8"]).is_err());
        assert!(
            Cli::try_parse_from(["fubar", "acl", "set", "1.2.3.4", "--allow", "--deny"]).is_err()
        );
        let cli = Cli::try_parse_from(["fubar", "run", "--http-port", "0"]).unwrap();
        match cli.command {
            Some(Command::Run(args)) => assert_eq!(args.overrides().http_port, Some(0)),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn reset_takes_yes_and_node_flags() {
        let cli = Cli::try_parse_from(["fubar", "reset", "--yes", "--data-dir", "/tmp/d"]).unwrap();
        match cli.command {
            Some(Command::Reset(args)) => {
                assert!(args.yes);
                assert_eq!(args.node.data_dir, Some(PathBuf::from("/tmp/d")));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn bad_port_is_a_clear_error() {
        let err = Cli::try_parse_from(["fubar", "--mqtt-port", "70000"]).unwrap_err();
        assert!(err.to_string().contains("mqtt-port"), "{err}");
    }
}
