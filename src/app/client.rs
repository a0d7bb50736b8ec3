//! The CLI's side of the daemon socket.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};

use crate::app::wire::{Health, PassReport, SOCKET_FILE};
use crate::infra::home::Home;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no supervisor daemon is running on {home}: start one with `supervisor --home {home} run`"
    )]
    NotRunning { home: String },
    /// The daemon refused the request; `body` is its sentence (the status stays in the
    /// value for callers that branch on it, not in the text people read).
    #[error("{body}")]
    Status { status: u16, body: String },
    #[error("talking to the daemon failed: {0}")]
    Transport(String),
}

/// An answer this build cannot read: the daemon is most likely another version. serde's
/// words about it would help nobody; the versions are what to check.
fn unreadable(_: serde_json::Error) -> ClientError {
    ClientError::Transport(
        "the daemon's answer is not what this version of supervisor expects: \
         check that `supervisor run` and this command are the same version"
            .into(),
    )
}

pub struct DaemonClient {
    socket: PathBuf,
    home: String,
    client: Client<UnixConnector, Full<Bytes>>,
}

impl DaemonClient {
    pub fn for_home(home: &Home) -> Self {
        Self {
            socket: home.run_dir().join(SOCKET_FILE),
            home: home.root().display().to_string(),
            client: Client::unix(),
        }
    }

    async fn request(
        &self,
        method: hyper::Method,
        path: &str,
    ) -> Result<serde_json::Value, ClientError> {
        self.request_with(method, path, Bytes::new()).await
    }

    async fn request_with(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> Result<serde_json::Value, ClientError> {
        if !self.socket.exists() {
            return Err(ClientError::NotRunning {
                home: self.home.clone(),
            });
        }
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header("content-type", "application/json")
            .body(Full::new(body))
            .map_err(|e| ClientError::Transport(e.to_string()))?;
        let resp = self.client.request(req).await.map_err(|e| {
            // A socket file with nobody listening: the daemon died without cleaning up.
            if e.is_connect() {
                ClientError::NotRunning {
                    home: self.home.clone(),
                }
            } else {
                ClientError::Transport(e.to_string())
            }
        })?;
        let status = resp.status().as_u16();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        if status >= 400 {
            // The API's errors are {"error": "..."}; show the sentence, not the JSON.
            let text = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v["error"].as_str().map(str::to_string))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(ClientError::Status { status, body: text });
        }
        serde_json::from_slice(&body).map_err(unreadable)
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        let v = self.request(hyper::Method::GET, "/v1/health").await?;
        serde_json::from_value(v).map_err(unreadable)
    }

    /// What the daemon process is and runs with (its token by fingerprint).
    pub async fn info(&self) -> Result<crate::app::wire::DaemonInfo, ClientError> {
        let v = self.request(hyper::Method::GET, "/v1/daemon").await?;
        serde_json::from_value(v).map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// The daemon's live view: readiness and resource samples.
    pub async fn status(&self) -> Result<crate::app::wire::LiveSnapshot, ClientError> {
        let v = self.request(hyper::Method::GET, "/v1/status").await?;
        serde_json::from_value(v).map_err(unreadable)
    }

    /// Tells the scheduler that tasks changed in the store.
    pub async fn wake_scheduler(&self) -> Result<(), ClientError> {
        self.request(hyper::Method::POST, "/v1/scheduler/wake")
            .await
            .map(drop)
    }

    /// Asks the daemon to act on the store now; returns once a pass has run.
    pub async fn reconcile(&self) -> Result<Option<PassReport>, ClientError> {
        let v = self.request(hyper::Method::POST, "/v1/reconcile").await?;
        Ok(serde_json::from_value(v["pass"].clone()).ok())
    }
}

impl DaemonClient {
    /// Sends a message to an instance through the daemon.
    pub async fn send(
        &self,
        instance: &str,
        req: &crate::app::wire::SendRequest,
    ) -> Result<crate::app::wire::SendResponse, ClientError> {
        let body = serde_json::to_vec(req).map_err(|e| ClientError::Transport(e.to_string()))?;
        let path = format!("/v1/instances/{instance}/messages");
        let v = self
            .request_with(hyper::Method::POST, &path, Bytes::from(body))
            .await?;
        serde_json::from_value(v).map_err(unreadable)
    }
}
