use service_kit::audit::ENVELOPE_DOC;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::notifications;

#[derive(OpenApi)]
#[openapi(
    info(title = "notification-service", description = "Notifications of the microservices platform: in-app, and mail sent for users' and orders' events."),
    paths(
        notifications::list, notifications::get, notifications::create,
        notifications::list_for_user, notifications::mark_read, notifications::delete,
        notifications::send,
    ),
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
