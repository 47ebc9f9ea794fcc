//! Opaque page cursors: the sort key of the last item of a page (e.g. event time and log position,
//! or a profile id), as base64url JSON. Pages resume strictly after that key, so a cursor stays
//! valid and never repeats or skips an item that was there before it, whatever changes meanwhile.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// Encodes a key (its parts in order) as a cursor.
pub fn encode(parts: &[&str]) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(parts).unwrap_or_default())
}

/// Decodes a cursor into `n` key parts; `None` when it is not one of ours.
pub fn decode(cursor: &str, n: usize) -> Option<Vec<String>> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor.trim()).ok()?;
    let parts: Vec<String> = serde_json::from_slice(&bytes).ok()?;
    (parts.len() == n).then_some(parts)
}

/// A cursor of an (event time, log position) key.
pub fn encode_position(time: i64, seq: i64) -> String {
    encode(&[&time.to_string(), &seq.to_string()])
}

/// Decodes an (event time, log position) cursor.
pub fn decode_position(cursor: &str) -> Option<(i64, i64)> {
    let p = decode(cursor, 2)?;
    Some((p[0].parse().ok()?, p[1].parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn position_cursors_round_trip_and_are_url_safe() {
        let c = encode_position(1_700_000_000_000, 42);
        assert!(
            c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        assert_eq!(decode_position(&c), Some((1_700_000_000_000, 42)));
        assert_eq!(decode_position(&encode(&["x", "1"])), None);
    }

    #[test]
    fn foreign_or_damaged_cursors_are_refused() {
        assert_eq!(decode("", 1), None);
        assert_eq!(decode("not a cursor", 1), None);
        assert_eq!(decode(&encode(&["a", "b"]), 1), None);
        assert_eq!(decode_position("1700000000000_42"), None);
    }

    #[test]
    fn any_key_round_trips() {
        let long = "x".repeat(300);
        let keys = ["", "a", "é\"\\,:/\n", "user_id:u-1", "\u{0}", long.as_str()];
        for a in keys {
            for b in keys {
                assert_eq!(
                    decode(&encode(&[a, b]), 2),
                    Some(vec![a.to_owned(), b.to_owned()])
                );
            }
        }
    }
}
