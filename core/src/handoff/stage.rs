//! The I/O shell around the pure decisions: the handoff stage (a pipeline [`Stage`] behind the
//! profiles stage: scores the people a window of messages touched, records changed scores as
//! `lead_score` traits through the intake, decides and records handoffs), the tick (time in
//! nurture, pending deliveries, reminders), and the delivery of a handoff to the CRMs and the rep.

use super::decide::{self, Candidate, Followup, Load};
use super::model::{Model, Priority, Rep, Trigger};
use super::score::{self, DAY_MS, Event, Facts};
use super::store::{CURSOR, HandoffRow, HandoffStore, NewHandoff, Person, ScoreRow, Update};
use crate::crm::{hubspot, salesforce};
use crate::destinations::Method;
use crate::destinations::resend::config::ResendConfig;
use crate::destinations::salesforce::encoder::segment;
use crate::identity::ProfileId;
use crate::ingest::{self, prepare::Origin};
use crate::pipeline::{Batch, Clock, Stage};
use crate::state::AppState;
use crate::storage::StorageError;
use secrecy::ExposeSecret;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;
use touchpoint_tracking_plan::Message;

/// Most log positions one step covers.
const WINDOW: i64 = 500;
/// How far back events count towards the score.
const HISTORY_DAYS: i64 = 365;
/// Delivery attempts before a handoff is marked failed.
const MAX_ATTEMPTS: i64 = 8;
/// The Salesforce external id field of Tasks (the handoff's idempotency key).
const TASK_KEY: &str = "Touchpoint_Activation_Id__c";

/// Errors of a handoff step.
#[derive(Debug, thiserror::Error)]
pub enum HandoffError {
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] StorageError),
    /// The intake refused the score messages.
    #[error("intake refused the score messages: {0}")]
    Intake(String),
}

impl From<HandoffError> for StorageError {
    fn from(e: HandoffError) -> StorageError {
        match e {
            HandoffError::Storage(s) => s,
            other => StorageError::Stage(other.to_string()),
        }
    }
}

/// The running lead scoring and handoff.
pub struct Handoff {
    /// The model from `LEAD_HANDOFF.md`.
    pub model: Arc<Model>,
    /// The repository.
    pub store: Arc<dyn HandoffStore>,
    /// The injected clock.
    pub clock: Arc<dyn Clock>,
    salesforce: Option<salesforce::Reader>,
    hubspot: Option<hubspot::Reader>,
    resend: Option<ResendConfig>,
    client: reqwest::Client,
    /// One decision at a time per process (the stage and the tick).
    lock: tokio::sync::Mutex<()>,
}

/// What a tick did.
#[derive(Debug, Default, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TickReport {
    /// New handoffs by time in nurture.
    pub handed_off: usize,
    /// Handoffs whose CRM and email steps finished.
    pub delivered: usize,
    /// Reminders sent.
    pub reminded: usize,
    /// Handoffs whose Task was completed in the CRM.
    pub completed: usize,
    /// Handoffs given up after repeated failures.
    pub failed: usize,
    /// People a rule applied to who were not handed off, and why.
    pub skipped: Vec<Value>,
}

