//! The approval inbox over JSON: list pending with paging, get, approve (optionally
//! with an edited text), reject with a reason, batch approve with per-item results.

use axum::Json;
use axum::extract::{Path, Query, State};
use crm_core::ids::ApprovalItemId;
use crm_core::store::Page;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::auth::{Caller, Scope};
use super::{ApiError, JsonBody, parse_id};
use crate::inbox_view::InboxEntry;
use crate::state::AppState;

/// `?limit=&after=` of the listing.
#[derive(Debug, Deserialize)]
pub struct ListQuery {
    /// Page size, 1 to 100 (default 50).
    pub limit: Option<u32>,
    /// The last item id of the previous page.
    pub after: Option<String>,
}

/// One page of pending items.
#[derive(Debug, Serialize)]
pub struct ListAnswer {
    /// The items, oldest first.
    pub items: Vec<InboxEntry>,
    /// The `after` of the next page, when this one was full.
    pub next_after: Option<ApprovalItemId>,
}

/// The largest page of the listing.
const MAX_PAGE: u32 = 100;

/// `GET /api/v1/inbox`.
pub async fn list(
    State(state): State<AppState>,
    caller: Caller,
    Query(query): Query<ListQuery>,
) -> Result<Json<ListAnswer>, ApiError> {
    caller.require(Scope::InboxRead)?;
    let limit = query.limit.unwrap_or(50);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(ApiError::bad_request(format!(
            "limit must be 1 to {MAX_PAGE}"
        )));
    }
    let page = match query.after.as_deref() {
        Some(after) => Page::after(parse_id::<ApprovalItemId>("after", after)?, limit),
        None => Page::first(limit),
    };
    let ws = caller.workspace_id;
    let items = state.engine.inbox().list_pending(ws, page).await?;
    let next_after = (items.len() == limit as usize)
        .then(|| items.last().map(|i| i.id))
        .flatten();
    let now = state.engine.clock().now();
    let items = InboxEntry::load_all(&**state.engine.store(), ws, items, now).await;
    Ok(Json(ListAnswer { items, next_after }))
}

/// `GET /api/v1/inbox/{id}`.
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<InboxEntry>, ApiError> {
    caller.require(Scope::InboxRead)?;
    let id = parse_id::<ApprovalItemId>("id", &id)?;
    let ws = caller.workspace_id;
    let item = state.engine.inbox().get(ws, id).await?;
    let now = state.engine.clock().now();
    Ok(Json(InboxEntry::load(&**state.engine.store(), ws, item, now).await))
}

/// The body of an approval: with `body`, edit then approve.
#[derive(Debug, Default, Deserialize)]
pub struct ApproveBody {
    /// The text to send instead of the draft.
    pub body: Option<String>,
}

/// `POST /api/v1/inbox/{id}/approve`.
pub async fn approve(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Json<InboxEntry>, ApiError> {
    caller.require(Scope::InboxWrite)?;
    let id = parse_id::<ApprovalItemId>("id", &id)?;
    // The body is optional: empty is a plain approval.
    let edit = if body.iter().all(u8::is_ascii_whitespace) {
        None
    } else {
        super::parse_json::<ApproveBody>(&body)?.body
    };
    decide(&state, &caller, id, Decision::Approve(edit)).await
}

/// The body of a rejection.
#[derive(Debug, Deserialize)]
pub struct RejectBody {
    /// Why (required, not blank).
    pub reason: String,
}

/// `POST /api/v1/inbox/{id}/reject`.
pub async fn reject(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<RejectBody>,
) -> Result<Json<InboxEntry>, ApiError> {
    caller.require(Scope::InboxWrite)?;
    let id = parse_id::<ApprovalItemId>("id", &id)?;
    decide(&state, &caller, id, Decision::Reject(body.reason)).await
}

/// What a person decides about one item.
#[derive(Debug, Clone)]
pub enum Decision {
    /// Approve, with the edited text if any.
    Approve(Option<String>),
    /// Reject for this reason.
    Reject(String),
}

/// Applies `decision` to item `id` as `caller`, and answers the item as stored.
///
/// # Errors
/// The inbox's refusal as an [`ApiError`].
pub async fn decide(
    state: &AppState,
    caller: &Caller,
    id: ApprovalItemId,
    decision: Decision,
) -> Result<Json<InboxEntry>, ApiError> {
    let (ws, user, inbox) = (caller.workspace_id, caller.user, state.engine.inbox());
    let item = match decision {
        Decision::Approve(Some(text)) => inbox.edit_and_approve(ws, id, user, &text).await?,
        Decision::Approve(None) => inbox.approve(ws, id, user).await?,
        Decision::Reject(reason) => inbox.reject(ws, id, user, &reason).await?,
    };
    let now = state.engine.clock().now();
    Ok(Json(InboxEntry::load(&**state.engine.store(), ws, item, now).await))
}

/// The body of a batch approval.
#[derive(Debug, Deserialize)]
pub struct BatchBody {
    /// The items to approve, in order (at most 100).
    pub ids: Vec<String>,
}

/// `POST /api/v1/inbox/batch-approve`: one result per id, in order.
pub async fn batch_approve(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<BatchBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::InboxWrite)?;
    if body.ids.is_empty() || body.ids.len() > MAX_PAGE as usize {
        return Err(ApiError::bad_request(format!(
            "ids must hold 1 to {MAX_PAGE} item ids"
        )));
    }
    let ids = body
        .ids
        .iter()
        .map(|raw| parse_id::<ApprovalItemId>("ids", raw))
        .collect::<Result<Vec<_>, _>>()?;
    let ws = caller.workspace_id;
    let results = state
        .engine
        .inbox()
        .batch_approve(ws, &ids, caller.user)
        .await;
    let now = state.engine.clock().now();
    let mut out = Vec::with_capacity(results.len());
    for (id, result) in results {
        out.push(match result {
            Ok(item) => {
                let entry = InboxEntry::load(&**state.engine.store(), ws, item, now).await;
                json!({"id": id, "ok": true, "item": entry})
            }
            Err(e) => {
                let e = ApiError::from(e);
                json!({"id": id, "ok": false, "error": {"code": e.code, "message": e.message}})
            }
        });
    }
    Ok(Json(json!({ "results": out })))
}
