//! Making a chat group, all or nothing, as [`super::create`] makes an instance: its files are
//! staged in a hidden directory below the instance's `groups/`, its row is inserted in an open
//! transaction (which also moves the context its chat had before into it), the directory is
//! renamed into place, and only then is the transaction committed.

use std::fs;

use super::create::{io_err, move_in_and_commit, stage_volume, CreateError};
use super::persona;
use crate::domain::instance::name::group_key;
use crate::domain::instance::InstanceName;
use crate::infra::disk::Enforcement;
use crate::infra::fsutil;
use crate::infra::home::{Home, GROUPS_DIR};
use crate::infra::store::groups::{find_group, insert_group};
use crate::infra::store::instances::InstanceRecord;
use crate::infra::store::Store;
use crate::infra::volume::VolumeError;

/// The most characters of a chat's title kept.
pub const MAX_TITLE_CHARS: usize = 64;

/// A chat's title as a channel gives it (anyone in the chat may set it): one escaped line of
/// at most [`MAX_TITLE_CHARS`] characters, or None when nothing is left.
pub fn shown_title(raw: &str) -> Option<String> {
    let line = crate::domain::escape::line(raw.trim()).into_owned();
    let line = match line.char_indices().nth(MAX_TITLE_CHARS) {
        Some((at, _)) => format!("{}…", &line[..at]),
        None => line,
    };
    (!line.is_empty()).then_some(line)
}

/// The live group of `parent` that serves `chat`, made if there is none yet. `disk` is the
/// instance's `limits.disk` in bytes. A title the channel gives is kept (and updated).
pub fn ensure(
    home: &Home,
    store: &mut Store,
    parent: &InstanceRecord,
    chat: &str,
    title: Option<&str>,
    disk: u64,
) -> Result<InstanceRecord, CreateError> {
    let title = title.and_then(shown_title);
    let title = title.as_deref();
    if let Some(group) = store.group(&parent.name, chat)? {
        if let Some(title) = title {
            if group.group.as_ref().and_then(|g| g.title.as_deref()) != Some(title) {
                store.set_group_title(&group.name, title)?;
            }
        }
        return Ok(group);
    }
    let parent_name = InstanceName::parse(&parent.name).map_err(CreateError::Name)?;
    let name = parent_name.group(&group_key(chat));
    let paths = home.instance_paths(&name);
    let instance_dir = home.instance_paths(&parent_name).dir;
    let groups_dir = instance_dir.join(GROUPS_DIR);
    fsutil::create_private_dir(&groups_dir).map_err(io_err("create", &groups_dir))?;
    for dir in [&paths.persona, &paths.shared].into_iter().flatten() {
        persona::ensure_dir(dir).map_err(io_err("create", dir))?;
    }
    let enforcement = home.host_config()?.disk.enforcement();
    if let Enforcement::Unavailable { why } = &enforcement {
        return Err(CreateError::Volume(VolumeError::Unavailable(why.clone())));
    }

    // The files, and the disk image where limits are hard, are made before the store's write
    // lock is taken, so no other writer waits for mke2fs. They belong to the group's uid once
    // its volume is prepared for its first start (`volume::prepare` gives them over).
    let staging = tempfile::Builder::new()
        .prefix(&format!(".creating-{}-", name.key().unwrap_or_default()))
        .tempdir_in(&groups_dir)
        .map_err(io_err("create staging directory in", &groups_dir))?;
    let staged = crate::infra::home::InstancePaths::under(staging.path().to_path_buf());
    fsutil::create_private_dir(&staged.dir).map_err(io_err("create", &staged.dir))?;
    stage_volume(&staged, &[], None, enforcement.is_hard().then_some(disk))?;

    let tx = store.begin()?;
    // Another process may have made it while this one staged its files (the staging
    // directory goes with `staging`).
    if let Some(group) = find_group(&tx, &parent.name, chat)? {
        return Ok(group);
    }
    if fs::symlink_metadata(&paths.dir).is_ok() {
        return Err(CreateError::Stray(paths.dir.clone()));
    }
    let group = insert_group(&tx, parent, name.as_str(), chat, title)?;
    move_in_and_commit(staging, &paths.dir, tx)?;
    tracing::info!(instance = %parent.name, group = %name, %chat, "group created");
    Ok(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_title_is_one_short_escaped_line() {
        assert_eq!(shown_title("  Team  ").as_deref(), Some("Team"));
        assert_eq!(shown_title(" \n "), None);
        let shown = shown_title("a\nb\u{1b}[31m").unwrap();
        assert!(
            !shown.contains('\n') && !shown.contains('\u{1b}'),
            "{shown:?}"
        );
        let long = shown_title(&"x".repeat(200)).unwrap();
        assert_eq!(long.chars().count(), MAX_TITLE_CHARS + 1);
    }
}
