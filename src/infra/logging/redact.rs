//! Finding and scrubbing secrets in log text.

use std::borrow::Cow;
use std::ffi::OsString;
use std::sync::{Arc, LazyLock, PoisonError, RwLock};

use regex::{Captures, NoExpand, Regex};

use super::*;

/// True for environment variable names that usually hold secrets: `…_KEY`, `…_TOKEN`,
/// `…_SECRET`, `…_PASSWORD`, and anything containing `API_KEY` (case-insensitive).
pub fn is_secret_name(name: &str) -> bool {
    let name = name.to_ascii_uppercase();
    ["_KEY", "_TOKEN", "_SECRET", "_PASSWORD"]
        .iter()
        .any(|end| name.ends_with(end))
        || name.contains("API_KEY")
}

/// The values worth redacting among `vars`: those of secret-named variables, long enough.
pub fn secret_env_values(vars: impl IntoIterator<Item = (OsString, OsString)>) -> Vec<String> {
    vars.into_iter()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
        .filter(|(name, value)| is_secret_name(name) && value.len() >= MIN_SECRET_LEN)
        .map(|(_, value)| value)
        .collect()
}

/// Scrubs secrets from log text: the literal secrets it was given (in the forms a formatter
/// may print them: as is, JSON-escaped, Debug-escaped, or both), then well-known token shapes
/// (`sk-…` keys, `Bearer` tokens, `Authorization`-style header values, `api_key=`/`token=`
/// parameters), each replaced with [`REDACTED`].
///
/// Clones share their secrets, so the daemon can register one it learns later (a key read
/// when a model is first called, an API token it creates) with [`Redactor::add_secret`] and
/// every writer holding a clone scrubs it from then on. The patterns are compiled once; the
/// literal matcher is rebuilt only when a secret is added.
#[derive(Debug, Clone, Default)]
pub struct Redactor {
    secrets: Arc<RwLock<Secrets>>,
}

#[derive(Debug, Default)]
struct Secrets {
    /// Every registered form of every secret, longest first so overlapping secrets are
    /// redacted whole.
    forms: Vec<String>,
    matcher: Option<Regex>,
}

impl Redactor {
    /// Token shapes only, no literal secrets.
    pub fn new() -> Self {
        Self::default()
    }

    /// The token shapes, and the values of the secret-named environment variables (see
    /// [`is_secret_name`]) that are at least [`MIN_SECRET_LEN`] long.
    pub fn from_env() -> Self {
        Self::with_secrets(secret_env_values(std::env::vars_os()))
    }

    /// The token shapes and `secrets` (those shorter than [`MIN_SECRET_LEN`] are ignored).
    pub fn with_secrets(secrets: Vec<String>) -> Self {
        let redactor = Self::new();
        redactor.add_secrets(secrets);
        redactor
    }

    /// Registers a secret for this redactor and all its clones. Returns false, and registers
    /// nothing, for a secret shorter than [`MIN_SECRET_LEN`]; true otherwise (also when it was
    /// already known).
    pub fn add_secret(&self, secret: &str) -> bool {
        if secret.len() < MIN_SECRET_LEN {
            return false;
        }
        self.add_secrets(vec![secret.to_string()]);
        true
    }

    fn add_secrets(&self, secrets: Vec<String>) {
        let new: Vec<String> = secrets
            .into_iter()
            .filter(|s| s.len() >= MIN_SECRET_LEN)
            .flat_map(|s| printed_forms(&s))
            .collect();
        if new.is_empty() {
            return;
        }
        // Keys are looked up on every model call: skip the write lock when nothing is new.
        {
            let known = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
            if new.iter().all(|f| known.forms.contains(f)) {
                return;
            }
        }
        let mut known = self.secrets.write().unwrap_or_else(PoisonError::into_inner);
        for form in new {
            if !known.forms.contains(&form) {
                known.forms.push(form);
            }
        }
        known
            .forms
            .sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
        let pattern = known
            .forms
            .iter()
            .map(|f| regex::escape(f))
            .collect::<Vec<_>>()
            .join("|");
        // Escaped literals always compile; only a size limit could refuse them, and then the
        // previous matcher (fewer secrets) is better than none.
        if let Ok(matcher) = Regex::new(&pattern) {
            known.matcher = Some(matcher);
        }
    }

    /// How many literal secrets (counting each printed form) are registered.
    pub fn secret_forms(&self) -> usize {
        self.secrets
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .forms
            .len()
    }

