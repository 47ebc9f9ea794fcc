//! The activation stage: a pipeline stage after profiles (and audiences) with its own cursors —
//! `destinations` over the log (processed messages only: `seq <=` the `profiles` cursor, not
//! blocked, linked to a profile) and `destinations_audiences` over `audience_events.id`. Each batch
//! becomes outbox rows for every enabled destination that wants them, written in the same
//! transaction as the cursor move, so a crash neither loses nor duplicates an activation.
//! Consent is checked per destination before a row is made ([`super::consent`]): a message's own
//! `context.consent`, or for audience transitions the profile's latest; a refused pair is counted
//! (`touchpoint_destination_consent_skipped_total`) and logged, never enqueued.

use super::config::UsageSignals;
use super::consent::{self, ConsentConfig, Decision};
use super::store::{AccountContext, DestinationStore, NewOutbox, ProfileContext, StageTx};
use super::{AccountSnapshot, Activation, ActivationKind, Counters, Destination, visits};
use crate::identity::ProfileId;
use crate::pipeline::{Batch, Stage};
use crate::plan::PlanHandle;
use crate::storage::StorageError;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use tokio::sync::Notify;

const MESSAGES: &str = "destinations";
const AUDIENCES: &str = "destinations_audiences";
const DAY_MS: i64 = 86_400_000;

/// The stage.
pub struct ActivationStage {
    store: Arc<dyn DestinationStore>,
    destinations: Vec<Arc<dyn Destination>>,
    plan: Arc<PlanHandle>,
    pql_audience: String,
    usage_signals: UsageSignals,
    batch: i64,
    workers: Arc<Notify>,
    consent: ConsentConfig,
    counters: BTreeMap<&'static str, Arc<Counters>>,
    clock: Arc<dyn crate::pipeline::Clock>,
}

impl ActivationStage {
    /// A stage feeding `destinations`; `workers` is woken when rows were added.
    pub fn new(
        store: Arc<dyn DestinationStore>,
        destinations: Vec<Arc<dyn Destination>>,
        plan: Arc<PlanHandle>,
        pql_audience: String,
        workers: Arc<Notify>,
    ) -> ActivationStage {
        ActivationStage {
            store,
            destinations,
            plan,
            pql_audience,
            usage_signals: UsageSignals::default(),
            batch: 200,
            workers,
            consent: ConsentConfig::default(),
            counters: BTreeMap::new(),
            clock: Arc::new(crate::pipeline::SystemClock),
        }
    }

    /// Reads the time from `clock` (activations are stamped with it).
    pub fn with_clock(mut self, clock: Arc<dyn crate::pipeline::Clock>) -> Self {
        self.clock = clock;
        self
    }

    /// Reads account usage signals from these plan names (default: the seed plan's).
    pub fn with_usage_signals(mut self, usage_signals: UsageSignals) -> Self {
        self.usage_signals = usage_signals;
        self
    }

    /// Enforces `consent` (each destination's categories), counting refusals in `counters`.
    pub fn with_consent(
        mut self,
        consent: ConsentConfig,
        counters: BTreeMap<&'static str, Arc<Counters>>,
    ) -> ActivationStage {
        self.consent = consent;
        self.counters = counters;
        self
    }

    /// One batch of messages and one of audience events; returns how many were consumed.
    pub async fn step(&self) -> Result<usize, StorageError> {
        let a = self.step_messages(self.batch, None).await?;
        let b = self.step_audiences(self.batch, None).await?;
        Ok(a + b)
    }

    /// Activates one position again without moving its cursor (a quarantined position being
    /// replayed); outbox rows are keyed, so what was already enqueued is not enqueued twice.
    pub async fn replay(&self, cursor: &str, position: i64) -> Option<Result<usize, StorageError>> {
        match cursor {
            MESSAGES => Some(self.step_messages(1, Some(position)).await),
            AUDIENCES => Some(self.step_audiences(1, Some(position)).await),
            _ => None,
        }
    }

