//! Pure Meta Custom Audience encoder (Marketing API, customer-file audiences).
//!
//! A person is one multi-key row, schema `["EMAIL", "PHONE", "EXTERN_ID"]`, each value the
//! lowercase SHA-256 hex of the normalised identifier, or `""` when unknown: the email trimmed and
//! lowercased; the phone as digits only with its country code and no leading zeros (`+1 (555)
//! 010-2000` → `15550102000`, `0044 20…` → `4420…`); the userId as the Conversions API's
//! `external_id` hashes it, so both match the same person.
//!
//! Entering a synced audience adds the person (`POST /{version}/{audience_id}/users`), exiting
//! removes them (`DELETE` on the same edge). A batch of transitions collapses to the last one per
//! (audience, profile) — entered then exited in one batch is one removal — and becomes at most
//! [`MAX_USERS_PER_CALL`] rows per call. A full sync ([`Replace`]) sends every member through
//! `POST /{version}/{audience_id}/usersreplace` in batches sharing one `session_id`, numbered by
//! `batch_seq` from 1, the last one flagged `last_batch_flag` so Meta swaps the audience's members
//! for the uploaded ones only once all batches arrived.

use super::config::MAX_USERS_PER_CALL;
use crate::destinations::{Activation, ActivationKind, Encoded, Method, Request, sha256_hex};
use crate::identity::ProfileId;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// A row and the activations (batch indices) it carries.
type Carried = (Row, Vec<usize>);

/// The multi-key schema of every row.
pub const SCHEMA: [&str; 3] = ["EMAIL", "PHONE", "EXTERN_ID"];

/// One person: hashed email, phone and external id (`""` when unknown).
pub type Row = [String; 3];

/// An email as Meta normalises it before hashing: trimmed and lowercased.
pub fn normalise_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    e.contains('@').then_some(e)
}

/// A phone as Meta normalises it before hashing: digits only (the country code included), without
/// leading zeros (an international `00` prefix, a stray trunk zero).
pub fn normalise_phone(phone: &str) -> Option<String> {
    let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
    let digits = digits.trim_start_matches('0');
    (digits.len() >= 7).then(|| digits.to_owned())
}

/// The row of a person, `None` when nothing identifies them.
pub fn row(email: Option<&str>, phone: Option<&str>, user_id: Option<&str>) -> Option<Row> {
    let email = email.and_then(normalise_email).map(|e| sha256_hex(&e));
    let phone = phone.and_then(normalise_phone).map(|p| sha256_hex(&p));
    let extern_id = user_id.filter(|u| !u.trim().is_empty()).map(sha256_hex);
    if email.is_none() && phone.is_none() && extern_id.is_none() {
        return None;
    }
    Some([
        email.unwrap_or_default(),
        phone.unwrap_or_default(),
        extern_id.unwrap_or_default(),
    ])
}

/// The row of an activation's profile.
pub fn row_of(a: &Activation) -> Option<Row> {
    row(a.email.as_deref(), a.phone.as_deref(), a.user_id.as_deref())
}

/// The row of a profile from its identities, (kind, value) newest first (a full sync).
pub fn row_of_identities(identities: &[(String, String)]) -> Option<Row> {
    let newest = |kind: &str| {
        identities
            .iter()
            .find(|(k, _)| k == kind)
            .map(|(_, v)| v.as_str())
    };
    row(newest("email"), newest("phone"), newest("user_id"))
}

/// Whether an activation is a transition of a synced audience (a person Meta cannot match — no
/// email, phone or userId — is skipped by [`encode`], with nothing to send).
pub fn accepts(audiences: &BTreeMap<String, String>, a: &Activation) -> bool {
    a.kind.is_audience()
        && a.audience
            .as_ref()
            .is_some_and(|x| audiences.contains_key(x))
}

/// The `session` object of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    /// Our id of the upload (a positive 64-bit integer).
    pub session_id: i64,
    /// 1-based position of this call in the session.
    pub batch_seq: u32,
    /// Whether this is the session's last call.
    pub last_batch_flag: bool,
    /// How many users the whole session uploads (an estimate).
    pub estimated_num_total: usize,
}

