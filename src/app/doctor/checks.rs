//! The checks that judge one gathered fact each: pure functions from a fact to a row.

use crate::app::daemon::api::listen::{self, ListenError};
use crate::app::render::bytes;
use crate::domain::host_config::ApiConfig;
use crate::domain::instance::config::ConfigError;

use super::Check;

pub const HOME: &str = "home";
pub const HOST_CONFIG: &str = "host-config";
pub const DOCKER: &str = "docker";
pub const IMAGE: &str = "image";
pub const RUNTIME: &str = "runtime";
pub const DATABASE: &str = "database";
pub const PERMISSIONS: &str = "permissions";
pub const CONFIG: &str = "config";
pub const HARDENING: &str = "hardening";
pub const ORPHANS: &str = "orphans";
pub const DISK: &str = "disk";
pub const API_TOKEN: &str = "api-token";
pub const ISOLATION: &str = "isolation";

/// Below this much free space the home is short of room (warn).
pub const DISK_WARN_BYTES: u64 = 1 << 30;
/// Below this much the next database write or container log may fail (fail).
pub const DISK_FAIL_BYTES: u64 = 100 << 20;

/// Said by every check that needs the engine when it does not answer.
pub const NO_DOCKER: &str = "not checked: the Docker engine is unreachable (see the docker row)";
pub const START_DOCKER: &str = "start the Docker engine, then run `supervisor doctor` again";

pub fn home(root: &str, initialized: bool) -> Check {
    if initialized {
        Check::ok(HOME, root)
    } else {
        Check::fail(
            HOME,
            format!("no supervisor home at {root} (no supervisor.db)"),
            format!("supervisor --home {root} init"),
        )
    }
}

pub fn host_config(loaded: &Result<(), String>) -> Check {
    match loaded {
        Ok(()) => Check::ok(HOST_CONFIG, "supervisor.toml is valid"),
        Err(e) => Check::fail(
            HOST_CONFIG,
            format!("{e} (the daemon would not start; doctor goes on with the defaults)"),
            "fix that key in supervisor.toml (docs/configuration.md)",
        ),
    }
}

/// `version`: the engine's version, or why it could not be reached.
pub fn docker(version: &Result<String, String>, endpoint: &str) -> Check {
    match version {
        Ok(v) => Check::ok(DOCKER, format!("Docker engine {v} at {endpoint}")),
        Err(e) => Check::fail(
            DOCKER,
            e.clone(),
            "start the Docker engine, or point docker.host in supervisor.toml (or DOCKER_HOST) at it",
        ),
    }
}

/// The agent image this build uses, as the engine knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageFact {
    Present {
        tag: String,
        id: String,
    },
    Missing {
        tag: String,
    },
    /// The engine could not be asked.
    Unknown {
        reason: String,
    },
}

pub fn image(fact: &ImageFact) -> Check {
    match fact {
        ImageFact::Present { tag, id } => {
            let short = id.trim_start_matches("sha256:");
            Check::ok(
                IMAGE,
                format!("{tag} is present ({})", &short[..short.len().min(12)]),
            )
        }
        ImageFact::Missing { tag } => Check::fail(
            IMAGE,
            format!("the agent image {tag} is missing: no container can be created"),
            "supervisor image build",
        ),
        ImageFact::Unknown { reason } => Check::warn(IMAGE, reason.clone(), START_DOCKER),
    }
}

/// The active runtime, as the store names it and its manifest verifies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeFact {
    NoneActive,
    /// The store names it but its directory is gone.
    MissingDir {
        id: String,
    },
    /// Every difference from its manifest, as `runtime verify` lists them.
    Damaged {
        id: String,
        differences: Vec<String>,
    },
    Intact {
        id: String,
    },
    Unreadable {
        id: String,
        error: String,
    },
    /// The store could not be read.
    Unknown {
        reason: String,
    },
}

pub fn runtime(fact: &RuntimeFact) -> Check {
    let rebuild = "supervisor runtime build --activate";
    match fact {
        RuntimeFact::Intact { id } => Check::ok(
            RUNTIME,
            format!("runtime {id} is active and every file matches its manifest"),
        ),
        RuntimeFact::NoneActive => Check::fail(
            RUNTIME,
            "no active runtime: no container can be created",
            rebuild,
        ),
        RuntimeFact::MissingDir { id } => Check::fail(
            RUNTIME,
            format!("the active runtime {id} has no directory under runtime/"),
            rebuild,
        ),
        RuntimeFact::Damaged { id, differences } => Check::fail(
            RUNTIME,
            format!(
                "runtime {id} differs from its manifest in {} place(s), first: {}",
                differences.len(),
                differences.first().map(String::as_str).unwrap_or("?")
            ),
            format!("supervisor runtime verify {id} lists them; {rebuild} builds a good one"),
        ),
        RuntimeFact::Unreadable { id, error } => Check::fail(
            RUNTIME,
            format!("cannot verify runtime {id}: {error}"),
            format!("supervisor runtime verify {id}"),
        ),
        RuntimeFact::Unknown { reason } => Check::warn(
            RUNTIME,
            reason.clone(),
            "fix the database first (see the database row)",
        ),
    }
}

