//! The approval inbox as a server-rendered page (askama templates compiled into the
//! binary; plain HTML forms, no JavaScript):
//!
//! | route | what |
//! |---|---|
//! | `GET /inbox/login`, `POST /inbox/login` | log in with an API key (`inbox:read`); the key goes into an HTTP-only, `SameSite=Strict` cookie |
//! | `GET /inbox` | pending items: channel, masked recipient, rendered body, confidence, age |
//! | `POST /inbox/{id}/approve`, `/edit`, `/reject` | decide (`inbox:write`), then back to the list |
//! | `POST /inbox/logout` | forget the cookie |
//!
//! Every form carries a CSRF token ([`csrf`]); a form without the right one is refused
//! with 403.

pub mod csrf;
mod pages;

use axum::Router;
use axum::http::HeaderMap;
use axum::http::header;
use axum::routing::{get, post};

use crate::state::AppState;

/// The cookie holding the logged-in API key.
pub const SESSION_COOKIE: &str = "crm_session";
/// The cookie of the login form's double-submit CSRF token.
pub const LOGIN_CSRF_COOKIE: &str = "crm_login_csrf";
/// How long a login lasts, in seconds (8 hours).
const SESSION_MAX_AGE: u32 = 8 * 3600;

/// The page's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(pages::root))
        .route("/inbox", get(pages::inbox))
        .route("/inbox/login", get(pages::login_page).post(pages::login))
        .route("/inbox/logout", post(pages::logout))
        .route("/inbox/{id}/{action}", post(pages::decide))
}

/// The value of cookie `name` in the request, if any.
#[must_use]
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty())
}

/// A `Set-Cookie` value: HTTP-only, `SameSite=Strict`, on `path`, for `max_age`
/// seconds (0 deletes it), `Secure` when configured.
#[must_use]
pub fn set_cookie(name: &str, value: &str, path: &str, max_age: u32, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{name}={value}; HttpOnly; SameSite=Strict; Path={path}; Max-Age={max_age}{secure}")
}

/// The session cookie for `token`.
#[must_use]
pub fn session_cookie(token: &str, secure: bool) -> String {
    set_cookie(SESSION_COOKIE, token, "/", SESSION_MAX_AGE, secure)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_and_written() {
        let mut headers = HeaderMap::new();
        headers.insert(header::COOKIE, "a=1; crm_session=crm_abc; b=".parse().unwrap());
        assert_eq!(cookie(&headers, SESSION_COOKIE), Some("crm_abc"));
        assert_eq!(cookie(&headers, "b"), None);
        assert_eq!(cookie(&headers, "c"), None);
        let set = session_cookie("crm_abc", true);
        assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict"));
        assert!(set.ends_with("; Secure"));
    }
}
