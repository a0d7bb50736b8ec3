//! The agent program's library: the IPC protocol types shared with the host and the writing
//! of envelope files, the steps of the agent's lifecycle, the sandbox self-check whose JSON
//! report the host can read back, and the files the host installs for the agent (the image
//! build context and the built-in skills).
pub mod image;
pub mod ipc;
pub mod lifecycle;
pub mod protocol;
pub mod self_check;
pub mod signals;

/// This agent build's version (the crate version).
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The built-in skills as (file name, Markdown text), installed by the host in the runtime
/// directory as `skills/<file name>` (`/opt/runtime/skills/` inside a container).
pub const BUILTIN_SKILLS: &[(&str, &str)] = &[
    ("files.md", include_str!("../skills/files.md")),
    ("notes.md", include_str!("../skills/notes.md")),
    ("skills.md", include_str!("../skills/skills.md")),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_skills_match_the_skills_dir() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("skills");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let listed: Vec<&str> = BUILTIN_SKILLS.iter().map(|(name, _)| *name).collect();
        assert_eq!(on_disk, listed);
        for (name, text) in BUILTIN_SKILLS {
            assert!(text.starts_with("# "), "{name} needs a title line");
            assert!(protocol::is_valid_id(name.trim_end_matches(".md")));
        }
    }
}
