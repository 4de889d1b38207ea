//! Logging: slog to the terminal, `<log_dir>/console.log` (info and above, or the configured
//! level) and `<log_dir>/error.log` (warnings and above), through one async drain so that a
//! slow terminal or disk never blocks an actor thread.

use slog::{o, Drain, Level, Logger};
use std::fs::OpenOptions;
use std::path::Path;

/// Parses a configured level name (already validated by `Config::validate`).
pub fn parse_level(name: &str) -> Level {
    match name {
        "trace" => Level::Trace,
        "debug" => Level::Debug,
        "warning" => Level::Warning,
        "error" => Level::Error,
        "critical" => Level::Critical,
        _ => Level::Info,
    }
}

/// Builds the node logger: terminal + `console.log` at `level`, `error.log` at warning+.
/// The log directory is created if missing.
pub fn init(log_dir: &Path, level: &str, node: &str) -> std::io::Result<Logger> {
    std::fs::create_dir_all(log_dir)?;
    let open = |name: &str| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_dir.join(name))
    };
    let level = parse_level(level);
    let term = slog_term::FullFormat::new(slog_term::TermDecorator::new().stderr().build())
        .build()
        .fuse();
    let console = slog_term::FullFormat::new(slog_term::PlainDecorator::new(open("console.log")?))
        .build()
        .fuse();
    let error = slog_term::FullFormat::new(slog_term::PlainDecorator::new(open("error.log")?))
        .build()
        .fuse();
    let drain = slog::Duplicate::new(
        slog::LevelFilter::new(slog::Duplicate::new(term, console), level),
        slog::LevelFilter::new(error, Level::Warning),
    )
    .fuse();
    let drain = slog_async::Async::new(drain)
        .chan_size(65536)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build()
        .fuse();
    Ok(Logger::root(drain, o!("node" => node.to_string())))
}

/// A logger that writes nothing (tests, embedding).
pub fn discard() -> Logger {
    Logger::root(slog::Discard, o!())
}
