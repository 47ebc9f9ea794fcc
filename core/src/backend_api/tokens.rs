//! API tokens: scopes, generation (`tp_` and 64 hex digits, shown once) and hashing (only the
//! SHA-256 is stored), and the admin routes that create, list and revoke them.

use super::auth::{AdminScope, Scoped};
use super::store::{NewToken, TokenRow};
use super::{ApiError, ErrorBody};
use crate::hardening::{JsonBody, Path};
use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{delete, get};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

/// What a token may do. The admin token (`TOUCHPOINT_ADMIN_TOKEN`) has every scope.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, ToSchema,
)]
pub enum Scope {
    /// Profiles: traits, computed traits, identities, accounts, events; the Segment Profile API.
    #[serde(rename = "profiles:read")]
    ProfilesRead,
    /// Audiences: definitions, member lists, membership checks.
    #[serde(rename = "audiences:read")]
    AudiencesRead,
    /// Everything, including the admin API (sources, tokens, profiles, deletion).
    #[serde(rename = "admin")]
    Admin,
}

/// A scope name nobody knows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown scope {0:?} (known: profiles:read, audiences:read, admin)")]
pub struct UnknownScope(pub String);

impl Scope {
    /// Every scope.
    pub const ALL: [Scope; 3] = [Scope::ProfilesRead, Scope::AudiencesRead, Scope::Admin];

    /// The scope's name, e.g. `profiles:read`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ProfilesRead => "profiles:read",
            Scope::AudiencesRead => "audiences:read",
            Scope::Admin => "admin",
        }
    }

    /// Reads one scope name.
    pub fn parse(name: &str) -> Result<Scope, UnknownScope> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == name.trim())
            .ok_or_else(|| UnknownScope(name.trim().to_owned()))
    }

    /// Reads scope names separated by commas or spaces; sorted, without duplicates.
    pub fn parse_list(names: &str) -> Result<Vec<Scope>, UnknownScope> {
        let mut out = names
            .split([',', ' '])
            .filter(|n| !n.trim().is_empty())
            .map(Scope::parse)
            .collect::<Result<Vec<_>, _>>()?;
        out.sort_unstable();
        out.dedup();
        Ok(out)
    }

    /// Scope names separated by spaces (as stored).
    pub fn join(scopes: &[Scope]) -> String {
        scopes
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    }

    /// Whether holding `held` grants this scope (`admin` grants every scope).
    pub fn granted_by(self, held: &[Scope]) -> bool {
        held.iter().any(|h| *h == self || *h == Scope::Admin)
    }
}

/// How every token starts, so it is recognisable (in code review, secret scanners, logs).
pub const TOKEN_PREFIX: &str = "tp_";
/// Characters of a token kept in clear (`tp_` and 8 hex digits) to tell tokens apart.
const SHOWN_CHARS: usize = TOKEN_PREFIX.len() + 8;

/// A fresh random token: `tp_` and 64 hex digits (two v4 UUIDs: 244 random bits).
pub fn generate() -> String {
    format!(
        "{TOKEN_PREFIX}{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Lowercase hex SHA-256 of a token: what is stored and looked up.
pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// The part of a token shown in listings.
pub fn shown_prefix(token: &str) -> String {
    token.chars().take(SHOWN_CHARS).collect()
}

/// A token as listed: never the token itself.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    /// Id (revoke with `DELETE /admin/tokens/{id}`).
    pub id: i64,
    /// What it is for.
    pub name: String,
    /// Granted scopes.
    pub scopes: Vec<Scope>,
    /// The token's first characters (`tp_` and 8 hex digits).
    pub prefix: String,
    /// Created (ms since the Unix epoch).
    pub created_at: i64,
    /// Last used (ms), recorded at most once a minute.
    pub last_used_at: Option<i64>,
    /// Revoked (ms), if it is.
    pub revoked_at: Option<i64>,
}

impl From<TokenRow> for TokenView {
    fn from(r: TokenRow) -> TokenView {
        TokenView {
            id: r.id,
            name: r.name,
            scopes: r.scopes,
            prefix: r.prefix,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// A token just created: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    /// The token: store it now, it cannot be shown again.
    pub token: String,
    /// The stored record.
    #[serde(flatten)]
    pub info: TokenView,
}

/// What to create.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct NewTokenRequest {
    /// What the token is for, e.g. `personalisation/production` (1–100 characters).
    pub name: String,
    /// Scopes: `profiles:read`, `audiences:read`, `admin`.
    pub scopes: Vec<String>,
}

/// Creates a token (shared by the admin API and the CLI); returns it with its record.
pub async fn create(
    store: &dyn super::ApiStore,
    name: &str,
    scopes: &[Scope],
    now: i64,
) -> Result<CreatedToken, ApiError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(ApiError::BadRequest(
            "name must be 1-100 printable characters".into(),
        ));
    }
    if scopes.is_empty() {
        return Err(ApiError::BadRequest(
            "give at least one scope: profiles:read, audiences:read, admin".into(),
        ));
    }
    let token = generate();
    let row = store
        .create_token(&NewToken {
            name,
            scopes,
            hash: &hash(&token),
            prefix: &shown_prefix(&token),
            at: now,
        })
        .await?;
    tracing::info!(token_id = row.id, name = %row.name, scopes = %Scope::join(&row.scopes), "api token created");
    Ok(CreatedToken {
        token,
        info: row.into(),
    })
}

