//! Removing runtimes nobody needs. The decision is a pure function; the caller does the I/O.

use std::collections::BTreeSet;

/// Runtimes to remove: every known one (on disk or in the store) except the active runtime,
/// its rollback target (the runtime it replaced), and any runtime a live instance runs.
pub fn plan(
    known: &BTreeSet<String>,
    active: Option<&str>,
    rollback_target: Option<&str>,
    in_use: &BTreeSet<String>,
) -> Vec<String> {
    known
        .iter()
        .filter(|id| Some(id.as_str()) != active && Some(id.as_str()) != rollback_target)
        .filter(|id| !in_use.contains(*id))
        .cloned()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(xs: &[&str]) -> BTreeSet<String> {
        xs.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn keeps_active_rollback_target_and_in_use() {
        let known = set(&["a", "b", "c", "d", "e"]);
        assert_eq!(plan(&known, Some("b"), Some("a"), &set(&["d"])), ["c", "e"]);
    }

    #[test]
    fn with_nothing_active_only_use_protects() {
        let known = set(&["a", "b"]);
        assert_eq!(plan(&known, None, None, &set(&["a"])), ["b"]);
        assert_eq!(plan(&known, None, None, &set(&[])), ["a", "b"]);
    }
}
