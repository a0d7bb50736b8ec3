//! The supervisor home: one directory holding a whole installation's state.
//!
//! ```text
//! <home>/supervisor.toml      host config (optional)
//! <home>/supervisor.db        SQLite store (WAL)
//! <home>/instances/<name>/    config.json, volume/ (workspace/, ipc/in/, ipc/out/),
//!                             volume.img (its disk, with a hard limit), quarantine/
//! <home>/instances/<name>/groups/<key>/   a chat group's own volume/, quarantine/ (its
//!                             config is the instance's config.json)
//! <home>/instances/<name>/persona/   the instance's persona as its groups see it (read-only)
//! <home>/instances/<name>/shared/    files every group of the instance reads (read-only)
//! <home>/archive/             instances removed without --purge
//! <home>/runtime/             shared agent runtimes (content-addressed)
//! <home>/run/                 the daemon's socket, lock and pid
//! <home>/backups/             archives written by `backup`
//! ```

use std::path::{Path, PathBuf};

use crate::domain::host_config::{HostConfig, HostConfigError};
use crate::domain::instance::InstanceName;
use crate::infra::fsutil;
use crate::infra::store::{Store, StoreError};

pub const DB_FILE: &str = "supervisor.db";
pub const CONFIG_FILE: &str = "supervisor.toml";

#[derive(Debug, thiserror::Error)]
pub enum HomeError {
    #[error("no supervisor home at {}: run `supervisor --home {} init` first", .0.display(), .0.display())]
    NotInitialized(PathBuf),
    #[error("cannot {action} {}: {source}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "no home directory given: pass --home DIR or set SUPERVISOR_HOME (HOME is not set either)"
    )]
    NoDefault,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Config(#[from] HostConfigError),
}

#[derive(Debug, Clone)]
pub struct Home {
    root: PathBuf,
}

/// Where one instance's files live. Only `volume/` holds what the agent can write: its
/// workspace and its two IPC queues, each mounted into the container on its own. The rest
/// (the config, the image, the quarantine) is the host's.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct InstancePaths {
    pub dir: PathBuf,
    pub config: PathBuf,
    /// The instance's disk: the mount point of `volume_image`, or a plain directory where
    /// the disk limit is soft.
    pub volume: PathBuf,
    pub volume_image: PathBuf,
    pub workspace: PathBuf,
    pub soul: PathBuf,
    pub ipc: PathBuf,
    pub quarantine: PathBuf,
    /// A group's: the host's copy of its instance's persona, mounted read-only at /persona.
    pub persona: Option<PathBuf>,
    /// A group's: its instance's shared knowledge, mounted read-only at /shared.
    pub shared: Option<PathBuf>,
}

/// Names inside an instance's directory (docs/configuration.md, "The home").
pub const VOLUME_DIR: &str = "volume";
pub const VOLUME_IMAGE: &str = "volume.img";
pub const VOLUME_LOCK: &str = "volume.lock";
pub const WORKSPACE_DIR: &str = "workspace";
pub const IPC_DIR: &str = "ipc";
pub const QUARANTINE_DIR: &str = "quarantine";
pub const GROUPS_DIR: &str = "groups";
pub const PERSONA_DIR: &str = "persona";
pub const SHARED_DIR: &str = "shared";

impl InstancePaths {
    pub fn under(dir: PathBuf) -> Self {
        let volume = dir.join(VOLUME_DIR);
        Self {
            config: dir.join("config.json"),
            volume_image: dir.join(VOLUME_IMAGE),
            workspace: volume.join(WORKSPACE_DIR),
            soul: volume.join(WORKSPACE_DIR).join("SOUL.md"),
            ipc: volume.join(IPC_DIR),
            quarantine: dir.join(QUARANTINE_DIR),
            persona: None,
            shared: None,
            volume,
            dir,
        }
    }

    /// A chat group's paths: its own directory `dir` under its instance's `instance_dir`,
    /// whose config.json it runs with, and whose persona and shared knowledge it reads.
    pub fn for_group(instance_dir: &Path, dir: PathBuf) -> Self {
        Self {
            config: instance_dir.join("config.json"),
            persona: Some(instance_dir.join(PERSONA_DIR)),
            shared: Some(instance_dir.join(SHARED_DIR)),
            ..Self::under(dir)
        }
    }
}

