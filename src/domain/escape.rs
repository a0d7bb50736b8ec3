//! Text that an agent or a message's sender wrote, made safe for a terminal. A reply, a
//! history body, a task result, a container's output or a soul's title may carry escape
//! sequences (colours, cursor moves, OSC 8 links, a new window title, a cleared screen) or
//! bidirectional overrides that make the text shown differ from the text stored. Every view
//! that prints such text, plain or in the dashboard, runs it through here; `--json` does not
//! (JSON has escapes of its own, and machines want the exact text).
//!
//! The form is Rust's: the character's code point in hex between `\u{` and `}`, so ESC is
//! `\u{1b}`, DEL `\u{7f}`, the C1 CSI `\u{9b}` and RIGHT-TO-LEFT OVERRIDE `\u{202e}`. It is
//! visible, unambiguous for the characters it replaces, and the same in every view
//! (docs/cli.md, "Text from agents").

use std::borrow::Cow;

/// Whether `c` is escaped wherever text from outside is printed: C0 controls, DEL, C1
/// controls, and the bidirectional embeddings, overrides and isolates.
fn is_unsafe(c: char) -> bool {
    matches!(c,
        '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

fn escape(s: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    if !s.chars().any(|c| is_unsafe(c) && !keep(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if is_unsafe(c) && !keep(c) {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A body printed over several lines (a reply, a history message, a container's output):
/// newlines and tabs stay, every other unsafe character is escaped.
pub fn text(s: &str) -> Cow<'_, str> {
    escape(s, |c| c == '\n' || c == '\t')
}

/// A value printed within one line (a table cell, a state detail, a title): everything
/// unsafe is escaped, newlines and tabs included, so it cannot break the layout.
pub fn line(s: &str) -> Cow<'_, str> {
    escape(s, |_| false)
}

/// Turns a byte stream (a container's output, in chunks that may end in the middle of a
/// character) into text: whole characters as they complete, invalid bytes as U+FFFD.
#[derive(Debug, Default)]
pub struct Utf8Stream {
    pending: Vec<u8>,
}

impl Utf8Stream {
    /// The text `bytes` completes; an unfinished character at the end waits for the next
    /// chunk.
    pub fn push(&mut self, bytes: &[u8]) -> String {
        self.pending.extend_from_slice(bytes);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (good, bad) = rest.split_at(e.valid_up_to());
                    // Checked just above: the prefix is valid.
                    out.push_str(std::str::from_utf8(good).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &bad[n..];
                        }
                        // Cut short by the chunk's end: wait for the rest.
                        None => {
                            rest = bad;
                            break;
                        }
                    }
                }
            }
        }
        self.pending = rest.to_vec();
        out
    }

    /// What is left when the stream ends: an unfinished character is invalid.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_are_escaped_visibly() {
        assert_eq!(
            text("\u{1b}[31mred\u{1b}[0m\u{7}"),
            "\\u{1b}[31mred\\u{1b}[0m\\u{7}"
        );
        assert_eq!(
            text("del\u{7f} csi\u{9b}2J nul\u{0}"),
            "del\\u{7f} csi\\u{9b}2J nul\\u{0}"
        );
        assert_eq!(
            text("osc\u{1b}]8;;http://x\u{7}"),
            "osc\\u{1b}]8;;http://x\\u{7}"
        );
        assert_eq!(text("cr\r"), "cr\\u{d}");
        // Every C1 control, not only CSI.
        assert_eq!(text("\u{80}\u{9f}"), "\\u{80}\\u{9f}");
    }

    #[test]
    fn bidi_overrides_and_isolates_are_escaped() {
        for c in ['\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}'] {
            assert_eq!(line(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
        for c in ['\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}'] {
            assert_eq!(text(&c.to_string()), format!("\\u{{{:x}}}", c as u32));
        }
        assert_eq!(line("abc\u{202e}fed"), "abc\\u{202e}fed");
    }

    #[test]
    fn bodies_keep_their_lines_and_tabs_and_lines_do_not() {
        assert_eq!(text("one\n\ttwo"), "one\n\ttwo");
        assert_eq!(line("one\n\ttwo"), "one\\u{a}\\u{9}two");
    }

    #[test]
    fn ordinary_text_is_untouched_and_not_copied() {
        for s in [
            "plain",
            "ünïcode — “quotes” 日本語 🎉",
            "a \\u{1b} typed out",
            "",
        ] {
            assert!(matches!(text(s), Cow::Borrowed(t) if t == s), "{s}");
            assert!(matches!(line(s), Cow::Borrowed(t) if t == s), "{s}");
        }
        // Neighbours of the escaped ranges stay.
        assert_eq!(
            line("\u{a0}\u{2029}\u{206a}\u{200f}"),
            "\u{a0}\u{2029}\u{206a}\u{200f}"
        );
    }

    #[test]
    fn a_stream_decodes_characters_split_across_chunks() {
        let mut s = Utf8Stream::default();
        let bytes = "é\u{1b}日".as_bytes();
        assert_eq!(s.push(&bytes[..1]), "");
        assert_eq!(s.push(&bytes[1..4]), "é\u{1b}");
        assert_eq!(s.push(&bytes[4..]), "日");
        assert_eq!(s.push(b"a\xffb"), "a\u{fffd}b");
        // A lone C1 byte is not a character: it never reaches a terminal as one.
        assert_eq!(s.push(b"\x9b2J"), "\u{fffd}2J");
        assert_eq!(s.push(&"日".as_bytes()[..2]), "");
        assert_eq!(s.finish(), "\u{fffd}");
    }
}
