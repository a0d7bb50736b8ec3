//! The agent image's Docker build context, embedded so the host can build the image without
//! the source tree, with the exact modes the Dockerfile relies on.
//!
//! Git records neither empty directories nor directory modes, so the context is not simply
//! "whatever is under agent-image/": [`CONTEXT`] lists every entry, and [`context_tar`] writes
//! it as the uncompressed tar stream that Docker's build endpoint takes.

/// One entry of the build context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path inside the context, `/`-separated, no trailing slash.
    pub path: &'static str,
    /// Permission bits, including the sticky bit.
    pub mode: u32,
    /// File contents; `None` for a directory.
    pub contents: Option<&'static [u8]>,
}

const fn file(path: &'static str, mode: u32, contents: &'static [u8]) -> ContextEntry {
    ContextEntry {
        path,
        mode,
        contents: Some(contents),
    }
}

const fn dir(path: &'static str, mode: u32) -> ContextEntry {
    ContextEntry {
        path,
        mode,
        contents: None,
    }
}

/// Every entry of the build context, parents before children. Kept in step with the list at
/// the top of the Dockerfile (a test checks both that list and the files under rootfs/).
pub const CONTEXT: &[ContextEntry] = &[
    file("Dockerfile", 0o644, include_bytes!("../Dockerfile")),
    dir("rootfs", 0o755),
    dir("rootfs/etc", 0o755),
    file(
        "rootfs/etc/group",
        0o644,
        include_bytes!("../rootfs/etc/group"),
    ),
    file(
        "rootfs/etc/passwd",
        0o644,
        include_bytes!("../rootfs/etc/passwd"),
    ),
    // Docker mounts the instance's tmpfs over /tmp, and runc gives that tmpfs the mode of the
    // image's /tmp; without 1777 here the agent could not write to /tmp.
    dir("rootfs/tmp", 0o1777),
];

const BLOCK: usize = 512;

/// The build context as an uncompressed POSIX ustar stream: owner 0:0, mtime 0, so the same
/// sources always give the same bytes.
pub fn context_tar() -> Vec<u8> {
    let mut out = Vec::new();
    for entry in CONTEXT {
        let data = entry.contents.unwrap_or_default();
        out.extend_from_slice(&header(entry, data.len()));
        out.extend_from_slice(data);
        out.resize(out.len().next_multiple_of(BLOCK), 0);
    }
    out.resize(out.len() + 2 * BLOCK, 0);
    out
}

fn header(entry: &ContextEntry, size: usize) -> [u8; BLOCK] {
    let mut h = [0u8; BLOCK];
    let name = match entry.contents {
        Some(_) => entry.path.to_string(),
        None => format!("{}/", entry.path),
    };
    assert!(name.len() <= 100, "context path too long for ustar: {name}");
    h[..name.len()].copy_from_slice(name.as_bytes());
    put_octal(&mut h[100..108], u64::from(entry.mode)); // mode
    put_octal(&mut h[108..116], 0); // uid
    put_octal(&mut h[116..124], 0); // gid
    put_octal(&mut h[124..136], size as u64); // size
    put_octal(&mut h[136..148], 0); // mtime
    h[156] = if entry.contents.is_some() { b'0' } else { b'5' };
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field read as spaces.
    h[148..156].fill(b' ');
    let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
    let field = format!("{sum:06o}\0 ");
    h[148..156].copy_from_slice(field.as_bytes());
    h
}

