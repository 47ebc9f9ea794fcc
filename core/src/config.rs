//! Typed configuration, read once from the environment at start-up.

use secrecy::SecretString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Everything the core service needs to start. Tests clone [`Config::default`] and change fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address to listen on (`TOUCHPOINT_BIND`, default `127.0.0.1:8080`; port 0 picks a free port).
    pub bind: SocketAddr,
    /// Database URL (`DATABASE_URL`): `sqlite://path` (default `sqlite://data/touchpoint.db`) or
    /// `postgres://…`.
    pub database_url: String,
    /// The tracking plan file (`TOUCHPOINT_PLAN`, default `TRACKING_PLAN.md`).
    pub plan_path: PathBuf,
    /// Audience definitions kept in git (`TOUCHPOINT_AUDIENCES`, default `AUDIENCES.md`; a missing
    /// file means none).
    pub audiences_path: PathBuf,
    /// Directory of the built browser SDK served at `/sdk/*` (`TOUCHPOINT_SDK_DIR`, default
    /// `collector-wasm/dist`, which `scripts/build-sdk.sh` writes).
    pub sdk_dir: PathBuf,
    /// The URL clients reach this server at, e.g. `https://cdp.example.com`
    /// (`TOUCHPOINT_PUBLIC_URL`): the `apiHost` of the Segment settings document. When unset, the
    /// request's `X-Forwarded-Host`/`X-Forwarded-Proto` or `Host` is used.
    pub public_url: Option<String>,
    /// Sources to create at start as `name=writeKey` pairs separated by commas (`TOUCHPOINT_SOURCES`,
    /// default `web=wk_demo_web,server=wk_demo_server` for local development).
    pub sources: Vec<(String, String)>,
    /// Admin bearer token for the admin API, debugger and profiles (`TOUCHPOINT_ADMIN_TOKEN`,
    /// default `dev-admin-token-local`, refused off loopback; set a long random value in
    /// production). Empty or shorter than 16 characters is refused at start.
    pub admin_token: SecretString,
    /// Shared secret for HMAC-signed batches from the edge worker (`TOUCHPOINT_EDGE_SECRET`); the
    /// edge endpoint is disabled when unset.
    pub edge_secret: Option<SecretString>,
    /// Largest clock difference accepted for a signed edge batch (`TOUCHPOINT_EDGE_REPLAY_SECS`, 300).
    pub edge_replay_window: Duration,
    /// Messages each write key may send per second, on average, before requests get 429 with
    /// `Retry-After` (`TOUCHPOINT_RATE_LIMIT_PER_SECOND`, default 10000; 0 turns the limit off).
    /// Counted in messages, valid or not: a batch of 50 counts 50.
    pub rate_limit_per_second: u32,
    /// Messages a write key may send at once on top of its rate (`TOUCHPOINT_RATE_LIMIT_BURST`,
    /// default 20000; 0 means twice the rate).
    pub rate_limit_burst: u32,
    /// Requests each API token may make per second, on average, before getting 429 with
    /// `Retry-After` (`TOUCHPOINT_API_RATE_LIMIT_PER_SECOND`, default 100; 0 turns the limit off).
    /// The admin token is not limited.
    pub api_rate_limit_per_second: u32,
    /// Requests an API token may make at once on top of its rate
    /// (`TOUCHPOINT_API_RATE_LIMIT_BURST`, default 200; 0 means twice the rate).
    pub api_rate_limit_burst: u32,
    /// Longest time any request may take before it is answered 408, body upload included
    /// (`TOUCHPOINT_REQUEST_TIMEOUT_SECS`, default 30). The debugger's SSE stream is exempt.
    pub request_timeout: Duration,
    /// Messages the group-commit queue holds before new requests get 503 (`TOUCHPOINT_QUEUE`, 50000).
    pub queue_capacity: usize,
    /// Most messages written in one commit (`TOUCHPOINT_MAX_COMMIT`, 4096).
    pub max_commit: usize,
    /// How long a messageId is remembered for deduplication (24 h).
    pub dedup_window: Duration,
    /// Run the processing pipeline (identity resolution, profiles) in this process
    /// (`TOUCHPOINT_PROCESS`, default true; set false for ingest-only replicas).
    pub process: bool,
    /// Retry bounds of every pipeline stage: attempts before narrowing a failing batch to one
    /// message and before quarantining that message, and the backoff between attempts.
    pub stage_retry: crate::pipeline::Policy,
    /// How long a stage may fail without advancing before `/readyz` reports it
    /// (`TOUCHPOINT_STALL_AFTER_SECS`, 30).
    pub stall_after: Duration,
    /// Longest a pipeline stage waits for a wake-up before looking at the log again
    /// (`TOUCHPOINT_STAGE_POLL_MS`, 250). Stages are woken by new data (in this process, and on
    /// PostgreSQL by other processes' appends through `LISTEN`); the poll only covers lost wake-ups.
    pub stage_poll: Duration,
    /// On PostgreSQL with several processing nodes, how long a stage lease lasts without renewal
    /// (`TOUCHPOINT_LEASE_SECS`, 5): a dead node's stages move to the others within about this.
    pub lease_ttl: Duration,
    /// A reverse-ETL sync from a production read replica: `TOUCHPOINT_RETL_URL` (PostgreSQL),
    /// `TOUCHPOINT_RETL_QUERY`, `TOUCHPOINT_RETL_INTERVAL_SECS` (60), `TOUCHPOINT_RETL_NAME`
    /// (`production`); rows are recorded under the `reverse-etl` source.
    pub reverse_etl: Option<crate::reverse_etl::SyncConfig>,
    /// Mount the development webhook receiver at `/dev/webhook-sink` (`TOUCHPOINT_DEV_SINK=1`; off
    /// by default; `scripts/run.sh` turns it on and points the webhook destination at it).
    pub dev_sink: bool,
    /// Destinations (Salesforce, HubSpot, GA4, Resend, Meta, webhook), each disabled unless its
    /// credentials are set; see `destinations::config` for the variables.
    pub destinations: crate::destinations::DestinationsConfig,
    /// The CRM loop: field mappings (`TOUCHPOINT_CRM_MAPPINGS`), inbound polling and HubSpot
    /// webhooks; see `crm::CrmConfig` for the variables.
    pub crm: crate::crm::CrmConfig,
    /// Days raw data is kept (`TOUCHPOINT_RETENTION_DAYS`, default 0 = forever): older messages
    /// (once every pipeline stage processed them), rejected items, delivered or dead outbox
    /// payloads and delivery-log entries are purged hourly (see `privacy::retention`).
    pub retention_days: u32,
    /// Stripe and Resend webhook sources and their signing secrets (`TOUCHPOINT_STRIPE_WEBHOOK_SECRET`,
    /// `TOUCHPOINT_RESEND_WEBHOOK_SECRET`, …; none by default); see `webhooks::WebhooksConfig`.
    pub webhooks: crate::webhooks::WebhooksConfig,
    /// The warehouse export: Parquet files in `TOUCHPOINT_WAREHOUSE_DIR` and/or a PostgreSQL
    /// warehouse at `TOUCHPOINT_WAREHOUSE_PG_URL` in Segment's schema (both off by default);
    /// `TOUCHPOINT_WAREHOUSE_BATCH` and `TOUCHPOINT_WAREHOUSE_FLUSH_SECS` tune file sizes. See
    /// `warehouse::WarehouseConfig`.
    pub warehouse: crate::warehouse::WarehouseConfig,
    /// Lead scoring and handoff: the model file (`TOUCHPOINT_LEAD_HANDOFF`, default
    /// `LEAD_HANDOFF.md`), the tick (`TOUCHPOINT_HANDOFF_TICK_SECS`) and the clock it reads; see
    /// `handoff::HandoffConfig`.
    pub handoff: crate::handoff::HandoffConfig,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database_url: "sqlite://data/touchpoint.db".into(),
            plan_path: PathBuf::from("TRACKING_PLAN.md"),
            audiences_path: PathBuf::from("AUDIENCES.md"),
            sdk_dir: PathBuf::from("collector-wasm/dist"),
            public_url: None,
            sources: vec![
                ("web".into(), "wk_demo_web".into()),
                ("server".into(), "wk_demo_server".into()),
            ],
            admin_token: SecretString::from("dev-admin-token-local"),
            edge_secret: None,
            edge_replay_window: Duration::from_secs(300),
            rate_limit_per_second: 10_000,
            rate_limit_burst: 20_000,
            api_rate_limit_per_second: 100,
            api_rate_limit_burst: 200,
            request_timeout: Duration::from_secs(30),
            queue_capacity: 50_000,
            max_commit: 4096,
            dedup_window: Duration::from_secs(24 * 3600),
            process: true,
            stage_retry: crate::pipeline::Policy::default(),
            stall_after: Duration::from_secs(30),
            stage_poll: Duration::from_millis(250),
            lease_ttl: Duration::from_secs(5),
            reverse_etl: None,
            dev_sink: false,
            destinations: Default::default(),
            crm: Default::default(),
            retention_days: 0,
            webhooks: Default::default(),
            warehouse: Default::default(),
            handoff: Default::default(),
        }
    }
}

