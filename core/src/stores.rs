//! The composition root of the repositories: opens the database a URL names, runs its migrations,
//! and builds every feature's repository over it. It lives outside `storage/`, which knows only the
//! message log and the database plumbing, so that storage imports no feature module.

use crate::storage::partition::Layout;
use crate::storage::{EventStore, StorageError};
use std::sync::Arc;

/// The repositories over one database.
#[derive(Clone)]
pub struct Stores {
    /// The message log and sources.
    pub events: Arc<dyn EventStore>,
    /// The admin console's read-only queries.
    pub console: Arc<dyn crate::console::ConsoleStore>,
    /// Profiles and the identity graph.
    pub profiles: Arc<dyn crate::profiles::ProfileStore>,
    /// Audiences.
    pub audiences: Arc<dyn crate::audiences::AudienceStore>,
    /// The destinations' outbox and delivery log.
    pub destinations: Arc<dyn crate::destinations::DestinationStore>,
    /// Erasure, regulations and retention.
    pub privacy: Arc<dyn crate::privacy::PrivacyStore>,
    /// Messages the pipeline stages set aside.
    pub quarantine: Arc<dyn crate::pipeline::QuarantineStore>,
    /// The CRM sync's watermarks, records and field states.
    pub crm: Arc<dyn crate::crm::CrmStore>,
    /// What the warehouse export reads and records.
    pub warehouse: Arc<dyn crate::warehouse::WarehouseStore>,
    /// API tokens and the backend API's reads.
    pub api: Arc<dyn crate::backend_api::ApiStore>,
    /// Lead scores and the handoff log.
    pub handoffs: Arc<dyn crate::handoff::HandoffStore>,
    /// Processing nodes' heartbeats and stage leases (PostgreSQL only).
    pub leases: Option<Arc<dyn crate::pipeline::LeaseStore>>,
    /// How many profiles stages run, one per log partition (PostgreSQL, when the database was
    /// created so), or 1: one over the whole log.
    pub profiles_stages: u16,
}

/// Opens the database the URL names, runs its migrations, and returns its repositories; a new
/// PostgreSQL log gets the default layout.
pub async fn connect(url: &str) -> Result<Stores, StorageError> {
    connect_with(url, Layout::default()).await
}

/// [`connect`], laying a new PostgreSQL log out as `layout`.
pub async fn connect_with(url: &str, layout: Layout) -> Result<Stores, StorageError> {
    if url.starts_with("sqlite:") {
        let store = crate::storage::SqliteStore::connect(url).await?;
        let console = crate::console::Pool::Sqlite(store.db().pool().clone());
        let profiles = crate::profiles::SqliteProfiles::new(store.db().clone());
        let audiences = crate::audiences::SqliteAudiences::new(store.db().clone());
        let destinations = crate::destinations::SqliteDestinations::new(store.db().clone());
        let privacy = crate::privacy::SqlitePrivacy::new(store.db().clone());
        // Suppressions of versions before migration 0009 were plaintext; SQLite cannot hash in SQL.
        crate::privacy::PrivacyStore::hash_plaintext_suppressions(&privacy).await?;
        Ok(Stores {
            console: Arc::new(crate::console::SqlConsole::new(console)),
            quarantine: Arc::new(crate::pipeline::SqliteQuarantine::new(store.db().clone())),
            crm: Arc::new(crate::crm::SqliteCrm::new(store.db().clone())),
            handoffs: Arc::new(crate::handoff::SqliteHandoffs::new(store.db().clone())),
            // One process owns a SQLite file: its stages need no leases.
            leases: None,
            profiles_stages: 1,
            warehouse: Arc::new(crate::warehouse::store::SqlWarehouse::new(
                store.db().clone(),
            )),
            api: Arc::new(crate::backend_api::SqliteApiStore::new(store.db().clone())),
            privacy: Arc::new(privacy),
            destinations: Arc::new(destinations),
            events: Arc::new(store),
            profiles: Arc::new(profiles),
            audiences: Arc::new(audiences),
        })
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        let store = crate::storage::PgStore::connect_laid_out(url, layout).await?;
        let console = crate::console::Pool::Postgres(store.db().pool().clone());
        let profiles = crate::profiles::PgProfiles::new(store.db().clone());
        let audiences = crate::audiences::PgAudiences::new(store.db().clone());
        let destinations = crate::destinations::PgDestinations::new(store.db().clone());
        Ok(Stores {
            console: Arc::new(crate::console::SqlConsole::new(console)),
            quarantine: Arc::new(crate::pipeline::PgQuarantine::new(store.db().clone())),
            crm: Arc::new(crate::crm::PgCrm::new(store.db().clone())),
            handoffs: Arc::new(crate::handoff::PgHandoffs::new(store.db().clone())),
            profiles_stages: store.layout().profiles_stages(),
            leases: Some(Arc::new(crate::pipeline::PgLeases::new(
                store.db().pool().clone(),
            ))),
            warehouse: Arc::new(crate::warehouse::store::SqlWarehouse::new(
                store.db().clone(),
            )),
            api: Arc::new(crate::backend_api::PgApiStore::new(store.db().clone())),
            privacy: Arc::new(crate::privacy::PgPrivacy::new(store.db().clone())),
            destinations: Arc::new(destinations),
            events: Arc::new(store),
            profiles: Arc::new(profiles),
            audiences: Arc::new(audiences),
        })
    } else {
        Err(StorageError::UnsupportedUrl)
    }
}