/// The token admin routes (the admin token, or a token with the `admin` scope).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/tokens", get(list).post(create_route))
        .route("/admin/tokens/{id}", delete(revoke))
}

/// Lists every token (never the tokens themselves).
#[utoipa::path(get, operation_id = "listTokens", path = "/admin/tokens", tag = "tokens",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Every token, newest first", body = Vec<TokenView>),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin scope", body = ErrorBody),
    ))]
pub async fn list(
    _: Scoped<AdminScope>,
    State(state): State<AppState>,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    let rows = state.api.store.tokens().await?;
    Ok(Json(rows.into_iter().map(TokenView::from).collect()))
}

/// Creates a token; the answer is the only time the token is shown.
#[utoipa::path(post, operation_id = "createToken", path = "/admin/tokens", tag = "tokens",
    security(("bearer" = [])),
    request_body = NewTokenRequest,
    responses(
        (status = 201, description = "Created; `token` is shown this once", body = CreatedToken),
        (status = 400, description = "Bad name or scope", body = ErrorBody),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin scope", body = ErrorBody),
    ))]
pub async fn create_route(
    _: Scoped<AdminScope>,
    State(state): State<AppState>,
    JsonBody(input): JsonBody<NewTokenRequest>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    let scopes = Scope::parse_list(&input.scopes.join(","))
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let created = create(
        state.api.store.as_ref(),
        &input.name,
        &scopes,
        state.clock.now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// Revokes a token: it is refused from the next request on.
#[utoipa::path(delete, operation_id = "revokeToken", path = "/admin/tokens/{id}", tag = "tokens",
    security(("bearer" = [])),
    params(("id" = i64, Path, description = "The token's id")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No or unknown token", body = ErrorBody),
        (status = 403, description = "The token lacks the admin scope", body = ErrorBody),
        (status = 404, description = "No such unrevoked token", body = ErrorBody),
    ))]
pub async fn revoke(
    _: Scoped<AdminScope>,
    State(state): State<AppState>,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    if state
        .api
        .store
        .revoke_token(id, state.clock.now_ms())
        .await?
    {
        tracing::info!(token_id = id, "api token revoked");
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::NotFound("token"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_lists_are_read_from_commas_or_spaces_sorted_and_deduplicated() {
        assert_eq!(
            Scope::parse_list("audiences:read, profiles:read audiences:read").unwrap(),
            vec![Scope::ProfilesRead, Scope::AudiencesRead]
        );
        assert_eq!(Scope::parse_list("").unwrap(), vec![]);
        assert_eq!(
            Scope::parse_list("profiles:read,profiles:write").unwrap_err(),
            UnknownScope("profiles:write".into())
        );
        assert_eq!(
            Scope::join(&[Scope::ProfilesRead, Scope::Admin]),
            "profiles:read admin"
        );
        for s in Scope::ALL {
            assert_eq!(Scope::parse(s.as_str()), Ok(s));
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
    }

    #[test]
    fn the_admin_scope_grants_every_scope_and_others_only_themselves() {
        assert!(Scope::ProfilesRead.granted_by(&[Scope::ProfilesRead]));
        assert!(!Scope::AudiencesRead.granted_by(&[Scope::ProfilesRead]));
        assert!(!Scope::Admin.granted_by(&[Scope::ProfilesRead, Scope::AudiencesRead]));
        for s in Scope::ALL {
            assert!(s.granted_by(&[Scope::Admin]));
        }
        assert!(!Scope::ProfilesRead.granted_by(&[]));
    }

    #[test]
    fn tokens_are_recognisable_random_and_stored_only_as_their_sha256() {
        let (a, b) = (generate(), generate());
        assert_ne!(a, b);
        assert!(a.starts_with("tp_"));
        assert_eq!(a.len(), 3 + 64);
        assert!(a[3..].bytes().all(|c| c.is_ascii_hexdigit()));
        assert_eq!(shown_prefix(&a), a[..11]);
        // SHA-256 of "abc" (FIPS 180-2 test vector).
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash(&a).len(), 64);
        assert!(!hash(&a).contains(&a[3..]));
    }
}
