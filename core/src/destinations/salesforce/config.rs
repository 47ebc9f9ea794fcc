//! Salesforce settings: a connected app's client-credentials flow for a dedicated integration user.

use crate::config::ConfigError;
use crate::destinations::config::{num, required, var};
use secrecy::SecretString;

/// Salesforce destination settings.
#[derive(Clone, Debug)]
pub struct SalesforceConfig {
    /// My Domain login URL; the token endpoint is `{url}/services/oauth2/token`
    /// (`TOUCHPOINT_SALESFORCE_URL`; enables the destination).
    pub url: String,
    /// Connected app consumer key (`TOUCHPOINT_SALESFORCE_CLIENT_ID`).
    pub client_id: String,
    /// Connected app consumer secret (`TOUCHPOINT_SALESFORCE_CLIENT_SECRET`).
    pub client_secret: SecretString,
    /// REST API version (`TOUCHPOINT_SALESFORCE_API_VERSION`, `v60.0`).
    pub api_version: String,
    /// Most API calls a day this integration may use, on top of the org's own limit read from
    /// `Sforce-Limit-Info` (`TOUCHPOINT_SALESFORCE_DAILY_BUDGET`, 10000).
    pub daily_budget: u64,
    /// The audience whose `audience_entered` creates a Task for the Account owner
    /// (`TOUCHPOINT_SALESFORCE_PQL_AUDIENCE`, `product_qualified_lead`).
    pub pql_audience: String,
}

impl SalesforceConfig {
    /// `None` unless `TOUCHPOINT_SALESFORCE_URL` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<SalesforceConfig>, ConfigError> {
        let Some(url) = var(get, "TOUCHPOINT_SALESFORCE_URL") else {
            return Ok(None);
        };
        const BECAUSE: &str = "TOUCHPOINT_SALESFORCE_URL";
        Ok(Some(SalesforceConfig {
            url: url.trim_end_matches('/').to_owned(),
            client_id: required(get, "TOUCHPOINT_SALESFORCE_CLIENT_ID", BECAUSE)?,
            client_secret: required(get, "TOUCHPOINT_SALESFORCE_CLIENT_SECRET", BECAUSE)?.into(),
            api_version: var(get, "TOUCHPOINT_SALESFORCE_API_VERSION")
                .unwrap_or_else(|| "v60.0".into()),
            daily_budget: num(get, "TOUCHPOINT_SALESFORCE_DAILY_BUDGET", 10_000)?,
            pql_audience: var(get, "TOUCHPOINT_SALESFORCE_PQL_AUDIENCE")
                .unwrap_or_else(|| "product_qualified_lead".into()),
        }))
    }

    /// Settings for a given base URL and credentials, defaults elsewhere (tests, CLI).
    pub fn new(url: &str, client_id: &str, client_secret: &str) -> SalesforceConfig {
        SalesforceConfig {
            url: url.trim_end_matches('/').to_owned(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            api_version: "v60.0".into(),
            daily_budget: 10_000,
            pql_audience: "product_qualified_lead".into(),
        }
    }
}
