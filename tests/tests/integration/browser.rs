//! The live debugger page in a real headless Chromium (driven by playwright-core from node): it goes
//! live, shows new messages with the plan's verdict, and renders hostile payloads as inert text.

use std::time::Duration;
use touchpoint_tests::{ADMIN_TOKEN, Db, WEB_KEY, repo_root, run_node_script, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debugger_page_renders_live_messages_escaped_in_headless_chromium() {
    let app = spawn_app(Db::Sqlite).await;
    let root = repo_root();
    let screenshot = root.join("target/screenshots/debugger.png");
    let _ = std::fs::remove_file(&screenshot);
    let shot = screenshot.display().to_string();
    let stdout = run_node_script(
        "tests/browser/debugger.mjs",
        &[&app.address, WEB_KEY, ADMIN_TOKEN, &shot],
        Duration::from_secs(90),
    )
    .await;
    let size = std::fs::metadata(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stdout}", screenshot.display()))
        .len();
    assert!(size > 0, "the screenshot {} is empty", screenshot.display());
}
