//! Typed configuration, read once from the environment at start-up.

use secrecy::SecretString;
use std::borrow::Cow;
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
    /// Most HTTP connections open at once (`TOUCHPOINT_MAX_CONNECTIONS`; 0, the default: the
    /// process's open-file limit less 256, at most 10,000; see [`crate::serve`]).
    pub max_connections: usize,
    /// How long a client has to send a request's headers, and the longest a keep-alive
    /// connection may sit idle (`TOUCHPOINT_HEADER_TIMEOUT_SECS`, 75; see [`crate::serve`]).
    pub header_timeout: Duration,
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
    /// Requests answered by one group commit from which the intake counts as busy, and the
    /// stages in the same process hold back for a bounded time (`TOUCHPOINT_INTAKE_BUSY_REQUESTS`:
    /// 0 = never, or 2 to 65536; unset: 16 on SQLite, never on PostgreSQL; see
    /// [`crate::pipeline::intake_first`]).
    pub intake_busy_requests: Option<usize>,
    /// On PostgreSQL with several processing nodes, how long a stage lease lasts without renewal
    /// (`TOUCHPOINT_LEASE_SECS`, 5): a dead node's stages move to the others within about this.
    pub lease_ttl: Duration,
    /// How a new PostgreSQL log is laid out, read only when the database is created:
    /// `TOUCHPOINT_LOG_PARTITIONS` (8; appends to different partitions commit concurrently) and
    /// `TOUCHPOINT_PROFILES_PER_PARTITION` (false: one profiles stage over the whole log; true:
    /// one per partition). The SQLite log always has one partition.
    pub log_layout: crate::storage::partition::Layout,
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
    /// The time every stage reads: audience windows and their re-checks, what the profiles stage
    /// stamps, delivery backoff, leases (the system clock; tests inject a manual one).
    pub clock: crate::pipeline::ClockRef,
    /// The runtime the pipeline stages run on (the `touchpoint` binary starts one whose threads
    /// yield the CPU to the intake, see `crate::background`); `None`: the caller's runtime.
    pub background: Option<tokio::runtime::Handle>,
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
            max_connections: 0,
            header_timeout: crate::serve::HEADER_READ_TIMEOUT,
            queue_capacity: 50_000,
            max_commit: 4096,
            dedup_window: Duration::from_secs(24 * 3600),
            process: true,
            stage_retry: crate::pipeline::Policy::default(),
            stall_after: Duration::from_secs(30),
            stage_poll: Duration::from_millis(250),
            intake_busy_requests: None,
            lease_ttl: Duration::from_secs(5),
            log_layout: Default::default(),
            reverse_etl: None,
            dev_sink: false,
            destinations: Default::default(),
            crm: Default::default(),
            retention_days: 0,
            webhooks: Default::default(),
            warehouse: Default::default(),
            handoff: Default::default(),
            clock: Default::default(),
            background: None,
        }
    }
}

/// A configuration value that could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct ConfigError {
    var: Cow<'static, str>,
    reason: String,
}

impl ConfigError {
    /// A problem with the variable `var`.
    pub(crate) fn new(var: &'static str, reason: impl Into<String>) -> ConfigError {
        ConfigError {
            var: Cow::Borrowed(var),
            reason: reason.into(),
        }
    }
}

