//! Wiring: builds the state from a [`Config`], binds the listener, serves until shutdown.

use crate::audiences::{self, AudienceStage};
use crate::config::Config;
use crate::debugger::Debugger;
use crate::domain::WriteKey;
use crate::ingest::writer::Writer;
use crate::pipeline::{Clock, IntakePressure, Pipeline, Runner};
use crate::plan::PlanHandle;
use crate::profiles::Processor;
use crate::reverse_etl::{self, ReverseEtl};
use crate::sources::Sources;
use crate::state::AppState;
use crate::{admin, hardening, ingest, ops, profiles, sdk, storage};
use anyhow::Context;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::StatusCode;
use chrono::Utc;
use secrecy::ExposeSecret;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

/// The whole HTTP surface; tests may call it with `oneshot` and no socket.
///
/// Every route has a body limit and a timeout: ingest endpoints enforce their own, smaller limits
/// with JSON errors; every other route reads at most [`hardening::MAX_BODY_BYTES`]. The timeout
/// covers everything but the debugger's SSE stream, which stays open as long as its page.
pub fn router(state: AppState) -> Router {
    let others = Router::new()
        .merge(admin::routes())
        .merge(profiles::api::routes())
        .merge(reverse_etl::routes())
        .merge(audiences::api::routes())
        .merge(crate::console::api::routes())
        .merge(crate::dev_sink::routes())
        .merge(ops::routes())
        .merge(crate::pipeline::api::routes())
        .merge(crate::destinations::api::routes())
        .merge(crate::backend_api::routes())
        .merge(sdk::routes())
        .merge(crate::webhooks::routes())
        .merge(crate::crm::routes())
        .merge(crate::handoff::api::routes())
        .layer(RequestBodyLimitLayer::new(hardening::MAX_BODY_BYTES))
        .layer(DefaultBodyLimit::max(hardening::MAX_BODY_BYTES));
    let timed = Router::new()
        .merge(ingest::routes().layer(sdk::cors()))
        .merge(others)
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            state.request_timeout,
        ));
    Router::new()
        .merge(timed)
        .merge(admin::stream_routes())
        .fallback(hardening::no_route)
        .layer(axum::middleware::from_fn(hardening::json_layer_errors))
        .layer(axum::middleware::from_fn(hardening::security_headers))
        .with_state(state)
}

/// A built, bound, not yet serving application.
pub struct Application {
    listener: TcpListener,
    state: AppState,
    limits: crate::serve::Limits,
}

