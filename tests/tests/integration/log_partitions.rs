//! The partitioned log on a real PostgreSQL: concurrent appends, the horizon readers trust, and
//! duplicates that race across partitions.

use sqlx::PgPool;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use touchpoint_core::storage::partition::{Layout, partition_of};
use touchpoint_core::storage::{EventStore, InsertOutcome, NewMessage, PgStore, Status};
use touchpoint_tests::{eventually, fresh_postgres_database};

fn pg_admin_url() -> String {
    std::env::var("TOUCHPOINT_TEST_PG_URL").expect(
        "TOUCHPOINT_TEST_PG_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
    )
}

async fn store(partitions: u16) -> (Arc<PgStore>, PgPool, i64) {
    let url = fresh_postgres_database(&pg_admin_url()).await;
    let store = PgStore::connect_with(&url, partitions).await.unwrap();
    let source = store.upsert_source("web", "wk").await.unwrap().id;
    let pool = store.db().pool().clone();
    (Arc::new(store), pool, source)
}

fn message(source_id: i64, id: &str, device: &str) -> NewMessage {
    NewMessage {
        source_id,
        message_id: id.into(),
        kind: "track",
        event: Some("Viewed".into()),
        user_id: None,
        anonymous_id: Some(device.into()),
        event_time_ms: 1,
        received_at_ms: 1,
        plan_version: "1".into(),
        status: Status::Accepted,
        violations_json: "[]".into(),
        body_json: format!(r#"{{"anonymousId":"{device}","messageId":"{id}"}}"#),
    }
}

/// A device name that routes to `partition` of `partitions`.
fn device_in(partition: i32, partitions: u16, tag: &str) -> String {
    (0..10_000)
        .map(|i| format!("{tag}-{i}"))
        .find(|d| partition_of(&message(1, "m", d), partitions) == partition)
        .expect("some device routes to every partition")
}

/// The one number `query` returns.
async fn number(pool: &PgPool, query: &str) -> i64 {
    sqlx::query_scalar(query).fetch_one(pool).await.unwrap()
}

/// Waits until a backend runs a statement containing `text` and waits for a lock.
async fn wait_for_lock_wait(pool: &PgPool, text: &str) {
    let pattern = format!("%{text}%");
    eventually(10, "a statement waiting for a lock", async || {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() \
             AND wait_event_type = 'Lock' AND query LIKE $1 AND pid <> pg_backend_pid()",
        )
        .bind(&pattern)
        .fetch_one(pool)
        .await
        .unwrap();
        waiting > 0
    })
    .await;
}

