//! The browser SDK (collector-wasm) served by core and driven in headless Chromium
//! (tests/browser/sdk.mjs), plus what core promises the SDK over plain HTTP: text/plain batches with
//! the write key in the body, CORS, content types and a helpful 404 when the SDK is not built.

use serde_json::json;
use std::time::Duration;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, WEB_KEY, fresh_database, repo_root, run_node_script, spawn_app,
    spawn_app_with, test_config,
};

fn sdk_dir() -> std::path::PathBuf {
    repo_root().join("collector-wasm/dist")
}

fn require_built_sdk() {
    for f in ["touchpoint.js", "touchpoint_bg.wasm", "snippet.js"] {
        assert!(
            sdk_dir().join(f).exists(),
            "collector-wasm/dist/{f} is missing: run scripts/build-sdk.sh (scripts/test.sh does)"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_text_plain_batch_with_the_write_key_in_the_body_is_stored_with_cors_headers() {
    let app = spawn_app(Db::Sqlite).await;
    let id = format!("sdk-plain-{}", uuid::Uuid::new_v4());
    let body = json!({
        "batch": [{"type": "track", "messageId": id, "anonymousId": "anon-plain",
                   "event": "feature_toggled",
                   "properties": {"feature_name": "dark_mode", "new_status": true}}],
        "sentAt": "2026-01-01T00:00:00.000Z",
        "writeKey": WEB_KEY,
    });
    let r = app
        .client
        .post(format!("{}/v1/batch", app.address))
        .header("content-type", "text/plain;charset=UTF-8")
        .header("origin", "https://www.example.com")
        .body(body.to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert_eq!(app.stored(&id).await.len(), 1);

    let pre = app
        .client
        .request(
            reqwest::Method::OPTIONS,
            format!("{}/v1/batch", app.address),
        )
        .header("origin", "https://www.example.com")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(
        pre.status().is_success(),
        "preflight answered {}",
        pre.status()
    );
    assert!(
        pre.headers()["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_files_are_served_with_their_content_types_and_a_missing_build_says_how_to_build() {
    require_built_sdk();
    let app = spawn_app(Db::Sqlite).await;
    let get = |path: &str| app.client.get(format!("{}{path}", app.address)).send();
    let wasm = get("/sdk/touchpoint_bg.wasm").await.expect("wasm");
    assert_eq!(wasm.status(), 200);
    assert_eq!(wasm.headers()["content-type"], "application/wasm");
    assert!(
        wasm.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    let bytes = wasm.bytes().await.expect("bytes");
    assert_eq!(&bytes[..4], b"\0asm");
    let js = get("/sdk/touchpoint.js").await.expect("js");
    assert!(
        js.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/javascript")
    );
    assert_eq!(js.headers()["access-control-allow-origin"], "*");
    assert_eq!(get("/sdk/../Cargo.toml").await.expect("x").status(), 404);
    let plan = get("/sdk/plan.md").await.expect("plan");
    assert!(plan.text().await.unwrap().contains("### page_viewed"));
    let demo = get("/demo").await.expect("demo").text().await.unwrap();
    assert!(demo.contains("/sdk/snippet.js"));

    let (url, tmp) = fresh_database(Db::Sqlite).await;
    let mut config = test_config(url);
    config.sdk_dir = repo_root().join("target/no-such-sdk-dir");
    let bare = spawn_app_with(config, tmp).await;
    let r = bare
        .client
        .get(format!("{}/sdk/touchpoint.js", bare.address))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 404);
    assert!(r.text().await.unwrap().contains("scripts/build-sdk.sh"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_sdk_queues_persists_retries_respects_consent_and_drops_oversized_messages() {
    require_built_sdk();
    let app = spawn_app(Db::Sqlite).await;
    run_node_script(
        "tests/browser/sdk.mjs",
        &[&app.address, WEB_KEY, ADMIN_TOKEN],
        Duration::from_secs(120),
    )
    .await;
}
