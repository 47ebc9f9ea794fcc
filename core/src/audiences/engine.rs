//! Columnar evaluation: profiles are rows of typed columns (dictionary-encoded strings, numbers,
//! booleans) and pre-aggregated event counts; a condition evaluates to a bitset over all rows at once.
//! The realtime path loads a table of just the affected profiles, so one engine serves realtime,
//! backfill, scheduled re-checks and preview.

use super::condition::{Comparison, Condition, Literal, Op, Performed};
use std::collections::HashMap;
use touchpoint_tracking_plan::TrackingPlan;

/// One cell of a trait column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell {
    /// No value.
    Missing,
    /// A number.
    Num(f64),
    /// A string, as an index into the column's dictionary.
    Str(u32),
    /// A boolean.
    Bool(bool),
}

/// A typed column of one trait path.
#[derive(Debug, Clone, Default)]
pub struct Column {
    /// One cell per row.
    pub cells: Vec<Cell>,
    /// Distinct strings.
    pub dict: Vec<String>,
    index: HashMap<String, u32>,
}

impl Column {
    /// A column of `rows` missing cells.
    pub fn missing(rows: usize) -> Column {
        Column {
            cells: vec![Cell::Missing; rows],
            ..Column::default()
        }
    }

    /// Sets a row from a JSON value (objects and arrays are kept as their JSON text).
    pub fn set(&mut self, row: usize, value: &serde_json::Value) {
        self.cells[row] = match value {
            serde_json::Value::Null => Cell::Missing,
            serde_json::Value::Bool(b) => Cell::Bool(*b),
            serde_json::Value::Number(n) => n.as_f64().map_or(Cell::Missing, Cell::Num),
            serde_json::Value::String(s) => Cell::Str(self.intern(s)),
            other => Cell::Str(self.intern(&other.to_string())),
        };
    }

    fn intern(&mut self, s: &str) -> u32 {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        let i = self.dict.len() as u32;
        self.dict.push(s.to_owned());
        self.index.insert(s.to_owned(), i);
        i
    }
}

/// Counts of one event condition per row, and when the oldest counted event leaves its window.
#[derive(Debug, Clone)]
pub struct Counts {
    /// Events counted per row.
    pub counts: Vec<u32>,
    /// Per row, the time (ms) the count next drops because an event leaves the window (`i64::MAX`
    /// for none or for conditions without a window).
    pub expires: Vec<i64>,
}

impl Counts {
    /// No events counted for `rows` rows, nothing expiring.
    pub fn none(rows: usize) -> Counts {
        Counts {
            counts: vec![0; rows],
            expires: vec![i64::MAX; rows],
        }
    }

    /// Records a row's count as the database aggregated it: `count` events in the window, the
    /// oldest at `oldest` (ms), which leaves a `window_ms` window at `oldest + window_ms`.
    pub fn record_total(&mut self, row: usize, count: i64, oldest: i64, window_ms: Option<i64>) {
        self.counts[row] = count.clamp(0, i64::from(u32::MAX)) as u32;
        if let Some(w) = window_ms {
            self.expires[row] = oldest.saturating_add(w);
        }
    }

    /// Counts one more event at `at` (ms) for a row; the row's count next drops when its oldest
    /// counted event leaves the `window_ms` window.
    pub fn record_one(&mut self, row: usize, at: i64, window_ms: Option<i64>) {
        self.counts[row] = self.counts[row].saturating_add(1);
        if let Some(w) = window_ms {
            self.expires[row] = self.expires[row].min(at.saturating_add(w));
        }
    }
}

/// Fixed-size bitset over rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bits {
    words: Vec<u64>,
    len: usize,
}

impl Bits {
    /// All false.
    pub fn zeros(len: usize) -> Bits {
        Bits {
            words: vec![0; len.div_ceil(64)],
            len,
        }
    }

    /// All true.
    pub fn ones(len: usize) -> Bits {
        let mut b = Bits {
            words: vec![u64::MAX; len.div_ceil(64)],
            len,
        };
        b.trim();
        b
    }

    fn trim(&mut self) {
        let rem = self.len % 64;
        if rem != 0
            && let Some(last) = self.words.last_mut()
        {
            *last &= (1u64 << rem) - 1;
        }
    }

    /// Builds from a per-row predicate.
    pub fn from_fn(len: usize, mut f: impl FnMut(usize) -> bool) -> Bits {
        let mut words = vec![0u64; len.div_ceil(64)];
        for (w, word) in words.iter_mut().enumerate() {
            let base = w * 64;
            let mut acc = 0u64;
            for bit in 0..64.min(len - base) {
                acc |= u64::from(f(base + bit)) << bit;
            }
            *word = acc;
        }
        Bits { words, len }
    }

