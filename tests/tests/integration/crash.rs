//! Kill -9 under load: every acknowledged messageId is in the database after restart.

use serde_json::json;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use touchpoint_tests::{WEB_KEY, free_port, start_server_process, wait_ready};

fn start_server(db_url: &str, port: u16) -> tokio::process::Child {
    start_server_process(env!("CARGO_BIN_EXE_tp-server"), db_url, port)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_message_survives_a_kill_9_mid_load() {
    let dir = tempfile::tempdir().unwrap();
    let db_url = format!("sqlite://{}", dir.path().join("crash.db").display());
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut server = start_server(&db_url, port);
    wait_ready(&client, &base).await;

    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = Vec::new();
    for w in 0..16 {
        let (client, base, acked) = (client.clone(), base.clone(), acked.clone());
        workers.push(tokio::spawn(async move {
            // Bounded: at most 2,000 requests per worker, and the server dies long before.
            for i in 0..2_000 {
                let id = format!("crash-{w}-{i}");
                let sent = client
                    .post(format!("{base}/v1/track"))
                    .basic_auth(WEB_KEY, Some(""))
                    .json(&json!({"messageId": id, "anonymousId": format!("a{w}"), "event": "report_generated",
                                  "properties": {"report_type": "usage", "row_count": i}}))
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => acked.lock().unwrap().push(id),
                    Ok(_) => {}
                    Err(_) => break,
                }
            }
        }));
    }
    // Kill once the load is well under way (a count, not a time: a slow machine acks fewer per
    // second).
    touchpoint_tests::eventually(30, "a hundred messages acknowledged", async || {
        acked.lock().unwrap().len() >= 100
    })
    .await;
    server.start_kill().expect("SIGKILL");
    let _ = server.wait().await;
    for w in workers {
        let _ = tokio::time::timeout(Duration::from_secs(10), w).await;
    }
    let acked: Vec<String> = acked.lock().unwrap().clone();
    assert!(
        acked.len() > 50,
        "load ran before the kill ({} acked)",
        acked.len()
    );

    // Restart on the same file; SQLite recovers the WAL.
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = start_server(&db_url, port);
    wait_ready(&client, &base).await;
    // The log lives in the file next to the state file.
    let log = touchpoint_core::storage::sqlite_log_file(&dir.path().join("crash.db"));
    let pool = sqlx::SqlitePool::connect(&format!("sqlite://{}", log.display()))
        .await
        .unwrap();
    let stored: HashSet<String> = sqlx::query_scalar("SELECT message_id FROM messages")
        .fetch_all(&pool)
        .await
        .unwrap()
        .into_iter()
        .collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !stored.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged messages lost, e.g. {:?}",
        lost.len(),
        acked.len(),
        lost.iter().take(5).collect::<Vec<_>>()
    );
    server.start_kill().ok();
}
