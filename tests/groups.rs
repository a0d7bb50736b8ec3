//! One container per chat group (`"isolation": "chat"`), through the real daemon, real
//! containers, the loopback fake of the Bot API and a loopback model server whose answers are
//! scripted by the message ("use-tool TOOL {json}", "recall WORD", "slow"): memory and files stay
//! in their group, the persona is shared read-only and an edit of it reaches every group, two
//! groups' turns run side by side, 50 groups share a cap of 5 containers, a kill -9 mid-turn
//! loses and repeats nothing, a group's task answers in its chat, and an instance with one
//! container behaves as before.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::daemon::{wait_until, with_docker, Daemon, ReadyHome};
use common::fake_llm::FakeLlm;
use common::telegram::{FakeTelegram, Sent};
use serde_json::{json, Value};
use supervisor::domain::instance::name::group_key;

const TOKEN: &str = "123456:TEST-token-never-shown";
const TOKEN_ENV: &str = "ALICE_TELEGRAM_TOKEN";
const LONG: Duration = Duration::from_secs(120);
const A: i64 = -100;
const B: i64 = -200;

struct Groups {
    h: ReadyHome,
    tg: FakeTelegram,
    _llm: FakeLlm,
}

/// alice, with a Telegram channel, the scripted model, and `isolation`.
fn groups_home(isolation: &str, edit: impl FnOnce(&mut Value)) -> Groups {
    let h = ReadyHome::new();
    let tg = FakeTelegram::start(TOKEN);
    let llm = FakeLlm::start();
    h.home.run(&["create-instance", "alice"]).ok();
    h.edit_config("alice", |c| {
        c["allow_from"] = json!(["local", "*"]);
        c["isolation"] = json!(isolation);
        c["model"] = json!({"provider": "openai", "name": "groups", "base_url": llm.base_url,
                            "api_key_env": null});
        c["channels"] = json!({"telegram": {"token_env": TOKEN_ENV, "api_base": tg.base}});
        edit(c);
    });
    Groups { h, tg, _llm: llm }
}

impl Groups {
    fn start(&self) -> Daemon {
        Daemon::start_with_env(&self.h.home, &[(TOKEN_ENV, TOKEN)])
    }

    /// Says `text` to the bot (a mention) in group chat `chat`; returns the message id.
    fn say(&self, chat: i64, text: &str) -> i64 {
        self.tg.group_text(chat, 7, &format!("@test_bot {text}")).1
    }

    /// The answers sent into `chat` in reply to message `asked`.
    fn replies(&self, chat: i64, asked: i64) -> Vec<Sent> {
        self.tg
            .sent()
            .into_iter()
            .filter(|s| s.chat_id == chat && s.reply_to_message_id == Some(asked))
            .collect()
    }

    /// Says `text` in `chat` and waits for its one answer.
    fn ask(&self, daemon: &Daemon, chat: i64, text: &str) -> String {
        let asked = self.say(chat, text);
        assert!(
            wait_until(LONG, || !self.replies(chat, asked).is_empty()),
            "no answer to {text:?} in {chat}: {}",
            daemon.log_text()
        );
        self.replies(chat, asked)[0].text.clone()
    }

    /// The group serving Telegram chat `chat`.
    fn group(chat: i64) -> String {
        format!("alice_{}", group_key(&format!("telegram:{chat}")))
    }

    fn groups_json(&self) -> Vec<Value> {
        let out = self.h.home.run(&["groups", "alice", "--json"]).ok();
        out.json().as_array().unwrap().clone()
    }

    /// Runs `script` in `instance`'s container with its toolbox shell; (exit code, output).
    fn sh(&self, instance: &str, script: &str) -> (i64, String) {
        let (code, out, err) = common::daemon::toolbox_sh(&self.h, instance, script);
        (code, format!("{out}{err}"))
    }

    /// The host paths mounted into `instance`'s container.
    fn mount_sources(&self, instance: &str) -> Vec<String> {
        let id = self.h.container_of(instance).expect("it runs").id;
        with_docker(async move |d| {
            let i = supervisor::infra::docker::container::inspect_raw(&d, &id)
                .await
                .unwrap();
            i.mounts
                .unwrap_or_default()
                .into_iter()
                .filter_map(|m| m.source)
                .collect()
        })
    }
}

