//! `manifest.json`: what a backup holds, and the checks an archive must pass against it.
//!
//! The manifest is the archive's first entry, so a reader can check every later entry as it
//! streams past (path, kind, size, sha256) without buffering or extracting anything first.
//! It guards against damage and tampering with the data, not against someone who rewrites
//! the manifest as well: it is not a signature.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};

pub const MANIFEST_PATH: &str = "manifest.json";
/// The manifest format this build writes and reads.
pub const FORMAT: u32 = 1;
/// A manifest lists every file once; this is far above any real home's and stops a damaged
/// size field from making the reader allocate without bound.
pub const MAX_MANIFEST_BYTES: u64 = 64 << 20;
/// The only top-level names a backup may hold (besides the manifest).
const TOP_LEVEL: [&str; 3] = [
    crate::infra::home::DB_FILE,
    crate::infra::home::CONFIG_FILE,
    "instances",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    pub supervisor_version: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub home_id: String,
    /// The database's `user_version` when it was copied.
    pub schema_version: i64,
    /// Row counts of the database copy, for people reading the manifest.
    pub database: DatabaseCounts,
    /// Every entry after the manifest, in archive order (a directory before what it holds).
    pub entries: Vec<Entry>,
    /// What was found but deliberately not stored, with why.
    pub skipped: Vec<Skipped>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseCounts {
    pub instances: u64,
    pub messages: u64,
    pub tasks: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    File,
    Dir,
}

impl Kind {
    fn noun(self) -> &'static str {
        match self {
            Kind::File => "regular file",
            Kind::Dir => "directory",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Relative to the home, `/`-separated, no trailing `/`.
    pub path: String,
    pub kind: Kind,
    /// Bytes; 0 for a directory.
    pub size: u64,
    /// Permission bits the original had, in octal ("0600").
    pub mode: String,
    /// Lowercase hex; None for a directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Skipped {
    pub path: String,
    pub reason: String,
}

/// What an archive entry is, as its tar header says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveKind {
    File,
    Dir,
    /// Anything else (link, device, FIFO, …), named for the error.
    Other(&'static str),
}

/// Why an archive is refused. Each names the first entry found wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("{path}: {problem}")]
    Entry { path: String, problem: Problem },
    #[error("{MANIFEST_PATH}: {0}")]
    Manifest(String),
    /// The gzip or tar stream itself is damaged.
    #[error("{0}")]
    Stream(String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("unsafe path: {0}")]
    UnsafePath(&'static str),
    #[error("not part of a supervisor home backup")]
    OutsideHome,
    #[error("is a {0}; a backup holds only regular files and directories")]
    NotFileOrDir(&'static str),
    #[error("not listed in the manifest")]
    NotListed,
    #[error("appears more than once")]
    Duplicate,
    #[error("is a {got} in the archive but a {want} in the manifest")]
    KindMismatch {
        want: &'static str,
        got: &'static str,
    },
    #[error("is {got} bytes, the manifest says {want}")]
    SizeMismatch { want: u64, got: u64 },
    #[error("content does not match its sha256 in the manifest")]
    HashMismatch,
    #[error("listed in the manifest but missing from the archive")]
    Missing,
    #[error("the manifest entry is malformed: {0}")]
    BadEntry(&'static str),
}

fn entry_err(path: &str, problem: Problem) -> VerifyError {
    VerifyError::Entry {
        path: path.to_string(),
        problem,
    }
}

impl Manifest {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = serde_json::to_string_pretty(self).expect("manifest serialises");
        s.push('\n');
        s.into_bytes()
    }

    /// Parses a manifest, checking its format version before anything else, so a manifest of
    /// a later format is refused for that reason rather than for a field this build lacks.
    pub fn parse(bytes: &[u8]) -> Result<Self, VerifyError> {
        let bad = |e: serde_json::Error| {
            let (key, what) = crate::domain::serde_text::json_error(".", &e);
            VerifyError::Manifest(format!("not a valid manifest: {key}: {what}"))
        };
        let value: serde_json::Value = serde_json::from_slice(bytes).map_err(bad)?;
        match value.get("format").and_then(|f| f.as_u64()) {
            Some(f) if f == u64::from(FORMAT) => {}
            Some(f) => {
                return Err(VerifyError::Manifest(format!(
                    "unknown format version {f} (this supervisor reads version {FORMAT})"
                )))
            }
            None => return Err(VerifyError::Manifest("has no format version".into())),
        }
        serde_json::from_value(value).map_err(bad)
    }
}

/// Checks a path as an archive may hold it and returns it normalised (no trailing `/`):
/// UTF-8, relative, and made of plain names only, so it cannot leave the directory it is
/// extracted into.
pub fn safe_path(raw: &[u8]) -> Result<String, Problem> {
    let s = std::str::from_utf8(raw).map_err(|_| Problem::UnsafePath("not UTF-8"))?;
    if s.starts_with('/') {
        return Err(Problem::UnsafePath("absolute"));
    }
    let trimmed = s.strip_suffix('/').unwrap_or(s);
    if trimmed.is_empty() {
        return Err(Problem::UnsafePath("empty"));
    }
    for part in trimmed.split('/') {
        match part {
            "" => return Err(Problem::UnsafePath("empty component")),
            "." => return Err(Problem::UnsafePath("'.' component")),
            ".." => return Err(Problem::UnsafePath("'..' component")),
            p if p.contains('\0') => return Err(Problem::UnsafePath("NUL byte")),
            _ => {}
        }
    }
    if !TOP_LEVEL.contains(&trimmed.split('/').next().unwrap_or("")) {
        return Err(Problem::OutsideHome);
    }
    Ok(trimmed.to_string())
}

/// Checks a stream of archive entries against a manifest: every entry listed, once, with the
/// kind, size and hash listed, and every listed entry present.
#[derive(Debug)]
pub struct Checker<'m> {
    manifest: &'m Manifest,
    by_path: HashMap<&'m str, &'m Entry>,
    seen: HashSet<String>,
}

impl<'m> Checker<'m> {
    /// Checks the manifest's own entries first: a manifest naming an unsafe path, twice, or
    /// without a hash is refused before any data is read.
    pub fn new(manifest: &'m Manifest) -> Result<Self, VerifyError> {
        let mut by_path = HashMap::with_capacity(manifest.entries.len());
        for e in &manifest.entries {
            let normal = safe_path(e.path.as_bytes()).map_err(|p| entry_err(&e.path, p))?;
            if normal != e.path {
                return Err(entry_err(
                    &e.path,
                    Problem::BadEntry("path is not normalised"),
                ));
            }
            if u32::from_str_radix(&e.mode, 8).is_err() {
                return Err(entry_err(&e.path, Problem::BadEntry("mode is not octal")));
            }
            let hash_ok = |h: &String| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit());
            match e.kind {
                Kind::File if !e.sha256.as_ref().is_some_and(hash_ok) => {
                    return Err(entry_err(&e.path, Problem::BadEntry("no valid sha256")));
                }
                Kind::Dir if e.size != 0 || e.sha256.is_some() => {
                    return Err(entry_err(
                        &e.path,
                        Problem::BadEntry("a directory with data"),
                    ));
                }
                _ => {}
            }
            if by_path.insert(e.path.as_str(), e).is_some() {
                return Err(entry_err(&e.path, Problem::Duplicate));
            }
        }
        match by_path.get(crate::infra::home::DB_FILE) {
            Some(e) if e.kind == Kind::File => {}
            _ => {
                return Err(VerifyError::Manifest(format!(
                    "lists no {} (every backup has the database)",
                    crate::infra::home::DB_FILE
                )))
            }
        }
        Ok(Self {
            manifest,
            by_path,
            seen: HashSet::new(),
        })
    }

    /// Checks an entry's header (before its data) and returns its normalised path and what
    /// the manifest says of it.
    pub fn header(
        &mut self,
        raw_path: &[u8],
        kind: ArchiveKind,
        size: u64,
    ) -> Result<(String, &'m Entry), VerifyError> {
        let shown = String::from_utf8_lossy(raw_path).into_owned();
        let path = safe_path(raw_path).map_err(|p| entry_err(&shown, p))?;
        let got = match kind {
            ArchiveKind::File => Kind::File,
            ArchiveKind::Dir => Kind::Dir,
            ArchiveKind::Other(what) => return Err(entry_err(&path, Problem::NotFileOrDir(what))),
        };
        let want = *self
            .by_path
            .get(path.as_str())
            .ok_or_else(|| entry_err(&path, Problem::NotListed))?;
        if !self.seen.insert(path.clone()) {
            return Err(entry_err(&path, Problem::Duplicate));
        }
        if want.kind != got {
            return Err(entry_err(
                &path,
                Problem::KindMismatch {
                    want: want.kind.noun(),
                    got: got.noun(),
                },
            ));
        }
        if size != want.size {
            return Err(entry_err(
                &path,
                Problem::SizeMismatch {
                    want: want.size,
                    got: size,
                },
            ));
        }
        Ok((path, want))
    }

    /// Checks a file's data once read: `sha256` is the lowercase hex digest of all of it.
    pub fn content(&self, entry: &Entry, sha256: &str) -> Result<(), VerifyError> {
        if entry.sha256.as_deref() != Some(sha256) {
            return Err(entry_err(&entry.path, Problem::HashMismatch));
        }
        Ok(())
    }

    /// After the last entry: the first listed entry the archive did not hold, if any.
    pub fn finish(&self) -> Result<(), VerifyError> {
        match self
            .manifest
            .entries
            .iter()
            .find(|e| !self.seen.contains(&e.path))
        {
            Some(e) => Err(entry_err(&e.path, Problem::Missing)),
            None => Ok(()),
        }
    }
}

/// A manifest of `entries` with fixed facts, for unit tests of reading and checking.
#[cfg(test)]
pub(crate) fn test_manifest(entries: Vec<Entry>) -> Manifest {
    Manifest {
        format: FORMAT,
        supervisor_version: "0.1.0".into(),
        created_at: "2026-01-01T00:00:00Z".into(),
        home_id: "h".into(),
        schema_version: 5,
        database: DatabaseCounts {
            instances: 0,
            messages: 0,
            tasks: 0,
        },
        entries,
        skipped: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn file(path: &str, data: &[u8]) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::File,
            size: data.len() as u64,
            mode: "0600".into(),
            sha256: Some(hex::encode(Sha256::digest(data))),
        }
    }

    fn dir(path: &str) -> Entry {
        Entry {
            path: path.into(),
            kind: Kind::Dir,
            size: 0,
            mode: "0700".into(),
            sha256: None,
        }
    }

    fn manifest(entries: Vec<Entry>) -> Manifest {
        test_manifest(entries)
    }

    fn sample() -> Manifest {
        manifest(vec![
            file("supervisor.db", b"db"),
            dir("instances"),
            dir("instances/alice"),
            file("instances/alice/config.json", b"{}"),
        ])
    }

    /// Feeds (path, kind, data) entries through a checker: what scan does with a real archive.
    fn check(m: &Manifest, entries: &[(&[u8], ArchiveKind, &[u8])]) -> Result<(), VerifyError> {
        let mut c = Checker::new(m)?;
        for (path, kind, data) in entries {
            let (_, want) = c.header(path, kind.clone(), data.len() as u64)?;
            if want.kind == Kind::File {
                c.content(want, &hex::encode(Sha256::digest(data)))?;
            }
        }
        c.finish()
    }

    fn good() -> Vec<(&'static [u8], ArchiveKind, &'static [u8])> {
        vec![
            (b"supervisor.db", ArchiveKind::File, b"db"),
            (b"instances/", ArchiveKind::Dir, b""),
            (b"instances/alice/", ArchiveKind::Dir, b""),
            (b"instances/alice/config.json", ArchiveKind::File, b"{}"),
        ]
    }

    #[test]
    fn an_intact_archive_passes_and_the_manifest_round_trips() {
        let m = sample();
        check(&m, &good()).unwrap();
        assert_eq!(Manifest::parse(&m.to_bytes()).unwrap(), m);
    }

    #[test]
    fn a_tampered_file_is_named() {
        let mut entries = good();
        entries[3].2 = b"{ }";
        let m = sample();
        // Same size, other bytes: the hash catches it.
        let mut same_size = good();
        same_size[3].2 = b"[]";
        assert_eq!(
            check(&m, &same_size).unwrap_err().to_string(),
            "instances/alice/config.json: content does not match its sha256 in the manifest"
        );
        assert_eq!(
            check(&m, &entries).unwrap_err(),
            entry_err(
                "instances/alice/config.json",
                Problem::SizeMismatch { want: 2, got: 3 }
            )
        );
    }

    #[test]
    fn a_missing_entry_is_named() {
        let mut entries = good();
        entries.remove(3);
        assert_eq!(
            check(&sample(), &entries).unwrap_err(),
            entry_err("instances/alice/config.json", Problem::Missing)
        );
    }

    #[test]
    fn an_extra_or_repeated_entry_is_named() {
        let mut entries = good();
        entries.push((b"instances/alice/evil.sh", ArchiveKind::File, b"x"));
        assert_eq!(
            check(&sample(), &entries).unwrap_err(),
            entry_err("instances/alice/evil.sh", Problem::NotListed)
        );
        let mut entries = good();
        entries.push((b"instances/alice/config.json", ArchiveKind::File, b"{}"));
        assert_eq!(
            check(&sample(), &entries).unwrap_err(),
            entry_err("instances/alice/config.json", Problem::Duplicate)
        );
    }

    #[test]
    fn unsafe_paths_are_refused() {
        for (raw, why) in [
            (&b"../x"[..], "'..' component"),
            (b"instances/../../etc/passwd", "'..' component"),
            (b"/etc/passwd", "absolute"),
            (b"instances/./a", "'.' component"),
            (b"instances//a", "empty component"),
            (b"", "empty"),
            (b"instances/\xff", "not UTF-8"),
        ] {
            let mut entries = good();
            entries.insert(1, (raw, ArchiveKind::File, b"x"));
            match check(&sample(), &entries).unwrap_err() {
                VerifyError::Entry {
                    problem: Problem::UnsafePath(got),
                    ..
                } => assert_eq!(got, why, "{raw:?}"),
                other => panic!("{raw:?}: {other:?}"),
            }
        }
        assert_eq!(safe_path(b"run/daemon.pid"), Err(Problem::OutsideHome));
        assert_eq!(safe_path(b"instances/a/"), Ok("instances/a".into()));
        // The manifest itself may not name an unsafe path either.
        let mut m = sample();
        m.entries.push(file("../x", b"x"));
        assert!(matches!(
            Checker::new(&m).unwrap_err(),
            VerifyError::Entry {
                problem: Problem::UnsafePath(_),
                ..
            }
        ));
    }

    #[test]
    fn links_and_other_entry_kinds_are_refused() {
        for what in ["symbolic link", "hard link", "device", "FIFO"] {
            let mut entries = good();
            entries.insert(3, (b"instances/alice/link", ArchiveKind::Other(what), b""));
            assert_eq!(
                check(&sample(), &entries).unwrap_err(),
                entry_err("instances/alice/link", Problem::NotFileOrDir(what))
            );
        }
        let mut entries = good();
        entries[1].1 = ArchiveKind::File;
        assert!(matches!(
            check(&sample(), &entries).unwrap_err(),
            VerifyError::Entry {
                problem: Problem::KindMismatch { .. },
                ..
            }
        ));
    }

    #[test]
    fn unknown_versions_and_bad_manifests_are_refused() {
        let mut v: serde_json::Value = serde_json::to_value(sample()).unwrap();
        v["format"] = 2.into();
        v["something_new"] = true.into();
        assert_eq!(
            Manifest::parse(v.to_string().as_bytes())
                .unwrap_err()
                .to_string(),
            "manifest.json: unknown format version 2 (this supervisor reads version 1)"
        );
        assert!(Manifest::parse(b"{}").is_err());
        assert!(Manifest::parse(b"not json").is_err());
        let mut no_db = sample();
        no_db.entries.remove(0);
        assert!(matches!(
            Checker::new(&no_db).unwrap_err(),
            VerifyError::Manifest(_)
        ));
        let mut no_hash = sample();
        no_hash.entries[3].sha256 = None;
        assert!(Checker::new(&no_hash).is_err());
    }
}
