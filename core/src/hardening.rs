//! HTTP hardening shared by every route: the request body cap, extractors whose errors are JSON
//! like every other API error ([`Query`], [`Path`], [`JsonBody`]), and the security headers of the
//! admin pages — a Content-Security-Policy allowing only the page's own inline scripts and styles
//! (by hash), no framing (`frame-ancestors 'none'`, `X-Frame-Options: DENY`), no MIME sniffing and
//! no referrer. The request timeout is applied in `startup::router` around every route but the
//! debugger's SSE stream.

use axum::body::{Body, to_bytes};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use sha2::{Digest, Sha256};

/// The largest request body any route reads, unless it sets a smaller limit of its own (ingest:
/// 32 KB per message, 500 KB per batch; the development webhook sink: 512 KB).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Whether the request declares (by `Content-Length`) a body larger than `limit`: such a request
/// is refused from its header alone, before any of the body is read.
pub fn declares_more_than(headers: &axum::http::HeaderMap, limit: usize) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .is_some_and(|n| n > limit as u64)
}

/// An extractor's rejection as the JSON every API error is (`{"error": "…", "code": "…"}`), with the
/// status axum chose, instead of axum's plain text.
fn json_rejection(status: StatusCode, text: String, code: &'static str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": text, "code": code})),
    )
        .into_response()
}

/// The answer to a path no route serves: `404 {"error": "…", "code": "not_found"}`, not an
/// empty body.
pub async fn no_route() -> Response {
    json_rejection(
        StatusCode::NOT_FOUND,
        "no route serves this path".into(),
        "not_found",
    )
}

/// `axum::extract::Query`, but a query string that does not fit `T` (`?limit=abc`) is answered
/// `400 {"error": "…", "code": "bad_query"}` as every other API error is, not in plain text.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

/// `axum::extract::Path`, but a path parameter that does not fit `T` (a profile id that is not
/// one) is answered `400 {"error": "…", "code": "bad_path"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> axum::extract::FromRequestParts<S> for Path<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Path(value)),
            Err(r) => Err(json_rejection(r.status(), r.body_text(), "bad_path")),
        }
    }
}

/// `axum::Json` as a request body, but a body that is not JSON or does not fit `T` is answered
/// with axum's status (400, 415 or 422) and `{"error": "…", "code": "bad_json"}`.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> axum::extract::FromRequest<S> for JsonBody<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(JsonBody(value)),
            Err(r) => Err(json_rejection(r.status(), r.body_text(), "bad_json")),
        }
    }
}

impl<T, S> axum::extract::FromRequestParts<S> for Query<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = Response;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Query(value)),
            Err(r) => Err(json_rejection(r.status(), r.body_text(), "bad_query")),
        }
    }
}

/// The largest HTML page the header middleware buffers to hash its inline scripts (pages are
/// compiled-in assets of a few KB).
const MAX_PAGE_BYTES: usize = 1024 * 1024;

/// Turns the few answers the HTTP layers write themselves (tower-http's 413 for a body over the
/// limit, in plain text; the timeout's empty 408; axum's empty 405 for a method a route does not
/// take) into JSON `{"error", "code"}` like every other error, keeping `Allow`.
/// Handlers' own answers, already JSON, pass unchanged. (Not `method_not_allowed_fallback`: it
/// would answer CORS preflights before the CORS layer sees them.)
pub async fn json_layer_errors(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("application/json"));
    if json {
        return response;
    }
    let (text, code) = match response.status() {
        StatusCode::PAYLOAD_TOO_LARGE => (
            "the request body is larger than this route takes",
            "too_large",
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "the request took longer than the server's timeout",
            "timeout",
        ),
        StatusCode::METHOD_NOT_ALLOWED => {
            ("this route does not take this method", "method_not_allowed")
        }
        _ => return response,
    };
    let mut out = json_rejection(response.status(), text.into(), code);
    if let Some(allow) = response.headers().get(header::ALLOW) {
        out.headers_mut().insert(header::ALLOW, allow.clone());
    }
    out
}

/// Paths of HTML pages that are not admin pages: the demo page runs the public SDK snippet and is
/// meant to be copied onto other sites, so it gets no admin policy.
const NOT_ADMIN_PAGES: &[&str] = &["/demo"];

