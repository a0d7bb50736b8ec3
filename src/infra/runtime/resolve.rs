//! Naming a runtime on the command line: its full id or any prefix that only it has, so
//! that `runtime activate 8c1f` works as `git` users expect. A pure function over the ids
//! the caller knows.

use super::RuntimeError;

/// The one id among `known` that `given` names: itself, or a prefix of exactly one id.
/// Anything but lowercase hex never matches (it could not name a directory either).
pub fn resolve(given: &str, known: &[String]) -> Result<String, RuntimeError> {
    let hex = !given.is_empty()
        && given
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    let mut matches: Vec<&String> = if hex {
        known.iter().filter(|id| id.starts_with(given)).collect()
    } else {
        Vec::new()
    };
    matches.sort();
    matches.dedup();
    match matches.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(RuntimeError::NoMatch {
            given: given.to_string(),
            known: listing(known.iter()),
        }),
        several => Err(RuntimeError::Ambiguous {
            given: given.to_string(),
            matches: several
                .iter()
                .map(|id| id.as_str())
                .collect::<Vec<_>>()
                .join(" or "),
        }),
    }
}

fn listing<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let mut ids: Vec<&str> = ids.map(String::as_str).collect();
    ids.sort();
    ids.dedup();
    if ids.is_empty() {
        "there are none; build one with `supervisor runtime build`".to_string()
    } else {
        format!("the runtimes are {}", ids.join(", "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids() -> Vec<String> {
        vec![
            "8c1f0e4d2a9b7c35".into(),
            "8c1a000000000000".into(),
            "3b7e91d0c4a2f816".into(),
        ]
    }

    #[test]
    fn a_full_id_or_a_unique_prefix_names_one_runtime() {
        assert_eq!(
            resolve("3b7e91d0c4a2f816", &ids()).unwrap(),
            "3b7e91d0c4a2f816"
        );
        assert_eq!(resolve("3", &ids()).unwrap(), "3b7e91d0c4a2f816");
        assert_eq!(resolve("8c1f", &ids()).unwrap(), "8c1f0e4d2a9b7c35");
    }

    #[test]
    fn an_ambiguous_prefix_lists_the_candidates() {
        let e = resolve("8c1", &ids()).unwrap_err().to_string();
        assert_eq!(
            e,
            "runtime \"8c1\" is ambiguous: it could be 8c1a000000000000 or 8c1f0e4d2a9b7c35; give more of the id"
        );
    }

    #[test]
    fn an_unknown_prefix_lists_what_there_is() {
        let e = resolve("ffff", &ids()).unwrap_err().to_string();
        assert!(
            e.starts_with("no runtime \"ffff\": the runtimes are 3b7e91d0c4a2f816, 8c1a"),
            "{e}"
        );
        for bad in ["", "../../etc", "8C1F", "8c1f0e4d2a9b7c35x"] {
            assert!(
                matches!(resolve(bad, &ids()), Err(RuntimeError::NoMatch { .. })),
                "{bad:?}"
            );
        }
        let none = resolve("ab", &[]).unwrap_err().to_string();
        assert!(none.contains("there are none"), "{none}");
    }
}
