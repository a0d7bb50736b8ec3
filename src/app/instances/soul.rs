//! Personas: the built-in souls shipped in souls/, or the user's own file.

use std::path::{Path, PathBuf};

/// The largest SOUL.md accepted; it goes into every system prompt.
pub const MAX_SOUL_BYTES: u64 = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BuiltinSoul {
    Assistant,
    Expert,
    Creative,
    /// A skeleton to fill in.
    Custom,
}

impl BuiltinSoul {
    pub fn name(self) -> &'static str {
        match self {
            BuiltinSoul::Assistant => "assistant",
            BuiltinSoul::Expert => "expert",
            BuiltinSoul::Creative => "creative",
            BuiltinSoul::Custom => "custom",
        }
    }

    pub fn text(self) -> &'static str {
        match self {
            BuiltinSoul::Assistant => {
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/souls/assistant.md"))
            }
            BuiltinSoul::Expert => {
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/souls/expert.md"))
            }
            BuiltinSoul::Creative => {
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/souls/creative.md"))
            }
            BuiltinSoul::Custom => {
                include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/souls/custom.md"))
            }
        }
    }
}

/// The persona a new instance gets: which one (recorded in the store) and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Soul {
    pub label: String,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum SoulError {
    #[error("soul file {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("soul file {}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

impl Soul {
    pub fn builtin(soul: BuiltinSoul) -> Self {
        Self {
            label: soul.name().to_string(),
            text: soul.text().to_string(),
        }
    }

    /// Reads the user's own SOUL.md: a regular, non-empty UTF-8 file of at most 64 KiB.
    pub fn from_file(path: &Path) -> Result<Self, SoulError> {
        let invalid = |reason: String| SoulError::Invalid {
            path: path.to_path_buf(),
            reason,
        };
        let read = |source| SoulError::Read {
            path: path.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(read)?;
        if !meta.is_file() {
            return Err(invalid("is not a regular file".into()));
        }
        if meta.len() > MAX_SOUL_BYTES {
            return Err(invalid(format!(
                "is {} bytes; the limit is {MAX_SOUL_BYTES}",
                meta.len()
            )));
        }
        let bytes = std::fs::read(path).map_err(read)?;
        let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8 text".into()))?;
        check_text(&text).map_err(invalid)?;
        Ok(Self {
            label: "file".to_string(),
            text,
        })
    }

    /// The user's own SOUL.md given as text (the API's `soul_text`), held to the same rules
    /// as a file; the error says what is wrong with it ("is empty").
    pub fn from_text(text: String) -> Result<Self, String> {
        check_text(&text)?;
        Ok(Self {
            label: "file".to_string(),
            text,
        })
    }

    /// The first Markdown heading, used as the persona's title in `show`.
    pub fn title_of(text: &str) -> Option<&str> {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix("# "))
            .map(str::trim)
    }
}

/// What every persona text must be: not blank, at most [`MAX_SOUL_BYTES`].
fn check_text(text: &str) -> Result<(), String> {
    if text.len() as u64 > MAX_SOUL_BYTES {
        return Err(format!(
            "is {} bytes; the limit is {MAX_SOUL_BYTES}",
            text.len()
        ));
    }
    if text.trim().is_empty() {
        return Err("is empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_souls_are_real_pages() {
        for soul in [
            BuiltinSoul::Assistant,
            BuiltinSoul::Expert,
            BuiltinSoul::Creative,
        ] {
            let words = soul.text().split_whitespace().count();
            assert!(words > 300, "{} has only {words} words", soul.name());
            assert!(Soul::title_of(soul.text()).is_some());
        }
        assert!(BuiltinSoul::Custom.text().contains("TODO"));
    }

    #[test]
    fn file_soul_is_checked() {
        let dir = tempfile::tempdir().unwrap();
        let ok = dir.path().join("ok.md");
        std::fs::write(&ok, "# Mine\nBe kind.\n").unwrap();
        assert_eq!(Soul::from_file(&ok).unwrap().text, "# Mine\nBe kind.\n");
        let empty = dir.path().join("empty.md");
        std::fs::write(&empty, "  \n").unwrap();
        assert!(matches!(
            Soul::from_file(&empty),
            Err(SoulError::Invalid { .. })
        ));
        let binary = dir.path().join("bin.md");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            Soul::from_file(&binary),
            Err(SoulError::Invalid { .. })
        ));
        assert!(matches!(
            Soul::from_file(dir.path()),
            Err(SoulError::Invalid { .. })
        ));
        assert!(matches!(
            Soul::from_file(&dir.path().join("missing.md")),
            Err(SoulError::Read { .. })
        ));
        let big = dir.path().join("big.md");
        std::fs::write(&big, "x".repeat(MAX_SOUL_BYTES as usize + 1)).unwrap();
        assert!(matches!(
            Soul::from_file(&big),
            Err(SoulError::Invalid { .. })
        ));
    }
}
