//! humantime's reasons for refusing a duration ("expected number at 0") said about the text
//! the user wrote: what is wrong in it, and what a duration looks like.

use humantime::DurationError;

/// Why `text` is not a duration, as a clause ("60 needs a unit, such as 60s, 60m or 60h").
pub fn why_not(text: &str, e: &DurationError) -> String {
    match e {
        DurationError::Empty => "it is empty".into(),
        DurationError::NumberExpected(0) => "it must start with a number".into(),
        DurationError::NumberExpected(at) => match text.get(..*at) {
            Some(before) => format!("a number must follow {:?}", before.trim()),
            None => "a number is missing".into(),
        },
        DurationError::InvalidCharacter(at) => match text.get(*at..).and_then(|t| t.chars().next())
        {
            Some(c) => format!("{c:?} has no place in a duration"),
            None => "it holds a character that has no place in a duration".into(),
        },
        DurationError::UnknownUnit { unit, value, .. } if unit.is_empty() => {
            format!("{value} needs a unit, such as {value}s, {value}m or {value}h")
        }
        DurationError::UnknownUnit { unit, .. } => {
            format!("{unit:?} is not a unit of time (use s, m, h, d or w)")
        }
        DurationError::NumberOverflow => "the number is too large".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn why(text: &str) -> String {
        why_not(text, &humantime::parse_duration(text).unwrap_err())
    }

    #[test]
    fn every_refusal_is_about_the_text() {
        assert_eq!(why("x"), "it must start with a number");
        assert_eq!(why("5"), "5 needs a unit, such as 5s, 5m or 5h");
        assert_eq!(
            why("5 parsecs"),
            "\"parsecs\" is not a unit of time (use s, m, h, d or w)"
        );
        assert_eq!(why("1h-"), "'-' has no place in a duration");
        assert_eq!(why(""), "it is empty");
        assert_eq!(why("99999999999999999999d"), "the number is too large");
        for text in ["x", "1h x", "5"] {
            assert!(!why(text).contains(" at "), "{text}: {}", why(text));
        }
    }
}
