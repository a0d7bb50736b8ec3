//! The agent's `task_request`s: create, list, pause, resume and cancel tasks of its own
//! instance. An instance can never see or touch another instance's tasks: a request that
//! names another instance, or a task id that is not its own, is refused and recorded.

use serde_json::{json, Value};

use super::rate_window::RateWindow;
use crate::app::tasks::{self, TaskError, TaskInput};
use crate::domain::schedule::Kind;
use crate::infra::store::Store;

/// The answer to one request: a result, or a one-line reason for the agent.
pub type Answer = Result<Value, String>;

/// An instance's task requests are served at most this often (each one writes to the store;
/// a looping agent must not be able to churn it).
pub const PER_MINUTE: RateWindow = RateWindow::new(30, 60_000);

/// The answer beyond [`PER_MINUTE`].
pub const TOO_MANY: &str = "too many task requests: at most 30 a minute; try again shortly";

pub fn handle(store: &mut Store, instance: &str, action: &str, args: &Value, now: i64) -> Answer {
    if let Some(other) = args.get("instance").and_then(Value::as_str) {
        if other != instance {
            return refuse(
                store,
                instance,
                action,
                &format!("names instance {other:?}"),
            );
        }
    }
    match action {
        "create" => create(store, instance, args, now),
        "list" => {
            let list: Vec<Value> = store
                .tasks(Some(instance))
                .map_err(|e| e.to_string())?
                .iter()
                .map(|t| {
                    let v = tasks::view(t);
                    json!({
                        "task_id": v.id, "kind": v.kind, "schedule": v.schedule,
                        "status": v.status, "next_run": v.next_run, "prompt": v.prompt,
                        "context_mode": v.context_mode, "last_status": v.last_status,
                    })
                })
                .collect();
            Ok(json!({ "tasks": list }))
        }
        "pause" | "resume" | "cancel" => {
            let Some(id) = args.get("task_id").and_then(Value::as_i64) else {
                return Err(format!("{action} needs task_id (an integer from list)"));
            };
            // Someone else's task looks exactly like a missing one, apart from the record.
            match store.task(id) {
                Ok(t) if t.instance == instance => {}
                Ok(t) => {
                    let what = format!("task {id} of instance {:?}", t.instance);
                    let _ = refuse(store, instance, action, &what);
                    return Err(format!("no task {id} of this instance"));
                }
                Err(_) => return Err(format!("no task {id} of this instance")),
            }
            let done = match action {
                "pause" => tasks::pause(store, id, "agent").map(|t| t.status),
                "resume" => tasks::resume(store, id, "agent", now).map(|t| t.status),
                _ => tasks::remove(store, id, "agent").map(|()| "removed".to_string()),
            };
            done.map(|status| json!({ "task_id": id, "status": status }))
                .map_err(|e: TaskError| e.to_string())
        }
        other => Err(format!(
            "unknown action {other:?} (expected create, list, pause, resume or cancel)"
        )),
    }
}

fn create(store: &mut Store, instance: &str, args: &Value, now: i64) -> Answer {
    let text = |key: &str| args.get(key).and_then(Value::as_str);
    let kind: Kind = text("schedule_kind")
        .ok_or("create needs schedule_kind (cron, every or at)")?
        .parse()
        .map_err(|e: crate::domain::schedule::ScheduleError| e.to_string())?;
    let input = TaskInput {
        kind,
        schedule: text("schedule").ok_or("create needs schedule")?,
        tz: text("tz").filter(|tz| !tz.is_empty()),
        prompt: text("prompt").ok_or("create needs prompt")?,
        context_mode: text("context_mode").unwrap_or("isolated"),
    };
    let t = tasks::create(store, instance, &input, "agent", now)
        .map_err(|e: TaskError| e.to_string())?;
    let v = tasks::view(&t);
    Ok(json!({ "task_id": v.id, "schedule": v.schedule, "next_run": v.next_run }))
}