/// The service's own settings: each is a `touchpoint serve` flag and an environment variable, so
/// `touchpoint serve --help` lists every variable with its default. clap parses and checks them;
/// [`Config::from_settings`] adds the rules that span several values. The destinations, CRM,
/// webhook, warehouse and handoff variables are read by their modules (see [`Config`]).
#[derive(clap::Args, Debug, Clone)]
pub struct Settings {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, env = "TOUCHPOINT_BIND", default_value = "127.0.0.1:8080")]
    bind: SocketAddr,
    /// Database URL: `sqlite://path` or `postgres://…`.
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/touchpoint.db",
        hide_env_values = true
    )]
    database_url: String,
    /// The tracking plan file.
    #[arg(long, env = "TOUCHPOINT_PLAN", default_value = "TRACKING_PLAN.md")]
    plan: PathBuf,
    /// Audience definitions kept in git (a missing file means none).
    #[arg(long, env = "TOUCHPOINT_AUDIENCES", default_value = "AUDIENCES.md")]
    audiences: PathBuf,
    /// Directory of the built browser SDK served at `/sdk/*`.
    #[arg(
        long,
        env = "TOUCHPOINT_SDK_DIR",
        default_value = "collector-wasm/dist"
    )]
    sdk_dir: PathBuf,
    /// The URL clients reach this server at (default: from the request's headers).
    #[arg(long, env = "TOUCHPOINT_PUBLIC_URL")]
    public_url: Option<String>,
    /// Sources to create at start, as `name=writeKey` pairs separated by commas.
    #[arg(
        long,
        env = "TOUCHPOINT_SOURCES",
        default_value = "web=wk_demo_web,server=wk_demo_server",
        value_parser = parse_sources
    )]
    sources: Sources,
    /// Admin bearer token (the default is refused off loopback; at least 16 characters).
    #[arg(
        long,
        env = "TOUCHPOINT_ADMIN_TOKEN",
        default_value = "dev-admin-token-local",
        hide_default_value = true,
        hide_env_values = true,
        value_parser = secret
    )]
    admin_token: SecretString,
    /// Shared secret of HMAC-signed batches from the edge worker (unset: edge endpoint off).
    #[arg(long, env = "TOUCHPOINT_EDGE_SECRET", hide_env_values = true, value_parser = secret)]
    edge_secret: Option<SecretString>,
    /// Largest clock difference accepted for a signed edge batch, in seconds.
    #[arg(long, env = "TOUCHPOINT_EDGE_REPLAY_SECS", default_value_t = 300)]
    edge_replay_secs: u64,
    /// Messages per second each write key may send on average (0: no limit).
    #[arg(
        long,
        env = "TOUCHPOINT_RATE_LIMIT_PER_SECOND",
        default_value_t = 10_000
    )]
    rate_limit_per_second: u32,
    /// Messages a write key may send at once on top of its rate (0: twice the rate).
    #[arg(long, env = "TOUCHPOINT_RATE_LIMIT_BURST", default_value_t = 20_000)]
    rate_limit_burst: u32,
    /// Requests per second each API token may make on average (0: no limit).
    #[arg(
        long,
        env = "TOUCHPOINT_API_RATE_LIMIT_PER_SECOND",
        default_value_t = 100
    )]
    api_rate_limit_per_second: u32,
    /// Requests an API token may make at once on top of its rate (0: twice the rate).
    #[arg(long, env = "TOUCHPOINT_API_RATE_LIMIT_BURST", default_value_t = 200)]
    api_rate_limit_burst: u32,
    /// Longest a request may take, body upload included, in seconds.
    #[arg(long, env = "TOUCHPOINT_REQUEST_TIMEOUT_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    request_timeout_secs: u64,
    /// Most HTTP connections open at once (0: from the process's open-file limit).
    #[arg(long, env = "TOUCHPOINT_MAX_CONNECTIONS", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    max_connections: u32,
    /// Seconds a client has to send a request's headers; also the longest idle keep-alive.
    #[arg(long, env = "TOUCHPOINT_HEADER_TIMEOUT_SECS", default_value_t = 75,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    header_timeout_secs: u64,
    /// Messages the group-commit queue holds before requests get 503.
    #[arg(long, env = "TOUCHPOINT_QUEUE", default_value_t = 50_000)]
    queue: usize,
    /// Most messages written in one commit.
    #[arg(long, env = "TOUCHPOINT_MAX_COMMIT", default_value_t = 4096,
          value_parser = clap::value_parser!(u64).range(1..))]
    max_commit: u64,
    /// Run the processing pipeline in this process (false for ingest-only replicas).
    #[arg(long, env = "TOUCHPOINT_PROCESS", default_value = "true", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    process: bool,
    /// Seconds a stage may fail without advancing before `/readyz` reports it.
    #[arg(long, env = "TOUCHPOINT_STALL_AFTER_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    stall_after_secs: u64,
    /// Longest a stage waits for a wake-up before looking again, in ms (covers lost wake-ups).
    #[arg(long, env = "TOUCHPOINT_STAGE_POLL_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..))]
    stage_poll_ms: u64,
    /// Requests answered by one commit from which stages in this process hold back (0 = never;
    /// unset: 16 on SQLite, never on PostgreSQL).
    #[arg(long, env = "TOUCHPOINT_INTAKE_BUSY_REQUESTS", value_parser = busy_requests)]
    intake_busy_requests: Option<usize>,
    /// Nice value of the threads doing pipeline work (Linux; 0 to 19, 0 = the intake's priority),
    /// so under a CPU-bound burst acknowledgements go first; see `crate::background`.
    #[arg(long, env = "TOUCHPOINT_BACKGROUND_NICE", default_value_t = crate::background::NICE,
          value_parser = clap::value_parser!(i32).range(0..=19))]
    background_nice: i32,
    /// Threads of the stages' runtime (0: chosen by the database; see
    /// [`crate::background::threads`]).
    #[arg(long, env = "TOUCHPOINT_BACKGROUND_THREADS", default_value_t = 0,
          value_parser = clap::value_parser!(u16).range(0..=1024))]
    background_threads: u16,
    /// Seconds a stage lease lasts without renewal (PostgreSQL, several processing nodes).
    #[arg(long, env = "TOUCHPOINT_LEASE_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..))]
    lease_secs: u64,
    /// Partitions of a new PostgreSQL log (read only while the log is empty).
    #[arg(long, env = "TOUCHPOINT_LOG_PARTITIONS", default_value_t = 8,
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    log_partitions: u16,
    /// One profiles stage per log partition (read only when a PostgreSQL database is created).
    #[arg(long, env = "TOUCHPOINT_PROFILES_PER_PARTITION", default_value = "false", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    profiles_per_partition: bool,
    /// Mount the development webhook receiver at `/dev/webhook-sink`.
    #[arg(long, env = "TOUCHPOINT_DEV_SINK", default_value = "false", action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    dev_sink: bool,
    /// Reverse ETL: a PostgreSQL read replica to sync from (needs `TOUCHPOINT_RETL_QUERY`).
    #[arg(long, env = "TOUCHPOINT_RETL_URL", hide_env_values = true, value_parser = secret)]
    retl_url: Option<SecretString>,
    /// Reverse ETL: the query whose rows become identify messages.
    #[arg(long, env = "TOUCHPOINT_RETL_QUERY")]
    retl_query: Option<String>,
    /// Reverse ETL: seconds between syncs.
    #[arg(long, env = "TOUCHPOINT_RETL_INTERVAL_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..))]
    retl_interval_secs: u64,
    /// Reverse ETL: the sync's name.
    #[arg(long, env = "TOUCHPOINT_RETL_NAME", default_value = "production")]
    retl_name: String,
    /// Days raw data is kept (0: forever).
    #[arg(long, env = "TOUCHPOINT_RETENTION_DAYS", default_value_t = 0)]
    retention_days: u32,
}

