//! The JSON API under `/api/v1`: contacts, sequences, enrollments and the approval
//! inbox, authenticated by API key (see the crate README for every route).

pub mod auth;
pub mod crm;
mod error;
pub mod inbox;
pub mod keys;

use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use serde::de::DeserializeOwned;

pub use error::ApiError;

use crate::state::AppState;

/// The API's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/contacts", post(crm::create_contact))
        .route("/api/v1/contacts/import", post(crm::import_contacts))
        .route("/api/v1/contacts/{id}", get(crm::get_contact))
        .route("/api/v1/sequences", post(crm::create_sequence))
        .route("/api/v1/enrollments", post(crm::enroll))
        .route("/api/v1/enrollments/{id}", get(crm::get_enrollment))
        .route("/api/v1/enrollments/{id}/{action}", post(crm::control))
        .route("/api/v1/inbox", get(inbox::list))
        .route("/api/v1/inbox/batch-approve", post(inbox::batch_approve))
        .route("/api/v1/inbox/{id}", get(inbox::get))
        .route("/api/v1/inbox/{id}/approve", post(inbox::approve))
        .route("/api/v1/inbox/{id}/reject", post(inbox::reject))
}

/// A JSON body whose rejection is an [`ApiError`] (400 `malformed_json`, 415
/// `unsupported_media_type`, 413 `too_large`) instead of axum's plain text.
#[derive(Debug, Clone)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(json_rejection(&rejection)),
        }
    }
}

fn json_rejection(rejection: &JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::MissingJsonContentType(_) => ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "send Content-Type: application/json",
        ),
        other if other.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", "the body is too large")
        }
        other => ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", other.body_text()),
    }
}

/// Parses an optional body's bytes as JSON.
///
/// # Errors
/// 400 `malformed_json`.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(StatusCode::BAD_REQUEST, "malformed_json", e.to_string())
    })
}

/// Parses an id from a path or body field.
///
/// # Errors
/// 400 `invalid_request` naming the field.
pub fn parse_id<T: std::str::FromStr>(field: &str, raw: &str) -> Result<T, ApiError> {
    raw.trim()
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{field} is not a valid id")))
}
