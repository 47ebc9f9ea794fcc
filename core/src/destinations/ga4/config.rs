//! GA4 settings: the Measurement Protocol (delivery) and, optionally, the Analytics Admin API's
//! User Deletion (erasure requests), which needs OAuth rather than the Measurement Protocol secret.

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
    /// User deletion; `None` (erasures marked not supported) unless `TOUCHPOINT_GA4_PROPERTY_ID`
    /// is set.
    pub deletion: Option<Ga4Deletion>,
}

/// The Analytics Admin API's `properties/{id}:submitUserDeletion`, authorised with an OAuth refresh
/// token of a user (or app) holding the `https://www.googleapis.com/auth/analytics.edit` scope.
#[derive(Clone, Debug)]
pub struct Ga4Deletion {
    /// Admin API host (`TOUCHPOINT_GA4_ADMIN_URL`, `https://analyticsadmin.googleapis.com`).
    pub admin_url: String,
    /// OAuth token endpoint (`TOUCHPOINT_GA4_TOKEN_URL`, `https://oauth2.googleapis.com/token`).
    pub token_url: String,
    /// Numeric GA4 property id (`TOUCHPOINT_GA4_PROPERTY_ID`; enables deletions).
    pub property_id: String,
    /// OAuth client id (`TOUCHPOINT_GA4_CLIENT_ID`).
    pub client_id: String,
    /// OAuth client secret (`TOUCHPOINT_GA4_CLIENT_SECRET`).
    pub client_secret: SecretString,
    /// OAuth refresh token with the `analytics.edit` scope (`TOUCHPOINT_GA4_REFRESH_TOKEN`).
    pub refresh_token: SecretString,
}

impl Ga4Config {
    /// `None` unless `TOUCHPOINT_GA4_MEASUREMENT_ID` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<Ga4Config>, ConfigError> {
        let Some(measurement_id) = var(get, "TOUCHPOINT_GA4_MEASUREMENT_ID") else {
            return Ok(None);
        };
        let deletion = match var(get, "TOUCHPOINT_GA4_PROPERTY_ID") {
            None => None,
            Some(property_id) => {
                const BECAUSE: &str = "TOUCHPOINT_GA4_PROPERTY_ID";
                Some(Ga4Deletion {
                    admin_url: var(get, "TOUCHPOINT_GA4_ADMIN_URL")
                        .unwrap_or_else(|| "https://analyticsadmin.googleapis.com".into())
                        .trim_end_matches('/')
                        .to_owned(),
                    token_url: var(get, "TOUCHPOINT_GA4_TOKEN_URL")
                        .unwrap_or_else(|| "https://oauth2.googleapis.com/token".into()),
                    property_id: property_id.trim_start_matches("properties/").to_owned(),
                    client_id: required(get, "TOUCHPOINT_GA4_CLIENT_ID", BECAUSE)?,
                    client_secret: required(get, "TOUCHPOINT_GA4_CLIENT_SECRET", BECAUSE)?.into(),
                    refresh_token: required(get, "TOUCHPOINT_GA4_REFRESH_TOKEN", BECAUSE)?.into(),
                })
            }
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
            deletion,
        }))
    }

    /// Settings for a base URL, without user deletion (tests, CLI).
    pub fn new(url: &str, measurement_id: &str, api_secret: &str) -> Ga4Config {
        Ga4Config {
            url: url.trim_end_matches('/').to_owned(),
            measurement_id: measurement_id.into(),
            api_secret: api_secret.into(),
            deletion: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn user_deletion_is_enabled_by_a_property_id_and_needs_oauth_credentials() {
        let base = |k: &str| match k {
            "TOUCHPOINT_GA4_MEASUREMENT_ID" => Some("G-1".to_owned()),
            "TOUCHPOINT_GA4_API_SECRET" => Some("s".to_owned()),
            _ => None,
        };
        assert!(
            Ga4Config::from_lookup(&base)
                .unwrap()
                .unwrap()
                .deletion
                .is_none()
        );
        let half = |k: &str| match k {
            "TOUCHPOINT_GA4_PROPERTY_ID" => Some("properties/123".to_owned()),
            _ => base(k),
        };
        let err = Ga4Config::from_lookup(&half).unwrap_err();
        assert!(err.to_string().contains("TOUCHPOINT_GA4_CLIENT_ID"));
        let full = |k: &str| match k {
            "TOUCHPOINT_GA4_CLIENT_ID" => Some("cid".to_owned()),
            "TOUCHPOINT_GA4_CLIENT_SECRET" => Some("csecret".to_owned()),
            "TOUCHPOINT_GA4_REFRESH_TOKEN" => Some("rtoken".to_owned()),
            _ => half(k),
        };
        let d = Ga4Config::from_lookup(&full)
            .unwrap()
            .unwrap()
            .deletion
            .unwrap();
        assert_eq!(d.property_id, "123");
        assert_eq!(d.refresh_token.expose_secret(), "rtoken");
        assert!(
            !format!("{d:?}").contains("csecret"),
            "secrets are never printed"
        );
    }
}