/// A configuration value that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    var: &'static str,
    reason: String,
}

impl ConfigError {
    /// A problem with the variable `var`.
    pub(crate) fn new(var: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            var,
            reason: reason.into(),
        }
    }
}

impl Config {
    /// Reads the configuration from the environment, falling back to the defaults.
    pub fn from_env() -> Result<Config, ConfigError> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`, so tests need not touch the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        if let Some(v) = get("TOUCHPOINT_BIND") {
            c.bind = v.parse().map_err(|e| ConfigError {
                var: "TOUCHPOINT_BIND",
                reason: format!("{e}"),
            })?;
        }
        if let Some(v) = get("DATABASE_URL") {
            c.database_url = v;
        }
        if let Some(v) = get("TOUCHPOINT_PLAN") {
            c.plan_path = v.into();
        }
        if let Some(v) = get("TOUCHPOINT_AUDIENCES") {
            c.audiences_path = v.into();
        }
        if let Some(v) = get("TOUCHPOINT_SOURCES") {
            c.sources = parse_sources(&v)?;
        }
        if let Some(v) = get("TOUCHPOINT_ADMIN_TOKEN") {
            c.admin_token = SecretString::from(v);
        }
        c.edge_secret = get("TOUCHPOINT_EDGE_SECRET")
            .filter(|s| !s.is_empty())
            .map(SecretString::from);
        if let Some(v) = get("TOUCHPOINT_EDGE_REPLAY_SECS") {
            c.edge_replay_window = Duration::from_secs(number("TOUCHPOINT_EDGE_REPLAY_SECS", &v)?);
        }
        if let Some(v) = get("TOUCHPOINT_RATE_LIMIT_PER_SECOND") {
            c.rate_limit_per_second = small_number("TOUCHPOINT_RATE_LIMIT_PER_SECOND", &v)?;
        }
        if let Some(v) = get("TOUCHPOINT_RATE_LIMIT_BURST") {
            c.rate_limit_burst = small_number("TOUCHPOINT_RATE_LIMIT_BURST", &v)?;
        }
        if let Some(v) = get("TOUCHPOINT_API_RATE_LIMIT_PER_SECOND") {
            c.api_rate_limit_per_second = small_number("TOUCHPOINT_API_RATE_LIMIT_PER_SECOND", &v)?;
        }
        if let Some(v) = get("TOUCHPOINT_API_RATE_LIMIT_BURST") {
            c.api_rate_limit_burst = small_number("TOUCHPOINT_API_RATE_LIMIT_BURST", &v)?;
        }
        if let Some(v) = get("TOUCHPOINT_REQUEST_TIMEOUT_SECS") {
            c.request_timeout =
                Duration::from_secs(number("TOUCHPOINT_REQUEST_TIMEOUT_SECS", &v)?.max(1));
        }
        if let Some(v) = get("TOUCHPOINT_QUEUE") {
            c.queue_capacity = number("TOUCHPOINT_QUEUE", &v)? as usize;
        }
        if let Some(v) = get("TOUCHPOINT_MAX_COMMIT") {
            c.max_commit = number("TOUCHPOINT_MAX_COMMIT", &v)?.max(1) as usize;
        }
        if let Some(v) = get("TOUCHPOINT_PROCESS") {
            c.process = !matches!(v.trim(), "0" | "false" | "no" | "off");
        }
        if let Some(v) = get("TOUCHPOINT_STALL_AFTER_SECS") {
            c.stall_after = Duration::from_secs(number("TOUCHPOINT_STALL_AFTER_SECS", &v)?.max(1));
        }
        if let Some(v) = get("TOUCHPOINT_STAGE_POLL_MS") {
            c.stage_poll = Duration::from_millis(number("TOUCHPOINT_STAGE_POLL_MS", &v)?.max(10));
        }
        if let Some(v) = get("TOUCHPOINT_LEASE_SECS") {
            c.lease_ttl = Duration::from_secs(number("TOUCHPOINT_LEASE_SECS", &v)?.max(1));
        }
        c.dev_sink =
            get("TOUCHPOINT_DEV_SINK").is_some_and(|v| matches!(v.trim(), "1" | "true" | "yes"));
        if let Some(url) = get("TOUCHPOINT_RETL_URL").filter(|u| !u.is_empty()) {
            let query = get("TOUCHPOINT_RETL_QUERY").ok_or(ConfigError {
                var: "TOUCHPOINT_RETL_QUERY",
                reason: "required when TOUCHPOINT_RETL_URL is set".into(),
            })?;
            let interval = match get("TOUCHPOINT_RETL_INTERVAL_SECS") {
                Some(v) => number("TOUCHPOINT_RETL_INTERVAL_SECS", &v)?.max(1),
                None => 60,
            };
            c.reverse_etl = Some(crate::reverse_etl::SyncConfig {
                name: get("TOUCHPOINT_RETL_NAME").unwrap_or_else(|| "production".into()),
                url: SecretString::from(url),
                query,
                interval: Duration::from_secs(interval),
                source: "reverse-etl".into(),
            });
        }
        if let Some(v) = get("TOUCHPOINT_SDK_DIR") {
            c.sdk_dir = v.into();
        }
        if let Some(v) = get("TOUCHPOINT_PUBLIC_URL").filter(|v| !v.trim().is_empty()) {
            if crate::ingest::compat::PublicBase::parse_url(&v).is_none() {
                return Err(ConfigError::new(
                    "TOUCHPOINT_PUBLIC_URL",
                    "expected http(s)://host[:port][/path], without credentials, query or fragment",
                ));
            }
            c.public_url = Some(v.trim().to_owned());
        }
        c.destinations = crate::destinations::DestinationsConfig::from_lookup(&get)?;
        c.crm = crate::crm::CrmConfig::from_lookup(&get)?;
        c.webhooks = crate::webhooks::WebhooksConfig::from_lookup(&get)?;
        c.warehouse = crate::warehouse::WarehouseConfig::from_lookup(&get)?;
        c.handoff = crate::handoff::HandoffConfig::from_lookup(&get)?;
        if let Some(v) = get("TOUCHPOINT_RETENTION_DAYS").filter(|v| !v.trim().is_empty()) {
            c.retention_days = small_number("TOUCHPOINT_RETENTION_DAYS", &v)?;
        }
        Ok(c)
    }
}

pub(crate) fn number(var: &'static str, v: &str) -> Result<u64, ConfigError> {
    v.trim().parse().map_err(|_| ConfigError {
        var,
        reason: format!("expected a whole number, got {v:?}"),
    })
}

fn small_number(var: &'static str, v: &str) -> Result<u32, ConfigError> {
    u32::try_from(number(var, v)?).map_err(|_| ConfigError {
        var,
        reason: format!("{v} is too large (at most {})", u32::MAX),
    })
}

fn parse_sources(v: &str) -> Result<Vec<(String, String)>, ConfigError> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (name, key) = pair.split_once('=').ok_or_else(|| ConfigError {
                var: "TOUCHPOINT_SOURCES",
                reason: format!("expected name=writeKey, got {pair:?}"),
            })?;
            Ok((name.trim().to_owned(), key.trim().to_owned()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_read_as_name_and_write_key_pairs() {
        let c = Config::from_lookup(|k| {
            (k == "TOUCHPOINT_SOURCES").then(|| "web=wk_1, app = wk_2".to_owned())
        })
        .unwrap();
        assert_eq!(
            c.sources,
            vec![
                ("web".to_owned(), "wk_1".to_owned()),
                ("app".to_owned(), "wk_2".to_owned())
            ]
        );
    }

    #[test]
    fn rate_limits_and_the_request_timeout_are_read_from_the_environment() {
        let c = Config::from_lookup(|k| match k {
            "TOUCHPOINT_RATE_LIMIT_PER_SECOND" => Some("0".to_owned()),
            "TOUCHPOINT_RATE_LIMIT_BURST" => Some("7".to_owned()),
            "TOUCHPOINT_REQUEST_TIMEOUT_SECS" => Some("5".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.rate_limit_per_second, 0);
        assert_eq!(c.rate_limit_burst, 7);
        assert_eq!(c.request_timeout, Duration::from_secs(5));
        let err = Config::from_lookup(|k| {
            (k == "TOUCHPOINT_RATE_LIMIT_PER_SECOND").then(|| "99999999999".to_owned())
        })
        .unwrap_err();
        assert!(err.to_string().contains("too large"), "{err}");
    }

    #[test]
    fn a_malformed_number_names_the_variable() {
        let err = Config::from_lookup(|k| (k == "TOUCHPOINT_QUEUE").then(|| "lots".to_owned()))
            .unwrap_err();
        assert!(err.to_string().contains("TOUCHPOINT_QUEUE"));
    }
}
