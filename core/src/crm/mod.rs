//! The CRM loop: Salesforce and HubSpot kept in step with profiles and accounts, both ways.
//!
//! - Out: the Salesforce and HubSpot destinations write the fields `CRM_MAPPINGS.md` maps
//!   ([`mapping`], [`outbound`]): Leads or Contacts, Accounts, HubSpot contacts and companies. A
//!   field the CRM changed more recently than our value is not overwritten; every value written is
//!   remembered so it does not come back as a change.
//! - In: a poller reads what changed since a watermark per object (Salesforce SOQL on
//!   `SystemModstamp` with `queryMore`, and getDeleted; HubSpot's search API on the last-modified
//!   date, paged) and HubSpot webhooks (v3 signature) bring changes near-realtime. Changes become
//!   `identify` and `group` messages of the internal `salesforce` / `hubspot` sources through the
//!   normal intake ([`crate::ingest::accept`]), timestamped with the CRM's modified time, so they
//!   go through the plan, land on the timeline, drive audiences, and last-modified wins.
//! - `touchpoint crm check` compares the mappings with the CRMs' metadata ([`check`]).
//!
//! Polling runs every `TOUCHPOINT_CRM_POLL_SECS` (and on `POST /admin/crm/poll`); one step at a
//! time per process, deciding purely ([`sync::decide`]) between reading the CRM and the store and
//! committing.

pub mod check;
pub mod hubspot;
pub mod mapping;
pub mod outbound;
pub mod salesforce;
pub mod store;
pub mod sync;
pub mod webhook;

pub use mapping::{Crm, Mappings};
pub use store::{CrmStore, PgCrm, SqliteCrm};

use crate::admin::{Admin, AdminError};
use crate::config::ConfigError;
use crate::ingest::{self, prepare::Origin};
use crate::state::AppState;
use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::SecretString;
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use touchpoint_tracking_plan::Message;

/// CRM sync settings.
#[derive(Clone, Debug)]
pub struct CrmConfig {
    /// The field mappings (`TOUCHPOINT_CRM_MAPPINGS`, default `CRM_MAPPINGS.md`; when the file is
    /// missing, the mappings bundled with this build are used).
    pub mappings_path: PathBuf,
    /// Read changes back from the CRMs that are configured as destinations
    /// (`TOUCHPOINT_CRM_INBOUND`, default on).
    pub inbound: bool,
    /// Time between polls (`TOUCHPOINT_CRM_POLL_SECS`, default 60; 0 polls only on
    /// `POST /admin/crm/poll` and webhooks).
    pub poll_interval: Duration,
    /// How far back the very first poll reads (`TOUCHPOINT_CRM_BACKFILL_DAYS`, default 0: changes
    /// from the first start on).
    pub backfill: Duration,
    /// Most pages one poll reads per object (2000 Salesforce records or 200 HubSpot records each)
    /// before leaving the rest to the next poll (`TOUCHPOINT_CRM_MAX_PAGES`, default 50).
    pub max_pages: usize,
    /// The HubSpot app's client secret, which signs webhooks (`TOUCHPOINT_HUBSPOT_APP_SECRET`;
    /// default the OAuth client secret). Webhooks are refused without one.
    pub hubspot_app_secret: Option<SecretString>,
    /// The webhook URL exactly as configured in the HubSpot app, which the v3 signature covers
    /// (`TOUCHPOINT_HUBSPOT_WEBHOOK_URL`; default `TOUCHPOINT_PUBLIC_URL` +
    /// `/v1/sources/hubspot/webhook`, else the request's scheme, Host and path).
    pub hubspot_webhook_url: Option<String>,
    /// Oldest webhook signature accepted (5 minutes, HubSpot's own rule).
    pub webhook_tolerance: Duration,
}

impl Default for CrmConfig {
    fn default() -> Self {
        CrmConfig {
            mappings_path: PathBuf::from("CRM_MAPPINGS.md"),
            inbound: true,
            poll_interval: Duration::from_secs(60),
            backfill: Duration::ZERO,
            max_pages: 50,
            hubspot_app_secret: None,
            hubspot_webhook_url: None,
            webhook_tolerance: Duration::from_secs(300),
        }
    }
}

