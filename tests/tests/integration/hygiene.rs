//! Admin and edge hygiene against the real server: admin tokens are long and never taken from the
//! URL (but for the SSE stream), every route has a body limit and a timeout, write keys are rate
//! limited with 429 + Retry-After, and admin pages carry a Content-Security-Policy and refuse
//! framing. (The edge worker's CORS allow-list is checked in `edge.rs`, in workerd.)

use serde_json::{Value, json};
use std::time::Duration;
use touchpoint_core::{Application, Config};
use touchpoint_tests::{
    ADMIN_TOKEN, Db, SERVER_KEY, TestApp, WEB_KEY, fresh_database, spawn_app, spawn_app_with,
    test_config,
};

crate::on_both_stores!(
    a_write_key_over_its_rate_limit_is_answered_429_with_retry_after,
    an_admin_token_in_the_query_string_is_refused_except_on_the_debugger_stream,
    an_oversized_dev_sink_body_is_refused_413_before_it_is_read_to_the_end,
    a_badly_framed_chunked_body_is_a_bad_request_and_not_too_large,
    bad_query_strings_path_parameters_and_json_bodies_on_admin_routes_are_answered_in_json,
    bodies_over_the_global_limit_are_refused_on_every_non_ingest_route,
    a_request_that_outlasts_the_timeout_gets_408_while_the_debugger_stream_stays_open,
    admin_pages_carry_a_content_security_policy_and_refuse_framing,
    unknown_paths_and_wrong_methods_are_answered_in_json,
);

fn mid(name: &str) -> String {
    format!("hygiene-{name}-{}", uuid::Uuid::new_v4().simple())
}

fn track(id: &str) -> Value {
    json!({"type": "track", "messageId": id, "anonymousId": "hygiene-anon", "event": "feature_toggled",
           "properties": {"feature_name": "dark_mode", "new_status": true}})
}

async fn a_write_key_over_its_rate_limit_is_answered_429_with_retry_after(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    // One message a second with bursts of three: the first batch of three empties the allowance,
    // and a second batch of three cannot be accepted for about three seconds.
    config.rate_limit_per_second = 1;
    config.rate_limit_burst = 3;
    let app = spawn_app_with(config, tmp).await;

    let first: Vec<String> = (0..3).map(|i| mid(&format!("rate-ok-{i}"))).collect();
    let batch =
        |ids: &[String]| json!({"batch": ids.iter().map(|id| track(id)).collect::<Vec<_>>()});
    let r = app.post("/v1/batch", WEB_KEY, &batch(&first)).await;
    assert_eq!(r.status(), 200, "{:?}", r.text().await);

    let refused: Vec<String> = (0..3).map(|i| mid(&format!("rate-429-{i}"))).collect();
    let r = app
        .client
        .post(format!("{}/v1/batch", app.address))
        .basic_auth(WEB_KEY, Some(""))
        .header("origin", "https://www.example.com")
        .json(&batch(&refused))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status(), 429);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .expect("ascii")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=3).contains(&retry_after), "Retry-After {retry_after}");
    // Browsers may read the 429 and its Retry-After from any origin, without credentials.
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    assert!(
        r.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(
        r.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .to_ascii_lowercase()
            .contains("retry-after")
    );
    let body: Value = r.json().await.expect("JSON error");
    assert_eq!(body["code"], "rate_limited", "{body}");
    assert_eq!(body["success"], false);

    // A single message is refused too; another write key has its own allowance.
    let single = app
        .post("/v1/track", WEB_KEY, &track(&mid("rate-single")))
        .await;
    assert_eq!(single.status(), 429);
    let other = mid("rate-other-key");
    let r = app.post("/v1/track", SERVER_KEY, &track(&other)).await;
    assert_eq!(r.status(), 200);

    for id in &first {
        assert_eq!(app.stored(id).await.len(), 1, "{id} stored");
    }
    for id in &refused {
        assert!(app.stored(id).await.is_empty(), "{id} refused, not stored");
    }
    assert_eq!(app.stored(&other).await.len(), 1);
    let metrics = app.metrics().await;
    assert!(
        metrics.contains("touchpoint_messages_rate_limited_total{source=\"web\"} 4"),
        "{metrics}"
    );
}