impl Settings {
    /// The nice value of the threads doing pipeline work (`TOUCHPOINT_BACKGROUND_NICE`): set once
    /// for the process, before its runtimes start (see `crate::background`).
    pub fn background_nice(&self) -> i32 {
        self.background_nice
    }

    /// How many threads the stages' runtime gets (`TOUCHPOINT_BACKGROUND_THREADS`, or chosen by
    /// the database when 0), on a machine with `cpus` of them.
    pub fn background_threads(&self, cpus: usize) -> usize {
        crate::background::threads(
            self.background_threads,
            self.database_url.starts_with("sqlite:"),
            cpus,
        )
    }
}

/// `name=writeKey` pairs, one value for clap.
#[derive(Debug, Clone)]
struct Sources(Vec<(String, String)>);

/// 0 (never hold back) or 2 to 65536: at 1 every commit would count as busy, and the stages would
/// hold back at any load.
fn busy_requests(v: &str) -> Result<usize, String> {
    match v.trim().parse::<usize>() {
        Ok(n) if n == 0 || (2..=65_536).contains(&n) => Ok(n),
        _ => Err(format!(
            "{v:?}: expected 0 (never hold back) or a number of requests from 2 to 65536"
        )),
    }
}

fn secret(v: &str) -> Result<SecretString, std::convert::Infallible> {
    Ok(SecretString::from(v.to_owned()))
}

