use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;

use crate::app::client::{ClientError, DaemonClient, LogPieces};
use crate::app::container_output::{newest_container_id, pieces, LogPiece};
use crate::domain::escape;
use crate::infra::docker::{self, container::LogsRequest};
use crate::infra::home::Home;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The instance whose container output to print
    pub name: String,
    /// Keep printing new output
    #[arg(long, short)]
    pub follow: bool,
    /// Only the last N lines
    #[arg(long, value_name = "N")]
    pub tail: Option<u64>,
    /// Only output since then: a duration back from now (10m, 2h, 1d) or an RFC 3339 time
    /// (2026-01-01T12:00:00Z)
    #[arg(long, value_name = "WHEN", value_parser = parse_since)]
    pub since: Option<Since>,
    /// Start each line with the time the engine received it (RFC 3339, UTC)
    #[arg(long, short = 't')]
    pub timestamps: bool,
}

/// Where `--since` starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Since {
    /// This long before the command runs.
    Ago(Duration),
    /// At this time, Unix seconds.
    At(i64),
}

impl Since {
    /// Unix seconds, the engine's resolution.
    fn unix_secs(self, now: std::time::SystemTime) -> i64 {
        match self {
            Since::At(t) => t,
            Since::Ago(d) => now
                .checked_sub(d)
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |t| t.as_secs() as i64),
        }
    }
}

fn parse_since(raw: &str) -> Result<Since, String> {
    let raw = raw.trim();
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(raw) {
        return Ok(Since::At(t.timestamp()));
    }
    match humantime::parse_duration(raw) {
        Ok(d) => Ok(Since::Ago(d)),
        Err(_) => Err(
            "expected a duration back from now such as 30s, 10m, 2h or 1d, or an RFC 3339 time \
             such as 2026-01-01T12:00:00Z"
                .into(),
        ),
    }
}

pub fn run(home: &Home, args: Args) -> anyhow::Result<ExitCode> {
    let name = super::parse_name(&args.name)?;
    home.open()?.instance(name.as_str())?;
    let request = LogsRequest {
        tail: args.tail,
        follow: args.follow,
        since: args
            .since
            .map(|s| s.unix_secs(std::time::SystemTime::now())),
        timestamps: args.timestamps,
    };
    let mut out = Printer {
        out: std::io::stdout().lock(),
        follow: args.follow,
    };
    crate::infra::blocking::block_on(async {
        // The daemon reads the engine it works with; without one, this command does.
        match DaemonClient::for_home(home)
            .logs(name.as_str(), &request)
            .await
        {
            Ok(pieces) => from_daemon(home, name.as_str(), request, pieces, &mut out).await,
            Err(ClientError::NotRunning { .. }) => {
                from_engine(home, name.as_str(), request, &mut out).await
            }
            Err(e) => Err(e.into()),
        }
    })?;
    out.out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// Both of the container's streams go to stdout, in the order the engine gives them: the
/// agent reports on stderr, and `logs alice | grep answered` must find it. The container's
/// output is the agent's (and whatever it runs): its escape sequences are shown, not
/// obeyed.
struct Printer {
    out: std::io::StdoutLock<'static>,
    follow: bool,
}

impl Printer {
    fn print(&mut self, text: &str) -> std::io::Result<()> {
        self.out.write_all(escape::text(text).as_bytes())?;
        if self.follow {
            self.out.flush()?;
        }
        Ok(())
    }
}

async fn from_daemon(
    home: &Home,
    name: &str,
    request: LogsRequest,
    mut pieces: LogPieces,
    out: &mut Printer,
) -> anyhow::Result<()> {
    while let Some(piece) = pieces.next().await {
        match piece? {
            LogPiece::Stdout(text) | LogPiece::Stderr(text) => out.print(&text)?,
            LogPiece::Error(e) => anyhow::bail!(e),
            LogPiece::DaemonStopping if request.follow => {
                // Following goes on without it, from the engine, since the start of this
                // second (the engine's resolution): a line of that second may show twice
                // rather than not at all.
                let since = Since::Ago(Duration::ZERO).unix_secs(std::time::SystemTime::now());
                let rest = LogsRequest {
                    tail: None,
                    since: Some(since),
                    ..request
                };
                return from_engine(home, name, rest, out).await;
            }
            LogPiece::DaemonStopping => {
                anyhow::bail!("the daemon stopped before all of {name}'s output was read")
            }
        }
    }
    Ok(())
}

/// With no daemon: the engine itself, through the home's Docker settings.
async fn from_engine(
    home: &Home,
    name: &str,
    request: LogsRequest,
    out: &mut Printer,
) -> anyhow::Result<()> {
    let config = home.host_config()?;
    let home_id = home.open()?.home_id()?;
    let (_, engine) = docker::connect_engine(&config, home.root()).await?;
    let id = newest_container_id(engine.as_ref(), &home_id, name).await?;
    let mut output = std::pin::pin!(pieces(engine.logs(&id, request)));
    while let Some(piece) = output.next().await {
        if let LogPiece::Stdout(text) | LogPiece::Stderr(text) = piece? {
            out.print(&text)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_takes_a_duration_or_an_rfc3339_time() {
        assert_eq!(parse_since("10m"), Ok(Since::Ago(Duration::from_secs(600))));
        assert_eq!(
            parse_since("1h 30m"),
            Ok(Since::Ago(Duration::from_secs(5400)))
        );
        assert_eq!(
            parse_since("2026-01-01T12:00:00Z"),
            Ok(Since::At(1_767_268_800))
        );
        assert_eq!(
            parse_since("2026-01-01T13:00:00+01:00"),
            Ok(Since::At(1_767_268_800))
        );
        let err = parse_since("yesterday").unwrap_err();
        assert!(err.starts_with("expected a duration"), "{err}");
        assert!(parse_since("").is_err());
    }

    #[test]
    fn a_duration_counts_back_from_now() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(10_000);
        assert_eq!(Since::Ago(Duration::from_secs(600)).unix_secs(now), 9_400);
        assert_eq!(Since::Ago(Duration::from_secs(20_000)).unix_secs(now), 0);
        assert_eq!(Since::At(42).unix_secs(now), 42);
    }
}