    /// Activates at most `limit` processed messages after the cursor; with `only`, just that
    /// position, leaving the cursor where it is.
    async fn step_messages(&self, limit: i64, only: Option<i64>) -> Result<usize, StorageError> {
        let mut tx = self.store.begin().await?;
        let cursor = tx.lock_cursor(MESSAGES).await?;
        let processed = tx.cursor("profiles").await?;
        let (after, cap) = match only {
            Some(seq) => (seq - 1, seq.min(processed)),
            None => (cursor, processed),
        };
        if cap <= after {
            tx.commit(MESSAGES.into(), cursor).await?;
            return Ok(0);
        }
        let rows = tx.messages(after, cap, limit).await?;
        // A full batch stops at its last row; otherwise everything up to `processed` was seen
        // (messages without a profile — dropped, blocked, id-less — need no activation).
        let upto = if only.is_some() {
            cursor
        } else if rows.len() as i64 == limit {
            rows.last().map_or(processed, |r| r.seq)
        } else {
            processed
        };
        let now = self.clock.now_ms();
        let mut ctx = Context::default();
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for row in &rows {
            let Ok(message) = serde_json::from_str::<Value>(&row.body) else {
                continue;
            };
            let profile = self.profile(&mut *tx, &mut ctx, &row.profile_id).await?;
            let group = (row.kind == ActivationKind::Group)
                .then(|| message.get("groupId").and_then(value_str))
                .flatten()
                .or_else(|| profile.accounts.first().cloned());
            let account = match group {
                Some(g) => Some(self.account(&mut *tx, &mut ctx, &g, now).await?),
                None => None,
            };
            let ids = identities(&profile);
            let mut activation = Activation {
                key: format!("m:{}", row.seq),
                kind: row.kind,
                message_id: Some(row.message_id.clone()),
                event: message.get("event").and_then(value_str),
                anonymous_id: message
                    .get("anonymousId")
                    .and_then(value_str)
                    .or_else(|| ids.get("anonymous_id").cloned()),
                user_id: ids
                    .get("user_id")
                    .cloned()
                    .or_else(|| message.get("userId").and_then(value_str)),
                email: ids.get("email").cloned(),
                phone: ids.get("phone").cloned(),
                message: Some(message),
                timestamp_ms: row.event_time,
                profile_id: row.profile_id.clone(),
                traits: traits_map(&profile.traits),
                account,
                audience: None,
                visit: None,
            };
            if self.wants_visit(&activation) {
                let earlier = tx
                    .activity_before(
                        &row.profile_id,
                        row.event_time,
                        row.seq,
                        row.event_time - visits::LOOKBACK_MS,
                        visits::LOOKBACK_EVENTS,
                    )
                    .await?;
                activation.visit = Some(visits::visit(&earlier, row.event_time));
            }
            let consent = activation.message.as_ref().and_then(consent::of_message);
            self.fan_out(&activation, consent, &mut out, &mut skipped);
        }
        let added = tx.enqueue(&out, now).await?;
        tx.commit(MESSAGES.into(), upto).await?;
        self.count_skipped(&skipped);
        if added > 0 {
            self.workers.notify_waiters();
        }
        Ok(rows.len().max(usize::from(upto > cursor)))
    }

    /// The first message the next `step_messages` would activate.
    async fn next_message(&self) -> Result<Option<i64>, StorageError> {
        let mut tx = self.store.begin().await?;
        let cursor = tx.lock_cursor(MESSAGES).await?;
        let processed = tx.cursor("profiles").await?;
        let rows = tx.messages(cursor, processed, 1).await?;
        tx.commit(MESSAGES.into(), cursor).await?;
        Ok(rows.first().map(|r| r.seq))
    }

    /// The first audience event the next `step_audiences` would activate.
    async fn next_audience_event(&self) -> Result<Option<i64>, StorageError> {
        let mut tx = self.store.begin().await?;
        let cursor = tx.lock_cursor(AUDIENCES).await?;
        let events = tx.audience_events(cursor, 1).await?;
        tx.commit(AUDIENCES.into(), cursor).await?;
        Ok(events.first().map(|e| e.id))
    }

