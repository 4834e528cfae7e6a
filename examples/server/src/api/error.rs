//! [`ApiError`]: every failure of the HTTP surface as a status and a JSON body with a
//! stable code, never a stack trace, a store's or a provider's raw error.
//!
//! ```json
//! {"error": {"code": "not_found", "message": "approval item 0190... not found"}}
//! ```

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use crm_core::error::{StoreError, StoreErrorKind, ValidationError};
use crm_core::outreach::approvals::InboxError;
use crm_core::outreach::control::ControlError;
use crm_core::outreach::enroll::{DefinitionError, EnrollError};
use serde_json::json;

/// An HTTP error answer: status, stable code, a human message, and optional details.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A stable, machine-readable code (`not_found`, `forbidden`, ...).
    pub code: &'static str,
    /// A message for people; never secrets, addresses or raw backend errors.
    pub message: String,
    /// Extra structured detail (conflicts of an enrollment, the field at fault).
    pub details: Option<serde_json::Value>,
    /// Seconds to put in `Retry-After`.
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    #[must_use]
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    /// Adds structured details.
    #[must_use]
    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = Some(details);
        self
    }

    /// Adds a `Retry-After` of `seconds`.
    #[must_use]
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    /// 400 `invalid_request`.
    #[must_use]
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// 404 `not_found`.
    #[must_use]
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 500 `internal`, logging the cause (ids and kinds only) for the operator.
    #[must_use]
    pub fn internal(context: &str, error: &dyn std::error::Error) -> Self {
        tracing::error!(context, error = %error, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the request failed; see the server log",
        )
    }

    /// 503 `unavailable`: a retryable backend failure.
    #[must_use]
    pub fn unavailable(context: &str, error: &dyn std::error::Error) -> Self {
        tracing::warn!(context, error = %error, "backend unavailable");
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "a backend is unavailable; try again shortly",
        )
        .with_retry_after(1)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({"code": self.code, "message": self.message});
        if let Some(details) = self.details {
            body["details"] = details;
        }
        let mut response = (self.status, Json(json!({ "error": body }))).into_response();
        if let Some(seconds) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&seconds.to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        response
    }
}

impl From<ValidationError> for ApiError {
    fn from(e: ValidationError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
            e.to_string(),
        )
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e.kind() {
            StoreErrorKind::NotFound => Self::not_found(e.to_string()),
            StoreErrorKind::Conflict => Self::new(StatusCode::CONFLICT, "conflict", e.to_string()),
            _ if matches!(e, StoreError::Invalid(_)) => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                e.to_string(),
            ),
            _ if e.is_retryable() => Self::unavailable("store", &e),
            _ => Self::internal("store", &e),
        }
    }
}

impl From<InboxError> for ApiError {
    fn from(e: InboxError) -> Self {
        match e {
            InboxError::NotFound { .. } => Self::not_found(e.to_string()),
            InboxError::Forbidden { .. } => {
                Self::new(StatusCode::FORBIDDEN, "forbidden", e.to_string())
            }
            InboxError::AlreadyDecided { status } => {
                Self::new(StatusCode::CONFLICT, "already_decided", e.to_string())
                    .with_details(json!({ "status": status.as_str() }))
            }
            InboxError::Invalid(v) => v.into(),
            InboxError::MessageBusy { .. } => {
                Self::new(StatusCode::CONFLICT, "message_busy", e.to_string()).with_retry_after(1)
            }
            InboxError::Store(s) => s.into(),
            other => Self::internal("inbox", &other),
        }
    }
}

impl From<EnrollError> for ApiError {
    fn from(e: EnrollError) -> Self {
        if !e.conflicts().is_empty() {
            let conflicts: Vec<String> = e.conflicts().iter().map(ToString::to_string).collect();
            return Self::new(StatusCode::CONFLICT, "enrollment_conflict", e.to_string())
                .with_details(json!({ "conflicts": conflicts }));
        }
        match e {
            EnrollError::Store(s) => s.into(),
            other if other.is_retryable() => Self::unavailable("enroll", &other),
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "enrollment_refused",
                other.to_string(),
            ),
        }
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        match e {
            ControlError::Store(s) => s.into(),
            other if other.is_retryable() => Self::unavailable("control", &other),
            other => Self::new(
                StatusCode::CONFLICT,
                "invalid_transition",
                other.to_string(),
            ),
        }
    }
}

impl From<DefinitionError> for ApiError {
    fn from(e: DefinitionError) -> Self {
        match e {
            DefinitionError::Store(s) => s.into(),
            other if other.is_retryable() => Self::unavailable("sequence", &other),
            other => Self::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                other.to_string(),
            ),
        }
    }
}