impl Handoff {
    /// A handoff over `store` for the configured CRMs and Resend.
    pub fn new(
        model: Model,
        store: Arc<dyn HandoffStore>,
        config: &crate::config::Config,
    ) -> anyhow::Result<Handoff> {
        let client = crate::destinations::http::client()?;
        Ok(Handoff {
            model: Arc::new(model),
            store,
            clock: config
                .handoff
                .clock
                .as_ref()
                .unwrap_or(&config.clock)
                .0
                .clone(),
            salesforce: config
                .destinations
                .salesforce
                .clone()
                .map(|c| salesforce::Reader::new(c, client.clone())),
            hubspot: config
                .destinations
                .hubspot
                .clone()
                .map(|c| hubspot::Reader::new(c, client.clone())),
            resend: config.destinations.resend.clone(),
            client,
            lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    fn rep(&self, id: &str) -> Option<&Rep> {
        self.model.reps.iter().find(|r| r.id == id)
    }

    /// Decides for one person; pushes a handoff (and records it in `load`) when one is due.
    #[allow(clippy::too_many_arguments)]
    fn consider(
        &self,
        profile: &ProfileId,
        person: &Person,
        s: &score::Score,
        new_events: &[Event],
        load: &mut Load,
        now: i64,
        out: &mut Vec<NewHandoff>,
        skipped: &mut Vec<Value>,
    ) {
        let facts = &person.facts;
        let candidate = Candidate {
            facts,
            score: s,
            new_events,
            memberships: &person.memberships,
            last_handoff: person.last_handoff,
        };
        let rule = match decide::decide(&self.model, &candidate, now) {
            Ok(Some(rule)) => rule,
            Ok(None) => return,
            Err(skip) => {
                tracing::debug!(
                    profile = %profile,
                    ?skip,
                    "handoff rule applies but the person is excluded"
                );
                skipped.push(json!({"profile": profile, "skip": skip}));
                return;
            }
        };
        match decide::assign(&self.model, facts, load) {
            Ok(a) => {
                load.record(&a);
                let brief = decide::brief(profile, facts, s, rule);
                tracing::info!(profile = %profile, rule = %rule.id, rep = %a.rep, team = %a.team, score = s.total, "lead handed off");
                out.push(NewHandoff {
                    profile_id: profile.clone(),
                    rule: rule.id.clone(),
                    kind: rule.trigger.kind().to_owned(),
                    priority: rule.priority.as_str().to_owned(),
                    score: s.total,
                    team: a.team,
                    rep: a.rep,
                    how: a.how,
                    brief: serde_json::to_value(&brief).unwrap_or(Value::Null),
                    window_ms: i64::from(self.model.settings.window_days) * DAY_MS,
                });
            }
            Err(e) => {
                // Summed up once per window by `warn_unassigned`: a full team would otherwise
                // log a line for every lead that touches the site.
                tracing::debug!(profile = %profile, rule = %rule.id, error = %e, "lead not handed off: nobody to assign");
                skipped.push(json!({"profile": profile, "skip": {"reason": "no_rep", "detail": e.to_string()}}));
            }
        }
    }

    /// Scores and decides for the people a window of processed messages touched, records the
    /// changed scores as traits, the handoffs and the cursor, then delivers. Returns the
    /// positions consumed.
    pub async fn step(&self, state: &AppState, limit: i64) -> Result<usize, HandoffError> {
        let _one = self.lock.lock().await;
        let (cursor, cap) = self.store.cursors().await?;
        if cap <= cursor {
            return Ok(0);
        }
        let upto = cap.min(cursor + limit);
        let now = self.clock.now_ms();
        let rows = self.store.window(cursor, upto).await?;
        // The scores this stage recorded come back through the log: they change nothing it reads.
        let own = state.sources.by_name(super::SOURCE).map(|s| s.id);
        let mut touched: BTreeMap<ProfileId, Vec<Event>> = BTreeMap::new();
        for r in rows
            .into_iter()
            .filter(|r| own.is_none() || r.source != own)
        {
            touched.entry(r.profile).or_default().push(r.event);
        }
        let mut load = self.store.load().await?;
        let profiles: Vec<ProfileId> = touched.keys().cloned().collect();
        let people = self
            .store
            .people(&profiles, now - HISTORY_DAYS * DAY_MS)
            .await?;
        let mut scores = Vec::new();
        let mut messages = Vec::new();
        let mut handoffs = Vec::new();
        let mut skipped = Vec::new();
        for (profile, new_events) in &touched {
            let Some(person) = people.get(profile) else {
                continue;
            };
            let s = score::score(&self.model, &person.facts, now);
            if s.differs_from(person.score.as_ref())
                && let Some((kind, value)) = &person.who
            {
                let id_field = if kind == "user_id" {
                    "userId"
                } else {
                    "anonymousId"
                };
                let breakdown = s.breakdown_json();
                messages.push(json!({
                    "type": "identify", id_field: value,
                    "messageId": format!("lead-score-{profile}-{upto}"),
                    "traits": {"lead_score": s.total, "lead_score_breakdown": breakdown},
                    "context": {"library": {"name": "touchpoint-lead-scoring"}},
                }));
                scores.push(ScoreRow {
                    profile_id: profile.clone(),
                    score: s.total,
                    breakdown: breakdown.to_string(),
                });
            }
            self.consider(
                profile,
                person,
                &s,
                new_events,
                &mut load,
                now,
                &mut handoffs,
                &mut skipped,
            );
        }
        warn_unassigned(&skipped);
        // The scores go to the intake first: a step redone after a failed commit sends the same
        // messageIds again, which the intake drops as duplicates.
        emit(state, &messages).await?;
        if self
            .store
            .commit(Some((cursor, upto)), &scores, &handoffs, now)
            .await?
            .is_none()
        {
            // Another process moved the cursor first.
            return Ok(1);
        }
        if !handoffs.is_empty() {
            self.deliver_pending(now).await?;
        }
        Ok((upto - cursor) as usize)
    }

    /// The time-based part: hands off people who have been in a nurture audience long enough,
    /// retries pending deliveries, and reminds reps of Tasks still open (or notes them completed).
    pub async fn tick(&self) -> Result<TickReport, HandoffError> {
        let _one = self.lock.lock().await;
        let now = self.clock.now_ms();
        let mut report = TickReport::default();
        let mut load = self.store.load().await?;
        let mut handoffs = Vec::new();
        for rule in &self.model.rules {
            let Trigger::Nurture { audience, days } = &rule.trigger else {
                continue;
            };
            let before = now - i64::from(*days) * DAY_MS;
            let members = self.store.members_since(audience, before, 500).await?;
            let people = self
                .store
                .people(&members, now - HISTORY_DAYS * DAY_MS)
                .await?;
            // Oldest members first, as `members_since` lists them.
            for profile in &members {
                let Some(person) = people.get(profile) else {
                    continue;
                };
                let s = score::score(&self.model, &person.facts, now);
                let already = handoffs
                    .iter()
                    .any(|h: &NewHandoff| &h.profile_id == profile);
                if !already {
                    self.consider(
                        profile,
                        person,
                        &s,
                        &[],
                        &mut load,
                        now,
                        &mut handoffs,
                        &mut report.skipped,
                    );
                }
            }
        }
        warn_unassigned(&report.skipped);
        if !handoffs.is_empty() {
            // Fewer than decided when another process handed someone off meanwhile.
            report.handed_off = self
                .store
                .commit(None, &[], &handoffs, now)
                .await?
                .map_or(0, |ids| ids.len());
        }
        let (delivered, failed) = self.deliver_pending(now).await?;
        report.delivered = delivered;
        report.failed = failed;
        let (reminded, completed) = self.follow_up(now).await?;
        report.reminded = reminded;
        report.completed = completed;
        Ok(report)
    }

    /// Runs the missing steps of every pending handoff; returns (delivered, failed).
    async fn deliver_pending(&self, now: i64) -> Result<(usize, usize), StorageError> {
        let (mut delivered, mut failed) = (0, 0);
        for mut row in self.store.in_state("pending", 100).await? {
            // Another task or processing node may have read the same row: one delivers it.
            if !self.store.claim(row.id, row.attempts).await? {
                continue;
            }
            row.attempts += 1; // what the claim wrote
            let update = self.deliver(&row, now).await?;
            match update.state.as_str() {
                "open" => delivered += 1,
                "failed" => failed += 1,
                _ => {}
            }
            self.store.update(&update, now).await?;
        }
        Ok((delivered, failed))
    }

    /// Sets the owner and creates the Task in each CRM the rep has an id in, and emails the rep;
    /// steps already done (in `progress`) are skipped, so a retry repeats nothing.
    async fn deliver(&self, row: &HandoffRow, now: i64) -> Result<Update, StorageError> {
        let mut progress = row.progress.as_object().cloned().unwrap_or_default();
        let mut errors = Vec::new();
        let mut update = Update {
            id: row.id,
            state: row.state.clone(),
            progress: Value::Null,
            // The claim already counted this attempt.
            attempts: row.attempts,
            error: None,
            reminded_at: row.reminded_at,
            closed_at: None,
        };
        let Some(rep) = self.rep(&row.rep) else {
            update.state = "failed".into();
            update.error = Some(format!("rep {} is no longer in the roster", row.rep));
            update.closed_at = Some(now);
            update.progress = Value::Object(progress);
            return Ok(update);
        };
        let brief: decide::Brief = match serde_json::from_value(row.brief.clone()) {
            Ok(b) => b,
            Err(e) => {
                update.state = "failed".into();
                update.error = Some(format!("unreadable brief: {e}"));
                update.progress = Value::Object(progress);
                return Ok(update);
            }
        };
        let Person {
            facts, who: user, ..
        } = self
            .store
            .people(std::slice::from_ref(&row.profile_id), now)
            .await?
            .remove(&row.profile_id)
            .unwrap_or_default();
        let priority = match row.priority.as_str() {
            "standard" => Priority::Standard,
            "priority" => Priority::Priority,
            _ => Priority::Immediate,
        };
        let due = now + i64::from(self.model.settings.task_due_days) * DAY_MS;
        if let (Some(sf), Some(owner)) = (&self.salesforce, &rep.salesforce) {
            let done = progress.get("salesforce").cloned().unwrap_or(json!({}));
            match self
                .to_salesforce(
                    sf,
                    row,
                    &brief,
                    owner,
                    &facts,
                    user.as_ref(),
                    priority,
                    due,
                    done,
                )
                .await
            {
                Ok(d) => {
                    progress.insert("salesforce".into(), d);
                }
                Err((d, e)) => {
                    progress.insert("salesforce".into(), d);
                    errors.push(format!("Salesforce: {e}"));
                }
            }
        }
        if let (Some(hs), Some(owner)) = (&self.hubspot, &rep.hubspot) {
            let done = progress.get("hubspot").cloned().unwrap_or(json!({}));
            match self
                .to_hubspot(hs, &brief, owner, &facts, priority, due, done)
                .await
            {
                Ok(d) => {
                    progress.insert("hubspot".into(), d);
                }
                Err((d, e)) => {
                    progress.insert("hubspot".into(), d);
                    errors.push(format!("HubSpot: {e}"));
                }
            }
        }
        // The email tells the rep the Task is waiting: it goes once the CRM steps are done.
        if errors.is_empty() && progress.get("email").is_none() && self.resend.is_some() {
            let (subject, html) = brief.email(&rep.id, false);
            match self
                .email(&rep.email, &subject, &html, &format!("handoff-{}", row.id))
                .await
            {
                Ok(id) => {
                    progress.insert("email".into(), json!(id));
                }
                Err(e) => errors.push(format!("Resend: {e}")),
            }
        }
        update.progress = Value::Object(progress);
        if errors.is_empty() {
            update.state = "open".into();
        } else {
            let error = errors.join("; ");
            tracing::warn!(handoff = row.id, attempts = update.attempts, error = %error, "handoff delivery failed");
            update.error = Some(error);
            if update.attempts >= MAX_ATTEMPTS {
                update.state = "failed".into();
                update.closed_at = Some(now);
            }
        }
        Ok(update)
    }

    /// The Salesforce steps: find the Contact or Lead, set its `OwnerId`, upsert the Task.
    #[allow(clippy::too_many_arguments)]
    async fn to_salesforce(
        &self,
        sf: &salesforce::Reader,
        row: &HandoffRow,
        brief: &decide::Brief,
        owner: &str,
        facts: &Facts,
        user: Option<&(String, String)>,
        priority: Priority,
        due: i64,
        mut done: Value,
    ) -> Result<Value, (Value, String)> {
        let base = sf.base();
        if done["id"].as_str().is_none() {
            let trait_id = |k: &str| {
                facts
                    .traits
                    .get(k)
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            };
            let mut found = trait_id("salesforce_contact_id")
                .map(|id| ("Contact", id))
                .or_else(|| trait_id("salesforce_lead_id").map(|id| ("Lead", id)));
            if found.is_none()
                && let Some((kind, value)) = user
                && kind == "user_id"
            {
                for object in ["Contact", "Lead"] {
                    let path = format!(
                        "{base}/sobjects/{object}/Touchpoint_User_Id__c/{}",
                        segment(value)
                    );
                    if let Ok(rec) = sf.call(Method::Get, &path, None).await
                        && let Some(id) = rec["Id"].as_str()
                    {
                        found = Some((object, id.to_owned()));
                        break;
                    }
                }
            }
            let Some((object, id)) = found else {
                return Err((done, "no Lead or Contact for this person yet".into()));
            };
            done["object"] = json!(object);
            done["id"] = json!(id);
        }
        let object = done["object"].as_str().unwrap_or("Contact").to_owned();
        let id = done["id"].as_str().unwrap_or_default().to_owned();
        if done["owner"] != json!(true) {
            let path = format!("{base}/sobjects/{object}/{}", segment(&id));
            if let Err(e) = sf
                .call(Method::Patch, &path, Some(&json!({"OwnerId": owner})))
                .await
            {
                return Err((done, e.to_string()));
            }
            done["owner"] = json!(true);
        }
        if done["task"].as_str().is_none() {
            let path = format!("{base}/sobjects/Task/{TASK_KEY}/handoff-{}", row.id);
            let body = json!({
                "Subject": brief.subject(),
                "Description": brief.body(),
                "OwnerId": owner,
                "WhoId": id,
                "ActivityDate": date(due),
                "Status": "Not Started",
                "Priority": if priority == Priority::Standard { "Normal" } else { "High" },
                "Type": "Call",
            });
            match sf.call(Method::Patch, &path, Some(&body)).await {
                Ok(answer) => {
                    done["task"] = json!(answer["id"].as_str().unwrap_or("created"));
                }
                Err(e) => return Err((done, e.to_string())),
            }
        }
        Ok(done)
    }

    /// The HubSpot steps: find the contact, set `hubspot_owner_id`, create the task associated
    /// with the contact.
    #[allow(clippy::too_many_arguments)]
    async fn to_hubspot(
        &self,
        hs: &hubspot::Reader,
        brief: &decide::Brief,
        owner: &str,
        facts: &Facts,
        priority: Priority,
        due: i64,
        mut done: Value,
    ) -> Result<Value, (Value, String)> {
        if done["contact"].as_str().is_none() {
            let mut found = facts
                .traits
                .get("hubspot_contact_id")
                .and_then(Value::as_str)
                .map(str::to_owned);
            if found.is_none()
                && let Some(email) = facts.traits.get("email").and_then(Value::as_str)
            {
                let path = format!(
                    "/crm/v3/objects/contacts/{}?idProperty=email",
                    segment(email)
                );
                match hs.call(Method::Get, &path, None).await {
                    Ok((200, v)) => found = v["id"].as_str().map(str::to_owned),
                    Ok(_) => {}
                    Err(e) => return Err((done, e.to_string())),
                }
            }
            let Some(contact) = found else {
                return Err((done, "no contact for this person yet".into()));
            };
            done["contact"] = json!(contact);
        }
        let contact = done["contact"].as_str().unwrap_or_default().to_owned();
        if done["owner"] != json!(true) {
            let path = format!("/crm/v3/objects/contacts/{}", segment(&contact));
            let body = json!({"properties": {"hubspot_owner_id": owner}});
            match hs.call(Method::Patch, &path, Some(&body)).await {
                Ok((200, _)) => done["owner"] = json!(true),
                Ok((status, v)) => return Err((done, format!("HTTP {status}: {v}"))),
                Err(e) => return Err((done, e.to_string())),
            }
        }
        if done["task"].as_str().is_none() {
            let body = json!({
                "properties": {
                    "hs_timestamp": crate::crm::mapping::rfc3339(due),
                    "hs_task_subject": brief.subject(),
                    "hs_task_body": brief.body(),
                    "hs_task_status": "NOT_STARTED",
                    "hs_task_priority": match priority {
                        Priority::Immediate | Priority::Priority => "HIGH",
                        Priority::Standard => "MEDIUM",
                    },
                    "hs_task_type": "CALL",
                    "hubspot_owner_id": owner,
                },
                "associations": [{
                    "to": {"id": contact},
                    "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 204}],
                }],
            });
            match hs
                .call(Method::Post, "/crm/v3/objects/tasks", Some(&body))
                .await
            {
                Ok((201 | 200, v)) if v["id"].is_string() => done["task"] = v["id"].clone(),
                Ok((status, v)) => return Err((done, format!("HTTP {status}: {v}"))),
                Err(e) => return Err((done, e.to_string())),
            }
        }
        Ok(done)
    }

    /// Sends one email through Resend (`POST /emails`, idempotent on `key`); returns its id.
    async fn email(
        &self,
        to: &str,
        subject: &str,
        html: &str,
        key: &str,
    ) -> Result<String, String> {
        let Some(r) = &self.resend else {
            return Err("Resend is not configured".into());
        };
        let body = json!({
            "from": self.model.settings.email_from,
            "to": [to],
            "subject": subject,
            "html": html,
            "tags": [{"name": "category", "value": "lead_handoff"}],
        });
        let answer = crate::destinations::http::execute(
            self.client
                .post(format!("{}/emails", r.url))
                .bearer_auth(r.api_key.expose_secret())
                .header("Idempotency-Key", key)
                .json(&body),
        )
        .await?;
        let v = answer.json();
        match (answer.status, v["id"].as_str()) {
            (200..=299, Some(id)) => Ok(id.to_owned()),
            (status, _) => Err(format!(
                "HTTP {status}: {}",
                v["message"].as_str().unwrap_or(&answer.body)
            )),
        }
    }

    /// Reads back the Tasks of open handoffs whose reminder is due (and of reminded ones): a
    /// completed Task completes the handoff, an open one gets its single reminder.
    async fn follow_up(&self, now: i64) -> Result<(usize, usize), StorageError> {
        let (mut reminded, mut completed) = (0, 0);
        let mut rows = self.store.in_state("open", 200).await?;
        rows.extend(self.store.in_state("reminded", 200).await?);
        for row in rows {
            let due = decide::followup(
                &row.state,
                row.created_at,
                self.model.settings.reminder_days,
                now,
            );
            if row.state == "open" && due == Followup::Wait {
                continue;
            }
            let open = match self.task_open(&row).await {
                Ok(open) => open,
                Err(e) => {
                    tracing::warn!(handoff = row.id, error = %e, "could not read the Task back; trying next tick");
                    continue;
                }
            };
            let mut update = Update {
                id: row.id,
                state: row.state.clone(),
                progress: row.progress.clone(),
                attempts: row.attempts,
                error: row.error.clone(),
                reminded_at: row.reminded_at,
                closed_at: None,
            };
            if !open {
                update.state = "completed".into();
                update.closed_at = Some(now);
                completed += 1;
            } else if row.state == "open" {
                let Some(rep) = self.rep(&row.rep) else {
                    continue;
                };
                let brief: decide::Brief = match serde_json::from_value(row.brief.clone()) {
                    Ok(b) => b,
                    Err(_) => continue,
                };
                let (subject, html) = brief.email(&rep.id, true);
                match self
                    .email(
                        &rep.email,
                        &subject,
                        &html,
                        &format!("handoff-{}-reminder", row.id),
                    )
                    .await
                {
                    Ok(id) => {
                        if let Some(p) = update.progress.as_object_mut() {
                            p.insert("reminder".into(), json!(id));
                        }
                        update.state = "reminded".into();
                        update.reminded_at = Some(now);
                        reminded += 1;
                    }
                    Err(e) => {
                        tracing::warn!(handoff = row.id, error = %e, "reminder not sent; trying next tick");
                        continue;
                    }
                }
            } else {
                continue;
            }
            self.store.update(&update, now).await?;
        }
        Ok((reminded, completed))
    }

    /// Whether every Task of the handoff is still open in its CRM (a completed one anywhere counts).
    async fn task_open(&self, row: &HandoffRow) -> Result<bool, String> {
        let mut open = true;
        if let (Some(sf), Some(_)) = (
            &self.salesforce,
            row.progress["salesforce"]["task"].as_str(),
        ) {
            let path = format!("{}/sobjects/Task/{TASK_KEY}/handoff-{}", sf.base(), row.id);
            let task = sf
                .call(Method::Get, &path, None)
                .await
                .map_err(|e| e.to_string())?;
            open &= decide::salesforce_task_open(&task);
        }
        if let (Some(hs), Some(id)) = (&self.hubspot, row.progress["hubspot"]["task"].as_str()) {
            let path = format!(
                "/crm/v3/objects/tasks/{}?properties=hs_task_status",
                segment(id)
            );
            match hs
                .call(Method::Get, &path, None)
                .await
                .map_err(|e| e.to_string())?
            {
                (200, task) => open &= decide::hubspot_task_open(&task),
                (status, v) => return Err(format!("HTTP {status}: {v}")),
            }
        }
        Ok(open)
    }
}

/// One warning for the leads of a step that no rep could take (`skipped` as [`Handoff::consider`]
/// records them), with how many and the first reason.
fn warn_unassigned(skipped: &[Value]) {
    let unassigned: Vec<&Value> = skipped
        .iter()
        .filter(|s| s["skip"]["reason"] == "no_rep")
        .collect();
    if let Some(first) = unassigned.first() {
        tracing::warn!(
            leads = unassigned.len(),
            first = %first["skip"]["detail"].as_str().unwrap_or_default(),
            "leads not handed off: nobody to assign"
        );
    }
}

/// `YYYY-MM-DD` of a time (Salesforce's date fields).
fn date(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// Hands the score messages to the intake under the internal scoring source.
async fn emit(state: &AppState, messages: &[Value]) -> Result<(), HandoffError> {
    if messages.is_empty() {
        return Ok(());
    }
    let source = state
        .sources
        .by_name(super::SOURCE)
        .ok_or_else(|| HandoffError::Intake(format!("source {} does not exist", super::SOURCE)))?;
    for chunk in messages.chunks(200) {
        let parsed = chunk
            .iter()
            .enumerate()
            .filter_map(|(i, m)| Message::from_value(m.clone(), None).ok().map(|p| (i, p)))
            .collect();
        let summary = ingest::accept(state, &source, Origin::Direct, parsed, Vec::new())
            .await
            .map_err(|e| HandoffError::Intake(e.to_string()))?;
        for r in &summary.rejected {
            tracing::warn!(code = r.code, error = %r.error, "lead score refused by the intake");
        }
    }
    Ok(())
}

/// The handoff stage as the pipeline runner drives it.
pub struct HandoffStage {
    handoff: Arc<Handoff>,
    state: AppState,
}

impl HandoffStage {
    /// The stage over the state's handoff.
    pub fn new(handoff: Arc<Handoff>, state: AppState) -> HandoffStage {
        HandoffStage { handoff, state }
    }
}

impl Stage for HandoffStage {
    fn name(&self) -> &'static str {
        CURSOR
    }

    fn cursor_name(&self) -> &'static str {
        CURSOR
    }

    /// Scores every touched person from their traits and recent events.
    fn weight(&self) -> u32 {
        4
    }

    async fn step(&mut self, batch: Batch) -> Result<usize, StorageError> {
        let limit = match batch {
            Batch::Full => WINDOW,
            Batch::One => 1,
        };
        Ok(self.handoff.step(&self.state, limit).await?)
    }

    async fn next_position(&mut self) -> Result<Option<i64>, StorageError> {
        let (cursor, cap) = self.handoff.store.cursors().await?;
        Ok((cap > cursor).then_some(cursor + 1))
    }
}

/// Spawns the stage under the runner (woken by `wake` when the profiles stage advances) and the
/// tick (when an interval is set).
pub fn start(
    state: &AppState,
    runner: crate::pipeline::Runner,
    wake: Arc<tokio::sync::Notify>,
    tick: std::time::Duration,
) {
    let Some(handoff) = state.handoff.clone() else {
        return;
    };
    runner.spawn(
        HandoffStage::new(handoff.clone(), state.clone()),
        wake,
        Arc::new(tokio::sync::Notify::new()),
    );
    if tick.is_zero() {
        return;
    }
    let leases = state.leases.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval_at(tokio::time::Instant::now() + tick, tick);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            // With several processing nodes the tick runs where the handoff stage runs, so one
            // node makes every handoff decision (round robin included).
            if leases.as_ref().is_some_and(|l| !l.holds(CURSOR)) {
                continue;
            }
            match handoff.tick().await {
                Ok(r) => tracing::debug!(?r, "handoff tick done"),
                Err(e) => tracing::warn!(error = %e, "handoff tick failed; retrying next time"),
            }
        }
    });
}
