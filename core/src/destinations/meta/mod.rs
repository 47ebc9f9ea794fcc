//! Meta Conversions API: server-side events with hashed identifiers.

pub mod config;
pub mod encoder;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use futures_util::future::BoxFuture;

/// The Meta destination.
pub struct Meta {
    version: String,
    pixel_id: String,
    test_code: Option<String>,
    service: service::Service,
}

impl Meta {
    /// Builds it from its configuration.
    pub fn new(config: config::MetaConfig, client: reqwest::Client) -> Meta {
        Meta {
            version: config.api_version.clone(),
            pixel_id: config.pixel_id.clone(),
            test_code: config.test_event_code.clone(),
            service: service::Service::new(config, client),
        }
    }
}

impl Destination for Meta {
    fn name(&self) -> &'static str {
        "meta"
    }

    fn accepts(&self, activation: &Activation) -> bool {
        encoder::accepts(activation)
    }

    fn batch_size(&self) -> usize {
        encoder::MAX_EVENTS
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        encoder::encode(
            &self.version,
            &self.pixel_id,
            self.test_code.as_deref(),
            batch,
        )
    }

    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Sent> {
        Box::pin(self.service.send(request))
    }

    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.service.health())
    }

    fn erase<'a>(&'a self, _subject: &'a Subject) -> BoxFuture<'a, Erasure> {
        Box::pin(async {
            Erasure::NotSupported(
                "the Conversions API has no deletion endpoint: events sent to Meta (with hashed \
                 identifiers) stay under Meta's own retention"
                    .into(),
            )
        })
    }
}
