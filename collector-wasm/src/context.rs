//! Pure helpers for the automatic context and identity: ids, utm campaign, cookies.

use crate::json::{Obj, hex_digit, split_byte, split_once_byte};
use alloc::string::String;
use alloc::vec::Vec;

/// Formats 16 random bytes as a version-4 UUID.
pub fn uuid(mut b: [u8; 16]) -> String {
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let mut s = String::with_capacity(36);
    for (i, byte) in b.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            s.push('-');
        }
        s.push(hex_digit(u32::from(*byte) >> 4));
        s.push(hex_digit(u32::from(*byte)));
    }
    s
}

/// Decodes `application/x-www-form-urlencoded` text (`+` is a space, `%XX` a byte).
pub fn url_decode(s: &str) -> String {
    let mut b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    while let [c, rest @ ..] = b {
        b = rest;
        match (c, rest) {
            (b'+', _) => out.push(b' '),
            (b'%', [h, l, after @ ..]) => match (hex_val(*h), hex_val(*l)) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    b = after;
                }
                _ => out.push(b'%'),
            },
            (c, _) => out.push(*c),
        }
    }
    String::from_utf8(out).unwrap_or_default()
}

fn hex_val(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

/// The Segment `context.campaign` object (JSON) from a `?utm_…` query string; empty when none.
pub fn campaign(search: &str) -> String {
    let mut fields: Vec<(&str, String)> = Vec::new();
    for pair in split_byte(search.trim_start_matches('?'), b'&') {
        let (k, v) = split_once_byte(pair, b'=').unwrap_or((pair, ""));
        let key = match k {
            "utm_campaign" => "name",
            "utm_source" => "source",
            "utm_medium" => "medium",
            "utm_term" => "term",
            "utm_content" => "content",
            _ => continue,
        };
        fields.push((key, url_decode(v)));
    }
    if fields.is_empty() {
        return String::new();
    }
    let mut s = String::new();
    let mut o = Obj::new(&mut s);
    for (k, v) in &fields {
        o = o.str(k, v);
    }
    o.end();
    s
}

/// A first-party cookie assignment for `document.cookie`: SameSite=Lax, optional Domain, max age.
pub fn cookie(
    name: &str,
    value: &str,
    domain: Option<&str>,
    max_age_secs: u64,
    secure: bool,
) -> String {
    let mut s = String::with_capacity(96);
    s.push_str(name);
    s.push('=');
    s.push_str(value);
    s.push_str("; Path=/; Max-Age=");
    crate::json::push_uint(&mut s, max_age_secs);
    s.push_str("; SameSite=Lax");
    if let Some(d) = domain.filter(|d| !d.is_empty()) {
        s.push_str("; Domain=");
        s.push_str(d);
    }
    if secure {
        s.push_str("; Secure");
    }
    s
}

/// The value of cookie `name` in a `document.cookie` string.
pub fn read_cookie<'a>(cookies: &'a str, name: &str) -> Option<&'a str> {
    split_byte(cookies, b';')
        .filter_map(|c| split_once_byte(c.trim_ascii(), b'='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// Whether a stored id is usable: ids are written by this crate as URL-safe text.
pub fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_have_the_v4_shape() {
        let u = uuid([0xab; 16]);
        assert_eq!(u, "abababab-abab-4bab-abab-abababababab");
        assert!(valid_id(&u));
    }

    #[test]
    fn utm_parameters_become_the_campaign() {
        assert_eq!(
            campaign("?utm_source=news%20letter&x=1&utm_campaign=spring+sale&utm_medium=email"),
            r#"{"source":"news letter","name":"spring sale","medium":"email"}"#
        );
        assert_eq!(campaign("?q=1"), "");
        assert_eq!(campaign(""), "");
        assert_eq!(url_decode("a%2"), "a%2");
        assert_eq!(url_decode("%C3%A9%"), "é%");
    }

    #[test]
    fn the_cookie_is_first_party_lax_and_scoped_to_the_domain() {
        assert_eq!(
            cookie("tp_anon", "abc", Some(".example.com"), 31_536_000, true),
            "tp_anon=abc; Path=/; Max-Age=31536000; SameSite=Lax; Domain=.example.com; Secure"
        );
        assert_eq!(
            cookie("tp_anon", "", None, 0, false),
            "tp_anon=; Path=/; Max-Age=0; SameSite=Lax"
        );
    }

    #[test]
    fn cookies_are_read_by_exact_name() {
        let all = "a=1; tp_anon_x=2; tp_anon=abc-1;b=";
        assert_eq!(read_cookie(all, "tp_anon"), Some("abc-1"));
        assert_eq!(read_cookie(all, "b"), None);
        assert_eq!(read_cookie("", "tp_anon"), None);
        assert!(!valid_id("a;b"));
    }
}