/// `integrity`: what `PRAGMA integrity_check` said, or why the store did not open.
pub fn database(integrity: &Result<String, String>, size: u64) -> Check {
    match integrity {
        Ok(r) if r == "ok" => Check::ok(
            DATABASE,
            format!("integrity_check ok; {} with its WAL", bytes(size)),
        ),
        Ok(problems) => Check::fail(
            DATABASE,
            format!("integrity_check: {problems}"),
            "stop the daemon and restore supervisor.db from a backup (`sqlite3 supervisor.db .recover` may save the rest)",
        ),
        Err(e) => Check::fail(
            DATABASE,
            e.clone(),
            "stop the daemon and restore supervisor.db from a backup, or check its owner and mode",
        ),
    }
}

/// One instance's config.json as the loader judged it; the error names the file and field.
pub fn config<T>(instance: &str, loaded: &Result<T, ConfigError>) -> Check {
    match loaded {
        Ok(_) => Check::ok(CONFIG, format!("{instance}: config.json is valid")),
        Err(e @ ConfigError::Invalid { file, source }) => Check::fail(
            CONFIG,
            e.to_string(),
            format!(
                "edit {} and fix {} (docs/configuration.md); the daemon reads it again at its next pass",
                file.display(),
                source.path
            ),
        ),
        Err(e @ ConfigError::Read { file, .. }) => Check::fail(
            CONFIG,
            e.to_string(),
            format!("restore {} (readable by the supervisor's user)", file.display()),
        ),
    }
}

/// Free space for the supervisor's user on the file system holding the home.
pub fn disk(available: u64, root: &str) -> Check {
    let message = format!("{} free on the file system of {root}", bytes(available));
    let fix = "free space there (old `supervisor runtime gc`, archive/, backups/, Docker images and logs)";
    if available < DISK_FAIL_BYTES {
        Check::fail(DISK, format!("{message}: under 100 MiB"), fix)
    } else if available < DISK_WARN_BYTES {
        Check::warn(DISK, format!("{message}: under 1 GiB"), fix)
    } else {
        Check::ok(DISK, message)
    }
}

/// The TCP listener's token, judged by the daemon's own rules (`listen::plan`). `token` is
/// the value found (never printed); `source` says where it was found ("in the environment")
/// or, when it was not, where it was looked for.
pub fn api_token(api: &ApiConfig, token: Option<String>, source: &str) -> Check {
    let var = &api.token_env;
    let set_token = format!(
        "set {var} to a token of {} or more characters (`openssl rand -hex 32`) in the daemon's environment (e.g. <home>/supervisor.env), then restart the daemon",
        listen::MIN_TOKEN_LEN
    );
    match listen::plan(api, token) {
        Ok(None) => Check::ok(API_TOKEN, "no TCP listener (api.listen is unset)"),
        Ok(Some(plan)) => Check::ok(
            API_TOKEN,
            format!(
                "TCP listener on {} with a bearer token from {var} {source}",
                plan.addr
            ),
        ),
        Err(e @ ListenError::BadAddress(_)) => Check::fail(
            API_TOKEN,
            format!("{e}: the daemon would not start"),
            "fix api.listen in supervisor.toml (host:port)",
        ),
        Err(e) => Check::fail(
            API_TOKEN,
            format!("{e}: the daemon would not start"),
            set_token,
        ),
    }
}

/// The value of `key` in an environment file (`KEY=value` lines, as systemd's
/// `EnvironmentFile=` reads them: comments, blank lines, optional quotes).
pub fn env_file_value(text: &str, key: &str) -> Option<String> {
    text.lines().rev().find_map(|line| {
        let line = line.trim();
        let line = line.strip_prefix("export ").unwrap_or(line);
        let (k, v) = line.split_once('=')?;
        if line.starts_with('#') || k.trim() != key {
            return None;
        }
        let v = v.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| v.strip_prefix(*q).and_then(|s| s.strip_suffix(*q)))
            .unwrap_or(v);
        Some(unquoted.to_string())
    })
}

