//! A development webhook receiver inside core (`TOUCHPOINT_DEV_SINK=1`), so a fresh checkout can see
//! a real, signed delivery without any third-party account: point the webhook destination at
//! `/dev/webhook-sink`; it verifies the signature like any receiver should and keeps the last 200
//! deliveries for `GET /dev/webhook-sink` (admin token). Bodies over [`MAX_BODY_BYTES`] are refused
//! with 413 as soon as they pass the limit, before the rest is read.

use crate::admin::{Admin, AdminError};
use crate::ingest::edge;
use crate::state::AppState;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::get;
use axum::{Json, Router};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

const KEEP: usize = 200;

/// The largest delivery the sink reads: a webhook batch of 100 events fits comfortably.
pub const MAX_BODY_BYTES: usize = 512 * 1024;

/// The receiver's state.
pub struct DevSink {
    secret: Option<SecretString>,
    received: Mutex<VecDeque<Value>>,
}

impl DevSink {
    /// A sink verifying signatures with `secret` (the webhook destination's), if given.
    pub fn new(secret: Option<SecretString>) -> DevSink {
        DevSink {
            secret,
            received: Mutex::new(VecDeque::new()),
        }
    }
}

/// The sink's routes (only mounted when enabled).
pub fn routes() -> Router<AppState> {
    Router::new().route("/dev/webhook-sink", get(list).post(receive))
}

async fn receive(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, (StatusCode, Json<Value>)> {
    let Some(sink) = state.dev_sink.clone() else {
        return Err((
            StatusCode::NOT_FOUND,
            Json(json!({"error": "dev sink disabled", "code": "not_found"})),
        ));
    };
    let too_large = || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(
                json!({"error": format!("request body exceeds {MAX_BODY_BYTES} bytes"), "code": "too_large"}),
            ),
        )
    };
    if crate::hardening::declares_more_than(&headers, MAX_BODY_BYTES) {
        return Err(too_large());
    }
    let body = axum::body::to_bytes(body, MAX_BODY_BYTES)
        .await
        .map_err(|_| too_large())?;
    if let Some(secret) = &sink.secret {
        let text = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
        edge::verify(
            secret.expose_secret().as_bytes(),
            text(edge::TIMESTAMP_HEADER),
            text(edge::SIGNATURE_HEADER),
            &body,
            chrono::Utc::now().timestamp(),
            Duration::from_secs(300),
        )
        .map_err(|e| {
            (
                StatusCode::UNAUTHORIZED,
                Json(json!({"error": e.to_string(), "code": "bad_signature"})),
            )
        })?;
    }
    let value: Value = serde_json::from_slice(&body).map_err(|e| {
        (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": e.to_string(), "code": "malformed_json"})),
        )
    })?;
    let mut received = sink.received.lock().unwrap_or_else(|e| e.into_inner());
    received.push_back(json!({"receivedAt": chrono::Utc::now().to_rfc3339(), "body": value}));
    while received.len() > KEEP {
        received.pop_front();
    }
    Ok(StatusCode::NO_CONTENT)
}

async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let sink = state.dev_sink.clone().ok_or(AdminError::NotFound)?;
    let received = sink.received.lock().unwrap_or_else(|e| e.into_inner());
    Ok(Json(json!(received.iter().rev().collect::<Vec<_>>())))
}
