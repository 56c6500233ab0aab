//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from them. A modifier adds the answers every operation of
//! a kind can give (401 when it needs a token; 413, 415 and 422 when it
//! takes a body; 400, 500 and 503 always), and [`document`] the links that
//! say which answer feeds which request.

use crate::routes::{accounts, care, feed, games, me, me_export, ops, patients};
use crate::web;
use utoipa::openapi::content::Content;
use utoipa::openapi::path::Operation;
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Ref, RefOr};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "m2m",
        description = "The backend of a rehabilitation game played with a sensor glove.\n\n\
            Every error is `application/problem+json` (the `Problem` schema) with a stable \
            `type`, `urn:m2m:problem:<kind>`. Besides the answers listed per operation, any \
            path the API does not have answers 404 (`not-found`) and any method a path does \
            not have answers 405 (`method-not-allowed`) with an `Allow` header; both are \
            defined once under `components.responses`."
    ),
    paths(
        accounts::register, accounts::login, accounts::refresh, accounts::logout,
        games::submit, games::get_game, games::list_games, games::progress,
        patients::own_samples,
        feed::sync, feed::events,
        me::get_me, me::patch_me,
        me::delete_me, me_export::export_me,
        care::create_invite, care::link, care::list, care::unlink,
        patients::list, patients::games, patients::game, patients::progress,
        patients::adherence, patients::patient_samples,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
        web::create_session, web::refresh_session, web::delete_session,
    ),
    modifiers(&BearerAuth, &CommonResponses, &OpenMetrics),
)]
pub(crate) struct ApiDoc;

/// Metrics schema version 2 (docs/metrics.md): the `Metrics` object is
/// open, so a metric added later does not break a client that validates
/// against this document.
struct OpenMetrics;

impl Modify for OpenMetrics {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AdditionalProperties, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for name in ["Metrics", "Fingers", "Smoothness", "Tremor"] {
            let Some(RefOr::T(Schema::Object(schema))) = components.schemas.get_mut(name) else {
                continue;
            };
            schema.additional_properties = Some(Box::new(AdditionalProperties::FreeForm(true)));
            let said = schema.description.take().unwrap_or_default();
            let open = if name == "Metrics" {
                format!(
                    "Metrics schema version {}: open. A newer server may send metrics not \
                     listed here, at the top level or inside a group; clients must ignore the \
                     metrics they do not know. (Version 1 was closed.) The result's \
                     `algorithm_version` says which definitions made the values \
                     (docs/metrics.md).",
                    m2m_analysis::METRICS_SCHEMA_VERSION
                )
            } else {
                "Open (metrics schema version 2): ignore the keys you do not know.".to_owned()
            };
            schema.description = Some(if said.is_empty() {
                open
            } else {
                format!("{said}\n\n{open}")
            });
        }
    }
}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
    }
}

/// A problem+json answer.
fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            Content::new(Some(Ref::from_schema_name("Problem"))),
        )
        .build()
}

/// Every operation of the document.
fn operations(openapi: &mut utoipa::openapi::OpenApi) -> impl Iterator<Item = &mut Operation> {
    openapi.paths.paths.values_mut().flat_map(|item| {
        [
            item.get.as_mut(),
            item.put.as_mut(),
            item.post.as_mut(),
            item.delete.as_mut(),
            item.options.as_mut(),
            item.head.as_mut(),
            item.patch.as_mut(),
            item.trace.as_mut(),
        ]
        .into_iter()
        .flatten()
    })
}

struct CommonResponses;

impl Modify for CommonResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        for op in operations(openapi) {
            let authenticated = op.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_body = op.request_body.is_some();
            let mut common: Vec<(&str, &str)> = Vec::new();
            if has_body {
                common.extend([
                    ("400", "the body is not JSON, or a header or query parameter is malformed"),
                    ("413", "the body, after decompression, is larger than the operation's limit"),
                    ("415", "the body is not sent as JSON, or with a Content-Encoding other than gzip"),
                    ("422", "the body is JSON but not a valid value: the problem names each field at fault"),
                ]);
            } else {
                common.push((
                    "400",
                    "a header or query parameter is malformed, or repeated",
                ));
            }
            if authenticated {
                common.push((
                    "401",
                    "no bearer access token, or one that is invalid or expired",
                ));
            }
            common.extend([
                ("500", "an unexpected failure; the body says nothing more, the server logs the cause"),
                ("503", "the database or the event bus is unavailable, or the request took longer than the time limit"),
            ]);
            for (status, description) in common {
                op.responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| RefOr::T(problem(description)));
            }
        }
        let components = openapi.components.get_or_insert_with(Default::default);
        components.responses.insert(
            "NotFound".to_owned(),
            RefOr::T(problem("a path the API does not have (404, `not-found`)")),
        );
        components.responses.insert(
            "MethodNotAllowed".to_owned(),
            RefOr::T(problem(
                "a method the path does not have (405, `method-not-allowed`); the `Allow` header lists those it has",
            )),
        );
    }
}

/// The document as served: [`ApiDoc`] with the links that say which
/// answer feeds which request. The links are added to the JSON because
/// utoipa 5 writes a link's `operationId` and `requestBody` in snake case.
pub(crate) fn document() -> serde_json::Value {
    use serde_json::json;
    let mut doc = serde_json::to_value(ApiDoc::openapi()).unwrap_or_default();
    let links = [
        (
            "/v1/users",
            "201",
            "LogIn",
            json!({
                "operationId": "login",
                "requestBody": {
                    "username": "$request.body#/username",
                    "password": "$request.body#/password",
                },
                "description": "log in as the new user",
            }),
        ),
        (
            "/v1/login",
            "200",
            "Refresh",
            json!({
                "operationId": "refresh",
                "requestBody": { "refresh_token": "$response.body#/refresh_token" },
            }),
        ),
        (
            "/v1/login",
            "200",
            "LogOut",
            json!({
                "operationId": "logout",
                "requestBody": { "refresh_token": "$response.body#/refresh_token" },
            }),
        ),
        (
            "/v1/token/refresh",
            "200",
            "RefreshAgain",
            json!({
                "operationId": "refresh",
                "requestBody": { "refresh_token": "$response.body#/refresh_token" },
            }),
        ),
        (
            "/v1/games",
            "202",
            "GetGame",
            json!({
                "operationId": "get_game",
                "parameters": { "game_id": "$response.body#/game_id" },
                "description": "the uploaded game, queued until analysed",
            }),
        ),
    ];
    for (path, status, name, link) in links {
        if let Some(response) = doc
            .pointer_mut(&format!(
                "/paths/{}/post/responses/{status}",
                path.replace('~', "~0").replace('/', "~1")
            ))
            .and_then(serde_json::Value::as_object_mut)
        {
            response
                .entry("links")
                .or_insert_with(|| json!({}))
                .as_object_mut()
                .map(|l| l.insert(name.to_owned(), link));
        }
    }
    doc
}
