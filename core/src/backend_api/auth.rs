//! Who may call the backend API: `Scoped<S>` proves the request carried a token holding scope `S`
//! (401 without a token or with an unknown or revoked one, 403 without the scope, 429 past the
//! token's rate limit). The token comes as `Authorization: Bearer …` or, as Segment's Profile API
//! clients send it, as the HTTP Basic username. The admin token holds every scope; write keys are
//! never accepted here (they are not tokens).

use super::ApiError;
use super::segment::SegmentError;
use super::tokens::{self, Scope};
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;
use base64::Engine;
use secrecy::ExposeSecret;
use std::marker::PhantomData;
use subtle::ConstantTimeEq;

/// How often at most a token's last-used time is written.
pub const TOUCH_EVERY_MS: i64 = 60_000;

/// A scope a route requires, as a type (`Scoped<ProfilesRead>`).
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope.
    const SCOPE: Scope;
}

/// Requires `profiles:read`.
pub struct ProfilesRead;
impl RequiredScope for ProfilesRead {
    const SCOPE: Scope = Scope::ProfilesRead;
}

/// Requires `audiences:read`.
pub struct AudiencesRead;
impl RequiredScope for AudiencesRead {
    const SCOPE: Scope = Scope::AudiencesRead;
}

/// Requires `admin`.
pub struct AdminScope;
impl RequiredScope for AdminScope {
    const SCOPE: Scope = Scope::Admin;
}

/// Who called.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// The admin token (every scope, no rate limit).
    AdminToken,
    /// An API token.
    Token {
        /// Its id.
        id: i64,
        /// Its name.
        name: String,
    },
}

/// Proof that the request's token holds scope `S`.
pub struct Scoped<S>(pub Principal, PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<AppState> for Scoped<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let given = credential(parts).ok_or(ApiError::Unauthorized)?;
        authorize(&given, S::SCOPE, state)
            .await
            .map(|p| Scoped(p, PhantomData))
    }
}

/// [`Scoped`] for the Segment-compatible routes: the same checks, errors in Segment's shape.
pub struct SegmentScoped<S>(pub Principal, PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<AppState> for SegmentScoped<S> {
    type Rejection = SegmentError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SegmentError> {
        let given = credential(parts).ok_or(SegmentError(ApiError::Unauthorized))?;
        authorize(&given, S::SCOPE, state)
            .await
            .map(|p| SegmentScoped(p, PhantomData))
            .map_err(SegmentError)
    }
}

/// The token of a request: a bearer token, or the username of HTTP Basic auth (password ignored).
pub fn credential(parts: &Parts) -> Option<String> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let token = if scheme.eq_ignore_ascii_case("bearer") {
        rest.trim().to_owned()
    } else if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest.trim())
            .ok()?;
        let text = String::from_utf8(decoded).ok()?;
        text.split_once(':')
            .map_or(text.as_str(), |(user, _)| user)
            .to_owned()
    } else {
        return None;
    };
    (!token.is_empty()).then_some(token)
}

/// Checks a token for a scope: the admin token holds all; an API token must exist, be unrevoked,
/// hold the scope and be within its rate limit. Records the token's last use (at most once a minute).
pub async fn authorize(given: &str, scope: Scope, state: &AppState) -> Result<Principal, ApiError> {
    let admin = state.admin_token.expose_secret().as_bytes();
    if bool::from(given.as_bytes().ct_eq(admin)) {
        return Ok(Principal::AdminToken);
    }
    if !given.starts_with(tokens::TOKEN_PREFIX) {
        return Err(ApiError::Unauthorized);
    }
    let row = state
        .api
        .store
        .token_by_hash(&tokens::hash(given))
        .await?
        .filter(|t| t.revoked_at.is_none())
        .ok_or(ApiError::Unauthorized)?;
    if !scope.granted_by(&row.scopes) {
        return Err(ApiError::Forbidden(scope));
    }
    state
        .api
        .limits
        .check(row.id, 1)
        .map_err(ApiError::RateLimited)?;
    let now = state.clock.now_ms();
    if row
        .last_used_at
        .is_none_or(|t| now.saturating_sub(t) >= TOUCH_EVERY_MS)
        && let Err(e) = state.api.store.touch_token(row.id, now).await
    {
        tracing::warn!(token_id = row.id, error = %e, "recording a token's last use failed");
    }
    Ok(Principal::Token {
        id: row.id,
        name: row.name,
    })
}

#[cfg(test)]
mod tests {
    use super::credential;
    use axum::http::Request;

    fn parts(auth: Option<&str>) -> axum::http::request::Parts {
        let mut b = Request::builder().uri("/v1/profiles/user_id:u");
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn tokens_are_read_from_bearer_or_the_basic_auth_username() {
        assert_eq!(
            credential(&parts(Some("Bearer tp_abc"))),
            Some("tp_abc".into())
        );
        assert_eq!(
            credential(&parts(Some("bearer  tp_abc "))),
            Some("tp_abc".into())
        );
        // `curl -u tp_abc:` sends base64("tp_abc:").
        assert_eq!(
            credential(&parts(Some("Basic dHBfYWJjOg=="))),
            Some("tp_abc".into())
        );
        assert_eq!(credential(&parts(None)), None);
        assert_eq!(credential(&parts(Some("Bearer "))), None);
        assert_eq!(credential(&parts(Some("Basic !!!"))), None);
        assert_eq!(credential(&parts(Some("Token tp_abc"))), None);
    }
}