/// Zero-padded octal filling all but the last byte of `field`, which stays NUL.
fn put_octal(field: &mut [u8], value: u64) {
    let digits = format!("{value:0width$o}", width = field.len() - 1);
    assert_eq!(
        digits.len(),
        field.len() - 1,
        "value too large for tar field"
    );
    field[..digits.len()].copy_from_slice(digits.as_bytes());
    field[digits.len()] = 0;
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn octal(field: &[u8]) -> u64 {
        let s = std::str::from_utf8(field).unwrap();
        u64::from_str_radix(s.trim_matches(|c| c == '\0' || c == ' '), 8).unwrap()
    }

    /// (name, mode, typeflag, data) for each entry, checking every header checksum.
    fn read_tar(tar: &[u8]) -> Vec<(String, u32, u8, Vec<u8>)> {
        assert_eq!(tar.len() % BLOCK, 0);
        let mut entries = Vec::new();
        let mut at = 0;
        while tar[at..at + BLOCK].iter().any(|&b| b != 0) {
            let h = &tar[at..at + BLOCK];
            let mut blank = h.to_vec();
            blank[148..156].fill(b' ');
            let sum: u64 = blank.iter().map(|&b| u64::from(b)).sum();
            assert_eq!(octal(&h[148..156]), sum, "checksum at {at}");
            assert_eq!(&h[257..265], b"ustar\x0000");
            let name_end = h[..100].iter().position(|&b| b == 0).unwrap_or(100);
            let name = String::from_utf8(h[..name_end].to_vec()).unwrap();
            let size = octal(&h[124..136]) as usize;
            let data = tar[at + BLOCK..at + BLOCK + size].to_vec();
            entries.push((name, octal(&h[100..108]) as u32, h[156], data));
            at += BLOCK + size.next_multiple_of(BLOCK);
        }
        assert!(tar[at..].iter().all(|&b| b == 0));
        assert_eq!(tar.len() - at, 2 * BLOCK);
        entries
    }

    #[test]
    fn tar_round_trips() {
        let tar = context_tar();
        let entries = read_tar(&tar);
        assert_eq!(entries.len(), CONTEXT.len());
        for (entry, (name, mode, kind, data)) in CONTEXT.iter().zip(entries) {
            assert_eq!(mode, entry.mode);
            match entry.contents {
                Some(c) => {
                    assert_eq!(name, entry.path);
                    assert_eq!(kind, b'0');
                    assert_eq!(data, c);
                }
                None => {
                    assert_eq!(name, format!("{}/", entry.path));
                    assert_eq!(kind, b'5');
                    assert!(data.is_empty());
                }
            }
        }
        assert_eq!(context_tar(), tar, "deterministic");
    }

    #[test]
    fn tmp_is_sticky_and_world_writable() {
        let tmp = CONTEXT.iter().find(|e| e.path == "rootfs/tmp").unwrap();
        assert_eq!(tmp.mode, 0o1777);
        assert!(tmp.contents.is_none());
    }

    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(base)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if path.is_dir() {
                walk(&path, base, out);
            } else {
                out.push(rel);
            }
        }
    }

    #[test]
    fn context_lists_every_rootfs_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut on_disk = Vec::new();
        walk(&root.join("rootfs"), root, &mut on_disk);
        let mut listed: Vec<String> = CONTEXT
            .iter()
            .filter(|e| e.contents.is_some() && e.path.starts_with("rootfs/"))
            .map(|e| e.path.to_string())
            .collect();
        on_disk.sort();
        listed.sort();
        assert_eq!(on_disk, listed);
    }

    #[test]
    fn dockerfile_header_lists_the_context() {
        let dockerfile = std::str::from_utf8(CONTEXT[0].contents.unwrap()).unwrap();
        let header: String = dockerfile
            .lines()
            .take_while(|l| l.starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n");
        for entry in CONTEXT.iter().filter(|e| e.path != "rootfs") {
            let shown = match entry.contents {
                Some(_) => entry.path.to_string(),
                None => format!("{}/", entry.path),
            };
            let line = header
                .lines()
                .find(|l| l.split_whitespace().nth(1) == Some(shown.as_str()))
                .unwrap_or_else(|| panic!("{shown} missing from the Dockerfile header"));
            let mode = format!("{:04o}", entry.mode);
            assert!(
                line.contains(&mode),
                "{shown}: header line lacks mode {mode}"
            );
        }
    }
}
