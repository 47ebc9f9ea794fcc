//! HubSpot settings: OAuth 2.0 (refresh-token flow) or a private-app access token.

use crate::config::ConfigError;
use crate::destinations::config::{num, required, var};
use secrecy::SecretString;

/// How Touchpoint authenticates to HubSpot.
#[derive(Clone, Debug)]
pub enum HubSpotAuth {
    /// OAuth 2.0: access tokens are minted from the refresh token at `/oauth/v1/token`.
    OAuth {
        /// App client id (`TOUCHPOINT_HUBSPOT_CLIENT_ID`).
        client_id: String,
        /// App client secret (`TOUCHPOINT_HUBSPOT_CLIENT_SECRET`).
        client_secret: SecretString,
        /// Refresh token of the installing portal (`TOUCHPOINT_HUBSPOT_REFRESH_TOKEN`).
        refresh_token: SecretString,
    },
    /// A private app's static access token (`TOUCHPOINT_HUBSPOT_ACCESS_TOKEN`).
    Static(SecretString),
}

/// HubSpot destination settings.
#[derive(Clone, Debug)]
pub struct HubSpotConfig {
    /// API base (`TOUCHPOINT_HUBSPOT_URL`, `https://api.hubapi.com`).
    pub url: String,
    /// Credentials; the destination is enabled when a refresh token or access token is set.
    pub auth: HubSpotAuth,
    /// Company property used as the unique id for groupIds (`TOUCHPOINT_HUBSPOT_COMPANY_ID_PROPERTY`,
    /// `touchpoint_account_id`; must be a unique-value property).
    pub company_id_property: String,
    /// Requests allowed per 10 s (`TOUCHPOINT_HUBSPOT_REQUESTS_PER_10S`, 190).
    pub requests_per_10s: u64,
}

impl HubSpotConfig {
    /// `None` unless a refresh token or an access token is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<HubSpotConfig>, ConfigError> {
        let auth = if let Some(refresh) = var(get, "TOUCHPOINT_HUBSPOT_REFRESH_TOKEN") {
            const BECAUSE: &str = "TOUCHPOINT_HUBSPOT_REFRESH_TOKEN";
            HubSpotAuth::OAuth {
                client_id: required(get, "TOUCHPOINT_HUBSPOT_CLIENT_ID", BECAUSE)?,
                client_secret: required(get, "TOUCHPOINT_HUBSPOT_CLIENT_SECRET", BECAUSE)?.into(),
                refresh_token: refresh.into(),
            }
        } else if let Some(token) = var(get, "TOUCHPOINT_HUBSPOT_ACCESS_TOKEN") {
            HubSpotAuth::Static(token.into())
        } else {
            return Ok(None);
        };
        Ok(Some(HubSpotConfig {
            url: var(get, "TOUCHPOINT_HUBSPOT_URL")
                .unwrap_or_else(|| "https://api.hubapi.com".into())
                .trim_end_matches('/')
                .to_owned(),
            auth,
            company_id_property: var(get, "TOUCHPOINT_HUBSPOT_COMPANY_ID_PROPERTY")
                .unwrap_or_else(|| "touchpoint_account_id".into()),
            requests_per_10s: num(get, "TOUCHPOINT_HUBSPOT_REQUESTS_PER_10S", 190)?.max(1),
        }))
    }

    /// OAuth settings for a base URL, defaults elsewhere (tests).
    pub fn oauth(url: &str, client_id: &str, client_secret: &str, refresh: &str) -> HubSpotConfig {
        HubSpotConfig {
            url: url.trim_end_matches('/').to_owned(),
            auth: HubSpotAuth::OAuth {
                client_id: client_id.into(),
                client_secret: client_secret.into(),
                refresh_token: refresh.into(),
            },
            company_id_property: "touchpoint_account_id".into(),
            requests_per_10s: 190,
        }
    }
}
