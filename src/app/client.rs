//! The CLI's side of the daemon socket.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};

use crate::app::container_output::LogPiece;
use crate::app::wire::{Health, PassReport, SOCKET_FILE};
use crate::infra::docker::container::LogsRequest;
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
        let resp = self.answer(method, path, body).await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        serde_json::from_slice(&body).map_err(unreadable)
    }

    /// The daemon's answer when it is a success, its body still to be read; a refusal as
    /// [`ClientError::Status`].
    async fn answer(
        &self,
        method: hyper::Method,
        path: &str,
        body: Bytes,
    ) -> Result<hyper::Response<Incoming>, ClientError> {
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
        if status < 400 {
            return Ok(resp);
        }
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ClientError::Transport(e.to_string()))?
            .to_bytes();
        // The API's errors are {"error": "..."}; show the sentence, not the JSON.
        let text = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(ClientError::Status { status, body: text })
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

impl DaemonClient {
    /// An instance's container output as the daemon reads it from the engine: the same
    /// that `logs` prints, a piece at a time (and on, with `request.follow`).
    pub async fn logs(
        &self,
        instance: &str,
        request: &LogsRequest,
    ) -> Result<LogPieces, ClientError> {
        let path = crate::app::container_output::path_for(instance, request);
        let resp = self.answer(hyper::Method::GET, &path, Bytes::new()).await?;
        Ok(LogPieces {
            body: resp.into_body(),
            buf: Vec::new(),
        })
    }
}

/// The daemon's answer to [`DaemonClient::logs`], read as it arrives.
pub struct LogPieces {
    body: Incoming,
    /// What has arrived of the line being read.
    buf: Vec<u8>,
}

impl LogPieces {
    /// The next piece; None once the answer has ended.
    pub async fn next(&mut self) -> Option<Result<LogPiece, ClientError>> {
        loop {
            if let Some(end) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).collect();
                return Some(serde_json::from_slice(&line[..end]).map_err(unreadable));
            }
            match self.body.frame().await {
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                Some(Err(e)) => return Some(Err(ClientError::Transport(e.to_string()))),
                // A last line without its newline is still a line.
                None if self.buf.is_empty() => return None,
                None => {
                    let line = std::mem::take(&mut self.buf);
                    return Some(serde_json::from_slice(&line).map_err(unreadable));
                }
            }
        }
    }
}
