//! Destinations: durable, batched, rate-limited delivery of activations (processed messages and
//! audience entered/exited events) to Salesforce, HubSpot, GA4, Resend, Meta and signed webhooks.
//!
//! Every destination is a port: a [`Destination`] with a pure encoder (`encode`, unit-tested in each
//! `encoder.rs`) separate from its HTTP `service` (`send` one request, classified into a
//! [`RetryAction`]). The [`stage`] turns the log and the audience feed into outbox rows; the
//! [`worker`] claims due rows, batches them to each API's limit and records every call.

pub mod api;
pub mod cli;
pub mod config;
pub mod consent;
pub mod erasure;
pub mod ga4;
pub mod http;
pub mod hubspot;
pub mod meta;
pub mod ratelimit;
pub mod resend;
pub mod salesforce;
pub mod settle;
pub mod stage;
pub mod store;
pub mod visits;
pub mod webhook;
pub mod worker;

pub use config::{DeliveryConfig, DestinationsConfig};
pub use store::{DestinationStore, PgDestinations, SqliteDestinations};

use crate::identity::ProfileId;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// What an activation carries: a message of one type, or an audience transition. Stored in outbox
/// payloads and read from the log and the audience feed as its `snake_case` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActivationKind {
    /// An `identify` message.
    Identify,
    /// A `track` message.
    Track,
    /// A `page` message.
    Page,
    /// A `screen` message.
    Screen,
    /// A `group` message.
    Group,
    /// An `alias` message.
    Alias,
    /// The profile entered an audience.
    AudienceEntered,
    /// The profile left an audience.
    AudienceExited,
}

/// A stored kind no [`ActivationKind`] names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown activation kind {0:?} (expected identify, track, page, screen, group, alias, \
     audience_entered or audience_exited)"
)]
pub struct UnknownKind(pub String);

impl ActivationKind {
    /// Every kind.
    pub const ALL: [ActivationKind; 8] = [
        ActivationKind::Identify,
        ActivationKind::Track,
        ActivationKind::Page,
        ActivationKind::Screen,
        ActivationKind::Group,
        ActivationKind::Alias,
        ActivationKind::AudienceEntered,
        ActivationKind::AudienceExited,
    ];

    /// The stored name (`messages.kind`, `audience_events.kind`, outbox payloads).
    pub fn as_str(self) -> &'static str {
        match self {
            ActivationKind::Identify => "identify",
            ActivationKind::Track => "track",
            ActivationKind::Page => "page",
            ActivationKind::Screen => "screen",
            ActivationKind::Group => "group",
            ActivationKind::Alias => "alias",
            ActivationKind::AudienceEntered => "audience_entered",
            ActivationKind::AudienceExited => "audience_exited",
        }
    }

    /// Reads a stored name.
    pub fn parse(s: &str) -> Result<ActivationKind, UnknownKind> {
        ActivationKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_owned()))
    }

    /// Whether this is an audience transition.
    pub fn is_audience(self) -> bool {
        matches!(
            self,
            ActivationKind::AudienceEntered | ActivationKind::AudienceExited
        )
    }
}

impl From<UnknownKind> for crate::storage::StorageError {
    fn from(e: UnknownKind) -> crate::storage::StorageError {
        crate::storage::StorageError::Corrupt(e.to_string())
    }
}

