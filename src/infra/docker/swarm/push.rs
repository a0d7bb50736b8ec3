//! The agent image on its way to every node: tagged for the swarm's registry, pushed, and
//! named by the digest the push gave, once per image and daemon run.

use bollard::query_parameters::{PushImageOptionsBuilder, TagImageOptionsBuilder};
use futures_util::StreamExt;

use super::SwarmEngine;
use crate::infra::docker::DockerError;

impl SwarmEngine {
    /// The local image `tag`, pushed to the registry: its reference by digest.
    pub(super) async fn image_ref(&self, tag: &str) -> Result<String, DockerError> {
        if let Some(r) = self.pushed.lock().expect("pushed map").get(tag) {
            return Ok(r.clone());
        }
        let repo = format!(
            "{}/{}",
            self.settings.swarm.registry, self.settings.repository
        );
        let version = tag.rsplit_once(':').map_or("latest", |(_, v)| v);
        let push_err = |message: String| DockerError::Push {
            image: format!("{repo}:{version}"),
            message,
        };
        self.client
            .tag_image(
                tag,
                Some(
                    TagImageOptionsBuilder::default()
                        .repo(&repo)
                        .tag(version)
                        .build(),
                ),
            )
            .await
            .map_err(|e| push_err(e.to_string()))?;
        let mut progress = self.client.push_image(
            &repo,
            Some(PushImageOptionsBuilder::default().tag(version).build()),
            None,
        );
        while let Some(item) = progress.next().await {
            let info = item.map_err(|e| push_err(e.to_string()))?;
            if let Some(e) = info.error_detail.and_then(|d| d.message) {
                return Err(push_err(e));
            }
        }
        let image =
            crate::infra::docker::image::inspect(&self.client, &format!("{repo}:{version}"))
                .await?
                .ok_or_else(|| push_err("the tagged image is gone".to_string()))?;
        let prefix = format!("{repo}@");
        let reference = image
            .repo_digests
            .into_iter()
            .find(|d| d.starts_with(&prefix))
            .ok_or_else(|| push_err("the registry gave no digest".to_string()))?;
        tracing::info!(image = %reference, "agent image pushed to the swarm's registry");
        self.pushed
            .lock()
            .expect("pushed map")
            .insert(tag.to_string(), reference.clone());
        Ok(reference)
    }
}
