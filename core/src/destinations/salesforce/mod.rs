//! Salesforce: Accounts (groupId), Leads or Contacts (userId; a Contact is linked to its Account)
//! and the custom object Product_Usage__c on the Account, upserted by external id through sObject
//! Collections with the fields `CRM_MAPPINGS.md` maps; a Task for the Account owner when a profile
//! enters the PQL audience. Changes made in Salesforce come back through [`crate::crm`].

pub mod config;
pub mod encoder;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use futures_util::future::BoxFuture;

/// The Salesforce destination.
pub struct Salesforce {
    settings: encoder::Settings,
    service: service::Service,
}

impl Salesforce {
    /// Builds it from its configuration and the CRM loop's mappings and store.
    pub fn new(
        config: config::SalesforceConfig,
        client: reqwest::Client,
        crm: &crate::crm::Wiring,
    ) -> Salesforce {
        Salesforce {
            settings: encoder::Settings {
                api_version: config.api_version.clone(),
                pql_audience: config.pql_audience.clone(),
                mappings: crm.mappings.clone(),
            },
            service: service::Service::new(config, client)
                .with_crm(crm.store.clone(), crm.mappings.salesforce_person),
        }
    }
}

impl Destination for Salesforce {
    fn name(&self) -> &'static str {
        "salesforce"
    }

    fn accepts(&self, activation: &Activation) -> bool {
        encoder::accepts(activation)
    }

    fn batch_size(&self) -> usize {
        encoder::MAX_RECORDS
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        encoder::encode(&self.settings, batch)
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
