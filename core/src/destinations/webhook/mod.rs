//! Signed webhook: every activation POSTed as JSON to one URL.

pub mod config;
pub mod encoder;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use futures_util::future::BoxFuture;

/// The webhook destination.
pub struct Webhook {
    service: service::Service,
}

impl Webhook {
    /// Builds it from its configuration.
    pub fn new(config: config::WebhookConfig, client: reqwest::Client) -> Webhook {
        Webhook {
            service: service::Service::new(config, client),
        }
    }
}

impl Destination for Webhook {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn accepts(&self, _activation: &Activation) -> bool {
        true
    }

    fn batch_size(&self) -> usize {
        encoder::MAX_EVENTS
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        encoder::encode(batch)
    }

    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Sent> {
        Box::pin(self.service.send(request))
    }

    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(async { Ok(()) })
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Erasure> {
        Box::pin(self.service.erase(subject))
    }
}
