//! Meta settings: the Conversions API (a pixel / dataset) and Custom Audiences (which Touchpoint
//! audiences sync to which Meta customer-file audience); either enables the destination.

use crate::config::ConfigError;
use crate::destinations::config::{num, required, var};
use secrecy::SecretString;
use std::collections::BTreeMap;

/// Most users Meta takes in one Custom Audience call.
pub const MAX_USERS_PER_CALL: usize = 10_000;

/// Meta destination settings.
#[derive(Clone, Debug)]
pub struct MetaConfig {
    /// Graph API host (`TOUCHPOINT_META_URL`, `https://graph.facebook.com`).
    pub url: String,
    /// Graph API version (`TOUCHPOINT_META_API_VERSION`, `v21.0`).
    pub api_version: String,
    /// Dataset / pixel id for the Conversions API (`TOUCHPOINT_META_PIXEL_ID`); without it page
    /// and track messages are not sent to Meta.
    pub pixel_id: Option<String>,
    /// System-user access token (`TOUCHPOINT_META_ACCESS_TOKEN`), with `ads_management` for
    /// Custom Audiences.
    pub access_token: SecretString,
    /// Sends events as test events shown in Events Manager (`TOUCHPOINT_META_TEST_EVENT_CODE`).
    pub test_event_code: Option<String>,
    /// Touchpoint audience id → Meta Custom Audience id (`TOUCHPOINT_META_CUSTOM_AUDIENCES`,
    /// `product_qualified_lead=23850000000000001,trial=…`): entering adds the person, exiting
    /// removes them; other audiences are not synced.
    pub custom_audiences: BTreeMap<String, String>,
    /// Users per Custom Audience call (`TOUCHPOINT_META_USERS_PER_CALL`, 10,000 — Meta's limit,
    /// which is also the most it can be set to).
    pub users_per_call: usize,
    /// Tracking-plan event → Meta standard event name (`TOUCHPOINT_META_STANDARD_EVENTS`,
    /// `user_signed_up=CompleteRegistration,trial_started=StartTrial`); other events keep their
    /// name, pages are `PageView`.
    pub standard_events: BTreeMap<String, String>,
}

/// The seed plan's events that have a Meta standard event.
pub const DEFAULT_STANDARD_EVENTS: &str =
    "user_signed_up=CompleteRegistration,trial_started=StartTrial";

impl MetaConfig {
    /// Settings for a base URL and a pixel, without Custom Audiences (tests, CLI).
    pub fn pixel(url: &str, pixel_id: &str, access_token: &str) -> MetaConfig {
        MetaConfig {
            url: url.trim_end_matches('/').to_owned(),
            api_version: "v21.0".into(),
            pixel_id: Some(pixel_id.into()),
            access_token: access_token.into(),
            test_event_code: None,
            custom_audiences: BTreeMap::new(),
            users_per_call: MAX_USERS_PER_CALL,
            standard_events: parse_pairs(DEFAULT_STANDARD_EVENTS),
        }
    }

    /// `None` unless `TOUCHPOINT_META_PIXEL_ID` or `TOUCHPOINT_META_CUSTOM_AUDIENCES` is set.
    pub fn from_lookup(
        get: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Option<MetaConfig>, ConfigError> {
        let pixel_id = var(get, "TOUCHPOINT_META_PIXEL_ID");
        let custom_audiences =
            parse_audiences(&var(get, "TOUCHPOINT_META_CUSTOM_AUDIENCES").unwrap_or_default())?;
        let because = match (&pixel_id, custom_audiences.is_empty()) {
            (None, true) => return Ok(None),
            (Some(_), _) => "TOUCHPOINT_META_PIXEL_ID",
            (None, false) => "TOUCHPOINT_META_CUSTOM_AUDIENCES",
        };
        Ok(Some(MetaConfig {
            url: var(get, "TOUCHPOINT_META_URL")
                .unwrap_or_else(|| "https://graph.facebook.com".into())
                .trim_end_matches('/')
                .to_owned(),
            api_version: var(get, "TOUCHPOINT_META_API_VERSION").unwrap_or_else(|| "v21.0".into()),
            pixel_id,
            access_token: required(get, "TOUCHPOINT_META_ACCESS_TOKEN", because)?.into(),
            test_event_code: var(get, "TOUCHPOINT_META_TEST_EVENT_CODE"),
            custom_audiences,
            users_per_call: num(
                get,
                "TOUCHPOINT_META_USERS_PER_CALL",
                MAX_USERS_PER_CALL as u64,
            )?
            .clamp(1, MAX_USERS_PER_CALL as u64) as usize,
            standard_events: parse_pairs(
                &var(get, "TOUCHPOINT_META_STANDARD_EVENTS")
                    .unwrap_or_else(|| DEFAULT_STANDARD_EVENTS.into()),
            ),
        }))
    }
}

/// `ours=theirs,…` → the mapping (pairs without both sides are ignored).
fn parse_pairs(v: &str) -> BTreeMap<String, String> {
    v.split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(a, b)| (a.trim().to_owned(), b.trim().to_owned()))
        .filter(|(a, b)| !a.is_empty() && !b.is_empty())
        .collect()
}

