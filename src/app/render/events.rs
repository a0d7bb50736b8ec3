//! The audit log as `events` prints it: one line per event.

use super::timestamp;
use crate::infra::store::events::Event;

/// `TIME  INSTANCE  KIND by ACTOR  DETAIL`, all on one line. Every field is escaped: a
/// detail may quote what an agent wrote (a container's last output, a failed roll-out's
/// reason), and JSON escapes C0 controls but not C1 ones or bidirectional overrides.
pub fn line(e: &Event) -> String {
    let mut out = format!(
        "{}  {:<12} {:<18} by {}",
        timestamp(e.at),
        crate::domain::escape::line(e.instance.as_deref().unwrap_or("-")),
        crate::domain::escape::line(&e.kind),
        crate::domain::escape::line(&e.actor)
    );
    if let Some(d) = &e.detail {
        out.push_str("  ");
        out.push_str(&crate::domain::escape::line(&d.to_string()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(detail: Option<serde_json::Value>) -> Event {
        Event {
            id: 7,
            at: 1_767_225_601_000,
            instance: Some("alice".into()),
            actor: "daemon".into(),
            kind: "rollout.failed".into(),
            detail,
        }
    }

    #[test]
    fn an_event_is_one_line_with_its_detail_escaped() {
        let e = event(Some(
            serde_json::json!({"reason": "boom\u{1b}[2J\u{9b}\u{202e}\n"}),
        ));
        assert_eq!(
            line(&e),
            "2026-01-01T00:00:01Z  alice        rollout.failed     by daemon  \
             {\"reason\":\"boom\\u001b[2J\\u{9b}\\u{202e}\\n\"}"
        );
        let none = Event {
            instance: None,
            ..event(None)
        };
        assert_eq!(
            line(&none),
            "2026-01-01T00:00:01Z  -            rollout.failed     by daemon"
        );
    }
}
