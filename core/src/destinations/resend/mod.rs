//! Resend: audience members synced as contacts of Resend audiences.

pub mod config;
pub mod encoder;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use futures_util::future::BoxFuture;
use std::collections::BTreeMap;

/// The Resend destination.
pub struct Resend {
    audiences: BTreeMap<String, String>,
    service: service::Service,
}

impl Resend {
    /// Builds it from its configuration.
    pub fn new(config: config::ResendConfig, client: reqwest::Client) -> Resend {
        Resend {
            audiences: config.audiences.clone(),
            service: service::Service::new(config, client),
        }
    }
}

impl Destination for Resend {
    fn name(&self) -> &'static str {
        "resend"
    }

    fn accepts(&self, activation: &Activation) -> bool {
        encoder::accepts(&self.audiences, activation)
    }

    fn batch_size(&self) -> usize {
        20
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        encoder::encode(&self.audiences, batch)
    }

    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Sent> {
        Box::pin(self.service.send(request))
    }

    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.service.health())
    }

    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Erasure> {
        Box::pin(self.service.erase(subject))
    }
}
