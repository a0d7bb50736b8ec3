//! What a fetched body becomes for the model: HTML reduced to text, JSON and other text as it
//! is, binary refused; cut at the protocol's cap with a note.

use supervisor_agent::protocol::MAX_WEB_TEXT_BYTES;

/// How a response body is read, by its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Html,
    /// JSON, XML, plain text and every other `text/*`: given as it is.
    Text,
    /// Images, archives, PDFs, executables and whatever else a model cannot read.
    Binary,
}

/// The kind of a body from its content type; a missing one is read as text (most such
/// answers are plain text or JSON), and [`to_text`] refuses it still when it is not UTF-8.
pub fn kind_of(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::Text;
    };
    let mime = ct
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    if mime == "text/html" || mime == "application/xhtml+xml" {
        BodyKind::Html
    } else if mime.starts_with("text/")
        || mime.ends_with("+json")
        || mime.ends_with("+xml")
        || matches!(
            mime.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-ndjson"
                | "application/yaml"
                | "application/toml"
                | ""
        )
    {
        BodyKind::Text
    } else {
        BodyKind::Binary
    }
}

/// The text of a body. `cut` says the body was longer than what was read. `None` when a body
/// announced as text is not UTF-8 text at all (a NUL byte or mostly invalid UTF-8).
pub fn to_text(kind: BodyKind, body: &[u8], cut: bool) -> Option<String> {
    let raw = String::from_utf8_lossy(body);
    let bad = raw.chars().filter(|c| *c == '\u{fffd}').count();
    if body.contains(&0) || bad * 10 > raw.chars().count().max(1) {
        return None;
    }
    let mut text = match kind {
        // A generous width: the model reads lines, not a terminal.
        BodyKind::Html => html2text::from_read(body, 200).unwrap_or_else(|_| raw.into_owned()),
        _ => raw.into_owned(),
    };
    let mut notes = Vec::new();
    if cut {
        notes.push(
            "the response was longer than egress.limits.response_bytes; only its start was read"
                .to_string(),
        );
    }
    if text.len() > MAX_WEB_TEXT_BYTES {
        let mut end = MAX_WEB_TEXT_BYTES - 200;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        notes.push(format!(
            "the text is {} bytes; only the first {} KiB are shown",
            text.len(),
            MAX_WEB_TEXT_BYTES / 1024
        ));
        text.truncate(end);
    }
    if !notes.is_empty() {
        text.push_str(&format!("\n[truncated: {}]", notes.join("; ")));
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds() {
        assert_eq!(kind_of(Some("text/html; charset=utf-8")), BodyKind::Html);
        assert_eq!(kind_of(Some("application/json")), BodyKind::Text);
        assert_eq!(kind_of(Some("application/vnd.github+json")), BodyKind::Text);
        assert_eq!(kind_of(Some("text/plain")), BodyKind::Text);
        assert_eq!(kind_of(None), BodyKind::Text);
        for binary in [
            "image/png",
            "application/pdf",
            "application/octet-stream",
            "application/zip",
        ] {
            assert_eq!(kind_of(Some(binary)), BodyKind::Binary, "{binary}");
        }
    }

    #[test]
    fn html_becomes_text_and_long_text_is_cut() {
        let html = b"<html><head><title>T</title><script>var x = 1;</script></head><body><h1>Hello</h1><p>A <b>bold</b> page.</p></body></html>";
        let text = to_text(BodyKind::Html, html, false).unwrap();
        assert!(text.contains("Hello") && text.contains("bold"), "{text}");
        assert!(!text.contains("<p>") && !text.contains("var x"), "{text}");
        let json = br#"{"a": 1}"#;
        assert_eq!(to_text(BodyKind::Text, json, false).unwrap(), r#"{"a": 1}"#);
        let cut = to_text(BodyKind::Text, b"abc", true).unwrap();
        assert!(cut.starts_with("abc\n[truncated: "), "{cut}");
        let long = "é".repeat(MAX_WEB_TEXT_BYTES);
        let text = to_text(BodyKind::Text, long.as_bytes(), false).unwrap();
        assert!(text.len() <= MAX_WEB_TEXT_BYTES, "{}", text.len());
        assert!(text.ends_with("KiB are shown]"));
        assert_eq!(to_text(BodyKind::Text, b"\x89PNG\0\0\x01", false), None);
    }
}
