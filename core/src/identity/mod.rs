//! Identity resolution: which profile a message belongs to, kept pure (no I/O) so it can be tested
//! and benchmarked on its own. The processor (`crate::profiles::processor`) loads the relevant part
//! of the graph from storage, the profiles stage's decision (`crate::profiles::decide`) calls
//! [`Graph::resolve`], and the processor persists what it decided.

use serde::Serialize;
use std::collections::HashMap;
use touchpoint_tracking_plan::{IdentityRules, Message, MessageType};

/// Most values of one identifier kind a profile holds when the plan names no limit for the kind
/// (custom externalIds kinds, phone): one message cannot pile identities onto a profile.
pub const DEFAULT_LIMIT_PER_KIND: u32 = 10;
/// Most identifier kinds one profile holds.
pub const MAX_KINDS_PER_PROFILE: usize = 20;
/// Longest identifier value kept, in bytes (the same bound intake applies to ids).
pub const MAX_IDENTIFIER_BYTES: usize = crate::ingest::limits::MAX_IDENTIFIER_BYTES;

/// The most values of `kind` one profile may hold: the plan's limit, else [`DEFAULT_LIMIT_PER_KIND`].
pub fn limit_of(rules: &IdentityRules, kind: &str) -> u32 {
    rules.limit(kind).unwrap_or(DEFAULT_LIMIT_PER_KIND)
}

/// A profile's id: a UUID (v7, hyphenated lower-case text) the profiles stage mints when a message
/// reaches no existing profile ([`ProfileId::generate`]). Ids are never reused or rewritten: when a
/// merge folds a profile into another, the loser's id keeps existing (its `profiles` row points at
/// the winner through `merged_into`) and keeps resolving to the winner, so an id handed out earlier
/// stays valid.
///
/// A distinct type so a profile id cannot be mixed up with a user id, an identifier value or an
/// account (group) id. It is text on every edge: JSON carries it as a bare string
/// (`serde(transparent)`), SQL stores it as `TEXT` (`sqlx(transparent)`), and URL paths carry it
/// as is. Values read from outside (paths, query strings, stored rows) are taken as they are: an id
/// that names no profile simply finds nothing.
#[derive(
    Debug,
    Clone,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct ProfileId(String);

impl ProfileId {
    /// Wraps an id read from outside (a URL path, a stored row, a request body).
    pub fn new(id: impl Into<String>) -> ProfileId {
        ProfileId(id.into())
    }

    /// Mints the id of a new profile: a UUID v7, so ids minted later sort later and new profiles
    /// land together at the end of every index keyed by profile instead of all over it.
    pub fn generate() -> ProfileId {
        ProfileId(uuid::Uuid::now_v7().to_string())
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for ProfileId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ProfileId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<String> for ProfileId {
    fn from(id: String) -> ProfileId {
        ProfileId(id)
    }
}

impl From<&str> for ProfileId {
    fn from(id: &str) -> ProfileId {
        ProfileId(id.to_owned())
    }
}

impl From<ProfileId> for String {
    fn from(id: ProfileId) -> String {
        id.0
    }
}

/// One identifier: a kind (`user_id`, `email`, `phone`, `anonymous_id` or a custom external id type)
/// and its normalised value.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct Identifier {
    /// Kind, e.g. `user_id`.
    pub kind: String,
    /// Normalised value.
    pub value: String,
}

impl Identifier {
    /// Builds an identifier.
    pub fn new(kind: &str, value: &str) -> Identifier {
        Identifier {
            kind: kind.to_owned(),
            value: value.to_owned(),
        }
    }
}

/// Something resolution refused or changed, recorded with the message that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// `blocked_value`, `limit_exceeded`, `merge_refused`, `suppressed`, `identifier_too_long`,
    /// `bad_kind`.
    pub kind: &'static str,
    /// The identifier concerned.
    pub identifier: Identifier,
    /// Human explanation.
    pub detail: String,
}

