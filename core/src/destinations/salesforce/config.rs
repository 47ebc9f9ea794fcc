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
    /// What an erasure request does to the person's Contact (`TOUCHPOINT_SALESFORCE_ERASURE`:
    /// `delete` (default), `blank` or `off`).
    pub erasure: ErasureMode,
}

/// What an erasure request does in Salesforce.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErasureMode {
    /// Delete the Contact (`DELETE …/sobjects/Contact/Touchpoint_User_Id__c/{userId}`).
    Delete,
    /// Keep the Contact (and its activity history) but blank its personal fields.
    Blank,
    /// Leave Salesforce alone; the regulation shows the destination as not supported.
    Off,
}

impl ErasureMode {
    fn parse(v: &str) -> Result<ErasureMode, ConfigError> {
        match v.to_ascii_lowercase().as_str() {
            "delete" => Ok(ErasureMode::Delete),
            "blank" => Ok(ErasureMode::Blank),
            "off" | "none" => Ok(ErasureMode::Off),
            other => Err(ConfigError::new(
                "TOUCHPOINT_SALESFORCE_ERASURE",
                format!("expected delete, blank or off, got {other:?}"),
            )),
        }
    }
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
            erasure: match var(get, "TOUCHPOINT_SALESFORCE_ERASURE") {
                Some(v) => ErasureMode::parse(&v)?,
                None => ErasureMode::Delete,
            },
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
            erasure: ErasureMode::Delete,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erasure_defaults_to_deleting_the_contact_and_refuses_unknown_modes() {
        let env = |extra: Option<&'static str>| {
            move |k: &str| {
                match k {
                    "TOUCHPOINT_SALESFORCE_URL" => Some("https://x.my.salesforce.com"),
                    "TOUCHPOINT_SALESFORCE_CLIENT_ID" => Some("cid"),
                    "TOUCHPOINT_SALESFORCE_CLIENT_SECRET" => Some("shh"),
                    "TOUCHPOINT_SALESFORCE_ERASURE" => extra,
                    _ => None,
                }
                .map(str::to_owned)
            }
        };
        let mode = |extra| SalesforceConfig::from_lookup(&env(extra)).map(|c| c.unwrap().erasure);
        assert_eq!(mode(None).unwrap(), ErasureMode::Delete);
        assert_eq!(mode(Some("Blank")).unwrap(), ErasureMode::Blank);
        assert_eq!(mode(Some("off")).unwrap(), ErasureMode::Off);
        assert!(mode(Some("shred")).is_err());
    }
}
