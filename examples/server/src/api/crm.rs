//! Contacts (create, import, get), sequences (create) and enrollments (enroll, get,
//! pause, resume, stop) over JSON.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use crm_core::ids::{ContactId, EnrollmentId, SequenceId};
use crm_core::model::{Contact, Enrollment, NewContact, Sequence, SequenceStep, end_reasons};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, Scope};
use super::{ApiError, JsonBody, parse_id};
use crate::state::AppState;

/// A contact to create.
#[derive(Debug, Default, Deserialize)]
pub struct ContactInput {
    /// Given name.
    #[serde(default)]
    pub first_name: String,
    /// Family name.
    #[serde(default)]
    pub last_name: String,
    /// Email address.
    pub email: Option<String>,
    /// Phone, E.164.
    pub phone: Option<String>,
    /// Job title.
    pub title: Option<String>,
    /// IANA time zone.
    pub time_zone: Option<String>,
    /// LinkedIn profile URL.
    pub linkedin_url: Option<String>,
    /// Instagram-scoped user id.
    pub instagram_id: Option<String>,
    /// Merge fields.
    #[serde(default)]
    pub custom_fields: BTreeMap<String, String>,
}

impl From<ContactInput> for NewContact {
    fn from(c: ContactInput) -> Self {
        Self {
            first_name: c.first_name,
            last_name: c.last_name,
            email: c.email,
            phone: c.phone,
            title: c.title,
            time_zone: c.time_zone,
            linkedin_url: c.linkedin_url,
            instagram_id: c.instagram_id,
            custom_fields: c.custom_fields,
            ..Self::default()
        }
    }
}

async fn create_one(state: &AppState, caller: &Caller, input: ContactInput) -> Result<Contact, ApiError> {
    let now = state.engine.clock().now();
    let contact = Contact::create(caller.workspace_id, input.into(), now)?;
    Ok(state.engine.store().insert_contact(&contact).await?)
}

/// `POST /api/v1/contacts`.
pub async fn create_contact(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<ContactInput>,
) -> Result<(StatusCode, Json<Contact>), ApiError> {
    caller.require(Scope::ContactsWrite)?;
    let contact = create_one(&state, &caller, input).await?;
    Ok((StatusCode::CREATED, Json(contact)))
}

/// The body of an import.
#[derive(Debug, Deserialize)]
pub struct ImportBody {
    /// The contacts, at most 1000.
    pub contacts: Vec<ContactInput>,
}

/// The most contacts one import takes.
const MAX_IMPORT: usize = 1000;

/// `POST /api/v1/contacts/import`: one result per contact, in order; one failing
/// contact does not stop the others.
pub async fn import_contacts(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(body): JsonBody<ImportBody>,
) -> Result<Json<Value>, ApiError> {
    caller.require(Scope::ContactsWrite)?;
    if body.contacts.is_empty() || body.contacts.len() > MAX_IMPORT {
        return Err(ApiError::bad_request(format!(
            "contacts must hold 1 to {MAX_IMPORT} contacts"
        )));
    }
    let mut results = Vec::with_capacity(body.contacts.len());
    for input in body.contacts {
        results.push(match create_one(&state, &caller, input).await {
            Ok(contact) => json!({"ok": true, "contact": contact}),
            Err(e) => json!({"ok": false, "error": {"code": e.code, "message": e.message}}),
        });
    }
    Ok(Json(json!({ "results": results })))
}

/// `GET /api/v1/contacts/{id}`.
pub async fn get_contact(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Contact>, ApiError> {
    caller.require(Scope::ContactsRead)?;
    let id = parse_id::<ContactId>("id", &id)?;
    Ok(Json(
        state
            .engine
            .store()
            .get_contact(caller.workspace_id, id)
            .await?,
    ))
}

/// A sequence to create.
#[derive(Debug, Deserialize)]
pub struct SequenceInput {
    /// Display name.
    pub name: String,
    /// Steps in order.
    pub steps: Vec<SequenceStep>,
}

/// `POST /api/v1/sequences`.
pub async fn create_sequence(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<SequenceInput>,
) -> Result<(StatusCode, Json<Sequence>), ApiError> {
    caller.require(Scope::SequencesWrite)?;
    let now = state.engine.clock().now();
    let sequence = Sequence::create(caller.workspace_id, input.name, input.steps, now)?;
    let stored = state.engine.sequences().create(&sequence).await?;
    Ok((StatusCode::CREATED, Json(stored)))
}

/// An enrollment to make.
#[derive(Debug, Deserialize)]
pub struct EnrollInput {
    /// The contact.
    pub contact_id: String,
    /// The sequence.
    pub sequence_id: String,
}

/// `POST /api/v1/enrollments`.
pub async fn enroll(
    State(state): State<AppState>,
    caller: Caller,
    JsonBody(input): JsonBody<EnrollInput>,
) -> Result<(StatusCode, Json<Enrollment>), ApiError> {
    caller.require(Scope::SequencesWrite)?;
    let contact = parse_id::<ContactId>("contact_id", &input.contact_id)?;
    let sequence = parse_id::<SequenceId>("sequence_id", &input.sequence_id)?;
    let enrollment = state
        .engine
        .enroller()
        .enroll(caller.workspace_id, contact, sequence)
        .await?;
    Ok((StatusCode::CREATED, Json(enrollment)))
}

/// `GET /api/v1/enrollments/{id}`.
pub async fn get_enrollment(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<Enrollment>, ApiError> {
    caller.require(Scope::ContactsRead)?;
    let id = parse_id::<EnrollmentId>("id", &id)?;
    Ok(Json(
        state
            .engine
            .store()
            .get_enrollment(caller.workspace_id, id)
            .await?,
    ))
}

/// The optional body of a pause.
#[derive(Debug, Default, Deserialize)]
pub struct PauseBody {
    /// Resume by itself at this time; without it only `resume` does.
    pub until: Option<DateTime<Utc>>,
}

/// The optional body of a stop.
#[derive(Debug, Default, Deserialize)]
pub struct StopBody {
    /// A short reason code (default `manual`).
    pub reason: Option<String>,
}

/// `POST /api/v1/enrollments/{id}/{action}` with `action` one of `pause`, `resume`,
/// `stop`.
pub async fn control(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, action)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Result<Json<Enrollment>, ApiError> {
    caller.require(Scope::SequencesWrite)?;
    let id = parse_id::<EnrollmentId>("id", &id)?;
    let (ws, control) = (caller.workspace_id, &state.control);
    let empty = body.iter().all(u8::is_ascii_whitespace);
    let enrollment = match action.as_str() {
        "pause" => {
            let until = if empty {
                None
            } else {
                super::parse_json::<PauseBody>(&body)?.until
            };
            control.pause_enrollment(ws, id, until).await?
        }
        "resume" => control.resume_enrollment(ws, id).await?,
        "stop" => {
            let reason = if empty {
                None
            } else {
                super::parse_json::<StopBody>(&body)?.reason
            };
            let reason = reason.unwrap_or_else(|| end_reasons::MANUAL.to_owned());
            control.stop_enrollment(ws, id, &reason).await?
        }
        _ => return Err(ApiError::not_found("no such enrollment action")),
    };
    Ok(Json(enrollment))
}
