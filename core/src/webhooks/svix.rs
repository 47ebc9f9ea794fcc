//! Svix webhook signatures (Resend signs its webhooks with Svix; the Standard Webhooks scheme).
//!
//! Headers `svix-id`, `svix-timestamp` (Unix seconds) and `svix-signature`, a space-separated list
//! of `v1,<base64 HMAC-SHA256>` entries over `"{id}.{timestamp}.{raw body}"`, keyed with the
//! base64-decoded part of the `whsec_…` secret. The unbranded `webhook-id`, `webhook-timestamp`
//! and `webhook-signature` headers are accepted too. One matching entry is enough (several appear
//! while a secret is being rotated).

use super::SignatureError;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::Duration;

/// The message id header (stable across redeliveries of one message).
pub const ID_HEADER: &str = "svix-id";
/// The signing time header.
pub const TIMESTAMP_HEADER: &str = "svix-timestamp";
/// The signatures header.
pub const SIGNATURE_HEADER: &str = "svix-signature";

/// The secret's prefix.
const PREFIX: &str = "whsec_";

/// Why a `whsec_…` secret cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected a whsec_… signing secret whose rest is base64")]
pub struct BadSecret;

/// The HMAC key of a `whsec_…` secret (the prefix is optional, as in Svix's libraries).
pub fn key(secret: &str) -> Result<Vec<u8>, BadSecret> {
    let encoded = secret.trim();
    let encoded = encoded.strip_prefix(PREFIX).unwrap_or(encoded);
    match STANDARD.decode(encoded) {
        Ok(key) if !key.is_empty() => Ok(key),
        _ => Err(BadSecret),
    }
}

fn mac(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// The `svix-signature` value for a body (for tests and tools; Svix's libraries produce the same).
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    format!(
        "v1,{}",
        STANDARD.encode(mac(key, id, timestamp, body).finalize().into_bytes())
    )
}

/// The three signature headers of a delivery, as sent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Headers<'a> {
    /// `svix-id`.
    pub id: Option<&'a str>,
    /// `svix-timestamp`.
    pub timestamp: Option<&'a str>,
    /// `svix-signature`.
    pub signature: Option<&'a str>,
}

/// Checks a delivery at time `now` (Unix seconds): one `v1` signature must match (in constant
/// time) and the timestamp must be within `tolerance` of `now`, either way. Returns the message id.
pub fn verify<'a>(
    key: &[u8],
    headers: Headers<'a>,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<&'a str, SignatureError> {
    let id = headers
        .id
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .ok_or(SignatureError::Missing(ID_HEADER))?;
    let timestamp: i64 = headers
        .timestamp
        .ok_or(SignatureError::Missing(TIMESTAMP_HEADER))?
        .trim()
        .parse()
        .map_err(|_| SignatureError::Malformed("svix-timestamp is not Unix seconds"))?;
    let signatures = headers
        .signature
        .ok_or(SignatureError::Missing(SIGNATURE_HEADER))?;
    let expected = mac(key, id, timestamp, body);
    let mut any_v1 = false;
    let matched = signatures
        .split_ascii_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .inspect(|_| any_v1 = true)
        .any(|sig| {
            STANDARD
                .decode(sig)
                .is_ok_and(|sig| expected.clone().verify_slice(&sig).is_ok())
        });
    if !matched {
        return Err(if any_v1 {
            SignatureError::Mismatch
        } else {
            SignatureError::Malformed("svix-signature has no v1 signature")
        });
    }
    if now.abs_diff(timestamp) > tolerance.as_secs() {
        return Err(SignatureError::Stale);
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: Duration = Duration::from_secs(300);
    // The example secret of Svix's documentation.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> Headers<'a> {
        Headers {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    #[test]
    fn the_documented_example_signature_verifies() {
        // From Svix's "verifying manually" guide: this id, time and body give this signature.
        let key = key(SECRET).unwrap();
        let body = br#"{"test": 2432232314}"#;
        let sig = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            sig
        );
        assert_eq!(
            verify(
                &key,
                headers("msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", sig),
                body,
                1614265330,
                TOL
            ),
            Ok("msg_p5jXN8AQM9LWM0D4loKWxJek")
        );
    }

    #[test]
    fn a_tampered_body_id_or_time_is_a_mismatch() {
        let key = key(SECRET).unwrap();
        let sig = sign(&key, "msg_1", 1000, b"{}");
        assert_eq!(
            verify(&key, headers("msg_1", "1000", &sig), b"{}", 1000, TOL),
            Ok("msg_1")
        );
        for (id, ts, body) in [
            ("msg_1", "1000", &b"{ }"[..]),
            ("msg_2", "1000", b"{}"),
            ("msg_1", "1001", b"{}"),
        ] {
            assert_eq!(
                verify(&key, headers(id, ts, &sig), body, 1000, TOL),
                Err(SignatureError::Mismatch)
            );
        }
        let other = super::key("whsec_c2VjcmV0").unwrap();
        assert_eq!(
            verify(&other, headers("msg_1", "1000", &sig), b"{}", 1000, TOL),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn one_of_several_space_separated_signatures_is_enough() {
        let key = key(SECRET).unwrap();
        let good = sign(&key, "msg_1", 1000, b"{}");
        let list = format!("v1,bm90IGl0 v1a,ZWQyNTUxOQ== {good}");
        assert_eq!(
            verify(&key, headers("msg_1", "1000", &list), b"{}", 1000, TOL),
            Ok("msg_1")
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let key = key(SECRET).unwrap();
        let sig = sign(&key, "msg_1", 1000, b"{}");
        assert_eq!(
            verify(&key, headers("msg_1", "1000", &sig), b"{}", 1300, TOL),
            Ok("msg_1")
        );
        assert_eq!(
            verify(&key, headers("msg_1", "1000", &sig), b"{}", 1301, TOL),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(&key, headers("msg_1", "1000", &sig), b"{}", 699, TOL),
            Err(SignatureError::Stale)
        );
    }

    #[test]
    fn missing_and_malformed_headers_are_named() {
        let key = key(SECRET).unwrap();
        let h = Headers::default();
        assert_eq!(
            verify(&key, h, b"", 0, TOL),
            Err(SignatureError::Missing(ID_HEADER))
        );
        let h = Headers { id: Some("m"), ..h };
        assert_eq!(
            verify(&key, h, b"", 0, TOL),
            Err(SignatureError::Missing(TIMESTAMP_HEADER))
        );
        let h = Headers {
            timestamp: Some("now"),
            ..h
        };
        assert!(matches!(
            verify(&key, h, b"", 0, TOL),
            Err(SignatureError::Malformed(_))
        ));
        let h = Headers {
            timestamp: Some("0"),
            ..h
        };
        assert_eq!(
            verify(&key, h, b"", 0, TOL),
            Err(SignatureError::Missing(SIGNATURE_HEADER))
        );
        let h = Headers {
            signature: Some("v2,abc"),
            ..h
        };
        assert!(matches!(
            verify(&key, h, b"", 0, TOL),
            Err(SignatureError::Malformed(_))
        ));
    }

    #[test]
    fn secrets_must_be_base64_with_or_without_the_prefix() {
        assert_eq!(key("whsec_c2VjcmV0").unwrap(), b"secret");
        assert_eq!(key("c2VjcmV0").unwrap(), b"secret");
        assert_eq!(key("whsec_not base64!"), Err(BadSecret));
        assert_eq!(key("whsec_"), Err(BadSecret));
    }
}
