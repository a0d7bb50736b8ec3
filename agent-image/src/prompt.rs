//! What the model is shown at the start of a turn: the system prompt assembled from the
//! workspace (persona, manual, memory, skills) and the conversation built from the turn.

use crate::protocol::{ModelMessage, Role, TurnMessage};
use crate::tools::{utc_date_time, ToolBox, BUILTIN_SKILLS_PREFIX, MEMORY_FILE};
use crate::turn_input::Turn;
use crate::workspace::{Kind, Workspace};

/// The most of each workspace file put into the system prompt.
pub const FILE_CAP: usize = 64 * 1024;
/// The most skills listed from each directory.
pub const SKILLS_LISTED: usize = 50;
/// The most entries of the shared-knowledge directory named in the prompt.
pub const SHARED_LISTED: usize = 50;
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
/// "# Long-term memory" heading, then the list of skills, then what is shared in `/shared`.
/// Only `SOUL.md` is required. With a persona tree, `SOUL.md` and `AGENTS.md` come from it
/// alone: a chat group speaks with the instance's voice, whatever its workspace holds. Memory
/// is always the workspace's own.
pub fn system_prompt(tools: &ToolBox) -> Result<String, String> {
    let ws = &tools.workspace;
    let persona = tools.persona.as_ref().unwrap_or(ws);
    let soul = workspace_file(persona, "SOUL.md").map_err(|e| match &tools.persona {
        Some(p) => format!("cannot read the persona from {}: {e}", p.label()),
        None => format!("cannot read the persona: {e}"),
    })?;
    let mut sections = vec![soul];
    if let Ok(manual) = workspace_file(persona, "AGENTS.md") {
        sections.push(manual);
    }
    if let Ok(memory) = workspace_file(ws, MEMORY_FILE) {
        sections.push(format!("# Long-term memory\n\n{memory}"));
    }
    sections.extend(skills_section(tools));
    sections.extend(tools.shared.as_ref().map(shared_section));
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

/// "# Skills" with the built-in skills, the persona's and the workspace's own, or `None` if
/// there are none.
pub fn skills_section(tools: &ToolBox) -> Option<String> {
    let lists = [
        (
            "Built-in (read-only):",
            tools
                .builtin_skills
                .as_ref()
                .map(|b| skill_lines(b, ".", BUILTIN_SKILLS_PREFIX, ".")),
        ),
        (
            "Shared by the instance (read-only):",
            tools.persona.as_ref().map(|p| {
                let shown = format!("{}/skills/", p.label());
                skill_lines(p, "skills", &shown, shown.trim_end_matches('/'))
            }),
        ),
        (
            "Your own (in /workspace/skills/):",
            Some(skill_lines(&tools.workspace, "skills", "skills/", "skills")),
        ),
    ];
    let lists: Vec<_> = lists
        .into_iter()
        .filter_map(|(heading, list)| Some((heading, list.filter(|l| !l.is_empty())?)))
        .collect();
    if lists.is_empty() {
        return None;
    }
    let mut text = String::from(
        "# Skills\n\nSkills are instructions for recurring tasks. When a task matches one, read \
         it with read_file first and follow it.\n",
    );
    for (heading, list) in lists {
        text.push_str(&format!("\n{heading}\n{list}"));
    }
    Some(text)
}

/// "# Shared knowledge": where the shared files are and how to reach them, with the names of
/// the first [`SHARED_LISTED`] entries only, so that a large directory costs the prompt little
/// and its contents are read only when needed.
pub fn shared_section(shared: &Workspace) -> String {
    let label = shared.label();
    let mut text = format!(
        "# Shared knowledge\n\nRead-only files shared by every conversation of the instance \
         are in {label}. List them with list_dir \"{label}\" and read one with read_file \
         \"{label}/NAME\".\n"
    );
    let Ok((entries, more)) = shared.list_dir(".") else {
        return text;
    };
    if entries.is_empty() {
        text.push_str("\nIt is empty for now.\n");
        return text;
    }
    text.push('\n');
    for entry in entries.iter().take(SHARED_LISTED) {
        let slash = if entry.kind == Kind::Dir { "/" } else { "" };
        text.push_str(&format!("- {}{slash}\n", entry.name));
    }
    if entries.len() > SHARED_LISTED || more {
        let plus = if more { "+" } else { "" };
        text.push_str(&format!(
            "- and {}{plus} more (list_dir \"{label}\")\n",
            entries.len() - SHARED_LISTED
        ));
    }
    text
}

/// One line per `*.md` file in `dir` of `tree`: `- <shown prefix><name>: <title>`, and past
/// [`SKILLS_LISTED`] a line saying how many more `list_dir <listed>` shows.
fn skill_lines(tree: &Workspace, dir: &str, shown: &str, listed: &str) -> String {
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
            "- and {} more (list_dir {listed})\n",
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

    fn tree(root: &Path, label: &str) -> Workspace {
        fs::create_dir_all(root).unwrap();
        Workspace::with_label(root, label).unwrap()
    }

    /// Tools on `ws` with the built-in skills `builtin`, and no persona or shared tree.
    fn tools(ws: &Workspace, builtin: Option<&Workspace>) -> ToolBox {
        ToolBox {
            workspace: ws.clone(),
            builtin_skills: builtin.cloned(),
            persona: None,
            shared: None,
            shell: None,
        }
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
        let prompt = system_prompt(&tools(&w, Some(&b))).unwrap();
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
        let e = system_prompt(&tools(&w, None)).unwrap_err();
        assert!(e.starts_with("cannot read the persona: SOUL.md"), "{e}");
        fs::write(w.root().join("SOUL.md"), "I am.").unwrap();
        assert_eq!(system_prompt(&tools(&w, None)).unwrap(), "I am.\n");
    }

    #[test]
    fn files_are_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(tmp.path());
        fs::write(w.root().join("SOUL.md"), "s".repeat(FILE_CAP + 1)).unwrap();
        fs::write(w.root().join("AGENTS.md"), "a".repeat(FILE_CAP * 2)).unwrap();
        let prompt = system_prompt(&tools(&w, None)).unwrap();
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
        assert_eq!(skills_section(&tools(&w, None)), None);
    }

    /// A chat group's trees under `root`: a workspace with its own SOUL.md, AGENTS.md, memory
    /// and skill, and a persona with SOUL.md, AGENTS.md and a skill.
    fn group(root: &Path) -> ToolBox {
        let w = ws(&root.join("ws"));
        fs::write(w.root().join("SOUL.md"), "# Stale soul\n").unwrap();
        fs::write(w.root().join("AGENTS.md"), "# Stale manual\n").unwrap();
        fs::create_dir_all(w.root().join("memory")).unwrap();
        fs::write(
            w.root().join("memory/MEMORY.md"),
            "- 2026-01-01: group fact\n",
        )
        .unwrap();
        fs::create_dir_all(w.root().join("skills")).unwrap();
        fs::write(w.root().join("skills/mine.md"), "# Group skill\n").unwrap();
        let p = tree(&root.join("persona"), "/persona");
        fs::write(p.root().join("SOUL.md"), "# Instance soul\n").unwrap();
        fs::write(p.root().join("AGENTS.md"), "# Instance manual\n").unwrap();
        fs::create_dir_all(p.root().join("skills")).unwrap();
        fs::write(p.root().join("skills/report.md"), "# Weekly report\n").unwrap();
        ToolBox {
            persona: Some(p),
            ..tools(&w, None)
        }
    }

    #[test]
    fn a_persona_replaces_the_workspace_soul_and_manual() {
        let tmp = tempfile::tempdir().unwrap();
        let t = group(tmp.path());
        assert_eq!(
            system_prompt(&t).unwrap(),
            "# Instance soul\n\n# Instance manual\n\n\
             # Long-term memory\n\n- 2026-01-01: group fact\n\n\
             # Skills\n\nSkills are instructions for recurring tasks. When a task matches \
             one, read it with read_file first and follow it.\n\n\
             Shared by the instance (read-only):\n\
             - /persona/skills/report.md: Weekly report\n\n\
             Your own (in /workspace/skills/):\n\
             - skills/mine.md: Group skill\n"
        );
        // The persona's missing AGENTS.md is not made up for by the workspace's.
        fs::remove_file(t.persona.as_ref().unwrap().root().join("AGENTS.md")).unwrap();
        let prompt = system_prompt(&t).unwrap();
        assert!(!prompt.contains("Stale"), "{prompt}");
    }

    #[test]
    fn a_persona_without_soul_fails_the_prompt() {
        let tmp = tempfile::tempdir().unwrap();
        let t = group(tmp.path());
        fs::remove_file(t.persona.as_ref().unwrap().root().join("SOUL.md")).unwrap();
        let e = system_prompt(&t).unwrap_err();
        assert_eq!(
            e,
            "cannot read the persona from /persona: SOUL.md does not exist"
        );
    }

    #[test]
    fn persona_skills_come_between_builtin_and_own() {
        let tmp = tempfile::tempdir().unwrap();
        let b = ws(&tmp.path().join("builtin"));
        fs::write(b.root().join("files.md"), "# Files\n").unwrap();
        let t = ToolBox {
            builtin_skills: Some(b),
            ..group(tmp.path())
        };
        let skills = skills_section(&t).unwrap();
        let at = |needle: &str| skills.find(needle).unwrap_or_else(|| panic!("{needle}"));
        assert!(at("Built-in (read-only):") < at("Shared by the instance (read-only):"));
        assert!(at("- /persona/skills/report.md") < at("Your own (in /workspace/skills/):"));
        // A persona with skills alone still makes a section.
        let t = group(&tmp.path().join("alone"));
        fs::remove_dir_all(t.workspace.root().join("skills")).unwrap();
        let skills = skills_section(&t).unwrap();
        assert!(skills.ends_with("- /persona/skills/report.md: Weekly report\n"));
        assert!(!skills.contains("Your own"), "{skills}");
    }

    #[test]
    fn shared_knowledge_is_named_not_read() {
        let tmp = tempfile::tempdir().unwrap();
        let w = ws(&tmp.path().join("ws"));
        fs::write(w.root().join("SOUL.md"), "I am.").unwrap();
        let s = tree(&tmp.path().join("shared"), "/shared");
        fs::write(s.root().join("prices.csv"), "secret content").unwrap();
        fs::create_dir(s.root().join("docs")).unwrap();
        let t = ToolBox {
            shared: Some(s),
            ..tools(&w, None)
        };
        assert_eq!(
            system_prompt(&t).unwrap(),
            "I am.\n\n# Shared knowledge\n\nRead-only files shared by every conversation of \
             the instance are in /shared. List them with list_dir \"/shared\" and read one \
             with read_file \"/shared/NAME\".\n\n- docs/\n- prices.csv\n"
        );
        // Without a shared tree there is no such section.
        assert!(!system_prompt(&tools(&w, None))
            .unwrap()
            .contains("# Shared knowledge"));
    }

    #[test]
    fn shared_listing_is_capped() {
        let tmp = tempfile::tempdir().unwrap();
        let s = tree(&tmp.path().join("shared"), "/shared");
        for i in 0..SHARED_LISTED + 3 {
            fs::write(s.root().join(format!("f{i:03}")), "").unwrap();
        }
        let text = shared_section(&s);
        assert_eq!(text.matches("\n- f").count(), SHARED_LISTED);
        assert!(
            text.contains("- f049\n- and 3 more (list_dir \"/shared\")\n"),
            "{text}"
        );
        let empty = tree(&tmp.path().join("empty"), "/shared");
        assert!(shared_section(&empty).ends_with("\nIt is empty for now.\n"));
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