/// Where an instance's own directory is, relative to the home: `instances/<name>`, or for a
/// chat group `instances/<instance>/groups/<key>`.
pub fn instance_dir(name: &InstanceName) -> PathBuf {
    match (name.root(), name.key()) {
        (Some(root), Some(key)) => ["instances", root.as_str(), GROUPS_DIR, key]
            .iter()
            .collect(),
        _ => Path::new("instances").join(name.as_str()),
    }
}

impl Home {
    /// A home at `root` (made absolute: container mounts and the socket need absolute paths).
    pub fn new(root: &Path) -> Result<Self, HomeError> {
        let root = std::path::absolute(root).map_err(|source| HomeError::Io {
            action: "resolve",
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Self { root })
    }

    /// `--home`, else `SUPERVISOR_HOME` (both handled by the CLI parser), else
    /// `$XDG_DATA_HOME/supervisor`, else `$HOME/.local/share/supervisor`.
    pub fn default_root() -> Result<PathBuf, HomeError> {
        let non_empty = |k| std::env::var_os(k).filter(|v| !v.is_empty());
        if let Some(xdg) = non_empty("XDG_DATA_HOME") {
            return Ok(PathBuf::from(xdg).join("supervisor"));
        }
        let home = non_empty("HOME").ok_or(HomeError::NoDefault)?;
        Ok(PathBuf::from(home).join(".local/share/supervisor"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
    pub fn db_path(&self) -> PathBuf {
        self.root.join(DB_FILE)
    }
    pub fn config_path(&self) -> PathBuf {
        self.root.join(CONFIG_FILE)
    }
    pub fn instances_dir(&self) -> PathBuf {
        self.root.join("instances")
    }
    pub fn archive_dir(&self) -> PathBuf {
        self.root.join("archive")
    }
    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("runtime")
    }
    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }
    pub fn backups_dir(&self) -> PathBuf {
        self.root.join("backups")
    }
    /// An instance's paths, or a chat group's (below its instance's directory).
    pub fn instance_paths(&self, name: &InstanceName) -> InstancePaths {
        let dir = self.root.join(instance_dir(name));
        match name.root() {
            Some(root) => InstancePaths::for_group(&self.instances_dir().join(root.as_str()), dir),
            None => InstancePaths::under(dir),
        }
    }

    pub fn is_initialized(&self) -> bool {
        self.db_path().is_file()
    }

    /// Creates the layout, the database and the commented host config. Idempotent: an
    /// existing home is checked and its directory modes tightened, nothing is overwritten.
    pub fn init(&self) -> Result<Store, HomeError> {
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| HomeError::Io {
                action,
                path,
                source,
            }
        };
        for dir in [
            self.root.clone(),
            self.instances_dir(),
            self.archive_dir(),
            self.runtime_dir(),
            self.run_dir(),
            self.backups_dir(),
        ] {
            fsutil::create_private_dir(&dir).map_err(io("create directory", &dir))?;
        }
        let config = self.config_path();
        if !config.exists() {
            fsutil::write_atomic(&config, crate::domain::host_config::TEMPLATE.as_bytes())
                .map_err(io("write", &config))?;
        }
        self.host_config()?;
        let mut store = Store::open(&self.db_path())?;
        store.home_id()?;
        Ok(store)
    }

    /// Opens the store of an initialised home.
    pub fn open(&self) -> Result<Store, HomeError> {
        if !self.is_initialized() {
            return Err(HomeError::NotInitialized(self.root.clone()));
        }
        Ok(Store::open(&self.db_path())?)
    }

    /// Opens the store, initialising the home first if it never was.
    pub fn open_or_init(&self) -> Result<Store, HomeError> {
        if self.is_initialized() {
            self.open()
        } else {
            self.init()
        }
    }

    pub fn host_config(&self) -> Result<HostConfig, HomeError> {
        Ok(HostConfig::load(&self.config_path())?)
    }
}
