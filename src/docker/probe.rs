//! A throwaway container: create, start, wait, collect output, remove. Used to check an image
//! and a runtime together (the agent's self-check) before any instance depends on them.
//! It runs with the same hardening as an instance's container.

use std::collections::HashMap;
use std::path::PathBuf;

use bollard::models::{ContainerCreateBody, HostConfig, Mount, MountType};
use bollard::query_parameters::{LogsOptionsBuilder, RemoveContainerOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use super::DockerError;

/// The unprivileged user every agent container runs as (the image's own USER).
pub const AGENT_USER: &str = "65532:65532";

#[derive(Debug, Clone)]
pub struct BindMount {
    pub source: PathBuf,
    pub target: String,
    pub read_only: bool,
}

#[derive(Debug, Clone)]
pub struct ProbeSpec {
    pub image: String,
    /// Overrides the image's entry point (None: the agent).
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Vec<String>,
    pub mounts: Vec<BindMount>,
    pub labels: HashMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProbeOutput {
    pub exit_code: i64,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `spec` to completion in a hardened container and removes the container.
pub async fn run(docker: &Docker, spec: &ProbeSpec) -> Result<ProbeOutput, DockerError> {
    let mounts = spec
        .mounts
        .iter()
        .map(|m| Mount {
            typ: Some(MountType::BIND),
            source: Some(m.source.to_string_lossy().into_owned()),
            target: Some(m.target.clone()),
            read_only: Some(m.read_only),
            ..Default::default()
        })
        .collect();
    let host_config = HostConfig {
        mounts: Some(mounts),
        readonly_rootfs: Some(true),
        tmpfs: Some(HashMap::from([(
            "/tmp".to_string(),
            "rw,noexec,nosuid,size=16m".to_string(),
        )])),
        cap_drop: Some(vec!["ALL".to_string()]),
        security_opt: Some(vec!["no-new-privileges".to_string()]),
        network_mode: Some("none".to_string()),
        init: Some(true),
        pids_limit: Some(64),
        memory: Some(128 << 20),
        memory_swap: Some(128 << 20),
        nano_cpus: Some(1_000_000_000),
        ..Default::default()
    };
    let body = ContainerCreateBody {
        image: Some(spec.image.clone()),
        entrypoint: spec.entrypoint.clone(),
        cmd: Some(spec.cmd.clone()),
        user: Some(AGENT_USER.to_string()),
        labels: Some(spec.labels.clone()),
        network_disabled: Some(true),
        host_config: Some(host_config),
        ..Default::default()
    };
    let created = docker
        .create_container(None, body)
        .await
        .map_err(|source| DockerError::CreateContainer {
            image: spec.image.clone(),
            source,
        })?;
    let id = created.id;
    let result = run_created(docker, &id).await;
    let removed = docker
        .remove_container(
            &id,
            Some(RemoveContainerOptionsBuilder::default().force(true).build()),
        )
        .await
        .map_err(|source| DockerError::RemoveContainer {
            id: id.clone(),
            source,
        });
    let output = result?;
    removed?;
    Ok(output)
}

async fn run_created(docker: &Docker, id: &str) -> Result<ProbeOutput, DockerError> {
    docker
        .start_container(id, None)
        .await
        .map_err(|source| DockerError::StartContainer {
            id: id.to_string(),
            source,
        })?;
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
    let mut stdout = String::new();
    let mut stderr = String::new();
    let options = LogsOptionsBuilder::default()
        .stdout(true)
        .stderr(true)
        .build();
    let mut logs = docker.logs(id, Some(options));
    while let Some(item) = logs.next().await {
        let item = item.map_err(|source| DockerError::Logs {
            id: id.to_string(),
            source,
        })?;
        match item {
            bollard::container::LogOutput::StdErr { message } => {
                stderr.push_str(&String::from_utf8_lossy(&message))
            }
            other => stdout.push_str(&String::from_utf8_lossy(&other.into_bytes())),
        }
    }
    Ok(ProbeOutput {
        exit_code,
        stdout,
        stderr,
    })
}