/// Adds `X-Content-Type-Options: nosniff` to every response and, to every HTML page except the
/// demo, a Content-Security-Policy built from the page itself plus `X-Frame-Options: DENY` and
/// `Referrer-Policy: no-referrer`.
pub async fn security_headers(req: Request, next: Next) -> Response {
    let admin_page = !NOT_ADMIN_PAGES.contains(&req.uri().path());
    let mut response = next.run(req).await;
    response
        .headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    let html = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/html"));
    if !admin_page || !html {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_PAGE_BYTES).await else {
        tracing::error!("an admin page is larger than the security-header buffer");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let policy = content_security_policy(&String::from_utf8_lossy(&bytes));
    let h = &mut parts.headers;
    match HeaderValue::from_str(&policy) {
        Ok(v) => {
            h.insert(header::CONTENT_SECURITY_POLICY, v);
        }
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    Response::from_parts(parts, Body::from(bytes))
}

/// The policy of an admin page: everything from this origin only; inline `<script>` and `<style>`
/// elements and `style="…"` attributes allowed by their SHA-256 (never `'unsafe-inline'`); no
/// plugins, no `<base>`, forms post here only, and no page may frame it.
pub fn content_security_policy(html: &str) -> String {
    let hashes = |texts: Vec<&str>| {
        let mut out: Vec<String> = texts.into_iter().map(csp_hash).collect();
        out.sort();
        out.dedup();
        out.iter().map(|h| format!(" '{h}'")).collect::<String>()
    };
    let scripts = hashes(inline_elements(html, "script"));
    let attributes = style_attributes(html);
    let unsafe_hashes = if attributes.is_empty() {
        ""
    } else {
        " 'unsafe-hashes'"
    };
    let mut style_texts = inline_elements(html, "style");
    style_texts.extend(attributes);
    let styles = hashes(style_texts);
    format!(
        "default-src 'self'; script-src 'self'{scripts}; style-src 'self'{unsafe_hashes}{styles}; \
         connect-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; \
         form-action 'self'; frame-ancestors 'none'"
    )
}

/// `sha256-…` of an inline text as the browser hashes it (line breaks normalised to `\n`).
fn csp_hash(text: &str) -> String {
    let digest = if text.contains('\r') {
        Sha256::digest(text.replace("\r\n", "\n").replace('\r', "\n").as_bytes())
    } else {
        Sha256::digest(text.as_bytes())
    };
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(digest)
    )
}

/// The text of every `<tag>…</tag>` element without a `src` attribute (inline scripts or styles).
fn inline_elements<'a>(html: &'a str, tag: &str) -> Vec<&'a str> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let close = format!("</{tag}");
    let mut out = Vec::new();
    let mut from = 0;
    // Bounded: every iteration moves `from` forward.
    while let Some(at) = lower[from..].find(&open).map(|i| from + i) {
        let after_name = at + open.len();
        let Some(tag_end) = lower[after_name..].find('>').map(|i| after_name + i) else {
            break;
        };
        let attributes = &lower[after_name..tag_end];
        if !attributes.is_empty() && !attributes.starts_with(|c: char| c.is_ascii_whitespace()) {
            from = after_name; // e.g. `<scripts>` or `<styles>`: another element
            continue;
        }
        let Some(end) = lower[tag_end + 1..].find(&close).map(|i| tag_end + 1 + i) else {
            break;
        };
        if !has_attribute(attributes, "src") {
            out.push(&html[tag_end + 1..end]);
        }
        from = end + close.len();
    }
    out
}

fn has_attribute(attributes: &str, name: &str) -> bool {
    attributes
        .split(|c: char| c.is_ascii_whitespace())
        .any(|a| a == name || a.starts_with(&format!("{name}=")))
}