/// What a destination is asked to deliver: one processed message or one audience transition, with
/// the profile (and account) as they were when the activation stage saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Activation {
    /// Idempotency key, unique per destination: `m:{seq}` for a message, `a:{id}` for an audience event.
    pub key: String,
    /// A message's type or an audience transition.
    pub kind: ActivationKind,
    /// The message's messageId (deduplication key for APIs that take one, e.g. Meta's event_id).
    #[serde(default)]
    pub message_id: Option<String>,
    /// Track event name.
    #[serde(default)]
    pub event: Option<String>,
    /// The stored message (properties, context, traits, name…), for message activations.
    #[serde(default)]
    pub message: Option<Value>,
    /// Event time (ms since the epoch).
    pub timestamp_ms: i64,
    /// The (live) profile.
    pub profile_id: ProfileId,
    /// The profile's userId.
    #[serde(default)]
    pub user_id: Option<String>,
    /// The message's anonymousId (or one of the profile's).
    #[serde(default)]
    pub anonymous_id: Option<String>,
    /// The profile's normalised email.
    #[serde(default)]
    pub email: Option<String>,
    /// The profile's normalised phone.
    #[serde(default)]
    pub phone: Option<String>,
    /// The profile's traits.
    #[serde(default)]
    pub traits: Map<String, Value>,
    /// The account the activation concerns (the group call's, else the profile's).
    #[serde(default)]
    pub account: Option<AccountSnapshot>,
    /// Audience id, for audience activations.
    #[serde(default)]
    pub audience: Option<String>,
    /// The visit (session) a page, screen or track message belongs to, derived from the profile's
    /// earlier events when a destination asks for it ([`Destination::wants_visits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visit: Option<visits::Visit>,
}

impl Activation {
    /// Whether this is an audience transition.
    pub fn is_audience(&self) -> bool {
        self.kind.is_audience()
    }

    /// The message's `properties` (empty when none).
    pub fn properties(&self) -> Map<String, Value> {
        self.message
            .as_ref()
            .and_then(|m| m.get("properties"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default()
    }

    /// A string field of the message's `context`, e.g. `userAgent`.
    pub fn context_str(&self, path: &[&str]) -> Option<String> {
        let mut v = self.message.as_ref()?.get("context")?;
        for p in path {
            v = v.get(*p)?;
        }
        v.as_str().map(str::to_owned)
    }

    /// A string trait.
    pub fn trait_str(&self, key: &str) -> Option<String> {
        match self.traits.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// An account (groupId) with the product-usage figures CRM destinations mirror.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct AccountSnapshot {
    /// groupId.
    pub group_id: String,
    /// Account traits from group calls.
    #[serde(default)]
    pub traits: Map<String, Value>,
    /// Distinct profiles of the account active in the last 7 days.
    #[serde(default)]
    pub active_users_7d: i64,
    /// Features toggled and integrations connected by the account's users.
    #[serde(default)]
    pub key_features: Vec<String>,
    /// The furthest journey stage the account's users reached.
    #[serde(default)]
    pub journey_stage: Option<String>,
    /// Whether a profile of the account is in the PQL audience.
    #[serde(default)]
    pub pql: bool,
    /// Human-readable product signals (seats, integrations in 30 days, invites…).
    #[serde(default)]
    pub signals: Vec<String>,
}

impl AccountSnapshot {
    /// A string trait of the account.
    pub fn trait_str(&self, key: &str) -> Option<String> {
        match self.traits.get(key)? {
            Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        }
    }
}

/// One API call an encoder decided on.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// HTTP method.
    pub method: Method,
    /// Path (and query, without secrets) relative to the destination's base URL.
    pub path: String,
    /// JSON body.
    pub body: Option<Value>,
    /// For each item of the request (record, event, input…), the activations (batch indices) it carries.
    pub covers: Vec<Vec<usize>>,
    /// Short description for the delivery log, e.g. `Account upsert`.
    pub label: String,
}

impl Request {
    /// Every activation the request carries, deduplicated.
    pub fn activations(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.covers.iter().flatten().copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// HTTP methods the destinations use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// POST.
    Post,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
}

impl Method {
    /// As text.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Post => "POST",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
        }
    }
}

/// An encoder's output: the calls to make, and activations refused before any call (with why).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Encoded {
    /// Calls, in the order they must be made (e.g. Accounts before the Contacts that reference them).
    pub requests: Vec<Request>,
    /// Activations that can never be delivered (e.g. an invalid GA4 event name), with the reason.
    pub rejected: Vec<(usize, String)>,
}

