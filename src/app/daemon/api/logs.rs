//! `GET /v1/instances/{name}/logs`: an instance's container output, the same that
//! `supervisor logs` prints. The newest container's, running or stopped, so that the output
//! of one that exited can still be read.
//!
//! The answer is newline-delimited JSON (`application/x-ndjson`), one [`LogPiece`] a line,
//! as the engine hands the output over; with `follow=true` it goes on until the container
//! stops (or the daemon does). Each stream's bytes are decoded as UTF-8 here, characters
//! split across chunks put back together, so a client gets text and need not know how the
//! engine chunks it.

use std::convert::Infallible;

use axum::body::Body;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{header, StatusCode};
use axum::response::Response;
use futures_util::StreamExt;
use serde::Deserialize;
use tokio::sync::mpsc;

use super::{api_error, blocking, ApiError, AppState};
use crate::app::container_output::{newest_container_id, pieces, LogPiece, NoContainer};
use crate::domain::instance::InstanceName;
use crate::infra::docker::container::LogsRequest;
use crate::infra::store::StoreError;

/// Pieces waiting for a slow client before the engine's stream is read further.
const BUFFER: usize = 64;

/// The query; taken as text so that a bad value gets a sentence, not a parser's words.
#[derive(Debug, Default, Deserialize)]
pub(super) struct LogsQuery {
    tail: Option<String>,
    since: Option<String>,
    timestamps: Option<String>,
    follow: Option<String>,
}

/// What the query asks for, or why it cannot be read.
fn request_of(q: &LogsQuery) -> Result<LogsRequest, String> {
    let flag = |name: &str, raw: &Option<String>| match raw.as_deref().map(str::trim) {
        None | Some("false") | Some("0") => Ok(false),
        Some("true") | Some("1") | Some("") => Ok(true),
        Some(other) => Err(format!("{name} {other:?}: expected true or false")),
    };
    let tail = match q.tail.as_deref().map(str::trim) {
        None | Some("all") => None,
        Some(raw) => Some(
            raw.parse::<u64>()
                .map_err(|_| format!("tail {raw:?}: expected a number of lines or `all`"))?,
        ),
    };
    let since = match q.since.as_deref().map(str::trim) {
        None => None,
        Some(raw) => Some(
            raw.parse::<i64>()
                .map_err(|_| format!("since {raw:?}: expected a time in Unix seconds"))?,
        ),
    };
    Ok(LogsRequest {
        tail,
        since,
        timestamps: flag("timestamps", &q.timestamps)?,
        follow: flag("follow", &q.follow)?,
    })
}