    /// Row `i`.
    pub fn get(&self, i: usize) -> bool {
        self.words[i / 64] >> (i % 64) & 1 == 1
    }

    /// Sets row `i`.
    pub fn set(&mut self, i: usize, v: bool) {
        if v {
            self.words[i / 64] |= 1 << (i % 64);
        } else {
            self.words[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Number of set rows.
    pub fn count(&self) -> usize {
        self.words.iter().map(|w| w.count_ones() as usize).sum()
    }

    fn and(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a &= b);
    }

    fn or(&mut self, o: &Bits) {
        self.words
            .iter_mut()
            .zip(&o.words)
            .for_each(|(a, b)| *a |= b);
    }

    fn not(&mut self) {
        self.words.iter_mut().for_each(|a| *a = !*a);
        self.trim();
    }

    /// Indices of set rows.
    pub fn ones_iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..self.len).filter(|&i| self.get(i))
    }
}

/// The evaluation input: profiles as rows.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// Profile ids, one per row.
    pub profiles: Vec<crate::identity::ProfileId>,
    /// Trait path → column.
    pub columns: HashMap<String, Column>,
    /// Canonical text of an event condition → counts.
    pub counts: HashMap<String, Counts>,
    /// Audience id → current members.
    pub members: HashMap<String, Bits>,
}

/// The key under which an event condition's counts are stored: its canonical text without the
/// count requirement (`AT LEAST 2` and `AT MOST 5` of the same event share one count column).
pub fn counts_key(p: &Performed) -> String {
    Performed {
        count: Default::default(),
        ..p.clone()
    }
    .to_string()
}

impl Table {
    /// Number of rows.
    pub fn len(&self) -> usize {
        self.profiles.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.profiles.is_empty()
    }

    /// Evaluates a condition over every row.
    pub fn eval(&self, c: &Condition) -> Bits {
        let n = self.len();
        match c {
            Condition::And(items) => {
                let mut acc = Bits::ones(n);
                for item in items {
                    acc.and(&self.eval(item));
                }
                acc
            }
            Condition::Or(items) => {
                let mut acc = Bits::zeros(n);
                for item in items {
                    acc.or(&self.eval(item));
                }
                acc
            }
            Condition::Not(inner) => {
                let mut b = self.eval(inner);
                b.not();
                b
            }
            Condition::InAudience(a) => self
                .members
                .get(a)
                .cloned()
                .unwrap_or_else(|| Bits::zeros(n)),
            Condition::Performed(p) => match self.counts.get(&counts_key(p)) {
                Some(c) => Bits::from_fn(n, |i| p.count.holds(c.counts[i])),
                None => Bits::from_fn(n, |_| p.count.holds(0)),
            },
            Condition::Trait(t) => match self.columns.get(&t.path) {
                Some(col) => compare_column(col, t),
                None => Bits::from_fn(n, |_| compare_cell(&Column::default(), Cell::Missing, t)),
            },
        }
    }

    /// The earliest time (ms) any event condition of `c` changes for row `i` by time passing alone.
    pub fn next_expiry(&self, c: &Condition, i: usize) -> i64 {
        let mut performed = Vec::new();
        c.performed(&mut performed);
        performed
            .iter()
            .filter(|p| p.within_days.is_some())
            .filter_map(|p| self.counts.get(&counts_key(p)))
            .map(|c| c.expires[i])
            .min()
            .unwrap_or(i64::MAX)
    }
}

fn compare_column(col: &Column, t: &Comparison) -> Bits {
    // Strings are compared once per dictionary entry, then looked up per row.
    let dict_match: Vec<bool> = col
        .dict
        .iter()
        .enumerate()
        .map(|(i, _)| compare_cell(col, Cell::Str(i as u32), t))
        .collect();
    match (&t.op, &t.value) {
        (Op::Gt | Op::Ge | Op::Lt | Op::Le | Op::Eq | Op::Ne, Some(Literal::Num(x))) => {
            let x = *x;
            let op = t.op;
            Bits::from_fn(col.cells.len(), |i| match col.cells[i] {
                Cell::Num(v) => match op {
                    Op::Gt => v > x,
                    Op::Ge => v >= x,
                    Op::Lt => v < x,
                    Op::Le => v <= x,
                    Op::Eq => v == x,
                    _ => v != x,
                },
                Cell::Str(s) => dict_match[s as usize],
                other => compare_cell(col, other, t),
            })
        }
        _ => Bits::from_fn(col.cells.len(), |i| match col.cells[i] {
            Cell::Str(s) => dict_match[s as usize],
            other => compare_cell(col, other, t),
        }),
    }
}

