//! The hardening check's row: a running container's live settings against what the supervisor
//! would create for its instance, compared by `docker::hardening_diff` (the daemon uses the
//! same comparison before it starts a container).

pub use crate::infra::docker::hardening_diff::compare;

use super::checks::HARDENING;
use super::Check;

/// The row for one running container: ok, or a fail naming every differing setting. The
/// daemon never starts a container that fails this audit (it replaces it), so a restart is
/// the fix.
pub fn check(instance: &str, container: &str, differences: &[String]) -> Check {
    if differences.is_empty() {
        return Check::ok(
            HARDENING,
            format!("{instance} ({container}): live settings match the policy"),
        );
    }
    Check::fail(
        HARDENING,
        format!("{instance} ({container}): {}", differences.join("; ")),
        format!(
            "supervisor restart {instance} (the daemon replaces a container that fails this audit)"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Status;
    use crate::domain::instance::InstanceConfig;
    use crate::infra::container_spec::{ContainerSpec, SpecInputs};
    use crate::infra::docker::hardening::{Hardening, MountView};
    use crate::infra::home::InstancePaths;

    /// The policy for a default instance, through the same code the daemon uses.
    fn policy() -> Hardening {
        let config = InstanceConfig::default();
        let paths = InstancePaths::under("/h/instances/alice".into());
        let spec = ContainerSpec::for_instance(&SpecInputs {
            home_id: "0123456789abcdef",
            instance: "alice",
            config: &config,
            paths: &paths,
            runtime_id: "r1",
            runtime_dir: "/h/runtime/r1".into(),
            image: "supervisor-agent:abc",
            user: "1000:1000",
        });
        Hardening::expected(&spec)
    }

    #[test]
    fn an_untouched_container_matches() {
        assert_eq!(compare(&policy(), &policy()), Vec::<String>::new());
        let row = check("alice", "sv-1-alice", &[]);
        assert_eq!(row.status, Status::Ok);
    }

    #[test]
    fn every_weakened_setting_is_named() {
        let want = policy();
        type Weaken = Box<dyn Fn(&mut Hardening)>;
        let cases: Vec<(&str, Weaken)> = vec![
            ("ReadonlyRootfs is false", Box::new(|h| h.readonly_rootfs = false)),
            ("Privileged is true", Box::new(|h| h.privileged = true)),
            ("CapAdd is SYS_ADMIN", Box::new(|h| h.cap_add = vec!["SYS_ADMIN".into()])),
            ("CapDrop is none", Box::new(|h| h.cap_drop.clear())),
            ("SecurityOpt lacks no-new-privileges", Box::new(|h| h.security_opt.clear())),
            (
                "SecurityOpt has seccomp=unconfined",
                Box::new(|h| h.security_opt.push("seccomp=unconfined".into())),
            ),
            ("User is 0:0", Box::new(|h| h.user = "0:0".into())),
            ("User is (unset)", Box::new(|h| h.user.clear())),
            ("NetworkMode is bridge, policy none", Box::new(|h| h.network_mode = "bridge".into())),
            ("Memory is 0", Box::new(|h| h.memory = 0)),
            ("MemorySwap is -1", Box::new(|h| h.memory_swap = -1)),
            ("NanoCpus is 2000000000", Box::new(|h| h.nano_cpus = 2_000_000_000)),
            ("PidsLimit is 0", Box::new(|h| h.pids_limit = 0)),
            ("Tmpfs is {}", Box::new(|h| h.tmpfs.clear())),
            ("Devices is /dev/kvm:/dev/kvm", Box::new(|h| h.devices = vec!["/dev/kvm:/dev/kvm".into()])),
            (
                "namespaces shared is PidMode=host",
                Box::new(|h| h.shared_namespaces = vec!["PidMode=host".into()]),
            ),
            (
                "Mounts: extra bind /var/run/docker.sock at /var/run/docker.sock (read-write) (the Docker socket)",
                Box::new(|h| {
                    h.mounts.push(MountView {
                        target: "/var/run/docker.sock".into(),
                        kind: "bind".into(),
                        source: "/var/run/docker.sock".into(),
                        read_only: false,
                    })
                }),
            ),
            (
                "Mounts: extra bind /tmp at /host-tmp",
                Box::new(|h| {
                    h.mounts.push(MountView {
                        target: "/host-tmp".into(),
                        kind: "bind".into(),
                        source: "/tmp".into(),
                        read_only: false,
                    })
                }),
            ),
            (
                "Mounts lack /ipc/out",
                Box::new(|h| h.mounts.retain(|m| m.target != "/ipc/out")),
            ),
            (
                "Mounts: /ipc/in comes from bind /h/instances/alice/volume/ipc",
                Box::new(|h| {
                    for m in &mut h.mounts {
                        if m.target == "/ipc/in" {
                            m.source = "/h/instances/alice/volume/ipc".into();
                        }
                    }
                }),
            ),
            (
                "Mounts: /opt/runtime is read-write, policy read-only",
                Box::new(|h| {
                    for m in &mut h.mounts {
                        if m.target == "/opt/runtime" {
                            m.read_only = false;
                        }
                    }
                }),
            ),
            (
                "Mounts: /workspace comes from bind /h/instances/bob/workspace",
                Box::new(|h| {
                    for m in &mut h.mounts {
                        if m.target == "/workspace" {
                            m.source = "/h/instances/bob/workspace".into();
                        }
                    }
                }),
            ),
        ];
        for (needle, weaken) in cases {
            let mut live = want.clone();
            weaken(&mut live);
            let diffs = compare(&want, &live);
            assert!(
                diffs.iter().any(|d| d.contains(needle)),
                "{needle:?} not in {diffs:?}"
            );
            let row = check("alice", "sv-1-alice", &diffs);
            assert_eq!(row.status, Status::Fail);
            assert!(row.message.contains(needle));
        }
    }

    #[test]
    fn capability_spelling_does_not_matter() {
        let want = policy();
        let mut live = want.clone();
        live.cap_drop = vec!["all".into()];
        assert!(compare(&want, &live).is_empty());
        let mut live = want.clone();
        live.security_opt.push("label=type:container_t".into());
        assert!(
            compare(&want, &live).is_empty(),
            "an engine's own label is fine"
        );
    }

    #[test]
    fn the_fix_is_a_restart() {
        let diffs = vec!["Memory is 0, policy 1".to_string()];
        let row = check("alice", "sv-1-alice", &diffs);
        assert!(row.fix.unwrap().starts_with("supervisor restart alice"));
    }
}
