//! `API_TOKEN`: when set, every endpoint but `/health` and `/metrics` requires
//! `Authorization: Bearer <token>`. The comparison takes the same time whatever the guess, so
//! the token cannot be found a byte at a time.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::JsonError;

/// A secret that never prints: `Debug` and `Display` show `***`.
#[derive(Clone)]
pub struct ApiToken(String);

impl ApiToken {
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// True when `offered` is the token. Both sides are hashed first, so the comparison is of
    /// equal lengths and takes the same time for every wrong guess.
    pub fn matches(&self, offered: &str) -> bool {
        let want = Sha256::digest(self.0.as_bytes());
        let got = Sha256::digest(offered.as_bytes());
        want.ct_eq(&got).into()
    }
}

impl std::str::FromStr for ApiToken {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Err("the token must not be empty".into());
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Debug for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiToken(***)")
    }
}

impl fmt::Display for ApiToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Paths anyone may read: what supervisors and scrapers need.
const OPEN_PATHS: [&str; 2] = ["/health", "/metrics"];

pub async fn require_token(State(token): State<Option<ApiToken>>, request: Request, next: Next) -> Response {
    let Some(token) = token else { return next.run(request).await };
    if OPEN_PATHS.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match offered {
        Some(offered) if token.matches(offered.trim()) => next.run(request).await,
        _ => {
            let mut response = JsonError::new(
                StatusCode::UNAUTHORIZED,
                "this endpoint needs Authorization: Bearer <API_TOKEN>",
            )
            .into_response();
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_token_matches_and_it_never_prints() {
        let token: ApiToken = "s3cret".parse().unwrap();
        assert!(token.matches("s3cret"));
        assert!(!token.matches("s3cre"));
        assert!(!token.matches(""));
        assert!(!format!("{token:?} {token}").contains("s3cret"));
        assert!("  ".parse::<ApiToken>().is_err());
    }
}
