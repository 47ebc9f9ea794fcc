//! Boundary newtypes: values parsed once where they enter, then trusted everywhere else.

use std::fmt;

/// A source's public, ingest-only write key. Never an admin credential.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct WriteKey(String);

/// Why a string is not a write key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WriteKeyError {
    /// Empty or whitespace.
    #[error("the write key is empty")]
    Empty,
    /// Longer than 200 bytes or containing control characters / spaces.
    #[error("the write key has invalid characters or length")]
    Invalid,
}

impl WriteKey {
    /// Parses a write key: 1–200 printable, non-space ASCII characters.
    pub fn parse(s: &str) -> Result<WriteKey, WriteKeyError> {
        if s.trim().is_empty() {
            return Err(WriteKeyError::Empty);
        }
        if s.len() > 200 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(WriteKeyError::Invalid);
        }
        Ok(WriteKey(s.to_owned()))
    }

    /// Generates a fresh random write key, `wk_` and 32 hex digits.
    pub fn generate() -> WriteKey {
        WriteKey(format!("wk_{}", uuid::Uuid::new_v4().simple()))
    }

    /// Reads the key from an `Authorization: Basic base64(writeKey:)` header value, as Segment's
    /// libraries send it.
    pub fn from_basic_auth(header: &str) -> Result<WriteKey, WriteKeyError> {
        let user = touchpoint_tracking_plan::protocol::write_key_from_basic(header)
            .ok_or(WriteKeyError::Invalid)?;
        WriteKey::parse(&user)
    }
}

impl AsRef<str> for WriteKey {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for WriteKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Public, but still not something logs should collect wholesale.
        let shown: String = self.0.chars().take(6).collect();
        write!(f, "WriteKey({shown}…)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_basic_auth_header_yields_the_user_name_as_write_key() {
        use base64::Engine;
        let header = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("wk_abc:")
        );
        assert_eq!(
            WriteKey::from_basic_auth(&header).unwrap().as_ref(),
            "wk_abc"
        );
    }

    #[test]
    fn empty_and_spaced_keys_are_refused() {
        assert_eq!(WriteKey::parse(" "), Err(WriteKeyError::Empty));
        assert_eq!(WriteKey::parse("a b"), Err(WriteKeyError::Invalid));
    }

    #[test]
    fn debug_output_does_not_show_the_whole_key() {
        let k = WriteKey::parse("wk_0123456789abcdef").unwrap();
        assert!(!format!("{k:?}").contains("0123456789abcdef"));
    }

    #[test]
    fn generated_keys_are_valid_and_distinct() {
        let (a, b) = (WriteKey::generate(), WriteKey::generate());
        assert_ne!(a, b);
        assert!(WriteKey::parse(a.as_ref()).is_ok());
    }
}
