//! The page handlers and their templates.

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use crm_core::ids::ApprovalItemId;
use crm_core::store::Page;
use serde::Deserialize;

use super::csrf::{self, random_token};
use super::{LOGIN_CSRF_COOKIE, SESSION_COOKIE, cookie, session_cookie, set_cookie};
use crate::api::auth::{Caller, Scope, authenticate};
use crate::api::inbox::{Decision, decide as decide_item};
use crate::api::{ApiError, parse_id};
use crate::inbox_view::InboxEntry;
use crate::state::AppState;

/// Items per page.
const PAGE_SIZE: u32 = 50;

#[derive(Template)]
#[template(path = "login.html")]
struct LoginTemplate {
    csrf: String,
    error: Option<String>,
}

#[derive(Template)]
#[template(path = "inbox.html")]
struct InboxTemplate {
    csrf: String,
    items: Vec<InboxEntry>,
    flash: Option<&'static str>,
    error: Option<String>,
    next_after: Option<ApprovalItemId>,
}

fn render(template: &impl Template, status: StatusCode) -> Response {
    match template.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => ApiError::internal("template", &e).into_response(),
    }
}

/// `GET /`: the inbox.
pub(super) async fn root() -> Redirect {
    Redirect::to("/inbox")
}

/// The login form with a fresh double-submit token (and its cookie).
fn login_form(state: &AppState, error: Option<String>, status: StatusCode) -> Response {
    let token = random_token();
    let mut response = render(
        &LoginTemplate {
            csrf: token.clone(),
            error,
        },
        status,
    );
    let cookie = set_cookie(LOGIN_CSRF_COOKIE, &token, "/inbox/login", 600, state.config.cookie_secure);
    if let Ok(value) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

/// `GET /inbox/login`.
pub(super) async fn login_page(State(state): State<AppState>) -> Response {
    login_form(&state, None, StatusCode::OK)
}

/// The login form's fields.
#[derive(Debug, Deserialize)]
pub(super) struct LoginForm {
    api_key: String,
    csrf: String,
}

/// `POST /inbox/login`.
pub(super) async fn login(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_CSRF_COOKIE).unwrap_or_default();
    if !csrf::equal(expected, &form.csrf) {
        let why = "The form expired; please log in again.".to_owned();
        return login_form(&state, Some(why), StatusCode::FORBIDDEN);
    }
    let token = form.api_key.trim();
    let caller = match authenticate(&state.auth, token).await {
        Ok(caller) => caller,
        Err(e) => return login_form(&state, Some(e.message), e.status),
    };
    if let Err(e) = caller.require(Scope::InboxRead) {
        return login_form(&state, Some(e.message), e.status);
    }
    let mut response = Redirect::to("/inbox").into_response();
    let headers = response.headers_mut();
    for value in [
        session_cookie(token, state.config.cookie_secure),
        set_cookie(LOGIN_CSRF_COOKIE, "", "/inbox/login", 0, state.config.cookie_secure),
    ] {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.append(header::SET_COOKIE, value);
        }
    }
    response
}

/// The logged-in caller and the session token, or where to send the browser.
async fn session(state: &AppState, headers: &HeaderMap) -> Result<(Caller, String), Response> {
    let Some(token) = cookie(headers, SESSION_COOKIE) else {
        return Err(Redirect::to("/inbox/login").into_response());
    };
    match authenticate(&state.auth, token).await {
        Ok(caller) => Ok((caller, token.to_owned())),
        Err(e) if e.status == StatusCode::UNAUTHORIZED => {
            Err(login_form(state, Some(e.message), StatusCode::UNAUTHORIZED))
        }
        Err(e) => Err(e.into_response()),
    }
}

/// `?after=&done=&error=` of the list.
#[derive(Debug, Deserialize)]
pub(super) struct InboxQuery {
    after: Option<String>,
    done: Option<String>,
    error: Option<String>,
}

/// The message after a decision; only known codes are shown (never reflected text).
fn flash_of(done: Option<&str>) -> Option<&'static str> {
    match done? {
        "approved" => Some("Approved: the message is on its way."),
        "edited" => Some("Edited and approved: your text is on its way."),
        "rejected" => Some("Rejected: the message will not be sent."),
        _ => None,
    }
}

