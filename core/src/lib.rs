//! Touchpoint core service: Segment-compatible ingestion into a durable log on SQLite or PostgreSQL,
//! tracking-plan enforcement, the live debugger, admin API and ops endpoints.

pub mod admin;
pub mod audiences;
pub mod backend_api;
pub mod background;
pub mod cli;
pub mod config;
pub mod console;
pub mod crm;
pub mod debugger;
pub mod destinations;
pub mod dev_sink;
pub mod domain;
pub mod exposition;
pub mod handoff;
pub mod hardening;
pub mod identity;
pub mod ingest;
pub mod ops;
pub mod pipeline;
pub mod plan;
pub mod privacy;
pub mod profiles;
pub mod reverse_etl;
pub mod sdk;
pub mod serve;
pub mod sources;
pub mod startup;
pub mod state;
pub mod storage;
pub mod stores;
pub mod warehouse;
pub mod webhooks;

pub use config::Config;
pub use startup::{Application, router};
