//! Who an instance's agent runs as.
//!
//! A root supervisor never runs agents as root: each instance's container runs as the
//! instance's own uid (and gid of the same number), allocated once by the store, and the
//! instance's files belong to it, so no agent's user can read another's files. An
//! unprivileged supervisor cannot hand out uids: it runs every container as itself (and says
//! so in `doctor`), and the instance's 0700 directories are writable inside as they are.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerUser {
    /// The supervisor's own uid:gid when it is not root.
    unprivileged: Option<(u32, u32)>,
}

impl ContainerUser {
    pub fn detect() -> Self {
        let uid = nix::unistd::geteuid();
        Self {
            unprivileged: (!uid.is_root()).then(|| (uid.as_raw(), nix::unistd::getegid().as_raw())),
        }
    }

    /// `uid:gid` for Docker, for the instance whose uid is `uid`.
    pub fn spec_for(&self, uid: u32) -> String {
        let (u, g) = self.unprivileged.unwrap_or((uid, uid));
        format!("{u}:{g}")
    }

    /// Who the instance's files must belong to: None when the supervisor is not root (they
    /// are its own, as is its container's user).
    pub fn owner_for(&self, uid: u32) -> Option<(u32, u32)> {
        self.unprivileged.is_none().then_some((uid, uid))
    }

    /// Whether instances share one uid (the supervisor's).
    pub fn shared(&self) -> bool {
        self.unprivileged.is_some()
    }

    /// For the log and `doctor`.
    pub fn describe(&self) -> String {
        match self.unprivileged {
            None => "one uid per instance".into(),
            Some((u, g)) => format!("the supervisor's own uid {u}:{g} (not root)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_gives_each_instance_its_uid_and_an_unprivileged_supervisor_its_own() {
        let root = ContainerUser { unprivileged: None };
        assert_eq!(root.spec_for(16_777_300), "16777300:16777300");
        assert_eq!(root.owner_for(16_777_300), Some((16_777_300, 16_777_300)));
        assert!(!root.shared());
        let user = ContainerUser {
            unprivileged: Some((1000, 1000)),
        };
        assert_eq!(user.spec_for(16_777_300), "1000:1000");
        assert_eq!(user.owner_for(16_777_300), None);
        assert!(user.shared());
    }
}