/// Opens a transaction that holds `partition` as an append does and has stored `id` in it, not
/// yet committed; returns it with the row's position.
async fn open_append(
    pool: &PgPool,
    source: i64,
    partition: i32,
    id: &str,
) -> (sqlx::Transaction<'static, sqlx::Postgres>, i64) {
    let mut tx = pool.begin().await.unwrap();
    // No offset given: the migration's trigger takes one under the partition's lock.
    let seq: i64 = sqlx::query_scalar(
        "INSERT INTO messages (source_id, message_id, dedup_key, kind, event_time, received_at, \
         plan_version, status, violations, body, partition) \
         VALUES ($1, $2, $2, 'track', 1, 1, '1', 'accepted', '[]', '{}', $3) RETURNING seq",
    )
    .bind(source)
    .bind(id)
    .bind(partition)
    .fetch_one(&mut *tx)
    .await
    .unwrap();
    (tx, seq)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_leave_every_partition_gap_free_in_position_order() {
    let (store, pool, source) = store(8).await;
    // 6 writers x 15 appends x 20 messages over 40 devices; every writer also re-sends
    // messageIds another writer sends under another device (a duplicate in another partition).
    let mut writers = Vec::new();
    for w in 0..6 {
        let store = store.clone();
        writers.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            for a in 0..15 {
                let batch: Vec<NewMessage> = (0..20)
                    .map(|i| {
                        let n = a * 20 + i;
                        let id = format!("m-{}-{n}", w % 3);
                        message(source, &id, &format!("device-{w}-{}", n % 7))
                    })
                    .collect();
                let out = store.append(&batch, &[]).await.unwrap();
                outcomes.extend(batch.iter().map(|m| m.message_id.clone()).zip(out));
            }
            outcomes
        }));
    }
    let mut stored: HashMap<String, i64> = HashMap::new();
    for w in writers {
        for (id, outcome) in w.await.unwrap() {
            if let InsertOutcome::Stored(seq) = outcome {
                assert!(
                    stored.insert(id.clone(), seq).is_none(),
                    "{id} stored twice"
                );
            }
        }
    }
    // Three distinct id sets of 300: each stored exactly once, whoever won.
    assert_eq!(stored.len(), 900);

    let rows: Vec<(i32, i64, i64, String)> = sqlx::query_as(
        "SELECT partition, part_offset, seq, message_id FROM messages ORDER BY partition, part_offset",
    )
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(rows.len(), 900);
    let mut by_partition: BTreeMap<i32, Vec<(i64, i64)>> = BTreeMap::new();
    for (p, offset, seq, id) in &rows {
        assert_eq!(stored[id], *seq, "the outcome names the stored row");
        by_partition.entry(*p).or_default().push((*offset, *seq));
    }
    assert!(by_partition.len() > 1, "the devices spread over partitions");
    let next: BTreeMap<i32, i64> =
        sqlx::query_as("SELECT partition, next_offset FROM log_partitions")
            .fetch_all(&pool)
            .await
            .unwrap()
            .into_iter()
            .collect();
    for (p, rows) in &by_partition {
        let offsets: Vec<i64> = rows.iter().map(|r| r.0).collect();
        assert_eq!(
            offsets,
            (1..=rows.len() as i64).collect::<Vec<_>>(),
            "partition {p}"
        );
        assert!(
            rows.windows(2).all(|w| w[0].1 < w[1].1),
            "partition {p}: positions rise with offsets"
        );
        assert_eq!(next[p], rows.len() as i64 + 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_horizon_waits_for_an_append_in_flight_while_other_partitions_keep_committing() {
    let (store, pool, source) = store(4).await;
    let (open, open_seq) = open_append(&pool, source, 2, "slow").await;

    // Another partition commits while partition 2's append is open: no global lock.
    let fast = message(source, "fast", &device_in(0, 4, "fast"));
    let out = tokio::time::timeout(Duration::from_secs(10), store.append(&[fast], &[]))
        .await
        .expect("an append to another partition does not wait")
        .unwrap();
    let InsertOutcome::Stored(fast_seq) = out[0] else {
        panic!("stored: {out:?}")
    };
    assert!(
        fast_seq > open_seq,
        "the later append drew the later position"
    );

    // A reader may not pass `open_seq` until that append ends: the horizon waits for it.
    let waiting = tokio::spawn({
        let store = store.clone();
        async move { store.log_horizon().await.unwrap() }
    });
    wait_for_lock_wait(&pool, "log_horizon").await;
    assert!(!waiting.is_finished());
    open.commit().await.unwrap();
    let horizon = waiting.await.unwrap();
    assert!(
        horizon >= fast_seq,
        "the horizon covers {fast_seq}: {horizon}"
    );
    let visible: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM messages WHERE seq <= $1")
        .bind(horizon)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(visible, 2, "both appends are visible below the horizon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_duplicate_stored_meanwhile_in_another_partition_takes_no_offset() {
    let (store, pool, source) = store(4).await;
    // The same messageId under two devices: one routes to partition 1, the other to 3.
    let (open, _) = open_append(&pool, source, 1, "twice").await;
    let late = message(source, "twice", &device_in(3, 4, "late"));
    let racing = tokio::spawn({
        let store = store.clone();
        async move { store.append(&[late], &[]).await.unwrap() }
    });
    // It passed its duplicate check before the first committed, and now waits on the key.
    wait_for_lock_wait(&pool, "INSERT INTO messages").await;
    open.commit().await.unwrap();
    assert_eq!(racing.await.unwrap(), [InsertOutcome::Duplicate]);
    let next = number(
        &pool,
        "SELECT next_offset FROM log_partitions WHERE partition = 3",
    )
    .await;
    assert_eq!(next, 1, "partition 3 burned no offset");
    let stored = number(&pool, "SELECT COUNT(*) FROM messages").await;
    assert_eq!(stored, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_database_takes_the_configured_partitions_and_keeps_them_once_it_holds_messages() {
    let url = fresh_postgres_database(&pg_admin_url()).await;
    let first = PgStore::connect_with(&url, 4).await.unwrap();
    assert_eq!(first.layout().partitions, 4);
    // Another node configured differently joins the same database: it routes as the first does.
    assert_eq!(
        PgStore::connect_with(&url, 16)
            .await
            .unwrap()
            .layout()
            .partitions,
        4
    );
    let source = first.upsert_source("web", "wk").await.unwrap().id;
    first
        .append(&[message(source, "m", "d")], &[])
        .await
        .unwrap();
    assert_eq!(
        PgStore::connect_with(&url, 1)
            .await
            .unwrap()
            .layout()
            .partitions,
        4
    );
    // The profiles stages too: a later node asking for one per partition gets the stored one.
    let later = PgStore::connect_laid_out(
        &url,
        Layout {
            partitions: 8,
            profiles_per_partition: true,
        },
    )
    .await
    .unwrap();
    assert!(!later.layout().profiles_per_partition);
    let url = fresh_postgres_database(&pg_admin_url()).await;
    let per_partition = Layout {
        partitions: 4,
        profiles_per_partition: true,
    };
    assert!(
        PgStore::connect_laid_out(&url, per_partition)
            .await
            .unwrap()
            .layout()
            .profiles_per_partition
    );
    assert!(
        PgStore::connect_with(&url, 4)
            .await
            .unwrap()
            .layout()
            .profiles_per_partition
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_from_before_the_partitions_becomes_partition_zero_in_position_order() {
    let url = fresh_postgres_database(&pg_admin_url()).await;
    let pool = PgPool::connect(&url).await.unwrap();
    let mut before = sqlx::migrate!("../core/migrations/postgres");
    before.migrations = before
        .migrations
        .iter()
        .filter(|m| m.version < 17)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&pool).await.unwrap();
    sqlx::raw_sql(
        "INSERT INTO sources (id, name, write_key, created_at) VALUES (1, 'web', 'wk', 0); \
         INSERT INTO messages (seq, source_id, message_id, dedup_key, kind, event_time, \
           received_at, plan_version, status, violations, body) VALUES \
           (3, 1, 'a', 'a', 'track', 1, 1, '1', 'accepted', '[]', '{}'), \
           (7, 1, 'b', 'b', 'track', 1, 1, '1', 'accepted', '[]', '{}'), \
           (8, 1, 'c', 'c', 'track', 1, 1, '1', 'accepted', '[]', '{}'); \
         SELECT setval('messages_seq_seq', 8)",
    )
    .execute(&pool)
    .await
    .unwrap();
    let store = PgStore::connect_with(&url, 8).await.unwrap();
    assert_eq!(
        store.layout().partitions,
        1,
        "a log that holds messages keeps one partition"
    );
    let out = store
        .append(&[message(1, "d", "anyone")], &[])
        .await
        .unwrap();
    assert_eq!(out, [InsertOutcome::Stored(9)]);
    let rows: Vec<(i64, i32, i64)> =
        sqlx::query_as("SELECT seq, partition, part_offset FROM messages ORDER BY seq")
            .fetch_all(&pool)
            .await
            .unwrap();
    assert_eq!(rows, [(3, 0, 1), (7, 0, 2), (8, 0, 3), (9, 0, 4)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn people_seen_on_two_devices_in_different_partitions_end_as_one_profile_each() {
    // 8 partitions, one profiles stage per partition, all running at once.
    let (url, tmp) = touchpoint_tests::fresh_database(touchpoint_tests::Db::Postgres).await;
    let mut config = touchpoint_tests::test_config(url);
    config.log_layout = Layout {
        partitions: 8,
        profiles_per_partition: true,
    };
    let app = touchpoint_tests::spawn_app_with(config, tmp).await;
    const PEOPLE: usize = 30;
    // Devices chosen so that each person's two devices and their userId route apart.
    let people: Vec<(String, String, String)> = (0..PEOPLE)
        .map(|i| {
            let a = device_in((i % 8) as i32, 8, &format!("a{i}"));
            let b = device_in(((i + 3) % 8) as i32, 8, &format!("b{i}"));
            (a, b, format!("user-{i}"))
        })
        .collect();
    // Each device is seen anonymously, then each signs in: both identifies merge the two
    // anonymous profiles into the user's, from two partitions at once.
    for round in 0..2 {
        let batch: Vec<serde_json::Value> = people
            .iter()
            .flat_map(|(a, b, user)| {
                [a, b].map(|device| match round {
                    0 => serde_json::json!({"type": "page", "name": "Pricing", "anonymousId": device,
                        "properties": {"path": "/pricing", "url": "https://example.com/pricing",
                                       "title": "Pricing"}}),
                    _ => serde_json::json!({"type": "identify", "anonymousId": device, "userId": user,
                        "traits": {"device": device}}),
                })
            })
            .collect();
        app.send_batch(touchpoint_tests::WEB_KEY, batch).await;
    }
    app.wait_processed().await;
    assert_eq!(
        app.sql_number("SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL")
            .await,
        PEOPLE as i64,
        "one live profile per person"
    );
    for (a, b, user) in &people {
        let owner = |kind: &str, value: &str| {
            format!(
                "SELECT COUNT(DISTINCT profile_id) FROM identities WHERE kind = '{kind}' AND value = '{value}'"
            )
        };
        assert_eq!(app.sql_number(&owner("user_id", user)).await, 1);
        let same: i64 = app
            .sql_number(&format!(
                "SELECT COUNT(DISTINCT profile_id) FROM identities \
                 WHERE value IN ('{a}', '{b}', '{user}')"
            ))
            .await;
        assert_eq!(same, 1, "{user}'s devices and id share a profile");
    }
    // Every message is on a live profile's timeline, exactly once.
    assert_eq!(
        app.sql_number(
            "SELECT COUNT(*) FROM profile_messages pm JOIN profiles p ON p.id = pm.profile_id \
             WHERE p.merged_into IS NULL"
        )
        .await,
        (PEOPLE * 4) as i64
    );
    assert_eq!(
        app.sql_number("SELECT COUNT(*) FROM messages WHERE status <> 'blocked'")
            .await,
        (PEOPLE * 4) as i64,
        "the plan accepts every message"
    );
    assert_eq!(
        app.sql_number("SELECT COUNT(*) FROM profile_messages")
            .await,
        (PEOPLE * 4) as i64
    );
}

/// A stored message of `device` (and more) with the given Segment body.
fn segment(source: i64, id: &str, device: &str, body: serde_json::Value) -> NewMessage {
    let mut body = body;
    body["anonymousId"] = device.into();
    body["messageId"] = id.into();
    body["timestamp"] = "2026-12-01T10:00:00Z".into();
    NewMessage {
        kind: if body["type"] == "identify" {
            "identify"
        } else {
            "track"
        },
        event: body["event"].as_str().map(str::to_owned),
        user_id: body["userId"].as_str().map(str::to_owned),
        body_json: body.to_string(),
        ..message(source, id, device)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partitions_batch_that_a_merge_in_another_partition_overtook_is_redone_on_the_winner() {
    use touchpoint_core::pipeline::{Clock, SystemClock};
    use touchpoint_core::profiles::Processor;
    let url = fresh_postgres_database(&pg_admin_url()).await;
    let stores = touchpoint_core::stores::connect_with(
        &url,
        Layout {
            partitions: 2,
            profiles_per_partition: true,
        },
    )
    .await
    .unwrap();
    let pool = PgPool::connect(&url).await.unwrap();
    let source = stores.events.upsert_source("web", "wk").await.unwrap().id;
    let plan = Arc::new(
        touchpoint_core::plan::PlanHandle::load(
            &touchpoint_tests::repo_root().join("TRACKING_PLAN.md"),
        )
        .unwrap(),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let processor = |p: i32| {
        Processor::new(stores.profiles.clone(), plan.clone(), clock.clone(), 500)
            .for_partition(p, 2)
    };
    // Device a and a new device x route to partition 0, device b to partition 1.
    let (a, x, b) = (
        device_in(0, 2, "a"),
        device_in(0, 2, "x"),
        device_in(1, 2, "b"),
    );
    let identify = |traits: serde_json::Value, user: Option<&str>| {
        let mut body = serde_json::json!({"type": "identify", "traits": traits});
        if let Some(u) = user {
            body["userId"] = u.into();
        }
        body
    };
    let track = serde_json::json!({"type": "track", "event": "Viewed", "properties": {}});
    // Profile A holds device a and user u; profile B holds device b and the email.
    stores
        .events
        .append(
            &[
                segment(source, "m1", &a, identify(serde_json::json!({}), Some("u"))),
                segment(
                    source,
                    "m2",
                    &b,
                    identify(serde_json::json!({"email": "e@example.com"}), None),
                ),
            ],
            &[],
        )
        .await
        .unwrap();
    let (mut first, mut second) = (processor(0), processor(1));
    assert_eq!(first.step().await.unwrap(), 1);
    assert_eq!(second.step().await.unwrap(), 1);

    // Partition 1 decides to put b's next message on profile B, and waits before writing it.
    let (paused_tx, paused) = tokio::sync::oneshot::channel::<()>();
    let (resume, resume_rx) = tokio::sync::oneshot::channel::<()>();
    let hook = {
        let once = std::sync::Mutex::new(Some((paused_tx, resume_rx)));
        Arc::new(move || {
            let taken = once.lock().unwrap().take();
            Box::pin(async move {
                if let Some((paused, resume)) = taken {
                    paused.send(()).unwrap();
                    resume.await.unwrap();
                }
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        })
    };
    stores
        .events
        .append(&[segment(source, "m3", &b, track.clone())], &[])
        .await
        .unwrap();
    let held = tokio::spawn(async move {
        let mut second = second.with_pause_before_write(hook);
        second.step().await
    });
    paused.await.unwrap();
    // Meanwhile partition 0 sees user u and the email together: B is merged into A.
    stores
        .events
        .append(
            &[segment(
                source,
                "m4",
                &x,
                identify(serde_json::json!({"email": "e@example.com"}), Some("u")),
            )],
            &[],
        )
        .await
        .unwrap();
    assert_eq!(first.step().await.unwrap(), 1);
    assert_eq!(
        number(
            &pool,
            "SELECT COUNT(*) FROM profiles WHERE merged_into IS NULL"
        )
        .await,
        1
    );
    resume.send(()).unwrap();
    assert_eq!(
        held.await.unwrap().unwrap(),
        1,
        "the held batch still lands"
    );

    // Its message went to the profile that won, not to the one merged away under it.
    let stranded = number(
        &pool,
        "SELECT COUNT(*) FROM profile_messages pm JOIN profiles p ON p.id = pm.profile_id \
         WHERE p.merged_into IS NOT NULL",
    )
    .await;
    assert_eq!(stranded, 0, "no message is left on a merged profile");
    let linked = number(&pool, "SELECT COUNT(*) FROM profile_messages").await;
    assert_eq!(linked, 4);
}
