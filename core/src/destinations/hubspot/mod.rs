//! HubSpot: contacts (email) and companies (groupId) through CRM v3 batch upserts with the
//! properties `CRM_MAPPINGS.md` maps, OAuth 2.0. Changes made in HubSpot come back through
//! [`crate::crm`].

pub mod config;
pub mod encoder;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use futures_util::future::BoxFuture;

/// The HubSpot destination.
pub struct HubSpot {
    company_id_property: String,
    mappings: std::sync::Arc<crate::crm::Mappings>,
    service: service::Service,
}

impl HubSpot {
    /// Builds it from its configuration and the CRM loop's mappings and store.
    pub fn new(
        config: config::HubSpotConfig,
        client: reqwest::Client,
        crm: &crate::crm::Wiring,
    ) -> HubSpot {
        HubSpot {
            company_id_property: config.company_id_property.clone(),
            mappings: crm.mappings.clone(),
            service: service::Service::new(config, client).with_crm(crm.store.clone()),
        }
    }
}

impl Destination for HubSpot {
    fn name(&self) -> &'static str {
        "hubspot"
    }

    fn accepts(&self, activation: &Activation) -> bool {
        encoder::accepts(activation)
    }

    fn batch_size(&self) -> usize {
        // Two object types per batch, each ≤ 100 inputs a call.
        2 * encoder::MAX_INPUTS
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        encoder::encode(&self.mappings, &self.company_id_property, batch)
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