/// The retry classifier: what a call's answer means for the items it carried.
#[derive(Debug, Clone, PartialEq)]
pub enum RetryAction {
    /// Delivered.
    Success,
    /// Nothing landed (429, 5xx, network, expired token…): retry the whole call, not before `after`.
    Retry {
        /// The API's Retry-After (or rate-limit window), if it gave one.
        after: Option<Duration>,
        /// What went wrong.
        reason: String,
    },
    /// Some items failed: retry those in `retry`, dead-letter those in `dead` (item indices of the
    /// request), the rest were delivered.
    RetryPart {
        /// Items to retry.
        retry: Vec<usize>,
        /// Items refused for good, with the API's message.
        dead: Vec<(usize, String)>,
        /// Why the retried ones failed.
        reason: String,
    },
    /// Refused for good (validation): dead-letter everything the call carried with the API's message.
    DontRetry(String),
}

/// A classified answer to one call.
#[derive(Debug, Clone, PartialEq)]
pub struct Sent {
    /// HTTP status, if the API answered.
    pub status: Option<u16>,
    /// What it means.
    pub action: RetryAction,
}

/// A delivery target.
pub trait Destination: Send + Sync + 'static {
    /// Stable name (`salesforce`, `hubspot`, `ga4`, `resend`, `meta`, `webhook`).
    fn name(&self) -> &'static str;
    /// Whether this destination wants the activation at all (checked before an outbox row is made).
    fn accepts(&self, activation: &Activation) -> bool;
    /// Most activations claimed and encoded together.
    fn batch_size(&self) -> usize;
    /// The pure encoder: activations → API calls.
    fn encode(&self, batch: &[Activation]) -> Encoded;
    /// Makes one call (auth, rate limit, budget) and classifies the answer.
    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Sent>;
    /// Checks credentials and reachability.
    fn health(&self) -> BoxFuture<'_, Result<(), String>>;
    /// Whether message activations should carry their [`visits::Visit`] (GA4 sessions); deriving
    /// it costs the activation stage one read per message, so only destinations that use it ask.
    fn wants_visits(&self) -> bool {
        false
    }
    /// Forwards an erasure request for `subject` to the destination's deletion API (calls made
    /// here are never logged with the person's identifiers). Destinations without one keep this
    /// default.
    fn erase<'a>(&'a self, subject: &'a erasure::Subject) -> BoxFuture<'a, erasure::Erasure> {
        let _ = subject;
        Box::pin(async move {
            erasure::Erasure::NotSupported(format!("{} offers no deletion API", self.name()))
        })
    }
}

/// Delivery counters of one destination, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Activations delivered.
    pub delivered: AtomicU64,
    /// Calls that failed (any non-success answer or network error).
    pub failed: AtomicU64,
    /// Activations dead-lettered.
    pub dead: AtomicU64,
    /// Activations scheduled for a retry.
    pub retried: AtomicU64,
    /// Activations not enqueued because consent did not cover the destination's categories.
    pub consent_skipped: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }
}

/// The enabled destinations, their store and counters; lives in the app state.
pub struct Destinations {
    /// The outbox repository.
    pub store: Arc<dyn DestinationStore>,
    /// Enabled destinations by name.
    pub enabled: BTreeMap<&'static str, Arc<dyn Destination>>,
    /// Counters by destination name.
    pub counters: BTreeMap<&'static str, Arc<Counters>>,
    /// Retry and polling settings.
    pub delivery: DeliveryConfig,
    /// Each destination's consent categories.
    pub consent: consent::ConsentConfig,
    /// Wakes the delivery workers (new rows, replay).
    pub wake: Arc<tokio::sync::Notify>,
    /// Wakes the activation stage that reads processed messages (rung when the profiles stage
    /// moves on).
    pub wake_messages: Arc<tokio::sync::Notify>,
    /// Wakes the activation stage that reads audience entries and exits (rung when the audience
    /// stage moves on).
    pub wake_audience_events: Arc<tokio::sync::Notify>,
    /// The activation stage, when this process runs it (replays quarantined positions).
    pub stage: Option<Arc<stage::ActivationStage>>,
    /// The Meta destination, when enabled (its Custom Audience full sync has an admin route).
    pub meta: Option<Arc<meta::Meta>>,
    /// The time: claims, leases, retry schedules and the delivery log read it here.
    pub clock: Arc<dyn crate::pipeline::Clock>,
}

/// Every destination name Touchpoint knows, enabled or not.
pub const ALL: [&str; 6] = ["salesforce", "hubspot", "ga4", "resend", "meta", "webhook"];

