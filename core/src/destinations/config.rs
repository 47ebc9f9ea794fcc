//! Destination configuration: one typed struct per destination (in its folder's `config.rs`), each
//! `None` (disabled) unless its credentials are set, plus the shared delivery settings.

use super::{consent, ga4, hubspot, meta, resend, salesforce, webhook};
use crate::config::{ConfigError, number};
use std::time::Duration;

/// Retry, polling and batching settings shared by every destination.
#[derive(Clone, Debug)]
pub struct DeliveryConfig {
    /// First retry delay; doubles per attempt, with jitter (`TOUCHPOINT_DELIVERY_RETRY_BASE_MS`, 1000).
    pub retry_base: Duration,
    /// Longest retry delay (`TOUCHPOINT_DELIVERY_RETRY_MAX_SECS`, 3600).
    pub retry_max: Duration,
    /// Attempts before a retryable failure is dead-lettered (`TOUCHPOINT_DELIVERY_MAX_ATTEMPTS`, 12).
    pub max_attempts: i64,
    /// How often an idle worker looks for due rows (`TOUCHPOINT_DELIVERY_POLL_MS`, 500).
    pub poll: Duration,
    /// How long a claim lasts before another worker may take the rows over after a crash
    /// (`TOUCHPOINT_DELIVERY_LEASE_SECS`, 300).
    pub lease: Duration,
    /// Run the activation stage and delivery workers in this process (follows `TOUCHPOINT_PROCESS`).
    pub run_workers: bool,
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        DeliveryConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(3600),
            max_attempts: 12,
            poll: Duration::from_millis(500),
            lease: Duration::from_secs(300),
            run_workers: true,
        }
    }
}

/// The tracking plan's event, property and trait names an account's usage signals are read from
/// (the account snapshot sent with activations: key features, integrations, invites, seats).
/// The defaults are the seed plan's names; each can be renamed with its variable.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UsageSignals {
    /// A feature was turned on (`TOUCHPOINT_USAGE_FEATURE_EVENT`, `feature_toggled`).
    pub feature_event: String,
    /// Its property naming the feature (`TOUCHPOINT_USAGE_FEATURE_PROPERTY`, `feature_name`).
    pub feature_property: String,
    /// An integration was connected (`TOUCHPOINT_USAGE_INTEGRATION_EVENT`, `integration_connected`).
    pub integration_event: String,
    /// Its property naming the integration (`TOUCHPOINT_USAGE_INTEGRATION_PROPERTY`,
    /// `integration_name`).
    pub integration_property: String,
    /// A teammate was invited (`TOUCHPOINT_USAGE_INVITE_EVENT`, `teammate_invited`).
    pub invite_event: String,
    /// The account trait holding the seat count (`TOUCHPOINT_USAGE_SEATS_TRAIT`,
    /// `seats_provisioned`).
    pub seats_trait: String,
}

impl Default for UsageSignals {
    fn default() -> Self {
        UsageSignals {
            feature_event: "feature_toggled".into(),
            feature_property: "feature_name".into(),
            integration_event: "integration_connected".into(),
            integration_property: "integration_name".into(),
            invite_event: "teammate_invited".into(),
            seats_trait: "seats_provisioned".into(),
        }
    }
}

impl UsageSignals {
    /// Reads the names through `get`, each defaulting to the seed plan's.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> UsageSignals {
        let d = UsageSignals::default();
        let name = |var_name: &str, default: String| var(get, var_name).unwrap_or(default);
        UsageSignals {
            feature_event: name("TOUCHPOINT_USAGE_FEATURE_EVENT", d.feature_event),
            feature_property: name("TOUCHPOINT_USAGE_FEATURE_PROPERTY", d.feature_property),
            integration_event: name("TOUCHPOINT_USAGE_INTEGRATION_EVENT", d.integration_event),
            integration_property: name(
                "TOUCHPOINT_USAGE_INTEGRATION_PROPERTY",
                d.integration_property,
            ),
            invite_event: name("TOUCHPOINT_USAGE_INVITE_EVENT", d.invite_event),
            seats_trait: name("TOUCHPOINT_USAGE_SEATS_TRAIT", d.seats_trait),
        }
    }

    /// The usage events, in the order the account query binds them.
    pub fn events(&self) -> [&str; 3] {
        [
            &self.feature_event,
            &self.integration_event,
            &self.invite_event,
        ]
    }
}

/// Every destination's configuration.
#[derive(Clone, Debug, Default)]
pub struct DestinationsConfig {
    /// Salesforce (`TOUCHPOINT_SALESFORCE_*`).
    pub salesforce: Option<salesforce::config::SalesforceConfig>,
    /// HubSpot (`TOUCHPOINT_HUBSPOT_*`).
    pub hubspot: Option<hubspot::config::HubSpotConfig>,
    /// GA4 Measurement Protocol (`TOUCHPOINT_GA4_*`).
    pub ga4: Option<ga4::config::Ga4Config>,
    /// Resend audiences (`TOUCHPOINT_RESEND_*`).
    pub resend: Option<resend::config::ResendConfig>,
    /// Meta Conversions API (`TOUCHPOINT_META_*`).
    pub meta: Option<meta::config::MetaConfig>,
    /// Signed webhook (`TOUCHPOINT_WEBHOOK_*`).
    pub webhook: Option<webhook::config::WebhookConfig>,
    /// Shared delivery settings.
    pub delivery: DeliveryConfig,
    /// The tracking plan's names the account snapshot reads its usage signals from.
    pub usage_signals: UsageSignals,
    /// Each destination's consent categories and whether consent is required
    /// (`TOUCHPOINT_<NAME>_CONSENT_CATEGORIES`, `TOUCHPOINT_REQUIRE_CONSENT`; see `consent`).
    pub consent: consent::ConsentConfig,
}

