//! Request extractors that turn every malformed input into the JSON error envelope.

use std::net::SocketAddr;

use api_types::codes;
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, ConnectInfo, FromRequest, FromRequestParts, Query, Request},
    http::{header, request::Parts, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::{auth::tokens, error::ApiError, AppState};

/// A JSON body. Anything that does not parse into `T` (bad JSON, missing field, wrong type) is a
/// 400 with serde's explanation; the Content-Type is not required (the Figma iframe may omit it).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, codes::PAYLOAD_TOO_LARGE, "The request body is too large.")
            } else {
                ApiError::bad_request(codes::INVALID_BODY, "The request body could not be read.")
            }
        })?;
        parse_object(&bytes).map(ApiJson)
    }
}

/// Parses a JSON object body into `T`; 400 with serde's explanation otherwise.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    // Every body of this API is a JSON object; serde would also read a struct from an array.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request(codes::INVALID_BODY, "The request body must be a JSON object."));
    }
    serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_request(codes::INVALID_BODY, format!("The request body is not valid: {e}.")))
}

/// Query parameters; unparsable ones are a 400.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        Query::<T>::from_request_parts(parts, state).await.map(|Query(q)| ApiQuery(q)).map_err(|e| {
            ApiError::bad_request(codes::INVALID_QUERY, format!("Invalid query parameters: {}", e.body_text()))
        })
    }
}

/// The signed-in user, from `Authorization: Bearer <token>`.
#[derive(Debug, Clone)]
pub struct AuthUser {
    pub id: String,
    pub email: String,
    /// The bearer token itself, for logout.
    pub token: String,
}

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("Sign in first: send Authorization: Bearer <token>."))?;
        match tokens::authenticate(&state.db, token).await? {
            Some((id, email)) => Ok(AuthUser { id, email, token: token.to_string() }),
            None => Err(ApiError::unauthorized("Your session has expired or was signed out. Please sign in again.")),
        }
    }
}

fn bearer_token(parts: &Parts) -> Option<&str> {
    let value = parts.headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim()).filter(|t| !t.is_empty())
}

/// The `Idempotency-Key` header, required where a retried request must not act twice.
pub struct IdempotencyKey(pub String);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let value = parts.headers.get("idempotency-key").ok_or_else(|| {
            ApiError::bad_request(
                codes::MISSING_HEADER,
                "The Idempotency-Key header is required (a unique value per operation, e.g. a UUID).",
            )
        })?;
        let key = value.to_str().map(str::trim).unwrap_or("");
        if key.is_empty() || key.len() > 255 || !key.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(ApiError::bad_request(
                codes::MISSING_HEADER,
                "The Idempotency-Key header must be 1 to 255 visible ASCII characters.",
            ));
        }
        Ok(IdempotencyKey(key.to_string()))
    }
}

/// Who is calling, for throttling: the address the nearest proxy saw (rightmost `X-Forwarded-For`
/// entry, which the client cannot forge past Railway's edge), else the TCP peer.
pub struct ClientAddr(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let forwarded = parts
            .headers
            .get("x-forwarded-for")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.rsplit(',').next())
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip().to_string());
        Ok(ClientAddr(forwarded.or(peer).unwrap_or_else(|| "unknown".into())))
    }
}

/// The raw request body, byte for byte (webhook signatures are computed over it).
pub struct RawBody(pub Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        Bytes::from_request(req, state).await.map(RawBody).map_err(|e: BytesRejection| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, codes::PAYLOAD_TOO_LARGE, "The request body is too large.")
            } else {
                ApiError::bad_request(codes::INVALID_BODY, "The request body could not be read.")
            }
        })
    }
}