/// A merge of `loser` into `winner`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merge {
    /// The profile that remains.
    pub winner: ProfileId,
    /// The profile folded into it.
    pub loser: ProfileId,
    /// Why, e.g. `anonymous_id a-1 seen with user_id u-1`.
    pub reason: String,
}

/// What resolution decided for one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    /// The profile the message belongs to.
    pub profile: ProfileId,
    /// Whether that profile was created for this message.
    pub created: bool,
    /// Identifiers newly attached to the profile.
    pub attached: Vec<Identifier>,
    /// Merges performed, in order.
    pub merges: Vec<Merge>,
    /// Identifiers dropped, and why.
    pub reports: Vec<Report>,
}

/// Lower-cases and trims an email; `None` if it is not shaped like one.
pub fn normalise_email(raw: &str) -> Option<String> {
    let e = raw.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    (!local.is_empty() && domain.contains('.') && !e.contains(char::is_whitespace)).then_some(e)
}

/// Keeps digits and a leading `+`; `None` if fewer than 6 digits remain.
pub fn normalise_phone(raw: &str) -> Option<String> {
    let trimmed = raw.trim();
    let digits: String = trimmed.chars().filter(char::is_ascii_digit).collect();
    if digits.len() < 6 {
        return None;
    }
    Some(if trimmed.starts_with('+') {
        format!("+{digits}")
    } else {
        digits
    })
}

/// The identifiers a message carries, normalised, with blocked values removed and reported.
pub fn extract(message: &Message, rules: &IdentityRules) -> (Vec<Identifier>, Vec<Report>) {
    let mut ids: Vec<Identifier> = Vec::with_capacity(4);
    let mut reports = Vec::new();
    let mut push = |kind: &str, value: &str| {
        let id = Identifier::new(kind, value.trim());
        if id.value.len() > MAX_IDENTIFIER_BYTES {
            reports.push(Report {
                kind: "identifier_too_long",
                detail: format!(
                    "{kind} is {} bytes (limit {MAX_IDENTIFIER_BYTES}) and was ignored",
                    id.value.len()
                ),
                identifier: Identifier::new(kind, &truncate(&id.value, 64)),
            });
        } else if !crate::ingest::limits::is_kind_name(kind) {
            reports.push(Report {
                kind: "bad_kind",
                detail: "an identifier kind is 1–64 letters, digits, '_', '.' or '-'; ignored"
                    .into(),
                identifier: Identifier::new(&truncate(kind, 64), &truncate(&id.value, 64)),
            });
        } else if id.value.is_empty() || rules.is_blocked(&id.value) {
            // White space alone is blocked whatever the plan says: taking it would join everyone
            // who sends a blank id into one profile.
            reports.push(Report {
                kind: "blocked_value",
                detail: format!("{kind} {:?} is a blocked value and was ignored", id.value),
                identifier: id,
            });
        } else if !ids.contains(&id) {
            ids.push(id);
        }
    };
    if let Some(u) = &message.user_id {
        push("user_id", u);
    }
    if let Some(a) = &message.anonymous_id {
        push("anonymous_id", a);
    }
    let trait_str = |key: &str| {
        let own = (message.kind == MessageType::Identify)
            .then(|| message.traits.get(key))
            .flatten();
        own.or_else(|| message.context.get("traits").and_then(|t| t.get(key)))
            .and_then(|v| v.as_str())
    };
    if let Some(email) = trait_str("email").and_then(normalise_email) {
        push("email", &email);
    }
    if let Some(phone) = trait_str("phone").and_then(normalise_phone) {
        push("phone", &phone);
    }
    if let Some(external) = message
        .context
        .get("externalIds")
        .and_then(|v| v.as_array())
    {
        for e in external {
            if let (Some(kind), Some(id)) = (
                e.get("type").and_then(|v| v.as_str()),
                e.get("id").and_then(|v| v.as_str()),
            ) {
                push(kind, id);
            }
        }
    }
    if message.kind == MessageType::Alias
        && let Some(prev) = &message.previous_id
    {
        // The previous id is whatever the client called the visitor before: a user id or an
        // anonymous id. The processor looks it up under both kinds.
        push("previous_id", prev);
    }
    ids.sort_by_key(|id| rules.rank(&id.kind).unwrap_or(usize::MAX));
    (ids, reports)
}