/// A container labelled with this home whose instance the store does not know.
pub fn orphan(container: &str, instance: &str, running: bool) -> Check {
    Check::warn(
        ORPHANS,
        format!(
            "container {container} ({}) belongs to instance {instance:?}, which this home does not have",
            if running { "running" } else { "stopped" }
        ),
        format!("supervisor doctor --fix (or docker rm -f {container})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::doctor::Status;
    use crate::domain::instance::config::FieldError;

    #[test]
    fn disk_thresholds() {
        let gib = 1u64 << 30;
        assert_eq!(disk(5 * gib, "/h").status, Status::Ok);
        assert_eq!(
            disk(gib, "/h").status,
            Status::Ok,
            "exactly 1 GiB is enough"
        );
        assert_eq!(disk(gib - 1, "/h").status, Status::Warn);
        assert_eq!(disk(100 << 20, "/h").status, Status::Warn);
        let low = disk((100 << 20) - 1, "/h");
        assert_eq!(low.status, Status::Fail);
        assert!(low.message.contains("under 100 MiB"), "{}", low.message);
        assert_eq!(disk(0, "/h").status, Status::Fail);
    }

    fn api(listen: Option<&str>) -> ApiConfig {
        ApiConfig {
            listen: listen.map(str::to_string),
            token_env: "TOK".into(),
        }
    }

    #[test]
    fn token_rules_follow_the_daemon_and_never_print_the_token() {
        let good = "g".repeat(40);
        assert_eq!(api_token(&api(None), None, "env").status, Status::Ok);
        let c = api_token(&api(Some("127.0.0.1:8787")), Some(good.clone()), "env");
        assert_eq!(c.status, Status::Ok);
        assert!(!c.message.contains(&good));
        let c = api_token(&api(Some("127.0.0.1:8787")), None, "in the environment");
        assert_eq!(c.status, Status::Fail, "loopback needs one too");
        assert!(
            c.message.contains("TOK") && c.message.contains("would not start"),
            "{}",
            c.message
        );
        let c = api_token(&api(Some("0.0.0.0:8787")), None, "env");
        assert_eq!(c.status, Status::Fail, "beyond loopback needs one");
        assert!(c.message.contains("would not start"));
        let short = "s3cr3t-but-short";
        let c = api_token(&api(Some("127.0.0.1:8787")), Some(short.into()), "env");
        assert_eq!(c.status, Status::Fail, "too short even on loopback");
        assert!(!c.message.contains(short) && !c.fix.unwrap().contains(short));
        let c = api_token(&api(Some("[::]:1")), Some(good.clone()), "env");
        assert_eq!(c.status, Status::Ok);
    }

    #[test]
    fn env_files_are_read_like_systemd_reads_them() {
        let text = "# a comment\nOTHER=1\nTOK=\"quoted value\"\n\n";
        assert_eq!(env_file_value(text, "TOK").as_deref(), Some("quoted value"));
        assert_eq!(
            env_file_value("TOK=a\nTOK=b\n", "TOK").as_deref(),
            Some("b")
        );
        assert_eq!(env_file_value("#TOK=a\n", "TOK"), None);
        assert_eq!(env_file_value("TOKEN=a\n", "TOK"), None);
        assert_eq!(env_file_value("export TOK=x", "TOK").as_deref(), Some("x"));
    }

    #[test]
    fn config_rows_name_the_file_and_the_field() {
        let ok: Result<(), ConfigError> = Ok(());
        assert_eq!(config("alice", &ok).status, Status::Ok);
        let bad: Result<(), ConfigError> = Err(ConfigError::Invalid {
            file: "/h/instances/alice/config.json".into(),
            source: FieldError::new("limits.memory", "expected a size"),
        });
        let c = config("alice", &bad);
        assert_eq!(c.status, Status::Fail);
        assert!(
            c.message
                .contains("/h/instances/alice/config.json: limits.memory: expected a size"),
            "{}",
            c.message
        );
        assert!(c.fix.unwrap().contains("limits.memory"));
    }

    #[test]
    fn image_runtime_and_database_rows() {
        let missing = image(&ImageFact::Missing { tag: "a:b".into() });
        assert_eq!(missing.status, Status::Fail);
        assert_eq!(missing.fix.as_deref(), Some("supervisor image build"));
        let present = image(&ImageFact::Present {
            tag: "a:b".into(),
            id: "sha256:0123456789abcdef".into(),
        });
        assert_eq!(present.status, Status::Ok);
        assert!(present.message.contains("0123456789ab"));
        assert_eq!(
            runtime(&RuntimeFact::NoneActive).fix.as_deref(),
            Some("supervisor runtime build --activate")
        );
        let damaged = runtime(&RuntimeFact::Damaged {
            id: "r1".into(),
            differences: vec!["bin/x: content differs from the manifest".into()],
        });
        assert_eq!(damaged.status, Status::Fail);
        assert!(damaged
            .fix
            .unwrap()
            .contains("supervisor runtime verify r1"));
        assert_eq!(database(&Ok("ok".into()), 4096).status, Status::Ok);
        let bad = database(&Ok("*** in database main ***".into()), 4096);
        assert_eq!(bad.status, Status::Fail);
        assert_eq!(database(&Err("cannot open".into()), 0).status, Status::Fail);
    }
}