impl Destinations {
    /// Builds the enabled destinations from their configuration (the CRM destinations with the
    /// bundled mappings and no field memory: the CLI's view).
    pub fn new(
        store: Arc<dyn DestinationStore>,
        config: &DestinationsConfig,
    ) -> Result<Destinations, http::BuildError> {
        Self::build(store, config, &crate::crm::Wiring::default())
    }

    /// Builds the enabled destinations; the CRM destinations use `crm`'s mappings and store.
    pub fn build(
        store: Arc<dyn DestinationStore>,
        config: &DestinationsConfig,
        crm: &crate::crm::Wiring,
    ) -> Result<Destinations, http::BuildError> {
        let client = http::client()?;
        let mut enabled: BTreeMap<&'static str, Arc<dyn Destination>> = BTreeMap::new();
        if let Some(c) = &config.salesforce {
            enabled.insert(
                "salesforce",
                Arc::new(salesforce::Salesforce::new(c.clone(), client.clone(), crm)),
            );
        }
        if let Some(c) = &config.hubspot {
            enabled.insert(
                "hubspot",
                Arc::new(hubspot::HubSpot::new(c.clone(), client.clone(), crm)),
            );
        }
        if let Some(c) = &config.ga4 {
            enabled.insert("ga4", Arc::new(ga4::Ga4::new(c.clone(), client.clone())));
        }
        if let Some(c) = &config.resend {
            enabled.insert(
                "resend",
                Arc::new(resend::Resend::new(c.clone(), client.clone())),
            );
        }
        let meta = config
            .meta
            .as_ref()
            .map(|c| Arc::new(meta::Meta::new(c.clone(), client.clone())));
        if let Some(m) = &meta {
            enabled.insert("meta", m.clone());
        }
        if let Some(c) = &config.webhook {
            enabled.insert(
                "webhook",
                Arc::new(webhook::Webhook::new(c.clone(), client.clone())),
            );
        }
        let counters = enabled
            .keys()
            .map(|k| (*k, Arc::new(Counters::default())))
            .collect();
        Ok(Destinations {
            store,
            enabled,
            counters,
            delivery: config.delivery.clone(),
            consent: config.consent.clone(),
            wake: Arc::new(tokio::sync::Notify::new()),
            wake_messages: Arc::new(tokio::sync::Notify::new()),
            wake_audience_events: Arc::new(tokio::sync::Notify::new()),
            stage: None,
            meta,
            clock: Arc::new(crate::pipeline::SystemClock),
        })
    }

    /// Replays one quarantined position of an activation-stage cursor (`destinations` or
    /// `destinations_audiences`); `None` when this process does not run that stage.
    pub async fn replay_position(
        &self,
        cursor: &str,
        position: i64,
    ) -> Option<Result<usize, crate::storage::StorageError>> {
        let stage = self.stage.as_ref()?;
        stage.replay(cursor, position).await
    }
}

/// Builds the enabled destinations and, when this process runs the pipeline, spawns the
/// activation stage and one delivery worker per destination.
pub fn start(
    stores: &crate::stores::Stores,
    config: &crate::config::Config,
    plan: Arc<crate::plan::PlanHandle>,
    runner: crate::pipeline::Runner,
    crm: &crate::crm::Wiring,
) -> Result<Arc<Destinations>, http::BuildError> {
    let mut d = Destinations::build(stores.destinations.clone(), &config.destinations, crm)?;
    d.clock = runner.clock.clone();
    let run = config.process && d.delivery.run_workers && !d.enabled.is_empty();
    if run {
        let pql = config.destinations.salesforce.as_ref().map_or_else(
            || "product_qualified_lead".to_owned(),
            |s| s.pql_audience.clone(),
        );
        let stage = stage::ActivationStage::new(
            d.store.clone(),
            d.enabled.values().cloned().collect(),
            plan,
            pql,
            d.wake.clone(),
        )
        .with_usage_signals(config.destinations.usage_signals.clone())
        .with_clock(d.clock.clone())
        .with_consent(d.consent.clone(), d.counters.clone());
        let stage = Arc::new(stage);
        d.stage = Some(stage.clone());
        runner.clone().spawn(
            stage::Messages(stage.clone()),
            d.wake_messages.clone(),
            d.wake.clone(),
        );
        runner.spawn(
            stage::AudienceEvents(stage),
            d.wake_audience_events.clone(),
            d.wake.clone(),
        );
    }
    let d = Arc::new(d);
    if run {
        worker::spawn(&d);
        tracing::info!(destinations = ?d.enabled.keys().collect::<Vec<_>>(), "destinations enabled");
    }
    Ok(d)
}

