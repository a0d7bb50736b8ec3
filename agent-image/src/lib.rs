//! The agent program's library: the IPC protocol types shared with the host and the writing
//! of envelope files, the steps of the agent's lifecycle, the sandbox self-check whose JSON
//! report the host can read back, and the files the host installs for the agent (the image
//! build context and the built-in skills).
//!
//! The turn loop of `supervisor-agent run`: [`agent`] takes envelopes from the [`inbox`] and
//! runs each turn ([`turn`]) against the [`host`], with the system prompt from [`prompt`] and
//! the [`tools`] (files through [`workspace`], commands through [`exec`]).
pub mod agent;
pub mod exec;
pub mod host;
pub mod image;
pub mod inbox;
pub mod ipc;
pub mod lifecycle;
pub mod prompt;
pub mod protocol;
pub mod self_check;
pub mod signals;
pub mod tools;
pub mod turn;
pub mod turn_input;
pub mod web_tools;
pub mod workspace;

/// This agent build's version (the crate version).
pub const AGENT_VERSION: &str = env!("CARGO_PKG_VERSION");

/// The built-in skills as (file name, Markdown text), installed by the host in the runtime
/// directory as `skills/<file name>` (`/opt/runtime/skills/` inside a container).
pub const BUILTIN_SKILLS: &[(&str, &str)] = &[
    ("files.md", include_str!("../skills/files.md")),
    ("notes.md", include_str!("../skills/notes.md")),
    ("skills.md", include_str!("../skills/skills.md")),
];

/// One line to stderr, prefixed `supervisor-agent: `; a failed write is ignored, as there is
/// nowhere else to report it. The line is made first and written at once: stderr is not
/// buffered, and `writeln!` on it is a write per piece (three a line, on every turn, each
/// one a wake-up of the container's log reader).
pub(crate) fn note(msg: &str) {
    use std::io::Write;
    let line = format!("supervisor-agent: {msg}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

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
