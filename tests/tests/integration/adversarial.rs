//! Property-based: random and adversarial messages and batch envelopes sent over HTTP to a real
//! server on each store. Whatever arrives, the server answers only documented statuses, stores no
//! more than a bounded multiple of what was sent, and every pipeline stage reaches the log head
//! afterwards with nothing quarantined.

use proptest::prelude::*;
use proptest::test_runner::{
    Config as ProptestConfig, RngAlgorithm, TestCaseError, TestRng, TestRunner,
};
use serde_json::{Map, Value, json};
use touchpoint_tests::{Db, SERVER_KEY, TestApp, spawn_app};

crate::on_both_stores!(random_and_hostile_input_never_bloats_stalls_or_errors);

/// Statuses intake documents: accepted, bad request, too large, unsupported media type,
/// unauthorised, rate limited.
const DOCUMENTED: [u16; 6] = [200, 400, 401, 413, 415, 429];
/// How many stored bytes one request byte may become (server stamps, findings, envelope merge
/// are all bounded per item; a tiny item is mostly stamps).
const STORED_PER_REQUEST_BYTE: i64 = 16;
/// Requests per store.
const CASES: u32 = 48;
/// Core's batch limit in bytes.
const MAX_BATCH_BYTES: usize = 500 * 1024;

/// Strings a client or attacker might send: ordinary, empty, NUL, long, unicode, id-like.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z_]{1,12}",
        Just(String::new()),
        Just("a\u{0}b".to_owned()),
        (1usize..40_000).prop_map(|n| "x".repeat(n)),
        "\\PC{0,20}",
        Just("null".to_owned()),
        Just("9999-12-31T23:59:59Z".to_owned()),
        Just("0001-01-01T00:00:00Z".to_owned()),
        Just("+12025-01-01T00:00:00Z".to_owned()),
    ]
}

