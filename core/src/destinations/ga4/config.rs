//! GA4 Measurement Protocol settings.

use crate::config::ConfigError;
use crate::destinations::config::{required, var};
use secrecy::SecretString;

/// GA4 destination settings.
#[derive(Clone, Debug)]
pub struct Ga4Config {
    /// Collection host (`TOUCHPOINT_GA4_URL`, `https://www.google-analytics.com`).
    pub url: String,
    /// Web stream measurement id, `G-…` (`TOUCHPOINT_GA4_MEASUREMENT_ID`; enables the destination).
    pub measurement_id: String,
    /// Measurement Protocol API secret (`TOUCHPOINT_GA4_API_SECRET`).
    pub api_secret: SecretString,
}

impl Ga4Config {
    /// `None` unless `TOUCHPOINT_GA4_MEASUREMENT_ID` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Ga4Config>, ConfigError> {
        let Some(measurement_id) = var(get, "TOUCHPOINT_GA4_MEASUREMENT_ID") else {
            return Ok(None);
        };
        Ok(Some(Ga4Config {
            url: var(get, "TOUCHPOINT_GA4_URL")
                .unwrap_or_else(|| "https://www.google-analytics.com".into())
                .trim_end_matches('/')
                .to_owned(),
            measurement_id,
            api_secret: required(
                get,
                "TOUCHPOINT_GA4_API_SECRET",
                "TOUCHPOINT_GA4_MEASUREMENT_ID",
            )?
            .into(),
        }))
    }

    /// Settings for a base URL (tests, CLI).
    pub fn new(url: &str, measurement_id: &str, api_secret: &str) -> Ga4Config {
        Ga4Config {
            url: url.trim_end_matches('/').to_owned(),
            measurement_id: measurement_id.into(),
            api_secret: api_secret.into(),
        }
    }
}
