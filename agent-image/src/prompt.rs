//! What the model is shown at the start of a turn: the system prompt assembled from the
//! workspace (persona, manual, memory, skills) and the conversation built from the turn.

use crate::protocol::{ModelMessage, Role, TurnMessage};
use crate::tools::{utc_date_time, BUILTIN_SKILLS_PREFIX, MEMORY_FILE};
use crate::turn_input::Turn;
use crate::workspace::{Kind, Workspace};

/// The most of each workspace file put into the system prompt.
pub const FILE_CAP: usize = 64 * 1024;
/// The most skills listed from each directory.
pub const SKILLS_LISTED: usize = 50;
/// How much of a skill file is searched for its title.
const HEADING_SCAN: usize = 4096;
/// The longest title shown for a skill.
const TITLE_MAX_CHARS: usize = 120;

/// Put before a message that did not trigger the turn.
pub const CONTEXT_PREFIX: &str = "(context, no reply needed) ";

/// The last user message of a scheduled turn.
pub const SCHEDULED_NOTE: &str = "This turn was started by a schedule: no person is waiting \
for a reply. Carry out the task. If the result is worth the person's attention, give it in your \
reply; if there is nothing to report, reply with nothing at all, as an empty reply sends \
nothing.";

/// The system prompt: `SOUL.md`, then `AGENTS.md`, then the memory file under a
/// "# Long-term memory" heading, then the list of skills. Only `SOUL.md` is required.
pub fn system_prompt(ws: &Workspace, builtin_skills: Option<&Workspace>) -> Result<String, String> {
    let mut sections =
        vec![workspace_file(ws, "SOUL.md").map_err(|e| format!("cannot read the persona: {e}"))?];
    if let Ok(manual) = workspace_file(ws, "AGENTS.md") {
        sections.push(manual);
    }
    if let Ok(memory) = workspace_file(ws, MEMORY_FILE) {
        sections.push(format!("# Long-term memory\n\n{memory}"));
    }
    if let Some(skills) = skills_section(ws, builtin_skills) {
        sections.push(skills);
    }
    Ok(sections
        .iter()
        .map(|s| s.trim_end())
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
        + "\n")
}

/// A workspace file for the prompt, cut at [`FILE_CAP`] with a note saying so.
fn workspace_file(ws: &Workspace, rel: &str) -> Result<String, String> {
    let got = ws.read_capped(rel, FILE_CAP)?;
    let mut text = got.text();
    if got.truncated {
        text.push_str(&format!(
            "\n\n[{rel} is longer than {} KiB; the rest is left out here]",
            FILE_CAP / 1024
        ));
    }
    Ok(text)
}

/// "# Skills" with the built-in skills and the workspace's own, or `None` if there are none.
pub fn skills_section(ws: &Workspace, builtin: Option<&Workspace>) -> Option<String> {
    let builtin_list = builtin
        .map(|b| skill_lines(b, ".", BUILTIN_SKILLS_PREFIX))
        .unwrap_or_default();
    let own_list = skill_lines(ws, "skills", "skills/");
    if builtin_list.is_empty() && own_list.is_empty() {
        return None;
    }
    let mut text = String::from(
        "# Skills\n\nSkills are instructions for recurring tasks. When a task matches one, read \
         it with read_file first and follow it.\n",
    );
    if !builtin_list.is_empty() {
        text.push_str("\nBuilt-in (read-only):\n");
        text.push_str(&builtin_list);
    }
    if !own_list.is_empty() {
        text.push_str("\nYour own (in /workspace/skills/):\n");
        text.push_str(&own_list);
    }
    Some(text)
}

/// One line per `*.md` file in `dir` of `tree`: `- <shown prefix><name>: <title>`.
fn skill_lines(tree: &Workspace, dir: &str, shown: &str) -> String {
    let Ok((entries, _)) = tree.list_dir(dir) else {
        return String::new();
    };
    let skills: Vec<_> = entries
        .into_iter()
        .filter(|e| matches!(e.kind, Kind::File | Kind::Link) && e.name.ends_with(".md"))
        .collect();
    let mut text = String::new();
    for entry in skills.iter().take(SKILLS_LISTED) {
        let rel = format!("{dir}/{}", entry.name);
        // A link that leads outside the tree, or a file that cannot be read, is not listed.
        let Ok(head) = tree.read_capped(&rel, HEADING_SCAN) else {
            continue;
        };
        let title = first_heading(&head.text()).unwrap_or_else(|| "(untitled)".into());
        text.push_str(&format!("- {shown}{}: {title}\n", entry.name));
    }
    if skills.len() > SKILLS_LISTED {
        text.push_str(&format!(
            "- and {} more (list_dir {dir})\n",
            skills.len() - SKILLS_LISTED
        ));
    }
    text
}

