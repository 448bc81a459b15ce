//! Bearer-token verification shared by the services: RS256 JWTs issued by user-service, keys
//! from its JWKS (fetched and cached) or handed over directly, and the ownership rule
//! "a user acts on their own resources, an admin on anything".

use std::collections::HashMap;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::{FromRequest, HttpRequest, dev::Payload, web};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use uuid::Uuid;

use crate::http::{ApiError, ErrorStyle};
use crate::settings::AuthSettings;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Admin,
}

/// The claims user-service puts in every token.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: Uuid,
    pub role: Role,
    pub iss: String,
    pub aud: String,
    pub exp: i64,
    pub iat: i64,
}

/// Who is calling, once their token checked out.
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: Uuid,
    pub role: Role,
    /// The raw token, forwarded on calls made on the caller's behalf.
    pub token: Option<String>,
}

impl Caller {
    pub fn is_admin(&self) -> bool {
        self.role == Role::Admin
    }
    /// Users act on their own resources; admins on anyone's.
    pub fn may_act_for(&self, owner: Uuid) -> bool {
        self.is_admin() || self.user_id == owner
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("Missing bearer token")]
    Missing,
    #[error("Invalid or expired token")]
    Invalid,
    #[error("Token keys are unavailable")]
    KeysUnavailable,
}

impl AuthError {
    fn status(&self) -> StatusCode {
        match self {
            AuthError::Missing | AuthError::Invalid => StatusCode::UNAUTHORIZED,
            AuthError::KeysUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

enum KeySource {
    Fixed,
    Jwks {
        url: String,
        client: reqwest::Client,
        refresh: Duration,
    },
}

struct KeyCache {
    keys: HashMap<String, DecodingKey>,
    fetched: Option<Instant>,
}

/// Checks tokens; cheap to clone.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<VerifierInner>,
}

struct VerifierInner {
    enabled: bool,
    validation: Validation,
    source: KeySource,
    cache: RwLock<KeyCache>,
    verified: std::sync::RwLock<HashMap<String, Claims>>,
}

/// How many verified tokens are remembered. A client sends the same token with every request
/// until it expires, and an RS256 check costs more than the rest of a simple read; the bound
/// keeps memory small (a token is under 1 KiB), and the cache starts over when it is full.
const VERIFIED_CAPACITY: usize = 4096;

/// A key unknown to the cache triggers a refetch at most this often, so forged `kid`s cannot
/// make the service hammer the JWKS endpoint.
const MIN_REFETCH: Duration = Duration::from_secs(5);

impl Verifier {
    fn new(settings: &AuthSettings, source: KeySource, keys: HashMap<String, DecodingKey>) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_issuer(&[&settings.issuer]);
        validation.set_audience(&[&settings.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.leeway = 30;
        Self {
            inner: Arc::new(VerifierInner {
                enabled: settings.enabled,
                validation,
                source,
                cache: RwLock::new(KeyCache {
                    keys,
                    fetched: None,
                }),
                verified: std::sync::RwLock::new(HashMap::new()),
            }),
        }
    }

    /// Keys fetched from `settings.jwks_url` on first use and refreshed periodically.
    pub fn from_jwks_url(settings: &AuthSettings, client: reqwest::Client) -> Self {
        let source = KeySource::Jwks {
            url: settings.jwks_url.clone(),
            client,
            refresh: Duration::from_secs(settings.jwks_refresh_seconds),
        };
        Self::new(settings, source, HashMap::new())
    }

    /// Keys known up front (user-service verifies with its own public keys).
    pub fn from_key_set(settings: &AuthSettings, set: &JwkSet) -> anyhow::Result<Self> {
        Ok(Self::new(settings, KeySource::Fixed, decoding_keys(set)?))
    }

    pub fn enabled(&self) -> bool {
        self.inner.enabled
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(claims) = self
            .inner
            .verified
            .read()
            .ok()
            .and_then(|v| v.get(token).cloned())
            && claims.exp > now
        {
            return Ok(claims);
        }
        let claims = self.verify_signature(token).await?;
        if let Ok(mut verified) = self.inner.verified.write() {
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.to_owned(), claims.clone());
        }
        Ok(claims)
    }

    async fn verify_signature(&self, token: &str) -> Result<Claims, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::Invalid)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Invalid);
        }
        let kid = header.kid.ok_or(AuthError::Invalid)?;
        let key = self.key(&kid).await?;
        jsonwebtoken::decode::<Claims>(token, &key, &self.inner.validation)
            .map(|data| data.claims)
            .map_err(|_| AuthError::Invalid)
    }

    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let KeySource::Jwks {
            url,
            client,
            refresh,
        } = &self.inner.source
        else {
            return self
                .inner
                .cache
                .read()
                .await
                .keys
                .get(kid)
                .cloned()
                .ok_or(AuthError::Invalid);
        };
        {
            let cache = self.inner.cache.read().await;
            let fresh = cache.fetched.is_some_and(|at| at.elapsed() < *refresh);
            let recently = cache.fetched.is_some_and(|at| at.elapsed() < MIN_REFETCH);
            match cache.keys.get(kid) {
                Some(key) if fresh => return Ok(key.clone()),
                None if recently => return Err(AuthError::Invalid),
                _ => {}
            }
        }
        let mut cache = self.inner.cache.write().await;
        if cache.fetched.is_none_or(|at| at.elapsed() >= MIN_REFETCH) {
            match fetch_jwks(client, url).await {
                Ok(keys) => {
                    cache.keys = keys;
                    cache.fetched = Some(Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, url, "fetching JWKS failed");
                    // Keep serving with the keys we have rather than locking everyone out.
                    if cache.keys.is_empty() {
                        return Err(AuthError::KeysUnavailable);
                    }
                }
            }
        }
        cache.keys.get(kid).cloned().ok_or(AuthError::Invalid)
    }
}