    /// Activates at most `limit` audience events after the cursor; with `only`, just that event,
    /// leaving the cursor where it is.
    async fn step_audiences(&self, limit: i64, only: Option<i64>) -> Result<usize, StorageError> {
        let mut tx = self.store.begin().await?;
        let cursor = tx.lock_cursor(AUDIENCES).await?;
        let mut events = tx
            .audience_events(only.map_or(cursor, |id| id - 1), limit)
            .await?;
        if let Some(id) = only {
            events.retain(|e| e.id == id);
        }
        let Some(last) = events
            .last()
            .map(|e| if only.is_some() { cursor } else { e.id })
        else {
            tx.commit(AUDIENCES.into(), cursor).await?;
            return Ok(0);
        };
        let now = self.clock.now_ms();
        let mut ctx = Context::default();
        let mut out = Vec::new();
        let mut skipped = Vec::new();
        for e in &events {
            let Some(live) = tx.live_profile(&e.profile_id).await? else {
                continue;
            };
            let profile = self.profile(&mut *tx, &mut ctx, &live).await?;
            let account = match profile.accounts.first() {
                Some(g) => Some(self.account(&mut *tx, &mut ctx, g, now).await?),
                None => None,
            };
            // The account's PQL status is read in this transaction, after the transition
            // committed: it already reflects every member, not just this profile.
            let ids = identities(&profile);
            let activation = Activation {
                key: format!("a:{}", e.id),
                kind: e.kind,
                message_id: None,
                event: Some(e.kind.as_str().to_owned()),
                message: None,
                timestamp_ms: e.at,
                profile_id: live.clone(),
                user_id: ids.get("user_id").cloned(),
                anonymous_id: ids.get("anonymous_id").cloned(),
                email: ids.get("email").cloned(),
                phone: ids.get("phone").cloned(),
                traits: traits_map(&profile.traits),
                account,
                audience: Some(e.audience.clone()),
                visit: None,
            };
            let consent = self.latest_consent(&mut *tx, &mut ctx, &live).await?;
            self.fan_out(&activation, consent.as_ref(), &mut out, &mut skipped);
        }
        let added = tx.enqueue(&out, now).await?;
        tx.commit(AUDIENCES.into(), last).await?;
        self.count_skipped(&skipped);
        if added > 0 {
            self.workers.notify_waiters();
        }
        Ok(events.len())
    }

    /// Whether a destination that uses visits (GA4 sessions) wants this page, screen or track.
    fn wants_visit(&self, activation: &Activation) -> bool {
        matches!(
            activation.kind,
            ActivationKind::Page | ActivationKind::Screen | ActivationKind::Track
        ) && self
            .destinations
            .iter()
            .any(|d| d.wants_visits() && d.accepts(activation))
    }

    /// Rows for every destination that wants the activation and whose categories `consent` (the
    /// activation's `context.consent`) covers; refused destinations go to `skipped`.
    fn fan_out(
        &self,
        activation: &Activation,
        consent: Option<&Value>,
        out: &mut Vec<NewOutbox>,
        skipped: &mut Vec<&'static str>,
    ) {
        let mut payload: Option<String> = None;
        for d in &self.destinations {
            if !d.accepts(activation) {
                continue;
            }
            let categories = self.consent.categories_of(d.name());
            if let Decision::Deny(refused) =
                consent::permits(categories, consent, self.consent.require)
            {
                tracing::info!(
                    destination = d.name(),
                    key = %activation.key,
                    profile_id = %activation.profile_id,
                    refused = ?refused,
                    "activation skipped for consent"
                );
                skipped.push(d.name());
                continue;
            }
            let p = payload
                .get_or_insert_with(|| serde_json::to_string(activation).unwrap_or_default());
            out.push(NewOutbox {
                destination: d.name().into(),
                key: activation.key.clone(),
                payload: p.clone(),
                profile_id: activation.profile_id.clone(),
            });
        }
    }

