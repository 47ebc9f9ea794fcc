//! Unified profiles: the processing pipeline (identity resolution after the durable log: the pure
//! decision in `decide`, its I/O shell in `processor`), the profile repository, computed traits,
//! and the admin Profiles API.

pub mod api;
pub mod computed;
pub mod decide;
pub mod processor;
pub mod store;

pub use processor::Processor;
pub use store::{PgProfiles, ProfileStore, SqliteProfiles};