impl CrmConfig {
    /// Reads the CRM variables through `get`.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<CrmConfig, ConfigError> {
        use crate::destinations::config::{num, var};
        let mut c = CrmConfig::default();
        if let Some(p) = var(get, "TOUCHPOINT_CRM_MAPPINGS") {
            c.mappings_path = p.into();
        }
        if let Some(v) = var(get, "TOUCHPOINT_CRM_INBOUND") {
            c.inbound = !matches!(v.as_str(), "0" | "false" | "no" | "off");
        }
        c.poll_interval = Duration::from_secs(num(get, "TOUCHPOINT_CRM_POLL_SECS", 60)?);
        c.backfill = Duration::from_secs(num(get, "TOUCHPOINT_CRM_BACKFILL_DAYS", 0)? * 86_400);
        c.max_pages = num(get, "TOUCHPOINT_CRM_MAX_PAGES", 50)?.max(1) as usize;
        c.hubspot_app_secret = var(get, "TOUCHPOINT_HUBSPOT_APP_SECRET")
            .or_else(|| var(get, "TOUCHPOINT_HUBSPOT_CLIENT_SECRET"))
            .map(SecretString::from);
        c.hubspot_webhook_url = var(get, "TOUCHPOINT_HUBSPOT_WEBHOOK_URL").or_else(|| {
            var(get, "TOUCHPOINT_PUBLIC_URL")
                .map(|u| format!("{}{}", u.trim_end_matches('/'), webhook::PATH))
        });
        Ok(c)
    }

    /// Reads and validates the mappings file against the plan; a missing file means the bundled
    /// mappings. Errors name the file and line.
    pub fn load_mappings(
        &self,
        plan: &touchpoint_tracking_plan::TrackingPlan,
    ) -> anyhow::Result<Mappings> {
        let (text, path) = match std::fs::read_to_string(&self.mappings_path) {
            Ok(t) => (t, self.mappings_path.display().to_string()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!(file = %self.mappings_path.display(), "no CRM mappings file; using the bundled mappings");
                (
                    mapping::BUNDLED.to_owned(),
                    "CRM_MAPPINGS.md (bundled)".into(),
                )
            }
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("reading {}", self.mappings_path.display())));
            }
        };
        match mapping::load(&text, plan) {
            Ok((m, warnings)) => {
                for w in warnings {
                    tracing::warn!(file = %path, line = w.line, "{}", w.message);
                }
                Ok(m)
            }
            Err(problems) => {
                let lines: Vec<String> = problems
                    .iter()
                    .filter(|p| p.error)
                    .map(|p| format!("{path}:{}: {}", p.line, p.message))
                    .collect();
                anyhow::bail!("invalid CRM mappings:\n{}", lines.join("\n"))
            }
        }
    }
}

/// What the destinations need from the CRM loop: the mappings, and the store that remembers what
/// was written (absent in the CLI).
#[derive(Clone)]
pub struct Wiring {
    /// Field mappings.
    pub mappings: Arc<Mappings>,
    /// Field states.
    pub store: Option<Arc<dyn CrmStore>>,
}

impl Default for Wiring {
    fn default() -> Self {
        Wiring {
            mappings: Arc::new(Mappings::bundled()),
            store: None,
        }
    }
}

/// Inbound counters, exported on `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    /// Polls (and webhook deliveries) processed.
    pub steps: AtomicU64,
    /// Records read from the CRMs.
    pub records: AtomicU64,
    /// Field changes found (echoes excluded).
    pub changes: AtomicU64,
    /// Messages handed to the intake.
    pub messages: AtomicU64,
    /// CRM API calls made by the inbound sync.
    pub calls: AtomicU64,
    /// Failed steps.
    pub failures: AtomicU64,
}

/// The running CRM loop.
pub struct CrmLoop {
    /// Settings.
    pub config: CrmConfig,
    /// Mappings.
    pub mappings: Arc<Mappings>,
    /// Store.
    pub store: Arc<dyn CrmStore>,
    /// Salesforce reader, when Salesforce is configured.
    pub salesforce: Option<salesforce::Reader>,
    /// HubSpot reader, when HubSpot is configured.
    pub hubspot: Option<hubspot::Reader>,
    /// One sync step at a time per process.
    pub lock: tokio::sync::Mutex<()>,
    /// Counters per CRM.
    pub counters: [(Crm, Arc<Counters>); 2],
}

impl CrmLoop {
    /// Counters of a CRM.
    pub fn counters(&self, crm: Crm) -> &Counters {
        &self
            .counters
            .iter()
            .find(|(c, _)| *c == crm)
            .expect("both")
            .1
    }
}

/// The internal sources inbound changes are recorded under (created at start with a key nobody
/// is given).
pub fn source_names(config: &crate::config::Config) -> Vec<&'static str> {
    let mut out = Vec::new();
    if !config.crm.inbound {
        return out;
    }
    if config.destinations.salesforce.is_some() {
        out.push("salesforce");
    }
    if config.destinations.hubspot.is_some() {
        out.push("hubspot");
    }
    out
}

