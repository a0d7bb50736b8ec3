use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use futures_util::StreamExt;

use crate::domain::escape::{self, Utf8Stream};
use crate::infra::docker::{
    self, container::LogChunk, container::LogsRequest, container::OwnedContainer,
};
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
    let mut store = home.open()?;
    store.instance(name.as_str())?;
    let home_id = store.home_id()?;
    let config = home.host_config()?;
    let request = LogsRequest {
        tail: args.tail,
        follow: args.follow,
        since: args
            .since
            .map(|s| s.unix_secs(std::time::SystemTime::now())),
        timestamps: args.timestamps,
    };
    crate::infra::blocking::block_on(async {
        let client = docker::connect(&config.docker).await?;
        let owned = docker::container::list_owned(&client, &home_id).await?;
        let c = newest_container(&owned, name.as_str())?;
        let mut stream = std::pin::pin!(docker::container::logs_with(&client, &c.id, request));
        // Both of the container's streams go to stdout, in the order the engine gives them:
        // the agent reports on stderr, and `logs alice | grep answered` must find it.
        let mut out = std::io::stdout().lock();
        // The container's output is the agent's (and whatever it runs): its escape
        // sequences are shown, not obeyed. Each stream decodes on its own, as characters
        // may be split across its chunks.
        let (mut out_text, mut err_text) = (Utf8Stream::default(), Utf8Stream::default());
        while let Some(chunk) = stream.next().await {
            let text = match chunk? {
                LogChunk::Stdout(b) => out_text.push(&b),
                LogChunk::Stderr(b) => err_text.push(&b),
            };
            out.write_all(escape::text(&text).as_bytes())?;
            if args.follow {
                out.flush()?;
            }
        }
        out.write_all(escape::text(&out_text.finish()).as_bytes())?;
        out.write_all(escape::text(&err_text.finish()).as_bytes())?;
        out.flush()?;
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The container whose output an instance's logs are: its newest, running or stopped, so
/// that the output of one that exited can still be read. `status --watch` shows the same.
pub(super) fn newest_container<'a>(
    owned: &'a [OwnedContainer],
    name: &str,
) -> anyhow::Result<&'a OwnedContainer> {
    owned
        .iter()
        .filter(|c| c.instance == name)
        .max_by_key(|c| c.created)
        .ok_or_else(|| {
            anyhow::anyhow!("{name} has no container yet (start it with `supervisor start {name}`)")
        })
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
