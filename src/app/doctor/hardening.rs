//! The hardening check: a running container's live settings against what the supervisor
//! would create for its instance. Both sides come from `docker::hardening`, the expected one
//! through the daemon's own `create_body`, so the policy lives in one place and this file only
//! says how two sets of settings differ, naming each setting as `docker inspect` does.

use std::collections::BTreeSet;

use crate::infra::docker::hardening::{Hardening, MountView};

use super::checks::HARDENING;
use super::Check;

/// Every way `live` is weaker than or different from `expected`, one line each; empty when
/// the container is exactly as the policy makes it.
pub fn compare(expected: &Hardening, live: &Hardening) -> Vec<String> {
    let mut out = Vec::new();
    let mut differs = |name: &str, want: String, got: String| {
        if want != got {
            out.push(format!("{name} is {got}, policy {want}"));
        }
    };
    differs("User", shown(&expected.user), shown(&live.user));
    differs(
        "ReadonlyRootfs",
        expected.readonly_rootfs.to_string(),
        live.readonly_rootfs.to_string(),
    );
    differs(
        "Privileged",
        expected.privileged.to_string(),
        live.privileged.to_string(),
    );
    differs("CapAdd", caps(&expected.cap_add), caps(&live.cap_add));
    differs("CapDrop", caps(&expected.cap_drop), caps(&live.cap_drop));
    differs(
        "NetworkMode",
        shown(&expected.network_mode),
        shown(&live.network_mode),
    );
    differs(
        "NetworkDisabled",
        expected.network_disabled.to_string(),
        live.network_disabled.to_string(),
    );
    differs(
        "Memory",
        expected.memory.to_string(),
        live.memory.to_string(),
    );
    differs(
        "MemorySwap",
        expected.memory_swap.to_string(),
        live.memory_swap.to_string(),
    );
    differs(
        "NanoCpus",
        expected.nano_cpus.to_string(),
        live.nano_cpus.to_string(),
    );
    differs(
        "PidsLimit",
        expected.pids_limit.to_string(),
        live.pids_limit.to_string(),
    );
    differs(
        "Tmpfs",
        format!("{:?}", expected.tmpfs),
        format!("{:?}", live.tmpfs),
    );
    differs("Devices", list(&expected.devices), list(&live.devices));
    differs(
        "VolumesFrom",
        list(&expected.volumes_from),
        list(&live.volumes_from),
    );
    differs(
        "namespaces shared",
        list(&expected.shared_namespaces),
        list(&live.shared_namespaces),
    );
    out.extend(security_opt(&expected.security_opt, &live.security_opt));
    out.extend(mounts(&expected.mounts, &live.mounts));
    out
}

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

fn shown(s: &str) -> String {
    if s.is_empty() {
        "(unset)".to_string()
    } else {
        s.to_string()
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "none".to_string()
    } else {
        v.join(", ")
    }
}

/// Capabilities as a set: Docker accepts (and newer engines report) `CAP_X` for `X`.
fn caps(v: &[String]) -> String {
    let set: BTreeSet<String> = v
        .iter()
        .map(|c| {
            let c = c.to_ascii_uppercase();
            c.strip_prefix("CAP_").map(str::to_string).unwrap_or(c)
        })
        .collect();
    list(&set.into_iter().collect::<Vec<_>>())
}

/// Every option of the policy must be there, and nothing may turn confinement off. Other
/// additions (an engine's own labels) are left alone.
fn security_opt(expected: &[String], live: &[String]) -> Vec<String> {
    let mut out: Vec<String> = expected
        .iter()
        .filter(|o| !live.contains(o))
        .map(|o| format!("SecurityOpt lacks {o}"))
        .collect();
    out.extend(
        live.iter()
            .filter(|o| {
                let o = o.to_ascii_lowercase();
                o.ends_with("unconfined")
                    || o.contains("label=disable")
                    || o.contains("label:disable")
                    || o.contains("no-new-privileges=false")
                    || o.contains("no-new-privileges:false")
            })
            .map(|o| format!("SecurityOpt has {o}")),
    );
    out
}

/// Exactly the policy's mounts, each from the same source with the same access.
fn mounts(expected: &[MountView], live: &[MountView]) -> Vec<String> {
    let mut out = Vec::new();
    for want in expected {
        match live.iter().find(|m| m.target == want.target) {
            None => out.push(format!("Mounts lack {}", want.target)),
            Some(got) => {
                if got.source != want.source || got.kind != want.kind {
                    out.push(format!(
                        "Mounts: {} comes from {} {}, policy {} {}",
                        want.target, got.kind, got.source, want.kind, want.source
                    ));
                }
                if got.read_only != want.read_only {
                    out.push(format!(
                        "Mounts: {} is {}, policy {}",
                        want.target,
                        access(got.read_only),
                        access(want.read_only)
                    ));
                }
            }
        }
    }
    for extra in live
        .iter()
        .filter(|m| !expected.iter().any(|e| e.target == m.target))
    {
        let socket = if extra.source.ends_with("docker.sock") {
            " (the Docker socket)"
        } else {
            ""
        };
        out.push(format!(
            "Mounts: extra {} {} at {} ({}){socket}",
            extra.kind,
            shown(&extra.source),
            extra.target,
            access(extra.read_only)
        ));
    }
    out
}

fn access(read_only: bool) -> &'static str {
    if read_only {
        "read-only"
    } else {
        "read-write"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infra::container_spec::{ContainerSpec, SpecInputs};
    use crate::app::doctor::Status;
    use crate::infra::home::InstancePaths;
    use crate::domain::instance::InstanceConfig;

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
