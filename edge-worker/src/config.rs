//! The worker's configuration: `wrangler.toml` `[vars]` and the two secrets.

use crate::privacy::IpPrivacy;
use crate::route::{ad_blocked_name, normalise_prefix};

/// The default collection path: short and neutral (not a name ad-block lists match).
pub const DEFAULT_COLLECT_PATH: &str = "/px";
/// How long the worker waits for core before queueing a batch, in milliseconds.
pub const DEFAULT_CORE_TIMEOUT_MS: u64 = 3_000;

/// Typed configuration, read once per request from the Worker's environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Base URL of core, e.g. `https://cdp.internal.example.com` (`CORE_URL`, required).
    pub core_url: String,
    /// The first-party path everything is served under (`COLLECT_PATH`, default `/px`).
    pub collect_path: String,
    /// What to do with visitors' IP addresses (`IP_PRIVACY`: `truncate` (default), `full`, `drop`).
    pub ip_privacy: IpPrivacy,
    /// How long to wait for core before queueing (`CORE_TIMEOUT_MS`, default 3000).
    pub core_timeout_ms: u64,
    /// Parent domain for the `tp_sid` cookie (`COOKIE_DOMAIN`, default host-only).
    pub cookie_domain: Option<String>,
    /// Other origins whose pages may call the worker with credentials (`ALLOWED_ORIGINS`,
    /// comma-separated, e.g. `https://app.example.com`; default none). The site's own origin is
    /// always allowed; see [`crate::cors`].
    pub allowed_origins: Vec<String>,
}

/// A configuration mistake, reported as a 500 with this text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `CORE_URL` missing or not http(s).
    #[error("CORE_URL must be set to core's http(s) base URL")]
    CoreUrl,
    /// `IP_PRIVACY` is not one of the three settings.
    #[error("IP_PRIVACY must be truncate, full or drop, not {0:?}")]
    IpPrivacy(String),
    /// `COLLECT_PATH` uses a name ad blockers match.
    #[error("COLLECT_PATH {path:?} uses {name:?}, which ad-block lists match; pick a neutral path")]
    AdBlockedPath {
        /// The configured path.
        path: String,
        /// The listed name it contains.
        name: &'static str,
    },
    /// `CORE_TIMEOUT_MS` is not a positive number.
    #[error("CORE_TIMEOUT_MS must be a number of milliseconds between 1 and 30000")]
    Timeout,
    /// An `ALLOWED_ORIGINS` entry is not an origin.
    #[error(
        "ALLOWED_ORIGINS entry {0:?} is not an origin: list scheme://host[:port] values separated by commas (no wildcards)"
    )]
    AllowedOrigin(String),
}

impl EdgeConfig {
    /// Reads the configuration through `var` (the Worker's `env.var(..)` or a test map).
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<EdgeConfig, ConfigError> {
        let core_url = var("CORE_URL")
            .map(|u| u.trim().trim_end_matches('/').to_owned())
            .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
            .ok_or(ConfigError::CoreUrl)?;
        let collect_path = normalise_prefix(
            var("COLLECT_PATH")
                .as_deref()
                .unwrap_or(DEFAULT_COLLECT_PATH),
        );
        if let Some(name) = ad_blocked_name(&collect_path) {
            return Err(ConfigError::AdBlockedPath {
                path: collect_path,
                name,
            });
        }
        let ip_privacy = match var("IP_PRIVACY") {
            None => IpPrivacy::default(),
            Some(s) => IpPrivacy::parse(&s).ok_or(ConfigError::IpPrivacy(s))?,
        };
        let core_timeout_ms = match var("CORE_TIMEOUT_MS") {
            None => DEFAULT_CORE_TIMEOUT_MS,
            Some(s) => s
                .trim()
                .parse()
                .ok()
                .filter(|ms| (1..=30_000).contains(ms))
                .ok_or(ConfigError::Timeout)?,
        };
        let cookie_domain = var("COOKIE_DOMAIN").filter(|d| !d.trim().is_empty());
        let allowed_origins =
            crate::cors::parse_allow_list(var("ALLOWED_ORIGINS").as_deref().unwrap_or_default())
                .map_err(ConfigError::AllowedOrigin)?;
        Ok(EdgeConfig {
            core_url,
            collect_path,
            ip_privacy,
            core_timeout_ms,
            cookie_domain,
            allowed_origins,
        })
    }

    /// Core's edge intake URL.
    pub fn edge_batch_url(&self) -> String {
        format!("{}/v1/edge/batch", self.core_url)
    }

    /// Core's Segment settings document for a write key (already checked to be a plain segment).
    pub fn settings_url(&self, write_key: &str) -> String {
        format!("{}/v1/projects/{write_key}/settings", self.core_url)
    }

    /// Core's URL for an SDK file.
    pub fn sdk_url(&self, file: &str) -> String {
        format!("{}/sdk/{file}", self.core_url)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).into(), (*v).into()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn defaults_apply_when_only_core_url_is_set() {
        let c = EdgeConfig::from_vars(vars(&[("CORE_URL", "https://core.example.com/")])).unwrap();
        assert_eq!(c.core_url, "https://core.example.com");
        assert_eq!(c.collect_path, "/px");
        assert_eq!(c.ip_privacy, IpPrivacy::Truncate);
        assert_eq!(c.core_timeout_ms, 3000);
        assert!(c.allowed_origins.is_empty());
        assert_eq!(c.edge_batch_url(), "https://core.example.com/v1/edge/batch");
        assert_eq!(c.sdk_url("a.js"), "https://core.example.com/sdk/a.js");
        assert_eq!(
            c.settings_url("wk_1"),
            "https://core.example.com/v1/projects/wk_1/settings"
        );
    }

    #[test]
    fn mistakes_are_named() {
        assert_eq!(
            EdgeConfig::from_vars(vars(&[])).unwrap_err(),
            ConfigError::CoreUrl
        );
        let bad_path = EdgeConfig::from_vars(vars(&[
            ("CORE_URL", "http://c"),
            ("COLLECT_PATH", "/collect"),
        ]))
        .unwrap_err();
        assert!(bad_path.to_string().contains("ad-block"), "{bad_path}");
        assert!(matches!(
            EdgeConfig::from_vars(vars(&[("CORE_URL", "http://c"), ("IP_PRIVACY", "anon")])),
            Err(ConfigError::IpPrivacy(_))
        ));
        assert_eq!(
            EdgeConfig::from_vars(vars(&[("CORE_URL", "http://c"), ("CORE_TIMEOUT_MS", "0")]))
                .unwrap_err(),
            ConfigError::Timeout
        );
        assert_eq!(
            EdgeConfig::from_vars(vars(&[("CORE_URL", "http://c"), ("ALLOWED_ORIGINS", "*")]))
                .unwrap_err(),
            ConfigError::AllowedOrigin("*".into())
        );
    }
}
