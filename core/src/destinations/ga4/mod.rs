//! GA4 Measurement Protocol, server-side: page views and track events, ≤ 25 events a request, with
//! sessions, late-event timestamps, campaigns and consent (see [`encoder`]).

pub mod config;
pub mod encoder;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use crate::pipeline::{Clock, SystemClock};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use std::sync::Arc;

/// The GA4 destination.
pub struct Ga4 {
    measurement_id: String,
    service: service::Service,
    clock: Arc<dyn Clock>,
}

impl Ga4 {
    /// Builds it from its configuration.
    pub fn new(config: config::Ga4Config, client: reqwest::Client) -> Ga4 {
        Ga4 {
            measurement_id: config.measurement_id.clone(),
            service: service::Service::new(config, client),
            clock: Arc::new(SystemClock),
        }
    }

    /// The same destination reading the time (GA4's 72-hour window) from `clock`.
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> Ga4 {
        self.clock = clock;
        self
    }

    /// A sample request body (a page view and a track event) for the debug endpoint.
    pub fn sample() -> Value {
        json!({
            "client_id": "touchpoint-check.1",
            "user_id": "touchpoint-check",
            "events": [
                {"name": "page_view", "params": {"page_location": "https://example.com/pricing",
                    "page_title": "Pricing", "session_id": 1_790_000_000, "engagement_time_msec": 1}},
                {"name": "touchpoint_check", "params": {"check": "debug_endpoint",
                    "session_id": 1_790_000_000, "engagement_time_msec": 1}}
            ]
        })
    }

    /// Validates a body with GA4's debug endpoint; returns its `validationMessages`.
    pub async fn validate(&self, body: &Value) -> Result<Vec<Value>, String> {
        self.service.validate(body).await
    }
}

impl Destination for Ga4 {
    fn name(&self) -> &'static str {
        "ga4"
    }

    fn accepts(&self, activation: &Activation) -> bool {
        encoder::accepts(activation)
    }

    fn batch_size(&self) -> usize {
        500
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        encoder::encode(&self.measurement_id, batch, self.clock.now_ms())
    }

    fn wants_visits(&self) -> bool {
        true
    }

    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Sent> {
        Box::pin(self.service.send(request))
    }

    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async move {
            let messages = self.service.validate(&Self::sample()).await?;
            if messages.is_empty() {
                Ok(())
            } else {
                Err(serde_json::to_string(&messages).unwrap_or_default())
            }
        })
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Erasure> {
        Box::pin(self.service.erase(subject))
    }
}
