//! Audience evaluation benchmark: a trait + event audience (the PQL) and the free-plan audience
//! evaluated over 1,000,000 profiles held in the columnar table (typed, dictionary-encoded columns
//! and pre-aggregated event counts), once loaded. Baseline in the same run: a naive row-at-a-time
//! evaluation over JSON trait maps. Run: `scripts/bench-audiences.sh`.
#![allow(clippy::print_stdout)]

use serde_json::{Map, Value, json};
use std::time::{Duration, Instant};
use touchpoint_core::audiences::Condition;
use touchpoint_core::audiences::condition::Performed;
use touchpoint_core::audiences::engine::{Column, Counts, Table, counts_key};

fn performed(text: &str) -> Performed {
    match Condition::parse(text).expect("parses") {
        Condition::Performed(p) => p,
        _ => unreachable!("an event condition"),
    }
}

fn best_of(runs: usize, mut f: impl FnMut() -> usize) -> (Duration, usize) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..runs {
        let t = Instant::now();
        out = std::hint::black_box(f());
        best = best.min(t.elapsed());
    }
    (best, out)
}

fn main() {
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    // Deterministic pseudo-random data (xorshift).
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let tiers = ["free", "pro", "business", "enterprise"];
    let mut table = Table {
        profiles: (0..n)
            .map(|i| touchpoint_core::identity::ProfileId::from(format!("p{i}")))
            .collect(),
        ..Table::default()
    };
    let mut seats = Column::missing(n);
    let mut tier = Column::missing(n);
    let (integration, invites) = (
        performed("PERFORMED integration_connected WITHIN 30 DAYS"),
        performed("PERFORMED teammate_invited AT LEAST 2 TIMES"),
    );
    let ever = performed("PERFORMED integration_connected EVER");
    let mut c_int = Counts {
        counts: vec![0; n],
        expires: vec![i64::MAX; n],
    };
    let mut c_inv = Counts {
        counts: vec![0; n],
        expires: vec![i64::MAX; n],
    };
    let mut c_ever = Counts {
        counts: vec![0; n],
        expires: vec![i64::MAX; n],
    };
    let mut rows: Vec<(Map<String, Value>, u32, u32, u32)> = Vec::with_capacity(n);
    for i in 0..n {
        let r = rnd();
        let s = (r % 10) as i64;
        let t = tiers[(r >> 8) as usize % 4];
        seats.set(i, &json!(s));
        tier.set(i, &json!(t));
        let ci = ((r >> 16) % 3) as u32;
        let cv = ((r >> 24) % 4) as u32;
        let ce = ci + ((r >> 32) % 2) as u32;
        c_int.counts[i] = ci;
        c_inv.counts[i] = cv;
        c_ever.counts[i] = ce;
        let mut traits = Map::new();
        traits.insert("account.seats_provisioned".into(), json!(s));
        traits.insert("plan_tier".into(), json!(t));
        rows.push((traits, ci, cv, ce));
    }
    table
        .columns
        .insert("account.seats_provisioned".into(), seats);
    table.columns.insert("plan_tier".into(), tier);
    table.counts.insert(counts_key(&integration), c_int);
    table.counts.insert(counts_key(&invites), c_inv);
    table.counts.insert(counts_key(&ever), c_ever);

    let pql = Condition::parse(
        "account.seats_provisioned > 3 AND PERFORMED integration_connected WITHIN 30 DAYS",
    )
    .unwrap();
    let free = Condition::parse(
        "plan_tier = 'free' AND PERFORMED teammate_invited AT LEAST 2 TIMES AND NOT PERFORMED integration_connected EVER",
    )
    .unwrap();

    let (pql_t, pql_n) = best_of(5, || table.eval(&pql).count());
    let (free_t, free_n) = best_of(5, || table.eval(&free).count());
    // Baseline: row at a time over JSON maps (what evaluating stored JSON per row costs).
    let (naive_t, naive_n) = best_of(3, || {
        rows.iter()
            .filter(|(t, ci, _, _)| {
                t.get("account.seats_provisioned")
                    .and_then(Value::as_f64)
                    .is_some_and(|v| v > 3.0)
                    && *ci >= 1
            })
            .count()
    });
    assert_eq!(pql_n, naive_n, "columnar and row evaluation agree");
    println!("| audience | profiles | members | evaluation (best of 5) |");
    println!("|---|---|---|---|");
    println!(
        "| PQL (trait + event within 30 days), columnar | {n} | {pql_n} | {:.1} ms |",
        pql_t.as_secs_f64() * 1e3
    );
    println!(
        "| free + ≥2 invites + never integration, columnar | {n} | {free_n} | {:.1} ms |",
        free_t.as_secs_f64() * 1e3
    );
    println!(
        "| PQL, naive row-at-a-time over JSON maps (baseline) | {n} | {naive_n} | {:.1} ms |",
        naive_t.as_secs_f64() * 1e3
    );
    println!(
        "\ncolumnar PQL is {:.1}× faster than the naive baseline",
        naive_t.as_secs_f64() / pql_t.as_secs_f64()
    );
}
