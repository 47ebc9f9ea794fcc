//! Segment's and RudderStack's client libraries, unchanged, against Touchpoint. The browser
//! libraries run for real in headless Chromium from their npm packages: analytics.js 2.0
//! (@segment/analytics-next: npm build and the standard snippet's standalone build, default and
//! batching delivery, straight to core and through the edge worker in workerd) and RudderStack's
//! JavaScript SDK v3 (XHR, batch and beacon delivery). The mobile libraries (analytics-swift,
//! analytics-kotlin, analytics-react-native) cannot run here: their requests are replayed from
//! captures written from each library's source (`tests/fixtures/segment-*-batch.json`).

use serde_json::Value;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use touchpoint_tests::{
    ADMIN_TOKEN, Db, EDGE_SECRET, TestApp, WEB_KEY, fresh_database, repo_root, run_node_script,
    spawn_app, spawn_app_with, test_config,
};

fn script_result(stdout: &str) -> Value {
    let line = stdout
        .lines()
        .last()
        .expect("the script printed its result");
    serde_json::from_str(line).expect("the result line is JSON")
}

/// The one stored row of a messageId.
async fn stored_once(app: &TestApp, message_id: &str) -> Value {
    let rows = app.stored(message_id).await;
    assert_eq!(rows.len(), 1, "{message_id} stored exactly once: {rows:?}");
    rows.into_iter().next().expect("one row")
}

fn paths(scenario: &Value) -> Vec<String> {
    scenario["requests"]
        .as_array()
        .expect("requests")
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r["method"].as_str().unwrap(),
                r["path"].as_str().unwrap()
            )
        })
        .collect()
}

crate::on_both_stores!(segment_analytics_next_works_unchanged_against_core_and_through_the_edge);

