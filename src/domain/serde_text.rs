//! serde's messages about a value it could not read ("invalid type: string \"x\", expected
//! u32", "key must be a string at line 1 column 16") said the way a person who wrote the file
//! or the request would say it: what was expected, in words, and what was there instead.
//! The key path and the file are the caller's to add.

use std::sync::LazyLock;

use regex::Regex;

/// What kind of document the text was, for the words that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Toml,
}

impl Format {
    fn object(self) -> &'static str {
        match self {
            Format::Json => "an object",
            Format::Toml => "a table",
        }
    }
}

/// A sentence for a serde data error message (`e.inner().to_string()`, `toml`'s
/// `message()`), with any " at line L column C" or " in `path`" suffix dropped: the caller
/// names the key.
pub fn data_error(message: &str, format: Format) -> String {
    static LOCATION: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"( at line \d+ column \d+| in `[^`]*`)\s*$").expect("a valid pattern")
    });
    static INVALID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^invalid (?:type|value): (.*), expected (.*)$").expect("a valid pattern")
    });
    static LENGTH: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^invalid length (\d+), expected (.*)$").expect("a valid pattern")
    });
    static VARIANT: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^unknown variant `([^`]*)`, expected (.*)$").expect("a valid pattern")
    });
    static FIELD: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^unknown field `([^`]*)`, (?:expected (.*)|there are no fields)$")
            .expect("a valid pattern")
    });
    static MISSING: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^missing field `([^`]*)`$").expect("a valid pattern"));
    static DUPLICATE: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^duplicate field `([^`]*)`$").expect("a valid pattern"));

    let message = LOCATION.replace(message.trim(), "");
    let message = message.trim();
    if let Some(c) = INVALID.captures(message) {
        return format!(
            "expected {}, got {}",
            expected(&c[2], format),
            unexpected(&c[1], format)
        );
    }
    if let Some(c) = LENGTH.captures(message) {
        return format!(
            "expected {}, got {} entries",
            expected(&c[2], format),
            &c[1]
        );
    }
    if let Some(c) = VARIANT.captures(message) {
        return format!("expected {}, got {:?}", choices(&c[2]), &c[1]);
    }
    if let Some(c) = FIELD.captures(message) {
        // The caller's path ends with the key, so the sentence need not repeat it.
        return match c.get(2) {
            Some(known) => format!(
                "not a known key here (the keys are {})",
                choices(known.as_str())
            ),
            None => "not a known key here (this takes no keys)".into(),
        };
    }
    if let Some(c) = MISSING.captures(message) {
        return format!("the key {:?} is missing", &c[1]);
    }
    if let Some(c) = DUPLICATE.captures(message) {
        return format!("the key {:?} is given twice", &c[1]);
    }
    message.to_string()
}

/// The key path and the sentence for an error met while reading JSON through
/// `serde_path_to_error` (`path` is its path: `.` for the top level, `?` where there is none).
pub fn json_error(path: &str, e: &serde_json::Error) -> (String, String) {
    let key = match path {
        "." => None,
        p if p.is_empty() || p.contains('?') => None,
        p => Some(p.to_string()),
    };
    match (e.classify(), key) {
        (serde_json::error::Category::Data, key) => (
            key.unwrap_or_else(|| "(top level)".into()),
            data_error(&e.to_string(), Format::Json),
        ),
        // Valid JSON of a kind the key cannot take (a number where a name goes): serde_json
        // calls that a syntax error, but it is about the key.
        (serde_json::error::Category::Syntax, Some(key))
            if e.to_string().starts_with("expected value") =>
        {
            (
                key,
                format!(
                    "expected one of the values this key takes (line {}, column {})",
                    e.line(),
                    e.column()
                ),
            )
        }
        _ => ("(syntax)".into(), json_syntax(e)),
    }
}

/// A sentence for a JSON syntax error: where it is and what is wrong there.
pub fn json_syntax(e: &serde_json::Error) -> String {
    let what = data_error(&e.to_string(), Format::Json);
    let what = match what.as_str() {
        "EOF while parsing a value" if e.line() <= 1 && e.column() == 0 => {
            return "empty, where JSON was expected".into()
        }
        "EOF while parsing a value" => "it ends where a value should be".into(),
        "EOF while parsing an object" => "it ends inside an object (a `}` is missing)".into(),
        "EOF while parsing a list" => "it ends inside a list (a `]` is missing)".into(),
        "EOF while parsing a string" => "it ends inside a string (a `\"` is missing)".into(),
        "expected value" => {
            "expected a value: a number, a string in double quotes, true, false, null, a list or an object".into()
        }
        "key must be a string" => "a key must be a string in double quotes".into(),
        "trailing comma" => "a comma must not come before a closing bracket".into(),
        "trailing characters" => "there is more after the end of the JSON value".into(),
        "expected `:`" => "expected `:` after the key".into(),
        _ => what,
    };
    format!(
        "not valid JSON at line {}, column {}: {what}",
        e.line(),
        e.column()
    )
}

/// serde's "expected ..." (a Rust type or the type's own words) in plain words.
fn expected(exp: &str, format: Format) -> String {
    let range = |lo: &str, hi: &str| format!("a whole number from {lo} to {hi}");
    match exp.trim() {
        "u8" => range("0", "255"),
        "u16" => range("0", "65535"),
        "u32" => range("0", "4294967295"),
        "u64" | "usize" | "u128" => "a whole number of 0 or more".into(),
        "i8" | "i16" | "i32" | "i64" | "isize" | "i128" => "a whole number".into(),
        "f32" | "f64" => "a number".into(),
        "a boolean" => "true or false".into(),
        "a borrowed string" | "string only" | "a string" => "a string".into(),
        "a sequence" => "a list".into(),
        "a map" => format.object().into(),
        other if other.starts_with("struct ") => format.object().into(),
        other if other.starts_with("enum ") => "one of the documented values".into(),
        other if other.starts_with("tuple of ") => {
            format!("a list of {}", other.trim_start_matches("tuple of "))
        }
        other => other.to_string(),
    }
}

/// serde's description of the value it found ("integer `5`", "string \"x\"") as it would
/// appear in the file.
fn unexpected(found: &str, format: Format) -> String {
    static QUOTED: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(?:integer|floating point|boolean|character) `(.*)`$")
            .expect("a valid pattern")
    });
    if let Some(c) = QUOTED.captures(found) {
        return c[1].to_string();
    }
    if let Some(s) = found.strip_prefix("string ") {
        return format!("the string {s}");
    }
    match found {
        "unit value" | "null" => "null".into(),
        "sequence" => "a list".into(),
        "map" => format.object().into(),
        "unit variant" | "newtype variant" | "tuple variant" | "struct variant" => {
            "a value of another kind".into()
        }
        other => other.to_string(),
    }
}

