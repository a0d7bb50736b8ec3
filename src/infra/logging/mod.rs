//! The daemon's logs: the format on stderr (text or JSON lines), the levels per module, and the
//! redaction of secrets from every line before it is written.
//!
//! Levels come from `--log-level` when it is given, else from `RUST_LOG`, else `info`: the
//! command line is the deliberate choice of whoever started the daemon, while `RUST_LOG` may be
//! inherited from a shell or a service manager without anyone meaning it for this process.
//!
//! Redaction happens in the writer ([`RedactingMakeWriter`]), after formatting, so it covers
//! every field, message and error whatever the call site did. A [`Redactor`] is cheap to clone
//! and its clones share one set of secrets: a secret registered on any clone (or through
//! [`protect`]) is scrubbed from every line written afterwards.

use std::io::{self, IsTerminal};
use std::sync::OnceLock;

use tracing_subscriber::EnvFilter;

mod redact;
mod writer;

pub use redact::{is_secret_name, secret_env_values, Redactor};
pub use writer::{RedactingMakeWriter, RedactingWriter};

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Values shorter than this are never treated as secrets: scrubbing every `true` or `8080` a
/// secret-named variable happens to hold would mangle ordinary log text.
pub const MIN_SECRET_LEN: usize = 8;

/// The level directives when neither `--log-level` nor `RUST_LOG` says otherwise.
pub const DEFAULT_LEVEL: &str = "info";

/// Crates whose INFO lines say nothing to an operator, kept to warnings unless the directives
/// name them: `notify` reports a watch it could not remove (a directory that was just removed
/// or moved, which is how every instance removal goes) at INFO.
const QUIET_CRATES: &[&str] = &["notify"];

/// `directives` with [`QUIET_CRATES`] at `warn`, except those the directives name themselves.
pub fn with_quiet_crates(directives: &str) -> String {
    let mut out = directives.to_string();
    for krate in QUIET_CRATES {
        let named = directives
            .split(',')
            .any(|d| d.trim().split(['=', ':', '[']).next() == Some(*krate));
        if !named {
            out.push_str(&format!(",{krate}=warn"));
        }
    }
    out
}

/// How log lines look on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line: timestamp, level, target, fields (with the message).
    Json,
}

/// How the daemon's logging is set up (from `supervisor run`'s options).
#[derive(Debug, Clone, Default)]
pub struct LogOptions {
    pub format: LogFormat,
    /// `EnvFilter` directives such as `info,supervisor::daemon::messaging=debug`.
    pub level: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("invalid log level {directives:?}: {reason}")]
    InvalidLevel { directives: String, reason: String },
    #[error("cannot install the log subscriber: {0}")]
    Install(String),
}

/// Where the level directives in effect came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LevelSource {
    Flag,
    RustLog,
    Default,
}

/// `--log-level` when given, else a non-empty `RUST_LOG`, else [`DEFAULT_LEVEL`].
pub fn choose_level(flag: Option<&str>, rust_log: Option<&str>) -> (String, LevelSource) {
    if let Some(flag) = flag {
        return (flag.to_string(), LevelSource::Flag);
    }
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(env) => (env.to_string(), LevelSource::RustLog),
        None => (DEFAULT_LEVEL.to_string(), LevelSource::Default),
    }
}

/// Parses level directives, refusing an empty string (which would silence all but errors,
/// surely not what was meant).
pub fn parse_level(directives: &str) -> Result<EnvFilter, LoggingError> {
    let invalid = |reason: String| LoggingError::InvalidLevel {
        directives: directives.to_string(),
        reason,
    };
    if directives.trim().is_empty() {
        return Err(invalid(
            "expected directives such as `info` or `info,supervisor::daemon=debug`".into(),
        ));
    }
    EnvFilter::builder()
        .parse(directives)
        .map_err(|e| invalid(e.to_string()))
}

/// For clap: validates `--log-level` so a bad value is a usage error (exit 2).
pub fn level_arg(directives: &str) -> Result<String, String> {
    parse_level(directives)
        .map(|_| directives.to_string())
        .map_err(|e| match e {
            LoggingError::InvalidLevel { reason, .. } => reason,
            other => other.to_string(),
        })
}

static INSTALLED: OnceLock<Redactor> = OnceLock::new();

/// The redactor of the installed log subscriber, if [`init`] ran in this process.
pub fn installed() -> Option<&'static Redactor> {
    INSTALLED.get()
}

/// Registers `secret` with the installed redactor so no later log line shows it; a no-op when
/// logging was not set up by [`init`] (tests, the CLI's other commands). Returns whether it is
/// now redacted.
pub fn protect(secret: &str) -> bool {
    installed().is_some_and(|r| r.add_secret(secret))
}

