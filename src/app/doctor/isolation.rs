//! The isolation check: how instances are kept apart on this host. Each instance's container
//! runs as a uid of its own and its files belong to it (or, under a supervisor that is not
//! root, all share the supervisor's); disk limits are hard (a disk image each) or soft; and
//! no other home on the engine runs containers with this home's uids.

use crate::domain::instance::InstanceName;
use crate::infra::disk::Enforcement;
use crate::infra::home::Home;
use crate::infra::store::instances::InstanceRecord;
use crate::infra::volume::{self, Queue};

use super::checks::ISOLATION;
use super::Check;

/// The uid row: one per instance, or shared.
pub fn uids(shared_uid: Option<(u32, u32)>, instances: usize) -> Check {
    match shared_uid {
        None => Check::ok(
            ISOLATION,
            format!("each instance runs as a uid of its own ({instances} instances), owning its files"),
        ),
        Some((uid, gid)) => Check::warn(
            ISOLATION,
            format!(
                "every instance runs as the supervisor's own uid {uid}:{gid}, since it is not root: \
                 one agent's user could read another's files if it ever left its container"
            ),
            "run the supervisor as root (it gives each instance a uid of its own)",
        ),
    }
}

/// The disk-limit row.
pub fn disk(e: &Enforcement) -> Check {
    match e {
        Enforcement::Hard => Check::ok(
            ISOLATION,
            "disk limits are hard: each instance has a disk image of its own",
        ),
        Enforcement::Soft { why } => Check::warn(
            ISOLATION,
            format!(
                "disk limits are soft ({why}): an instance past limits.disk is stopped, but a fast \
                 writer can pass it before the next measure"
            ),
            "run the supervisor as root on a host with loop devices and e2fsprogs, with [disk] enforce = \"auto\"",
        ),
        Enforcement::Unavailable { why } => Check::fail(
            ISOLATION,
            format!("[disk] enforce = \"hard\", but {why}: no instance can run"),
            "provide what is missing, or set [disk] enforce = \"auto\" in supervisor.toml",
        ),
    }
}

/// A directory of an instance's volume that does not belong to the instance's uid.
pub fn not_its_own(instance: &str, what: &str, found: u32, want: u32) -> Check {
    Check::warn(
        ISOLATION,
        format!(
            "instances/{instance}: {what} belongs to uid {found}, not to the instance's uid {want}"
        ),
        format!(
            "supervisor restart {instance} (the daemon hands it over before the container starts)"
        ),
    )
}

/// Containers of other homes that run with a uid of this home's block.
pub fn shared_block(theirs: &[(String, String, u32)], block: (u32, u32)) -> Vec<Check> {
    theirs
        .iter()
        .filter(|(_, _, uid)| (block.0..block.1).contains(uid))
        .map(|(container, home, uid)| {
            Check::warn(
                ISOLATION,
                format!(
                    "container {container} of another home ({home}) runs as uid {uid}, in this home's \
                     block {}–{}: its agent and one of this home's could read each other's files",
                    block.0,
                    block.1 - 1
                ),
                "recreate one of the homes (a new home draws a new block), or run them on different hosts",
            )
        })
        .collect()
}

/// The rows that need no engine: uids, ownership of each instance's queues and workspace,
/// and the disk limits.
pub fn local_rows(
    home: &Home,
    records: &[InstanceRecord],
    disk_limits: &Enforcement,
) -> Vec<Check> {
    let user = crate::infra::container_user::ContainerUser::detect();
    let shared = user.shared().then(|| {
        (
            nix::unistd::geteuid().as_raw(),
            nix::unistd::getegid().as_raw(),
        )
    });
    let mut rows = vec![uids(shared, records.len()), disk(disk_limits)];
    if shared.is_some() {
        return rows;
    }
    for r in records {
        let Ok(name) = InstanceName::parse(&r.name) else {
            continue;
        };
        // Not openable: the permissions check says why.
        let Ok(v) = volume::open(&home.instance_paths(&name)) else {
            continue;
        };
        let dirs = [
            ("volume/workspace", v.workspace().ok()),
            ("volume/ipc/in", v.queue(Queue::In).ok()),
            ("volume/ipc/out", v.queue(Queue::Out).ok()),
        ];
        for (what, dir) in dirs {
            if let Some(Ok(st)) = dir.map(|d| d.stat_self()) {
                if st.uid != r.uid {
                    rows.push(not_its_own(&r.name, what, st.uid, r.uid));
                }
            }
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Status;

    #[test]
    fn rows_say_how_instances_are_kept_apart() {
        assert_eq!(uids(None, 3).status, Status::Ok);
        let shared = uids(Some((1000, 1000)), 3);
        assert_eq!(shared.status, Status::Warn);
        assert!(
            shared.message.contains("uid 1000:1000"),
            "{}",
            shared.message
        );
        assert_eq!(disk(&Enforcement::Hard).status, Status::Ok);
        let soft = disk(&Enforcement::Soft {
            why: "not root".into(),
        });
        assert_eq!(soft.status, Status::Warn);
        assert!(soft.message.contains("soft (not root)"));
        let none = disk(&Enforcement::Unavailable {
            why: "mke2fs is not installed".into(),
        });
        assert_eq!(none.status, Status::Fail);
        let row = not_its_own("alice", "volume/workspace", 65532, 16_777_217);
        assert!(row
            .fix
            .as_deref()
            .unwrap()
            .contains("supervisor restart alice"));
    }

    #[test]
    fn another_homes_container_in_this_block_is_named() {
        let block = (16_777_216, 16_777_216 + 65_536);
        let theirs = vec![
            ("sv-aaaa-bob".to_string(), "aaaa".to_string(), 16_777_300),
            ("sv-bbbb-eve".to_string(), "bbbb".to_string(), 99_000_000),
        ];
        let rows = shared_block(&theirs, block);
        assert_eq!(rows.len(), 1);
        assert!(
            rows[0].message.contains("sv-aaaa-bob"),
            "{}",
            rows[0].message
        );
    }
}
