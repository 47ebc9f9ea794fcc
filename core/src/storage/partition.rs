//! The partitioned log's decisions, apart from the SQL that carries them out: which partition a
//! message goes to, and which offsets an append takes.
//!
//! Routing key: the `anonymousId`, else the `userId`, else the `messageId`, hashed with FNV-1a
//! modulo the partition count. Messages of one device therefore share a partition and keep their
//! commit order in it; nothing is promised across keys (as with Segment's and Kafka's keys).
//! A person seen on two devices has messages in two partitions; identity resolution does not
//! depend on their relative order (traits are last-write-wins by event time).

use super::{InsertOutcome, NewMessage};
use std::collections::{BTreeMap, HashSet};

/// The default number of partitions of a new PostgreSQL database.
pub const DEFAULT_PARTITIONS: u16 = 8;

/// How a new PostgreSQL log is laid out (stored when the database is created; see
/// `PgStore::connect_laid_out`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Partitions of the log: appends to different partitions commit concurrently.
    pub partitions: u16,
    /// One profiles stage per partition, each with its own cursor and lease, instead of one over
    /// the whole log. Profiles touched from two partitions at once make one of the two redo its
    /// batch: worth it when most people's messages come from one device (see BENCHMARKS.md).
    pub profiles_per_partition: bool,
}

impl Layout {
    /// One partition, one profiles stage: the SQLite log, or a log from before the partitions.
    pub fn single() -> Layout {
        Layout {
            partitions: 1,
            profiles_per_partition: false,
        }
    }

    /// How many profiles stages run: one per partition, or one over the whole log.
    pub fn profiles_stages(&self) -> u16 {
        if self.profiles_per_partition {
            self.partitions
        } else {
            1
        }
    }
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            partitions: DEFAULT_PARTITIONS,
            profiles_per_partition: false,
        }
    }
}

/// FNV-1a, 64 bits, over `parts` each followed by a `0xff` separator: a hash every node computes
/// the same way (std's hasher may change between Rust releases, and nodes of different builds
/// must agree on partitions and lease owners).
pub(crate) fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

/// The key a message is routed by (see the module documentation).
pub fn routing_key(m: &NewMessage) -> &str {
    m.anonymous_id
        .as_deref()
        .or(m.user_id.as_deref())
        .unwrap_or(&m.message_id)
}

/// The partition of `m` in a log of `partitions` partitions (at least 1).
pub fn partition_of(m: &NewMessage, partitions: u16) -> i32 {
    (fnv1a(&[routing_key(m)]) % u64::from(partitions.max(1))) as i32
}

/// Where one message of an append goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    /// The message's index in the append.
    pub index: usize,
    /// Its partition.
    pub partition: i32,
    /// Its offset in that partition.
    pub offset: i64,
}

/// An append's plan: the rows to insert and the partitions' next offsets after them.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// One slot per message to store, in input order.
    pub slots: Vec<Slot>,
    /// Each touched partition's next offset once the append commits.
    pub next: BTreeMap<i32, i64>,
}

impl Plan {
    /// The outcome per message, given the position each slot was stored at (`positions[k]` for
    /// `slots[k]`): the rest were duplicates.
    pub fn outcomes(&self, len: usize, positions: &[i64]) -> Vec<InsertOutcome> {
        let mut out = vec![InsertOutcome::Duplicate; len];
        for (slot, seq) in self.slots.iter().zip(positions) {
            out[slot.index] = InsertOutcome::Stored(*seq);
        }
        out
    }
}