async fn an_admin_token_in_the_query_string_is_refused_except_on_the_debugger_stream(db: Db) {
    let app = spawn_app(db).await;
    let get = |path: String| app.client.get(format!("{}{path}", app.address)).send();
    for path in [
        "/admin/sources",
        "/admin/plan",
        "/admin/pipeline",
        "/admin/messages/nothing",
        "/admin/profiles?kind=user_id&value=u",
        "/dev/webhook-sink",
    ] {
        let sep = if path.contains('?') { '&' } else { '?' };
        let r = get(format!("{path}{sep}token={ADMIN_TOKEN}"))
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with ?token=");
    }
    let (status, _) = app.admin_get("/admin/sources").await;
    assert_eq!(status, 200, "the Authorization header works");

    // EventSource cannot set headers: the stream alone takes the token from the URL.
    let stream = get(format!("/debugger/stream?source=web&token={ADMIN_TOKEN}"))
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    assert!(
        stream.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    drop(stream);
    let wrong = get("/debugger/stream?token=not-the-admin-token".into())
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let none = get("/debugger/stream".into()).await.unwrap();
    assert_eq!(none.status(), 401);
    let encoded = get(format!(
        "/debugger/stream?token={}",
        ADMIN_TOKEN.replace('-', "%2D")
    ))
    .await
    .unwrap();
    assert_eq!(encoded.status(), 200, "the query token is percent-decoded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_or_short_admin_tokens_stop_the_server_at_start() {
    let (url, _tmp) = fresh_database(Db::Sqlite).await;
    for token in ["", "   ", "short", "fifteen-chars!!"] {
        let mut config = test_config(url.clone());
        config.admin_token = token.to_owned().into();
        let err = Application::build(config)
            .await
            .err()
            .unwrap_or_else(|| panic!("{token:?} accepted"));
        let text = format!("{err:#}");
        assert!(
            text.contains("TOUCHPOINT_ADMIN_TOKEN") && text.contains("at least 16"),
            "{text}"
        );
    }
    // The development default is long enough, but still refused off loopback.
    let mut config = test_config(url.clone());
    config.admin_token = Config::default().admin_token;
    config.bind = "0.0.0.0:0".parse().unwrap();
    let err = Application::build(config).await.err().expect("refused");
    assert!(
        format!("{err:#}").contains("default admin token"),
        "{err:#}"
    );
}

/// Sends a raw HTTP/1.1 request head and body chunks without ever finishing the body, and returns
/// the status code the server answers with (within 10 s) — proof it answered without waiting for
/// the rest.
async fn status_of_unfinished_request(app: &TestApp, head: String, chunks: Vec<Vec<u8>>) -> u16 {
    app.unfinished_request(head, chunks).await.0
}

async fn an_oversized_dev_sink_body_is_refused_413_before_it_is_read_to_the_end(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.dev_sink = true;
    let app = spawn_app_with(config, tmp).await;
    // Chunked, no Content-Length: the sink only learns the size by reading. 9 × 64 KB passes its
    // 512 KB limit (but not the global 1 MB); the terminating chunk is never sent.
    let chunk = vec![b' '; 64 * 1024];
    let chunks = (0..9)
        .map(|_| {
            let mut c = format!("{:x}\r\n", chunk.len()).into_bytes();
            c.extend_from_slice(&chunk);
            c.extend_from_slice(b"\r\n");
            c
        })
        .collect();
    let head =
        "POST /dev/webhook-sink HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
                transfer-encoding: chunked\r\n\r\n"
            .to_owned();
    let (status, body) = app.unfinished_request(head, chunks).await;
    assert_eq!(status, 413);
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["code"], "too_large", "{body}");

    // With a declared size, it is refused from the header alone: no byte of the body is sent (a
    // client still writing 600 KB could see the connection closed under it, which is not the point).
    let head = format!(
        "POST /dev/webhook-sink HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n",
        600 * 1024
    );
    assert_eq!(
        status_of_unfinished_request(&app, head, Vec::new()).await,
        413
    );
}

async fn a_badly_framed_chunked_body_is_a_bad_request_and_not_too_large(db: Db) {
    use base64::Engine;
    let app = spawn_app(db).await;
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("{WEB_KEY}:"));
    let head = format!(
        "POST /v1/track HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         authorization: Basic {auth}\r\ntransfer-encoding: chunked\r\n\r\n"
    );
    // One good chunk, then a chunk size that is not hexadecimal.
    let chunks = vec![b"5\r\n{\"typ\r\nzz\r\n".to_vec()];
    let (status, body) = app.unfinished_request(head, chunks).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("\"unreadable_body\""), "{body}");
}

async fn bad_query_strings_path_parameters_and_json_bodies_on_admin_routes_are_answered_in_json(
    db: Db,
) {
    let app = spawn_app(db).await;
    let (status, body) = app.admin_get("/admin/sources/web/messages?limit=abc").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_query")),
        "{body}"
    );
    let (status, body) = app
        .admin_post("/admin/quarantine/not-a-number/replay")
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (400, Some("bad_path")),
        "{body}"
    );
    let r = reqwest::Client::new()
        .post(format!("{}/admin/sources", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let body: Value = r.json().await.expect("a JSON error body");
    assert_eq!(body["code"], "bad_json", "{body}");
}

async fn bodies_over_the_global_limit_are_refused_on_every_non_ingest_route(db: Db) {
    let app = spawn_app(db).await;
    // The declared size alone decides, so the body is never sent: a client still writing 1 MB
    // when the server answers and closes would see a broken pipe instead of the status.
    let declared = 1024 * 1024 + 64;
    for (path, auth) in [
        (
            "/admin/sources",
            format!("authorization: Bearer {ADMIN_TOKEN}\r\n"),
        ),
        (
            "/admin/audiences/preview",
            format!("authorization: Bearer {ADMIN_TOKEN}\r\n"),
        ),
        (
            "/admin/plan/reload",
            format!("authorization: Bearer {ADMIN_TOKEN}\r\n"),
        ),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{auth}content-length: {declared}\r\n\r\n"
        );
        let (status, body) = app.unfinished_request(head, Vec::new()).await;
        assert_eq!(status, 413, "{path}");
        let body: Value = serde_json::from_str(&body).expect("JSON error");
        assert_eq!(body["code"], "too_large", "{path}: {body}");
    }
    // Ingest keeps its own, smaller limits with JSON errors.
    let head = format!(
        "POST /v1/batch HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n\
         authorization: Basic {}\r\ncontent-length: {declared}\r\n\r\n",
        touchpoint_tests::basic_credentials(WEB_KEY)
    );
    let (status, body) = app.unfinished_request(head, Vec::new()).await;
    assert_eq!(status, 413, "{body}");
    let body: Value = serde_json::from_str(&body).expect("JSON error");
    assert_eq!(body["code"], "too_large", "{body}");
}

