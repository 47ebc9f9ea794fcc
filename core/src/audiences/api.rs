//! Audiences admin API (admin token) and the Audiences page (builder, preview, members).

use super::condition::Condition;
use super::definitions::{self, Definition};
use super::stage;
use crate::admin::{Admin, AdminError};
use crate::hardening::{JsonBody, Path, Query};
use crate::identity::ProfileId;
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Html;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

/// The audience routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/audiences", get(list).post(create))
        .route("/admin/audiences/preview", post(preview))
        .route("/admin/audiences/{id}", get(one))
        .route("/admin/audiences/{id}/members", get(members))
        .route("/admin/audience-events", get(events))
        .route("/audiences", get(|| async { Html(PAGE) }))
}

/// The Audiences page; data is rendered with `textContent`.
pub const PAGE: &str = include_str!("../../assets/audiences.html");

/// Reads a condition given as text or as a JSON tree.
pub fn condition_from(value: &Value) -> Result<Condition, AdminError> {
    match value {
        Value::String(text) => {
            Condition::parse(text).map_err(|e| AdminError::BadRequest(format!("condition {e}")))
        }
        Value::Object(_) => serde_json::from_value(value.clone())
            .map_err(|e| AdminError::BadRequest(format!("condition tree: {e}"))),
        _ => Err(AdminError::BadRequest(
            "condition must be text or a JSON condition tree".into(),
        )),
    }
}

async fn list(_: Admin, State(state): State<AppState>) -> Result<Json<Value>, AdminError> {
    let mut out = Vec::new();
    for row in state.audiences.list().await? {
        let (_, count) = state.audiences.members(&row.id, 0).await?;
        out.push(json!({"audience": row, "members": count}));
    }
    Ok(Json(json!(out)))
}

#[derive(Deserialize)]
struct NewAudience {
    id: String,
    name: Option<String>,
    description: Option<String>,
    condition: Value,
}

async fn create(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(input): JsonBody<NewAudience>,
) -> Result<(StatusCode, Json<Value>), AdminError> {
    let condition = condition_from(&input.condition)?;
    let def = Definition {
        id: input.id.trim().to_owned(),
        name: input.name.clone().unwrap_or_else(|| input.id.clone()),
        description: input.description.clone().unwrap_or_default(),
        condition,
        line: 0,
    };
    let stored = state.audiences.list().await?;
    let existing: Vec<String> = stored
        .iter()
        .map(|r| r.id.clone())
        .filter(|id| *id != def.id)
        .collect();
    let plan = state.plan.current();
    let problems = definitions::validate(std::slice::from_ref(&def), &plan.plan, &existing);
    let bad_id = !def
        .id
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase())
        || !def
            .id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if bad_id {
        return Err(AdminError::BadRequest("id must be snake_case".into()));
    }
    if let Some(p) = problems.iter().find(|p| p.error) {
        return Err(AdminError::BadRequest(p.message.clone()));
    }
    let mut all: Vec<Definition> = stage::parse_definitions(&stored)
        .into_iter()
        .filter(|d| d.id != def.id)
        .collect();
    all.push(def.clone());
    if let Some(path) = definitions::cycle_through(&all, &def.id) {
        return Err(AdminError::BadRequest(format!(
            "audience {} would depend on itself through IN AUDIENCE: {}",
            def.id,
            path.join(" → ")
        )));
    }
    let (_, on_cycle) = definitions::order_acyclic(&all);
    if on_cycle.iter().any(|d| d.id == def.id) {
        let ids: Vec<&str> = on_cycle.iter().map(|d| d.id.as_str()).collect();
        return Err(AdminError::BadRequest(format!(
            "audience {} refers to audiences on an IN AUDIENCE cycle ({}); break the cycle first",
            def.id,
            ids.join(", ")
        )));
    }
    let text = def.condition.to_string();
    let changed = state
        .audiences
        .upsert(&def.id, &def.name, &def.description, &text, "api")
        .await?;
    if changed {
        spawn_backfill(&state, def.id.clone());
    }
    Ok((
        StatusCode::CREATED,
        Json(
            json!({"id": def.id, "condition": text, "tree": def.condition,
                    "warnings": problems.iter().map(|p| &p.message).collect::<Vec<_>>()}),
        ),
    ))
}

/// Starts a background backfill of one audience.
pub fn spawn_backfill(state: &AppState, id: String) {
    let stage = state.audience_stage.clone();
    tokio::spawn(async move {
        if let Err(e) = stage.backfill(&id).await {
            tracing::error!(audience = %id, error = %e, "backfill failed");
        }
    });
}

/// A profile as `{id, email, name}`.
fn person(id: &ProfileId, contact: Option<&crate::console::store::Contact>) -> Value {
    json!({"id": id, "email": contact.and_then(|c| c.email.as_deref()),
           "name": contact.and_then(|c| c.name.as_deref())})
}

#[derive(Deserialize)]
struct Preview {
    condition: Value,
}

async fn preview(
    _: Admin,
    State(state): State<AppState>,
    JsonBody(input): JsonBody<Preview>,
) -> Result<Json<Value>, AdminError> {
    let condition = condition_from(&input.condition)?;
    let (count, sample, total) = state.audience_stage.preview(&condition, 10).await?;
    // Sample members as people: email and name beside the profile id.
    let contacts = crate::console::api::contact_map(&state, sample.clone()).await?;
    let members: Vec<Value> = sample
        .iter()
        .map(|id| person(id, contacts.get(id)))
        .collect();
    Ok(Json(
        json!({"condition": condition.to_string(), "tree": condition,
                   "count": count, "of": total, "sample": sample, "members": members}),
    ))
}

async fn one(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, AdminError> {
    let row = state
        .audiences
        .list()
        .await?
        .into_iter()
        .find(|r| r.id == id)
        .ok_or(AdminError::NotFound)?;
    let (_, count) = state.audiences.members(&id, 0).await?;
    let tree = Condition::parse(&row.condition).ok();
    Ok(Json(
        json!({"audience": row, "tree": tree, "members": count}),
    ))
}

#[derive(Deserialize)]
struct Limit {
    limit: Option<i64>,
    after: Option<i64>,
}

async fn members(
    _: Admin,
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, AdminError> {
    let (rows, count) = state
        .audiences
        .members(&id, q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    let ids: Vec<ProfileId> = rows.iter().map(|m| m.profile_id.clone()).collect();
    let contacts = crate::console::api::contact_map(&state, ids).await?;
    let members: Vec<Value> = rows
        .iter()
        .map(|m| {
            let mut v = json!(m);
            let c = contacts.get(&m.profile_id);
            v["email"] = json!(c.and_then(|c| c.email.as_deref()));
            v["name"] = json!(c.and_then(|c| c.name.as_deref()));
            v
        })
        .collect();
    Ok(Json(
        json!({"audience": id, "count": count, "members": members}),
    ))
}

async fn events(
    _: Admin,
    State(state): State<AppState>,
    Query(q): Query<Limit>,
) -> Result<Json<Value>, AdminError> {
    let rows = state
        .audiences
        .events(q.after.unwrap_or(0), q.limit.unwrap_or(100).clamp(1, 1000))
        .await?;
    Ok(Json(json!(rows)))
}
