//! How two sets of hardening settings differ: a running container's live settings against what
//! the supervisor would create for its instance. Both sides come from `docker::hardening`, the
//! expected one through the daemon's own `create_body`, so the policy lives in one place and
//! this file only says how two sets of settings differ, naming each setting as `docker inspect`
//! does. The daemon never starts a container that differs; doctor reports it.

use std::collections::BTreeSet;

use super::hardening::{Hardening, MountView};

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