fn refuse(store: &mut Store, instance: &str, action: &str, what: &str) -> Answer {
    tracing::warn!(
        instance,
        action,
        what,
        "agent task request for another instance refused"
    );
    let detail = json!({ "action": action, "target": what });
    let _ = store.record_event(Some(instance), "agent", "task.refused", Some(&detail));
    Err("an instance can only manage its own tasks".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_000_000_000;

    fn store() -> (tempfile::TempDir, Store) {
        crate::infra::store::test_store(&["alice", "bob"])
    }

    fn every(prompt: &str) -> Value {
        json!({"schedule_kind": "every", "schedule": "1h", "prompt": prompt})
    }

    #[test]
    fn an_agent_manages_its_own_tasks() {
        let (_d, mut s) = store();
        let made = handle(&mut s, "alice", "create", &every("water the plants"), NOW).unwrap();
        let id = made["task_id"].as_i64().unwrap();
        assert_eq!(made["schedule"], "every 1h");
        let list = handle(&mut s, "alice", "list", &json!({}), NOW).unwrap();
        assert_eq!(list["tasks"][0]["prompt"], "water the plants");
        assert_eq!(s.task(id).unwrap().created_by, "agent");
        for (action, status) in [
            ("pause", "paused"),
            ("resume", "active"),
            ("cancel", "removed"),
        ] {
            let r = handle(&mut s, "alice", action, &json!({"task_id": id}), NOW).unwrap();
            assert_eq!(r["status"], status);
        }
        assert!(s.tasks(Some("alice")).unwrap().is_empty());
    }

    #[test]
    fn another_instances_tasks_are_out_of_reach_and_attempts_recorded() {
        let (_d, mut s) = store();
        let bobs = handle(&mut s, "bob", "create", &every("bob's"), NOW).unwrap()["task_id"]
            .as_i64()
            .unwrap();
        let e = handle(&mut s, "alice", "cancel", &json!({"task_id": bobs}), NOW).unwrap_err();
        assert_eq!(e, format!("no task {bobs} of this instance"));
        let mut for_bob = every("sneaky");
        for_bob["instance"] = json!("bob");
        let e = handle(&mut s, "alice", "create", &for_bob, NOW).unwrap_err();
        assert!(e.contains("only manage its own"), "{e}");
        let list = handle(&mut s, "alice", "list", &json!({}), NOW).unwrap();
        assert_eq!(list["tasks"], json!([]), "bob's task is not listed");
        assert_eq!(s.task(bobs).unwrap().status, "active", "untouched");
        let refused = s
            .recent_events(Some("alice"), 10)
            .unwrap()
            .into_iter()
            .filter(|e| e.kind == "task.refused")
            .count();
        assert_eq!(refused, 2);
    }

    #[test]
    fn bad_requests_get_one_line_reasons() {
        let (_d, mut s) = store();
        let cases = [
            (
                "create",
                json!({"schedule": "1h", "prompt": "p"}),
                "schedule_kind",
            ),
            (
                "create",
                json!({"schedule_kind": "cron", "schedule": "nope", "prompt": "p"}),
                "invalid cron",
            ),
            (
                "create",
                json!({"schedule_kind": "every", "schedule": "0s", "prompt": "p"}),
                "longer than zero",
            ),
            (
                "create",
                json!({"schedule_kind": "every", "schedule": "1h", "prompt": " "}),
                "prompt",
            ),
            ("pause", json!({}), "task_id"),
            ("pause", json!({"task_id": 999}), "no task 999"),
            ("delete", json!({}), "unknown action"),
        ];
        for (action, args, want) in cases {
            let e = handle(&mut s, "alice", action, &args, NOW).unwrap_err();
            assert!(e.contains(want), "{action} {args}: {e}");
        }
    }

    #[test]
    fn an_agent_cannot_flood_the_schedule() {
        let (_d, mut s) = store();
        for i in 0..tasks::MAX_AGENT_TASKS {
            handle(&mut s, "alice", "create", &every(&format!("t{i}")), NOW).unwrap();
        }
        let e = handle(&mut s, "alice", "create", &every("one more"), NOW).unwrap_err();
        assert!(e.contains("most allowed"), "{e}");
    }
}
