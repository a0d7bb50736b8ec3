//! Playing an instance's agent from a test: writing envelopes into its `out/` and reading
//! what the host put in its `in/`, as files, the way the agent does.

use std::path::Path;

use serde_json::Value;

/// Writes an envelope into `dir` (an `out/`) the way the agent does: temp name, then rename.
pub fn writes(dir: &Path, env: Value) {
    let name = format!("{}-{}.json", env["ts"], env["id"].as_str().unwrap());
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, env.to_string()).unwrap();
    std::fs::rename(tmp, dir.join(name)).unwrap();
}

/// The envelopes of one type waiting in `dir` (an `in/`), in file-name order, with their files.
pub fn waiting(dir: &Path, kind: &str) -> Vec<(std::path::PathBuf, Value)> {
    let mut names: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .collect();
    names.sort();
    names
        .into_iter()
        .filter_map(|p| {
            let v = serde_json::from_slice::<Value>(&std::fs::read(&p).ok()?).ok()?;
            Some((p, v))
        })
        .filter(|(_, v)| v["type"] == kind)
        .collect()
}

/// [`waiting`], the envelopes only.
pub fn envelopes_in(dir: &Path, kind: &str) -> Vec<Value> {
    waiting(dir, kind).into_iter().map(|(_, v)| v).collect()
}
