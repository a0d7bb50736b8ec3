//! Two homes with one id on one engine: a copy restored with `--same-id` beside its
//! original. Their containers carry the same `supervisor.home` label (and names), so each
//! home would list, audit and replace the other's. A container is the other home's when it
//! mounts host paths and none of them lies in this home.

use std::path::{Path, PathBuf};

use super::Check;

pub const HOME_ID: &str = "home-id";

/// The home a container labelled with this home's id really belongs to, judged by its bind
/// mounts' host paths; None when one of them is in this home (any of `roots`: the home as
/// given and as resolved) or it mounts nothing.
pub fn other_home(bind_sources: &[String], roots: &[PathBuf]) -> Option<String> {
    if bind_sources.is_empty() {
        return None;
    }
    let ours = |s: &String| roots.iter().any(|r| Path::new(s).starts_with(r));
    if bind_sources.iter().any(ours) {
        return None;
    }
    let first = &bind_sources[0];
    // `<home>/instances/NAME/...` or `<home>/runtime/ID`: the home is what comes before.
    let home = ["/instances/", "/runtime/"]
        .iter()
        .find_map(|marker| first.find(marker).map(|i| first[..i].to_string()))
        .unwrap_or_else(|| first.clone());
    Some(home)
}

/// A container of another home that carries this home's id.
pub fn shared(container: &str, instance: &str, home_id: &str, other: &str, root: &str) -> Check {
    Check::fail(
        HOME_ID,
        format!(
            "container {container} (instance {instance:?}) carries this home's id {home_id} but belongs to the home at {other}: \
             the two homes share one id on this engine (a copy restored with --same-id), so each takes the other's containers for its own"
        ),
        format!(
            "stop the daemon of the copy, then give the copy an id of its own: supervisor --home COPY backup --out FILE, \
             then supervisor --home NEW_DIR restore FILE (without --same-id); until then never run both daemons (this home is {root})"
        ),
    )
}

pub fn unique(home_id: &str) -> Check {
    Check::ok(
        HOME_ID,
        format!("no other home on this engine uses this home's id {home_id}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_container_mounting_only_another_homes_paths_is_the_other_homes() {
        let roots = [PathBuf::from("/srv/a")];
        let ours = vec![
            "/srv/a/runtime/0123456789abcdef".to_string(),
            "/srv/a/instances/alice/volume/workspace".to_string(),
        ];
        assert_eq!(other_home(&ours, &roots), None);
        let theirs = vec![
            "/srv/b/instances/alice/volume/workspace".to_string(),
            "/srv/b/runtime/0123456789abcdef".to_string(),
        ];
        assert_eq!(other_home(&theirs, &roots).as_deref(), Some("/srv/b"));
        assert_eq!(other_home(&[], &roots), None, "nothing to judge by");
        // A sibling whose name starts like ours is still another home.
        let sibling = vec!["/srv/ab/instances/x/volume/workspace".to_string()];
        assert_eq!(other_home(&sibling, &roots).as_deref(), Some("/srv/ab"));
    }

    #[test]
    fn the_row_says_how_to_part_them() {
        let c = shared("sv-01234567-alice", "alice", "0123", "/srv/b", "/srv/a");
        assert_eq!(c.status, crate::app::doctor::Status::Fail);
        assert!(
            c.message.contains("/srv/b") && c.message.contains("--same-id"),
            "{}",
            c.message
        );
        assert!(c.fix.unwrap().contains("restore FILE"));
    }
}