#[test]
fn memory_files_and_history_stay_in_their_group_and_the_persona_is_shared_read_only() {
    let g = groups_home("chat", |_| {});
    let daemon = g.start();
    let (a, b) = (Groups::group(A), Groups::group(B));

    // Group A's agent remembers a fact; A's next turn sees it, B's never does.
    let said = g.ask(
        &daemon,
        A,
        r#"use-tool remember {"note": "the code word is PINEAPPLE"}"#,
    );
    assert!(said.contains("saved to memory/MEMORY.md"), "{said}");
    assert!(g
        .ask(&daemon, A, "recall PINEAPPLE")
        .contains("recall PINEAPPLE: true"));
    assert!(g
        .ask(&daemon, B, "recall PINEAPPLE")
        .contains("recall PINEAPPLE: false"));

    // Each chat got a group of its own: its own uid and container, shown with its title.
    let rows = g.groups_json();
    let by_name: BTreeMap<String, Value> = rows
        .iter()
        .map(|r| (r["name"].as_str().unwrap().to_string(), r.clone()))
        .collect();
    assert_eq!(
        by_name.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([a.clone(), b.clone()]),
        "{rows:?}"
    );
    assert_eq!(by_name[&a]["title"], "Group -100");
    assert_eq!(by_name[&a]["chat"], "telegram:-100");
    let (ra, rb, rp) = (g.h.record(&a), g.h.record(&b), g.h.record("alice"));
    assert!(ra.uid != rb.uid && ra.uid != rp.uid && rb.uid != rp.uid);

    // A file written by A's agent is invisible to B's agent, by its tools and from its shell.
    let said = g.ask(
        &daemon,
        A,
        r#"use-tool write_file {"path": "secret-a.txt", "content": "only for A"}"#,
    );
    assert!(said.contains("tool said"), "{said}");
    let read = g.ask(&daemon, B, r#"use-tool read_file {"path": "secret-a.txt"}"#);
    assert!(
        read.contains("error") && !read.contains("only for A"),
        "{read}"
    );
    let listed = g.ask(&daemon, B, r#"use-tool list_dir {"path": "."}"#);
    assert!(!listed.contains("secret-a"), "{listed}");
    let (_, found) = g.sh(&b, "find / -name 'secret-a*' 2>/dev/null; cat /proc/mounts");
    assert!(!found.contains("secret-a"), "{found}");
    // B's container has no mount of A's directories (nor of the instance's own volume).
    let key_a = a.split_once('_').unwrap().1;
    let sources = g.mount_sources(&b);
    assert!(sources.iter().all(|s| !s.contains(key_a)), "{sources:?}");
    let alice_volume = g.h.home.path("instances/alice/volume");
    assert!(
        sources
            .iter()
            .all(|s| !s.starts_with(alice_volume.to_str().unwrap())),
        "{sources:?}"
    );

    // History stays in its group.
    let history = |name: &str| {
        g.h.home
            .run(&["history", name, "--json", "--limit", "500"])
            .ok()
            .stdout
    };
    assert!(history(&a).contains("code word is PINEAPPLE"));
    assert!(!history(&b).contains("code word is"));
    assert!(!history("alice").contains("code word is"));

    // An edit of the instance's persona reaches both groups at their next turn.
    let soul = g.h.home.workspace("alice").join("SOUL.md");
    std::fs::write(&soul, "# Pirate persona\n\nSpeak like a pirate.\n").unwrap();
    for chat in [A, B] {
        let said = g.ask(&daemon, chat, "recall Pirate");
        assert!(said.contains("persona: # Pirate persona"), "{said}");
    }
    // Neither group can write it: not by its tools, not from its shell.
    let said = g.ask(
        &daemon,
        A,
        r#"use-tool write_file {"path": "/persona/SOUL.md", "content": "hijacked"}"#,
    );
    assert!(said.contains("error"), "{said}");
    for name in [&a, &b] {
        for target in ["/persona/SOUL.md", "/persona/new.md", "/shared/new.md"] {
            let (code, out) = g.sh(name, &format!("echo hijacked > {target}"));
            assert_ne!(code, 0, "{name} wrote {target}: {out}");
        }
        let (code, _) = g.sh(name, "rm -f /persona/SOUL.md");
        assert_ne!(code, 0);
    }
    assert!(std::fs::read_to_string(&soul).unwrap().contains("Pirate"));
    let copy = g.h.home.path("instances/alice/persona/SOUL.md");
    assert!(std::fs::read_to_string(copy).unwrap().contains("Pirate"));

    // doctor audits every running group container against what the daemon would make, and
    // finds the groups' files as they should be.
    let report = g.h.home.run(&["doctor", "--json"]).json();
    let checks = report["checks"].as_array().unwrap();
    let hardening: Vec<&Value> = checks.iter().filter(|c| c["name"] == "hardening").collect();
    for name in [&a, &b] {
        let row = hardening
            .iter()
            .find(|c| {
                c["message"]
                    .as_str()
                    .unwrap()
                    .contains(&format!("{name} (sv-"))
            })
            .unwrap_or_else(|| panic!("no hardening row for {name}: {hardening:?}"));
        assert_eq!(row["status"], "ok", "{row}");
    }
    let bad: Vec<&Value> = checks
        .iter()
        .filter(|c| c["status"] != "ok" && c["name"] != "daemon" && c["name"] != "channels")
        .collect();
    assert!(bad.is_empty(), "{bad:?}");

    // The operator's own conversation stays the instance's.
    g.h.home.run(&["start", "alice", "--wait"]).ok();
    let out =
        g.h.home
            .run(&["send", "alice", "recall PINEAPPLE", "--wait"])
            .ok();
    assert!(
        out.stdout.contains("recall PINEAPPLE: false"),
        "{}",
        out.stdout
    );

    // A group is operated like an instance: shown, its logs read, stopped, removed.
    let shown = g.h.home.run(&["show", &a]).ok().stdout;
    assert!(
        shown.contains(&a) && shown.contains("Pirate persona"),
        "{shown}"
    );
    g.h.home.run(&["logs", &a]).ok();
    let status = g.h.home.run(&["status", "--json"]).json();
    let alice = &status["instances"].as_array().unwrap()[0];
    assert_eq!(alice["name"], "alice", "{status}");
    assert_eq!(
        status["instances"].as_array().unwrap().len(),
        1,
        "groups nest"
    );
    assert_eq!(alice["groups"].as_array().unwrap().len(), 2, "{alice}");
    let text = g.h.home.run(&["status"]).stdout;
    assert!(
        text.contains("alice: 2 running, 0 idle, 0 failing"),
        "{text}"
    );
    let listed = g.h.home.run(&["list", "--json"]).ok().json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");

    // Removing a group forgets its chat: its next message makes a new, empty group.
    g.h.home.run(&["remove", &b]).ok();
    assert!(wait_until(LONG, || g.h.container_of(&b).is_none()));
    assert_eq!(g.groups_json().len(), 1);
    g.ask(&daemon, B, "hello again");
    let again = g.h.record(&b);
    assert_ne!(again.uid, rb.uid, "a uid is never given twice");
    // Removing the instance removes its groups, their containers and their files.
    g.h.home.run(&["remove", "alice", "--purge"]).ok();
    assert!(
        wait_until(LONG, || g.h.containers().is_empty()),
        "{:?}",
        g.h.containers()
    );
    assert!(!g.h.home.path("instances/alice").exists());
    drop(daemon);
}

#[test]
fn two_groups_turns_run_side_by_side_and_a_groups_task_answers_in_its_chat() {
    let g = groups_home("chat", |_| {});
    let daemon = g.start();
    // Both containers warm, so that only the model's time differs.
    g.ask(&daemon, A, "hello");
    g.ask(&daemon, B, "hello");

    let slow = g.say(A, "slow please");
    let quick = g.ask(&daemon, B, "quick one");
    assert!(quick.contains("ok: quick one"), "{quick}");
    assert!(
        g.replies(A, slow).is_empty(),
        "B's answer waited for A's slow model call"
    );
    assert!(wait_until(LONG, || !g.replies(A, slow).is_empty()));

    // A task that A's agent schedules runs in A and answers into A's chat only.
    let said = g.ask(
        &daemon,
        A,
        r#"use-tool schedule_task {"action": "create", "schedule_kind": "every", "schedule": "2s", "prompt": "tick for A"}"#,
    );
    assert!(said.contains("tool said"), "{said}");
    let ticks = |chat: i64| {
        g.tg.sent()
            .into_iter()
            .filter(|s| s.chat_id == chat && s.text.contains("ok: tick for A"))
            .count()
    };
    assert!(wait_until(LONG, || ticks(A) >= 1), "{}", daemon.log_text());
    assert_eq!(ticks(B), 0);
    let tasks =
        g.h.home
            .run(&["task", "list", &Groups::group(A), "--json"])
            .ok()
            .json();
    assert_eq!(tasks.as_array().unwrap().len(), 1, "{tasks}");
    drop(daemon);
}

#[test]
fn fifty_groups_under_a_cap_of_five_are_each_answered_once_and_idle_ones_stop() {
    let g = groups_home("chat", |c| {
        c["lifecycle"] = json!({"mode": "on-demand", "idle_timeout": "10s"});
        c["limits"]["disk"] = json!("64m");
    });
    let toml = g.h.home.path("supervisor.toml");
    let mut text = std::fs::read_to_string(&toml).unwrap();
    text = text.replace("[daemon]", "[daemon]\nmax_running = 5");
    if !text.contains("max_running = 5") {
        text.push_str("\n[daemon]\nmax_running = 5\n");
    }
    std::fs::write(&toml, text).unwrap();
    let daemon = g.start();

    // Count the group containers running, all along.
    let most = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (most, done, home_id) = (most.clone(), done.clone(), g.h.home_id.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::SeqCst) {
                let id = home_id.clone();
                let running = with_docker(async move |c| {
                    supervisor::infra::docker::container::list_owned(&c, &id)
                        .await
                        .unwrap_or_default()
                })
                .into_iter()
                .filter(|c| c.running)
                .count();
                most.fetch_max(running, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
            }
        })
    };

    let chats: Vec<i64> = (1..=50).map(|i| -1000 - i).collect();
    let asked: Vec<(i64, i64)> = chats
        .iter()
        .map(|&chat| (chat, g.say(chat, &format!("hello from {chat}"))))
        .collect();
    let answered = |(chat, id): &(i64, i64)| !g.replies(*chat, *id).is_empty();
    assert!(
        wait_until(Duration::from_secs(600), || asked.iter().all(answered)),
        "answered {} of 50: {}",
        asked.iter().filter(|a| answered(a)).count(),
        daemon.log_text()
    );
    // Every message answered once, in its own chat, by its own group.
    for (chat, id) in &asked {
        let replies = g.replies(*chat, *id);
        assert_eq!(replies.len(), 1, "{chat}: {replies:?}");
        assert!(replies[0].text.contains(&format!("hello from {chat}")));
    }
    let sent_chats: BTreeSet<i64> = g.tg.sent().into_iter().map(|s| s.chat_id).collect();
    assert_eq!(sent_chats, chats.iter().copied().collect());
    assert_eq!(g.groups_json().len(), 50);

    // Idle groups are stopped: none runs a while after the last answer.
    assert!(
        wait_until(Duration::from_secs(120), || g
            .h
            .containers()
            .iter()
            .all(|c| !c.running)),
        "{:?}",
        g.h.containers()
            .iter()
            .filter(|c| c.running)
            .map(|c| c.instance.clone())
            .collect::<Vec<_>>()
    );
    done.store(true, Ordering::SeqCst);
    sampler.join().unwrap();
    let most = most.load(Ordering::SeqCst);
    assert!(
        most <= 5,
        "{most} containers ran at once under max_running = 5"
    );
    assert!(most >= 2, "groups ran side by side ({most})");
    drop(daemon);
}

