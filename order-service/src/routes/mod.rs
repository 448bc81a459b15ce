//! HTTP routes (one module per resource) and the service's error type.
pub mod orders;

use std::fmt;
use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;
use service_kit::database::Connections;
use service_kit::events::OutboxSignal;
use service_kit::http::Detail;

use crate::domain::FieldError;
use crate::metrics::OrderMetrics;
use crate::settings::Settings;
use crate::user_directory::UserDirectory;

pub type ApiError = service_kit::http::ApiError<Detail>;
pub type Authenticated = service_kit::auth::Authenticated<Detail>;

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub db: Connections,
    pub settings: Arc<Settings>,
    pub metrics: OrderMetrics,
    pub users: UserDirectory,
    pub outbox: OutboxSignal,
}

/// What a handler answers instead of its result, in FastAPI's shape.
#[derive(Debug)]
pub enum Error {
    /// `{"detail": "…"}` with its status.
    Api(ApiError),
    /// 422 `{"detail": [{"type", "loc", "msg"}, …]}`, one entry per invalid field.
    Invalid(Vec<FieldError>),
}

impl Error {
    pub fn invalid(error: FieldError) -> Self {
        Self::Invalid(vec![error])
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Api(e) => e.fmt(f),
            Error::Invalid(errors) => write!(f, "{} invalid field(s)", errors.len()),
        }
    }
}

impl ResponseError for Error {
    fn status_code(&self) -> StatusCode {
        match self {
            Error::Api(e) => e.status,
            Error::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
        }
    }
    fn error_response(&self) -> HttpResponse {
        match self {
            Error::Api(e) => e.error_response(),
            Error::Invalid(errors) => {
                HttpResponse::UnprocessableEntity().json(json!({ "detail": errors }))
            }
        }
    }
}

impl From<ApiError> for Error {
    fn from(error: ApiError) -> Self {
        Error::Api(error)
    }
}

impl From<sea_orm::DbErr> for Error {
    fn from(error: sea_orm::DbErr) -> Self {
        Error::Api(error.into())
    }
}

pub fn configure(cfg: &mut actix_web::web::ServiceConfig) {
    cfg.service(orders::list)
        .service(orders::list_for_user)
        .service(orders::get)
        .service(orders::create)
        .service(orders::update_status)
        .service(orders::delete)
        .configure(service_kit::audit::configure::<Detail>);
}