impl Application {
    /// Connects storage, loads the plan and sources, starts the writer, binds the port.
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        admin::check_token(config.admin_token.expose_secret())?;
        if !config.bind.ip().is_loopback()
            && config.admin_token.expose_secret() == Config::default().admin_token.expose_secret()
        {
            anyhow::bail!(
                "refusing to listen on {} with the default admin token: set TOUCHPOINT_ADMIN_TOKEN to a long random value",
                config.bind
            );
        }
        let plan = PlanHandle::load(&config.plan_path).context("loading the tracking plan")?;
        let file_audiences = load_audiences_file(&config.audiences_path, &plan)?;
        let audience_ids: Vec<String> = file_audiences.iter().map(|d| d.id.clone()).collect();
        let handoff_model = config
            .handoff
            .load(&plan.current().plan, &audience_ids)
            .context("loading the lead handoff file")?;
        let stores = crate::stores::connect_with(&config.database_url, config.log_layout)
            .await
            .with_context(|| format!("opening the database ({})", redact(&config.database_url)))?;
        let store = stores.events.clone();
        let mut sources_to_create = config.sources.clone();
        if let Some(sync) = &config.reverse_etl
            && !sources_to_create.iter().any(|(n, _)| *n == sync.source)
        {
            // An internal source: its key is random and never handed out.
            sources_to_create.push((
                sync.source.clone(),
                WriteKey::generate().as_ref().to_owned(),
            ));
        }
        for name in config.webhooks.source_names() {
            // Webhook sources are internal too, unless TOUCHPOINT_SOURCES names them.
            if !sources_to_create.iter().any(|(n, _)| n == name) {
                sources_to_create.push((name.to_owned(), WriteKey::generate().as_ref().to_owned()));
            }
        }
        if handoff_model.is_some()
            && !sources_to_create
                .iter()
                .any(|(n, _)| n == crate::handoff::SOURCE)
        {
            // The lead score is recorded under an internal source too.
            sources_to_create.push((
                crate::handoff::SOURCE.to_owned(),
                WriteKey::generate().as_ref().to_owned(),
            ));
        }
        for name in crate::crm::source_names(&config) {
            // So are the CRMs' inbound sources.
            if !sources_to_create.iter().any(|(n, _)| n == name) {
                sources_to_create.push((name.to_owned(), WriteKey::generate().as_ref().to_owned()));
            }
        }
        for (name, key) in &sources_to_create {
            store
                .upsert_source(name, key)
                .await
                .with_context(|| format!("creating source {name}"))?;
        }
        let sources = Sources::load(store.as_ref())
            .await
            .context("loading sources")?;
        let clock: Arc<dyn Clock> = config.clock.0.clone();
        // Stages in this process hold back while many requests wait on the intake's commits.
        let busy = crate::pipeline::intake_first::busy_requests(
            config.intake_busy_requests,
            config.database_url.starts_with("sqlite:"),
        );
        let intake = (config.process && busy > 0).then(|| IntakePressure::new(clock.clone(), busy));
        let writer = Writer::spawn(
            store.clone(),
            config.queue_capacity,
            config.max_commit,
            intake.clone(),
        );
        spawn_dedup_janitor(store.clone(), config.dedup_window);
        let plan = Arc::new(plan);
        let pipeline_wake = Arc::new(Notify::new());
        let audience_stage = Arc::new(AudienceStage::new(
            stores.audiences.clone(),
            plan.clone(),
            clock.clone(),
        ));
        let mut to_backfill = Vec::new();
        for d in &file_audiences {
            let changed = stores
                .audiences
                .upsert(
                    &d.id,
                    &d.name,
                    &d.description,
                    &d.condition.to_string(),
                    "file",
                )
                .await
                .with_context(|| format!("saving audience {}", d.id))?;
            if changed {
                to_backfill.push(d.id.clone());
            }
        }
        let pipeline = Arc::new(Pipeline::default());
        let debugger = Debugger::default();
        let watch = debugger.clone();
        // Several processing nodes on PostgreSQL: each stage runs on the node holding its lease,
        // and stages wake on progress announced by the nodes that run the stages before them.
        let leases = match (&stores.leases, config.process) {
            (Some(store), true) => {
                let leases = crate::pipeline::Leases::new(store.clone(), config.lease_ttl);
                leases.start(clock.clone());
                Some(leases)
            }
            _ => None,
        };
        let remote_progress = tokio::sync::watch::channel(0u64).0;
        let runner = Runner {
            leases: leases.clone(),
            remote_progress: leases.as_ref().map(|_| remote_progress.subscribe()),
            on: config.background.clone(),
            intake,
            quarantine: stores.quarantine.clone(),
            policy: config.stage_retry,
            clock: clock.clone(),
            pipeline: pipeline.clone(),
            poll: config.stage_poll,
            on_set_aside: Some(Arc::new(move |e: &crate::pipeline::NewEntry| {
                watch.publish(
                    &Arc::from("pipeline"),
                    serde_json::json!({"source": "pipeline", "status": "quarantined",
                        "stage": e.stage, "type": format!("{} stage", e.stage), "seq": e.position, "attempts": e.attempts,
                        "error": e.error, "findings": [], "message": null}),
                );
            })),
        };
        // Each stage wakes the stages that read after it (wired once they exist, below).
        let (audience_wake, profiles_done, audiences_done) = (
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
            Arc::new(Notify::new()),
        );
        // The lead handoff stage reads after the profiles stage too.
        let handoff_wake = Arc::new(Notify::new());
        if config.process {
            if stores.profiles_stages > 1 {
                // One profiles stage per log partition, each with its own lease: they spread
                // over the processing nodes and run at once. Every append wakes all of them.
                let mut wakes = Vec::new();
                for p in 0..i32::from(stores.profiles_stages) {
                    let wake = Arc::new(Notify::new());
                    wakes.push(wake.clone());
                    let processor =
                        Processor::new(stores.profiles.clone(), plan.clone(), clock.clone(), 500)
                            .for_partition(p, stores.profiles_stages);
                    runner.clone().spawn(processor, wake, profiles_done.clone());
                }
                crate::pipeline::fan_out(pipeline_wake.clone(), wakes);
            } else {
                let processor =
                    Processor::new(stores.profiles.clone(), plan.clone(), clock.clone(), 500);
                runner
                    .clone()
                    .spawn(processor, pipeline_wake.clone(), profiles_done.clone());
            }
            runner.clone().spawn(
                audiences::stage::Realtime(audience_stage.clone()),
                audience_wake.clone(),
                audiences_done.clone(),
            );
            tokio::spawn(
                audience_stage
                    .clone()
                    .run_scheduler(clock.clone(), leases.clone()),
            );
        }
        let crm_wiring = crate::crm::Wiring {
            mappings: Arc::new(
                config
                    .crm
                    .load_mappings(&plan.current().plan)
                    .context("loading the CRM mappings")?,
            ),
            store: Some(stores.crm.clone()),
        };
        let destinations =
            crate::destinations::start(&stores, &config, plan.clone(), runner.clone(), &crm_wiring)
                .context("configuring destinations")?;
        if config.process {
            crate::pipeline::fan_out(
                profiles_done,
                vec![
                    audience_wake,
                    destinations.wake_messages.clone(),
                    handoff_wake.clone(),
                ],
            );
            crate::pipeline::fan_out(
                audiences_done,
                vec![destinations.wake_audience_events.clone()],
            );
            if config.database_url.starts_with("postgres") {
                // Other processes append too: their commits wake this one's stages.
                crate::storage::listen_for_appends(
                    &config.database_url,
                    pipeline_wake.clone(),
                    remote_progress,
                );
            }
        }
        let privacy = crate::privacy::Privacy::new(stores.privacy.clone(), &config, &destinations);
        let warehouse =
            crate::warehouse::start(&stores, &config, plan.clone(), &runner, clock.clone())
                .context("configuring the warehouse export")?;
        let webhooks = crate::webhooks::Webhooks::new(&config.webhooks)
            .context("configuring the webhook sources")?;
        let handoff = match handoff_model {
            Some(m) => Some(Arc::new(
                crate::handoff::Handoff::new(m, stores.handoffs.clone(), &config)
                    .context("configuring lead handoff")?,
            )),
            None => None,
        };
        let state = AppState::new(crate::state::Services {
            handoff,
            webhooks: Arc::new(webhooks),
            crm: crate::crm::build(&config, &crm_wiring, stores.crm.clone()),
            warehouse,
            pipeline,
            quarantine: stores.quarantine.clone(),
            console: stores.console.clone(),
            clock,
            stall_after: config.stall_after,
            privacy,
            api: crate::backend_api::Api::new(
                stores.api.clone(),
                config.api_rate_limit_per_second,
                config.api_rate_limit_burst,
            ),
            destinations,
            store,
            profiles: stores.profiles.clone(),
            audiences: stores.audiences.clone(),
            audience_stage,
            sdk_dir: Arc::new(config.sdk_dir.clone()),
            public_url: config.public_url.as_deref().map(Arc::from),
            pipeline_wake,
            leases,
            writer,
            sources: Arc::new(sources),
            plan,
            debugger,
            admin_token: Arc::new(config.admin_token.clone()),
            rate_limits: Arc::new(ingest::rate::RateLimits::new(
                config.rate_limit_per_second,
                config.rate_limit_burst,
            )),
            request_timeout: config.request_timeout,
            edge_secret: config.edge_secret.clone().map(Arc::new),
            edge_replay_window: config.edge_replay_window,
            dev_sink: config.dev_sink.then(|| {
                Arc::new(crate::dev_sink::DevSink::new(
                    config
                        .destinations
                        .webhook
                        .as_ref()
                        .map(|w| w.secret.clone()),
                ))
            }),
            reverse_etl: match config.reverse_etl.clone() {
                Some(sync) => Some(Arc::new(
                    ReverseEtl::new(sync).context("configuring the reverse-ETL sync")?,
                )),
                None => None,
            },
        });
        crate::privacy::start(&state, &config);
        crate::crm::start(&state);
        if config.process {
            crate::handoff::stage::start(&state, runner.clone(), handoff_wake, config.handoff.tick);
        }
        for id in to_backfill {
            audiences::api::spawn_backfill(&state, id);
        }
        if let Some(sync) = &state.reverse_etl {
            reverse_etl::spawn(state.clone(), sync.clone());
        }
        let listener = TcpListener::bind(config.bind)
            .await
            .with_context(|| format!("binding {}", config.bind))?;
        let limits =
            crate::serve::Limits::for_process(config.max_connections, config.header_timeout);
        Ok(Application {
            listener,
            state,
            limits,
        })
    }

    /// The bound port (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The state, for tests that inspect it.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until ctrl-c / SIGTERM.
    pub async fn run(self) -> anyhow::Result<()> {
        let addr = self.listener.local_addr()?;
        tracing::info!(%addr, plan = %self.state.plan.current().version, max_connections = self.limits.max_connections, "touchpoint serving");
        crate::serve::serve(
            self.listener,
            router(self.state),
            self.limits,
            shutdown_signal(),
        )
        .await
        .context("serving HTTP")
    }
}

