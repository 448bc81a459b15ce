//! HTTP routes: the notification API of the original Gin service.
pub mod notifications;

use service_kit::database::Connections;

use crate::delivery::Delivery;

pub type ApiError = service_kit::http::ApiError<service_kit::http::Envelope>;
pub type Authenticated = service_kit::auth::Authenticated<service_kit::http::Envelope>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: Connections,
    pub delivery: Delivery,
}

pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(notifications::list)
        .service(notifications::create)
        .service(notifications::send)
        .service(notifications::list_for_user)
        .service(notifications::get)
        .service(notifications::mark_read)
        .service(notifications::delete)
        .configure(service_kit::audit::configure::<service_kit::http::Envelope>);
}