    /// `text` with every secret replaced; borrowed (no copy) when there was nothing to hide.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        let literal = {
            let known = self.secrets.read().unwrap_or_else(PoisonError::into_inner);
            match &known.matcher {
                Some(m) => m.replace_all(text, NoExpand(REDACTED)),
                None => Cow::Borrowed(text),
            }
        };
        match literal {
            Cow::Borrowed(text) => redact_shapes(text),
            Cow::Owned(text) => Cow::Owned(redact_shapes(&text).into_owned()),
        }
    }
}

/// The ways a formatter may print `secret`: as is (Display), JSON-escaped (the JSON format),
/// Debug-escaped (`?field`), and Debug inside JSON. They differ only when the secret holds
/// quotes, backslashes or control characters, and then the plain form would not match.
fn printed_forms(secret: &str) -> Vec<String> {
    // Both always quote, so the text is between the first and last character.
    let unquote = |quoted: String| quoted[1..quoted.len() - 1].to_string();
    let json = |s: &str| unquote(serde_json::Value::from(s).to_string());
    let debug = unquote(format!("{secret:?}"));
    let mut forms = vec![secret.to_string(), json(secret), json(&debug), debug];
    forms.sort();
    forms.dedup();
    forms
}

/// The token shapes, one alternation so a line is scanned once. Each alternative keeps what
/// says what the value is (a header name, `Bearer`, a parameter name) and replaces the value.
static SHAPES: LazyLock<Regex> = LazyLock::new(|| {
    let header = concat!(
        // A header name as text, Debug or JSON prints it, then `:` or `=` and maybe a quote.
        r#"(?P<hk>(?-u:\b)(?i:proxy-authorization|authorization|x-api-key|api-key)\\*"?[ \t]*[:=][ \t]*\\*"?)"#,
        // An optional scheme (`Bearer`, `Basic`) and the credentials.
        r#"(?P<hv>(?:[A-Za-z]+[ \t]+)?[^\s"\\,;]+)"#,
    );
    let bearer = r"(?P<bk>(?-u:\b)(?i:bearer)[ \t]+)(?P<bv>[A-Za-z0-9._~+/-]{8,}=*)";
    let param = concat!(
        r#"(?P<qk>(?:(?-u:\b)(?i:api[_-]?key|access[_-]?token|refresh[_-]?token|id[_-]?token|token|client[_-]?secret|password)"#,
        r#"|[?&](?i:key))=\\*"?)(?P<qv>[^\s&"'\\#,;]+)"#,
    );
    let key = r"(?P<sk>(?-u:\b)sk-[A-Za-z0-9_-]{16,})";
    Regex::new(&[header, bearer, param, key].join("|")).expect("the redaction patterns compile")
});

