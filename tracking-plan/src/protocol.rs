//! The contract between the edge worker and core, in one place so the two cannot drift: the size
//! limits both enforce, how a write key is read from `Authorization: Basic`, and the signature on
//! batches the edge forwards — HMAC-SHA256 over `"{timestamp}.{body}"` with a shared secret, sent as
//! `X-Touchpoint-Signature: v1=<hex>` beside `X-Touchpoint-Timestamp: <unix s>`.

use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The largest single message, in bytes (Segment's limit).
pub const MAX_MESSAGE_BYTES: usize = 32 * 1024;

/// The largest batch request body, in bytes (Segment's limit).
pub const MAX_BATCH_BYTES: usize = 500 * 1024;

/// The write key of an `Authorization: Basic base64(writeKey:)` header value, as Segment's libraries
/// send it: the user name, password ignored. `None` when the header is not Basic, not base64, not
/// UTF-8, or names no user.
pub fn write_key_from_basic(header: &str) -> Option<String> {
    let header = header.trim();
    let (scheme, encoded) = header.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let user = text.split_once(':').map_or(text.as_str(), |(u, _)| u);
    (!user.is_empty()).then(|| user.to_owned())
}

/// Header carrying the signing time, Unix seconds.
pub const TIMESTAMP_HEADER: &str = "x-touchpoint-timestamp";
/// Header carrying `v1=<hex hmac>`.
pub const SIGNATURE_HEADER: &str = "x-touchpoint-signature";

/// Why a signed batch was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// A header is missing or unreadable.
    #[error("missing or malformed {0} header")]
    Malformed(&'static str),
    /// The signature does not match.
    #[error("signature does not match")]
    Mismatch,
    /// Signed too long ago (or in the future): a possible replay.
    #[error("signature timestamp outside the replay window")]
    Stale,
}

/// Computes the `v1=` signature value for a body.
pub fn sign(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Checks a signed body at time `now` (Unix seconds), in constant time.
pub fn verify(
    secret: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
    window: Duration,
) -> Result<(), SignatureError> {
    let ts: i64 = timestamp
        .and_then(|t| t.trim().parse().ok())
        .ok_or(SignatureError::Malformed(TIMESTAMP_HEADER))?;
    let sig = signature
        .and_then(|s| s.trim().strip_prefix("v1="))
        .and_then(|h| hex::decode(h).ok())
        .ok_or(SignatureError::Malformed(SIGNATURE_HEADER))?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.verify_slice(&sig)
        .map_err(|_| SignatureError::Mismatch)?;
    if (now - ts).unsigned_abs() > window.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(300);

    #[test]
    fn a_body_signed_with_the_shared_secret_verifies() {
        let sig = sign(b"s3cret", 1000, b"{}");
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some(&sig), b"{}", 1010, W),
            Ok(())
        );
    }

    #[test]
    fn a_tampered_body_or_wrong_secret_is_a_mismatch() {
        let sig = sign(b"s3cret", 1000, b"{}");
        assert_eq!(
            verify(b"s3cret", Some("1000"), Some(&sig), b"{ }", 1000, W),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", Some("1000"), Some(&sig), b"{}", 1000, W),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn an_old_signature_is_refused_as_a_replay() {
        let sig = sign(b"k", 1000, b"x");
        assert_eq!(
            verify(b"k", Some("1000"), Some(&sig), b"x", 1000 + 301, W),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn the_write_key_is_the_basic_user_name_whatever_the_scheme_case() {
        // "wk_basic:" and "wk_basic:ignored"
        assert_eq!(
            write_key_from_basic("Basic d2tfYmFzaWM6").as_deref(),
            Some("wk_basic")
        );
        assert_eq!(
            write_key_from_basic(" basic d2tfYmFzaWM6aWdub3JlZA== ").as_deref(),
            Some("wk_basic")
        );
        assert_eq!(
            write_key_from_basic("BASIC d2tfYmFzaWM6").as_deref(),
            Some("wk_basic")
        );
        assert_eq!(write_key_from_basic("Bearer d2tfYmFzaWM6"), None);
        assert_eq!(write_key_from_basic("Basic !!!"), None);
        assert_eq!(write_key_from_basic("Basic Og=="), None); // ":" names no user
    }

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Recomputed independently of `sign`.
        let mut mac = Hmac::<Sha256>::new_from_slice(b"test-edge-secret").unwrap();
        mac.update(b"1700000000.{}");
        let expected = format!("v1={}", hex::encode(mac.finalize().into_bytes()));
        assert_eq!(sign(b"test-edge-secret", 1_700_000_000, b"{}"), expected);
    }

    #[test]
    fn missing_headers_are_named() {
        assert_eq!(
            verify(b"k", None, Some("v1=00"), b"x", 0, W),
            Err(SignatureError::Malformed(TIMESTAMP_HEADER))
        );
        assert_eq!(
            verify(b"k", Some("1"), Some("sha1=00"), b"x", 1, W),
            Err(SignatureError::Malformed(SIGNATURE_HEADER))
        );
    }
}