/// Any JSON, nested a few levels, with hostile leaves.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        prop_oneof![Just(1e308), Just(-1e308), Just(9.1e15), any::<f64>()]
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(|f| json!(f)),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(text(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn object() -> impl Strategy<Value = Map<String, Value>> {
    prop::collection::btree_map(text(), json_value(), 0..6).prop_map(|m| m.into_iter().collect())
}

/// A message: mostly well-formed Segment fields with hostile values, sometimes anything at all.
fn message() -> impl Strategy<Value = Value> {
    let typed = (
        prop_oneof![
            Just(json!("track")),
            Just(json!("identify")),
            Just(json!("page")),
            Just(json!("group")),
            Just(json!("alias")),
            Just(json!("Screen")),
            json_value(),
        ],
        prop_oneof![text().prop_map(Value::String), json_value()],
        text(),
        object(),
        object(),
        prop::collection::vec((text(), text()), 0..30),
        prop::option::of(text()),
        prop::option::of(text()),
    )
        .prop_map(
            |(kind, user, event, properties, traits, external, timestamp, sent_at)| {
                let external: Vec<Value> = external
                    .into_iter()
                    .map(|(t, id)| json!({"type": t, "id": id, "collection": "users"}))
                    .collect();
                json!({
                    "type": kind, "userId": user, "anonymousId": "anon-1", "event": event,
                    "groupId": "g-1", "previousId": "anon-0",
                    "properties": properties, "traits": traits,
                    "context": {"traits": traits, "externalIds": external},
                    "timestamp": timestamp, "sentAt": sent_at,
                })
            },
        );
    prop_oneof![4 => typed, 1 => json_value()]
}

/// One request: a batch with an envelope, or a single message, or garbage bytes.
#[derive(Debug, Clone)]
enum Request {
    Batch(Value),
    Single(&'static str, Value),
    Raw(Vec<u8>),
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        4 => (prop::collection::vec(message(), 1..40), prop::option::of(object()),
              prop::option::of(object()), prop::option::of(text()))
            .prop_map(|(batch, context, integrations, sent_at)| {
                let mut envelope = json!({"batch": batch});
                if let Some(c) = context { envelope["context"] = Value::Object(c); }
                if let Some(i) = integrations { envelope["integrations"] = Value::Object(i); }
                if let Some(s) = sent_at { envelope["sentAt"] = Value::String(s); }
                Request::Batch(envelope)
            }),
        2 => (prop::sample::select(vec!["track", "identify", "page", "group", "alias", "screen"]),
              message())
            .prop_map(|(kind, m)| Request::Single(kind, m)),
        1 => prop::collection::vec(any::<u8>(), 0..2000).prop_map(Request::Raw),
    ]
}

async fn stored_bytes(app: &TestApp) -> i64 {
    app.sql_number(
        "SELECT CAST(COALESCE(SUM(LENGTH(CAST(body AS TEXT)) + LENGTH(CAST(violations AS TEXT))), 0) AS BIGINT) FROM messages",
    )
    .await
        + app
            .sql_number(
                "SELECT CAST(COALESCE(SUM(LENGTH(body) + LENGTH(reason)), 0) AS BIGINT) FROM rejected_messages",
            )
            .await
}

async fn send(app: &TestApp, request: &Request) -> (u16, usize) {
    let (path, bytes) = match request {
        Request::Batch(v) => ("/v1/batch".to_owned(), v.to_string().into_bytes()),
        Request::Single(kind, v) => (format!("/v1/{kind}"), v.to_string().into_bytes()),
        Request::Raw(b) => ("/v1/batch".to_owned(), b.clone()),
    };
    let n = bytes.len();
    let sent = app
        .client
        .post(format!("{}{path}", app.address))
        .basic_auth(SERVER_KEY, Some(""))
        .header("content-type", "application/json")
        .body(bytes)
        .send()
        .await;
    match sent {
        Ok(r) => (r.status().as_u16(), n),
        // Past the batch limit the server answers 413 without reading the rest of the body and
        // closes the connection; the client may see the closed pipe before the answer.
        Err(e) if n > MAX_BATCH_BYTES => {
            assert!(e.is_request(), "{e}");
            (413, n)
        }
        Err(e) => panic!("request of {n} bytes failed: {e}"),
    }
}

async fn random_and_hostile_input_never_bloats_stalls_or_errors(db: Db) {
    let app = spawn_app(db).await;
    let handle = tokio::runtime::Handle::current();
    let config = ProptestConfig {
        cases: CASES,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    // CI explores the same cases on every run (a landing run never meets a new input by chance);
    // TOUCHPOINT_FUZZ_RANDOM=1 explores new ones.
    let mut runner = if std::env::var_os("TOUCHPOINT_FUZZ_RANDOM").is_some() {
        TestRunner::new(config)
    } else {
        TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha))
    };
    let result = tokio::task::block_in_place(|| {
        runner.run(&request(), |req| {
            handle.block_on(async {
                let before = stored_bytes(&app).await;
                let (status, sent) = send(&app, &req).await;
                let after = stored_bytes(&app).await;
                if !DOCUMENTED.contains(&status) {
                    return Err(TestCaseError::fail(format!("undocumented status {status}")));
                }
                let grown = after - before;
                if grown > STORED_PER_REQUEST_BYTE * sent as i64 + 4096 {
                    return Err(TestCaseError::fail(format!(
                        "{sent} request bytes stored {grown} bytes"
                    )));
                }
                Ok(())
            })
        })
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    app.wait_processed().await;
    // Every stage reached the head, nothing needed quarantine, and the server is ready.
    for _ in 0..400 {
        let (_, p) = app.admin_get("/admin/pipeline").await;
        if p["audiencesCursor"].as_i64() >= p["logHead"].as_i64() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let (_, p) = app.admin_get("/admin/pipeline").await;
    assert!(
        p["audiencesCursor"].as_i64() >= p["logHead"].as_i64(),
        "{p}"
    );
    let (_, q) = app.admin_get("/admin/quarantine").await;
    assert_eq!(q["entries"], json!([]), "{q}");
    let (ready, _) = app.get_text("/readyz").await;
    assert_eq!(ready, 200);
}
