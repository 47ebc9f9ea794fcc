//! Serves the browser SDK built by `scripts/build-sdk.sh` (`/sdk/*`, from `TOUCHPOINT_SDK_DIR`), the
//! tracking plan for the SDK's dev build (`/sdk/plan.md`), the `/demo` page, and CORS for `/v1/*`
//! so the SDK can post from a site on another origin.

use crate::state::AppState;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderName, Method, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use std::time::Duration;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The demo page: the snippet, the seed-000 story as buttons, and the anonymous id.
pub const DEMO_PAGE: &str = include_str!("../assets/demo.html");

/// The SDK routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sdk/plan.md", get(plan))
        .route("/sdk/{file}", get(file))
        .route("/demo", get(|| async { Html(DEMO_PAGE) }))
}

/// The content type of an SDK file, by extension; `None` for anything the SDK does not ship.
pub fn content_type(name: &str) -> Option<&'static str> {
    let ext = name.rsplit_once('.')?.1;
    Some(match ext {
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "wasm" => "application/wasm",
        "map" | "json" => "application/json",
        _ => return None,
    })
}

fn safe_name(name: &str) -> bool {
    !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

async fn file(State(state): State<AppState>, Path(name): Path<String>) -> Response {
    let (Some(ctype), true) = (content_type(&name), safe_name(&name)) else {
        return (StatusCode::NOT_FOUND, "no such SDK file\n").into_response();
    };
    let path = state.sdk_dir.join(&name);
    match tokio::fs::read(&path).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, ctype),
                // Names are not content-hashed: cache briefly, revalidate after.
                (header::CACHE_CONTROL, "public, max-age=300"),
                // The glue is an ES module imported by other origins' pages, which needs CORS.
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::debug!(path = %path.display(), error = %e, "sdk file missing");
            (
                StatusCode::NOT_FOUND,
                [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                format!(
                    "{name} is not built: run scripts/build-sdk.sh, or point TOUCHPOINT_SDK_DIR at a \
                     directory holding the SDK (now {})\n",
                    state.sdk_dir.display()
                ),
            )
                .into_response()
        }
    }
}

/// The tracking plan's markdown, for the SDK's dev build (`debug: true` without `devPlan`).
async fn plan(State(state): State<AppState>) -> Response {
    match tokio::fs::read_to_string(state.plan.path()).await {
        Ok(text) => (
            [
                (header::CONTENT_TYPE, "text/markdown; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
                (header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"),
            ],
            text,
        )
            .into_response(),
        Err(_) => (StatusCode::NOT_FOUND, "no tracking plan\n").into_response(),
    }
}

/// CORS for the public ingest endpoints: write keys are public, so any origin may post, without
/// credentials (`Access-Control-Allow-Origin: *`, never cookies). The browser SDK sends
/// `text/plain` (no preflight); other clients may preflight for JSON, gzip or Basic auth:
/// analytics.js 2.0 sends Basic auth and, on retries, `X-Retry-Count`; RudderStack's JavaScript SDK
/// sends `AnonymousId`, `SentAt` and `Rsa-*` retry headers, and Basic auth on its `GET
/// /sourceConfig`. Scripts may read `Retry-After` to back off after a 429 or 503.
pub fn cors() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::any())
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers([
            header::CONTENT_TYPE,
            header::CONTENT_ENCODING,
            header::AUTHORIZATION,
            HeaderName::from_static("x-retry-count"),
            HeaderName::from_static("anonymousid"),
            HeaderName::from_static("sentat"),
            HeaderName::from_static("rsa-recovered"),
            HeaderName::from_static("rsa-retry-attempt"),
            HeaderName::from_static("rsa-retry-reason"),
            HeaderName::from_static("rsa-since-first-attempt"),
            HeaderName::from_static("rsa-since-last-attempt"),
        ])
        .expose_headers([header::RETRY_AFTER])
        .max_age(Duration::from_secs(86_400))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_files_get_their_content_types() {
        assert_eq!(content_type("touchpoint_bg.wasm"), Some("application/wasm"));
        assert_eq!(
            content_type("touchpoint.dev.js"),
            Some("text/javascript; charset=utf-8")
        );
        assert_eq!(content_type("secret.env"), None);
        assert_eq!(content_type("noext"), None);
    }

    #[test]
    fn only_plain_file_names_are_served() {
        assert!(safe_name("touchpoint_bg.wasm"));
        assert!(!safe_name("../Cargo.toml"));
        assert!(!safe_name(".hidden.js"));
        assert!(!safe_name("a/b.js"));
    }
}
