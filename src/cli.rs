//! The `fubar` command line: what an operator can type, parsed with clap.
//!
//! `main.rs` turns a [`Cli`] into actions; this module only describes the commands so the
//! same definitions serve the binary, its `--help` and the tests.

use crate::config::Overrides;
use clap::{Args, Parser, Subcommand};
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
    /// Delete the node's data dir: every persistent session, queued message, retained
    /// message, trace flag and setting. Refused while a broker uses it.
    Reset(ResetArgs),
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
