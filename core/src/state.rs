//! Shared application state handed to every handler.

use crate::debugger::Debugger;
use crate::ingest::writer::Writer;
use crate::plan::PlanHandle;
use crate::profiles::ProfileStore;
use crate::sources::Sources;
use crate::storage::EventStore;
use secrecy::SecretString;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Everything handlers need, behind one `Arc`: axum clones the state for every extractor and
/// middleware of every request, and a clone of the services themselves (about thirty reference
/// counts moved up and down) was about 4 % of the intake's CPU.
#[derive(Clone)]
pub struct AppState(Arc<Services>);

impl AppState {
    /// The state handlers share.
    pub fn new(services: Services) -> AppState {
        AppState(Arc::new(services))
    }
}

impl std::ops::Deref for AppState {
    type Target = Services;

    fn deref(&self) -> &Services {
        &self.0
    }
}

/// The services behind [`AppState`].
pub struct Services {
    /// The message log.
    pub store: Arc<dyn EventStore>,
    /// Profiles and the identity graph.
    pub profiles: Arc<dyn ProfileStore>,
    /// Audience definitions, members and the entered/exited feed.
    pub audiences: Arc<dyn crate::audiences::AudienceStore>,
    /// The audience stage (backfill, preview).
    pub audience_stage: Arc<crate::audiences::AudienceStage>,
    /// Wakes the processing pipeline after a commit.
    pub pipeline_wake: Arc<Notify>,
    /// Group-commit writer in front of the store (or the store's own grouping, on a SQLite log file).
    pub writer: Writer,
    /// Write key → source.
    pub sources: Arc<Sources>,
    /// The tracking plan in force.
    pub plan: Arc<PlanHandle>,
    /// Live debugger fan-out.
    pub debugger: Debugger,
    /// Admin bearer token.
    pub admin_token: Arc<SecretString>,
    /// Per-write-key ingest rate limits.
    pub rate_limits: Arc<crate::ingest::rate::RateLimits>,
    /// Longest time a request may take (all routes but the debugger stream).
    pub request_timeout: Duration,
    /// Edge HMAC secret; the edge endpoint answers 404 without it.
    pub edge_secret: Option<Arc<SecretString>>,
    /// Accepted age of an edge signature.
    pub edge_replay_window: Duration,
    /// Where the built browser SDK is served from (`/sdk/*`).
    pub sdk_dir: Arc<PathBuf>,
    /// `TOUCHPOINT_PUBLIC_URL`: where the Segment settings document points clients.
    pub public_url: Option<Arc<str>>,
    /// The development webhook receiver, when enabled.
    pub dev_sink: Option<Arc<crate::dev_sink::DevSink>>,
    /// The reverse-ETL sync, when configured.
    pub reverse_etl: Option<Arc<crate::reverse_etl::ReverseEtl>>,
    /// Enabled destinations, the outbox and delivery counters.
    pub destinations: Arc<crate::destinations::Destinations>,
    /// Every pipeline stage's health (metrics, readiness).
    pub pipeline: Arc<crate::pipeline::Pipeline>,
    /// This node's stage leases (several processing nodes on PostgreSQL).
    pub leases: Option<Arc<crate::pipeline::Leases>>,
    /// Messages the stages set aside.
    pub quarantine: Arc<dyn crate::pipeline::QuarantineStore>,
    /// The time, injected.
    pub clock: Arc<dyn crate::pipeline::Clock>,
    /// How long a stage may fail before `/readyz` reports it.
    pub stall_after: Duration,
    /// The admin console's read-only queries (charts, feeds, the identity graph).
    pub console: Arc<dyn crate::console::ConsoleStore>,
    /// Erasure (regulations and their worker) and retention.
    pub privacy: Arc<crate::privacy::Privacy>,
    /// The API for backends: tokens and per-token rate limits.
    pub api: Arc<crate::backend_api::Api>,
    /// The CRM loop's inbound sync, when a CRM is configured (polls, HubSpot webhooks).
    pub crm: Option<Arc<crate::crm::CrmLoop>>,
    /// Stripe and Resend webhook secrets, by source name.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The warehouse export's targets and their progress (`/metrics`).
    pub warehouse: Arc<crate::warehouse::Warehouse>,
    /// Lead scoring and handoff, when `LEAD_HANDOFF.md` exists.
    pub handoff: Option<Arc<crate::handoff::Handoff>>,
}
