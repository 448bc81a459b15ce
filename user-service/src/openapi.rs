use service_kit::audit::ENVELOPE_DOC;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{auth, users};

#[derive(OpenApi)]
#[openapi(
    info(title = "user-service", description = "Users, login and the token keys of the microservices platform."),
    paths(users::list, users::get, users::create, users::update, users::delete, auth::login, auth::jwks),
    modifiers(&BearerAuth, &ENVELOPE_DOC),
)]
pub struct ApiDoc;

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
