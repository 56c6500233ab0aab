//! The OpenAPI document, generated from the handlers' annotations so it
//! cannot drift from them.

use crate::routes::{accounts, feed, games, ops};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

#[derive(OpenApi)]
#[openapi(
    info(title = "m2m", description = "The backend of a rehabilitation game played with a sensor glove."),
    paths(
        accounts::register, accounts::login, accounts::refresh, accounts::logout,
        games::submit, games::get_game, games::list_games, games::progress,
        feed::sync, feed::events,
        ops::healthz, ops::readyz, ops::metrics, ops::openapi,
    ),
    modifiers(&BearerAuth),
)]
pub(crate) struct ApiDoc;

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