    /// Counts consent refusals once their batch committed (a failed batch is read again).
    fn count_skipped(&self, skipped: &[&'static str]) {
        for name in skipped {
            if let Some(c) = self.counters.get(name) {
                Counters::add(&c.consent_skipped, 1);
            }
        }
    }

    /// The `context.consent` of the profile's newest message (by event time) that collected
    /// consent; `None` when it never did.
    async fn latest_consent(
        &self,
        tx: &mut dyn StageTx,
        ctx: &mut Context,
        id: &ProfileId,
    ) -> Result<Option<Value>, StorageError> {
        if let Some(c) = ctx.consents.get(id) {
            return Ok(c.clone());
        }
        let c = tx
            .latest_consent(id)
            .await?
            .and_then(|body| serde_json::from_str::<Value>(&body).ok())
            .and_then(|m| consent::of_message(&m).cloned())
            .filter(|c| consent::is_collected(Some(c)));
        ctx.consents.insert(id.clone(), c.clone());
        Ok(c)
    }

    async fn profile(
        &self,
        tx: &mut dyn StageTx,
        ctx: &mut Context,
        id: &ProfileId,
    ) -> Result<ProfileContext, StorageError> {
        if let Some(p) = ctx.profiles.get(id) {
            return Ok(p.clone());
        }
        let p = tx.profile(id).await?;
        ctx.profiles.insert(id.clone(), p.clone());
        Ok(p)
    }

    async fn account(
        &self,
        tx: &mut dyn StageTx,
        ctx: &mut Context,
        group_id: &str,
        now: i64,
    ) -> Result<AccountSnapshot, StorageError> {
        if let Some(a) = ctx.accounts.get(group_id) {
            return Ok(a.clone());
        }
        let raw = tx
            .account(
                group_id,
                now - 7 * DAY_MS,
                &self.pql_audience,
                self.usage_signals.events(),
            )
            .await?;
        let plan = self.plan.current();
        let snapshot = snapshot(group_id, &raw, now, &self.usage_signals, |event| {
            plan.plan
                .stage_of(event)
                .and_then(|s| plan.plan.stages().iter().position(|st| st.name == s))
                .map(|r| (r, plan.plan.stages()[r].name.clone()))
        });
        ctx.accounts.insert(group_id.to_owned(), snapshot.clone());
        Ok(snapshot)
    }
}

/// Per-batch caches (a batch often carries many messages of one profile or account).
#[derive(Default)]
struct Context {
    profiles: HashMap<ProfileId, ProfileContext>,
    accounts: HashMap<String, AccountSnapshot>,
    /// Latest consent by profile (audience activations).
    consents: HashMap<ProfileId, Option<Value>>,
}

fn value_str(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn traits_map(rows: &[(String, String)]) -> Map<String, Value> {
    rows.iter()
        .map(|(k, v)| {
            (
                k.clone(),
                serde_json::from_str(v).unwrap_or(Value::String(v.clone())),
            )
        })
        .collect()
}

/// The first (newest) identity of each kind.
fn identities(p: &ProfileContext) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for (kind, value) in &p.identities {
        out.entry(kind.clone()).or_insert_with(|| value.clone());
    }
    out
}

/// Derives an account's usage figures and PQL signals from the events `names` configures; `stage`
/// ranks an event name's journey stage.
pub fn snapshot(
    group_id: &str,
    raw: &AccountContext,
    now: i64,
    names: &UsageSignals,
    stage: impl Fn(&str) -> Option<(usize, String)>,
) -> AccountSnapshot {
    let traits = traits_map(&raw.traits);
    let mut features = BTreeSet::new();
    let mut integrations_30d = BTreeSet::new();
    let mut invites = 0;
    for (event, at, body) in &raw.usage {
        let props = serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|m| m.get("properties").cloned())
            .unwrap_or(Value::Null);
        if *event == names.feature_event {
            if let Some(f) = props.get(&names.feature_property).and_then(value_str) {
                features.insert(f);
            }
        } else if *event == names.integration_event {
            if let Some(i) = props.get(&names.integration_property).and_then(value_str) {
                features.insert(format!("integration:{i}"));
                if *at >= now - 30 * DAY_MS {
                    integrations_30d.insert(i);
                }
            }
        } else if *event == names.invite_event {
            invites += 1;
        }
    }
    let journey_stage = raw
        .kinds
        .iter()
        .filter_map(|(kind, event)| match (kind.as_str(), event) {
            ("track", Some(e)) => stage(e),
            ("page", _) => stage("page_viewed"),
            _ => None,
        })
        .max_by_key(|(rank, _)| *rank)
        .map(|(_, name)| name);
    let mut signals = Vec::new();
    if let Some(seats) = traits.get(&names.seats_trait) {
        signals.push(format!("{} = {seats}", names.seats_trait));
    }
    if !integrations_30d.is_empty() {
        signals.push(format!(
            "{} in the last 30 days: {}",
            names.integration_event,
            integrations_30d.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if invites > 0 {
        signals.push(format!("teammates invited: {invites}"));
    }
    signals.push(format!(
        "active users in the last 7 days: {}",
        raw.active_users_7d
    ));
    if let Some(s) = &journey_stage {
        signals.push(format!("journey stage: {s}"));
    }
    AccountSnapshot {
        group_id: group_id.to_owned(),
        traits,
        active_users_7d: raw.active_users_7d,
        key_features: features.into_iter().collect(),
        journey_stage,
        pql: raw.pql_member,
        signals,
    }
}

/// The activation stage's message cursor, as the pipeline runner drives it.
pub struct Messages(pub Arc<ActivationStage>);

impl Stage for Messages {
    fn name(&self) -> &'static str {
        MESSAGES
    }

    fn cursor_name(&self) -> &'static str {
        MESSAGES
    }

    async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
        let limit = if batch == Batch::One { 1 } else { self.0.batch };
        self.0.step_messages(limit, None).await
    }

    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        self.0.next_message().await
    }
}

