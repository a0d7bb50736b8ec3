//! Per-instance listeners: an instance with a `port` in its config gets its own loopback
//! listener with that instance's health and message endpoints, so clients written for one
//! port per agent keep working. They follow the configs at every pass, and demand the API's
//! bearer token: without one they are not opened at all, and each instance's state detail
//! says why (`listen::port_closed_note`, written by the reconciler).

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};

use axum::extract::{Query, State};
use axum::middleware;
use axum::routing::get;
use axum::{Json, Router};
use tokio::sync::oneshot;

use super::auth::{require_token, Token};
use super::extract::{self, ApiJson};
use super::messages::Transport;
use super::{instances, messages, ApiError, AppState};

struct Listener {
    port: u16,
    stop: oneshot::Sender<()>,
}

/// The running per-instance listeners.
#[derive(Default)]
pub struct InstancePorts {
    running: HashMap<String, Listener>,
    /// Bind failures already reported, so a taken port is logged once, not every pass.
    reported: HashMap<String, u16>,
}

#[derive(Clone)]
struct PortState {
    app: AppState,
    instance: String,
}

impl InstancePorts {
    /// Makes the listeners match `wanted` (instance → port): stops the ones no longer
    /// wanted or moved, and starts the new ones, each behind `token`.
    pub async fn ensure(&mut self, wanted: &HashMap<String, u16>, app: &AppState, token: &Token) {
        let gone: Vec<String> = self
            .running
            .iter()
            .filter(|(name, l)| wanted.get(*name) != Some(&l.port))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            if let Some(l) = self.running.remove(&name) {
                let _ = l.stop.send(());
                tracing::info!(instance = %name, port = l.port, "instance listener stopped");
            }
        }
        for (name, port) in wanted {
            if self.running.contains_key(name) {
                continue;
            }
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, *port));
            match tokio::net::TcpListener::bind(addr).await {
                Ok(listener) => {
                    self.reported.remove(name);
                    let (stop, stopped) = oneshot::channel();
                    let state = PortState {
                        app: app.clone(),
                        instance: name.clone(),
                    };
                    let router = Router::new()
                        .route("/health", get(health))
                        .route("/messages", get(history).post(send))
                        .fallback(extract::no_such_endpoint)
                        .method_not_allowed_fallback(extract::wrong_method)
                        .with_state(state)
                        .layer(middleware::from_fn(extract::errors_as_json))
                        .layer(middleware::from_fn_with_state(token.clone(), require_token));
                    tokio::spawn(async move {
                        let _ = axum::serve(listener, router)
                            .with_graceful_shutdown(async {
                                let _ = stopped.await;
                            })
                            .await;
                    });
                    tracing::info!(instance = %name, %addr, "instance listener started");
                    self.running
                        .insert(name.clone(), Listener { port: *port, stop });
                }
                Err(e) => {
                    if self.reported.insert(name.clone(), *port) != Some(*port) {
                        tracing::warn!(instance = %name, %addr, error = %e, "cannot listen on the instance's port; retrying at every pass");
                    }
                }
            }
        }
    }

    /// The instance → port map a set of configs asks for.
    pub fn wanted<'a>(
        configs: impl IntoIterator<Item = (&'a str, Option<u16>)>,
    ) -> HashMap<String, u16> {
        configs
            .into_iter()
            .filter_map(|(name, port)| Some((name.to_string(), port?)))
            .collect()
    }
}

async fn health(
    State(s): State<PortState>,
) -> Result<Json<crate::app::status::InstanceStatus>, ApiError> {
    instances::one(State(s.app), axum::extract::Path(s.instance)).await
}

async fn send(
    State(s): State<PortState>,
    ApiJson(req): ApiJson<messages::SendRequest>,
) -> Result<Json<messages::SendResponse>, ApiError> {
    messages::send_message(
        State(s.app),
        Some(axum::Extension(Transport::Tcp)),
        axum::extract::Path(s.instance),
        ApiJson(req),
    )
    .await
}

async fn history(
    State(s): State<PortState>,
    q: Query<messages::HistoryQuery>,
) -> Result<Json<Vec<crate::infra::store::messages::MessageRow>>, ApiError> {
    messages::history(State(s.app), axum::extract::Path(s.instance), q).await
}
