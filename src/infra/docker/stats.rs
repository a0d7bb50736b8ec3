//! Resource samples of containers (the engine's one-shot stats) and the engine's version.

use bollard::query_parameters::StatsOptionsBuilder;
use bollard::Docker;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};

use super::DockerError;

/// One reading of a container's counters. CPU use is a rate, so it takes two readings
/// ([`cpu_percent`]); one-shot stats return at once instead of waiting a second for two.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RawStats {
    /// Nanoseconds of CPU the container has used.
    pub cpu_total_ns: u64,
    /// Nanoseconds of CPU the whole host has used.
    pub system_ns: u64,
    pub online_cpus: u32,
    /// Memory in use, page cache that could be dropped left out (as `docker stats` shows it).
    pub mem_used: u64,
    pub mem_limit: u64,
}

/// CPU use between two readings, in percent of one CPU (200 = two full CPUs), as
/// `docker stats` reports it. None when the readings cannot be compared.
pub fn cpu_percent(before: &RawStats, after: &RawStats) -> Option<f64> {
    let cpu = after.cpu_total_ns.checked_sub(before.cpu_total_ns)?;
    let system = after.system_ns.checked_sub(before.system_ns)?;
    if system == 0 {
        return None;
    }
    Some(cpu as f64 / system as f64 * f64::from(after.online_cpus.max(1)) * 100.0)
}

pub async fn sample(docker: &Docker, id: &str) -> Result<RawStats, DockerError> {
    let options = StatsOptionsBuilder::new()
        .stream(false)
        .one_shot(true)
        .build();
    let mut stream = std::pin::pin!(docker.stats(id, Some(options)));
    let err = |source| DockerError::Stats {
        id: id.to_string(),
        source,
    };
    let s = match stream.next().await {
        Some(r) => r.map_err(err)?,
        None => return Err(err(bollard::errors::Error::RequestTimeoutError)),
    };
    let cpu = s.cpu_stats.unwrap_or_default();
    let mem = s.memory_stats.unwrap_or_default();
    let usage = mem.usage.unwrap_or(0);
    // cgroup v2 names it inactive_file, v1 total_inactive_file.
    let cache = mem
        .stats
        .as_ref()
        .and_then(|m| {
            m.get("inactive_file")
                .or_else(|| m.get("total_inactive_file"))
        })
        .copied()
        .unwrap_or(0);
    Ok(RawStats {
        cpu_total_ns: cpu.cpu_usage.and_then(|u| u.total_usage).unwrap_or(0),
        system_ns: cpu.system_cpu_usage.unwrap_or(0),
        online_cpus: cpu.online_cpus.unwrap_or(1),
        mem_used: usage.saturating_sub(cache),
        mem_limit: mem.limit.unwrap_or(0),
    })
}

/// The engine's version string (e.g. `20.10.24`).
pub async fn engine_version(docker: &Docker) -> Result<String, DockerError> {
    let v = docker.version().await.map_err(DockerError::Version)?;
    Ok(v.version.unwrap_or_else(|| "unknown".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(cpu: u64, system: u64) -> RawStats {
        RawStats {
            cpu_total_ns: cpu,
            system_ns: system,
            online_cpus: 2,
            mem_used: 0,
            mem_limit: 0,
        }
    }

    #[test]
    fn cpu_percent_is_a_rate_between_readings() {
        // A quarter of the host's two CPUs = half a CPU = 50 %.
        assert_eq!(cpu_percent(&raw(0, 0), &raw(250, 1000)), Some(50.0));
        assert_eq!(cpu_percent(&raw(10, 10), &raw(10, 10)), None);
        assert_eq!(
            cpu_percent(&raw(500, 0), &raw(100, 1000)),
            None,
            "a restarted container"
        );
    }
}
