//! Meta Conversions API settings.

use crate::config::ConfigError;
use crate::destinations::config::{required, var};
use secrecy::SecretString;

/// Meta destination settings.
#[derive(Clone, Debug)]
pub struct MetaConfig {
    /// Graph API host (`TOUCHPOINT_META_URL`, `https://graph.facebook.com`).
    pub url: String,
    /// Graph API version (`TOUCHPOINT_META_API_VERSION`, `v21.0`).
    pub api_version: String,
    /// Dataset / pixel id (`TOUCHPOINT_META_PIXEL_ID`; enables the destination).
    pub pixel_id: String,
    /// System-user access token (`TOUCHPOINT_META_ACCESS_TOKEN`).
    pub access_token: SecretString,
    /// Sends events as test events shown in Events Manager (`TOUCHPOINT_META_TEST_EVENT_CODE`).
    pub test_event_code: Option<String>,
}

impl MetaConfig {
    /// `None` unless `TOUCHPOINT_META_PIXEL_ID` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<MetaConfig>, ConfigError> {
        let Some(pixel_id) = var(get, "TOUCHPOINT_META_PIXEL_ID") else {
            return Ok(None);
        };
        Ok(Some(MetaConfig {
            url: var(get, "TOUCHPOINT_META_URL")
                .unwrap_or_else(|| "https://graph.facebook.com".into())
                .trim_end_matches('/')
                .to_owned(),
            api_version: var(get, "TOUCHPOINT_META_API_VERSION").unwrap_or_else(|| "v21.0".into()),
            pixel_id,
            access_token: required(
                get,
                "TOUCHPOINT_META_ACCESS_TOKEN",
                "TOUCHPOINT_META_PIXEL_ID",
            )?
            .into(),
            test_event_code: var(get, "TOUCHPOINT_META_TEST_EVENT_CODE"),
        }))
    }
}