/// The first `max` bytes of `s`, on a character boundary.
fn truncate(s: &str, max: usize) -> String {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_owned()
}

/// The part of the identity graph the processor has loaded: identifier → profile and the reverse.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    owner: HashMap<Identifier, ProfileId>,
    members: HashMap<ProfileId, Vec<Identifier>>,
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }

    /// Records a stored fact: `id` belongs to `profile`.
    pub fn insert(&mut self, id: Identifier, profile: &ProfileId) {
        if self.owner.contains_key(&id) {
            return;
        }
        self.members
            .entry(profile.clone())
            .or_default()
            .push(id.clone());
        self.owner.insert(id, profile.clone());
    }

    /// The profile owning `id`, if known.
    pub fn owner(&self, id: &Identifier) -> Option<&ProfileId> {
        self.owner.get(id)
    }

    /// Whether the graph holds anything about `id` (known owner).
    pub fn knows(&self, id: &Identifier) -> bool {
        self.owner.contains_key(id)
    }

    /// Whether `profile`'s identities are loaded.
    pub fn has_profile(&self, profile: &ProfileId) -> bool {
        self.members.contains_key(profile)
    }

    /// Identifiers of a profile.
    pub fn identities(&self, profile: &ProfileId) -> &[Identifier] {
        self.members.get(profile).map_or(&[], Vec::as_slice)
    }

    /// Forgets a profile and its identifiers (after deletion).
    pub fn forget(&mut self, profile: &ProfileId) {
        if let Some(ids) = self.members.remove(profile) {
            for id in ids {
                self.owner.remove(&id);
            }
        }
    }

    /// Rewrites an alias's `previous_id` to the kind the graph knows it by (a user id or an
    /// anonymous id), defaulting to `anonymous_id` for a value never seen before.
    pub fn settle_previous_ids(&self, ids: &mut Vec<Identifier>, rules: &IdentityRules) {
        for id in ids.iter_mut().filter(|i| i.kind == "previous_id") {
            let as_user = Identifier::new("user_id", &id.value);
            id.kind = if self.knows(&as_user) {
                "user_id".into()
            } else {
                "anonymous_id".into()
            };
        }
        let mut seen = Vec::with_capacity(ids.len());
        ids.retain(|i| {
            let fresh = !seen.contains(i);
            seen.push(i.clone());
            fresh
        });
        ids.sort_by_key(|id| rules.rank(&id.kind).unwrap_or(usize::MAX));
    }

    /// Number of identifiers loaded.
    pub fn len(&self) -> usize {
        self.owner.len()
    }

    /// Whether nothing is loaded.
    pub fn is_empty(&self) -> bool {
        self.owner.is_empty()
    }

    fn count_kind(&self, profile: &ProfileId, kind: &str) -> usize {
        self.identities(profile)
            .iter()
            .filter(|i| i.kind == kind)
            .count()
    }

    /// How many identifier kinds `profile` holds.
    fn kinds(&self, profile: &ProfileId) -> usize {
        let mut kinds: Vec<&str> = self
            .identities(profile)
            .iter()
            .map(|i| i.kind.as_str())
            .collect();
        kinds.sort_unstable();
        kinds.dedup();
        kinds.len()
    }

    /// Whether merging `b` into `a` keeps every per-profile limit (e.g. one user_id).
    /// `pending` are the message's identifiers nobody owns yet, which will join the result.
    fn can_merge(
        &self,
        a: &ProfileId,
        b: &ProfileId,
        pending: &[&Identifier],
        rules: &IdentityRules,
    ) -> Result<(), String> {
        let all = || {
            self.identities(a)
                .iter()
                .chain(self.identities(b))
                .chain(pending.iter().copied())
        };
        let mut kinds: Vec<&str> = all().map(|i| i.kind.as_str()).collect();
        kinds.sort_unstable();
        kinds.dedup();
        if kinds.len() > MAX_KINDS_PER_PROFILE {
            return Err(format!(
                "merging would give {} identifier kinds (limit {MAX_KINDS_PER_PROFILE})",
                kinds.len()
            ));
        }
        for kind in kinds {
            let limit = limit_of(rules, kind);
            let mut values: Vec<&str> = all()
                .filter(|i| i.kind == kind)
                .map(|i| i.value.as_str())
                .collect();
            values.sort_unstable();
            values.dedup();
            if values.len() > limit as usize {
                return Err(format!(
                    "merging would give {} {kind} values (limit {limit}): {}",
                    values.len(),
                    values.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// Resolves a message's identifiers (as returned by [`extract`], best first) to one profile,
    /// merging profiles where the rules allow and attaching new identifiers within the limits.
    /// `new_profile` makes an id when a profile must be created.
    pub fn resolve(
        &mut self,
        ids: &[Identifier],
        rules: &IdentityRules,
        new_profile: impl FnOnce() -> ProfileId,
    ) -> Resolution {
        // Profiles touched by this message, best identifier first.
        let mut candidates: Vec<(ProfileId, &Identifier)> = Vec::new();
        for id in ids {
            if let Some(p) = self.owner.get(id)
                && !candidates.iter().any(|(c, _)| c == p)
            {
                candidates.push((p.clone(), id));
            }
        }
        // A profile can take the message only if every not-yet-owned identifier that outranks the
        // one pointing at it fits within the limits (a new user_id never joins another user's profile).
        let rank = |kind: &str| rules.rank(kind).unwrap_or(usize::MAX);
        let fits = |graph: &Graph, p: &ProfileId, via: &Identifier| {
            ids.iter()
                .filter(|u| !graph.owner.contains_key(*u) && rank(&u.kind) < rank(&via.kind))
                .all(|u| graph.count_kind(p, &u.kind) < limit_of(rules, &u.kind) as usize)
        };
        let chosen = candidates.iter().position(|(p, via)| fits(self, p, via));
        if let Some(i) = chosen {
            let first = candidates.remove(i);
            candidates.insert(0, first);
        }
        let target = match chosen.map(|_| &candidates[0]) {
            Some((p, _)) => p.clone(),
            None => {
                let p = new_profile();
                self.members.insert(p.clone(), Vec::new());
                p
            }
        };
        let mut res = Resolution {
            profile: target.clone(),
            created: chosen.is_none(),
            attached: Vec::new(),
            merges: Vec::new(),
            reports: Vec::new(),
        };
        // Fold the other profiles in, unless that would break a limit (merge protection).
        let mut refused: Vec<ProfileId> = Vec::new();
        let pending: Vec<&Identifier> = ids
            .iter()
            .filter(|u| !self.owner.contains_key(*u))
            .collect();
        let skip = usize::from(chosen.is_some());
        for (other, via) in candidates.iter().skip(skip) {
            match self.can_merge(&target, other, &pending, rules) {
                Ok(()) => {
                    let moved = self.members.remove(other).unwrap_or_default();
                    for id in &moved {
                        self.owner.insert(id.clone(), target.clone());
                    }
                    self.members
                        .entry(target.clone())
                        .or_default()
                        .extend(moved);
                    res.merges.push(Merge {
                        winner: target.clone(),
                        loser: other.clone(),
                        reason: format!(
                            "{} {:?} seen together with {} {:?}",
                            via.kind, via.value, ids[0].kind, ids[0].value
                        ),
                    });
                }
                Err(why) => {
                    refused.push(other.clone());
                    res.reports.push(Report {
                        kind: "merge_refused",
                        identifier: (*via).clone(),
                        detail: format!(
                            "{} {:?} stays on its own profile: {why}",
                            via.kind, via.value
                        ),
                    });
                }
            }
        }
        // Attach the identifiers nobody owns yet, within the per-profile limits.
        for id in ids {
            if self.owner.contains_key(id) {
                continue;
            }
            let limit = limit_of(rules, &id.kind);
            let kinds_full = self.count_kind(&target, &id.kind) == 0
                && self.kinds(&target) >= MAX_KINDS_PER_PROFILE;
            if kinds_full {
                res.reports.push(Report {
                    kind: "limit_exceeded",
                    identifier: id.clone(),
                    detail: format!(
                        "profile already has {MAX_KINDS_PER_PROFILE} identifier kinds; {} not attached",
                        id.kind
                    ),
                });
                continue;
            }
            if self.count_kind(&target, &id.kind) >= limit as usize {
                res.reports.push(Report {
                    kind: "limit_exceeded",
                    identifier: id.clone(),
                    detail: format!(
                        "profile already has {limit} {} value(s); {:?} not attached",
                        id.kind, id.value
                    ),
                });
                continue;
            }
            self.owner.insert(id.clone(), target.clone());
            self.members
                .entry(target.clone())
                .or_default()
                .push(id.clone());
            res.attached.push(id.clone());
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rules() -> IdentityRules {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md"))
            .unwrap()
            .identity()
            .clone()
    }

    fn msg(v: serde_json::Value) -> Message {
        Message::from_value(v, None).unwrap().message
    }

    fn counter() -> impl FnMut() -> ProfileId {
        let mut n = 0;
        move || {
            n += 1;
            ProfileId::from(format!("p{n}"))
        }
    }

    #[test]
    fn a_blank_id_is_no_identifier_even_when_the_plan_does_not_block_it() {
        let rules = IdentityRules::default();
        let (ids, reports) = extract(
            &msg(json!({"type": "track", "event": "x", "userId": "  ", "anonymousId": "a-9"})),
            &rules,
        );
        assert_eq!(ids, vec![Identifier::new("anonymous_id", "a-9")]);
        assert_eq!(reports[0].kind, "blocked_value");
    }

    #[test]
    fn anonymous_browsing_is_stitched_into_the_profile_on_identify() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let (ids, _) = extract(&msg(json!({"type": "page", "anonymousId": "a-1"})), &r);
        let first = g.resolve(&ids, &r, &mut next);
        assert!(first.created);
        let (ids, _) = extract(
            &msg(
                json!({"type": "identify", "anonymousId": "a-1", "userId": "u-1",
                        "traits": {"email": " Ada@Example.COM "}}),
            ),
            &r,
        );
        let second = g.resolve(&ids, &r, &mut next);
        assert_eq!(second.profile, first.profile);
        assert!(!second.created);
        assert!(g.knows(&Identifier::new("email", "ada@example.com")));
        let (ids, _) = extract(
            &msg(json!({"type": "track", "event": "x", "userId": "u-1"})),
            &r,
        );
        assert_eq!(g.resolve(&ids, &r, &mut next).profile, first.profile);
    }

    #[test]
    fn two_profiles_seen_together_are_merged_with_the_reason_recorded() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let (a, _) = extract(&msg(json!({"type": "page", "anonymousId": "a-1"})), &r);
        let pa = g.resolve(&a, &r, &mut next).profile;
        let (u, _) = extract(&msg(json!({"type": "identify", "userId": "u-1"})), &r);
        let pu = g.resolve(&u, &r, &mut next).profile;
        assert_ne!(pa, pu);
        let (both, _) = extract(
            &msg(json!({"type": "track", "event": "x", "userId": "u-1", "anonymousId": "a-1"})),
            &r,
        );
        let res = g.resolve(&both, &r, &mut next);
        assert_eq!(res.profile, pu, "the user_id's profile wins");
        assert_eq!(res.merges.len(), 1);
        assert_eq!(res.merges[0].loser, pa);
        assert!(res.merges[0].reason.contains("a-1"));
    }

    #[test]
    fn two_different_user_ids_never_merge_and_the_lower_priority_identifier_is_reported() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let (x, _) = extract(
            &msg(json!({"type": "identify", "userId": "u-1", "anonymousId": "shared-device"})),
            &r,
        );
        let p1 = g.resolve(&x, &r, &mut next).profile;
        let (y, _) = extract(
            &msg(json!({"type": "identify", "userId": "u-2", "anonymousId": "shared-device"})),
            &r,
        );
        let res = g.resolve(&y, &r, &mut next);
        assert_ne!(res.profile, p1);
        assert!(res.merges.is_empty());
        assert_eq!(res.reports[0].kind, "merge_refused");
        assert_eq!(res.reports[0].identifier.kind, "anonymous_id");
        assert_eq!(
            g.owner(&Identifier::new("anonymous_id", "shared-device")),
            Some(&p1)
        );
    }

    #[test]
    fn blocked_values_are_never_identifiers() {
        let r = rules();
        for bad in ["null", "-1", "anonymous", "0000", "", "  "] {
            let (ids, reports) = extract(
                &msg(json!({"type": "track", "event": "x", "userId": bad, "anonymousId": "a-9"})),
                &r,
            );
            assert_eq!(ids, vec![Identifier::new("anonymous_id", "a-9")], "{bad:?}");
            assert_eq!(reports.len(), 1, "{bad:?} is reported");
        }
    }

    #[test]
    fn a_second_email_over_the_limit_is_dropped_and_reported() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let (a, _) = extract(
            &msg(json!({"type": "identify", "userId": "u-1", "traits": {"email": "a@x.io"}})),
            &r,
        );
        g.resolve(&a, &r, &mut next);
        let (b, _) = extract(
            &msg(json!({"type": "identify", "userId": "u-1", "traits": {"email": "b@x.io"}})),
            &r,
        );
        let res = g.resolve(&b, &r, &mut next);
        assert_eq!(res.reports[0].kind, "limit_exceeded");
        assert!(!g.knows(&Identifier::new("email", "b@x.io")));
    }

    #[test]
    fn custom_identifier_kinds_stop_at_the_default_limit_per_kind() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let mut attached = 0;
        let mut refused = 0;
        for batch in 0..3 {
            let external: Vec<_> = (0..10)
                .map(|i| json!({"type": "crm_id", "id": format!("c-{batch}-{i}")}))
                .collect();
            let (ids, _) = extract(
                &msg(json!({"type": "track", "event": "e", "userId": "u-1",
                    "context": {"externalIds": external}})),
                &r,
            );
            let res = g.resolve(&ids, &r, &mut next);
            attached += res.attached.iter().filter(|i| i.kind == "crm_id").count();
            refused += res
                .reports
                .iter()
                .filter(|x| x.kind == "limit_exceeded")
                .count();
        }
        assert_eq!(attached, DEFAULT_LIMIT_PER_KIND as usize);
        assert_eq!(refused, 30 - DEFAULT_LIMIT_PER_KIND as usize);
    }

    #[test]
    fn a_profile_holds_a_bounded_number_of_identifier_kinds() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let external: Vec<_> = (0..25)
            .map(|i| json!({"type": format!("kind_{i:02}"), "id": "x-1"}))
            .collect();
        let (ids, _) = extract(
            &msg(json!({"type": "track", "event": "e", "userId": "u-1",
                "context": {"externalIds": external}})),
            &r,
        );
        let res = g.resolve(&ids, &r, &mut next);
        assert_eq!(res.attached.len(), MAX_KINDS_PER_PROFILE);
        assert_eq!(g.kinds(&res.profile), MAX_KINDS_PER_PROFILE);
    }

    #[test]
    fn an_overlong_or_oddly_named_identifier_is_reported_and_ignored() {
        let long = "e".repeat(300) + "@example.com";
        let (ids, reports) = extract(
            &msg(
                json!({"type": "identify", "userId": "u-1", "traits": {"email": long},
                "context": {"externalIds": [{"type": "a b", "id": "1"}]}}),
            ),
            &rules(),
        );
        assert_eq!(ids, vec![Identifier::new("user_id", "u-1")]);
        let kinds: Vec<_> = reports.iter().map(|r| r.kind).collect();
        assert_eq!(kinds, ["identifier_too_long", "bad_kind"]);
        assert!(reports[0].identifier.value.len() <= 64);
    }

    #[test]
    fn a_numeric_user_id_and_its_string_form_are_the_same_person() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let (a, _) = extract(&msg(json!({"type": "identify", "userId": 42})), &r);
        let (b, _) = extract(&msg(json!({"type": "identify", "userId": "42"})), &r);
        assert_eq!(
            g.resolve(&a, &r, &mut next).profile,
            g.resolve(&b, &r, &mut next).profile
        );
    }

    #[test]
    fn an_alias_folds_the_previous_anonymous_profile_into_the_user() {
        let (r, mut g, mut next) = (rules(), Graph::new(), counter());
        let (a, _) = extract(
            &msg(json!({"type": "page", "anonymousId": "old-device"})),
            &r,
        );
        let pa = g.resolve(&a, &r, &mut next).profile;
        let (u, _) = extract(&msg(json!({"type": "identify", "userId": "u-7"})), &r);
        let pu = g.resolve(&u, &r, &mut next).profile;
        let (mut al, _) = extract(
            &msg(json!({"type": "alias", "userId": "u-7", "previousId": "old-device"})),
            &r,
        );
        g.settle_previous_ids(&mut al, &r);
        let res = g.resolve(&al, &r, &mut next);
        assert_eq!(res.profile, pu);
        assert_eq!(res.merges[0].loser, pa);
    }

    #[test]
    fn a_profile_id_serialises_as_a_bare_string() {
        let id = ProfileId::from("0b6f1c2e-5d4a-4f7e-9c1b-2a3d4e5f6a7b");
        assert_eq!(
            serde_json::to_value(&id).unwrap(),
            json!("0b6f1c2e-5d4a-4f7e-9c1b-2a3d4e5f6a7b")
        );
        assert_eq!(
            serde_json::to_value(json!({"profile_id": id.clone()})).unwrap(),
            json!({"profile_id": "0b6f1c2e-5d4a-4f7e-9c1b-2a3d4e5f6a7b"})
        );
        let back: ProfileId = serde_json::from_value(json!(id.as_str())).unwrap();
        assert_eq!(back, id);
        assert_eq!(id.to_string(), id.as_str());
    }

    #[test]
    fn profile_ids_minted_later_sort_after_earlier_ones() {
        let ids: Vec<ProfileId> = (0..1000).map(|_| ProfileId::generate()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids out of order or repeated"
        );
        let parsed = uuid::Uuid::parse_str(ids[0].as_str()).expect("a UUID");
        assert_eq!(parsed.get_version_num(), 7);
        assert_eq!(ids[0].as_str(), parsed.hyphenated().to_string());
    }

    #[test]
    fn emails_and_phones_are_normalised() {
        assert_eq!(
            normalise_email(" Ada@Example.COM").as_deref(),
            Some("ada@example.com")
        );
        assert_eq!(normalise_email("not an email"), None);
        assert_eq!(
            normalise_phone("+44 (20) 7946-0958").as_deref(),
            Some("+442079460958")
        );
        assert_eq!(normalise_phone("12"), None);
    }
}
