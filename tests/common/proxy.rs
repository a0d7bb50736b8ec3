//! A unix-socket proxy in front of the Docker engine that a test can cut and restore, to
//! make the engine "go away" without stopping the real one.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::net::{UnixListener, UnixStream};
use tokio::task::AbortHandle;

pub struct DockerProxy {
    path: PathBuf,
    upstream: PathBuf,
    rt: tokio::runtime::Runtime,
    tasks: Arc<Mutex<Vec<AbortHandle>>>,
}

impl DockerProxy {
    pub fn start(path: &Path) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let mut p = Self {
            path: path.to_path_buf(),
            upstream: PathBuf::from("/var/run/docker.sock"),
            rt,
            tasks: Arc::default(),
        };
        p.resume();
        p
    }

    pub fn uri(&self) -> String {
        format!("unix://{}", self.path.display())
    }

    /// Cuts every connection and stops listening: the engine is gone for whoever uses us.
    pub fn cut(&mut self) {
        for t in self.tasks.lock().unwrap().drain(..) {
            t.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }

    pub fn resume(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = self
            .rt
            .block_on(async { UnixListener::bind(&self.path) })
            .unwrap();
        let upstream = self.upstream.clone();
        let tasks = self.tasks.clone();
        let accept = self.rt.spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                let upstream = upstream.clone();
                let conn = tokio::spawn(async move {
                    if let Ok(mut server) = UnixStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                tasks.lock().unwrap().push(conn.abort_handle());
            }
        });
        self.tasks.lock().unwrap().push(accept.abort_handle());
    }
}

impl Drop for DockerProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
