//! Segment's settings document as the edge serves it (`GET {path}/v1/projects/{writeKey}/settings`):
//! core's document, with the `Segment.io` integration's `apiHost` and `protocol` (and the
//! telemetry host) pointed at the worker's own first-party path, so analytics.js loaded with
//! `cdnURL: "https://site/{path}"` sends everything through the edge.

use serde_json::Value;

/// Why core's answer could not be served.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// Core's body is not a settings document.
    #[error("core's settings document is not a JSON object with integrations: {0}")]
    NotADocument(String),
    /// The worker's own origin is not `http(s)://host[:port]`.
    #[error("cannot use {0:?} as an apiHost")]
    Origin(String),
}

/// The `apiHost` (no scheme) and `protocol` for the worker at `origin` (`https://www.example.com`)
/// under `prefix` (normalised, e.g. `/px`).
pub fn edge_api_host(origin: &str, prefix: &str) -> Result<(String, &'static str), SettingsError> {
    let (protocol, host) = if let Some(h) = origin.strip_prefix("https://") {
        ("https", h)
    } else if let Some(h) = origin.strip_prefix("http://") {
        ("http", h)
    } else {
        return Err(SettingsError::Origin(origin.to_owned()));
    };
    if host.is_empty() || host.contains(['/', '@', '?', '#', ' ']) {
        return Err(SettingsError::Origin(origin.to_owned()));
    }
    let prefix = prefix.trim_end_matches('/');
    Ok((format!("{host}{prefix}/v1"), protocol))
}

/// Rewrites core's settings document (`body`) for the edge at `origin` under `prefix`; returns
/// the JSON to serve.
pub fn point_at_edge(body: &[u8], origin: &str, prefix: &str) -> Result<Vec<u8>, SettingsError> {
    let (api_host, protocol) = edge_api_host(origin, prefix)?;
    let mut doc: Value =
        serde_json::from_slice(body).map_err(|e| SettingsError::NotADocument(e.to_string()))?;
    let Some(segment) = doc
        .get_mut("integrations")
        .and_then(|i| i.get_mut("Segment.io"))
        .and_then(Value::as_object_mut)
    else {
        return Err(SettingsError::NotADocument(
            "no integrations[\"Segment.io\"]".into(),
        ));
    };
    segment.insert("apiHost".into(), Value::String(api_host.clone()));
    segment.insert("protocol".into(), Value::String(protocol.into()));
    if let Some(metrics) = doc.get_mut("metrics").and_then(Value::as_object_mut) {
        metrics.insert("host".into(), Value::String(api_host));
    }
    serde_json::to_vec(&doc).map_err(|e| SettingsError::NotADocument(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_api_host_is_the_site_and_the_collection_path() {
        assert_eq!(
            edge_api_host("https://www.example.com", "/px").unwrap(),
            ("www.example.com/px/v1".into(), "https")
        );
        assert_eq!(
            edge_api_host("http://127.0.0.1:8787", "/").unwrap(),
            ("127.0.0.1:8787/v1".into(), "http")
        );
        assert!(edge_api_host("null", "/px").is_err());
        assert!(edge_api_host("https://a@b", "/px").is_err());
    }

    #[test]
    fn cores_document_is_pointed_at_the_edge_and_kept_otherwise() {
        let core = json!({
            "integrations": {"Segment.io": {"apiKey": "wk", "apiHost": "core.internal:8080/v1", "protocol": "http"}},
            "plan": {"track": {"__default": {"enabled": true}}},
            "metrics": {"sampleRate": 0, "host": "core.internal:8080/v1"},
        });
        let out = point_at_edge(
            core.to_string().as_bytes(),
            "https://www.example.com",
            "/px",
        )
        .unwrap();
        let doc: Value = serde_json::from_slice(&out).unwrap();
        let seg = &doc["integrations"]["Segment.io"];
        assert_eq!(seg["apiHost"], "www.example.com/px/v1");
        assert_eq!(seg["protocol"], "https");
        assert_eq!(seg["apiKey"], "wk");
        assert_eq!(doc["metrics"]["host"], "www.example.com/px/v1");
        assert_eq!(doc["plan"], core["plan"]);
    }

    #[test]
    fn anything_else_is_refused() {
        assert!(point_at_edge(b"not json", "https://a.com", "/px").is_err());
        assert!(point_at_edge(b"{\"integrations\":{}}", "https://a.com", "/px").is_err());
    }
}
