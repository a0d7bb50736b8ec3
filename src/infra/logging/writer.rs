//! The writer that redacts every formatted event before it reaches stderr.

use std::io::{self, Write};

use tracing::{Level, Metadata};
use tracing_subscriber::fmt::MakeWriter;

use super::*;

/// A [`MakeWriter`] that redacts each event's text before handing it to the inner writer,
/// and (for journald) prefixes every line with its syslog priority.
///
/// Each writer it makes buffers what the formatter writes and passes it on, redacted, when
/// dropped (tracing-subscriber makes one writer per event), so a secret is redacted even when
/// the formatter writes it in pieces, and an event reaches stderr in one write.
#[derive(Debug, Clone)]
pub struct RedactingMakeWriter<M> {
    inner: M,
    redactor: Redactor,
    journald: bool,
}

impl<M> RedactingMakeWriter<M> {
    pub fn new(redactor: Redactor, inner: M) -> Self {
        Self {
            inner,
            redactor,
            journald: false,
        }
    }

    /// Starts every line with `<N>`, the event's syslog priority, which journald reads.
    pub fn journald(mut self, on: bool) -> Self {
        self.journald = on;
        self
    }
}

fn syslog_priority(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "<3>",
        Level::WARN => "<4>",
        Level::INFO => "<6>",
        _ => "<7>",
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for RedactingMakeWriter<M> {
    type Writer = RedactingWriter<'a, M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter::new(self.inner.make_writer(), &self.redactor, None)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        let prefix = self.journald.then(|| syslog_priority(meta.level()));
        RedactingWriter::new(self.inner.make_writer_for(meta), &self.redactor, prefix)
    }
}

/// One event's writer; see [`RedactingMakeWriter`].
pub struct RedactingWriter<'a, W: Write> {
    inner: W,
    redactor: &'a Redactor,
    prefix: Option<&'static str>,
    buf: Vec<u8>,
}

impl<'a, W: Write> RedactingWriter<'a, W> {
    fn new(inner: W, redactor: &'a Redactor, prefix: Option<&'static str>) -> Self {
        Self {
            inner,
            redactor,
            prefix,
            buf: Vec::new(),
        }
    }

    /// Redacts and writes the first `len` buffered bytes.
    fn emit(&mut self, len: usize) -> io::Result<()> {
        if len == 0 {
            return Ok(());
        }
        let chunk: Vec<u8> = self.buf.drain(..len).collect();
        let text = String::from_utf8_lossy(&chunk);
        let clean = self.redactor.redact(&text);
        match self.prefix {
            None => self.inner.write_all(clean.as_bytes()),
            Some(prefix) => {
                let mut out = String::with_capacity(clean.len() + prefix.len());
                for line in clean.split_inclusive('\n') {
                    out.push_str(prefix);
                    out.push_str(line);
                }
                self.inner.write_all(out.as_bytes())
            }
        }
    }
}

impl<W: Write> Write for RedactingWriter<'_, W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    /// Passes on the complete lines; a partial one waits, as a secret may continue in it.
    fn flush(&mut self) -> io::Result<()> {
        let complete = self
            .buf
            .iter()
            .rposition(|&b| b == b'\n')
            .map_or(0, |i| i + 1);
        self.emit(complete)?;
        self.inner.flush()
    }
}

impl<W: Write> Drop for RedactingWriter<'_, W> {
    fn drop(&mut self) {
        // Nowhere to report a failed write of a log line; stderr gone means no logs at all.
        let _ = self.emit(self.buf.len());
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    /// Collects what the redacting writer passes on, like stderr would.
    #[derive(Clone, Default)]
    struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn writer_redacts_a_secret_written_in_pieces() {
        let sink = Sink::default();
        let make = RedactingMakeWriter::new(
            Redactor::with_secrets(vec!["correct-horse-battery".into()]),
            {
                let sink = sink.clone();
                move || sink.clone()
            },
        );
        {
            let mut w = make.make_writer();
            w.write_all(b"login with correct-hor").unwrap();
            w.flush().unwrap();
            w.write_all(b"se-battery done\nand ").unwrap();
            w.write_all(b"sk-0123456789abcdefXYZ\n").unwrap();
        }
        assert_eq!(sink.text(), "login with [REDACTED] done\nand [REDACTED]\n");
    }

    #[test]
    fn journald_lines_carry_their_priority() {
        let sink = Sink::default();
        let make = RedactingMakeWriter::new(Redactor::new(), {
            let sink = sink.clone();
            move || sink.clone()
        })
        .journald(true);
        let subscriber = tracing_subscriber::fmt()
            .with_writer(make)
            .fmt_fields(crate::infra::logging::escaped_fields())
            .with_ansi(false)
            .without_time()
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(auth = "Bearer 0123456789abcdef", file = %"x\n WARN forged\u{1b}[2J", "two\nlines");
            tracing::info!("fine");
        });
        let text = sink.text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines.len(),
            2,
            "one line an event, whatever its fields hold: {text}"
        );
        assert!(lines[0].starts_with("<4> WARN"), "{text}");
        assert!(lines[0].contains("two\\u{a}lines"), "{text}");
        assert!(
            lines[0].contains("file=x\\u{a} WARN forged\\u{1b}[2J"),
            "{text}"
        );
        assert!(lines[0].contains("Bearer [REDACTED]"), "{text}");
        assert!(lines[1].starts_with("<6> INFO"), "{text}");
    }

    #[test]
    fn json_events_stay_valid_json_after_redaction() {
        let sink = Sink::default();
        let secret = r#"quote"back\slash-99"#;
        let make = RedactingMakeWriter::new(Redactor::with_secrets(vec![secret.into()]), {
            let sink = sink.clone();
            move || sink.clone()
        });
        let subscriber = tracing_subscriber::fmt().json().with_writer(make).finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(home = %secret, debug = ?secret, url = "https://x/?api_key=abc&y=1", "sk-abcdefghij0123456789 used");
        });
        let text = sink.text();
        assert!(!text.contains("back"), "{text}");
        assert!(!text.contains("abcdefghij0123456789"), "{text}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["fields"]["home"], REDACTED);
        assert_eq!(v["fields"]["debug"], format!("\"{REDACTED}\""));
        assert_eq!(v["fields"]["url"], "https://x/?api_key=[REDACTED]&y=1");
        assert_eq!(v["fields"]["message"], "[REDACTED] used");
        assert_eq!(v["level"], "INFO");
    }
}
