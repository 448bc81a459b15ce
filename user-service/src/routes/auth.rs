//! `POST /api/auth/login` and `/.well-known/jwks.json`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, get, post, web};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use serde::{Deserialize, Serialize};
use service_kit::audit::{Audit, Audited};
use service_kit::auth::{Claims, Role};
use utoipa::ToSchema;

use super::{ApiError, AppState, OutcomeLabel};
use crate::domain::{Email, verify_password_in_background};
use crate::entity as user;

#[derive(Deserialize, ToSchema)]
pub struct Login {
    email: String,
    password: String,
}

#[derive(Serialize, ToSchema)]
pub struct Token {
    token: String,
    token_type: &'static str,
    /// Seconds until the token expires.
    expires_in: u64,
}

#[derive(Serialize, ToSchema)]
pub struct TokenEnvelope {
    success: bool,
    data: Token,
}

/// A hash of a random password: verifying against it when the user does not exist costs the
/// same time as a real check, so response times do not reveal which emails are registered.
static DUMMY_HASH: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    crate::domain::Password::parse(uuid::Uuid::new_v4().to_string())
        .and_then(|p| p.hash().map_err(|e| e.to_string()))
        .unwrap_or_default()
});

/// Exchange email and password for an RS256 bearer token.
#[utoipa::path(
    post, path = "/api/auth/login", tag = "auth", request_body = Login,
    responses((status = 200, body = TokenEnvelope), (status = 400), (status = 401))
)]
#[post(
    "/api/auth/login",
    wrap = "Audited::new(\"auth.login\", \"user\").failing_as(\"auth.login_failed\")"
)]
pub async fn login(
    state: web::Data<AppState>,
    audit: Audit,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { email, password } = body.into_inner();
    let found = match Email::parse(&email) {
        Ok(email) => {
            user::Entity::find()
                .filter(user::Column::Email.eq(email.as_str()))
                .one(&state.db.read)
                .await?
        }
        Err(_) => None,
    };
    let hash = found
        .as_ref()
        .and_then(|u| u.password_hash.clone())
        .unwrap_or_else(|| DUMMY_HASH.clone());
    let verified = verify_password_in_background(password, hash).await;
    let user = match found {
        Some(user) if verified && user.password_hash.is_some() => user,
        _ => {
            state
                .metrics
                .logins
                .get_or_create(&OutcomeLabel { outcome: "failure" })
                .inc();
            tracing::info!("login failed");
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "Invalid email or password",
            ));
        }
    };
    let auth = &state.settings.auth;
    let now = chrono::Utc::now().timestamp();
    let claims = Claims {
        sub: user.id,
        role: if user.role == "admin" {
            Role::Admin
        } else {
            Role::User
        },
        iss: auth.issuer.clone(),
        aud: auth.audience.clone(),
        iat: now,
        exp: now + auth.token_ttl_seconds as i64,
    };
    let token = state.keys.sign(&claims).map_err(|e| {
        tracing::error!(error = %e, "signing a token failed");
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    })?;
    audit.actor(claims.sub, claims.role);
    state
        .metrics
        .logins
        .get_or_create(&OutcomeLabel { outcome: "success" })
        .inc();
    tracing::info!(user_id = %user.id, "login succeeded");
    Ok(HttpResponse::Ok().json(TokenEnvelope {
        success: true,
        data: Token {
            token,
            token_type: "Bearer",
            expires_in: auth.token_ttl_seconds,
        },
    }))
}

/// The public keys tokens are signed with (used by Kong, Istio and the other services).
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "auth", responses((status = 200, description = "JSON Web Key Set")))]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.keys.jwks())
}