/// The text of the first Markdown heading line (`# Title`, `## Title`, ...).
pub fn first_heading(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let title = line.trim_start().strip_prefix('#')?.trim_start_matches('#');
        if !title.starts_with(char::is_whitespace) {
            return None;
        }
        let title = title.trim();
        (!title.is_empty()).then(|| title.chars().take(TITLE_MAX_CHARS).collect())
    })
}

/// A message with text content only.
pub fn text_message(role: Role, content: impl Into<String>) -> ModelMessage {
    ModelMessage {
        role,
        content: content.into(),
        tool_calls: Vec::new(),
        tool_call_id: None,
    }
}

/// How one incoming chat message is shown to the model.
pub fn format_message(m: &TurnMessage) -> String {
    let prefix = if m.triggered { "" } else { CONTEXT_PREFIX };
    match m.chat.as_str() {
        "" => format!("{prefix}[{}] {}", m.sender, m.body),
        chat => format!("{prefix}[{} in {chat}] {}", m.sender, m.body),
    }
}

/// The line that tells the model the time of the turn at `now_ms` (Unix milliseconds).
/// Always in UTC: the container has no time zone database to name local time with, and UTC
/// is also what `schedule_task` assumes without a `tz`.
pub fn clock_line(now_ms: i64) -> String {
    format!(
        "Current date and time: {} UTC (scheduled tasks take an IANA time zone; default UTC).",
        utc_date_time(now_ms.div_euclid(1000))
    )
}

/// The system message: the system prompt followed by the [`clock_line`], which sits in the
/// system message so that the model sees it on every turn, whatever the history holds.
fn system_message(system_prompt: &str, now_ms: i64) -> String {
    format!("{}\n\n{}\n", system_prompt.trim_end(), clock_line(now_ms))
}

