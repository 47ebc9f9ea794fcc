//! A tiny JSON writer and a splitter for stored arrays: serde_json would cost kilobytes of wasm.
//! Nothing here uses `core::fmt` or `str::find` (its two-way searcher is ~2 KB of wasm).

use alloc::string::String;
use alloc::vec::Vec;

/// Appends `s` as a quoted, escaped JSON string.
pub fn push_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                out.push_str("\\u00");
                out.push(hex_digit(c as u32 >> 4));
                out.push(hex_digit(c as u32 & 0xf));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// The lowercase hex digit of `n` (0–15).
pub fn hex_digit(n: u32) -> char {
    char::from_digit(n & 0xf, 16).unwrap_or('0')
}

/// Appends a non-negative integer without `core::fmt`.
pub fn push_uint(out: &mut String, n: u64) {
    if n >= 10 {
        push_uint(out, n / 10);
    }
    out.push(char::from(b'0' + (n % 10) as u8));
}

/// Parses a non-negative decimal integer without pulling in `core::num` parsing.
pub fn parse_uint(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 19 {
        return None;
    }
    s.bytes().try_fold(0u64, |n, b| {
        b.is_ascii_digit().then(|| n * 10 + u64::from(b - b'0'))
    })
}

/// The integer part (truncated toward zero) of a JSON number's text, without float parsing;
/// `None` for anything else (exponents included, `null` for NaN).
pub fn int_part(s: &str) -> Option<i64> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, s),
    };
    let b = digits.as_bytes();
    let end = b.iter().position(|&c| c == b'.').unwrap_or(b.len());
    let frac = b.get(end + 1..).unwrap_or_default();
    if !frac.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = i64::try_from(parse_uint(digits.get(..end)?)?).ok()?;
    Some(if neg { -n } else { n })
}

/// Writes a JSON object field by field: `Obj::new(&mut s).str("a", "b").raw("n", "1").end()`.
pub struct Obj<'a> {
    out: &'a mut String,
    empty: bool,
}

impl<'a> Obj<'a> {
    /// Opens an object.
    pub fn new(out: &'a mut String) -> Self {
        out.push('{');
        Obj { out, empty: true }
    }

    fn key(&mut self, k: &str) {
        if !self.empty {
            self.out.push(',');
        }
        self.empty = false;
        push_str(self.out, k);
        self.out.push(':');
    }

    /// A string field.
    pub fn str(mut self, k: &str, v: &str) -> Self {
        self.key(k);
        push_str(self.out, v);
        self
    }

    /// A string field, left out when `None`.
    pub fn opt_str(self, k: &str, v: Option<&str>) -> Self {
        match v {
            Some(v) => self.str(k, v),
            None => self,
        }
    }

    /// A field whose value is already JSON text; left out when empty.
    pub fn raw(mut self, k: &str, json: &str) -> Self {
        if !json.is_empty() {
            self.key(k);
            self.out.push_str(json);
        }
        self
    }

    /// Closes the object.
    pub fn end(self) {
        self.out.push('}');
    }
}

/// The top-level elements of a JSON array as slices of `s`; empty if `s` is not an array.
/// Only structure is checked (strings, nesting), which is all a queue written by this crate needs.
pub fn split_array(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let s_trim = s.trim_ascii();
    if !s_trim.starts_with('[') || !s_trim.ends_with(']') {
        return out;
    }
    let mut depth = 0usize;
    let mut in_str = false;
    let mut esc = false;
    let mut start = None;
    for (i, &c) in b.iter().enumerate() {
        if in_str {
            match c {
                _ if esc => esc = false,
                b'\\' => esc = true,
                b'"' => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'[' | b'{' => {
                if depth == 1 && start.is_none() {
                    start = Some(i);
                }
                depth += 1;
            }
            b']' | b'}' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    break;
                }
            }
            b',' if depth == 1 => {
                if let Some(st) = start.take() {
                    out.push(s.get(st..i).unwrap_or_default().trim_ascii());
                }
            }
            c if depth == 1 && start.is_none() && !c.is_ascii_whitespace() => start = Some(i),
            _ => {}
        }
        if depth == 0 {
            break;
        }
    }
    if let Some(st) = start {
        let end = b.iter().rposition(|&c| c == b']').unwrap_or(b.len());
        let last = s.get(st..end).unwrap_or_default().trim_ascii();
        if !last.is_empty() {
            out.push(last);
        }
    }
    out
}

/// The byte offset of the first `needle` in `hay` (a naive search: the texts here are short).
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.as_bytes()
        .windows(needle.len())
        .position(|w| w == needle.as_bytes())
}