pub(super) async fn stream(
    State(s): State<AppState>,
    UrlPath(name): UrlPath<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, ApiError> {
    let name = InstanceName::parse(&name).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    let request = request_of(&q).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    let known = name.to_string();
    blocking(&s, move |store| {
        store.instance(&known).map(drop).map_err(|e| match e {
            StoreError::NoSuchInstance(_) => api_error(StatusCode::NOT_FOUND, e),
            e => api_error(StatusCode::INTERNAL_SERVER_ERROR, e),
        })
    })
    .await?;
    // The engine the daemon works with, on its own connection: its last valid settings,
    // whatever this request's caller would reach.
    let engine = s.docker.borrow().clone().ok_or_else(|| {
        api_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "the daemon cannot reach the Docker engine now (it keeps trying; \
             `supervisor status` shows when it can)",
        )
    })?;
    let id = newest_container_id(engine.as_ref(), &s.home_id, name.as_str())
        .await
        .map_err(|e| match e {
            NoContainer::None(why) => api_error(StatusCode::NOT_FOUND, why),
            e => api_error(StatusCode::SERVICE_UNAVAILABLE, e),
        })?;

    // The engine's stream borrows its client: a task owns both and hands the pieces over.
    let (tx, rx) = mpsc::channel(BUFFER);
    let mut stop = s.stop.clone();
    tokio::spawn(async move {
        let mut output = std::pin::pin!(pieces(engine.logs(&id, request)));
        loop {
            let piece = tokio::select! {
                p = output.next() => match p {
                    Some(Ok(p)) => p,
                    Some(Err(e)) => LogPiece::Error(e.to_string()),
                    None => break,
                },
                // So that shutdown does not wait for a client following a container.
                _ = stop.wait_for(|stopped| *stopped) => LogPiece::DaemonStopping,
                // The client went away while the container was quiet.
                () = tx.closed() => break,
            };
            let last = matches!(piece, LogPiece::Error(_) | LogPiece::DaemonStopping);
            if tx.send(piece).await.is_err() || last {
                break;
            }
        }
    });
    let lines = futures_util::stream::unfold(rx, |mut rx| async move {
        let piece = rx.recv().await?;
        let mut line = serde_json::to_vec(&piece)
            .unwrap_or_else(|_| br#"{"error":"the output could not be encoded"}"#.to_vec());
        line.push(b'\n');
        Some((Ok::<_, Infallible>(line), rx))
    });
    Response::builder()
        .header(header::CONTENT_TYPE, "application/x-ndjson")
        .body(Body::from_stream(lines))
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::container_output::path_for;
    use crate::infra::docker::container::LogChunk;
    use crate::infra::docker::DockerError;

    fn query(pairs: &[(&str, &str)]) -> LogsQuery {
        let get = |k: &str| {
            pairs
                .iter()
                .find(|(name, _)| *name == k)
                .map(|(_, v)| v.to_string())
        };
        LogsQuery {
            tail: get("tail"),
            since: get("since"),
            timestamps: get("timestamps"),
            follow: get("follow"),
        }
    }

    #[test]
    fn the_query_says_which_output_and_how() {
        assert_eq!(request_of(&query(&[])), Ok(LogsRequest::default()));
        assert_eq!(
            request_of(&query(&[
                ("tail", "20"),
                ("since", "1767268800"),
                ("timestamps", "true"),
                ("follow", "1"),
            ])),
            Ok(LogsRequest {
                tail: Some(20),
                since: Some(1_767_268_800),
                timestamps: true,
                follow: true,
            })
        );
        assert_eq!(request_of(&query(&[("tail", "all")])).unwrap().tail, None);
        let bad = |pairs: &[(&str, &str)]| request_of(&query(pairs)).unwrap_err();
        assert!(bad(&[("tail", "-3")]).starts_with("tail \"-3\""));
        assert!(bad(&[("since", "yesterday")]).contains("Unix seconds"));
        assert!(bad(&[("follow", "maybe")]).contains("true or false"));
    }

    #[test]
    fn the_clients_path_asks_for_what_it_means() {
        let request = LogsRequest {
            tail: Some(5),
            since: Some(42),
            timestamps: true,
            follow: false,
        };
        let path = path_for("alice", &request);
        assert_eq!(
            path,
            "/v1/instances/alice/logs?follow=false&timestamps=true&tail=5&since=42"
        );
        let uri: axum::http::Uri = path.parse().unwrap();
        let Query(q) = Query::<LogsQuery>::try_from_uri(&uri).unwrap();
        assert_eq!(request_of(&q), Ok(request));
        let all = path_for("bob", &LogsRequest::default());
        assert_eq!(all, "/v1/instances/bob/logs?follow=false&timestamps=false");
    }

    #[test]
    fn characters_split_across_chunks_come_out_whole_and_each_stream_on_its_own() {
        let chunks = vec![
            Ok(LogChunk::Stdout("caf\u{e9}".as_bytes()[..4].to_vec())),
            Ok(LogChunk::Stderr(b"err ".to_vec())),
            Ok(LogChunk::Stdout(vec![0xa9, b'\n'])),
            Ok(LogChunk::Stderr(vec![0xe2, 0x82])),
        ];
        let got: Vec<_> =
            crate::infra::blocking::block_on(pieces(futures_util::stream::iter(chunks)).collect());
        let got: Vec<LogPiece> = got.into_iter().map(Result::unwrap).collect();
        assert_eq!(
            got,
            [
                LogPiece::Stdout("caf".into()),
                LogPiece::Stderr("err ".into()),
                LogPiece::Stdout("\u{e9}\n".into()),
                // An unfinished character at the end is shown as what it is: broken.
                LogPiece::Stderr("\u{fffd}".into()),
            ]
        );
    }

    #[test]
    fn output_ends_at_the_first_error() {
        let chunks = vec![
            Ok(LogChunk::Stdout(b"one\n".to_vec())),
            Err(DockerError::NoImage("gone".into())),
            Ok(LogChunk::Stdout(b"never\n".to_vec())),
        ];
        let got: Vec<_> =
            crate::infra::blocking::block_on(pieces(futures_util::stream::iter(chunks)).collect());
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].as_ref().unwrap(), &LogPiece::Stdout("one\n".into()));
        assert!(got[1].is_err());
    }

    #[test]
    fn pieces_are_one_json_value_each() {
        let line = serde_json::to_string(&LogPiece::Stderr("a\nb".into())).unwrap();
        assert_eq!(line, r#"{"stderr":"a\nb"}"#);
        assert_eq!(
            serde_json::to_string(&LogPiece::DaemonStopping).unwrap(),
            r#""daemon_stopping""#
        );
        let back: LogPiece = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(back, LogPiece::Error("boom".into()));
    }
}
