//! An error as people read it: the error and its causes on one line, escaped for the
//! terminal. The CLI prints its errors this way and the dashboard shows them in its footer.

/// The error and its causes on one line, skipping a cause whose text its parent already
/// includes (errors that embed their source in their message would otherwise repeat).
/// Escaped for the terminal: an error may quote what an agent wrote (a crash loop's detail
/// carries the container's last output).
pub fn one_line(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    crate::domain::escape::line(&line.replace('\n', " ")).into_owned()
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_error_is_one_escaped_line() {
        let e = anyhow::anyhow!("last output: \u{1b}[2J\nboom\u{202e}")
            .context("alice is in state crash-loop");
        assert_eq!(
            super::one_line(&e),
            "alice is in state crash-loop: last output: \\u{1b}[2J boom\\u{202e}"
        );
    }

    #[test]
    fn a_cause_its_parent_already_says_is_not_repeated() {
        let inner = anyhow::anyhow!("disk full");
        let e = inner.context("writing the store failed: disk full");
        assert_eq!(super::one_line(&e), "writing the store failed: disk full");
    }
}
