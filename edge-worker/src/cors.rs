//! CORS for the first-party collection path, decided from an allow-list. The site's own origin and
//! the origins listed in `ALLOWED_ORIGINS` (e.g. a sibling subdomain running the SDK) get their
//! origin echoed with `Access-Control-Allow-Credentials: true`, so the `tp_sid` cookie works. Any
//! other origin gets no CORS headers at all: its scripts cannot read the worker's answers, and the
//! browser never shares credentials with it. (Not `*` either: the worker's answers carry the
//! visitor's cookie state, and core's own `/v1/*` is the credential-free endpoint for third-party
//! sites.)

/// What the worker answers to a request's `Origin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CorsAnswer {
    /// Echo this origin, with credentials.
    Allow(String),
    /// No CORS headers (only `Vary: Origin`).
    Deny,
}

/// Decides the CORS answer for `origin` on a request to `own_origin` (the worker's URL's origin)
/// with the configured allow-list (normalised by [`parse_origin`]).
pub fn answer(origin: &str, own_origin: &str, allowed: &[String]) -> CorsAnswer {
    let Some(origin) = parse_origin(origin) else {
        return CorsAnswer::Deny;
    };
    let own = parse_origin(own_origin);
    if own.as_deref() == Some(origin.as_str()) || allowed.contains(&origin) {
        CorsAnswer::Allow(origin)
    } else {
        CorsAnswer::Deny
    }
}

/// A serialised origin (`scheme://host[:port]`, http or https) in canonical form: lower case, no
/// trailing slash, no default port. `None` for anything else (`null`, paths, wildcards, userinfo).
pub fn parse_origin(text: &str) -> Option<String> {
    let text = text.trim().trim_end_matches('/');
    let (scheme, rest) = text.split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "https" => ":443",
        "http" => ":80",
        _ => return None,
    };
    let host = rest.to_ascii_lowercase();
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
        && !host.starts_with(':');
    if !valid {
        return None;
    }
    let host = host.strip_suffix(default_port).unwrap_or(&host);
    Some(format!("{scheme}://{host}"))
}

/// Parses `ALLOWED_ORIGINS` (comma-separated origins); the first invalid entry is the error.
pub fn parse_allow_list(text: &str) -> Result<Vec<String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_origin(s).ok_or_else(|| s.to_owned()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_sites_own_origin_is_always_allowed_with_credentials() {
        assert_eq!(
            answer("https://www.example.com", "https://www.example.com", &[]),
            CorsAnswer::Allow("https://www.example.com".into())
        );
        assert_eq!(
            answer(
                "https://WWW.example.com:443",
                "https://www.example.com",
                &[]
            ),
            CorsAnswer::Allow("https://www.example.com".into())
        );
    }

    #[test]
    fn listed_origins_are_allowed_and_nothing_else_is() {
        let allowed = list(&["https://app.example.com"]);
        let own = "https://www.example.com";
        assert_eq!(
            answer("https://app.example.com", own, &allowed),
            CorsAnswer::Allow("https://app.example.com".into())
        );
        for other in [
            "https://evil.example",
            "http://app.example.com",
            "https://app.example.com.evil.example",
            "https://app.example.com:8443",
            "null",
            "",
            "*",
        ] {
            assert_eq!(answer(other, own, &allowed), CorsAnswer::Deny, "{other}");
        }
    }

    #[test]
    fn origins_are_normalised_and_junk_is_refused() {
        assert_eq!(
            parse_origin("HTTP://Localhost:80/").as_deref(),
            Some("http://localhost")
        );
        assert_eq!(
            parse_origin("http://127.0.0.1:8787").as_deref(),
            Some("http://127.0.0.1:8787")
        );
        for junk in [
            "example.com",
            "ftp://example.com",
            "https://",
            "https://a.example/path",
            "https://user@a.example",
            "https://*.example.com",
        ] {
            assert_eq!(parse_origin(junk), None, "{junk}");
        }
    }

    #[test]
    fn the_allow_list_is_comma_separated_and_names_a_bad_entry() {
        assert_eq!(
            parse_allow_list(" https://a.example.com, https://b.example.com/ ,").unwrap(),
            list(&["https://a.example.com", "https://b.example.com"])
        );
        assert_eq!(parse_allow_list("").unwrap(), Vec::<String>::new());
        assert_eq!(
            parse_allow_list("https://a.example.com,*").unwrap_err(),
            "*"
        );
    }
}
