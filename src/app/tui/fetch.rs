//! The dashboard's I/O: the status report, and the selected instance's events (from the
//! store) and last log lines (from the Docker engine). Anything that fails for the detail
//! pane becomes a one-line note instead of an error: the dashboard keeps running.

use std::pin::pin;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::runtime::Runtime;

use super::app::Detail;
use crate::app::status::StatusReport;
use crate::infra::docker::{
    self, container, container::LogChunk, container::OwnedContainer, Client,
};
use crate::infra::home::Home;

/// Events and log lines the detail pane shows.
const EVENTS: u32 = 10;
const LOG_LINES: u64 = 20;

/// A Docker call that takes longer than this would freeze the screen: give up and say so.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(5);

/// Picks, among the home's containers, the one whose output is an instance's logs. `logs`
/// owns that rule; the dashboard is handed it so that both show the same container.
pub type PickContainer =
    for<'a> fn(&'a [OwnedContainer], &str) -> anyhow::Result<&'a OwnedContainer>;

pub struct Fetcher<'h> {
    home: &'h Home,
    pick: PickContainer,
    /// One runtime for the whole session, so that the Docker client (and its connections)
    /// outlive each call.
    rt: Runtime,
    /// Connected once, on first need, with the home's id that marks its containers.
    docker: Option<(Client, String)>,
}

impl<'h> Fetcher<'h> {
    pub fn new(home: &'h Home, pick: PickContainer) -> std::io::Result<Self> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(Self {
            home,
            pick,
            rt,
            docker: None,
        })
    }

    pub fn report(&self) -> anyhow::Result<StatusReport> {
        crate::app::status::gather(self.home)
    }

    /// `docker_reachable`: the latest report's word, so that a dashboard without Docker
    /// does not try to connect on every refresh.
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
                .map_err(|e| format!("no logs: {}", crate::app::cli::one_line(&e))),
        }
    }

    fn logs(&mut self, name: &str, docker_reachable: bool) -> anyhow::Result<Vec<String>> {
        let session = match self.docker.take() {
            Some(s) => s,
            None => self.connect(docker_reachable)?,
        };
        let (client, home_id) = &session;
        let pick = self.pick;
        let lines = self.within_timeout(async {
            let owned = container::list_owned(client, home_id).await?;
            let id = pick(&owned, name)?.id.clone();
            tail(client, &id).await
        });
        self.docker = Some(session);
        lines
    }

    fn connect(&self, docker_reachable: bool) -> anyhow::Result<(Client, String)> {
        anyhow::ensure!(docker_reachable, "the Docker engine is unreachable");
        let cfg = self.home.host_config()?.docker;
        let home_id = self.home.open()?.home_id()?;
        let client = self.within_timeout(async { Ok(docker::connect(&cfg).await?) })?;
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

/// The container's last lines, stdout and stderr as they came.
async fn tail(client: &Client, id: &str) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stream = pin!(container::logs(client, id, Some(LOG_LINES), false));
    while let Some(chunk) = stream.next().await {
        match chunk? {
            LogChunk::Stdout(b) | LogChunk::Stderr(b) => out.extend_from_slice(&b),
        }
    }
    Ok(last_lines(&out))
}

/// The output's last lines, as text; the view escapes what they hold before drawing them.
fn last_lines(raw: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(raw);
    let lines: Vec<String> = text.lines().map(str::to_string).collect();
    lines[lines.len().saturating_sub(LOG_LINES as usize)..].to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_last_lines_are_kept() {
        let raw: String = (1..=25).map(|n| format!("line {n}\n")).collect();
        let lines = last_lines(raw.as_bytes());
        assert_eq!(lines.len(), LOG_LINES as usize);
        assert_eq!(lines[0], "line 6");
        assert_eq!(lines.last().unwrap(), "line 25");
        assert!(last_lines(b"").is_empty());
    }
}
