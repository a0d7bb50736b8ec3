//! Instance names: the one identifier that becomes a directory, a container name and a
//! label value, so it is checked before anything is written anywhere.
//!
//! A chat group of an instance (`"isolation": "chat"`) is named `<instance>_<key>`: the
//! instance's name, an underscore (which no name an operator gives may hold) and
//! [`GROUP_KEY_LEN`] hex digits derived from its chat ([`group_key`]). So a group's name is
//! stable, never collides with an instance's, and says whose group it is.

use std::fmt;

pub const MAX_NAME_LEN: usize = 32;

/// The hex digits of a group's key.
pub const GROUP_KEY_LEN: usize = 8;

/// The key of the group that serves `chat` (a conversation, `<channel>:<chat>[/<topic>]`):
/// the first [`GROUP_KEY_LEN`] hex digits of its sha256.
pub fn group_key(chat: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(chat.as_bytes()))[..GROUP_KEY_LEN].to_string()
}

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
    #[error("instance name {0:?} has '_': that form names a chat group of an instance, which the supervisor makes itself")]
    GroupForm(String),
}

/// A validated instance name. The only way to get one is [`InstanceName::parse`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct InstanceName(String);

impl InstanceName {
    /// An instance's name, or a chat group's (`<instance>_<key>`, see the module's docs).
    pub fn parse(raw: &str) -> Result<Self, NameError> {
        if let Some((parent, key)) = raw.split_once('_') {
            if is_group_key(key) {
                return Self::parse_instance(parent).map(|p| p.group(key));
            }
        }
        Self::parse_instance(raw)
    }

    /// A name an operator may give a new instance: never a group's form.
    pub fn parse_new(raw: &str) -> Result<Self, NameError> {
        let name = Self::parse(raw)?;
        if name.is_group() {
            return Err(NameError::GroupForm(raw.to_string()));
        }
        Ok(name)
    }

    /// The name of this instance's group with `key` ([`group_key`]).
    pub fn group(&self, key: &str) -> InstanceName {
        let root = self
            .0
            .split_once('_')
            .map_or(self.0.as_str(), |(root, _)| root);
        InstanceName(format!("{root}_{key}"))
    }

    /// Whether this names a chat group.
    pub fn is_group(&self) -> bool {
        self.0.contains('_')
    }

    /// The instance a group belongs to; None for an instance.
    pub fn root(&self) -> Option<InstanceName> {
        self.0
            .split_once('_')
            .map(|(parent, _)| InstanceName(parent.to_string()))
    }

    /// A group's key; None for an instance.
    pub fn key(&self) -> Option<&str> {
        self.0.split_once('_').map(|(_, key)| key)
    }

    fn parse_instance(raw: &str) -> Result<Self, NameError> {
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

/// [`GROUP_KEY_LEN`] lowercase hex digits.
fn is_group_key(key: &str) -> bool {
    key.len() == GROUP_KEY_LEN && key.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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
    fn a_group_is_named_after_its_instance_and_chat() {
        let alice = InstanceName::parse("alice").unwrap();
        let key = group_key("telegram:-100");
        assert_eq!(key.len(), GROUP_KEY_LEN);
        assert_eq!(key, group_key("telegram:-100"), "stable");
        assert_ne!(key, group_key("telegram:-101"));
        let g = alice.group(&key);
        assert_eq!(g.as_str(), format!("alice_{key}"));
        assert!(g.is_group() && !alice.is_group());
        assert_eq!(g.root(), Some(alice.clone()));
        assert_eq!(g.key(), Some(key.as_str()));
        assert_eq!(InstanceName::parse(g.as_str()).unwrap(), g);
        assert_eq!(g.group("00000000").as_str(), "alice_00000000");
        let long = "a".repeat(32);
        assert!(InstanceName::parse(&format!("{long}_{key}")).is_ok());
        // An operator never names an instance in a group's form.
        assert!(matches!(
            InstanceName::parse_new(g.as_str()),
            Err(NameError::GroupForm(_))
        ));
        assert!(InstanceName::parse_new("alice").is_ok());
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
        for raw in [
            "al_ice",
            "a_1234567",
            "a_123456789",
            "a_ABCDEF12",
            "_12345678",
            "all_12345678",
        ] {
            assert!(InstanceName::parse(raw).is_err(), "{raw:?}");
        }
        let long = "a".repeat(33);
        assert!(matches!(
            InstanceName::parse(&long),
            Err(NameError::TooLong(_))
        ));
    }
}
