//! The `egress` rows: an instance whose agent can reach more of the network than the brokered
//! web path gives it, or every public host through it.

use super::Check;
use crate::domain::instance::config::{InstanceConfig, NetworkPolicy};

pub const EGRESS: &str = "egress";

/// The rows for one instance's valid config: a warning for `network: "bridge"` and one for
/// `"*"` in `egress.allow`; none when neither applies.
pub fn rows(instance: &str, config: &InstanceConfig) -> Vec<Check> {
    let mut rows = Vec::new();
    if config.network == NetworkPolicy::Bridge {
        rows.push(Check::warn(
            EGRESS,
            format!(
                "{instance}: network is \"bridge\": the agent reaches any address itself, \
                 with no allow-list and no record"
            ),
            format!(
                "set \"network\": \"none\" in {instance}'s config.json and list the hosts it \
                 needs in \"egress\".\"allow\" (docs/configuration.md, \"Web access\")"
            ),
        ));
    }
    if config
        .egress
        .as_ref()
        .is_some_and(|e| e.allows_everything())
    {
        rows.push(Check::warn(
            EGRESS,
            format!(
                "{instance}: egress.allow has \"*\": the agent may fetch from every public host"
            ),
            format!("list only the hosts {instance} needs in egress.allow"),
        ));
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Status;

    #[test]
    fn bridge_and_star_are_flagged() {
        let parse = |s: &str| InstanceConfig::parse(s.as_bytes()).unwrap();
        assert!(rows("a", &parse(r#"{"version": 1}"#)).is_empty());
        assert!(rows(
            "a",
            &parse(r#"{"version": 1, "egress": {"allow": ["docs.rs"]}}"#)
        )
        .is_empty());
        let r = rows("a", &parse(r#"{"version": 1, "network": "bridge"}"#));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].status, Status::Warn);
        assert!(r[0].message.contains("bridge"), "{}", r[0].message);
        let r = rows(
            "a",
            &parse(r#"{"version": 1, "network": "bridge", "egress": {"allow": ["docs.rs", "*"]}}"#),
        );
        assert_eq!(r.len(), 2);
        assert!(r[1].message.contains("\"*\""), "{}", r[1].message);
    }
}
