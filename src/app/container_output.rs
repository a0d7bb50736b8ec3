//! An instance's container output as text: the pieces the daemon's logs endpoint streams (one
//! JSON line each), and the decoding of the engine's chunks into them, shared by the endpoint
//! and by the CLI and dashboard when no daemon runs.

use futures_util::{Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::domain::escape::Utf8Stream;
use crate::infra::docker::container::{self, LogChunk, LogsRequest};
use crate::infra::docker::{DockerError, Engine};

/// One line of the answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogPiece {
    /// Text the container wrote on its stdout.
    Stdout(String),
    /// Text the container wrote on its stderr.
    Stderr(String),
    /// Reading the output failed part-way; nothing follows.
    Error(String),
    /// The daemon is stopping: the answer ends here although the container may run on.
    DaemonStopping,
}

/// The path and query that ask the daemon for `request` (the client's side of the
/// endpoint's query).
pub fn path_for(instance: &str, request: &LogsRequest) -> String {
    let mut path = format!(
        "/v1/instances/{instance}/logs?follow={}&timestamps={}",
        request.follow, request.timestamps
    );
    if let Some(n) = request.tail {
        path.push_str(&format!("&tail={n}"));
    }
    if let Some(t) = request.since {
        path.push_str(&format!("&since={t}"));
    }
    path
}

/// What `logs` says of an instance that has never had a container (or whose containers
/// are all gone).
pub fn no_container_yet(instance: &str) -> String {
    format!("{instance} has no container yet (start it with `supervisor start {instance}`)")
}

/// Turns the engine's chunks of each stream into text: whole characters as they complete,
/// invalid bytes as U+FFFD.
#[derive(Debug, Default)]
pub struct Decoder {
    stdout: Utf8Stream,
    stderr: Utf8Stream,
}

impl Decoder {
    /// The text `chunk` completes, if any.
    pub fn piece(&mut self, chunk: LogChunk) -> Option<LogPiece> {
        let piece = match chunk {
            LogChunk::Stdout(b) => LogPiece::Stdout(self.stdout.push(&b)),
            LogChunk::Stderr(b) => LogPiece::Stderr(self.stderr.push(&b)),
        };
        match &piece {
            LogPiece::Stdout(t) | LogPiece::Stderr(t) if t.is_empty() => None,
            _ => Some(piece),
        }
    }

    /// What is left once the output has ended: the bytes of an unfinished character.
    pub fn finish(self) -> Vec<LogPiece> {
        [
            LogPiece::Stdout(self.stdout.finish()),
            LogPiece::Stderr(self.stderr.finish()),
        ]
        .into_iter()
        .filter(|p| !matches!(p, LogPiece::Stdout(t) | LogPiece::Stderr(t) if t.is_empty()))
        .collect()
    }
}

/// The engine's output as pieces of text; it ends at the first error.
pub fn pieces<S>(chunks: S) -> impl Stream<Item = Result<LogPiece, DockerError>>
where
    S: Stream<Item = Result<LogChunk, DockerError>>,
{
    enum Reading<S> {
        Chunks(std::pin::Pin<Box<S>>, Decoder),
        Rest(std::vec::IntoIter<LogPiece>),
    }
    futures_util::stream::unfold(
        Reading::Chunks(Box::pin(chunks), Decoder::default()),
        |mut state| async move {
            loop {
                state = match state {
                    Reading::Chunks(mut chunks, mut decoder) => match chunks.next().await {
                        Some(Ok(chunk)) => match decoder.piece(chunk) {
                            Some(p) => return Some((Ok(p), Reading::Chunks(chunks, decoder))),
                            None => Reading::Chunks(chunks, decoder),
                        },
                        Some(Err(e)) => {
                            return Some((Err(e), Reading::Rest(Vec::new().into_iter())))
                        }
                        None => Reading::Rest(decoder.finish().into_iter()),
                    },
                    Reading::Rest(mut rest) => {
                        let p = rest.next()?;
                        return Some((Ok(p), Reading::Rest(rest)));
                    }
                }
            }
        },
    )
}

/// Why an instance's newest container cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum NoContainer {
    #[error(transparent)]
    Docker(#[from] DockerError),
    /// It has none ([`no_container_yet`] says so).
    #[error("{0}")]
    None(String),
}

/// The id of `name`'s newest container in the home `home_id`, running or stopped: the one
/// whose output `logs` shows, whoever reads it (the daemon, the CLI, the dashboard).
pub async fn newest_container_id(
    engine: &dyn Engine,
    home_id: &str,
    name: &str,
) -> Result<String, NoContainer> {
    let owned = engine.list(home_id).await?;
    container::newest(&owned, name)
        .map(|c| c.id.clone())
        .ok_or_else(|| NoContainer::None(no_container_yet(name)))
}