async fn fetch_jwks(
    client: &reqwest::Client,
    url: &str,
) -> anyhow::Result<HashMap<String, DecodingKey>> {
    let set: JwkSet = client
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    decoding_keys(&set)
}

fn decoding_keys(set: &JwkSet) -> anyhow::Result<HashMap<String, DecodingKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| Some((jwk.common.key_id.clone()?, jwk)))
        .map(|(kid, jwk)| Ok((kid, DecodingKey::from_jwk(jwk)?)))
        .collect()
}

fn bearer(request: &HttpRequest) -> Option<&str> {
    // `HeaderValue::to_str` checks a byte at a time that the value is visible ASCII, a few
    // thousand instructions for a token, on every request; UTF-8 validation takes eight bytes at
    // a time, and a token with anything but base64url in it fails verification all the same.
    let value = std::str::from_utf8(
        request
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)?
            .as_bytes(),
    )
    .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
}

/// Extracts the verified caller; rejects with 401 (or 503 when keys cannot be had) in the
/// service's error style. With auth disabled by configuration every caller is an admin.
pub struct Authenticated<S>(pub Caller, PhantomData<fn() -> S>);

impl<S> std::ops::Deref for Authenticated<S> {
    type Target = Caller;
    fn deref(&self) -> &Caller {
        &self.0
    }
}

impl<S: ErrorStyle> FromRequest for Authenticated<S> {
    type Error = ApiError<S>;
    type Future = Pin<Box<dyn Future<Output = Result<Self, Self::Error>>>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verifier = request.app_data::<web::Data<Verifier>>().cloned();
        let token = bearer(request).map(str::to_owned);
        Box::pin(async move {
            let reject = |e: AuthError| ApiError::<S>::new(e.status(), e.to_string());
            let verifier = verifier.ok_or_else(|| reject(AuthError::KeysUnavailable))?;
            if !verifier.enabled() {
                return Ok(Authenticated(
                    Caller {
                        user_id: Uuid::nil(),
                        role: Role::Admin,
                        token,
                    },
                    PhantomData,
                ));
            }
            let token = token.ok_or(AuthError::Missing).map_err(reject)?;
            let claims = verifier.verify(&token).await.map_err(reject)?;
            Ok(Authenticated(
                Caller {
                    user_id: claims.sub,
                    role: claims.role,
                    token: Some(token),
                },
                PhantomData,
            ))
        })
    }
}

/// 403 unless the caller may act for `owner`.
pub fn ensure_may_act_for<S: ErrorStyle>(caller: &Caller, owner: Uuid) -> Result<(), ApiError<S>> {
    if caller.may_act_for(owner) {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Not allowed to access this resource",
        ))
    }
}

/// 403 unless the caller is an admin.
pub fn ensure_admin<S: ErrorStyle>(caller: &Caller) -> Result<(), ApiError<S>> {
    if caller.is_admin() {
        Ok(())
    } else {
        Err(ApiError::new(StatusCode::FORBIDDEN, "Admin role required"))
    }
}

/// PEM armour (`PRIVATE KEY`) for a PKCS#8 DER private key.
pub fn pkcs8_pem(der: &[u8]) -> String {
    use base64::Engine;
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// Declares the `bearer` (JWT) security scheme that operations reference with
/// `security(("bearer" = []))`; add it with `#[openapi(modifiers(&BearerAuth))]`.
pub struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
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
