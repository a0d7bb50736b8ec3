//! Reading a backup archive: one pass over the gzip and tar streams that checks every entry
//! against the manifest while it streams past, and hands each checked entry to a sink.
//!
//! `restore` makes two passes: the first with a sink that writes nothing, so a damaged or
//! tampered archive is refused before anything is created; the second extracts, and checks
//! everything again (the file could change between the passes).

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::manifest::{
    ArchiveKind, Checker, Entry, Kind, Manifest, VerifyError, MANIFEST_PATH, MAX_MANIFEST_BYTES,
};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot read the archive {}: {source}", path.display())]
    Open { path: PathBuf, source: io::Error },
    #[error("the archive is refused: {0}")]
    Refused(#[from] VerifyError),
    /// The sink failed (a disk error while extracting), not the archive.
    #[error("cannot restore {path}: {source}")]
    Sink { path: String, source: io::Error },
}

/// Where checked entries go. A file's data must be read from `data` to its end (what is
/// left is read and checked anyway); a directory has no data.
pub type SinkFn<'a> = dyn FnMut(&Entry, Option<&mut dyn Read>) -> io::Result<()> + 'a;

/// Reads the archive at `path` through `sink`; returns its manifest once every check passed.
pub fn scan(path: &Path, sink: &mut SinkFn) -> Result<Manifest, ScanError> {
    let file = File::open(path).map_err(|source| ScanError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    let mut gz = flate2::bufread::GzDecoder::new(BufReader::new(file));
    let manifest = scan_tar(&mut gz, sink)?;
    check_trailer(gz)?;
    Ok(manifest)
}

fn damaged(after: &str, e: io::Error) -> VerifyError {
    VerifyError::Stream(format!("the archive is damaged after {after}: {e}"))
}

fn scan_tar(gz: &mut impl Read, sink: &mut SinkFn) -> Result<Manifest, ScanError> {
    let mut archive = tar::Archive::new(gz);
    let mut entries = archive.entries().map_err(|e| damaged("its start", e))?;

    let mut first = match entries.next() {
        None => return Err(VerifyError::Manifest("missing: the archive is empty".into()).into()),
        Some(e) => e.map_err(|e| damaged("its start", e))?,
    };
    let first_path = String::from_utf8_lossy(&first.path_bytes()).into_owned();
    if first_path != MANIFEST_PATH || !first.header().entry_type().is_file() {
        return Err(VerifyError::Manifest(format!(
            "must be the archive's first entry, which is {first_path:?}"
        ))
        .into());
    }
    if first.size() > MAX_MANIFEST_BYTES {
        return Err(VerifyError::Manifest("too large".into()).into());
    }
    let mut raw = Vec::new();
    first
        .read_to_end(&mut raw)
        .map_err(|e| damaged("its start", e))?;
    let manifest = Manifest::parse(&raw)?;

    let mut checker = Checker::new(&manifest)?;
    let mut last = MANIFEST_PATH.to_string();
    for entry in entries {
        let mut entry = entry.map_err(|e| damaged(&last, e))?;
        let kind = archive_kind(entry.header().entry_type());
        let size = entry.size();
        let (path, want) = checker.header(&entry.path_bytes(), kind, size)?;
        match want.kind {
            Kind::Dir => sink(want, None).map_err(|source| ScanError::Sink {
                path: path.clone(),
                source,
            })?,
            Kind::File => {
                let mut data = Hashing::new(&mut entry);
                let sunk = sink(want, Some(&mut data))
                    .and_then(|()| io::copy(&mut data, &mut io::sink()).map(drop));
                if let Some(e) = data.read_error.take() {
                    return Err(VerifyError::Stream(format!(
                        "the archive is damaged inside {path}: {e}"
                    ))
                    .into());
                }
                sunk.map_err(|source| ScanError::Sink {
                    path: path.clone(),
                    source,
                })?;
                if data.count != size {
                    return Err(
                        VerifyError::Stream(format!("the archive ends inside {path}")).into(),
                    );
                }
                checker.content(want, &hex::encode(data.hasher.finalize()))?;
            }
        }
        last = path;
    }
    checker.finish()?;
    Ok(manifest)
}

/// After the tar stream's end: only its zero padding may follow, the gzip stream must end
/// with a matching checksum (reading to its end checks it), and nothing may follow that.
fn check_trailer<R: BufRead>(mut gz: flate2::bufread::GzDecoder<R>) -> Result<(), ScanError> {
    let mut buf = [0u8; 8192];
    loop {
        let n = gz
            .read(&mut buf)
            .map_err(|e| VerifyError::Stream(format!("the archive is damaged at its end: {e}")))?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().any(|b| *b != 0) {
            return Err(VerifyError::Stream("data after the end of the tar stream".into()).into());
        }
    }
    let mut rest = gz.into_inner();
    let more = rest
        .fill_buf()
        .map_err(|e| VerifyError::Stream(format!("the archive cannot be read: {e}")))?;
    if !more.is_empty() {
        return Err(VerifyError::Stream("data after the end of the gzip stream".into()).into());
    }
    Ok(())
}

fn archive_kind(t: tar::EntryType) -> ArchiveKind {
    use tar::EntryType as T;
    match t {
        T::Regular => ArchiveKind::File,
        T::Directory => ArchiveKind::Dir,
        T::Symlink => ArchiveKind::Other("symbolic link"),
        T::Link => ArchiveKind::Other("hard link"),
        T::Char | T::Block => ArchiveKind::Other("device"),
        T::Fifo => ArchiveKind::Other("FIFO"),
        _ => ArchiveKind::Other("special tar entry"),
    }
}

/// Counts and hashes what is read through it, and keeps the first read error, so a damaged
/// archive is told apart from a failing sink.
struct Hashing<R> {
    inner: R,
    hasher: Sha256,
    count: u64,
    read_error: Option<io::Error>,
}

impl<R: Read> Hashing<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
            count: 0,
            read_error: None,
        }
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.inner.read(buf) {
            Ok(n) => {
                self.hasher.update(&buf[..n]);
                self.count += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                let out = io::Error::new(e.kind(), e.to_string());
                self.read_error.get_or_insert(e);
                Err(out)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::backup::manifest::{test_manifest, Problem};
    use flate2::write::GzEncoder;
    use std::io::Write;

    type Raw<'a> = (&'a [u8], tar::EntryType, &'a [u8]);

    fn manifest_of(entries: &[Raw]) -> Manifest {
        let entries = entries
            .iter()
            .map(|(path, kind, data)| {
                let path = String::from_utf8_lossy(path)
                    .trim_end_matches('/')
                    .to_string();
                if kind.is_dir() {
                    Entry {
                        path,
                        kind: Kind::Dir,
                        size: 0,
                        mode: "0700".into(),
                        sha256: None,
                    }
                } else {
                    Entry {
                        path,
                        kind: Kind::File,
                        size: data.len() as u64,
                        mode: "0600".into(),
                        sha256: Some(hex::encode(Sha256::digest(data))),
                    }
                }
            })
            .collect();
        test_manifest(entries)
    }

    /// A tar.gz with exactly these entries, names written raw into old-style headers (the
    /// tar crate's own path setter refuses `..`, which is the point here).
    fn tar_gz(entries: &[Raw]) -> Vec<u8> {
        let mut b = tar::Builder::new(GzEncoder::new(Vec::new(), flate2::Compression::fast()));
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            if matches!(kind, tar::EntryType::Symlink | tar::EntryType::Link) {
                h.set_link_name("/etc/passwd").unwrap();
            }
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn good() -> Vec<Raw<'static>> {
        vec![
            (b"supervisor.db", tar::EntryType::Regular, b"db"),
            (b"instances/", tar::EntryType::Directory, b""),
            (b"instances/a/", tar::EntryType::Directory, b""),
            (b"instances/a/config.json", tar::EntryType::Regular, b"{}"),
        ]
    }

    /// The archive of `entries`, with a manifest listing `listed`.
    fn archive(listed: &[Raw], entries: &[Raw]) -> Vec<u8> {
        let m = manifest_of(listed).to_bytes();
        let mut all: Vec<Raw> = vec![(b"manifest.json", tar::EntryType::Regular, &m)];
        all.extend_from_slice(entries);
        tar_gz(&all)
    }

    fn scan_bytes(bytes: &[u8]) -> Result<Vec<String>, ScanError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.tar.gz");
        std::fs::write(&path, bytes).unwrap();
        let mut seen = Vec::new();
        scan(&path, &mut |e, _| {
            seen.push(e.path.clone());
            Ok(())
        })?;
        Ok(seen)
    }

    fn refusal(bytes: &[u8]) -> String {
        match scan_bytes(bytes) {
            Err(ScanError::Refused(e)) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn an_intact_archive_streams_every_entry() {
        let seen = scan_bytes(&archive(&good(), &good())).unwrap();
        assert_eq!(
            seen,
            [
                "supervisor.db",
                "instances",
                "instances/a",
                "instances/a/config.json"
            ]
        );
    }

    #[test]
    fn links_in_the_archive_are_refused() {
        let mut entries = good();
        entries.push((b"instances/a/link", tar::EntryType::Symlink, b""));
        assert_eq!(
            refusal(&archive(&good(), &entries)),
            "instances/a/link: is a symbolic link; a backup holds only regular files and directories"
        );
        let mut entries = good();
        entries.push((b"instances/a/hard", tar::EntryType::Link, b""));
        assert!(
            refusal(&archive(&good(), &entries)).starts_with("instances/a/hard: is a hard link")
        );
    }

    #[test]
    fn traversal_and_absolute_paths_are_refused() {
        let mut entries = good();
        entries.insert(1, (b"../x", tar::EntryType::Regular, b"x"));
        assert_eq!(
            refusal(&archive(&good(), &entries)),
            "../x: unsafe path: '..' component"
        );
        let mut entries = good();
        entries.insert(1, (b"/etc/cron.d/x", tar::EntryType::Regular, b"x"));
        assert_eq!(
            refusal(&archive(&good(), &entries)),
            "/etc/cron.d/x: unsafe path: absolute"
        );
    }

    #[test]
    fn the_manifest_comes_first_and_is_required() {
        let mut entries = good();
        let m = manifest_of(&good()).to_bytes();
        entries.push((b"manifest.json", tar::EntryType::Regular, &m));
        assert!(refusal(&tar_gz(&entries))
            .starts_with("manifest.json: must be the archive's first entry"));
        assert_eq!(
            refusal(&tar_gz(&[])),
            "manifest.json: missing: the archive is empty"
        );
    }

    #[test]
    fn damage_anywhere_is_refused() {
        let bytes = archive(&good(), &good());
        let inflate = |b: &[u8]| {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(b)
                .read_to_end(&mut out)
                .map(|_| out)
                .ok()
        };
        let original = inflate(&bytes).unwrap();
        // A flipped bit past the gzip header is caught (by the inflater, a tar header
        // checksum, a file hash or the gzip trailer's CRC), unless it leaves the data as it
        // was: deflate has a few bits that change nothing (such as a code length of a
        // symbol never used).
        let mut refused = 0;
        for at in 10..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x01;
            match scan_bytes(&bad) {
                Err(_) => refused += 1,
                Ok(_) => assert_eq!(inflate(&bad).as_ref(), Some(&original), "flip at {at}"),
            }
        }
        assert!(
            refused > (bytes.len() - 10) * 9 / 10,
            "{refused} of {}",
            bytes.len() - 10
        );
        let mut trailing = bytes.clone();
        trailing.write_all(b"more").unwrap();
        assert_eq!(refusal(&trailing), "data after the end of the gzip stream");
        let truncated = &bytes[..bytes.len() - 20];
        assert!(scan_bytes(truncated).is_err());
    }

    #[test]
    fn content_changes_name_the_file() {
        let mut entries = good();
        entries[3].2 = b"[]";
        assert_eq!(
            refusal(&archive(&good(), &entries)),
            "instances/a/config.json: content does not match its sha256 in the manifest"
        );
        let mut listed = good();
        listed.pop();
        match scan_bytes(&archive(&listed, &good())) {
            Err(ScanError::Refused(VerifyError::Entry { path, problem })) => {
                assert_eq!(
                    (path.as_str(), problem),
                    ("instances/a/config.json", Problem::NotListed)
                )
            }
            other => panic!("{other:?}"),
        }
    }
}