/// Builds the CRM loop when a CRM is configured and inbound sync is on.
pub fn build(
    config: &crate::config::Config,
    wiring: &Wiring,
    store: Arc<dyn CrmStore>,
) -> Option<Arc<CrmLoop>> {
    if !config.crm.inbound {
        return None;
    }
    let client = crate::destinations::http::client().ok()?;
    let salesforce = config
        .destinations
        .salesforce
        .clone()
        .map(|c| salesforce::Reader::new(c, client.clone()));
    let hubspot = config
        .destinations
        .hubspot
        .clone()
        .map(|c| hubspot::Reader::new(c, client.clone()));
    if salesforce.is_none() && hubspot.is_none() {
        return None;
    }
    Some(Arc::new(CrmLoop {
        config: config.crm.clone(),
        mappings: wiring.mappings.clone(),
        store,
        salesforce,
        hubspot,
        lock: tokio::sync::Mutex::new(()),
        counters: [
            (Crm::Salesforce, Arc::new(Counters::default())),
            (Crm::HubSpot, Arc::new(Counters::default())),
        ],
    }))
}

/// Sets the first watermarks and spawns the poller (when an interval is set).
pub fn start(state: &AppState) {
    let Some(crm) = state.crm.clone() else { return };
    let state = state.clone();
    tokio::spawn(async move {
        let now = state.clock.now_ms() - crm.config.backfill.as_millis() as i64;
        for (c, objects) in [
            (Crm::Salesforce, crm.salesforce.is_some()),
            (Crm::HubSpot, crm.hubspot.is_some()),
        ] {
            if !objects {
                continue;
            }
            for o in mapping::OBJECTS.iter().filter(|(x, _, _)| *x == c) {
                if let Err(e) = crm.store.init_watermark(c, o.1, now).await {
                    tracing::warn!(crm = c.as_str(), object = o.1, error = %e, "could not set the CRM watermark");
                }
            }
        }
        if crm.config.poll_interval.is_zero() {
            return;
        }
        // The first poll comes one interval after the start (the watermarks were just set).
        let period = crm.config.poll_interval;
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Registered now, so the lease is held by the first poll.
        crate::pipeline::Leases::runs_here(state.leases.as_ref(), "crm-poll");
        loop {
            tick.tick().await;
            // With several processing nodes, one polls.
            if !crate::pipeline::Leases::runs_here(state.leases.as_ref(), "crm-poll") {
                continue;
            }
            for c in [Crm::Salesforce, Crm::HubSpot] {
                match poll(&state, &crm, c).await {
                    Ok(Some(report)) => tracing::debug!(crm = c.as_str(), ?report, "CRM poll done"),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::warn!(crm = c.as_str(), error = %e, "CRM poll failed; retrying next time")
                    }
                }
            }
        }
    });
}

/// What one sync step did.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The CRM.
    pub crm: &'static str,
    /// Records read.
    pub records: usize,
    /// Field changes found.
    pub changes: usize,
    /// Messages accepted.
    pub messages: usize,
    /// External ids written back.
    pub write_backs: usize,
    /// CRM API calls made.
    pub calls: u64,
    /// Notes (values that did not convert, accounts waiting for a member).
    pub notes: Vec<String>,
}

/// Why a sync step failed (nothing was committed; the next step reads the same changes again).
#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The CRM answered with an error or could not be reached.
    #[error("{0}")]
    Crm(String),
    /// The store failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::storage::StorageError),
    /// The intake refused the messages (overload).
    #[error("intake refused the messages: {0}")]
    Intake(String),
}

/// Polls one CRM once; `None` when it is not configured.
pub async fn poll(
    state: &AppState,
    crm: &CrmLoop,
    which: Crm,
) -> Result<Option<Report>, SyncError> {
    let _one = crm.lock.lock().await;
    let counters = crm.counters(which);
    let result = match which {
        Crm::Salesforce => match &crm.salesforce {
            Some(r) => Some(salesforce::poll(state, crm, r).await),
            None => None,
        },
        Crm::HubSpot => match &crm.hubspot {
            Some(r) => Some(hubspot::poll(state, crm, r).await),
            None => None,
        },
    };
    match result {
        Some(Ok(report)) => {
            counters.steps.fetch_add(1, Ordering::Relaxed);
            Ok(Some(report))
        }
        Some(Err(e)) => {
            counters.failures.fetch_add(1, Ordering::Relaxed);
            Err(e)
        }
        None => Ok(None),
    }
}