/// The JSON body of a call: `{"payload": {"schema", "data"}, "session": {…}}` (the access token is
/// added by the service).
pub fn body(rows: &[Row], session: &Session) -> Value {
    json!({
        "payload": {"schema": SCHEMA, "data": rows},
        "session": {
            "session_id": session.session_id,
            "batch_seq": session.batch_seq,
            "last_batch_flag": session.last_batch_flag,
            "estimated_num_total": session.estimated_num_total,
        },
    })
}

/// A session id derived from what a call carries (the same batch retried keeps its session, so
/// Meta can recognise the repeat): the first 63 bits of a SHA-256, never 0.
pub fn session_id_of<'a>(parts: impl IntoIterator<Item = &'a str>) -> i64 {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    for p in parts {
        h.update(p.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (i64::from_be_bytes(first) & i64::MAX).max(1)
}

/// Encodes the audience transitions of a batch into add and remove calls of at most
/// `users_per_call` rows (capped at Meta's 10,000).
pub fn encode(
    version: &str,
    audiences: &BTreeMap<String, String>,
    users_per_call: usize,
    batch: &[Activation],
) -> Encoded {
    let per_call = users_per_call.clamp(1, MAX_USERS_PER_CALL);
    // (Meta audience, profile) → (the last transition, every transition it supersedes).
    let mut last: BTreeMap<(&str, &ProfileId), (usize, Vec<usize>)> = BTreeMap::new();
    for (i, a) in batch.iter().enumerate() {
        if !accepts(audiences, a) {
            continue;
        }
        let Some(meta_id) = a.audience.as_ref().and_then(|x| audiences.get(x)) else {
            continue;
        };
        let entry = last
            .entry((meta_id.as_str(), &a.profile_id))
            .or_insert((i, Vec::new()));
        entry.0 = i;
        entry.1.push(i);
    }
    // (Meta audience, add?) → rows with the activations each carries, in batch order.
    let mut calls: BTreeMap<(&str, bool), Vec<Carried>> = BTreeMap::new();
    let mut ordered: Vec<_> = last.into_iter().collect();
    ordered.sort_by_key(|(_, (i, _))| *i);
    for ((meta_id, _), (i, all)) in ordered {
        let a = &batch[i];
        let Some(row) = row_of(a) else { continue };
        let add = a.kind == ActivationKind::AudienceEntered;
        calls.entry((meta_id, add)).or_default().push((row, all));
    }
    let mut requests = Vec::new();
    // Removals first: nothing depends on the order (one row per person), but it reads naturally.
    let mut keys: Vec<(&str, bool)> = calls.keys().copied().collect();
    keys.sort_by_key(|(id, add)| (*add, *id));
    for key in keys {
        let (meta_id, add) = key;
        for chunk in calls[&key].chunks(per_call) {
            let rows: Vec<Row> = chunk.iter().map(|(r, _)| r.clone()).collect();
            let covers: Vec<Vec<usize>> = chunk.iter().map(|(_, c)| c.clone()).collect();
            let session = Session {
                session_id: session_id_of(
                    covers
                        .iter()
                        .flatten()
                        .map(|i| batch[*i].key.as_str())
                        .chain([meta_id]),
                ),
                batch_seq: 1,
                last_batch_flag: true,
                estimated_num_total: rows.len(),
            };
            requests.push(Request {
                method: if add { Method::Post } else { Method::Delete },
                path: format!("/{version}/{meta_id}/users"),
                body: Some(body(&rows, &session)),
                covers,
                label: if add {
                    "Custom Audience add".into()
                } else {
                    "Custom Audience remove".into()
                },
            });
        }
    }
    Encoded {
        requests,
        rejected: Vec::new(),
    }
}

/// Rows that remove an erased person from a Custom Audience whatever identifiers they were added
/// with: one row per known email, phone and userId (each matched on its own).
pub fn erasure_rows(subject: &crate::destinations::erasure::Subject) -> Vec<Row> {
    let emails = subject
        .emails
        .iter()
        .filter_map(|e| row(Some(e), None, None));
    let phones = subject
        .phones
        .iter()
        .filter_map(|p| row(None, Some(p), None));
    let users = subject
        .user_ids
        .iter()
        .filter_map(|u| row(None, None, Some(u)));
    emails.chain(phones).chain(users).collect()
}

/// The calls removing `rows` from each Meta audience in `audience_ids` (an erasure).
pub fn removals(
    version: &str,
    audience_ids: &[&str],
    session_seed: &str,
    rows: &[Row],
) -> Vec<Request> {
    let mut out = Vec::new();
    for id in audience_ids {
        for (n, chunk) in rows.chunks(MAX_USERS_PER_CALL).enumerate() {
            let session = Session {
                session_id: session_id_of([session_seed, id, &n.to_string()]),
                batch_seq: 1,
                last_batch_flag: true,
                estimated_num_total: chunk.len(),
            };
            out.push(Request {
                method: Method::Delete,
                path: format!("/{version}/{id}/users"),
                body: Some(body(chunk, &session)),
                covers: (0..chunk.len()).map(|i| vec![i]).collect(),
                label: "Custom Audience erasure".into(),
            });
        }
    }
    out
}

/// A full sync of one Custom Audience in progress: each [`Replace::batch`] is the next call of the
/// session.
#[derive(Debug, Clone)]
pub struct Replace {
    path: String,
    session_id: i64,
    estimated_num_total: usize,
    users_per_call: usize,
    next_seq: u32,
    finished: bool,
}

impl Replace {
    /// Starts a session `session_id` for Meta audience `audience_id` of about
    /// `estimated_num_total` users.
    pub fn new(
        version: &str,
        audience_id: &str,
        session_id: i64,
        estimated_num_total: usize,
        users_per_call: usize,
    ) -> Replace {
        Replace {
            path: format!("/{version}/{audience_id}/usersreplace"),
            session_id,
            estimated_num_total,
            users_per_call: users_per_call.clamp(1, MAX_USERS_PER_CALL),
            next_seq: 1,
            finished: false,
        }
    }

    /// Most rows one call may carry.
    pub fn users_per_call(&self) -> usize {
        self.users_per_call
    }

    /// Calls made so far.
    pub fn calls(&self) -> u32 {
        self.next_seq - 1
    }

    /// Whether the last call was made.
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// The next call, carrying `rows` (at most [`Replace::users_per_call`]); `last` ends the
    /// session.
    pub fn batch(&mut self, rows: &[Row], last: bool) -> Request {
        debug_assert!(rows.len() <= self.users_per_call && !self.finished);
        let session = Session {
            session_id: self.session_id,
            batch_seq: self.next_seq,
            last_batch_flag: last,
            estimated_num_total: self.estimated_num_total.max(rows.len()),
        };
        self.next_seq += 1;
        self.finished = last;
        Request {
            method: Method::Post,
            path: self.path.clone(),
            body: Some(body(rows, &session)),
            covers: (0..rows.len()).map(|i| vec![i]).collect(),
            label: "Custom Audience replace".into(),
        }
    }
}

/// Every call of a full sync of `rows` in one session (no call when there is no row: Meta cannot
/// replace an audience with nobody).
pub fn encode_replace(
    version: &str,
    audience_id: &str,
    session_id: i64,
    users_per_call: usize,
    rows: &[Row],
) -> Vec<Request> {
    let mut replace = Replace::new(version, audience_id, session_id, rows.len(), users_per_call);
    let chunks: Vec<&[Row]> = rows.chunks(replace.users_per_call()).collect();
    let n = chunks.len();
    chunks
        .into_iter()
        .enumerate()
        .map(|(i, chunk)| replace.batch(chunk, i + 1 == n))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Map;

    fn transition(kind: &str, audience: &str, profile: &str, n: usize) -> Activation {
        Activation {
            key: format!("a:{n}"),
            kind: ActivationKind::parse(kind).unwrap(),
            message_id: None,
            event: Some(kind.into()),
            message: None,
            timestamp_ms: 0,
            profile_id: profile.into(),
            user_id: Some(format!("user-{profile}")),
            anonymous_id: None,
            email: Some(format!("  {}@Example.COM ", profile.to_uppercase())),
            phone: None,
            traits: Map::new(),
            account: None,
            audience: Some(audience.into()),
            visit: None,
        }
    }

    fn audiences() -> BTreeMap<String, String> {
        [
            ("pql".to_owned(), "23850000000000001".to_owned()),
            ("trial".to_owned(), "23850000000000002".to_owned()),
        ]
        .into_iter()
        .collect()
    }

    fn rows_of(r: &Request) -> Vec<Vec<String>> {
        serde_json::from_value(r.body.as_ref().unwrap()["payload"]["data"].clone()).unwrap()
    }

    #[test]
    fn identifiers_are_normalised_before_hashing() {
        assert_eq!(
            normalise_email("  Ada@Example.COM ").as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(normalise_email("not-an-email"), None);
        assert_eq!(
            normalise_phone("+1 (555) 010-2000").as_deref(),
            Some("15550102000")
        );
        assert_eq!(
            normalise_phone("0044 20 7946 0958").as_deref(),
            Some("442079460958")
        );
        assert_eq!(normalise_phone("ext. 12"), None);
        let r = row(
            Some("  Ada@Example.COM "),
            Some("+1 (555) 010-2000"),
            Some("u-1"),
        )
        .unwrap();
        // SHA-256 of `ada@example.com`.
        assert_eq!(
            r[0],
            "b5fc85e55755f9e0d030a10ab4429b6b2944855f9a0d60077fe832becbc41d72"
        );
        assert_eq!(r[1], sha256_hex("15550102000"));
        assert_eq!(r[2], sha256_hex("u-1"), "the CAPI external_id hash");
        assert_eq!(
            row(None, None, Some("u-2")).unwrap(),
            [String::new(), String::new(), sha256_hex("u-2")]
        );
        assert_eq!(row(Some("nope"), Some("12"), Some(" ")), None);
        let ids = vec![
            ("email".to_owned(), "new@example.com".to_owned()),
            ("anonymous_id".to_owned(), "anon".to_owned()),
            ("email".to_owned(), "old@example.com".to_owned()),
        ];
        assert_eq!(
            row_of_identities(&ids).unwrap()[0],
            sha256_hex("new@example.com")
        );
    }

    #[test]
    fn entries_and_exits_become_add_and_remove_calls_of_hashed_rows() {
        let batch = vec![
            transition("audience_entered", "pql", "p1", 1),
            transition("audience_entered", "pql", "p2", 2),
            transition("audience_exited", "pql", "p3", 3),
            transition("audience_entered", "unsynced", "p4", 4),
        ];
        let e = encode("v21.0", &audiences(), 10_000, &batch);
        assert!(e.rejected.is_empty());
        assert_eq!(e.requests.len(), 2);
        let (remove, add) = (&e.requests[0], &e.requests[1]);
        assert_eq!(remove.method, Method::Delete);
        assert_eq!(remove.path, "/v21.0/23850000000000001/users");
        assert_eq!(remove.covers, vec![vec![2]]);
        assert_eq!(add.method, Method::Post);
        assert_eq!(add.path, "/v21.0/23850000000000001/users");
        assert_eq!(add.covers, vec![vec![0], vec![1]]);
        let body = add.body.as_ref().unwrap();
        assert_eq!(
            body["payload"]["schema"],
            json!(["EMAIL", "PHONE", "EXTERN_ID"])
        );
        assert_eq!(
            rows_of(add)[0],
            vec![
                sha256_hex("p1@example.com"),
                String::new(),
                sha256_hex("user-p1")
            ]
        );
        assert_eq!(body["session"]["batch_seq"], 1);
        assert_eq!(body["session"]["last_batch_flag"], true);
        assert_eq!(body["session"]["estimated_num_total"], 2);
        assert!(body["session"]["session_id"].as_i64().unwrap() > 0);
        // The same batch gets the same session (a retry is recognisable), another batch another.
        let again = encode("v21.0", &audiences(), 10_000, &batch);
        assert_eq!(again.requests[1].body, add.body);
        let other = encode("v21.0", &audiences(), 10_000, &batch[..1]);
        assert_ne!(
            other.requests[0].body.as_ref().unwrap()["session"]["session_id"],
            body["session"]["session_id"]
        );
        // An audience that is not mapped is not Meta's; a person with no identifier has nothing
        // to send.
        assert!(!accepts(&audiences(), &batch[3]));
        let mut anonymous = transition("audience_entered", "pql", "p5", 5);
        (anonymous.email, anonymous.user_id) = (None, None);
        assert!(accepts(&audiences(), &anonymous));
        assert!(
            encode("v21.0", &audiences(), 10, &[anonymous])
                .requests
                .is_empty()
        );
    }

    #[test]
    fn only_the_last_transition_of_a_person_in_a_batch_is_sent() {
        let batch = vec![
            transition("audience_entered", "pql", "p1", 1),
            transition("audience_exited", "pql", "p1", 2),
            transition("audience_exited", "trial", "p2", 3),
            transition("audience_entered", "trial", "p2", 4),
        ];
        let e = encode("v21.0", &audiences(), 10_000, &batch);
        let summary: Vec<(Method, &str, Vec<Vec<usize>>)> = e
            .requests
            .iter()
            .map(|r| (r.method, r.path.as_str(), r.covers.clone()))
            .collect();
        assert_eq!(
            summary,
            vec![
                (
                    Method::Delete,
                    "/v21.0/23850000000000001/users",
                    vec![vec![0, 1]]
                ),
                (
                    Method::Post,
                    "/v21.0/23850000000000002/users",
                    vec![vec![2, 3]]
                ),
            ]
        );
    }

    #[test]
    fn calls_hold_at_most_ten_thousand_users() {
        let batch: Vec<Activation> = (0..20_001)
            .map(|i| transition("audience_entered", "pql", &format!("p{i}"), i))
            .collect();
        let e = encode("v21.0", &audiences(), 50_000, &batch);
        let sizes: Vec<usize> = e.requests.iter().map(|r| rows_of(r).len()).collect();
        assert_eq!(sizes, vec![10_000, 10_000, 1]);
        assert_eq!(
            e.requests.iter().map(|r| r.covers.len()).sum::<usize>(),
            20_001
        );
        let small = encode("v21.0", &audiences(), 2, &batch[..5]);
        assert_eq!(small.requests.len(), 3);
    }

    #[test]
    fn an_erased_person_is_removed_by_each_of_their_identifiers() {
        let subject = crate::destinations::erasure::Subject {
            user_ids: vec!["u-1".into()],
            emails: vec!["a@example.com".into(), "b@example.com".into()],
            phones: vec!["+44 20 7946 0958".into()],
            ..crate::destinations::erasure::Subject::new("reg-1", &"p".into(), &[])
        };
        let rows = erasure_rows(&subject);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[1][0], sha256_hex("b@example.com"));
        assert_eq!(rows[2][1], sha256_hex("442079460958"));
        assert_eq!(rows[3][2], sha256_hex("u-1"));
        let calls = removals("v21.0", &["1", "2"], "reg-1", &rows);
        assert_eq!(calls.len(), 2);
        assert!(calls.iter().all(|c| c.method == Method::Delete));
        assert_eq!(calls[1].path, "/v21.0/2/users");
        assert_eq!(rows_of(&calls[0]).len(), 4);
    }

    #[test]
    fn a_replace_numbers_its_batches_in_one_session_and_flags_the_last() {
        let rows: Vec<Row> = (0..25_000)
            .map(|i| row(Some(&format!("u{i}@example.com")), None, None).unwrap())
            .collect();
        let calls = encode_replace("v21.0", "23850000000000001", 42, 10_000, &rows);
        assert_eq!(calls.len(), 3);
        for (i, c) in calls.iter().enumerate() {
            assert_eq!(c.method, Method::Post);
            assert_eq!(c.path, "/v21.0/23850000000000001/usersreplace");
            let s = &c.body.as_ref().unwrap()["session"];
            assert_eq!(s["session_id"], 42);
            assert_eq!(s["batch_seq"], i + 1);
            assert_eq!(s["last_batch_flag"], i == 2);
            assert_eq!(s["estimated_num_total"], 25_000);
        }
        assert_eq!(
            calls.iter().map(|c| rows_of(c).len()).collect::<Vec<_>>(),
            vec![10_000, 10_000, 5_000]
        );
        assert!(encode_replace("v21.0", "1", 42, 10_000, &[]).is_empty());
        // Exactly the limit: one call, flagged last.
        let one = encode_replace("v21.0", "1", 7, 10_000, &rows[..10_000]);
        assert_eq!(one.len(), 1);
        assert_eq!(
            one[0].body.as_ref().unwrap()["session"]["last_batch_flag"],
            true
        );
        // Streaming: the session counts its calls.
        let mut r = Replace::new("v21.0", "1", 9, 3, 2);
        let first = r.batch(&rows[..2], false);
        let last = r.batch(&rows[2..3], true);
        assert_eq!(first.body.as_ref().unwrap()["session"]["batch_seq"], 1);
        assert_eq!(last.body.as_ref().unwrap()["session"]["batch_seq"], 2);
        assert!(r.finished() && r.calls() == 2);
    }
}