/// `ours=2385…,other=2386…` → the mapping; Meta audience ids are numeric (they go in URL paths).
fn parse_audiences(v: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    const NAME: &str = "TOUCHPOINT_META_CUSTOM_AUDIENCES";
    let mut out = BTreeMap::new();
    for pair in v.split(',').filter(|p| !p.trim().is_empty()) {
        let (ours, theirs) = pair
            .split_once('=')
            .map(|(a, b)| (a.trim(), b.trim()))
            .filter(|(a, b)| !a.is_empty() && !b.is_empty())
            .ok_or_else(|| {
                ConfigError::new(
                    NAME,
                    format!("expected audience=customAudienceId, got {pair:?}"),
                )
            })?;
        if !theirs.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ConfigError::new(
                NAME,
                format!("a Meta Custom Audience id is numeric, got {theirs:?}"),
            ));
        }
        out.insert(ours.to_owned(), theirs.to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| pairs.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn the_seed_plans_events_map_to_meta_standard_events_unless_configured() {
        let seed = MetaConfig::pixel("https://x", "1", "t").standard_events;
        assert_eq!(seed["user_signed_up"], "CompleteRegistration");
        assert_eq!(seed["trial_started"], "StartTrial");
        let env = |k: &str| {
            match k {
                "TOUCHPOINT_META_PIXEL_ID" => Some("1"),
                "TOUCHPOINT_META_ACCESS_TOKEN" => Some("t"),
                "TOUCHPOINT_META_STANDARD_EVENTS" => Some("Order Completed=Purchase"),
                _ => None,
            }
            .map(str::to_owned)
        };
        let custom = MetaConfig::from_lookup(&env).unwrap().unwrap();
        assert_eq!(
            custom.standard_events,
            [("Order Completed".to_owned(), "Purchase".to_owned())].into()
        );
    }

    #[test]
    fn custom_audiences_alone_enable_meta_without_a_pixel() {
        assert!(MetaConfig::from_lookup(&lookup(&[])).unwrap().is_none());
        let c = MetaConfig::from_lookup(&lookup(&[
            (
                "TOUCHPOINT_META_CUSTOM_AUDIENCES",
                "product_qualified_lead=23850000000000001, trial = 23850000000000002",
            ),
            ("TOUCHPOINT_META_ACCESS_TOKEN", "EAAB-secret"),
        ]))
        .unwrap()
        .unwrap();
        assert!(c.pixel_id.is_none());
        assert_eq!(
            c.custom_audiences["product_qualified_lead"],
            "23850000000000001"
        );
        assert_eq!(c.custom_audiences["trial"], "23850000000000002");
        assert_eq!(c.users_per_call, 10_000);
        assert_eq!(c.access_token.expose_secret(), "EAAB-secret");
        assert!(!format!("{c:?}").contains("EAAB-secret"));
    }

    #[test]
    fn a_bad_mapping_or_a_missing_token_names_the_variable() {
        let err =
            MetaConfig::from_lookup(&lookup(&[("TOUCHPOINT_META_CUSTOM_AUDIENCES", "pql=2385")]))
                .unwrap_err();
        assert!(err.to_string().contains("TOUCHPOINT_META_ACCESS_TOKEN"));
        for bad in ["pql", "pql=", "pql=../../me"] {
            let err = MetaConfig::from_lookup(&lookup(&[
                ("TOUCHPOINT_META_CUSTOM_AUDIENCES", bad),
                ("TOUCHPOINT_META_ACCESS_TOKEN", "t"),
            ]))
            .unwrap_err();
            assert!(
                err.to_string().contains("TOUCHPOINT_META_CUSTOM_AUDIENCES"),
                "{bad}: {err}"
            );
        }
        let capped = MetaConfig::from_lookup(&lookup(&[
            ("TOUCHPOINT_META_PIXEL_ID", "123"),
            ("TOUCHPOINT_META_ACCESS_TOKEN", "t"),
            ("TOUCHPOINT_META_USERS_PER_CALL", "50000"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(capped.users_per_call, 10_000);
        assert!(capped.custom_audiences.is_empty());
    }
}
