//! How full each instance's disk is: measured in the background for `status`, `show` and the
//! soft limit. With a hard limit (its own disk image) the file system says so at once and the
//! kernel enforces the limit; with a soft one the tree is walked (through descriptors, capped)
//! and an instance past its limit is stopped by the reconciler until it is back under it.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use super::api::Wake;
use super::live::Live;
pub use crate::app::wire::DiskSample;
use crate::domain::instance::InstanceName;
use crate::infra::home::Home;
use crate::infra::store::{now_ms, Store};
use crate::infra::volume;

/// How often every instance's disk is measured.
pub const MEASURE_EVERY: Duration = Duration::from_secs(60);

/// Bytes per inode of a limit (as a disk image is made with): a soft limit counts inodes too.
pub const BYTES_PER_INODE: u64 = 16 << 10;

/// Why an instance with a soft limit must stop now, if it must: past its bytes, past its
/// inodes, or too large to measure. A hard limit never stops an instance (its disk is full,
/// and writes fail inside, nothing more).
pub fn over_soft_limit(sample: &DiskSample, limit_bytes: u64, limit_text: &str) -> Option<String> {
    if sample.image {
        return None;
    }
    let inodes = limit_bytes / BYTES_PER_INODE;
    let used = crate::domain::format::bytes(sample.used_bytes);
    let fix = "make room in its workspace, or raise limits.disk in config.json";
    if !sample.complete {
        return Some(format!(
            "its workspace is too large to measure ({used} and {} entries counted before the walk stopped), over its soft disk limit {limit_text}: {fix}",
            sample.used_inodes
        ));
    }
    if sample.used_bytes > limit_bytes {
        return Some(format!(
            "it holds {used}, over its soft disk limit {limit_text}: {fix}"
        ));
    }
    if sample.used_inodes > inodes {
        return Some(format!(
            "it holds {} files and directories, over the {inodes} of its soft disk limit {limit_text}: {fix}",
            sample.used_inodes
        ));
    }
    None
}

/// Measures every live instance's disk every [`MEASURE_EVERY`], and wakes the reconciler when
/// an instance with a soft limit crosses it (either way).
pub async fn measure_forever(home: Home, live: Live, wake: UnboundedSender<Wake>) {
    let mut over: HashMap<String, bool> = HashMap::new();
    loop {
        let measured = tokio::task::spawn_blocking({
            let home = home.clone();
            move || measure_all(&home)
        })
        .await
        .unwrap_or_default();
        let mut crossed = false;
        for (name, sample, limit) in &measured {
            let now_over = limit.is_some_and(|l| over_soft_limit(sample, l, "").is_some());
            crossed |= over.insert(name.clone(), now_over).unwrap_or(false) != now_over;
        }
        live.set_disk(measured.into_iter().map(|(n, s, _)| (n, s)).collect());
        if crossed {
            let _ = wake.send(Wake::Usage);
        }
        tokio::time::sleep(MEASURE_EVERY).await;
    }
}

/// (instance, its sample, its limit in bytes when its config is valid).
fn measure_all(home: &Home) -> Vec<(String, DiskSample, Option<u64>)> {
    let Ok(store) = Store::open(&home.db_path()) else {
        return Vec::new();
    };
    let Ok(records) = store.instances() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for record in records {
        let Ok(name) = InstanceName::parse(&record.name) else {
            continue;
        };
        let paths = home.instance_paths(&name);
        let limit = crate::domain::instance::InstanceConfig::load(&paths.config)
            .ok()
            .map(|c| c.limits.disk_bytes());
        let usage = volume::open(&paths).and_then(|v| Ok((v.usage()?, v.image)));
        match usage {
            Ok((u, image)) => out.push((
                record.name,
                DiskSample {
                    used_bytes: u.bytes,
                    used_inodes: u.inodes,
                    image,
                    complete: u.complete,
                    limit_bytes: limit,
                    sampled_at: now_ms(),
                },
                limit,
            )),
            Err(e) => {
                tracing::debug!(instance = %record.name, error = %e, "disk not measured")
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(bytes: u64, inodes: u64, image: bool, complete: bool) -> DiskSample {
        DiskSample {
            used_bytes: bytes,
            used_inodes: inodes,
            image,
            complete,
            limit_bytes: None,
            sampled_at: 0,
        }
    }

    #[test]
    fn a_soft_limit_stops_past_its_bytes_its_inodes_or_what_cannot_be_measured() {
        let limit = 64 << 20;
        assert_eq!(
            over_soft_limit(&sample(1 << 20, 10, false, true), limit, "64m"),
            None
        );
        let bytes = over_soft_limit(&sample(65 << 20, 10, false, true), limit, "64m").unwrap();
        assert!(bytes.contains("over its soft disk limit 64m"), "{bytes}");
        let inodes = over_soft_limit(&sample(1 << 20, 4097, false, true), limit, "64m").unwrap();
        assert!(inodes.contains("over the 4096"), "{inodes}");
        let deep = over_soft_limit(&sample(1, 1, false, false), limit, "64m").unwrap();
        assert!(deep.contains("too large to measure"), "{deep}");
        // An image enforces itself: a full one never stops the instance.
        assert_eq!(
            over_soft_limit(&sample(65 << 20, 1 << 20, true, true), limit, "64m"),
            None
        );
    }
}