/// The activation stage's audience-event cursor, as the pipeline runner drives it.
pub struct AudienceEvents(pub Arc<ActivationStage>);

impl Stage for AudienceEvents {
    fn name(&self) -> &'static str {
        AUDIENCES
    }

    fn cursor_name(&self) -> &'static str {
        AUDIENCES
    }

    async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
        let limit = if batch == Batch::One { 1 } else { self.0.batch };
        self.0.step_audiences(limit, None).await
    }

    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        self.0.next_audience_event().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_snapshot_lists_features_and_the_signals_that_qualify_it() {
        let now = 100 * DAY_MS;
        let raw = AccountContext {
            traits: vec![("seats_provisioned".into(), "5".into())],
            active_users_7d: 2,
            usage: vec![
                (
                    "integration_connected".into(),
                    now - DAY_MS,
                    r#"{"properties":{"integration_name":"slack"}}"#.into(),
                ),
                (
                    "integration_connected".into(),
                    now - 60 * DAY_MS,
                    r#"{"properties":{"integration_name":"jira"}}"#.into(),
                ),
                (
                    "feature_toggled".into(),
                    now,
                    r#"{"properties":{"feature_name":"dark_mode"}}"#.into(),
                ),
                ("teammate_invited".into(), now, "{}".into()),
                ("teammate_invited".into(), now, "{}".into()),
            ],
            kinds: vec![
                ("page".into(), None),
                ("track".into(), Some("teammate_invited".into())),
            ],
            pql_member: true,
        };
        let s = snapshot("acme", &raw, now, &UsageSignals::default(), |e| match e {
            "page_viewed" => Some((0, "Evaluation".into())),
            "teammate_invited" => Some((3, "Expansion".into())),
            _ => None,
        });
        assert_eq!(
            s.key_features,
            vec!["dark_mode", "integration:jira", "integration:slack"]
        );
        assert_eq!(s.journey_stage.as_deref(), Some("Expansion"));
        assert!(s.pql);
        assert!(s.signals.contains(&"seats_provisioned = 5".to_owned()));
        assert!(
            s.signals
                .contains(&"integration_connected in the last 30 days: slack".to_owned())
        );
        assert!(s.signals.contains(&"teammates invited: 2".to_owned()));
    }
}
