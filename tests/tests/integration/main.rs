//! One integration binary: the real server on port 0 against real SQLite and PostgreSQL.

mod ad_audiences;
mod adversarial;
mod audiences;
mod backend_api;
mod browser;
mod clients;
mod concurrency;
mod consent;
mod console;
mod crash;
mod crm_loop;
mod destinations;
mod dev_sink;
mod e2e;
mod edge;
mod encoding;
mod hardening;
mod hygiene;
mod ingest;
mod lead_handoff;
mod log_partitions;
mod ops;
mod privacy;
mod profiles;
mod reverse_etl;
mod sdk;
mod segment_libraries;
mod warehouse;
mod webhooks;

/// Runs an `async fn(Db)` test body once on SQLite and once on PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_sqlite() {
                super::$name(touchpoint_tests::Db::Sqlite).await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn on_postgres() {
                super::$name(touchpoint_tests::Db::Postgres).await
            }
        }
    )*};
}
