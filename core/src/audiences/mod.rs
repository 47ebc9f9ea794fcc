//! Audiences: a condition language (JSON tree and SQL-like text), definitions in `AUDIENCES.md`
//! and through the admin API, a columnar evaluation engine, and the pipeline stage that keeps
//! memberships current and emits `audience_entered` / `audience_exited`.

pub mod api;
pub mod condition;
pub mod decide;
pub mod definitions;
pub mod engine;
pub mod stage;
pub mod store;

pub use condition::Condition;
pub use stage::AudienceStage;
pub use store::{AudienceStore, PgAudiences, SqliteAudiences};