/// Hands decided messages to the intake under the CRM's source, in request-sized chunks.
pub(crate) async fn accept(
    state: &AppState,
    crm: Crm,
    messages: &[Value],
) -> Result<usize, SyncError> {
    if messages.is_empty() {
        return Ok(0);
    }
    let source = state
        .sources
        .by_name(crm.as_str())
        .ok_or_else(|| SyncError::Intake(format!("source {} does not exist", crm.as_str())))?;
    let mut stored = 0;
    for chunk in messages.chunks(200) {
        let mut parsed = Vec::with_capacity(chunk.len());
        for (i, m) in chunk.iter().enumerate() {
            match Message::from_value(m.clone(), None) {
                Ok(p) => parsed.push((i, p)),
                Err(e) => {
                    tracing::warn!(crm = crm.as_str(), error = %e, "CRM change is not a valid message; skipped")
                }
            }
        }
        let summary = ingest::accept(state, &source, Origin::Direct, parsed, Vec::new())
            .await
            .map_err(|e| SyncError::Intake(e.to_string()))?;
        for r in &summary.rejected {
            tracing::warn!(crm = crm.as_str(), code = r.code, error = %r.error, "CRM change refused by the intake");
        }
        stored += summary.stored + summary.duplicates;
    }
    Ok(stored)
}

/// Records a step's figures in the counters and the log.
pub(crate) fn account_for(crm: &CrmLoop, which: Crm, report: &Report) {
    let c = crm.counters(which);
    c.records
        .fetch_add(report.records as u64, Ordering::Relaxed);
    c.changes
        .fetch_add(report.changes as u64, Ordering::Relaxed);
    c.messages
        .fetch_add(report.messages as u64, Ordering::Relaxed);
    c.calls.fetch_add(report.calls, Ordering::Relaxed);
    for n in &report.notes {
        tracing::info!(crm = which.as_str(), "{n}");
    }
    if report.records > 0 {
        tracing::info!(
            crm = which.as_str(),
            records = report.records,
            changes = report.changes,
            messages = report.messages,
            calls = report.calls,
            "CRM changes received"
        );
    }
}

/// Records the inbound counters into the current (per-scrape) recorder (`crate::exposition`).
pub fn record_metrics(crm: &CrmLoop) {
    type Read = fn(&Counters) -> &AtomicU64;
    let families: [(&str, &str, Read); 6] = [
        (
            "steps",
            "CRM sync steps (polls, webhook deliveries) done.",
            |c| &c.steps,
        ),
        ("records", "CRM records read by the inbound sync.", |c| {
            &c.records
        }),
        (
            "changes",
            "CRM field changes found (our own writes excluded).",
            |c| &c.changes,
        ),
        (
            "messages",
            "Messages the inbound sync handed to the intake.",
            |c| &c.messages,
        ),
        ("calls", "CRM API calls made by the inbound sync.", |c| {
            &c.calls
        }),
        ("failures", "CRM sync steps that failed.", |c| &c.failures),
    ];
    for (name, help, read) in families {
        let name = format!("touchpoint_crm_inbound_{name}_total");
        metrics::describe_counter!(name.clone(), help);
        for (c, counters) in &crm.counters {
            metrics::counter!(name.clone(), "crm" => c.as_str())
                .absolute(read(counters).load(Ordering::Relaxed));
        }
    }
}

/// The CRM routes: the HubSpot webhook and `POST /admin/crm/poll`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/crm/poll", post(poll_now))
        .route("/admin/crm/metrics", axum::routing::get(metrics))
        .merge(webhook::routes())
}

async fn poll_now(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let crm = state
        .crm
        .clone()
        .ok_or_else(|| AdminError::BadRequest("no CRM is configured for inbound sync".into()))?;
    let mut reports = Vec::new();
    for c in [Crm::Salesforce, Crm::HubSpot] {
        match poll(&state, &crm, c).await {
            Ok(Some(r)) => reports.push(json!(r)),
            Ok(None) => {}
            Err(e) => {
                return Err(AdminError::BadRequest(format!(
                    "{} poll failed: {e}",
                    c.as_str()
                )));
            }
        }
    }
    Ok(Json(json!({"polls": reports})))
}

async fn metrics(_: Admin, State(state): State<AppState>) -> Result<String, AdminError> {
    let crm = state
        .crm
        .clone()
        .ok_or_else(|| AdminError::BadRequest("no CRM is configured for inbound sync".into()))?;
    Ok(crate::exposition::render(|| record_metrics(&crm)))
}
