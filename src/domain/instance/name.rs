//! Instance names: the one identifier that becomes a directory, a container name and a
//! label value, so it is checked before anything is written anywhere.

use std::fmt;

pub const MAX_NAME_LEN: usize = 32;

/// Names that would collide with CLI words (`--all`), home sub-directories or sender ids.
pub const RESERVED_NAMES: &[&str] = &[
    "all",
    "any",
    "none",
    "default",
    "self",
    "host",
    "local",
    "cli",
    "api",
    "system",
    "daemon",
    "supervisor",
    "root",
    "admin",
    "docker",
    "runtime",
    "run",
    "backups",
    "instances",
    "archive",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("instance name is empty")]
    Empty,
    #[error("instance name {0:?} is longer than {MAX_NAME_LEN} characters")]
    TooLong(String),
    #[error("instance name {0:?} must start with a lowercase letter")]
    BadStart(String),
    #[error("instance name {0:?} must not end with a dash")]
    BadEnd(String),
    #[error("instance name {name:?} has {ch:?}: use only lowercase letters, digits and dashes")]
    BadChar { name: String, ch: char },
    #[error("instance name {0:?} is reserved")]
    Reserved(String),
}

/// A validated instance name. The only way to get one is [`InstanceName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(String);

impl InstanceName {
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        let mut chars = raw.chars();
        let first = chars.next().ok_or(NameError::Empty)?;
        if raw.chars().count() > MAX_NAME_LEN {
            return Err(NameError::TooLong(raw.to_string()));
        }
        if !first.is_ascii_lowercase() {
            return Err(NameError::BadStart(raw.to_string()));
        }
        if let Some(ch) = raw
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(NameError::BadChar {
                name: raw.to_string(),
                ch,
            });
        }
        if raw.ends_with('-') {
            return Err(NameError::BadEnd(raw.to_string()));
        }
        if RESERVED_NAMES.contains(&raw) {
            return Err(NameError::Reserved(raw.to_string()));
        }
        Ok(Self(raw.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for InstanceName {
    type Err = NameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for ok in ["alice", "a", "bob-2", "x1-y2-z3", &"a".repeat(32)] {
            assert_eq!(InstanceName::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_everything_else() {
        type Check = fn(&NameError) -> bool;
        let cases: &[(&str, Check)] = &[
            ("", |e| matches!(e, NameError::Empty)),
            ("Alice", |e| matches!(e, NameError::BadStart(_))),
            ("1alice", |e| matches!(e, NameError::BadStart(_))),
            ("-alice", |e| matches!(e, NameError::BadStart(_))),
            ("alice-", |e| matches!(e, NameError::BadEnd(_))),
            ("al_ice", |e| {
                matches!(e, NameError::BadChar { ch: '_', .. })
            }),
            ("../etc", |e| matches!(e, NameError::BadStart(_))),
            ("a/../../b", |e| {
                matches!(e, NameError::BadChar { ch: '/', .. })
            }),
            ("a.b", |e| matches!(e, NameError::BadChar { ch: '.', .. })),
            ("alicé", |e| {
                matches!(e, NameError::BadChar { ch: 'é', .. })
            }),
            ("a b", |e| matches!(e, NameError::BadChar { ch: ' ', .. })),
            ("all", |e| matches!(e, NameError::Reserved(_))),
            ("runtime", |e| matches!(e, NameError::Reserved(_))),
        ];
        for (raw, check) in cases {
            let err = InstanceName::parse(raw).unwrap_err();
            assert!(check(&err), "{raw:?} gave {err:?}");
        }
        let long = "a".repeat(33);
        assert!(matches!(
            InstanceName::parse(&long),
            Err(NameError::TooLong(_))
        ));
    }
}
