//! The agent image's Docker build context, embedded so the host can build the image without
//! the source tree, with the exact modes the Dockerfile relies on.
//!
//! Git records neither empty directories nor directory modes, so the context is not simply
//! "whatever is under agent-image/": [`CONTEXT`] lists every entry with its mode, and the host
//! writes exactly these entries into the tar stream it sends to Docker's build endpoint.

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

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