async fn segment_analytics_next_works_unchanged_against_core_and_through_the_edge(db: Db) {
    let app = spawn_app(db).await;
    let build = repo_root().join("edge-worker/build/index.js");
    assert!(
        build.exists(),
        "{} is missing: run scripts/build-edge.sh",
        build.display()
    );
    let stdout = run_node_script(
        "tests/browser/segment.mjs",
        &[&app.address, EDGE_SECRET, WEB_KEY, ADMIN_TOKEN],
        Duration::from_secs(170),
    )
    .await;
    let result = script_result(&stdout);
    assert_eq!(
        result["blocked"],
        serde_json::json!([]),
        "nothing left 127.0.0.1 (no Segment CDN, no api.segment.io)"
    );
    let site = result["site"].as_str().unwrap();
    let settings = format!("GET /v1/projects/{WEB_KEY}/settings");
    let edge_settings = format!("GET /px/v1/projects/{WEB_KEY}/settings");
    let expected: [(&str, &str, Vec<&str>); 5] = [
        (
            "npmDefault",
            &app.address,
            vec![&settings, "POST /v1/p", "POST /v1/i", "POST /v1/t"],
        ),
        ("npmBatching", &app.address, vec![&settings, "POST /v1/b"]),
        (
            "snippet",
            &app.address,
            vec![&settings, "POST /v1/p", "POST /v1/i", "POST /v1/t"],
        ),
        (
            "edgeDefault",
            site,
            vec![
                &edge_settings,
                "POST /px/v1/p",
                "POST /px/v1/i",
                "POST /px/v1/t",
            ],
        ),
        ("edgeBatching", site, vec![&edge_settings, "POST /px/v1/b"]),
    ];
    for (name, origin, want) in expected {
        let scenario = &result["scenarios"][name];
        let got = paths(scenario);
        for w in &want {
            assert!(got.iter().any(|g| g == w), "{name}: {w} in {got:?}");
        }
        // Nothing else than settings and the delivery strategy's endpoints.
        assert!(
            got.iter()
                .all(|g| want.contains(&g.as_str()) || g.ends_with("/analytics.min.js")),
            "{name}: only {want:?}, got {got:?}"
        );
        for r in scenario["requests"].as_array().unwrap() {
            if r["method"] == "GET" {
                // The settings came from Touchpoint: core, or the edge in front of it (the
                // snippet's analytics.min.js comes from the site).
                if r["path"].as_str().unwrap().ends_with("/settings") {
                    assert_eq!(r["origin"], origin, "{name}: settings from {origin}: {r}");
                }
                continue;
            }
            assert_eq!(r["origin"], origin, "{name}: {r}");
            // analytics.js posts text/plain (no JSON content type) with the write key in the body
            // and, since 1.7x, Basic auth too.
            assert_eq!(r["contentType"], "text/plain", "{name}: {r}");
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            assert_eq!(body["writeKey"], WEB_KEY, "{name}: writeKey in the body");
            if r["path"].as_str().unwrap().ends_with("/b") {
                assert_eq!(body["batch"].as_array().unwrap().len(), 3, "{name}: {body}");
                assert!(body["sentAt"].is_string());
            }
        }
        assert_eq!(
            scenario["errors"],
            serde_json::json!([]),
            "{name}: page errors"
        );
        let user = scenario["userId"].as_str().unwrap();
        for e in scenario["events"].as_array().unwrap() {
            let row = stored_once(&app, e["messageId"].as_str().unwrap()).await;
            assert_eq!(row["kind"], e["type"], "{name}: {row}");
            assert_eq!(
                row["status"], "accepted",
                "{name}: conforms to the plan: {row}"
            );
            let body = &row["body"];
            assert_eq!(body["context"]["library"]["name"], "analytics.js");
            assert!(body["anonymousId"].as_str().is_some_and(|a| !a.is_empty()));
            if e["type"] != "page" {
                assert_eq!(body["userId"], user, "{name}: {body}");
            }
            let through_edge = name.starts_with("edge");
            assert_eq!(
                body["context"]["edge"].is_object(),
                through_edge,
                "{name}: the edge's enrichment iff it went through the edge: {body}"
            );
        }
        let track = scenario["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "track")
            .unwrap();
        let row = stored_once(&app, track["messageId"].as_str().unwrap()).await;
        assert_eq!(row["body"]["event"], "trial_started");
        assert_eq!(row["body"]["properties"]["trial_days"], 14);
    }
}

crate::on_both_stores!(rudderstacks_javascript_sdk_works_unchanged_against_core);

async fn rudderstacks_javascript_sdk_works_unchanged_against_core(db: Db) {
    let app = spawn_app(db).await;
    let stdout = run_node_script(
        "tests/browser/rudderstack.mjs",
        &[&app.address, WEB_KEY, ADMIN_TOKEN],
        Duration::from_secs(150),
    )
    .await;
    let result = script_result(&stdout);
    assert_eq!(
        result["blocked"],
        serde_json::json!([]),
        "nothing left 127.0.0.1"
    );
    let expected: [(&str, Vec<&str>); 3] = [
        (
            "xhr",
            vec![
                "GET /sourceConfig/",
                "POST /v1/page",
                "POST /v1/identify",
                "POST /v1/track",
            ],
        ),
        ("batch", vec!["GET /sourceConfig/", "POST /v1/batch"]),
        (
            "beacon",
            vec!["GET /sourceConfig/", "POST /beacon/v1/batch"],
        ),
    ];
    for (name, want) in expected {
        let scenario = &result["scenarios"][name];
        let got = paths(scenario);
        for w in &want {
            assert!(got.iter().any(|g| g == w), "{name}: {w} in {got:?}");
        }
        for r in scenario["requests"].as_array().unwrap() {
            if r["path"] == "/sourceConfig/" {
                let query = r["query"].as_str().unwrap();
                assert!(query.contains(&format!("writeKey={WEB_KEY}")), "{r}");
            }
        }
        assert_eq!(
            scenario["errors"],
            serde_json::json!([]),
            "{name}: page errors"
        );
        let user = scenario["userId"].as_str().unwrap();
        for e in scenario["events"].as_array().unwrap() {
            let row = stored_once(&app, e["messageId"].as_str().unwrap()).await;
            assert_eq!(row["kind"], e["type"], "{name}: {row}");
            // RudderStack's page calls carry properties the plan does not list (dropped, flagged).
            let ok = if e["type"] == "page" {
                ["accepted", "flagged"].contains(&row["status"].as_str().unwrap())
            } else {
                row["status"] == "accepted"
            };
            assert!(ok, "{name}: {row}");
            let body = &row["body"];
            assert_eq!(
                body["context"]["library"]["name"],
                "RudderLabs JavaScript SDK"
            );
            if e["type"] != "page" {
                assert_eq!(body["userId"], user, "{name}: {body}");
            }
        }
    }
}

/// Compresses with the system `gzip`, as analytics-kotlin's GZIPOutputStream does.
async fn gzip(data: &[u8]) -> Vec<u8> {
    let mut child = tokio::process::Command::new("gzip")
        .arg("-c")
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

/// A capture's text with its placeholders filled in.
fn fill(text: &str, vars: &[(&str, String)]) -> String {
    vars.iter().fold(text.to_owned(), |t, (k, v)| {
        t.replace(&format!("{{{k}}}"), v)
    })
}

crate::on_both_stores!(segments_mobile_libraries_requests_replayed_from_their_source_are_stored);

async fn segments_mobile_libraries_requests_replayed_from_their_source_are_stored(db: Db) {
    let app = spawn_app(db).await;
    let host = app.address.trim_start_matches("http://").to_owned();
    for (file, library) in [
        ("segment-swift-batch.json", "analytics-swift"),
        ("segment-kotlin-batch.json", "analytics-kotlin"),
        ("segment-react-native-batch.json", "analytics-react-native"),
    ] {
        let path = repo_root().join("tests/fixtures").join(file);
        let capture: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(capture["library"], library);

        // The settings call, as configured in the README (cdnHost / cdnProxy = "{host}/v1"); the
        // libraries prefix https://, this test server is plain HTTP.
        let vars = vec![
            ("cdnHost", format!("{host}/v1")),
            ("cdnProxy", format!("{host}/v1")),
            ("apiHost", format!("{host}/v1")),
            ("proxy", format!("{host}/v1")),
            ("writeKey", WEB_KEY.to_owned()),
        ];
        let settings = &capture["settings"];
        let url = fill(settings["url"].as_str().unwrap(), &vars).replace("https://", "http://");
        let mut req = app.client.get(&url);
        for (k, v) in settings["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 200, "{library}: GET {url}");
        let doc: Value = resp.json().await.unwrap();
        // What each library reads: an object per top-level key (Kotlin's Settings class, Swift's
        // Settings struct) and integrations["Segment.io"].apiHost without a scheme, which
        // Kotlin and React Native then use as `https://{apiHost}/b`.
        for key in [
            "integrations",
            "plan",
            "edgeFunction",
            "middlewareSettings",
            "metrics",
        ] {
            assert!(doc[key].is_object(), "{library}: {key} in {doc}");
        }
        let api_host = doc["integrations"]["Segment.io"]["apiHost"]
            .as_str()
            .expect("apiHost")
            .to_owned();
        assert_eq!(api_host, format!("{host}/v1"));
        assert!(
            touchpoint_core::ingest::compat::is_plain_host(&api_host),
            "{api_host} passes analytics-react-native's validateApiHost"
        );

        // The upload, to the host the settings named.
        let upload = &capture["upload"];
        let user = format!(
            "{library}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..8]
        );
        let ids: Vec<String> = (0..3).map(|_| uuid::Uuid::new_v4().to_string()).collect();
        let mut vars = vars;
        vars.retain(|(k, _)| *k != "apiHost" && *k != "proxy");
        vars.push(("apiHost", api_host.clone()));
        vars.push(("proxy", api_host.clone()));
        vars.push(("userId", user.clone()));
        vars.push(("anonymousId", uuid::Uuid::new_v4().to_string()));
        vars.push(("timestamp", chrono::Utc::now().to_rfc3339()));
        for (i, id) in ids.iter().enumerate() {
            vars.push((["messageId:0", "messageId:1", "messageId:2"][i], id.clone()));
        }
        let body = fill(upload["body_text"].as_str().unwrap(), &vars);
        let url = fill(upload["url"].as_str().unwrap(), &vars).replace("https://", "http://");
        assert!(url.ends_with("/v1/b"), "{library}: {url}");
        let mut req = app.client.post(&url);
        for (k, v) in upload["headers"].as_object().unwrap() {
            req = req.header(k, v.as_str().unwrap());
        }
        let bytes = if upload["gzip"] == true {
            gzip(body.as_bytes()).await
        } else {
            body.into_bytes()
        };
        let resp = req.body(bytes).send().await.unwrap();
        let status = resp.status();
        let answer: Value = resp.json().await.unwrap_or(Value::Null);
        assert_eq!(status, 200, "{library}: POST {url}: {answer}");
        assert_eq!(answer["stored"], 3, "{library}: {answer}");
        for (id, kind) in ids.iter().zip(upload["expect"].as_array().unwrap()) {
            let row = stored_once(&app, id).await;
            assert_eq!(&row["kind"], kind, "{library}: {row}");
            assert_eq!(row["status"], "accepted", "{library}: {row}");
            assert_eq!(row["body"]["context"]["library"]["name"], library);
            if kind != "screen" {
                assert_eq!(row["body"]["userId"], user.as_str());
            }
        }
    }
}

crate::on_both_stores!(the_settings_document_names_touchpoint_and_the_short_paths_take_text_plain);

async fn the_settings_document_names_touchpoint_and_the_short_paths_take_text_plain(db: Db) {
    let app = spawn_app(db).await;
    let settings = format!("{}/v1/projects/{WEB_KEY}/settings", app.address);

    // Unknown write keys have no settings (analytics.js then fails to load, as with Segment).
    let r = app
        .client
        .get(format!("{}/v1/projects/wk_nobody/settings", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);

    // Behind a proxy: X-Forwarded-Host / -Proto name the public host. Any origin may read it.
    let r = app
        .client
        .get(&settings)
        .header("x-forwarded-host", "cdp.example.com")
        .header("x-forwarded-proto", "https")
        .header("origin", "https://www.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["access-control-allow-origin"], "*");
    // The host came from the request: no shared cache may hand this answer to another client.
    assert_eq!(r.headers()["cache-control"], "private, max-age=60");
    let vary: Vec<String> = r
        .headers()
        .get_all("vary")
        .iter()
        .map(|v| v.to_str().unwrap().to_ascii_lowercase())
        .collect();
    let vary = vary.join(", ");
    assert!(vary.contains("x-forwarded-host"), "{vary}");
    let doc: Value = r.json().await.unwrap();
    let seg = &doc["integrations"]["Segment.io"];
    assert_eq!(seg["apiKey"], WEB_KEY);
    assert_eq!(seg["apiHost"], "cdp.example.com/v1");
    assert_eq!(seg["protocol"], "https");
    assert_eq!(doc["plan"]["track"]["__default"]["enabled"], true);

    // analytics.js's preflight for Basic auth and its retry header passes.
    let r = app
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/t", app.address))
        .header("origin", "https://www.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type,x-retry-count",
        )
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let allowed = r.headers()["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-retry-count"] {
        assert!(allowed.contains(h), "{h} in {allowed}");
    }

    // Short paths with text/plain and the write key only in the body (no Authorization).
    let id = uuid::Uuid::new_v4().to_string();
    let body = serde_json::json!({
        "type": "track", "event": "trial_started", "messageId": id, "anonymousId": "anon-1",
        "properties": {"plan_tier": "pro", "trial_days": 7}, "writeKey": WEB_KEY,
        "sentAt": chrono::Utc::now().to_rfc3339(),
    });
    let r = app
        .client
        .post(format!("{}/v1/t", app.address))
        .header("content-type", "text/plain")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stored_once(&app, &id).await["kind"], "track");
    let batch_id = uuid::Uuid::new_v4().to_string();
    let batch = serde_json::json!({
        "writeKey": WEB_KEY, "sentAt": chrono::Utc::now().to_rfc3339(),
        "batch": [{"type": "identify", "userId": "u-1", "messageId": batch_id, "writeKey": WEB_KEY}],
    });
    let r = app
        .client
        .post(format!("{}/v1/b", app.address))
        .header("content-type", "text/plain")
        .body(batch.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(stored_once(&app, &batch_id).await["kind"], "identify");
    // A wrong short path is still a 404, and a bad write key still a 401.
    let r = app
        .client
        .post(format!("{}/v1/x", app.address))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .client
        .post(format!("{}/v1/p", app.address))
        .header("content-type", "text/plain")
        .body(r#"{"type":"page","anonymousId":"a","writeKey":"wk_nobody"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // The libraries' own telemetry is taken and dropped.
    let r = app
        .client
        .post(format!("{}/v1/m", app.address))
        .header("content-type", "text/plain")
        .body(
            r#"{"series":[{"type":"Counter","metric":"analytics_js.invoke","value":1,"tags":{}}]}"#,
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // RudderStack's config: by query or Basic auth; unknown keys 404.
    let r = app
        .client
        .get(format!(
            "{}/sourceConfig/?writeKey={WEB_KEY}&p=npm",
            app.address
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let doc: Value = r.json().await.unwrap();
    assert_eq!(doc["source"]["enabled"], true);
    assert_eq!(doc["source"]["destinations"], serde_json::json!([]));
    let r = app
        .client
        .get(format!("{}/sourceConfig", app.address))
        .basic_auth("wk_nobody", Some(""))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

crate::on_both_stores!(a_configured_public_url_wins_over_the_request_host);

async fn a_configured_public_url_wins_over_the_request_host(db: Db) {
    let (url, tmp) = fresh_database(db).await;
    let mut config = test_config(url);
    config.public_url = Some("https://cdp.example.com/tp".into());
    let app = spawn_app_with(config, tmp).await;
    let doc: Value = app
        .client
        .get(format!("{}/v1/projects/{WEB_KEY}/settings", app.address))
        .header("x-forwarded-host", "attacker.example")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        doc["integrations"]["Segment.io"]["apiHost"],
        "cdp.example.com/tp/v1"
    );
    assert_eq!(doc["integrations"]["Segment.io"]["protocol"], "https");
    assert_eq!(doc["metrics"]["host"], "cdp.example.com/tp/v1");
}