fn error_of(code: Option<&str>) -> Option<String> {
    let text = match code? {
        "forbidden" => "Your key may not decide approvals (it needs inbox:write).",
        "already_decided" => "Someone decided that item first.",
        "not_found" => "That item no longer exists.",
        "validation_failed" => "A reason (to reject) or a text (to edit) is required.",
        "message_busy" => "The item is being processed; try again in a moment.",
        "rate_limited" => "Too many requests; wait a minute.",
        _ => "The decision failed; try again.",
    };
    Some(text.to_owned())
}

/// `GET /inbox`.
pub(super) async fn inbox(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<InboxQuery>,
) -> Response {
    let (caller, token) = match session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if let Err(e) = caller.require(Scope::InboxRead) {
        return e.into_response();
    }
    let page = match query.after.as_deref().map(|a| parse_id::<ApprovalItemId>("after", a)) {
        Some(Ok(after)) => Page::after(after, PAGE_SIZE),
        Some(Err(e)) => return e.into_response(),
        None => Page::first(PAGE_SIZE),
    };
    let ws = caller.workspace_id;
    let items = match state.engine.inbox().list_pending(ws, page).await {
        Ok(items) => items,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let next_after = (items.len() == PAGE_SIZE as usize)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    let now = state.engine.clock().now();
    let items = InboxEntry::load_all(&**state.engine.store(), ws, items, now).await;
    let template = InboxTemplate {
        csrf: state.csrf.token(&token),
        items,
        flash: flash_of(query.done.as_deref()),
        error: error_of(query.error.as_deref()),
        next_after,
    };
    let mut response = render(&template, StatusCode::OK);
    // The page shows personal data: never from a shared cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The fields of the decision forms.
#[derive(Debug, Deserialize)]
pub(super) struct DecisionForm {
    csrf: String,
    body: Option<String>,
    reason: Option<String>,
}

/// `POST /inbox/{id}/{approve|edit|reject}`.
pub(super) async fn decide(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path((id, action)): Path<(String, String)>,
    Form(form): Form<DecisionForm>,
) -> Response {
    let (caller, token) = match session(&state, &headers).await {
        Ok(session) => session,
        Err(response) => return response,
    };
    if !state.csrf.verify(&token, &form.csrf) {
        return ApiError::new(StatusCode::FORBIDDEN, "csrf", "the form's CSRF token is wrong")
            .into_response();
    }
    let id = match parse_id::<ApprovalItemId>("id", &id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    let (decision, done) = match action.as_str() {
        "approve" => (Decision::Approve(None), "approved"),
        "edit" => (Decision::Approve(Some(form.body.unwrap_or_default())), "edited"),
        "reject" => (Decision::Reject(form.reason.unwrap_or_default()), "rejected"),
        _ => return ApiError::not_found("no such action").into_response(),
    };
    let outcome = match caller.require(Scope::InboxWrite) {
        Ok(()) => decide_item(&state, &caller, id, decision).await.map(|_| ()),
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => Redirect::to(&format!("/inbox?done={done}")).into_response(),
        Err(e) => Redirect::to(&format!("/inbox?error={}", e.code)).into_response(),
    }
}

/// The logout form's field.
#[derive(Debug, Deserialize)]
pub(super) struct LogoutForm {
    csrf: String,
}

/// `POST /inbox/logout`.
pub(super) async fn logout(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<LogoutForm>,
) -> Response {
    let token = cookie(&headers, SESSION_COOKIE).unwrap_or_default();
    if !state.csrf.verify(token, &form.csrf) {
        return ApiError::new(StatusCode::FORBIDDEN, "csrf", "the form's CSRF token is wrong")
            .into_response();
    }
    let mut response = Redirect::to("/inbox/login").into_response();
    let clear = set_cookie(SESSION_COOKIE, "", "/", 0, state.config.cookie_secure);
    if let Ok(value) = HeaderValue::from_str(&clear) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
