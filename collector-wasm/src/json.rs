//! A tiny JSON writer and a splitter for stored arrays: serde_json would cost kilobytes of wasm.

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
pub fn push_uint(out: &mut String, mut n: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &b in &buf[i..] {
        out.push(b as char);
    }
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
    let s_trim = s.trim();
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
                    out.push(s[st..i].trim());
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
        let end = s.rfind(']').unwrap_or(s.len());
        let last = s[st..end].trim();
        if !last.is_empty() {
            out.push(last);
        }
    }
    out
}

/// The raw (still escaped) value of the first `"key":"…"` string field in JSON text.
pub fn string_field<'a>(json: &'a str, key: &str) -> Option<&'a str> {
    let mut pat = String::with_capacity(key.len() + 4);
    push_str(&mut pat, key);
    pat.push_str(":\"");
    let start = json.find(&pat)? + pat.len();
    let rest = &json[start..];
    let mut esc = false;
    for (i, c) in rest.char_indices() {
        match c {
            _ if esc => esc = false,
            '\\' => esc = true,
            '"' => return Some(&rest[..i]),
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
    fn the_first_string_field_is_found_raw() {
        let m = r#"{"type":"track","messageId":"m-\"1","properties":{"messageId":"no"}}"#;
        assert_eq!(string_field(m, "messageId"), Some(r#"m-\"1"#));
        assert_eq!(string_field(m, "userId"), None);
    }
}