/// Decides an append: every message whose `(source, messageId)` is not `stored` already and not
/// taken by an earlier message of the same append gets the next offset of its partition, counting
/// from `next` (each touched partition's next offset, read under its lock). Duplicates take no
/// offset, so each partition's offsets stay gap-free.
pub fn plan(
    messages: &[NewMessage],
    partitions: &[i32],
    stored: &HashSet<(i64, &str)>,
    next: &BTreeMap<i32, i64>,
) -> Plan {
    let mut plan = Plan {
        slots: Vec::with_capacity(messages.len()),
        next: next.clone(),
    };
    let mut taken: HashSet<(i64, &str)> = HashSet::with_capacity(messages.len());
    for (index, (m, &partition)) in messages.iter().zip(partitions).enumerate() {
        let key = (m.source_id, m.message_id.as_str());
        if stored.contains(&key) || !taken.insert(key) {
            continue;
        }
        let Some(counter) = plan.next.get_mut(&partition) else {
            continue;
        };
        plan.slots.push(Slot {
            index,
            partition,
            offset: *counter,
        });
        *counter += 1;
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Status;
    use proptest::prelude::*;

    fn message(id: &str, anonymous: Option<&str>, user: Option<&str>) -> NewMessage {
        NewMessage {
            source_id: 1,
            message_id: id.into(),
            kind: "track",
            event: None,
            user_id: user.map(str::to_owned),
            anonymous_id: anonymous.map(str::to_owned),
            event_time_ms: 0,
            received_at_ms: 0,
            plan_version: "1".into(),
            status: Status::Accepted,
            violations_json: "[]".into(),
            body_json: "{}".into(),
        }
    }

    #[test]
    fn a_message_is_routed_by_its_anonymous_id_then_its_user_id_then_its_message_id() {
        assert_eq!(routing_key(&message("m", Some("a"), Some("u"))), "a");
        assert_eq!(routing_key(&message("m", None, Some("u"))), "u");
        assert_eq!(routing_key(&message("m", None, None)), "m");
    }

    #[test]
    fn routing_is_the_same_on_every_build() {
        // Fixed values: nodes of different releases must route a device to the same partition.
        assert_eq!(fnv1a(&["anon-1"]), 0x1b3f_230b_ce1e_7ece);
        assert_eq!(partition_of(&message("m", Some("anon-1"), None), 8), 6);
        assert_eq!(partition_of(&message("m", Some("anon-1"), None), 1), 0);
    }

    #[test]
    fn one_devices_messages_share_a_partition_whatever_else_they_carry() {
        let a = partition_of(&message("m1", Some("device"), None), 8);
        let b = partition_of(&message("m2", Some("device"), Some("user-9")), 8);
        assert_eq!(a, b);
    }

    #[test]
    fn duplicates_stored_or_repeated_in_the_append_take_no_offset() {
        let ms = [
            message("m1", Some("a"), None),
            message("m2", Some("a"), None),
            message("m1", Some("a"), None),
            message("m3", Some("a"), None),
        ];
        let stored: HashSet<(i64, &str)> = [(1, "m2")].into();
        let next = BTreeMap::from([(0, 10)]);
        let p = plan(&ms, &[0, 0, 0, 0], &stored, &next);
        assert_eq!(
            p.slots,
            [
                Slot {
                    index: 0,
                    partition: 0,
                    offset: 10
                },
                Slot {
                    index: 3,
                    partition: 0,
                    offset: 11
                }
            ]
        );
        assert_eq!(p.next, BTreeMap::from([(0, 12)]));
        assert_eq!(
            p.outcomes(4, &[100, 101]),
            [
                InsertOutcome::Stored(100),
                InsertOutcome::Duplicate,
                InsertOutcome::Duplicate,
                InsertOutcome::Stored(101)
            ]
        );
    }

    proptest! {
        /// Any sequence of appends (in whatever order their locks were granted) leaves every
        /// partition's offsets gap-free from 1, each message stored once.
        #[test]
        fn appends_in_any_order_leave_every_partitions_offsets_gap_free(
            batches in proptest::collection::vec(
                proptest::collection::vec((0u8..40, 0u8..6), 0..30), 1..20),
            partitions in 1u16..9,
        ) {
            let mut next: BTreeMap<i32, i64> = (0..i32::from(partitions)).map(|p| (p, 1)).collect();
            let mut stored: Vec<(String, i32, i64)> = Vec::new();
            for batch in &batches {
                let ms: Vec<NewMessage> = batch
                    .iter()
                    .map(|(id, device)| message(&format!("m{id}"), Some(&format!("d{device}")), None))
                    .collect();
                let parts: Vec<i32> = ms.iter().map(|m| partition_of(m, partitions)).collect();
                let keys: HashSet<(i64, &str)> =
                    stored.iter().map(|(id, _, _)| (1, id.as_str())).collect();
                let p = plan(&ms, &parts, &keys, &next);
                for s in &p.slots {
                    stored.push((ms[s.index].message_id.clone(), s.partition, s.offset));
                }
                next = p.next;
            }
            let ids: HashSet<&str> = stored.iter().map(|(id, _, _)| id.as_str()).collect();
            prop_assert_eq!(ids.len(), stored.len());
            for part in 0..i32::from(partitions) {
                let offsets: Vec<i64> =
                    stored.iter().filter(|s| s.1 == part).map(|s| s.2).collect();
                let expected: Vec<i64> = (1..=offsets.len() as i64).collect();
                prop_assert_eq!(&offsets, &expected);
                prop_assert_eq!(next[&part], offsets.len() as i64 + 1);
            }
        }
    }
}