/// Reads and validates `AUDIENCES.md`; a missing file means no file audiences.
fn load_audiences_file(
    path: &std::path::Path,
    plan: &PlanHandle,
) -> anyhow::Result<Vec<audiences::definitions::Definition>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let (defs, mut problems) = audiences::definitions::parse_file(&text);
    problems.extend(audiences::definitions::validate(
        &defs,
        &plan.current().plan,
        &[],
    ));
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.error)
        .map(|p| format!("{}:{}: {}", path.display(), p.line, p.message))
        .collect();
    if !errors.is_empty() {
        anyhow::bail!("invalid audiences file:\n{}", errors.join("\n"));
    }
    for p in problems.iter().filter(|p| !p.error) {
        tracing::warn!(file = %path.display(), line = p.line, "{}", p.message);
    }
    Ok(defs)
}

fn spawn_dedup_janitor(store: Arc<dyn storage::EventStore>, window: Duration) {
    tokio::spawn(async move {
        let period = Duration::from_secs(600);
        // The first sweep waits a period: nothing can have expired in a process that just started.
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        loop {
            tick.tick().await;
            let before = Utc::now().timestamp_millis() - window.as_millis() as i64;
            match store.expire_dedup(before).await {
                Ok(n) if n > 0 => tracing::info!(expired = n, "dedup window advanced"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "dedup expiry failed"),
            }
        }
    });
}

/// Hides the password of a database URL.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{}:***{}", &url[..s + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn database_passwords_are_redacted() {
        assert_eq!(
            redact("postgres://tp:hunter2@127.0.0.1/tp"),
            "postgres://tp:***@127.0.0.1/tp"
        );
        assert_eq!(redact("sqlite://data/x.db"), "sqlite://data/x.db");
    }
}