/// The values of `style="…"` / `style='…'` attributes.
fn style_attributes(html: &str) -> Vec<&str> {
    let lower = html.to_ascii_lowercase();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(at) = lower[from..].find("style=").map(|i| from + i) {
        from = at + "style=".len();
        let preceded_by_space = lower[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_ascii_whitespace());
        let Some(quote) = html[from..]
            .chars()
            .next()
            .filter(|c| *c == '"' || *c == '\'')
        else {
            continue;
        };
        let Some(end) = html[from + 1..].find(quote).map(|i| from + 1 + i) else {
            break;
        };
        if preceded_by_space {
            out.push(&html[from + 1..end]);
        }
        from = end + 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_query_string_that_does_not_fit_is_answered_400_in_json() {
        use axum::extract::FromRequestParts;
        #[derive(Debug, serde::Deserialize)]
        struct Limit {
            limit: Option<u32>,
        }
        let parts = |uri: &str| Request::get(uri).body(()).unwrap().into_parts().0;
        let Query(ok) = Query::<Limit>::from_request_parts(&mut parts("/x?limit=5"), &())
            .await
            .unwrap();
        assert_eq!(ok.limit, Some(5));
        let refused = Query::<Limit>::from_request_parts(&mut parts("/x?limit=abc"), &())
            .await
            .unwrap_err();
        assert_eq!(refused.status(), StatusCode::BAD_REQUEST);
        let body = to_bytes(refused.into_body(), 4096).await.unwrap();
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["code"], "bad_query");
        assert!(body["error"].as_str().unwrap().contains("limit"), "{body}");
    }

    #[tokio::test]
    async fn a_body_that_is_not_the_expected_json_is_answered_in_json() {
        use axum::extract::FromRequest;
        #[derive(Debug, serde::Deserialize)]
        struct Named {
            name: String,
        }
        let request = |body: &'static str| {
            Request::post("/x")
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(body))
                .unwrap()
        };
        let JsonBody(ok) = JsonBody::<Named>::from_request(request(r#"{"name":"a"}"#), &())
            .await
            .unwrap();
        assert_eq!(ok.name, "a");
        for (body, status) in [
            ("{", StatusCode::BAD_REQUEST),
            (r#"{"name":1}"#, StatusCode::UNPROCESSABLE_ENTITY),
        ] {
            let refused = JsonBody::<Named>::from_request(request(body), &())
                .await
                .unwrap_err();
            assert_eq!(refused.status(), status, "{body}");
            let text = to_bytes(refused.into_body(), 4096).await.unwrap();
            let json: serde_json::Value = serde_json::from_slice(&text).unwrap();
            assert_eq!(json["code"], "bad_json", "{body}");
        }
    }

    #[test]
    fn inline_scripts_are_found_and_scripts_with_a_src_are_not() {
        let html = "<script src=\"/assets/admin.js\"></script>\n<SCRIPT type=\"module\">go()</SCRIPT>\
                    <scripts>x</scripts><script>\nlet a = 1;\n</script>";
        assert_eq!(
            inline_elements(html, "script"),
            vec!["go()", "\nlet a = 1;\n"]
        );
        assert!(inline_elements("<script>unterminated", "script").is_empty());
    }

    #[test]
    fn style_elements_and_attributes_are_found() {
        let html = r#"<style>h1{color:red}</style><h2 style="margin-top:1rem">x</h2><p data-style="no">
                      <section style='grid-column: 1 / -1'></section>"#;
        assert_eq!(inline_elements(html, "style"), vec!["h1{color:red}"]);
        assert_eq!(
            style_attributes(html),
            vec!["margin-top:1rem", "grid-column: 1 / -1"]
        );
    }

    #[test]
    fn hashes_match_what_browsers_compute() {
        // `echo -n 'alert(1)' | openssl dgst -sha256 -binary | base64`
        assert_eq!(
            csp_hash("alert(1)"),
            "sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI="
        );
        assert_eq!(csp_hash("a\r\nb"), csp_hash("a\nb"));
    }

    #[test]
    fn the_policy_allows_the_pages_own_inline_code_by_hash_and_forbids_framing() {
        let html = "<script>alert(1)</script><style>p{}</style><p style=\"x:y\"></p>";
        let csp = content_security_policy(html);
        assert!(csp.starts_with("default-src 'self'; "), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(
            csp.contains(
                "script-src 'self' 'sha256-bhHHL3z2vDgxUt0W3dWQOrprscmda2Y5pLsLg4GF+pI=';"
            ),
            "{csp}"
        );
        assert!(
            csp.contains("style-src 'self' 'unsafe-hashes' 'sha256-"),
            "{csp}"
        );
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert!(!csp.contains("unsafe-eval"), "{csp}");
    }

    #[test]
    fn a_page_without_inline_code_allows_only_its_own_origin() {
        let csp = content_security_policy("<script src=\"/a.js\"></script>");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("style-src 'self';"), "{csp}");
    }

    #[test]
    fn every_admin_page_gets_a_policy_without_unsafe_inline() {
        let csp = content_security_policy(crate::debugger::PAGE);
        assert!(csp.contains("script-src 'self' 'sha256-"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        // The console pages carry no inline code at all: their scripts and styles are files.
        for page in [
            include_str!("../assets/profiles.html"),
            include_str!("../assets/audiences.html"),
            include_str!("../assets/builder.html"),
            include_str!("../assets/plan.html"),
            include_str!("../assets/pipeline.html"),
            include_str!("../assets/destinations.html"),
        ] {
            let csp = content_security_policy(page);
            assert!(csp.contains("script-src 'self';"), "{csp}");
            assert!(csp.contains("style-src 'self';"), "{csp}");
        }
    }

    #[test]
    fn a_declared_body_over_the_limit_is_recognised_from_the_header() {
        let mut h = axum::http::HeaderMap::new();
        assert!(!declares_more_than(&h, 10));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("10"));
        assert!(!declares_more_than(&h, 10));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("11"));
        assert!(declares_more_than(&h, 10));
        h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("junk"));
        assert!(!declares_more_than(&h, 10));
    }
}