/// The messages of the first model call: the system message (the system prompt and the
/// clock line), the turn's history, its messages (one user message each), and for a
/// scheduled turn the note that nobody waits.
pub fn conversation(system_prompt: String, turn: &Turn) -> Vec<ModelMessage> {
    let mut messages = vec![text_message(
        Role::System,
        system_message(&system_prompt, turn.now_ms),
    )];
    messages.extend(
        turn.history
            .iter()
            .map(|h| text_message(h.role, h.content.clone())),
    );
    messages.extend(
        turn.messages
            .iter()
            .map(|m| text_message(Role::User, format_message(m))),
    );
    if turn.scheduled {
        messages.push(text_message(Role::User, SCHEDULED_NOTE));
    }
    messages
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::HistoryItem;
    use std::fs;
    use std::path::Path;

    fn ws(root: &Path) -> Workspace {
        fs::create_dir_all(root).unwrap();
        Workspace::new(root).unwrap()
    }

    #[test]
    fn sections_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(&tmp.path().join("ws"));
        let b = ws(&tmp.path().join("builtin"));
        fs::write(w.root().join("SOUL.md"), "# Soul\n\nBe kind.\n").unwrap();
        fs::write(w.root().join("AGENTS.md"), "# Manual\n").unwrap();
        fs::create_dir(w.root().join("memory")).unwrap();
        fs::write(w.root().join("memory/MEMORY.md"), "- 2025-01-01: x\n").unwrap();
        fs::create_dir(w.root().join("skills")).unwrap();
        fs::write(
            w.root().join("skills/weekly.md"),
            "intro\n## Weekly summary\n",
        )
        .unwrap();
        fs::write(w.root().join("skills/notes.txt"), "# not a skill").unwrap();
        fs::write(b.root().join("files.md"), "# Working in the workspace\n").unwrap();
        fs::write(b.root().join("b.md"), "no heading").unwrap();
        let prompt = system_prompt(&w, Some(&b)).unwrap();
        assert_eq!(
            prompt,
            "# Soul\n\nBe kind.\n\n# Manual\n\n# Long-term memory\n\n- 2025-01-01: x\n\n\
             # Skills\n\nSkills are instructions for recurring tasks. When a task matches \
             one, read it with read_file first and follow it.\n\n\
             Built-in (read-only):\n\
             - /opt/runtime/skills/b.md: (untitled)\n\
             - /opt/runtime/skills/files.md: Working in the workspace\n\n\
             Your own (in /workspace/skills/):\n\
             - skills/weekly.md: Weekly summary\n"
        );
    }

    #[test]
    fn only_soul_is_required() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(tmp.path());
        let e = system_prompt(&w, None).unwrap_err();
        assert!(e.starts_with("cannot read the persona: SOUL.md"), "{e}");
        fs::write(w.root().join("SOUL.md"), "I am.").unwrap();
        assert_eq!(system_prompt(&w, None).unwrap(), "I am.\n");
    }

    #[test]
    fn files_are_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(tmp.path());
        fs::write(w.root().join("SOUL.md"), "s".repeat(FILE_CAP + 1)).unwrap();
        fs::write(w.root().join("AGENTS.md"), "a".repeat(FILE_CAP * 2)).unwrap();
        let prompt = system_prompt(&w, None).unwrap();
        assert!(prompt.contains(&format!(
            "{}\n\n[SOUL.md is longer than 64 KiB; the rest is left out here]\n\n",
            "s".repeat(FILE_CAP)
        )));
        assert!(prompt.ends_with("[AGENTS.md is longer than 64 KiB; the rest is left out here]\n"));
        assert!(prompt.len() < 3 * FILE_CAP);
    }

    #[test]
    fn escaping_skill_links_are_not_listed() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(&tmp.path().join("ws"));
        fs::write(tmp.path().join("secret.md"), "# Secret title\n").unwrap();
        fs::create_dir(w.root().join("skills")).unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret.md"), w.root().join("skills/s.md"))
            .unwrap();
        assert_eq!(skills_section(&w, None), None);
    }

    #[test]
    fn headings() {
        assert_eq!(first_heading("# A\n# B"), Some("A".into()));
        assert_eq!(first_heading("text\n  ### Deep  \n"), Some("Deep".into()));
        assert_eq!(first_heading("#hashtag\n#\n# Real"), Some("Real".into()));
        assert_eq!(first_heading("none"), None);
        assert_eq!(
            first_heading(&format!("# {}", "x".repeat(500)))
                .unwrap()
                .len(),
            120
        );
    }

    #[test]
    fn clock() {
        assert_eq!(
            clock_line(1_795_329_600_000),
            "Current date and time: 2026-11-22 06:40 UTC (scheduled tasks take an IANA time \
             zone; default UTC)."
        );
        // Seconds and milliseconds are dropped, not rounded.
        assert!(clock_line(1_795_329_659_999).contains(" 2026-11-22 06:40 UTC "));
        assert!(clock_line(-1).contains(" 1969-12-31 23:59 UTC "));
        // The line follows the system prompt after one blank line, however it ends.
        let expected = format!("# Soul\n\nBe kind.\n\n{}\n", clock_line(0));
        assert_eq!(system_message("# Soul\n\nBe kind.", 0), expected);
        assert_eq!(system_message("# Soul\n\nBe kind.\n\n\n", 0), expected);
    }

    #[test]
    fn conversation_layout() {
        let m = |id: &str, sender: &str, body: &str, triggered: bool| TurnMessage {
            id: id.into(),
            sender: sender.into(),
            body: body.into(),
            ts: 1,
            triggered,
            chat: String::new(),
        };
        let mut turn = Turn {
            turn_id: "t".into(),
            messages: vec![
                m("m1", "alice", "unrelated chatter", false),
                m("m2", "bob", "@bot what's up?", true),
            ],
            history: vec![
                HistoryItem {
                    role: Role::User,
                    content: "[bob] hi".into(),
                },
                HistoryItem {
                    role: Role::Assistant,
                    content: "hello".into(),
                },
            ],
            scheduled: false,
            web: false,
            web_search: false,
            now_ms: 1_795_329_600_000,
        };
        let msgs = conversation("SYS".into(), &turn);
        let got: Vec<(Role, &str)> = msgs.iter().map(|m| (m.role, m.content.as_str())).collect();
        assert_eq!(
            got,
            [
                (
                    Role::System,
                    "SYS\n\nCurrent date and time: 2026-11-22 06:40 UTC (scheduled tasks take \
                     an IANA time zone; default UTC).\n"
                ),
                (Role::User, "[bob] hi"),
                (Role::Assistant, "hello"),
                (
                    Role::User,
                    "(context, no reply needed) [alice] unrelated chatter"
                ),
                (Role::User, "[bob] @bot what's up?"),
            ]
        );
        assert!(msgs
            .iter()
            .all(|m| m.tool_calls.is_empty() && m.tool_call_id.is_none()));

        turn.scheduled = true;
        turn.history.clear();
        turn.messages = vec![m("m3", "scheduler", "check the backups", true)];
        let msgs = conversation("SYS".into(), &turn);
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[1].content, "[scheduler] check the backups");
        assert_eq!(msgs[2].role, Role::User);
        assert!(msgs[2].content.contains("no person is waiting"));
        assert!(msgs[2].content.contains("an empty reply sends nothing"));
    }
}
