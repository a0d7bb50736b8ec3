//! Refusals of what a user typed speak of what was typed, never in a parser's words.

mod common;

use common::TestHome;

/// Words of serde, humantime or Rust that must never reach a user.
const INTERNAL: &[&str] = &[
    "expected number at",
    "invalid character at",
    "expected u32",
    "expected f64",
    "?: key must be a string",
    "daemon status",
    "EOF while parsing",
];

#[track_caller]
fn no_internal_words(text: &str) {
    for word in INTERNAL {
        assert!(!text.contains(word), "{word:?} in {text:?}");
    }
}

#[test]
fn durations_are_refused_with_what_is_wrong_in_them() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    for (args, needle) in [
        (
            &["task", "add", "alice", "--every", "soon", "--prompt", "hi"][..],
            "invalid interval \"soon\": it must start with a number",
        ),
        (
            &["task", "add", "alice", "--every", "5", "--prompt", "hi"][..],
            "5 needs a unit, such as 5s, 5m or 5h",
        ),
        (
            &["db", "prune", "--older-than", "soon"][..],
            "got \"soon\" (it must start with a number)",
        ),
        (
            &["db", "prune", "--older-than", "3 fortnights"][..],
            "\"fortnights\" is not a unit of time",
        ),
    ] {
        let out = home.run(args).fails(1, needle);
        no_internal_words(&out.stderr);
    }
}

#[test]
fn config_files_are_refused_in_words_about_them() {
    let home = TestHome::new();
    home.run(&["create-instance", "alice"]).ok();
    let config = home.path("instances/alice/config.json");
    for (text, needle) in [
        (
            r#"{"version": 1, 3: 4}"#,
            "a key must be a string in double quotes",
        ),
        (
            r#"{"version": 1, "limits": {"pids": 1.5}}"#,
            "limits.pids: expected a whole number",
        ),
        ("", "(syntax): empty, where JSON was expected"),
    ] {
        std::fs::write(&config, text).unwrap();
        let out = home.run(&["show", "alice"]).fails(1, needle);
        assert!(
            out.stderr.contains(&config.display().to_string()),
            "names the file: {}",
            out.stderr
        );
        no_internal_words(&out.stderr);
    }
    std::fs::write(
        home.path("supervisor.toml"),
        "[daemon]\nmax_running = \"x\"\n",
    )
    .unwrap();
    let out = home
        .run(&["status"])
        .fails(1, "supervisor.toml: daemon.max_running: expected a whole number from 0 to 4294967295, got the string \"x\"");
    no_internal_words(&out.stderr);
}