fn literal_matches(col: &Column, cell: Cell, lit: &Literal, op: Op) -> bool {
    use std::cmp::Ordering;
    let ord: Option<Ordering> = match (cell, lit) {
        (Cell::Num(v), Literal::Num(x)) => v.partial_cmp(x),
        (Cell::Str(s), Literal::Str(x)) => Some(col.dict[s as usize].as_str().cmp(x.as_str())),
        (Cell::Str(s), Literal::Num(x)) => col.dict[s as usize]
            .parse::<f64>()
            .ok()
            .and_then(|v| v.partial_cmp(x)),
        (Cell::Num(v), Literal::Str(x)) => x.parse::<f64>().ok().and_then(|x| v.partial_cmp(&x)),
        (Cell::Bool(b), Literal::Bool(x)) => Some(b.cmp(x)),
        (Cell::Str(s), Literal::Bool(x)) => {
            let d = &col.dict[s as usize];
            (d == "true" || d == "false").then(|| (d == "true").cmp(x))
        }
        _ => None,
    };
    match op {
        Op::Eq => ord == Some(Ordering::Equal),
        Op::Ne => {
            ord.is_some_and(|o| o != Ordering::Equal)
                || (ord.is_none() && !matches!(cell, Cell::Missing))
        }
        Op::Lt => ord == Some(Ordering::Less),
        Op::Le => matches!(ord, Some(Ordering::Less | Ordering::Equal)),
        Op::Gt => ord == Some(Ordering::Greater),
        Op::Ge => matches!(ord, Some(Ordering::Greater | Ordering::Equal)),
        _ => false,
    }
}

fn compare_cell(col: &Column, cell: Cell, t: &Comparison) -> bool {
    match (&t.op, &t.value) {
        (Op::Exists, _) => !matches!(cell, Cell::Missing),
        (_, None) => false,
        (_, Some(_)) if matches!(cell, Cell::Missing) => false,
        (Op::Contains, Some(Literal::Str(x))) => {
            matches!(cell, Cell::Str(s) if col.dict[s as usize].contains(x.as_str()))
        }
        (Op::StartsWith, Some(Literal::Str(x))) => {
            matches!(cell, Cell::Str(s) if col.dict[s as usize].starts_with(x.as_str()))
        }
        (Op::In, Some(Literal::List(items))) => {
            items.iter().any(|l| literal_matches(col, cell, l, Op::Eq))
        }
        (op, Some(lit)) => literal_matches(col, cell, lit, *op),
    }
}

/// Whether one JSON value satisfies a comparison (property filters of event conditions).
pub fn value_matches(value: Option<&serde_json::Value>, t: &Comparison) -> bool {
    let mut col = Column::missing(1);
    if let Some(v) = value {
        col.set(0, v);
    }
    compare_cell(&col, col.cells[0], t)
}

/// Whether a stored message (its JSON body) passes an event condition's property filters; a body
/// that does not parse passes none.
pub fn event_matches(body: &str, filters: &[Comparison]) -> bool {
    let Ok(v) = serde_json::from_str::<serde_json::Value>(body) else {
        return false;
    };
    filters
        .iter()
        .all(|f| value_matches(v.get("properties").and_then(|p| p.get(&f.path)), f))
}

/// A stored trait value: its JSON, or the text itself when it is not JSON.
pub fn stored_value(text: String) -> serde_json::Value {
    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
}

