//! The server-set first-party cookie `tp_sid = <anonymousId>.<signature>`.
//!
//! Set by the worker on the site's own domain with `HttpOnly; Secure; SameSite=Lax`, so Safari's ITP
//! 7-day cap on script-written cookies does not apply. The signature (HMAC-SHA256 with
//! `COOKIE_SECRET`, base64url, truncated to 128 bits) lets the worker trust the id it reads back; a
//! cookie whose signature does not verify is reported as forged, ignored, and replaced.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The cookie's name.
pub const NAME: &str = "tp_sid";
/// One year, in seconds.
pub const MAX_AGE_SECS: u32 = 365 * 24 * 60 * 60;
/// Longest anonymous id the cookie carries (longer ids are not put in a cookie).
pub const MAX_ID_LEN: usize = 200;
const SIG_BYTES: usize = 16;

/// What the request's `tp_sid` cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CookieState {
    /// No `tp_sid` cookie.
    Absent,
    /// A cookie this worker signed: the anonymous id it carries.
    Valid(String),
    /// A `tp_sid` whose signature does not verify (tampered, forged or signed with another secret).
    Forged,
}

fn mac(secret: &[u8], id: &str) -> [u8; SIG_BYTES] {
    let mut m = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    m.update(b"tp_sid.v1.");
    m.update(id.as_bytes());
    let full = m.finalize().into_bytes();
    let mut out = [0u8; SIG_BYTES];
    out.copy_from_slice(&full[..SIG_BYTES]);
    out
}

/// Whether `id` can be stored in the cookie: non-empty, at most [`MAX_ID_LEN`] bytes, and only
/// characters that need no quoting in a cookie value (anonymous ids are UUIDs in practice).
pub fn is_storable(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b':' | b'+' | b'@'))
}

/// The cookie value for `id`: `id.signature`.
pub fn value(secret: &[u8], id: &str) -> String {
    format!("{id}.{}", URL_SAFE_NO_PAD.encode(mac(secret, id)))
}

/// Verifies a cookie value; `None` if it is not one this secret signed.
pub fn verify(secret: &[u8], value: &str) -> Option<String> {
    let (id, sig) = value.rsplit_once('.')?;
    if !is_storable(id) {
        return None;
    }
    let sig = URL_SAFE_NO_PAD.decode(sig).ok()?;
    let expected = mac(secret, id);
    bool::from(sig.as_slice().ct_eq(&expected)).then(|| id.to_owned())
}

/// Reads `tp_sid` from a `Cookie` request header.
pub fn read(secret: &[u8], cookie_header: Option<&str>) -> CookieState {
    let Some(header) = cookie_header else {
        return CookieState::Absent;
    };
    let found = header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == NAME)
        .map(|(_, v)| v.trim().trim_matches('"'));
    match found {
        None => CookieState::Absent,
        Some(v) => verify(secret, v).map_or(CookieState::Forged, CookieState::Valid),
    }
}

/// The `Set-Cookie` header value for `id`; `domain` widens it to a parent domain (e.g.
/// `example.com` for `www.` and `app.`), `None` keeps it host-only.
pub fn set_cookie(secret: &[u8], id: &str, domain: Option<&str>) -> String {
    let mut out = format!(
        "{NAME}={}; Max-Age={MAX_AGE_SECS}; Path=/; HttpOnly; Secure; SameSite=Lax",
        value(secret, id)
    );
    if let Some(d) = domain.map(str::trim).filter(|d| !d.is_empty()) {
        out.push_str("; Domain=");
        out.push_str(d);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: &[u8] = b"cookie-secret";

    #[test]
    fn a_cookie_the_worker_set_reads_back_as_its_anonymous_id() {
        let header = set_cookie(K, "a-123", None);
        let value = header
            .split(';')
            .next()
            .unwrap()
            .strip_prefix("tp_sid=")
            .unwrap();
        let request = format!("theme=dark; tp_sid={value}; other=1");
        assert_eq!(read(K, Some(&request)), CookieState::Valid("a-123".into()));
    }

    #[test]
    fn a_tampered_or_foreign_cookie_is_forged() {
        let v = value(K, "a-123");
        let tampered = v.replacen("a-123", "a-124", 1);
        assert_eq!(
            read(K, Some(&format!("tp_sid={tampered}"))),
            CookieState::Forged
        );
        assert_eq!(
            read(b"other", Some(&format!("tp_sid={v}"))),
            CookieState::Forged
        );
        assert_eq!(read(K, Some("tp_sid=a-123")), CookieState::Forged);
        assert_eq!(read(K, Some("tp_sid=a-123.!!!")), CookieState::Forged);
    }

    #[test]
    fn no_cookie_is_absent() {
        assert_eq!(read(K, None), CookieState::Absent);
        assert_eq!(read(K, Some("a=b; tp_sidx=1")), CookieState::Absent);
    }

    #[test]
    fn the_cookie_is_http_only_secure_lax_for_a_year() {
        let c = set_cookie(K, "a-1", None);
        for attr in [
            "HttpOnly",
            "Secure",
            "SameSite=Lax",
            "Path=/",
            "Max-Age=31536000",
        ] {
            assert!(c.contains(attr), "{attr} in {c}");
        }
        assert!(!c.contains("Domain"));
        assert!(set_cookie(K, "a-1", Some("example.com")).ends_with("; Domain=example.com"));
    }

    #[test]
    fn ids_that_would_need_quoting_are_not_stored() {
        assert!(is_storable("6f1c1f2e-7c6a-4a53-9a9c-0b5a4c9e2f10"));
        assert!(!is_storable(""));
        assert!(!is_storable("a;b"));
        assert!(!is_storable("a b"));
        assert!(!is_storable(&"x".repeat(MAX_ID_LEN + 1)));
    }
}
