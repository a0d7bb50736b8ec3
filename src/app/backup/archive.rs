//! Writing a backup archive: a gzip-compressed tar stream with `manifest.json` first, then
//! every entry in manifest order, read from the staged copies.
//!
//! The archive is written to a temporary file (mode 0600) in the destination directory,
//! flushed to disk and only then given its name, which it never takes from an existing file:
//! a reader sees a complete archive or none.

use std::fs::File;
use std::io::{self, BufWriter};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use flate2::write::GzEncoder;
use flate2::Compression;

use super::collect::Stager;
use super::manifest::{Kind, Manifest, MANIFEST_PATH};
use crate::infra::fsutil;

#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("{} already exists: choose another --out", .0.display())]
    Exists(PathBuf),
    #[error("staged copy of {path} changed before it was archived")]
    StagedChanged { path: String },
    #[error("cannot write the archive {}: {source}", path.display())]
    Io { path: PathBuf, source: io::Error },
}

/// Writes the archive to `out`; returns its size in bytes.
pub fn write(
    out: &Path,
    stager: &Stager,
    manifest: &Manifest,
    mtime: u64,
) -> Result<u64, WriteError> {
    let io_err = |source| WriteError::Io {
        path: out.to_path_buf(),
        source,
    };
    let dir = out.parent().ok_or_else(|| {
        io_err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "the path has no parent directory",
        ))
    })?;
    let tmp = tempfile::Builder::new()
        .prefix(".backup-")
        .suffix(".tmp")
        .permissions(std::fs::Permissions::from_mode(fsutil::FILE_MODE))
        .tempfile_in(dir)
        .map_err(io_err)?;
    let file = tmp.as_file().try_clone().map_err(io_err)?;
    let gz = GzEncoder::new(BufWriter::new(file), Compression::default());
    let mut tar = tar::Builder::new(gz);

    let manifest_bytes = manifest.to_bytes();
    let mut h = header(
        tar::EntryType::Regular,
        manifest_bytes.len() as u64,
        0o600,
        mtime,
    );
    tar.append_data(&mut h, MANIFEST_PATH, manifest_bytes.as_slice())
        .map_err(io_err)?;
    for e in &manifest.entries {
        let mode = u32::from_str_radix(&e.mode, 8).unwrap_or(0o600);
        match e.kind {
            Kind::Dir => {
                let mut h = header(tar::EntryType::Directory, 0, mode, mtime);
                tar.append_data(&mut h, &e.path, io::empty())
                    .map_err(io_err)?;
            }
            Kind::File => {
                let staged = File::open(stager.staged(&e.path)).map_err(io_err)?;
                // The header's size comes from the manifest; the copy is private to this
                // process, so a difference means something tampered with the staging area.
                if staged.metadata().map_err(io_err)?.len() != e.size {
                    return Err(WriteError::StagedChanged {
                        path: e.path.clone(),
                    });
                }
                let mut h = header(tar::EntryType::Regular, e.size, mode, mtime);
                tar.append_data(&mut h, &e.path, staged).map_err(io_err)?;
            }
        }
    }
    tar.finish().map_err(io_err)?;
    let gz = tar.into_inner().map_err(io_err)?;
    let buffered = gz.finish().map_err(io_err)?;
    let file = buffered.into_inner().map_err(|e| io_err(e.into_error()))?;
    file.sync_all().map_err(io_err)?;
    let size = file.metadata().map_err(io_err)?.len();
    tmp.persist_noclobber(out).map_err(|e| {
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            WriteError::Exists(out.to_path_buf())
        } else {
            io_err(e.error)
        }
    })?;
    fsutil::sync_dir(dir).map_err(io_err)?;
    Ok(size)
}

fn header(kind: tar::EntryType, size: u64, mode: u32, mtime: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_size(size);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_uid(0);
    h.set_gid(0);
    h
}