async fn a_request_that_outlasts_the_timeout_gets_408_while_the_debugger_stream_stays_open(db: Db) {
    let timeout = Duration::from_millis(300);
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.request_timeout = timeout;
    let app = spawn_app_with(config, tmp).await;

    // A client that announces 100 bytes and sends 10: answered 408 once the timeout passes.
    for (path, auth) in [
        (
            "/admin/sources",
            format!("authorization: Bearer {ADMIN_TOKEN}\r\n"),
        ),
        ("/v1/batch", String::new()),
    ] {
        let head = format!(
            "POST {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n{auth}content-length: 100\r\n\r\n"
        );
        let (status, body) = app
            .unfinished_request(head, vec![b"{\"name\":\"".to_vec()])
            .await;
        assert_eq!(status, 408, "{path}");
        let body: Value = serde_json::from_str(&body).expect("JSON error");
        assert!(
            ["timeout", "request_timeout"].contains(&body["code"].as_str().unwrap_or_default()),
            "{path}: {body}"
        );
    }

    // The SSE stream is exempt: it keeps delivering well past the timeout.
    let mut stream = app
        .client
        .get(format!("{}/debugger/stream?source=web", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let opened = tokio::time::Instant::now();
    let mut seen = String::new();
    let mut delivered = 0;
    // Bounded: at most 200 messages, each awaited for at most 5 s. Paced, so the stream's age
    // rather than ingestion's speed decides when the loop has seen enough.
    for i in 0..200 {
        tokio::time::sleep(timeout / 10).await;
        let id = mid(&format!("stream-{i}"));
        let r = app.post("/v1/track", WEB_KEY, &track(&id)).await;
        assert_eq!(r.status(), 200);
        while !seen.contains(&id) {
            match tokio::time::timeout(Duration::from_secs(5), stream.chunk()).await {
                Ok(Ok(Some(chunk))) => seen.push_str(&String::from_utf8_lossy(&chunk)),
                other => panic!("the stream ended after {:?} ({other:?})", opened.elapsed()),
            }
        }
        delivered += 1;
        if opened.elapsed() > timeout * 4 {
            break;
        }
    }
    assert!(
        opened.elapsed() > timeout * 4,
        "the stream outlived the request timeout ({delivered} messages)"
    );
}

async fn admin_pages_carry_a_content_security_policy_and_refuse_framing(db: Db) {
    let app = spawn_app(db).await;
    for path in ["/debugger", "/profiles", "/audiences", "/destinations"] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
        let h = r.headers().clone();
        let csp = h["content-security-policy"].to_str().unwrap().to_owned();
        assert!(csp.starts_with("default-src 'self';"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(h["x-frame-options"], "DENY", "{path}");
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        // Exactly the page's own inline scripts and styles are allowed, by hash.
        let html = r.text().await.unwrap();
        assert_eq!(
            csp,
            touchpoint_core::hardening::content_security_policy(&html),
            "{path}"
        );
    }
    // The shared script and stylesheet are same-origin files, as the policy requires.
    for asset in ["/assets/admin.js", "/assets/admin.css"] {
        let r = app
            .client
            .get(format!("{}{asset}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{asset}");
        assert_eq!(r.headers()["x-content-type-options"], "nosniff");
    }
    // The demo page is not an admin page: it runs the public SDK snippet and gets no admin policy.
    let demo = app
        .client
        .get(format!("{}/demo", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(demo.status(), 200);
    assert!(demo.headers().get("content-security-policy").is_none());
}

async fn unknown_paths_and_wrong_methods_are_answered_in_json(db: Db) {
    let app = spawn_app(db).await;
    let r = app
        .client
        .get(format!("{}/v1/nothing-here", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found", "{body}");
    let r = app
        .client
        .get(format!("{}/v1/track", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    let allow = r
        .headers()
        .get("allow")
        .map(|v| v.to_str().unwrap().to_owned());
    assert!(
        allow.as_deref().is_some_and(|a| a.contains("POST")),
        "{allow:?}"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "method_not_allowed", "{body}");
    // Admin errors carry a code too.
    let r = app
        .client
        .get(format!("{}/admin/audiences/no_such_audience", app.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["code"], "not_found", "{body}");
}
