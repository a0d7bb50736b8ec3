//! Image build, inspect and remove.

use std::collections::HashMap;

use bollard::query_parameters::{BuildImageOptionsBuilder, RemoveImageOptionsBuilder};
use bollard::Docker;
use futures_util::StreamExt;

use super::{is_not_found, DockerError};

/// What the supervisor needs to know of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub id: String,
    pub size: u64,
    pub labels: HashMap<String, String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    /// `repository@sha256:…` for every registry it was pushed to.
    pub repo_digests: Vec<String>,
}

/// One line of build progress.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    Step(String),
    Status(String),
}

/// Builds `tag` from a gzipped tar context with the classic builder (no registry needed:
/// the context's Dockerfile must not pull), passing `labels` as build-time labels.
pub async fn build(
    docker: &Docker,
    tag: &str,
    context_tar_gz: Vec<u8>,
    labels: HashMap<String, String>,
    no_cache: bool,
    mut progress: impl FnMut(Progress),
) -> Result<(), DockerError> {
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(tag)
        .rm(true)
        .forcerm(true)
        .nocache(no_cache)
        .labels(&labels)
        .build();
    let body = bollard::body_full(bytes::Bytes::from(context_tar_gz));
    let mut stream = docker.build_image(options, None, Some(body));
    let fail = |message: String| DockerError::Build {
        tag: tag.to_string(),
        message,
    };
    while let Some(item) = stream.next().await {
        let info = item.map_err(|e| fail(e.to_string()))?;
        if let Some(detail) = info.error_detail {
            return Err(fail(
                detail.message.unwrap_or_else(|| "unknown error".into()),
            ));
        }
        if let Some(line) = info.stream {
            let line = line.trim_end();
            if !line.is_empty() {
                progress(Progress::Step(line.to_string()));
            }
        }
        if let Some(status) = info.status {
            progress(Progress::Status(status));
        }
    }
    Ok(())
}

/// Inspects `tag`; `None` when there is no such image.
pub async fn inspect(docker: &Docker, tag: &str) -> Result<Option<ImageInfo>, DockerError> {
    match docker.inspect_image(tag).await {
        Ok(img) => {
            let config = img.config.unwrap_or_default();
            Ok(Some(ImageInfo {
                id: img.id.unwrap_or_default(),
                size: img.size.unwrap_or(0).max(0) as u64,
                labels: config.labels.unwrap_or_default(),
                user: config.user.filter(|u| !u.is_empty()),
                entrypoint: config.entrypoint.unwrap_or_default(),
                repo_digests: img.repo_digests.unwrap_or_default(),
            }))
        }
        Err(e) if is_not_found(&e) => Ok(None),
        Err(source) => Err(DockerError::InspectImage {
            tag: tag.to_string(),
            source,
        }),
    }
}

/// Removes `tag`; an image that is already gone is not an error.
pub async fn remove(docker: &Docker, tag: &str) -> Result<(), DockerError> {
    let options = RemoveImageOptionsBuilder::default().force(true).build();
    match docker.remove_image(tag, Some(options), None).await {
        Ok(_) => Ok(()),
        Err(e) if is_not_found(&e) => Ok(()),
        Err(source) => Err(DockerError::RemoveImage {
            tag: tag.to_string(),
            source,
        }),
    }
}
