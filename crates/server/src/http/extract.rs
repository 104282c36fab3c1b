//! Request extractors that turn every malformed input into the JSON error envelope.

use std::net::{IpAddr, SocketAddr};

use api_types::codes;
use axum::{
    body::Bytes,
    extract::{rejection::BytesRejection, ConnectInfo, FromRequest, FromRequestParts, Path, Query, Request},
    http::{header, request::Parts, HeaderMap, StatusCode},
};
use serde::de::DeserializeOwned;

use crate::{auth::tokens, config::TrustedProxies, error::ApiError, AppState};

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

/// An id in the path (a hold, a checkout session). One with a control character cannot exist
/// (ids are ASCII we minted, and PostgreSQL text cannot even hold NUL): 404, as for any unknown id.
pub struct PathId(pub String);

impl<S: Send + Sync> FromRequestParts<S> for PathId {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let not_found = || ApiError::not_found("There is nothing with this id.");
        let Path(id) = Path::<String>::from_request_parts(parts, state).await.map_err(|_| not_found())?;
        if id.is_empty() || id.len() > 255 || id.chars().any(char::is_control) {
            return Err(not_found());
        }
        Ok(PathId(id))
    }
}

/// The signed-in plugin user, from `Authorization: Bearer mct_…` (the operations layer's caller).
pub use crate::ops::User as AuthUser;

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let token = bearer_token(parts)
            .ok_or_else(|| ApiError::unauthorized("Sign in first: send Authorization: Bearer <token>."))?;
        match tokens::authenticate(&state.db, token).await? {
            // A one-time password's token can only replace that password, or sign out.
            Some(owner)
                if owner.restricted
                    && !(parts.uri.path().ends_with("/auth/password")
                        || parts.uri.path().ends_with("/auth/logout")) =>
            {
                Err(ApiError::new(
                    StatusCode::FORBIDDEN,
                    codes::PASSWORD_CHANGE_REQUIRED,
                    "You signed in with a one-time password: choose a new password first.",
                ))
            }
            Some(owner) => Ok(AuthUser { id: owner.user_id, email: owner.email, token: token.to_string() }),
            None => Err(ApiError::unauthorized("Your session has expired or was signed out. Please sign in again.")),
        }
    }
}

pub(crate) fn bearer_token(parts: &Parts) -> Option<&str> {
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

/// Who is calling, for throttling and rate limits, as `TRUSTED_PROXIES` says to read it (see
/// [`client_address`]); an IPv6 client counts by its /64 (one household or host has a whole /64),
/// and the rate limits count its /48 too (see `rate_limit`).
pub struct ClientAddr(pub String);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
        let client = client_address(&state.config.trusted_proxies, peer, &parts.headers);
        Ok(ClientAddr(client.map_or_else(|| "unknown".to_string(), bucket)))
    }
}

/// The client's address: the TCP peer, unless the peer is a trusted proxy.
/// - `Cidrs`: when the peer is in the list, the rightmost `X-Forwarded-For` entry not in it (a
///   client can prepend anything; only what the trusted proxies appended counts).
/// - `Railway`: `X-Real-IP`, which Railway's edge sets to the address it saw.
pub fn client_address(trusted: &TrustedProxies, peer: Option<IpAddr>, headers: &HeaderMap) -> Option<IpAddr> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    match trusted {
        TrustedProxies::None => peer,
        // Railway says only that its edge sets `X-Real-IP` to the client's address; it publishes
        // no edge addresses to check the peer against. So: exactly one header holding one
        // address. Two (a client's own and the edge's) or anything else: the TCP peer, so that a
        // client who sends its own header cannot pick the key it is counted under.
        TrustedProxies::Railway => {
            let mut values = headers.get_all("x-real-ip").iter();
            match (values.next(), values.next()) {
                (Some(v), None) => v.to_str().ok().and_then(|v| v.trim().parse().ok()).or(peer),
                _ => peer,
            }
        }
        TrustedProxies::Cidrs(nets) => {
            let trusted = |ip: &IpAddr| nets.iter().any(|n| n.contains(ip));
            let peer_ip = peer?;
            if !trusted(&peer_ip) {
                return Some(peer_ip);
            }
            let Some(forwarded) = header("x-forwarded-for") else { return Some(peer_ip) };
            let mut last = peer_ip;
            for entry in forwarded.rsplit(',') {
                match entry.trim().parse::<IpAddr>() {
                    Ok(ip) if trusted(&ip) => last = ip,
                    Ok(ip) => return Some(ip),
                    // Garbage where an address should be: nothing left of it can be trusted.
                    Err(_) => return Some(last),
                }
            }
            Some(last)
        }
    }
}

/// The key an address counts under: itself for IPv4, its /64 network for IPv6.
pub fn bucket(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn forwarding_headers_count_only_behind_trusted_proxies() {
        let peer: IpAddr = "10.0.0.5".parse().unwrap();
        let spoofed = headers(&[("x-forwarded-for", "6.6.6.6"), ("x-real-ip", "7.7.7.7")]);
        assert_eq!(client_address(&TrustedProxies::None, Some(peer), &spoofed), Some(peer));
        let nets = TrustedProxies::parse("10.0.0.0/8, 192.168.1.1").unwrap();
        let chain = headers(&[("x-forwarded-for", "6.6.6.6, 1.2.3.4, 10.0.0.9")]);
        assert_eq!(client_address(&nets, Some(peer), &chain), Some("1.2.3.4".parse().unwrap()));
        let outside: IpAddr = "8.8.8.8".parse().unwrap();
        assert_eq!(client_address(&nets, Some(outside), &chain), Some(outside), "an untrusted peer is the client");
        assert_eq!(client_address(&TrustedProxies::Railway, Some(peer), &spoofed), Some("7.7.7.7".parse().unwrap()));
        assert_eq!(client_address(&TrustedProxies::Railway, Some(peer), &HeaderMap::new()), Some(peer));
        // Issue 25, item 7: in `railway` mode nothing but one X-Real-IP with one address counts.
        let mut twice = headers(&[("x-real-ip", "7.7.7.7")]);
        twice.append("x-real-ip", HeaderValue::from_static("8.8.4.4"));
        assert_eq!(client_address(&TrustedProxies::Railway, Some(peer), &twice), Some(peer), "two headers");
        for bad in ["7.7.7.7, 8.8.4.4", "not an address", ""] {
            let h = headers(&[("x-real-ip", bad)]);
            assert_eq!(client_address(&TrustedProxies::Railway, Some(peer), &h), Some(peer), "{bad:?}");
        }
    }

    #[test]
    fn ipv6_counts_by_its_64() {
        assert_eq!(bucket("2001:db8:1:2:aaaa::1".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(bucket("2001:db8:1:2:bbbb::9".parse().unwrap()), "2001:db8:1:2::/64");
        assert_eq!(bucket("::ffff:1.2.3.4".parse().unwrap()), "1.2.3.4");
        assert_eq!(bucket("1.2.3.4".parse().unwrap()), "1.2.3.4");
    }
}