/// Reads a variable, treating empty as unset.
pub(crate) fn var(get: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    get(name)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// A required variable of an enabled destination.
pub(crate) fn required(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    because: &str,
) -> Result<String, ConfigError> {
    var(get, name).ok_or_else(|| ConfigError::new(name, format!("required when {because} is set")))
}

/// A whole-number variable with a default.
pub(crate) fn num(
    get: &dyn Fn(&str) -> Option<String>,
    name: &'static str,
    default: u64,
) -> Result<u64, ConfigError> {
    match var(get, name) {
        Some(v) => number(name, &v),
        None => Ok(default),
    }
}

impl DestinationsConfig {
    /// Reads every destination's variables through `get`.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<DestinationsConfig, ConfigError> {
        let mut delivery = DeliveryConfig {
            retry_base: Duration::from_millis(num(get, "TOUCHPOINT_DELIVERY_RETRY_BASE_MS", 1000)?),
            retry_max: Duration::from_secs(num(get, "TOUCHPOINT_DELIVERY_RETRY_MAX_SECS", 3600)?),
            max_attempts: num(get, "TOUCHPOINT_DELIVERY_MAX_ATTEMPTS", 12)?.max(1) as i64,
            poll: Duration::from_millis(num(get, "TOUCHPOINT_DELIVERY_POLL_MS", 500)?.max(10)),
            lease: Duration::from_secs(num(get, "TOUCHPOINT_DELIVERY_LEASE_SECS", 300)?.max(1)),
            ..DeliveryConfig::default()
        };
        if let Some(v) = var(get, "TOUCHPOINT_PROCESS") {
            delivery.run_workers = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        Ok(DestinationsConfig {
            salesforce: salesforce::config::SalesforceConfig::from_lookup(get)?,
            hubspot: hubspot::config::HubSpotConfig::from_lookup(get)?,
            ga4: ga4::config::Ga4Config::from_lookup(get)?,
            resend: resend::config::ResendConfig::from_lookup(get)?,
            meta: meta::config::MetaConfig::from_lookup(get)?,
            webhook: webhook::config::WebhookConfig::from_lookup(get)?,
            delivery,
            usage_signals: UsageSignals::from_lookup(get),
            consent: consent::ConsentConfig::from_lookup(get)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn destinations_are_disabled_until_their_credentials_are_set() {
        let none = DestinationsConfig::from_lookup(&|_| None).unwrap();
        assert!(none.salesforce.is_none() && none.hubspot.is_none() && none.ga4.is_none());
        assert!(none.resend.is_none() && none.meta.is_none() && none.webhook.is_none());
        let env = |k: &str| {
            match k {
                "TOUCHPOINT_SALESFORCE_URL" => Some("https://acme.my.salesforce.com"),
                "TOUCHPOINT_SALESFORCE_CLIENT_ID" => Some("cid"),
                "TOUCHPOINT_SALESFORCE_CLIENT_SECRET" => Some("shh"),
                "TOUCHPOINT_RESEND_API_KEY" => Some("re_123"),
                "TOUCHPOINT_RESEND_AUDIENCES" => Some("product_qualified_lead=aud-1"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let some = DestinationsConfig::from_lookup(&env).unwrap();
        let sf = some.salesforce.unwrap();
        assert_eq!(sf.client_secret.expose_secret(), "shh");
        assert!(
            !format!("{sf:?}").contains("shh"),
            "secrets are never printed"
        );
        assert_eq!(
            some.resend.unwrap().audiences["product_qualified_lead"],
            "aud-1"
        );
    }

    #[test]
    fn usage_signals_default_to_the_seed_plans_names_and_can_be_renamed() {
        let seed = DestinationsConfig::from_lookup(&|_| None).unwrap();
        assert_eq!(seed.usage_signals, UsageSignals::default());
        assert_eq!(
            seed.usage_signals.events(),
            [
                "feature_toggled",
                "integration_connected",
                "teammate_invited"
            ]
        );
        let env =
            |k: &str| (k == "TOUCHPOINT_USAGE_INVITE_EVENT").then(|| "Member Added".to_owned());
        let renamed = DestinationsConfig::from_lookup(&env).unwrap();
        assert_eq!(renamed.usage_signals.invite_event, "Member Added");
    }

    #[test]
    fn a_half_configured_destination_names_the_missing_variable() {
        let env = |k: &str| (k == "TOUCHPOINT_SALESFORCE_URL").then(|| "https://x".to_owned());
        let err = DestinationsConfig::from_lookup(&env).unwrap_err();
        assert!(err.to_string().contains("TOUCHPOINT_SALESFORCE_CLIENT_ID"));
    }
}