/// Records the per-destination counters into the current (per-scrape) recorder
/// (`crate::exposition`).
pub fn record_metrics(d: &Destinations) {
    type Read = fn(&Counters) -> &AtomicU64;
    let families: [(&str, &str, Read); 5] = [
        ("delivered", "Activations delivered.", |c| &c.delivered),
        ("failed", "Delivery calls that failed.", |c| &c.failed),
        ("dead", "Activations dead-lettered.", |c| &c.dead),
        ("retried", "Activations scheduled for a retry.", |c| {
            &c.retried
        }),
        (
            "consent_skipped",
            "Activations not enqueued for lack of consent to the destination's categories.",
            |c| &c.consent_skipped,
        ),
    ];
    for (name, help, read) in families {
        let name = format!("touchpoint_destination_{name}_total");
        metrics::describe_counter!(name.clone(), help);
        for (dest, c) in &d.counters {
            metrics::counter!(name.clone(), "destination" => *dest)
                .absolute(read(c).load(Ordering::Relaxed));
        }
    }
}

/// Exponential backoff with random jitter for the `attempt`-th failure (1-based), at least `after`
/// (`settle::backoff_delay`).
pub fn backoff(delivery: &DeliveryConfig, attempt: i64, after: Option<Duration>) -> Duration {
    settle::backoff_delay(delivery, attempt, after, settle::Jitter::random())
}

/// SHA-256 of a string, as lowercase hex (Meta's identifier hashing, GA4 client ids from user ids).
pub fn sha256_hex(input: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(input.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_exponentially_with_jitter_and_honours_retry_after() {
        let d = DeliveryConfig {
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(10),
            ..DeliveryConfig::default()
        };
        let first = backoff(&d, 1, None);
        assert!(first >= Duration::from_millis(50) && first <= Duration::from_millis(100));
        let fourth = backoff(&d, 4, None);
        assert!(fourth >= Duration::from_millis(400) && fourth <= Duration::from_millis(800));
        assert!(backoff(&d, 40, None) <= Duration::from_secs(10));
        assert_eq!(
            backoff(&d, 1, Some(Duration::from_secs(7))),
            Duration::from_secs(7)
        );
    }

    #[test]
    fn every_activation_kind_reads_back_from_its_stored_name() {
        for k in ActivationKind::ALL {
            assert_eq!(ActivationKind::parse(k.as_str()), Ok(k));
            assert_eq!(serde_json::to_value(k).unwrap(), k.as_str());
        }
    }

    #[test]
    fn an_unknown_stored_kind_is_a_clear_error() {
        let e = ActivationKind::parse("audience_joined").unwrap_err();
        assert!(
            e.to_string()
                .contains("unknown activation kind \"audience_joined\""),
            "{e}"
        );
        let stored: crate::storage::StorageError = e.into();
        assert!(
            stored.to_string().starts_with("unexpected stored value:"),
            "{stored}"
        );
    }

    #[test]
    fn activations_round_trip_through_json() {
        let a = Activation {
            key: "m:1".into(),
            kind: ActivationKind::Track,
            message_id: Some("m-1".into()),
            event: Some("workspace_created".into()),
            message: Some(serde_json::json!({"properties": {"workspace_id": "ws-1"}})),
            timestamp_ms: 1,
            profile_id: "p".into(),
            user_id: Some("u".into()),
            anonymous_id: None,
            email: None,
            phone: None,
            traits: Map::new(),
            account: None,
            audience: None,
            visit: None,
        };
        let back: Activation = serde_json::from_str(&serde_json::to_string(&a).unwrap()).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.properties()["workspace_id"], "ws-1");
    }
}
