//! The one way an id is minted for a message, a turn or an envelope: a UUID v7 (unique and
//! time-ordered, so ids sort by when they were made) as 32 hex digits.

/// A fresh id.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_32_hex_digits_unique_and_ordered() {
        let (a, b) = (super::new_id(), super::new_id());
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert!(a < b, "{a} then {b}");
    }
}
