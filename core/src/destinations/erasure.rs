//! Erasure requests forwarded to destinations: who is to be forgotten ([`Subject`], captured before
//! the profile is erased) and what a destination made of the request ([`Erasure`]). Each destination
//! implements [`Destination::erase`](super::Destination::erase) with its own deletion API; the
//! privacy worker (`crate::privacy::worker`) retries and records the outcome per destination.

use super::{RetryAction, Sent};
use crate::identity::{Identifier, ProfileId};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// The identifiers of an erased person, as destinations know them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Subject {
    /// The regulation (erasure request) id.
    pub regulation: String,
    /// The erased profile.
    pub profile_id: ProfileId,
    /// userIds.
    #[serde(default)]
    pub user_ids: Vec<String>,
    /// Normalised emails.
    #[serde(default)]
    pub emails: Vec<String>,
    /// Normalised phone numbers.
    #[serde(default)]
    pub phones: Vec<String>,
    /// anonymousIds (GA4 client ids, devices).
    #[serde(default)]
    pub anonymous_ids: Vec<String>,
    /// Every other identifier kind (custom externalIds such as `hubspot_id` or `salesforce_id`) as
    /// `(kind, value)`.
    #[serde(default)]
    pub external: Vec<(String, String)>,
}

impl Subject {
    /// Sorts a profile's identifiers by kind.
    pub fn new(regulation: &str, profile_id: &ProfileId, identifiers: &[Identifier]) -> Subject {
        let mut s = Subject {
            regulation: regulation.to_owned(),
            profile_id: profile_id.clone(),
            user_ids: Vec::new(),
            emails: Vec::new(),
            phones: Vec::new(),
            anonymous_ids: Vec::new(),
            external: Vec::new(),
        };
        for id in identifiers {
            let list = match id.kind.as_str() {
                "user_id" => &mut s.user_ids,
                "email" => &mut s.emails,
                "phone" => &mut s.phones,
                "anonymous_id" => &mut s.anonymous_ids,
                _ => {
                    s.external.push((id.kind.clone(), id.value.clone()));
                    continue;
                }
            };
            list.push(id.value.clone());
        }
        for list in [
            &mut s.user_ids,
            &mut s.emails,
            &mut s.phones,
            &mut s.anonymous_ids,
        ] {
            list.sort();
            list.dedup();
        }
        s.external.sort();
        s.external.dedup();
        s
    }

    /// Values of a custom identifier kind (e.g. `hubspot_id`).
    pub fn external(&self, kinds: &[&str]) -> Vec<&str> {
        self.external
            .iter()
            .filter(|(k, _)| kinds.contains(&k.as_str()))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every identifier value, whatever its kind.
    pub fn values(&self) -> Vec<&str> {
        self.user_ids
            .iter()
            .chain(&self.emails)
            .chain(&self.phones)
            .chain(&self.anonymous_ids)
            .map(String::as_str)
            .chain(self.external.iter().map(|(_, v)| v.as_str()))
            .collect()
    }
}

/// What a destination made of an erasure request.
#[derive(Debug, Clone, PartialEq)]
pub enum Erasure {
    /// Done (or nothing of the person was ever sent there); says what was done.
    Done(String),
    /// Nothing certain landed (rate limit, 5xx, network, expired token): try again, not before `after`.
    Retry {
        /// The API's Retry-After, if any.
        after: Option<Duration>,
        /// What went wrong.
        reason: String,
    },
    /// Refused for good, with the API's message.
    Failed(String),
    /// The destination offers no deletion, or it is switched off; says why.
    NotSupported(String),
}

/// Folds the answers to a destination's deletion calls (`label` names them, e.g. `GDPR delete`):
/// any call to retry makes the whole request retry (deletions are idempotent), else any refusal
/// fails it, else it is done. `missing_is_gone` treats a 404 as success (already deleted).
pub fn settle(label: &str, answers: &[Sent], missing_is_gone: bool) -> Erasure {
    let mut failed = Vec::new();
    let mut done = 0;
    for sent in answers {
        if missing_is_gone && sent.status == Some(404) {
            done += 1;
            continue;
        }
        match &sent.action {
            RetryAction::Success => done += 1,
            RetryAction::Retry { after, reason } => {
                return Erasure::Retry {
                    after: *after,
                    reason: reason.clone(),
                };
            }
            RetryAction::DontRetry(m) => failed.push(m.clone()),
            RetryAction::RetryPart { reason, dead, .. } => {
                failed.extend(dead.iter().map(|(_, m)| m.clone()));
                if failed.is_empty() {
                    failed.push(reason.clone());
                }
            }
        }
    }
    if !failed.is_empty() {
        return Erasure::Failed(failed.join("; "));
    }
    Erasure::Done(format!(
        "{label}: {done} call{}",
        if done == 1 { "" } else { "s" }
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(status: u16, action: RetryAction) -> Sent {
        Sent {
            status: Some(status),
            action,
        }
    }

    #[test]
    fn a_subject_sorts_identifiers_by_kind_and_keeps_custom_ones() {
        let s = Subject::new(
            "r-1",
            &ProfileId::from("p-1"),
            &[
                Identifier::new("email", "ada@example.com"),
                Identifier::new("user_id", "u-1"),
                Identifier::new("anonymous_id", "a-2"),
                Identifier::new("anonymous_id", "a-1"),
                Identifier::new("hubspot_id", "501"),
            ],
        );
        assert_eq!(s.emails, ["ada@example.com"]);
        assert_eq!(s.anonymous_ids, ["a-1", "a-2"]);
        assert_eq!(s.external(&["hubspot_id"]), ["501"]);
        assert_eq!(s.values().len(), 5);
        let back: Subject = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }

    #[test]
    fn one_call_to_retry_retries_the_whole_erasure_and_a_missing_record_counts_as_gone() {
        let ok = sent(204, RetryAction::Success);
        let gone = sent(404, RetryAction::DontRetry("HTTP 404: not found".into()));
        let busy = sent(
            503,
            RetryAction::Retry {
                after: None,
                reason: "HTTP 503".into(),
            },
        );
        assert_eq!(
            settle("delete", &[ok.clone(), gone.clone()], true),
            Erasure::Done("delete: 2 calls".into())
        );
        assert!(matches!(
            settle("delete", &[ok.clone(), gone.clone()], false),
            Erasure::Failed(m) if m.contains("404")
        ));
        assert!(matches!(
            settle("delete", &[ok, busy, gone], true),
            Erasure::Retry { .. }
        ));
    }
}