/// Settings read from the environment alone.
#[derive(clap::Parser)]
#[command(no_binary_name = true)]
struct EnvOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Config {
    /// Reads the configuration from the environment, falling back to the defaults.
    pub fn from_env() -> Result<Config, ConfigError> {
        use clap::Parser;
        let settings = EnvOnly::try_parse_from(std::iter::empty::<String>())
            .map_err(|e| clap_error(&e))?
            .settings;
        Self::from_settings(settings, |k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get`, so tests need not touch the process environment:
    /// each variable `get` knows becomes its flag, parsed by clap as `touchpoint serve` would.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        use clap::{CommandFactory, FromArgMatches};
        let command = EnvOnly::command();
        let args: Vec<String> = command
            .get_arguments()
            .filter_map(|a| {
                let var = a.get_env()?.to_str()?;
                let long = a.get_long()?;
                get(var).map(|v| format!("--{long}={v}"))
            })
            .collect();
        let matches = command
            .mut_args(|a| a.env(None))
            .try_get_matches_from(args)
            .map_err(|e| clap_error(&e))?;
        let settings = EnvOnly::from_arg_matches(&matches)
            .map_err(|e| clap_error(&e))?
            .settings;
        Self::from_settings(settings, get)
    }

    /// The configuration from parsed `settings`, reading the modules' own variables through `get`.
    pub fn from_settings(
        s: Settings,
        get: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        use secrecy::ExposeSecret;
        let unset_if_empty = |v: Option<SecretString>| v.filter(|v| !v.expose_secret().is_empty());
        let public_url = match s.public_url.filter(|v| !v.trim().is_empty()) {
            Some(v) if crate::ingest::compat::PublicBase::parse_url(&v).is_none() => {
                return Err(ConfigError::new(
                    "TOUCHPOINT_PUBLIC_URL",
                    "expected http(s)://host[:port][/path], without credentials, query or fragment",
                ));
            }
            v => v.map(|v| v.trim().to_owned()),
        };
        let reverse_etl = match unset_if_empty(s.retl_url) {
            None => None,
            Some(url) => Some(crate::reverse_etl::SyncConfig {
                name: s.retl_name,
                url,
                query: s.retl_query.ok_or_else(|| {
                    ConfigError::new(
                        "TOUCHPOINT_RETL_QUERY",
                        "required when TOUCHPOINT_RETL_URL is set",
                    )
                })?,
                interval: Duration::from_secs(s.retl_interval_secs),
                source: "reverse-etl".into(),
            }),
        };
        Ok(Config {
            bind: s.bind,
            database_url: s.database_url,
            plan_path: s.plan,
            audiences_path: s.audiences,
            sdk_dir: s.sdk_dir,
            public_url,
            sources: s.sources.0,
            admin_token: s.admin_token,
            edge_secret: unset_if_empty(s.edge_secret),
            edge_replay_window: Duration::from_secs(s.edge_replay_secs),
            rate_limit_per_second: s.rate_limit_per_second,
            rate_limit_burst: s.rate_limit_burst,
            api_rate_limit_per_second: s.api_rate_limit_per_second,
            api_rate_limit_burst: s.api_rate_limit_burst,
            request_timeout: Duration::from_secs(s.request_timeout_secs),
            max_connections: usize::try_from(s.max_connections).unwrap_or(usize::MAX),
            header_timeout: Duration::from_secs(s.header_timeout_secs),
            queue_capacity: s.queue,
            max_commit: usize::try_from(s.max_commit).unwrap_or(usize::MAX),
            process: s.process,
            stall_after: Duration::from_secs(s.stall_after_secs),
            stage_poll: Duration::from_millis(s.stage_poll_ms),
            intake_busy_requests: s.intake_busy_requests,
            lease_ttl: Duration::from_secs(s.lease_secs),
            log_layout: crate::storage::partition::Layout {
                partitions: s.log_partitions,
                profiles_per_partition: s.profiles_per_partition,
            },
            reverse_etl,
            dev_sink: s.dev_sink,
            retention_days: s.retention_days,
            destinations: crate::destinations::DestinationsConfig::from_lookup(&get)?,
            crm: crate::crm::CrmConfig::from_lookup(&get)?,
            webhooks: crate::webhooks::WebhooksConfig::from_lookup(&get)?,
            warehouse: crate::warehouse::WarehouseConfig::from_lookup(&get)?,
            handoff: crate::handoff::HandoffConfig::from_lookup(&get)?,
            ..Config::default()
        })
    }
}

/// A bad setting on the command line or in the environment, named by its variable (clap's own
/// message names only the flag); `None` when the error is not about a setting.
pub(crate) fn setting_error(e: &clap::Error) -> Option<ConfigError> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue};
    let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg) else {
        return None;
    };
    let long = flag.split([' ', '=']).next()?.strip_prefix("--")?;
    let var = EnvOnly::command()
        .get_arguments()
        .find(|a| a.get_long() == Some(long))?
        .get_env()?
        .to_str()?
        .to_owned();
    Some(ConfigError {
        var: Cow::Owned(var),
        reason: first_line(e),
    })
}

/// A clap error as a [`ConfigError`], named by its variable when it is about a setting.
fn clap_error(e: &clap::Error) -> ConfigError {
    setting_error(e).unwrap_or_else(|| ConfigError {
        var: Cow::Borrowed("configuration"),
        reason: first_line(e),
    })
}

/// The first line of clap's message, without its `error: ` prefix.
fn first_line(e: &clap::Error) -> String {
    let text = e.to_string();
    let line = text.lines().next().unwrap_or_default();
    line.trim_start_matches("error: ").to_owned()
}

pub(crate) fn number(var: &'static str, v: &str) -> Result<u64, ConfigError> {
    v.trim()
        .parse()
        .map_err(|_| ConfigError::new(var, format!("expected a whole number, got {v:?}")))
}

fn parse_sources(v: &str) -> Result<Sources, ConfigError> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|pair| {
            let (name, key) = pair.split_once('=').ok_or_else(|| {
                ConfigError::new(
                    "TOUCHPOINT_SOURCES",
                    format!("expected name=writeKey, got {pair:?}"),
                )
            })?;
            Ok((name.trim().to_owned(), key.trim().to_owned()))
        })
        .collect::<Result<_, _>>()
        .map(Sources)
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
        assert!(
            err.to_string().contains("is not in 0..=4294967295"),
            "{err}"
        );
    }

    #[test]
    fn with_no_variables_set_the_settings_are_the_documented_defaults() {
        let c = Config::from_lookup(|_| None).unwrap();
        let d = Config::default();
        assert_eq!(c.bind, d.bind);
        assert_eq!(c.database_url, d.database_url);
        assert_eq!(c.sources, d.sources);
        assert_eq!(c.rate_limit_per_second, d.rate_limit_per_second);
        assert_eq!(c.request_timeout, d.request_timeout);
        assert_eq!(c.max_commit, d.max_commit);
        assert_eq!(c.stage_poll, d.stage_poll);
        assert_eq!(c.lease_ttl, d.lease_ttl);
        assert_eq!(c.log_layout, d.log_layout);
        assert!(c.process && !c.dev_sink);
        assert!(c.edge_secret.is_none() && c.public_url.is_none() && c.reverse_etl.is_none());
    }

    #[test]
    fn every_setting_is_a_flag_with_an_environment_variable_and_a_help_text() {
        use clap::CommandFactory;
        let command = EnvOnly::command();
        let settings: Vec<_> = command
            .get_arguments()
            .filter(|a| a.get_id() != "help")
            .collect();
        assert!(settings.len() >= 25, "{}", settings.len());
        for a in settings {
            assert!(a.get_long().is_some(), "{} has no flag", a.get_id());
            assert!(a.get_env().is_some(), "{} has no variable", a.get_id());
            assert!(a.get_help().is_some(), "{} has no help", a.get_id());
        }
    }

    #[test]
    fn secret_settings_never_show_their_value_in_help() {
        use clap::CommandFactory;
        let command = EnvOnly::command();
        for id in ["admin_token", "edge_secret", "retl_url", "database_url"] {
            let a = command.get_arguments().find(|a| a.get_id() == id).unwrap();
            assert!(a.is_hide_env_values_set(), "{id}");
        }
    }

    #[test]
    fn switches_read_the_usual_spellings_and_refuse_others_by_name() {
        let off = Config::from_lookup(|k| (k == "TOUCHPOINT_PROCESS").then(|| "off".to_owned()));
        assert!(!off.unwrap().process);
        let on = Config::from_lookup(|k| (k == "TOUCHPOINT_DEV_SINK").then(|| "yes".to_owned()));
        assert!(on.unwrap().dev_sink);
        let err = Config::from_lookup(|k| (k == "TOUCHPOINT_PROCESS").then(|| "maybe".to_owned()))
            .unwrap_err();
        assert!(err.to_string().starts_with("TOUCHPOINT_PROCESS:"), "{err}");
    }

    #[test]
    fn a_poll_below_ten_milliseconds_is_refused_rather_than_silently_raised() {
        let err =
            Config::from_lookup(|k| (k == "TOUCHPOINT_STAGE_POLL_MS").then(|| "5".to_owned()))
                .unwrap_err();
        assert!(
            err.to_string().starts_with("TOUCHPOINT_STAGE_POLL_MS:"),
            "{err}"
        );
    }

    #[test]
    fn the_intake_busy_threshold_is_zero_or_two_and_more_and_left_to_the_database_when_unset() {
        assert_eq!(
            Config::from_lookup(|_| None).unwrap().intake_busy_requests,
            None
        );
        let set = |v: &'static str| {
            Config::from_lookup(move |k| {
                (k == "TOUCHPOINT_INTAKE_BUSY_REQUESTS").then(|| v.to_owned())
            })
        };
        assert_eq!(set("0").unwrap().intake_busy_requests, Some(0));
        assert_eq!(set("32").unwrap().intake_busy_requests, Some(32));
        for bad in ["1", "-3", "many", "65537"] {
            let err = set(bad).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with("TOUCHPOINT_INTAKE_BUSY_REQUESTS:"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_background_nice_value_outside_zero_to_nineteen_is_refused() {
        for bad in ["-1", "20"] {
            let err = Config::from_lookup(|k| {
                (k == "TOUCHPOINT_BACKGROUND_NICE").then(|| bad.to_owned())
            })
            .unwrap_err();
            assert!(
                err.to_string().starts_with("TOUCHPOINT_BACKGROUND_NICE:"),
                "{err}"
            );
        }
    }

    #[test]
    fn empty_optional_secrets_and_urls_mean_unset() {
        let c = Config::from_lookup(|k| {
            matches!(
                k,
                "TOUCHPOINT_EDGE_SECRET" | "TOUCHPOINT_PUBLIC_URL" | "TOUCHPOINT_RETL_URL"
            )
            .then(String::new)
        })
        .unwrap();
        assert!(c.edge_secret.is_none() && c.public_url.is_none() && c.reverse_etl.is_none());
        let err = Config::from_lookup(|k| {
            (k == "TOUCHPOINT_RETL_URL").then(|| "postgres://replica/db".to_owned())
        })
        .unwrap_err();
        assert!(
            err.to_string().starts_with("TOUCHPOINT_RETL_QUERY:"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_number_names_the_variable() {
        let err = Config::from_lookup(|k| (k == "TOUCHPOINT_QUEUE").then(|| "lots".to_owned()))
            .unwrap_err();
        assert!(err.to_string().starts_with("TOUCHPOINT_QUEUE:"), "{err}");
    }
}
