//! `hello-axum`: the hello-world baseline of `scripts/bench-ingest.sh`.
//!
//! A bare axum 0.8 server on `127.0.0.1:PORT` (first argument, default 8090) whose `POST /v1/track`
//! and `POST /v1/batch` parse the JSON body into a `serde_json::Value` and answer
//! `{"success":true}` — no auth, no validation, no storage. It is what the ingest benchmark divides
//! by, so it runs on the same tokio multi-thread runtime (one worker per core) as `touchpoint`.

use axum::Json;
use axum::Router;
use axum::routing::post;
use serde_json::{Value, json};
use std::net::{Ipv4Addr, SocketAddr};

async fn ack(Json(body): Json<Value>) -> Json<Value> {
    // Keep the parsed body alive until here so the parse cannot be optimised away.
    std::hint::black_box(&body);
    Json(json!({"success": true}))
}

fn main() -> anyhow::Result<()> {
    let port: u16 = match std::env::args().nth(1) {
        Some(p) => p
            .parse()
            .map_err(|e| anyhow::anyhow!("bad port {p:?}: {e}"))?,
        None => 8090,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/v1/track", post(ack))
            .route("/v1/batch", post(ack));
        let listener =
            tokio::net::TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))).await?;
        eprintln!("hello-axum listening on {}", listener.local_addr()?);
        axum::serve(listener, app).await?;
        Ok(())
    })
}
