//! A throwaway container: create, start, wait, collect output, remove. Used to check an image
//! and a runtime together (the agent's self-check) before any instance depends on them. It
//! gets the same hardened host config as an instance's container.

use bollard::Docker;
use futures_util::StreamExt;

use super::container::{self, create_body, LogChunk};
use super::DockerError;
use crate::infra::container_spec::ContainerSpec;

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub container: ContainerSpec,
    /// Overrides the image's entry point (None: the agent).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `spec` to completion and removes the container, whatever happened.
pub async fn run(docker: &Docker, spec: &ProbeSpec) -> Result<ProbeOutput, DockerError> {
    let body = create_body(
        &spec.container,
        spec.entrypoint.clone(),
        Some(spec.cmd.clone()),
    );
    let created = docker
        .create_container(None, body)
        .await
        .map_err(|source| DockerError::CreateContainer {
            image: spec.container.image.clone(),
            source,
        })?;
    let id = created.id;
    let result = run_created(docker, &id).await;
    let removed = container::remove(docker, &id).await;
    let output = result?;
    removed?;
    Ok(output)
}

async fn run_created(docker: &Docker, id: &str) -> Result<ProbeOutput, DockerError> {
    container::start(docker, id).await?;
    let mut exit_code = 0;
    let mut waits = docker.wait_container(id, None);
    while let Some(item) = waits.next().await {
        match item {
            Ok(resp) => exit_code = resp.status_code,
            // bollard reports a non-zero exit as an error carrying the code.
            Err(bollard::errors::Error::DockerContainerWaitError { code, .. }) => exit_code = code,
            Err(source) => {
                return Err(DockerError::WaitContainer {
                    id: id.to_string(),
                    source,
                })
            }
        }
    }
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut logs = std::pin::pin!(container::logs(docker, id, None, false));
    while let Some(chunk) = logs.next().await {
        match chunk? {
            LogChunk::Stdout(b) => stdout.extend(b),
            LogChunk::Stderr(b) => stderr.extend(b),
        }
    }
    Ok(ProbeOutput {
        exit_code,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}
