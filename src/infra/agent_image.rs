//! The agent image: its build context (embedded from agent-image/, so an installed binary can
//! build it), the content hash that names it, and the build that is a no-op when nothing
//! changed.
//!
//! The tag is `<repository>:<first 12 hex of the context hash>` and the full hash is a label,
//! so identical contexts give one shared image and any change gives a new tag: two homes on
//! one engine can never overwrite each other's image.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use supervisor_agent::image::CONTEXT;

use crate::infra::docker::{self, image::Progress, Client, DockerError};

pub const LABEL_CONTEXT_HASH: &str = "supervisor.context-hash";
pub const LABEL_PROTOCOL: &str = "supervisor.protocol-version";

/// The build context as an uncompressed tar: owner 0:0, mtime 0, the modes CONTEXT gives,
/// so the same sources always give the same bytes and the same hash.
pub fn context_tar() -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in CONTEXT {
        let mut header = tar::Header::new_ustar();
        header.set_mode(entry.mode);
        header.set_uid(0);
        header.set_gid(0);
        header.set_mtime(0);
        let (path, data) = match entry.contents {
            Some(bytes) => {
                header.set_entry_type(tar::EntryType::Regular);
                (entry.path.to_string(), bytes)
            }
            None => {
                header.set_entry_type(tar::EntryType::Directory);
                (format!("{}/", entry.path), &[][..])
            }
        };
        header.set_size(data.len() as u64);
        builder
            .append_data(&mut header, path, data)
            .expect("writing to memory");
    }
    builder.into_inner().expect("writing to memory")
}

/// sha256 of the build context, hex.
pub fn context_hash() -> String {
    hex::encode(Sha256::digest(context_tar()))
}

pub fn tag_for(repository: &str, hash: &str) -> String {
    format!("{repository}:{}", &hash[..12])
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).expect("writing to memory");
    enc.finish().expect("writing to memory")
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageReport {
    pub tag: String,
    pub id: String,
    pub size: u64,
    /// False when an image with the same context hash already existed.
    pub built: bool,
    pub elapsed: Duration,
}

/// Builds the agent image unless an image with the same content hash is already there
/// (`force`: build anyway, without the engine's layer cache).
pub async fn ensure_built(
    docker: &Client,
    repository: &str,
    force: bool,
    progress: impl FnMut(Progress),
) -> Result<ImageReport, DockerError> {
    let started = Instant::now();
    let tar = context_tar();
    let hash = hex::encode(Sha256::digest(&tar));
    let tag = tag_for(repository, &hash);
    let existing = docker::image::inspect(docker, &tag).await?;
    let built = match &existing {
        Some(img) if !force && img.labels.get(LABEL_CONTEXT_HASH) == Some(&hash) => false,
        _ => {
            let labels = HashMap::from([(LABEL_CONTEXT_HASH.to_string(), hash.clone())]);
            docker::image::build(docker, &tag, gzip(&tar), labels, force, progress).await?;
            true
        }
    };
    let img = docker::image::inspect(docker, &tag)
        .await?
        .ok_or_else(|| DockerError::NoImage(tag.clone()))?;
    Ok(ImageReport {
        tag,
        id: img.id,
        size: img.size,
        built,
        elapsed: started.elapsed(),
    })
}

/// The tag of the image this build of the supervisor uses.
pub fn current_tag(repository: &str) -> String {
    tag_for(repository, &context_hash())
}

#[cfg(test)]
mod tests {
    use super::*;
    use supervisor_agent::protocol::PROTOCOL_VERSION;

    #[test]
    fn context_is_deterministic_and_carries_modes() {
        assert_eq!(context_tar(), context_tar());
        let tar = context_tar();
        let mut archive = tar::Archive::new(&tar[..]);
        let mut seen = HashMap::new();
        for entry in archive.entries().unwrap() {
            let entry = entry.unwrap();
            let h = entry.header();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 0)
            );
            seen.insert(
                entry.path().unwrap().to_string_lossy().into_owned(),
                h.mode().unwrap(),
            );
        }
        assert_eq!(
            seen["rootfs/tmp/"], 0o1777,
            "/tmp must be world-writable and sticky"
        );
        assert!(seen.contains_key("Dockerfile"));
        assert_eq!(seen.len(), CONTEXT.len());
    }

    #[test]
    fn dockerfile_carries_the_protocol_label_and_pulls_nothing() {
        let dockerfile = std::str::from_utf8(CONTEXT[0].contents.unwrap()).unwrap();
        let label = format!("{LABEL_PROTOCOL}=\"{PROTOCOL_VERSION}\"");
        assert!(dockerfile.contains(&label), "Dockerfile lacks {label}");
        let froms: Vec<_> = dockerfile
            .lines()
            .filter(|l| l.trim_start().to_ascii_uppercase().starts_with("FROM "))
            .collect();
        assert_eq!(froms, ["FROM scratch"]);
        assert!(dockerfile.contains("USER 65532:65532"));
    }

    #[test]
    fn tag_is_repository_and_short_hash() {
        let hash = context_hash();
        assert_eq!(hash.len(), 64);
        assert_eq!(
            tag_for("supervisor-agent", &hash),
            format!("supervisor-agent:{}", &hash[..12])
        );
    }
}
