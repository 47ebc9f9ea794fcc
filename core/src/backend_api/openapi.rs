//! The OpenAPI 3.1 document of the backend API, generated from the handlers' `#[utoipa::path]`
//! annotations and response types. Served at `GET /v1/openapi.json`, printed by `touchpoint openapi`,
//! and committed as `docs/openapi.json` (a test fails when the two differ).

use super::{segment, tokens, v1};
use axum::http::header;
use axum::response::IntoResponse;
use utoipa::Modify;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// The document's root.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Touchpoint API for backends",
        version = "1",
        description = "Read profiles, events, audiences and accounts from Touchpoint with a scoped \
            API token (`Authorization: Bearer tp_…`; create one with `POST /admin/tokens` or \
            `touchpoint tokens create`). Segment Profile API compatible routes live under \
            `/v1/spaces/{space_id}/collections/…` and also take the token as the HTTP Basic \
            username. Answers carry an ETag (send it back in If-None-Match for a 304); each token \
            has a rate limit (429 with Retry-After). Times are milliseconds since the Unix epoch \
            except on the Segment routes (ISO 8601).",
        license(name = "Apache-2.0")
    ),
    paths(
        v1::profile,
        v1::events,
        v1::profile_audiences,
        v1::audiences,
        v1::audience,
        v1::members,
        v1::membership,
        v1::account,
        v1::account_members,
        segment::traits,
        segment::events,
        segment::external_ids,
        segment::metadata,
        segment::links,
        segment::account_traits,
        tokens::list,
        tokens::create_route,
        tokens::revoke,
        openapi_json,
    ),
    modifiers(&Security),
    tags(
        (name = "profiles", description = "Profiles by any identifier (scope profiles:read)"),
        (name = "audiences", description = "Audiences and membership (scope audiences:read)"),
        (name = "accounts", description = "Account (group) profiles (scope profiles:read)"),
        (name = "segment", description = "Segment Profile API compatible (scope profiles:read)"),
        (name = "tokens", description = "API tokens (scope admin)"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("tp_ followed by 64 hex digits")
                    .description(Some(
                        "An API token (or the admin token, which holds every scope).",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "basic",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Basic)
                    .description(Some(
                        "The API token as the username and an empty password, as Segment's \
                         Profile API clients send it (`curl -u tp_…:`).",
                    ))
                    .build(),
            ),
        );
    }
}

/// The document as pretty JSON with a final newline (the form committed as `docs/openapi.json`).
pub fn json() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}

/// Serves this document.
#[utoipa::path(get, operation_id = "getOpenApiDocument", path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
pub async fn openapi_json() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], json())
}

/// The route handler (the annotated function above, under the name `routes()` uses).
pub use openapi_json as serve;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_document_names_every_backend_route_with_its_security() {
        let doc: serde_json::Value = serde_json::from_str(&json()).unwrap();
        assert_eq!(doc["openapi"], "3.1.0");
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.contains_key("/v1/profiles/{external_id}"));
        assert!(
            paths.contains_key(
                "/v1/spaces/{space_id}/collections/users/profiles/{external_id}/traits"
            )
        );
        assert!(paths["/admin/tokens/{id}"]["delete"].is_object());
        assert_eq!(
            doc["components"]["securitySchemes"]["basic"]["scheme"],
            "basic"
        );
        assert!(doc["components"]["schemas"]["ProfileView"].is_object());
    }
}
