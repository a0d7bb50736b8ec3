//! The dashboard's I/O: the status report, and the selected instance's events (from the
//! store) and last log lines (from the daemon, or from the Docker engine when no daemon
//! runs). Anything that fails for the detail pane becomes a one-line note instead of an
//! error: the dashboard keeps running.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::runtime::Runtime;

use super::app::Detail;
use crate::app::client::{ClientError, DaemonClient, LogPieces};
use crate::app::container_output::{newest_container_id, pieces, LogPiece};
use crate::app::status::StatusReport;
use crate::infra::docker::{self, container::LogsRequest, Engine};
use crate::infra::home::Home;
use std::sync::Arc;

/// Events and log lines the detail pane shows.
const EVENTS: u32 = 10;
const LOG_LINES: u64 = 20;

/// A Docker call that takes longer than this would freeze the screen: give up and say so.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the detail pane asks for: the last lines, as `logs --tail` would print them.
const TAIL: LogsRequest = LogsRequest {
    tail: Some(LOG_LINES),
    follow: false,
    since: None,
    timestamps: false,
};

pub struct Fetcher<'h> {
    home: &'h Home,
    /// One runtime for the whole session, so that the Docker client (and its connections)
    /// outlive each call.
    rt: Runtime,
    /// Connected once, on first need, with the home's id that marks its containers.
    docker: Option<(Arc<dyn Engine>, String)>,
}

impl<'h> Fetcher<'h> {
    pub fn new(home: &'h Home) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            home,
            rt,
            docker: None,
        })
    }

    pub fn report(&self) -> anyhow::Result<StatusReport> {
        crate::app::status::gather(self.home)
    }

    /// `docker_reachable`: the latest report's word, so that a dashboard without a daemon
    /// or Docker does not try to connect on every refresh.
    pub fn detail(&mut self, name: &str, docker_reachable: bool) -> Detail {
        let events = self
            .home
            .open()
            .map_err(|e| e.to_string())
            .and_then(|store| {
                store
                    .recent_events(Some(name), EVENTS)
                    .map_err(|e| e.to_string())
            });
        Detail {
            instance: name.to_string(),
            events,
            logs: self
                .logs(name, docker_reachable)
                .map_err(|e| format!("no logs: {}", crate::domain::error_text::one_line(&e))),
        }
    }

    fn logs(&mut self, name: &str, docker_reachable: bool) -> anyhow::Result<Vec<String>> {
        let daemon = DaemonClient::for_home(self.home);
        let asked = self.within_timeout(async {
            // The daemon's word on the engine, as on the screen: no call bound to fail.
            anyhow::ensure!(docker_reachable, "the Docker engine is unreachable");
            match daemon.logs(name, &TAIL).await {
                Ok(pieces) => Ok(Some(daemon_text(pieces).await?)),
                Err(ClientError::NotRunning { .. }) => Ok(None),
                Err(e) => Err(e.into()),
            }
        })?;
        if let Some(text) = asked {
            return Ok(last_lines(&text));
        }
        let session = match self.docker.take() {
            Some(s) => s,
            None => self.connect(docker_reachable)?,
        };
        let (client, home_id) = &session;
        let lines = self.within_timeout(async {
            let id = newest_container_id(client.as_ref(), home_id, name).await?;
            engine_text(client.as_ref(), &id)
                .await
                .map(|text| last_lines(&text))
        });
        self.docker = Some(session);
        lines
    }

    fn connect(&self, docker_reachable: bool) -> anyhow::Result<(Arc<dyn Engine>, String)> {
        anyhow::ensure!(docker_reachable, "the Docker engine is unreachable");
        let cfg = self.home.host_config()?;
        let home_id = self.home.open()?.home_id()?;
        let root = self.home.root().to_path_buf();
        let client =
            self.within_timeout(async { Ok(docker::connect_engine(&cfg, &root).await?.1) })?;
        Ok((client, home_id))
    }

    fn within_timeout<T>(
        &self,
        fut: impl std::future::Future<Output = anyhow::Result<T>>,
    ) -> anyhow::Result<T> {
        // The timer needs the runtime's context: build it inside.
        self.rt
            .block_on(async { tokio::time::timeout(DOCKER_TIMEOUT, fut).await })
            .map_err(|_| {
                anyhow::anyhow!(
                    "the Docker engine did not answer within {}s",
                    DOCKER_TIMEOUT.as_secs()
                )
            })?
    }
}

/// The container's last lines as the daemon sends them, stdout and stderr as they came.
async fn daemon_text(mut pieces: LogPieces) -> anyhow::Result<String> {
    let mut text = String::new();
    while let Some(piece) = pieces.next().await {
        match piece? {
            LogPiece::Stdout(t) | LogPiece::Stderr(t) => text.push_str(&t),
            LogPiece::Error(e) => anyhow::bail!(e),
            // What came is what there is.
            LogPiece::DaemonStopping => break,
        }
    }
    Ok(text)
}

/// The container's last lines from the engine itself.
async fn engine_text(engine: &dyn Engine, id: &str) -> anyhow::Result<String> {
    let mut text = String::new();
    let mut output = pin!(pieces(engine.logs(id, TAIL)));
    while let Some(piece) = output.next().await {
        if let LogPiece::Stdout(t) | LogPiece::Stderr(t) = piece? {
            text.push_str(&t);
        }
    }
    Ok(text)
}

/// The output's last lines; the view escapes what they hold before drawing them.
fn last_lines(text: &str) -> Vec<String> {
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(LOG_LINES as usize)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_lines_are_kept() {
        let raw: String = (1..=25).map(|n| format!("line {n}\n")).collect();
        let lines = last_lines(&raw);
        assert_eq!(lines.len(), LOG_LINES as usize);
        assert_eq!(lines[0], "line 6");
        assert_eq!(lines.last().unwrap(), "line 25");
        assert!(last_lines("").is_empty());
    }
}