/// Splits `s` at every `sep` (an ASCII byte). Like `str::split`, without its searcher's panic paths.
pub fn split_byte(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    core::iter::from_fn(move || {
        let r = rest?;
        match r.bytes().position(|b| b == sep) {
            Some(i) => {
                rest = r.get(i + 1..);
                r.get(..i)
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// `s` split at its first `sep` (an ASCII byte), like `str::split_once`.
pub fn split_once_byte(s: &str, sep: u8) -> Option<(&str, &str)> {
    let i = s.bytes().position(|b| b == sep)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// `s` with the first `from` replaced by `to` (unchanged when absent).
pub fn replace_first(s: &str, from: &str, to: &str) -> String {
    match find(s, from) {
        Some(i) => {
            let mut out = String::with_capacity(s.len() + to.len());
            out.push_str(s.get(..i).unwrap_or_default());
            out.push_str(to);
            out.push_str(s.get(i + from.len()..).unwrap_or_default());
            out
        }
        None => String::from(s),
    }
}

/// The raw (still escaped) value of the first `"key":"…"` string field in JSON text.
pub fn string_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut pat = String::with_capacity(key.len() + 4);
    push_str(&mut pat, key);
    pat.push_str(":\"");
    let start = find(json, &pat)? + pat.len();
    let rest = json.get(start..)?;
    let mut esc = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            '"' => return rest.get(..i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_escaped_like_json() {
        let mut s = String::new();
        push_str(&mut s, "a\"b\\c\nd\u{1}é");
        assert_eq!(s, r#""a\"b\\c\nd\u0001é""#);
    }

    #[test]
    fn integers_are_written_without_fmt() {
        for n in [0u64, 7, 10, 1920, u64::MAX] {
            let mut s = String::new();
            push_uint(&mut s, n);
            assert_eq!(s, n.to_string());
        }
    }

    #[test]
    fn unsigned_integers_parse_strictly() {
        assert_eq!(parse_uint("1700000000000"), Some(1_700_000_000_000));
        assert_eq!(parse_uint(""), None);
        assert_eq!(parse_uint("12a"), None);
        assert_eq!(parse_uint("-1"), None);
    }

    #[test]
    fn integer_parts_of_json_numbers() {
        assert_eq!(int_part("20"), Some(20));
        assert_eq!(int_part("-5"), Some(-5));
        assert_eq!(int_part("1.75"), Some(1));
        assert_eq!(int_part("-0.5"), Some(0));
        assert_eq!(int_part("1e21"), None);
        assert_eq!(int_part("null"), None);
        assert_eq!(int_part(""), None);
    }

    #[test]
    fn objects_skip_absent_and_empty_fields() {
        let mut s = String::new();
        Obj::new(&mut s)
            .str("type", "track")
            .opt_str("userId", None)
            .raw("properties", "{\"a\":1}")
            .raw("traits", "")
            .end();
        assert_eq!(s, r#"{"type":"track","properties":{"a":1}}"#);
    }

    #[test]
    fn arrays_split_into_their_top_level_elements() {
        let a = r#"[{"a":"x,]}"},{"b":[1,2]} , {"c":{"d":"\"}"}}]"#;
        assert_eq!(
            split_array(a),
            vec![r#"{"a":"x,]}"}"#, r#"{"b":[1,2]}"#, r#"{"c":{"d":"\"}"}}"#]
        );
        assert!(split_array("[]").is_empty());
        assert!(split_array("garbage").is_empty());
        assert!(split_array("").is_empty());
    }

    #[test]
    fn splitting_at_a_byte_matches_str_split() {
        for s in ["a&b&&c", "", "&", "abc", "é&ü="] {
            assert_eq!(
                split_byte(s, b'&').collect::<Vec<_>>(),
                s.split('&').collect::<Vec<_>>()
            );
            assert_eq!(split_once_byte(s, b'&'), s.split_once('&'));
        }
    }

    #[test]
    fn substrings_are_found_and_replaced_once() {
        assert_eq!(find("abcabc", "ca"), Some(2));
        assert_eq!(find("abc", "abcd"), None);
        assert_eq!(find("abc", ""), Some(0));
        assert_eq!(replace_first("x:1,x:1", "x:1", "y:22"), "y:22,x:1");
        assert_eq!(replace_first("é", "a", "b"), "é");
    }

    #[test]
    fn the_first_string_field_is_found_raw() {
        let m = r#"{"type":"track","messageId":"m-\"1","properties":{"messageId":"no"}}"#;
        assert_eq!(string_field(m, "messageId"), Some(r#"m-\"1"#));
        assert_eq!(string_field(m, "userId"), None);
    }
}
