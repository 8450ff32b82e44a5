//! `API_TOKEN`: when set, every endpoint but `/health` and `/metrics` requires
//! `Authorization: Bearer <token>`. The comparison takes the same time whatever the guess, so
//! the token cannot be found a byte at a time.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::JsonError;

/// A secret that never prints: `Debug` and `Display` show `***`.
#[derive(Clone)]
pub struct ApiToken {
    secret: String,
    /// The console's session cookie for this token (see [`COOKIE`]), made once.
    session: String,
}

impl ApiToken {
    pub fn expose(&self) -> &str {
        &self.secret
    }

    /// True when `offered` is the token. Both sides are hashed first, so the comparison is of
    /// equal lengths and takes the same time for every wrong guess.
    pub fn matches(&self, offered: &str) -> bool {
        let want = Sha256::digest(self.secret.as_bytes());
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
        let digest = Sha256::digest(format!("sagaflow-console-session:{s}").as_bytes());
        let session = digest.iter().map(|b| format!("{b:02x}")).collect();
        Ok(Self { secret: s.to_owned(), session })
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

/// Where a browser trades the token for a session cookie (`POST`, JSON `{"token": ...}`), or
/// drops it (`DELETE`).
pub const SESSION_PATH: &str = "/console/session";
/// The cookie a browser shows instead of the header: a browser cannot put a header on a page
/// load or an `EventSource`. It holds a digest of the token, never the token; it is `HttpOnly`
/// (no script reads it) and `SameSite=Strict` (no other site's page sends it).
const COOKIE: &str = "sagaflow_session";

pub async fn require_token(State(token): State<Option<ApiToken>>, request: Request, next: Next) -> Response {
    let Some(token) = token else { return next.run(request).await };
    let path = request.uri().path();
    if OPEN_PATHS.contains(&path) {
        return next.run(request).await;
    }
    if path == SESSION_PATH {
        return session(&token, request).await;
    }
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .is_some_and(|offered| token.matches(offered.trim()));
    if bearer || has_session(&token, &request) {
        return next.run(request).await;
    }
    if wants_a_page(&request) {
        // A person at a browser: ask for the token (the page trades it for the cookie).
        let page = LOGIN_PAGE.to_owned();
        let mut response = (StatusCode::UNAUTHORIZED, axum::response::Html(page)).into_response();
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        return response;
    }
    let mut response =
        JsonError::new(StatusCode::UNAUTHORIZED, "this endpoint needs Authorization: Bearer <API_TOKEN>")
            .into_response();
    response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

fn has_session(token: &ApiToken, request: &Request) -> bool {
    let want = &token.session;
    request
        .headers()
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().strip_prefix(COOKIE)?.strip_prefix('='))
        .any(|offered| want.as_bytes().ct_eq(offered.as_bytes()).into())
}

/// A browser loading a console page (not a script asking for JSON or a fragment).
fn wants_a_page(request: &Request) -> bool {
    let path = request.uri().path();
    let page = path == "/" || path.starts_with("/console/");
    let fragment = request.headers().contains_key("hx-request");
    page && accepts_html(request.headers()) && !fragment
}

/// The request takes HTML: a browser loading a page.
pub fn accepts_html(headers: &HeaderMap) -> bool {
    headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/html"))
}

#[derive(serde::Deserialize)]
struct Login {
    token: String,
}

/// `POST /console/session` sets the cookie when the token is right; `DELETE` clears it.
async fn session(token: &ApiToken, request: Request) -> Response {
    let clear = format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0");
    if request.method() == axum::http::Method::DELETE {
        return (StatusCode::NO_CONTENT, [(header::SET_COOKIE, clear)]).into_response();
    }
    if request.method() != axum::http::Method::POST {
        return JsonError::new(StatusCode::METHOD_NOT_ALLOWED, "POST the token, or DELETE the session")
            .into_response();
    }
    if !super::errors::is_json(request.headers().get(header::CONTENT_TYPE)) {
        return JsonError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, "send the token as application/json")
            .into_response();
    }
    let body = axum::body::to_bytes(request.into_body(), 4096).await.unwrap_or_default();
    match serde_json::from_slice::<Login>(&body) {
        Ok(login) if token.matches(login.token.trim()) => {
            let cookie = format!("{COOKIE}={}; Path=/; HttpOnly; SameSite=Strict", token.session);
            (StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response()
        }
        Ok(_) => JsonError::new(StatusCode::UNAUTHORIZED, "that is not the API token").into_response(),
        Err(_) => {
            JsonError::new(StatusCode::BAD_REQUEST, "send {\"token\": \"...\"} as JSON").into_response()
        }
    }
}

/// Asks for the token once; the script trades it for the session cookie and reloads. All of
/// it is inline: without the token nothing else is served, the console's own files included.
const LOGIN_PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>sagaflow: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body { margin: 0; background: #f6f7f9; color: #1d2330; font: 14px/1.45 system-ui, sans-serif; }
main { max-width: 420px; margin: 80px auto; background: #fff; padding: 24px; border-radius: 8px; border: 1px solid #e2e5eb; }
form { display: flex; gap: 8px; } input { flex: 1; }
input, button { font: inherit; padding: 5px 8px; border: 1px solid #e2e5eb; border-radius: 6px; }
button { background: #3056d3; color: #fff; border-color: #3056d3; cursor: pointer; }
.error { color: #c0392b; }
</style></head>
<body><main>
<h1>sagaflow</h1>
<p>This system has an API token (<code>API_TOKEN</code>). Enter it once; this browser keeps a session cookie.</p>
<form id="login"><input id="token" type="password" autocomplete="current-password" placeholder="API token" autofocus required>
<button type="submit">Open the console</button></form>
<p id="login-error" class="error" hidden></p>
</main>
<script>
document.getElementById("login").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("login-error");
  const response = await fetch("/console/session", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ token: document.getElementById("token").value }),
  });
  if (response.ok) {
    location.reload();
  } else {
    const body = await response.json().catch(() => ({}));
    error.textContent = body.error || `sign-in failed (${response.status})`;
    error.hidden = false;
  }
});
</script></body></html>
"#;

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

    #[test]
    fn the_session_cookie_is_a_digest_not_the_token() {
        let token: ApiToken = "s3cret".parse().unwrap();
        let session = &token.session;
        assert_eq!(session.len(), 64);
        assert!(!session.contains("s3cret"));
        let other: ApiToken = "other".parse().unwrap();
        assert_ne!(*session, other.session);
    }
}
