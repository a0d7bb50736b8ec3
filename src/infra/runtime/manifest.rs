//! The runtime manifest: every file's sha256, size and mode. The runtime id is derived from the
//! manifest's bytes, so the id names the content and any change to any file gives a new id.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const MANIFEST_FILE: &str = "manifest.json";
const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    pub sha256: String,
    pub size: u64,
    /// Permission bits in octal, e.g. "0555".
    pub mode: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Relative path → entry, sorted (BTreeMap) so the bytes are canonical.
    pub files: BTreeMap<String, FileEntry>,
}

/// One way a runtime directory differs from its manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(String),
    Changed(String),
    ModeChanged {
        path: String,
        want: String,
        got: String,
    },
    Extra(String),
    ManifestTampered,
    ManifestUnreadable(String),
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "{p}: missing"),
            Difference::Changed(p) => write!(f, "{p}: content differs from the manifest"),
            Difference::ModeChanged { path, want, got } => {
                write!(f, "{path}: mode {got}, manifest says {want}")
            }
            Difference::Extra(p) => write!(f, "{p}: not in the manifest"),
            Difference::ManifestTampered => {
                write!(f, "{MANIFEST_FILE}: does not hash to the runtime id")
            }
            Difference::ManifestUnreadable(e) => write!(f, "{MANIFEST_FILE}: {e}"),
        }
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Manifest {
    /// A manifest for files given as (relative path, contents, mode).
    pub fn of<'a>(files: impl IntoIterator<Item = (&'a str, &'a [u8], u32)>) -> Self {
        let files = files
            .into_iter()
            .map(|(path, bytes, mode)| {
                let entry = FileEntry {
                    sha256: sha256_hex(bytes),
                    size: bytes.len() as u64,
                    mode: format!("{mode:04o}"),
                };
                (path.to_string(), entry)
            })
            .collect();
        Self {
            format: FORMAT,
            files,
        }
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serialises");
        s.push('\n');
        s.into_bytes()
    }

    /// The runtime id: the first 16 hex digits of the manifest's sha256.
    pub fn id(&self) -> String {
        sha256_hex(&self.to_bytes())[..16].to_string()
    }

    /// Re-hashes every file under `dir` and lists every difference (empty: intact).
    pub fn verify_dir(dir: &Path, id: &str) -> io::Result<Vec<Difference>> {
        let raw = match fs::read(dir.join(MANIFEST_FILE)) {
            Ok(raw) => raw,
            Err(e) => return Ok(vec![Difference::ManifestUnreadable(e.to_string())]),
        };
        let manifest: Manifest = match serde_json::from_slice(&raw) {
            Ok(m) => m,
            Err(e) => return Ok(vec![Difference::ManifestUnreadable(e.to_string())]),
        };
        let mut diffs = Vec::new();
        if manifest.to_bytes() != raw || manifest.id() != id {
            diffs.push(Difference::ManifestTampered);
        }
        for (path, want) in &manifest.files {
            let full = dir.join(path);
            let meta = match fs::symlink_metadata(&full) {
                Ok(m) if m.is_file() => m,
                _ => {
                    diffs.push(Difference::Missing(path.clone()));
                    continue;
                }
            };
            if meta.len() != want.size || sha256_hex(&fs::read(&full)?) != want.sha256 {
                diffs.push(Difference::Changed(path.clone()));
            }
            let got = format!("{:04o}", meta.permissions().mode() & 0o7777);
            if got != want.mode {
                diffs.push(Difference::ModeChanged {
                    path: path.clone(),
                    want: want.mode.clone(),
                    got,
                });
            }
        }
        for path in files_under(dir)? {
            if path != MANIFEST_FILE && !manifest.files.contains_key(&path) {
                diffs.push(Difference::Extra(path));
            }
        }
        Ok(diffs)
    }
}

/// Every non-directory entry below `dir`, as a relative path with `/` separators.
fn files_under(dir: &Path) -> io::Result<Vec<String>> {
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) -> io::Result<()> {
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(base, &path, out)?;
            } else {
                let rel = path.strip_prefix(base).expect("below base");
                out.push(rel.to_string_lossy().into_owned());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(dir, dir, &mut out)?;
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_depends_on_content_and_mode_only() {
        let a = Manifest::of([("bin/x", &b"one"[..], 0o555), ("VERSION.txt", b"v1", 0o444)]);
        let b = Manifest::of([("VERSION.txt", &b"v1"[..], 0o444), ("bin/x", b"one", 0o555)]);
        assert_eq!(a.id(), b.id(), "order does not matter");
        let c = Manifest::of([("bin/x", &b"two"[..], 0o555), ("VERSION.txt", b"v1", 0o444)]);
        assert_ne!(a.id(), c.id());
        let d = Manifest::of([("bin/x", &b"one"[..], 0o755), ("VERSION.txt", b"v1", 0o444)]);
        assert_ne!(a.id(), d.id());
        assert_eq!(a.id().len(), 16);
    }
}
