//! Compressed request bodies: `Content-Encoding: gzip` as Segment's analytics-python (`gzip=True`)
//! and RudderStack SDKs send it is accepted, bounded after decompression; other encodings are 415.

use serde_json::{Value, json};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use touchpoint_tests::{Db, SERVER_KEY, TestApp, spawn_app};

crate::on_both_stores!(a_gzip_batch_and_a_gzip_track_are_stored);

fn mid() -> String {
    format!("m-{}", uuid::Uuid::new_v4())
}

/// Compresses with the system `gzip` (Debian's essential gzip package), as an SDK would.
async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = tokio::process::Command::new("gzip")
        .args(["-c", "-9"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("gzip on PATH");
    let mut stdin = child.stdin.take().expect("gzip stdin");
    let data = data.to_vec();
    let feed = tokio::spawn(async move {
        stdin.write_all(&data).await.expect("write to gzip");
    });
    let out = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("gzip finished within 30 s")
        .expect("gzip ran");
    feed.await.expect("fed gzip");
    assert!(out.status.success(), "gzip failed");
    out.stdout
}

async fn post_encoded(
    app: &TestApp,
    path: &str,
    encoding: &str,
    body: Vec<u8>,
) -> (u16, Value, Duration) {
    let started = Instant::now();
    let r = app
        .client
        .post(format!("{}{path}", app.address))
        .basic_auth(SERVER_KEY, Some(""))
        .header("content-type", "application/json")
        .header("content-encoding", encoding)
        .body(body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let json = r.json().await.unwrap_or(Value::Null);
    (status, json, started.elapsed())
}

async fn a_gzip_batch_and_a_gzip_track_are_stored(db: Db) {
    let app = spawn_app(db).await;
    let (a, b) = (mid(), mid());
    let batch = json!({"batch": [
        {"type": "track", "messageId": a, "userId": "gz-1", "event": "feature_toggled",
         "properties": {"feature_name": "dark_mode", "new_status": true}},
        {"type": "identify", "messageId": b, "userId": "gz-1", "traits": {"email": "gz@example.com"}},
    ]});
    let compressed = gzip(batch.to_string().as_bytes()).await;
    let (status, body, _) = post_encoded(&app, "/v1/batch", "gzip", compressed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true);
    for (id, kind) in [(&a, "track"), (&b, "identify")] {
        let rows = app.stored(id).await;
        assert_eq!(rows.len(), 1, "{id} stored once: {rows:?}");
        assert_eq!(rows[0]["kind"], kind);
        assert_eq!(rows[0]["body"]["userId"], "gz-1");
    }
    let stored = app.stored(&a).await;
    assert_eq!(
        stored[0]["body"]["properties"]["feature_name"], "dark_mode",
        "the decompressed JSON is stored intact"
    );

    let c = mid();
    let track = json!({"messageId": c, "userId": "gz-2", "event": "feature_toggled",
                       "properties": {"feature_name": "beta", "new_status": false}});
    let compressed = gzip(track.to_string().as_bytes()).await;
    let (status, body, _) = post_encoded(&app, "/v1/track", "GZIP", compressed).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(app.stored(&c).await.len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gzip_bomb_over_the_limit_is_answered_413_without_expanding_it() {
    let app = spawn_app(Db::Sqlite).await;
    // 50 MB of JSON whitespace: ~50 KB compressed, under the 500 KB wire limit of /v1/batch, but
    // 100 times the decompressed limit.
    let mut json = b"{\"batch\":[".to_vec();
    json.resize(50 << 20, b' ');
    json.extend_from_slice(b"]}");
    let bomb = gzip(&json).await;
    drop(json);
    assert!(bomb.len() < 500 * 1024, "bomb is {} bytes", bomb.len());
    let (status, body, took) = post_encoded(&app, "/v1/batch", "gzip", bomb).await;
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["success"], false);
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains("512000")),
        "{body}"
    );
    assert!(took < Duration::from_secs(5), "refused quickly: {took:?}");

    // A single message is held to its own 32 KB limit once decompressed.
    let mut big = br#"{"userId":"u","event":"feature_toggled","properties":{"p":""#.to_vec();
    big.resize(40 * 1024, b'x');
    big.extend_from_slice(br#""}}"#);
    let compressed = gzip(&big).await;
    assert!(compressed.len() < 32 * 1024);
    let (status, body, _) = post_encoded(&app, "/v1/track", "gzip", compressed).await;
    assert_eq!(status, 413, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_gzip_is_400_and_other_encodings_are_415() {
    let app = spawn_app(Db::Sqlite).await;
    let id = mid();
    let track = json!({"messageId": id, "userId": "u", "event": "feature_toggled",
                       "properties": {"feature_name": "x", "new_status": true}});
    let plain = track.to_string().into_bytes();

    let (status, body, _) = post_encoded(&app, "/v1/track", "gzip", plain.clone()).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not valid gzip")),
        "{body}"
    );

    let mut truncated = gzip(&plain).await;
    truncated.truncate(truncated.len() - 4);
    let (status, body, _) = post_encoded(&app, "/v1/track", "gzip", truncated).await;
    assert_eq!(status, 400, "{body}");

    for encoding in ["br", "deflate", "zstd"] {
        let (status, body, _) = post_encoded(&app, "/v1/track", encoding, plain.clone()).await;
        assert_eq!(status, 415, "{encoding}: {body}");
        assert!(
            body["error"].as_str().is_some_and(|e| e.contains(encoding)),
            "{body}"
        );
        let (status, _, _) = post_encoded(&app, "/v1/batch", encoding, plain.clone()).await;
        assert_eq!(status, 415, "{encoding} on /v1/batch");
    }

    let (status, body, _) = post_encoded(&app, "/v1/track", "identity", plain).await;
    assert_eq!(status, 200, "identity is plain JSON: {body}");
    assert_eq!(app.stored(&id).await.len(), 1);
}
