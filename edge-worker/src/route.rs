//! Which request is which, under the configured collection path (e.g. `/px`).
//!
//! - `GET|HEAD {path}/sdk/{file}` — the browser SDK, proxied from core;
//! - `POST {path}/v1/batch` (and `/v1/import`, and `/v1/b` as analytics.js 2.0 batches) — a
//!   Segment batch;
//! - `POST {path}/v1/{track,page,screen,identify,group,alias}` — one message, also under
//!   analytics.js 2.0's short paths `/v1/{t,p,s,i,g,a}`;
//! - `GET|HEAD {path}/v1/projects/{writeKey}/settings` — Segment's settings document, from core,
//!   pointed at this path (so analytics.js's `cdnURL` can be `https://site/{path}`);
//! - `OPTIONS {path}/…` — a CORS preflight.

use touchpoint_tracking_plan::MessageType;

/// The request methods the worker tells apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD.
    Head,
    /// POST.
    Post,
    /// OPTIONS.
    Options,
    /// Anything else.
    Other,
}

impl Method {
    /// From the method name.
    pub fn parse(s: &str) -> Method {
        match s.to_ascii_uppercase().as_str() {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// An SDK file, by its path below `sdk/` (already checked to be a safe relative path).
    Sdk(String),
    /// A batch of messages.
    Batch,
    /// One message of a type.
    Single(MessageType),
    /// Segment's settings document for a write key (checked to be a plain path segment).
    Settings(String),
    /// A CORS preflight.
    Preflight,
    /// A known path with the wrong method.
    MethodNotAllowed,
    /// Not a path the worker serves.
    NotFound,
}

/// Normalises a configured collection path: one leading `/`, no trailing `/`.
pub fn normalise_prefix(path: &str) -> String {
    let trimmed = path.trim().trim_matches('/');
    format!("/{trimmed}")
}

/// Routes `path` (the URL path, without query) under `prefix` (normalised).
pub fn route(prefix: &str, method: Method, path: &str) -> Route {
    let Some(rest) = path.strip_prefix(prefix) else {
        return Route::NotFound;
    };
    if prefix != "/" && !rest.is_empty() && !rest.starts_with('/') {
        return Route::NotFound; // `/pxy` is not under `/px`
    }
    let rest = rest.trim_start_matches('/');
    if method == Method::Options {
        return Route::Preflight;
    }
    if let Some(file) = rest.strip_prefix("sdk/") {
        if !is_safe_file(file) {
            return Route::NotFound;
        }
        return match method {
            Method::Get | Method::Head => Route::Sdk(file.to_owned()),
            _ => Route::MethodNotAllowed,
        };
    }
    let Some(endpoint) = rest.strip_prefix("v1/") else {
        return Route::NotFound;
    };
    if let Some(key) = endpoint
        .strip_prefix("projects/")
        .and_then(|r| r.strip_suffix("/settings"))
    {
        if !is_write_key_segment(key) {
            return Route::NotFound;
        }
        return match method {
            Method::Get | Method::Head => Route::Settings(key.to_owned()),
            _ => Route::MethodNotAllowed,
        };
    }
    let target = match endpoint.trim_end_matches('/') {
        "batch" | "import" | "b" => Route::Batch,
        "t" => Route::Single(MessageType::Track),
        "p" => Route::Single(MessageType::Page),
        "s" => Route::Single(MessageType::Screen),
        "i" => Route::Single(MessageType::Identify),
        "g" => Route::Single(MessageType::Group),
        "a" => Route::Single(MessageType::Alias),
        other => match MessageType::parse(other) {
            Some(kind) if kind.as_str() == other => Route::Single(kind),
            _ => return Route::NotFound,
        },
    };
    if method == Method::Post {
        target
    } else {
        Route::MethodNotAllowed
    }
}

/// A write key as one URL path segment: 1–200 characters of `[A-Za-z0-9._-]`.
fn is_write_key_segment(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// A relative file path made of `[A-Za-z0-9._-]` segments, none of them `.` or `..`.
fn is_safe_file(file: &str) -> bool {
    !file.is_empty()
        && file.len() <= 200
        && file.split('/').all(|seg| {
            !seg.is_empty()
                && seg != "."
                && seg != ".."
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        })
}

/// Path segments that ad-block filter lists (EasyPrivacy and the like) match generically, or that
/// name an analytics vendor: a collection path containing one is likely blocked in the browser.
pub const AD_BLOCKED_NAMES: &[&str] = &[
    "track",
    "tracking",
    "tracker",
    "collect",
    "collector",
    "analytics",
    "analytic",
    "beacon",
    "segment",
    "t",
    "i",
    "pixel",
    "metrics",
    "telemetry",
    "stats",
    "statistics",
    "event",
    "events",
    "log",
    "logs",
    "hit",
    "ga",
    "gtm",
    "gtag",
    "pageview",
    "tp",
    "touchpoint",
    "rudder",
    "rudderstack",
    "snowplow",
    "matomo",
    "piwik",
    "mixpanel",
    "amplitude",
    "heap",
    "posthog",
    "jitsu",
    "plausible",
    "umami",
    "fathom",
    "counter",
    "ingest",
];

/// The ad-blocked name a collection path uses, if any (case-insensitive; a segment that contains one
/// of the longer names, like `/site-analytics`, counts too).
pub fn ad_blocked_name(path: &str) -> Option<&'static str> {
    path.split('/')
        .filter(|seg| !seg.is_empty())
        .map(str::to_ascii_lowercase)
        .find_map(|seg| {
            AD_BLOCKED_NAMES
                .iter()
                .copied()
                .find(|name| seg == *name || (name.len() >= 5 && seg.contains(name)))
        })
}

/// The `Content-Type` for an SDK file, from its extension (when core does not say).
pub fn content_type_for(file: &str) -> &'static str {
    match file.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("json" | "map") => "application/json",
        Some("md") => "text/markdown; charset=utf-8",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_under_the_prefix_are_routed() {
        let p = "/px";
        assert_eq!(route(p, Method::Post, "/px/v1/batch"), Route::Batch);
        assert_eq!(route(p, Method::Post, "/px/v1/import"), Route::Batch);
        assert_eq!(
            route(p, Method::Post, "/px/v1/track"),
            Route::Single(MessageType::Track)
        );
        assert_eq!(
            route(p, Method::Post, "/px/v1/alias"),
            Route::Single(MessageType::Alias)
        );
        assert_eq!(
            route(p, Method::Get, "/px/sdk/touchpoint.js"),
            Route::Sdk("touchpoint.js".into())
        );
        assert_eq!(
            route(p, Method::Get, "/px/sdk/v1/collector_bg.wasm"),
            Route::Sdk("v1/collector_bg.wasm".into())
        );
        assert_eq!(route(p, Method::Options, "/px/v1/batch"), Route::Preflight);
    }

    #[test]
    fn analytics_js_short_paths_and_settings_are_routed() {
        let p = "/px";
        assert_eq!(route(p, Method::Post, "/px/v1/b"), Route::Batch);
        for (short, kind) in [
            ("t", MessageType::Track),
            ("p", MessageType::Page),
            ("s", MessageType::Screen),
            ("i", MessageType::Identify),
            ("g", MessageType::Group),
            ("a", MessageType::Alias),
        ] {
            assert_eq!(
                route(p, Method::Post, &format!("/px/v1/{short}")),
                Route::Single(kind)
            );
        }
        assert_eq!(
            route(p, Method::Get, "/px/v1/projects/wk_1/settings"),
            Route::Settings("wk_1".into())
        );
        assert_eq!(
            route(p, Method::Post, "/px/v1/projects/wk_1/settings"),
            Route::MethodNotAllowed
        );
        for bad in [
            "/px/v1/projects//settings",
            "/px/v1/projects/a/b/settings",
            "/px/v1/projects/%2e%2e/settings",
        ] {
            assert_eq!(route(p, Method::Get, bad), Route::NotFound, "{bad}");
        }
        assert_eq!(route(p, Method::Get, "/px/v1/t"), Route::MethodNotAllowed);
    }

    #[test]
    fn other_paths_and_methods_are_refused() {
        let p = "/px";
        assert_eq!(route(p, Method::Post, "/v1/batch"), Route::NotFound);
        assert_eq!(route(p, Method::Post, "/pxy/v1/batch"), Route::NotFound);
        assert_eq!(route(p, Method::Post, "/px/v1/purchase"), Route::NotFound);
        assert_eq!(route(p, Method::Post, "/px/v1/Track"), Route::NotFound);
        assert_eq!(
            route(p, Method::Get, "/px/v1/batch"),
            Route::MethodNotAllowed
        );
        assert_eq!(
            route(p, Method::Post, "/px/sdk/a.js"),
            Route::MethodNotAllowed
        );
    }

    #[test]
    fn sdk_paths_cannot_escape_the_sdk_folder() {
        let p = "/px";
        for bad in [
            "/px/sdk/../admin/sources",
            "/px/sdk/./a.js",
            "/px/sdk/",
            "/px/sdk/a%2e%2e",
            "/px/sdk//a.js",
        ] {
            assert_eq!(route(p, Method::Get, bad), Route::NotFound, "{bad}");
        }
    }

    #[test]
    fn sdk_files_get_their_content_type() {
        assert_eq!(content_type_for("a.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type_for("v1/a_bg.wasm"), "application/wasm");
        assert_eq!(content_type_for("README"), "application/octet-stream");
    }

    #[test]
    fn the_prefix_is_normalised() {
        assert_eq!(normalise_prefix("px/"), "/px");
        assert_eq!(normalise_prefix("/a/b"), "/a/b");
    }

    #[test]
    fn the_default_path_is_not_on_ad_block_lists_and_the_usual_ones_are() {
        assert_eq!(ad_blocked_name(crate::config::DEFAULT_COLLECT_PATH), None);
        for listed in [
            "/track",
            "/collect",
            "/analytics",
            "/beacon",
            "/segment",
            "/t",
            "/i",
            "/js/site-analytics",
            "/Tracking",
        ] {
            assert!(ad_blocked_name(listed).is_some(), "{listed}");
        }
    }
}