#[test]
fn a_kill_9_mid_turn_in_one_group_repeats_and_loses_nothing_and_other_groups_go_on() {
    let g = groups_home("chat", |_| {});
    let mut daemon = g.start();
    g.ask(&daemon, B, "hello");
    g.ask(
        &daemon,
        A,
        r#"use-tool remember {"note": "the code word is KIWI"}"#,
    );
    let slow = g.say(A, "slow after the crash");
    // The turn is in flight in A's container: its model call has begun.
    assert!(wait_until(LONG, || g
        .h
        .home
        .run(&["history", &Groups::group(A), "--json"])
        .ok()
        .stdout
        .contains("\"delivered\"")));
    daemon.kill9();
    let daemon = g.start();
    let other = g.ask(&daemon, B, "meanwhile");
    assert!(other.contains("ok: meanwhile"), "{other}");
    assert!(wait_until(LONG, || !g.replies(A, slow).is_empty()));
    // Give a repeated answer the time to show itself, then count.
    g.ask(&daemon, A, "after");
    assert_eq!(g.replies(A, slow).len(), 1, "{:?}", g.tg.sent());
    let finals = |name: &str| {
        common::daemon::finals(&g.h.home, name)
            .into_iter()
            .filter(|m| {
                m["body"]
                    .as_str()
                    .unwrap_or("")
                    .contains("slow after the crash")
            })
            .count()
    };
    assert_eq!(finals(&Groups::group(A)), 1);

    // A backup keeps every group's memory and history, and the instance's shared knowledge;
    // a restore brings them back, shared knowledge readable by every group's uid.
    let shared = g.h.home.path("instances/alice/shared/handbook.md");
    std::fs::write(&shared, "the handbook\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let archive = g.h.home.scratch().join("groups.tar.gz");
    g.h.home
        .run(&["backup", "--out", archive.to_str().unwrap()])
        .ok();
    let copy = common::TestHome::new();
    copy.run(&["restore", archive.to_str().unwrap()]).ok();
    let rows = copy.run(&["groups", "alice", "--json"]).ok().json();
    assert_eq!(rows.as_array().unwrap().len(), 2, "{rows}");
    let memory = copy.workspace(&Groups::group(A)).join("memory/MEMORY.md");
    assert!(std::fs::read_to_string(memory).unwrap().contains("KIWI"));
    let memory_b = copy.workspace(&Groups::group(B)).join("memory/MEMORY.md");
    assert!(!std::fs::read_to_string(memory_b).unwrap().contains("KIWI"));
    let history = copy
        .run(&["history", &Groups::group(A), "--json"])
        .ok()
        .stdout;
    assert!(history.contains("slow after the crash"), "{history}");
    assert!(!copy
        .path(&format!("instances/{}", Groups::group(A)))
        .exists());
    let restored = copy.path("instances/alice/shared/handbook.md");
    assert_eq!(
        std::fs::read_to_string(&restored).unwrap(),
        "the handbook\n"
    );
    assert_eq!(common::mode(&restored), 0o644);
    assert_eq!(common::mode(&copy.path("instances/alice/shared")), 0o755);
    drop(daemon);
}

#[test]
fn with_one_container_for_the_instance_every_chat_shares_it_as_before() {
    let g = groups_home("instance", |_| {});
    let daemon = g.start();
    g.h.home.run(&["start", "alice", "--wait"]).ok();
    g.ask(
        &daemon,
        A,
        r#"use-tool remember {"note": "the code word is MANGO"}"#,
    );
    // One memory for every chat: B's turn sees what was said in A.
    assert!(g
        .ask(&daemon, B, "recall MANGO")
        .contains("recall MANGO: true"));
    assert!(g.groups_json().is_empty());
    let names: BTreeSet<String> = g.h.containers().into_iter().map(|c| c.instance).collect();
    assert_eq!(names, BTreeSet::from(["alice".to_string()]));
    drop(daemon);
}

/// The instance's own agent can write its workspace, where the persona is read from: what it
/// plants there (links to host files, a FIFO, a directory swapped for a link) never brings a
/// host file to its groups, and never stops their turns.
#[test]
fn links_planted_in_the_instances_persona_never_bring_host_files_to_its_groups() {
    let g = groups_home("chat", |_| {});
    let decoy = common::decoy::Decoy::new(&g.h.home.path("instances"));
    let daemon = g.start();
    g.h.home.run(&["start", "alice", "--wait"]).ok();
    let a = Groups::group(A);
    assert!(g.ask(&daemon, A, "recall nothing").contains("persona: "));
    let title = |said: &str| said.split("persona: ").nth(1).unwrap_or("").to_string();
    let before = title(&g.ask(&daemon, A, "recall x"));

    // From inside alice's container, as its agent: AGENTS.md and a skill become links to
    // host files, a skill a FIFO, and then the whole skills/ a link to a host directory.
    let (code, out) = g.sh(
        "alice",
        &format!(
            "cd /workspace && rm -f AGENTS.md && ln -s {notes} AGENTS.md && \
             ln -s {secret} skills/leak.md && mkfifo skills/hang.md && \
             mv skills skills.old && ln -s {root} skills",
            notes = decoy.host_path("notes.txt"),
            secret = decoy.host_path("secret.md"),
            root = decoy.host_path(""),
        ),
    );
    assert_eq!(code, 0, "{out}");
    let said = g.ask(&daemon, A, "recall decoy");
    assert!(said.contains("recall decoy: false"), "{said}");
    let said = g.ask(&daemon, A, &format!("recall {}", common::decoy::SECRET));
    assert!(said.contains(": false"), "{said}");
    let persona = g.h.home.path("instances/alice/persona");
    assert!(!persona.join("AGENTS.md").exists());
    let copied: Vec<String> = std::fs::read_dir(persona.join("skills"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(copied.is_empty(), "{copied:?}");

    // SOUL.md itself a link to a host file: the groups keep the persona they had.
    let (code, out) = g.sh(
        "alice",
        &format!(
            "cd /workspace && rm SOUL.md && ln -s {} SOUL.md",
            decoy.host_path("secret.md")
        ),
    );
    assert_eq!(code, 0, "{out}");
    let said = g.ask(&daemon, A, "recall SECRET");
    assert!(said.contains("recall SECRET: false"), "{said}");
    assert_eq!(title(&said), before);
    assert_eq!(decoy.changes_line(), None);
    // Nothing of the host in the group's own view of /persona either.
    let (_, listing) = g.sh(&a, "ls -la /persona /persona/skills; cat /persona/SOUL.md");
    assert!(
        !listing.contains("decoy") && !listing.contains("SECRET"),
        "{listing}"
    );
    drop(daemon);
}

/// A file sent in a group chat lands in that group's workspace, owned by the group's uid:
/// read from inside its container, absent from the instance's and every other group's.
#[test]
fn an_attachment_lands_in_its_groups_own_inbox() {
    let g = groups_home("chat", |_| {});
    let daemon = g.start();
    g.ask(&daemon, B, "hello");
    g.tg.add_file("doc1", b"minutes of A".to_vec(), "documents/file_1.pdf");
    // The file is the first message in chat A: it makes A's group, and goes to its inbox.
    let (_, asked) = g.tg.push_message(json!({
        "chat": {"id": A, "type": "supergroup", "title": "Group A"},
        "from": {"id": 7, "is_bot": false, "first_name": "Bo"},
        "caption": "@test_bot read this",
        "document": {"file_id": "doc1", "file_unique_id": "U1",
                     "file_name": "minutes.pdf", "file_size": 12},
    }));
    assert!(
        wait_until(LONG, || !g.replies(A, asked).is_empty()),
        "{}",
        daemon.log_text()
    );
    let said = &g.replies(A, asked)[0].text;
    let shown = said
        .split("saved as ")
        .nth(1)
        .and_then(|r| r.split(']').next())
        .unwrap_or_else(|| panic!("{said}"))
        .to_string();
    assert!(shown.starts_with("/workspace/inbox/"), "{shown}");
    let a = Groups::group(A);
    let (code, out) = g.sh(&a, &format!("cat {shown}"));
    assert_eq!((code, out.as_str()), (0, "minutes of A"));
    let (_, out) = g.sh(&Groups::group(B), "ls /workspace/inbox 2>&1; true");
    assert!(!out.contains("minutes"), "{out}");
    let parent_inbox = g.h.home.workspace("alice").join("inbox");
    assert!(!parent_inbox.exists() || std::fs::read_dir(&parent_inbox).unwrap().next().is_none());
    use std::os::unix::fs::MetadataExt;
    let file =
        g.h.home
            .workspace(&a)
            .join(shown.trim_start_matches("/workspace/"));
    assert_eq!(std::fs::metadata(file).unwrap().uid(), g.h.record(&a).uid);
    drop(daemon);
}