/// The position in the plan's journey stages of what a message (its kind and track event name)
/// shows: a page is `page_viewed`, a screen `screen_viewed`. `None` for events of no stage.
pub fn journey_rank(plan: &TrackingPlan, kind: &str, event: &str) -> Option<usize> {
    let name = match kind {
        "page" => "page_viewed",
        "screen" => "screen_viewed",
        _ => event,
    };
    plan.stage_of(name)
        .and_then(|s| plan.stages().iter().position(|st| st.name == s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table() -> Table {
        let mut t = Table {
            profiles: (0..4)
                .map(|i| crate::identity::ProfileId::from(format!("p{i}")))
                .collect(),
            ..Table::default()
        };
        let mut seats = Column::missing(4);
        seats.set(0, &json!(5));
        seats.set(1, &json!(2));
        seats.set(2, &json!("7"));
        t.columns.insert("account.seats_provisioned".into(), seats);
        let mut plan = Column::missing(4);
        for (i, p) in ["free", "free", "pro", "free"].iter().enumerate() {
            plan.set(i, &json!(p));
        }
        t.columns.insert("plan_tier".into(), plan);
        let pql_event = Condition::parse("PERFORMED integration_connected WITHIN 30 DAYS").unwrap();
        let Condition::Performed(p) = &pql_event else {
            unreachable!()
        };
        t.counts.insert(
            counts_key(p),
            Counts {
                counts: vec![1, 1, 0, 3],
                expires: vec![100, 200, i64::MAX, 50],
            },
        );
        let invites = Condition::parse("PERFORMED teammate_invited").unwrap();
        let Condition::Performed(p) = &invites else {
            unreachable!()
        };
        t.counts.insert(
            counts_key(p),
            Counts {
                counts: vec![2, 3, 0, 1],
                expires: vec![i64::MAX; 4],
            },
        );
        t
    }

    fn members(b: &Bits) -> Vec<usize> {
        b.ones_iter().collect()
    }

    #[test]
    fn the_pql_needs_more_than_three_seats_and_a_recent_integration() {
        let c = Condition::parse(
            "account.seats_provisioned > 3 AND PERFORMED integration_connected WITHIN 30 DAYS",
        )
        .unwrap();
        assert_eq!(members(&table().eval(&c)), vec![0]);
        assert_eq!(table().next_expiry(&c, 0), 100);
    }

    #[test]
    fn free_users_who_invited_two_but_never_connected_an_integration() {
        let c = Condition::parse(
            "plan_tier = 'free' AND PERFORMED teammate_invited AT LEAST 2 TIMES AND NOT PERFORMED integration_connected EVER",
        )
        .unwrap();
        // No `ever` counts loaded: nobody performed integration_connected ever in this table.
        assert_eq!(members(&table().eval(&c)), vec![0, 1]);
    }

    #[test]
    fn missing_traits_never_match_comparisons_but_not_equal_needs_a_value() {
        let t = table();
        let ne = Condition::parse("account.seats_provisioned != 5").unwrap();
        assert_eq!(members(&t.eval(&ne)), vec![1, 2]);
        let exists = Condition::parse("account.seats_provisioned EXISTS").unwrap();
        assert_eq!(members(&t.eval(&exists)), vec![0, 1, 2]);
        let list = Condition::parse("plan_tier IN ('pro', 'business')").unwrap();
        assert_eq!(members(&t.eval(&list)), vec![2]);
    }

    #[test]
    fn bitsets_handle_partial_words() {
        let b = Bits::ones(70);
        assert_eq!(b.count(), 70);
        let mut n = b.clone();
        n.not();
        assert_eq!(n.count(), 0);
    }

    #[test]
    fn property_filters_compare_json_values() {
        let c = Comparison {
            path: "new_status".into(),
            op: Op::Eq,
            value: Some(Literal::Bool(true)),
        };
        assert!(value_matches(Some(&json!(true)), &c));
        assert!(!value_matches(Some(&json!(false)), &c));
        assert!(!value_matches(None, &c));
    }

    #[test]
    fn counts_from_the_database_expire_when_the_oldest_event_leaves_the_window() {
        let mut c = Counts::none(2);
        c.record_total(0, 3, 1_000, Some(500));
        c.record_total(1, i64::MAX, 1_000, None);
        assert_eq!(c.counts, vec![3, u32::MAX]);
        assert_eq!(c.expires, vec![1_500, i64::MAX]);
    }

    #[test]
    fn events_counted_one_by_one_expire_with_the_oldest() {
        let mut c = Counts::none(1);
        c.record_one(0, 2_000, Some(500));
        c.record_one(0, 1_000, Some(500));
        assert_eq!((c.counts[0], c.expires[0]), (2, 1_500));
    }

    #[test]
    fn an_event_counts_only_when_every_filter_holds_on_its_properties() {
        let c = Condition::parse(
            "PERFORMED feature_toggled WHERE (feature_name = 'dark_mode' AND new_status = true)",
        )
        .unwrap();
        let Condition::Performed(p) = &c else {
            unreachable!()
        };
        let body =
            |props: serde_json::Value| json!({"type": "track", "properties": props}).to_string();
        assert!(event_matches(
            &body(json!({"feature_name": "dark_mode", "new_status": true})),
            &p.filters
        ));
        assert!(!event_matches(
            &body(json!({"feature_name": "dark_mode", "new_status": false})),
            &p.filters
        ));
        assert!(!event_matches("not json", &p.filters));
        assert!(event_matches("{}", &[]));
    }

    #[test]
    fn stored_traits_are_json_or_else_text() {
        assert_eq!(stored_value("5".into()), json!(5));
        assert_eq!(stored_value("\"pro\"".into()), json!("pro"));
        assert_eq!(stored_value("pro".into()), json!("pro"));
    }

    #[test]
    fn pages_and_screens_rank_as_their_viewed_events_in_the_journey() {
        let plan =
            touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap();
        let evaluation = plan.stages().iter().position(|s| s.name == "Evaluation");
        let expansion = plan.stages().iter().position(|s| s.name == "Expansion");
        assert_eq!(journey_rank(&plan, "page", ""), evaluation);
        assert_eq!(journey_rank(&plan, "track", "teammate_invited"), expansion);
        assert_eq!(journey_rank(&plan, "track", "no_such_event"), None);
    }
}
