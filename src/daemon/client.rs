//! The CLI's side of the daemon socket.

use std::path::PathBuf;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyperlocal::{UnixClientExt, UnixConnector};

use super::api::{Health, PassReport, SOCKET_FILE};
use crate::home::Home;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "no supervisor daemon is running on {home}: start one with `supervisor --home {home} run`"
    )]
    NotRunning { home: String },
    #[error("the daemon answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("talking to the daemon failed: {0}")]
    Transport(String),
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
        if !self.socket.exists() {
            return Err(ClientError::NotRunning {
                home: self.home.clone(),
            });
        }
        let uri: hyper::Uri = hyperlocal::Uri::new(&self.socket, path).into();
        let req = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(Bytes::new()))
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
            return Err(ClientError::Status {
                status,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Transport(e.to_string()))
    }

    pub async fn health(&self) -> Result<Health, ClientError> {
        let v = self.request(hyper::Method::GET, "/v1/health").await?;
        serde_json::from_value(v).map_err(|e| ClientError::Transport(e.to_string()))
    }

    /// Asks the daemon to act on the store now; returns once a pass has run.
    pub async fn reconcile(&self) -> Result<Option<PassReport>, ClientError> {
        let v = self.request(hyper::Method::POST, "/v1/reconcile").await?;
        Ok(serde_json::from_value(v["pass"].clone()).ok())
    }
}