/// Sets up the process's log subscriber on stderr and returns its redactor (also reachable
/// through [`installed`] and [`protect`]).
///
/// Text on a terminal is coloured (unless `NO_COLOR`); when stderr is the journal (systemd's
/// `JOURNAL_STREAM` names it), lines carry no timestamp, which journald records itself, and
/// start with a `<N>` syslog priority, which journald turns into the entry's priority and strips.
pub fn init(opts: &LogOptions) -> Result<Redactor, LoggingError> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let (directives, source) = choose_level(opts.level.as_deref(), rust_log.as_deref());
    // A bad `--log-level` is refused; a bad `RUST_LOG` is inherited, so the daemon still starts
    // (at the default level) and says why.
    let (filter, ignored_rust_log) = match (parse_level(&with_quiet_crates(&directives)), source) {
        (Ok(filter), _) => (filter, None),
        (Err(e), LevelSource::RustLog) => {
            (EnvFilter::new(with_quiet_crates(DEFAULT_LEVEL)), Some(e))
        }
        (Err(e), _) => return Err(e),
    };
    let redactor = Redactor::from_env();
    let journal = stderr_is_journal();
    let writer = RedactingMakeWriter::new(redactor.clone(), io::stderr).journald(journal);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match opts.format {
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
        LogFormat::Text if journal => builder
            .fmt_fields(escaped_fields())
            .with_ansi(false)
            .without_time()
            .try_init(),
        LogFormat::Text => {
            let colour = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
            builder
                .fmt_fields(escaped_fields())
                .with_ansi(colour)
                .try_init()
        }
    };
    installed.map_err(|e| LoggingError::Install(e.to_string()))?;
    let _ = INSTALLED.set(redactor.clone());
    if let Some(e) = ignored_rust_log {
        tracing::warn!(error = %e, level = DEFAULT_LEVEL, "RUST_LOG ignored");
    }
    Ok(redactor)
}

/// Text lines' fields as tracing writes them (`name=value`, the message bare), with every
/// control character in a value escaped: a file name, a turn id or an error can come from an
/// agent, and a newline or an escape sequence in it must not forge a line of its own or
/// repaint the operator's terminal. (JSON lines escape by themselves.)
pub fn escaped_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = crate::domain::escape::line(&text);
        match field.name() {
            "message" => write!(w, "{text}"),
            name => write!(w, "{name}={text}"),
        }
    })
    .delimited(" ")
}

/// True when stderr is the stream systemd connected to the journal: `JOURNAL_STREAM` holds
/// its `device:inode`, and comparing them (as systemd advises) avoids treating a child's
/// redirected stderr as the journal just because it inherited the variable.
fn stderr_is_journal() -> bool {
    let Some(value) = std::env::var_os("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = value.to_str().and_then(|v| v.split_once(':')) else {
        return false;
    };
    let (Ok(dev), Ok(ino)) = (
        dev.parse::<nix::libc::dev_t>(),
        ino.parse::<nix::libc::ino_t>(),
    ) else {
        return false;
    };
    nix::sys::stat::fstat(io::stderr()).is_ok_and(|st| st.st_dev == dev && st.st_ino == ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_precedence_flag_then_rust_log_then_info() {
        assert_eq!(
            choose_level(Some("warn"), Some("debug")),
            ("warn".to_string(), LevelSource::Flag)
        );
        assert_eq!(
            choose_level(None, Some("info,supervisor=debug")),
            ("info,supervisor=debug".to_string(), LevelSource::RustLog)
        );
        assert_eq!(
            choose_level(None, Some("  ")),
            ("info".to_string(), LevelSource::Default)
        );
        assert_eq!(
            choose_level(None, None),
            ("info".to_string(), LevelSource::Default)
        );
    }

    #[test]
    fn a_chatty_crate_stays_at_warnings_unless_named() {
        assert_eq!(with_quiet_crates("info"), "info,notify=warn");
        assert_eq!(
            with_quiet_crates("debug,supervisor=trace"),
            "debug,supervisor=trace,notify=warn"
        );
        assert_eq!(with_quiet_crates("info,notify=debug"), "info,notify=debug");
        assert_eq!(
            with_quiet_crates("notify::inotify=trace"),
            "notify::inotify=trace"
        );
        assert_eq!(
            with_quiet_crates("supervisor::daemon::notify=debug"),
            "supervisor::daemon::notify=debug,notify=warn"
        );
        assert!(parse_level(&with_quiet_crates("info")).is_ok());
    }

    #[test]
    fn level_directives_are_validated() {
        assert!(level_arg("info,supervisor::daemon::messaging=debug").is_ok());
        assert!(level_arg("warn").is_ok());
        assert!(level_arg("").is_err());
        assert!(level_arg("info,supervisor=loud").is_err());
    }
}