/// "`a`, `b`" or "one of `a`, `b`" or "`a` or `b`" as "\"a\" or \"b\"".
fn choices(list: &str) -> String {
    let names: Vec<String> = list
        .trim_start_matches("one of ")
        .split(',')
        .flat_map(|part| part.split(" or "))
        .map(|n| n.trim().trim_matches('`'))
        .filter(|n| !n.is_empty())
        .map(|n| format!("{n:?}"))
        .collect();
    match names.as_slice() {
        [] => "none".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn types_are_said_in_words_with_what_was_there() {
        let j = |m| data_error(m, Format::Json);
        assert_eq!(
            j("invalid type: string \"x\", expected f64 at line 1 column 197"),
            "expected a number, got the string \"x\""
        );
        assert_eq!(
            j("invalid type: floating point `1.5`, expected u32"),
            "expected a whole number from 0 to 4294967295, got 1.5"
        );
        assert_eq!(
            j("invalid value: integer `99999`, expected u16"),
            "expected a whole number from 0 to 65535, got 99999"
        );
        assert_eq!(
            data_error(
                "invalid type: integer `5`, expected a string in `docker.host` ",
                Format::Toml
            ),
            "expected a string, got 5"
        );
        assert_eq!(
            data_error(
                "invalid type: unit variant, expected string only",
                Format::Toml
            ),
            "expected a string, got a value of another kind"
        );
        assert_eq!(
            j("invalid type: map, expected a sequence"),
            "expected a list, got an object"
        );
    }

    #[test]
    fn keys_and_variants_name_the_choices() {
        let j = |m| data_error(m, Format::Json);
        assert_eq!(
            j("unknown field `foo`, expected one of `version`, `model`, `port`"),
            "not a known key here (the keys are \"version\", \"model\" or \"port\")"
        );
        assert_eq!(
            j("unknown variant `sometimes`, expected `persistent` or `on-demand`"),
            "expected \"persistent\" or \"on-demand\", got \"sometimes\""
        );
        assert_eq!(j("missing field `text`"), "the key \"text\" is missing");
    }

    #[test]
    fn no_rust_type_names_survive() {
        for m in [
            "invalid type: string \"x\", expected u64",
            "invalid value: integer `-1`, expected u32",
            "invalid type: boolean `true`, expected i64",
            "invalid type: sequence, expected struct Limits",
            "invalid type: null, expected f32",
        ] {
            let s = data_error(m, Format::Json);
            for word in ["u64", "u32", "i64", "f32", "struct", "Limits"] {
                assert!(!s.contains(word), "{m} -> {s}");
            }
        }
    }

    #[test]
    fn json_syntax_says_where_and_what() {
        let e = |t: &str| json_syntax(&serde_json::from_str::<serde_json::Value>(t).unwrap_err());
        assert_eq!(e(""), "empty, where JSON was expected");
        assert_eq!(
            e("{\"version\": 1, 3: 4}"),
            "not valid JSON at line 1, column 16: a key must be a string in double quotes"
        );
        assert!(e("{\"a\": ").contains("line 1, column 6: it ends where a value should be"));
    }
}
