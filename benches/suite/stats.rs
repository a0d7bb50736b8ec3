//! Summaries of samples (median and spread) and the facts of the machine they ran on.

use serde_json::{json, Value};

/// Percentiles of samples in milliseconds, printed on one line and returned as JSON.
pub fn summary(name: &str, xs: &mut [f64]) -> Value {
    assert!(!xs.is_empty(), "{name}: no samples");
    xs.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let p = |q: f64| xs[((xs.len() as f64 - 1.0) * q).round() as usize];
    let v = json!({
        "n": xs.len(),
        "median_ms": p(0.5),
        "p95_ms": p(0.95),
        "p99_ms": p(0.99),
        "min_ms": xs[0],
        "max_ms": xs[xs.len() - 1],
    });
    println!(
        "{name:<50} median {:>8.2} ms  p95 {:>8.2}  p99 {:>8.2}  min {:>8.2}  max {:>8.2}  (n={})",
        p(0.5),
        p(0.95),
        p(0.99),
        xs[0],
        xs[xs.len() - 1],
        xs.len()
    );
    v
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Prints and returns a ratio of two medians.
pub fn ratio(name: &str, a: &Value, b: &Value) -> f64 {
    let r = a["median_ms"].as_f64().unwrap() / b["median_ms"].as_f64().unwrap();
    println!("{name:<50} {r:.3}");
    r
}

/// Resident memory of a process, in KiB (Linux).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// What the figures were measured on.
pub fn machine() -> Value {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .unwrap_or_default()
        .trim()
        .to_string();
    let docker = supervisor::infra::blocking::block_on(async {
        let d = supervisor::infra::docker::connect(&Default::default())
            .await
            .ok()?;
        supervisor::infra::docker::stats::engine_version(&d)
            .await
            .ok()
    });
    json!({
        "cpus": cpus,
        "memory_gib": (mem_kib as f64 / 1024.0 / 1024.0 * 10.0).round() / 10.0,
        "kernel": kernel,
        "docker_engine": docker,
    })
}
