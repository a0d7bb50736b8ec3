//! `GET /v1/events`: the audit log as server-sent events, the latest ones first and then
//! each new one as it is recorded.
//!
//! The stream follows the database rather than the daemon's own doings: events are
//! recorded by the CLI and by store changes as well as by the daemon, and the database is
//! where all of them land. Every event carries its id as the SSE `id`, so a client that
//! reconnects (after a daemon restart, say) with `Last-Event-ID` gets what it missed and
//! nothing twice.

use std::convert::Infallible;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::Stream;
use serde::Deserialize;
use tokio::sync::{mpsc, watch};

use super::{api_error, own_store, ApiError, AppState};
use crate::domain::instance::InstanceName;
use crate::infra::store::events::Event;
use crate::infra::store::Store;

/// How often the stream looks for new events (one indexed query).
const POLL: Duration = Duration::from_millis(500);
/// Latest events sent first when the client names no starting point.
const DEFAULT_LIMIT: u32 = 20;
const MAX_LIMIT: u32 = 1000;
/// Most events one look at the database sends.
const BATCH: u32 = 500;
/// A comment line this often keeps proxies from closing an idle stream, and shows the
/// daemon that a client went away.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

/// The query; taken as text so that a bad value gets a sentence, not a parser's words.
#[derive(Debug, Deserialize)]
pub(super) struct EventsQuery {
    after: Option<String>,
    instance: Option<String>,
    limit: Option<String>,
}

/// Where a stream starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// After the event with this id.
    After(i64),
    /// With the latest N events.
    Latest(u32),
}

fn start_of(q: &EventsQuery, headers: &HeaderMap) -> Result<Start, String> {
    let last_seen = headers
        .get("last-event-id")
        .map(|v| v.to_str().unwrap_or_default().to_string());
    if let Some(raw) = q.after.clone().or(last_seen) {
        return raw
            .trim()
            .parse::<i64>()
            .map(Start::After)
            .map_err(|_| format!("after {raw:?}: expected an event id (a whole number)"));
    }
    match &q.limit {
        None => Ok(Start::Latest(DEFAULT_LIMIT)),
        Some(raw) => match raw.trim().parse::<u32>() {
            Ok(n) if n <= MAX_LIMIT => Ok(Start::Latest(n)),
            _ => Err(format!(
                "limit {raw:?}: expected a whole number from 0 to {MAX_LIMIT}"
            )),
        },
    }
}

pub(super) async fn stream(
    State(s): State<AppState>,
    headers: HeaderMap,
    Query(q): Query<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let start = start_of(&q, &headers).map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?;
    let instance = q
        .instance
        .as_deref()
        .map(InstanceName::parse)
        .transpose()
        .map_err(|e| api_error(StatusCode::BAD_REQUEST, e))?
        .map(|n| n.to_string());
    // The store is opened here so that a home that cannot be read is an error answer,
    // not an empty stream.
    let store = own_store(&s).await?;
    let (tx, rx) = mpsc::channel(BATCH as usize);
    std::thread::Builder::new()
        .name("api-events".into())
        .spawn(move || poll(store, instance, start, tx))
        .map_err(|e| api_error(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let events = futures_util::stream::unfold((rx, s.stop.clone()), next);
    Ok(Sse::new(events).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}

/// The next event for the client; the stream ends when the daemon stops (so that shutdown
/// does not wait for clients) or the poller ends (the database failed: the client
/// reconnects with its `Last-Event-ID`).
async fn next(
    (mut rx, mut stop): (mpsc::Receiver<Event>, watch::Receiver<bool>),
) -> Option<(
    Result<SseEvent, Infallible>,
    (mpsc::Receiver<Event>, watch::Receiver<bool>),
)> {
    let event = tokio::select! {
        e = rx.recv() => e?,
        _ = stop.wait_for(|stopped| *stopped) => return None,
    };
    let sse = SseEvent::default()
        .id(event.id.to_string())
        .json_data(&event)
        .unwrap_or_else(|_| SseEvent::default().comment("unencodable event"));
    Some((Ok(sse), (rx, stop)))
}

/// Reads the events on a thread of its own (SQLite calls block) until the client is gone.
fn poll(store: Store, instance: Option<String>, start: Start, tx: mpsc::Sender<Event>) {
    let instance = instance.as_deref();
    let first = match start {
        Start::After(id) => store
            .events_after(id, instance, BATCH)
            .map(|events| (events, id)),
        Start::Latest(n) => store.recent_events(instance, n.max(1)).map(|mut latest| {
            // The newest is where following starts, even when none is to be sent.
            let newest = latest.first().map_or(0, |e| e.id);
            latest.truncate(n as usize);
            latest.reverse();
            (latest, newest)
        }),
    };
    let Ok((mut batch, mut after)) = first else {
        return;
    };
    loop {
        for e in batch {
            after = after.max(e.id);
            if tx.blocking_send(e).is_err() {
                return;
            }
        }
        std::thread::sleep(POLL);
        if tx.is_closed() {
            return;
        }
        match store.events_after(after, instance, BATCH) {
            Ok(events) => batch = events,
            Err(e) => {
                tracing::warn!(error = %e, "the event stream cannot read the database");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(after: Option<&str>, limit: Option<&str>) -> EventsQuery {
        EventsQuery {
            after: after.map(Into::into),
            instance: None,
            limit: limit.map(Into::into),
        }
    }

    #[test]
    fn a_stream_starts_after_the_last_seen_event_or_with_the_latest() {
        let none = HeaderMap::new();
        let mut seen = HeaderMap::new();
        seen.insert("last-event-id", "41".parse().unwrap());
        assert_eq!(start_of(&query(None, None), &none), Ok(Start::Latest(20)));
        assert_eq!(
            start_of(&query(None, Some("5")), &none),
            Ok(Start::Latest(5))
        );
        assert_eq!(start_of(&query(None, None), &seen), Ok(Start::After(41)));
        // The query wins over the header.
        assert_eq!(
            start_of(&query(Some("7"), None), &seen),
            Ok(Start::After(7))
        );
        assert_eq!(
            start_of(&query(Some("x"), None), &none),
            Err("after \"x\": expected an event id (a whole number)".into())
        );
        assert!(start_of(&query(None, Some("1001")), &none).is_err());
    }
}
