//! Meta: the Conversions API (server-side page and track events with hashed identifiers, when a
//! pixel is configured) and Custom Audiences (audience entered/exited → Marketing API user add /
//! remove, and a full sync through `usersreplace`, when audiences are mapped).

pub mod audience;
pub mod config;
pub mod encoder;
pub mod replace;
pub mod service;

use super::erasure::{Erasure, Subject};
use super::{Activation, Destination, Encoded, Request, Sent};
use futures_util::future::BoxFuture;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

/// The Meta destination.
pub struct Meta {
    version: String,
    pixel_id: Option<String>,
    test_code: Option<String>,
    audiences: BTreeMap<String, String>,
    users_per_call: usize,
    standard_events: BTreeMap<String, String>,
    service: service::Service,
    /// Touchpoint audiences with a full sync under way.
    replacing: Mutex<BTreeSet<String>>,
}

impl Meta {
    /// Builds it from its configuration.
    pub fn new(config: config::MetaConfig, client: reqwest::Client) -> Meta {
        Meta {
            version: config.api_version.clone(),
            pixel_id: config.pixel_id.clone(),
            test_code: config.test_event_code.clone(),
            audiences: config.custom_audiences.clone(),
            users_per_call: config.users_per_call,
            standard_events: config.standard_events.clone(),
            service: service::Service::new(config, client),
            replacing: Mutex::new(BTreeSet::new()),
        }
    }

    /// The Meta Custom Audience a Touchpoint audience syncs to.
    pub fn custom_audience(&self, audience: &str) -> Option<&str> {
        self.audiences.get(audience).map(String::as_str)
    }

    /// A full-sync session for `audience` (which must be mapped) of about `estimated` users.
    pub fn replace_session(
        &self,
        audience: &str,
        session_id: i64,
        estimated: usize,
    ) -> Option<audience::Replace> {
        let custom = self.custom_audience(audience)?;
        Some(audience::Replace::new(
            &self.version,
            custom,
            session_id,
            estimated,
            self.users_per_call,
        ))
    }

    /// Marks a full sync of `audience` as running; `None` if one already is. The mark goes when
    /// the guard is dropped.
    pub fn begin_replace(self: &Arc<Self>, audience: &str) -> Option<ReplaceGuard> {
        let mut running = self.replacing.lock().unwrap_or_else(|e| e.into_inner());
        running.insert(audience.to_owned()).then(|| ReplaceGuard {
            meta: self.clone(),
            audience: audience.to_owned(),
        })
    }
}

/// A running full sync; dropping it lets the next one start.
pub struct ReplaceGuard {
    meta: Arc<Meta>,
    audience: String,
}

impl Drop for ReplaceGuard {
    fn drop(&mut self) {
        self.meta
            .replacing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&self.audience);
    }
}

impl Destination for Meta {
    fn name(&self) -> &'static str {
        "meta"
    }

    fn accepts(&self, activation: &Activation) -> bool {
        (self.pixel_id.is_some() && encoder::accepts(activation))
            || audience::accepts(&self.audiences, activation)
    }

    fn batch_size(&self) -> usize {
        if self.audiences.is_empty() {
            encoder::MAX_EVENTS
        } else {
            config::MAX_USERS_PER_CALL
        }
    }

    fn encode(&self, batch: &[Activation]) -> Encoded {
        let mut out = audience::encode(&self.version, &self.audiences, self.users_per_call, batch);
        if let Some(pixel) = &self.pixel_id {
            let events = encoder::encode(
                &self.version,
                pixel,
                self.test_code.as_deref(),
                &self.standard_events,
                batch,
            );
            out.requests.extend(events.requests);
            out.rejected.extend(events.rejected);
        }
        out
    }

    fn send<'a>(&'a self, request: &'a Request) -> BoxFuture<'a, Sent> {
        Box::pin(self.service.send(request))
    }

    fn health(&self) -> BoxFuture<'_, Result<(), String>> {
        Box::pin(self.service.health())
    }

    /// Removes the person from every synced Custom Audience (by each of their emails, phones and
    /// userIds). Conversions API events have no deletion endpoint: they stay under Meta's own
    /// retention, which the outcome says.
    fn erase<'a>(&'a self, subject: &'a Subject) -> BoxFuture<'a, Erasure> {
        const CAPI: &str = "the Conversions API has no deletion endpoint: events sent to Meta \
                            (with hashed identifiers) stay under Meta's own retention";
        Box::pin(async move {
            if self.audiences.is_empty() {
                return Erasure::NotSupported(CAPI.into());
            }
            let ids: Vec<&str> = self.audiences.values().map(String::as_str).collect();
            let rows = audience::erasure_rows(subject);
            let mut answers = Vec::new();
            for request in audience::removals(&self.version, &ids, &subject.regulation, &rows) {
                let sent = self.service.send(&request).await;
                let stop = matches!(sent.action, super::RetryAction::Retry { .. });
                answers.push(sent);
                if stop {
                    break;
                }
            }
            match super::erasure::settle("Custom Audience removal", &answers, true) {
                Erasure::Done(what) if self.pixel_id.is_some() => {
                    Erasure::Done(format!("{what}; {CAPI}"))
                }
                other => other,
            }
        })
    }
}