fn redact_shapes(text: &str) -> Cow<'_, str> {
    let out = SHAPES.replace_all(text, |caps: &Captures| {
        for (name, value) in [("hk", "hv"), ("bk", "bv"), ("qk", "qv")] {
            if let (Some(name), Some(_)) = (caps.name(name), caps.name(value)) {
                return format!("{}{REDACTED}", name.as_str());
            }
        }
        let whole = &caps[0];
        // Generated keys always have digits; `sk-` words and slugs usually do not.
        if whole.bytes().any(|b| b.is_ascii_digit()) {
            REDACTED.to_string()
        } else {
            whole.to_string()
        }
    });
    match out {
        // Only look-alikes matched: keep the caller's text rather than an identical copy.
        Cow::Owned(copy) if copy == text => Cow::Borrowed(text),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(text: &str) -> String {
        Redactor::new().redact(text).into_owned()
    }

    #[test]
    fn sk_keys_are_redacted() {
        assert_eq!(
            clean("key sk-test-0123456789abcdef used"),
            "key [REDACTED] used"
        );
        assert_eq!(
            clean("x=sk-ant-api03-AbCdEf0123456789_xyz-QQ end"),
            "x=[REDACTED] end"
        );
        assert_eq!(
            clean(r#"{"k":"sk-proj-a1b2c3d4e5f6g7h8i9"}"#),
            r#"{"k":"[REDACTED]"}"#
        );
    }

    #[test]
    fn bearer_keeps_the_word_and_hides_the_token() {
        assert_eq!(
            clean("sent Bearer abc.DEF-123_xyz~+/== to it"),
            "sent Bearer [REDACTED] to it"
        );
        assert_eq!(clean("bearer 0123456789"), "bearer [REDACTED]");
    }

    #[test]
    fn authorization_header_values_are_redacted() {
        assert_eq!(
            clean("Authorization: Basic dXNlcjpwYXNz"),
            "Authorization: [REDACTED]"
        );
        assert_eq!(
            clean("authorization: Bearer tok-0123456789 next"),
            "authorization: [REDACTED] next"
        );
        // Debug of a header map, and the same inside a JSON string.
        assert_eq!(
            clean(r#"{"authorization": "Bearer zzzzzzzzzz", "x-api-key": "abcdefgh1"}"#),
            r#"{"authorization": "[REDACTED]", "x-api-key": "[REDACTED]"}"#
        );
        assert_eq!(
            clean(r#""headers":"{\"authorization\": \"Basic QWxhZGRpbg==\"}""#),
            r#""headers":"{\"authorization\": \"[REDACTED]\"}""#
        );
    }

    #[test]
    fn query_parameters_are_redacted() {
        assert_eq!(
            clean("GET https://h/v1?api_key=abc123&model=x failed"),
            "GET https://h/v1?api_key=[REDACTED]&model=x failed"
        );
        assert_eq!(
            clean("url (https://h/x?token=s3cr3t#frag)"),
            "url (https://h/x?token=[REDACTED]#frag)"
        );
        assert_eq!(
            clean("https://g/v1?key=AIzaXYZ&access_token=qqq"),
            "https://g/v1?key=[REDACTED]&access_token=[REDACTED]"
        );
        assert_eq!(clean(r#"token="abc def""#), r#"token="[REDACTED] def""#);
    }

    #[test]
    fn ordinary_words_are_left_alone() {
        for text in [
            "task run claimed",
            "skeleton crew; task-0123456789abcdef; disk-0123456789abcdef",
            "sk-learn-compatibility-layer is a slug",
            "tokens=42 input_token=5 keyboard=us monkey=3 daily_tokens=100",
            "authorization failed, bearer of bad news",
            "the key was rotated; api keys live in the environment",
            "Docker engine unreachable; instances keep their last state",
        ] {
            assert_eq!(clean(text), text);
            assert!(matches!(Redactor::new().redact(text), Cow::Borrowed(_)));
        }
    }

    #[test]
    fn literal_secrets_in_every_printed_form() {
        let secret = r#"pa"ss\word-1234"#;
        let r = Redactor::with_secrets(vec![secret.to_string(), "short".to_string()]);
        assert_eq!(
            r.redact(&format!("plain {secret} end")),
            "plain [REDACTED] end"
        );
        // The JSON formatter escapes the quote and the backslash, splitting the plain form.
        let json = serde_json::json!({ "home": secret }).to_string();
        assert!(!json.contains(secret));
        assert_eq!(r.redact(&json), r#"{"home":"[REDACTED]"}"#);
        // A Debug field (`?home`), and that inside JSON.
        let debug = format!("home={secret:?}");
        assert_eq!(r.redact(&debug), r#"home="[REDACTED]""#);
        let both = serde_json::json!({ "home": format!("{secret:?}") }).to_string();
        assert_eq!(r.redact(&both), r#"{"home":"\"[REDACTED]\""}"#);
        // Too short to be worth redacting everywhere it appears.
        assert_eq!(r.redact("short"), "short");
    }

    #[test]
    fn secrets_added_later_reach_every_clone() {
        let r = Redactor::new();
        let writer_side = r.clone();
        assert_eq!(writer_side.redact("my-api-token-42!"), "my-api-token-42!");
        assert!(r.add_secret("my-api-token-42!"));
        assert!(!r.add_secret("tiny"));
        assert_eq!(writer_side.redact("t=my-api-token-42!."), "t=[REDACTED].");
        let forms = r.secret_forms();
        assert!(r.add_secret("my-api-token-42!"));
        assert_eq!(r.secret_forms(), forms, "registering twice adds nothing");
        // Overlapping secrets: the longer one is redacted whole.
        r.add_secret("my-api-token");
        assert_eq!(writer_side.redact("my-api-token-42!"), "[REDACTED]");
    }

    #[test]
    fn secret_names_and_values_from_the_environment() {
        for name in [
            "OPENAI_API_KEY",
            "GITHUB_TOKEN",
            "AWS_SECRET",
            "DB_PASSWORD",
            "MY_API_KEY_FILE",
            "openai_api_key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "HOME",
            "PATH",
            "KEYBOARD",
            "TOKENS",
            "SSH_AUTH_SOCK",
            "MONKEY",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
        let vars = [
            ("OPENAI_API_KEY", "sk-test-0123456789abcdef"),
            ("SHORT_TOKEN", "1234567"),
            ("HOME", "/home/someone"),
            ("DB_PASSWORD", "hunter2hunter2"),
        ]
        .map(|(n, v)| (OsString::from(n), OsString::from(v)));
        assert_eq!(
            secret_env_values(vars),
            ["sk-test-0123456789abcdef", "hunter2hunter2"]
        );
    }
}
