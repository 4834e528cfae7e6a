//! Cal.com API v2: bookings and slots.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use crm_core::secret::{SecretRef, SecretResolver, SecretString};
use crm_core::{ChannelError, EmailAddress};
use http::Method;
use serde::{Deserialize, Serialize};
use tracing::Instrument;

use super::PROVIDER;
use crate::build::BuildError;
use crate::http::{Auth, ConfigError, HttpConfig, HttpResponse, ProviderClient, send_span};

/// Cal.com's API v2 root.
pub const DEFAULT_BASE_URL: &str = "https://api.cal.com/v2";
/// The `cal-api-version` documented for `POST /v2/bookings`.
pub const DEFAULT_BOOKINGS_API_VERSION: &str = "2024-08-13";
/// The `cal-api-version` documented for `GET /v2/slots`.
pub const DEFAULT_SLOTS_API_VERSION: &str = "2024-09-04";

/// How to reach Cal.com.
#[derive(Clone)]
#[non_exhaustive]
pub struct CalComConfig {
    /// API key (`cal_...` or `cal_live_...`) or managed-user access token, by reference.
    pub api_key: SecretRef,
    /// `cal-api-version` sent to `POST /bookings`. Cal.com's current booking pages
    /// show `2026-02-25`; set it when your account uses that version.
    pub bookings_api_version: String,
    /// `cal-api-version` sent to `GET /slots`.
    pub slots_api_version: String,
    /// Base URL and timeouts.
    pub http: HttpConfig,
}

impl fmt::Debug for CalComConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalComConfig")
            .field("api_key", &"[redacted]")
            .field("bookings_api_version", &self.bookings_api_version)
            .field("slots_api_version", &self.slots_api_version)
            .field("http", &self.http)
            .finish()
    }
}

impl CalComConfig {
    /// A config for the public API with the documented versions.
    pub fn new(api_key: SecretRef) -> Result<Self, ConfigError> {
        Ok(Self {
            api_key,
            bookings_api_version: DEFAULT_BOOKINGS_API_VERSION.to_owned(),
            slots_api_version: DEFAULT_SLOTS_API_VERSION.to_owned(),
            http: HttpConfig::new(DEFAULT_BASE_URL)?,
        })
    }

    /// Sends `version` as `cal-api-version` to `POST /bookings`.
    #[must_use]
    pub fn with_bookings_api_version(mut self, version: impl Into<String>) -> Self {
        self.bookings_api_version = version.into();
        self
    }

    /// Sends `version` as `cal-api-version` to `GET /slots`.
    #[must_use]
    pub fn with_slots_api_version(mut self, version: impl Into<String>) -> Self {
        self.slots_api_version = version.into();
        self
    }

    /// Uses `http` (another base URL, other timeouts).
    #[must_use]
    pub fn with_http(mut self, http: HttpConfig) -> Self {
        self.http = http;
        self
    }
}

/// Which event type to book.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventTypeRef {
    /// `eventTypeId`.
    Id(i64),
    /// `eventTypeSlug` + `username` (+ `organizationSlug`).
    UserSlug {
        /// Event type slug.
        slug: String,
        /// Owner's user name.
        username: String,
        /// Organization slug, for organization members.
        organization_slug: Option<String>,
    },
    /// `eventTypeSlug` + `teamSlug`.
    TeamSlug {
        /// Event type slug.
        slug: String,
        /// Team slug.
        team_slug: String,
    },
}

/// The person booked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attendee {
    /// Name.
    pub name: String,
    /// Email.
    pub email: EmailAddress,
    /// IANA time zone, e.g. `Europe/Berlin`.
    pub time_zone: String,
    /// Phone (E.164), if the event type asks for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone_number: Option<String>,
    /// Language code, e.g. `en`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
}

/// A booking to create.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct BookingRequest {
    /// Start time.
    pub start: DateTime<Utc>,
    /// Event type.
    pub event_type: EventTypeRef,
    /// Attendee.
    pub attendee: Attendee,
    /// Guest emails.
    pub guests: Vec<EmailAddress>,
    /// Length, for event types with several durations.
    pub length_in_minutes: Option<u32>,
    /// Free metadata stored with the booking (e.g. the CRM contact id).
    pub metadata: serde_json::Map<String, serde_json::Value>,
}

impl BookingRequest {
    /// A booking of `event_type` at `start` for `attendee`.
    #[must_use]
    pub fn new(start: DateTime<Utc>, event_type: EventTypeRef, attendee: Attendee) -> Self {
        Self {
            start,
            event_type,
            attendee,
            guests: Vec::new(),
            length_in_minutes: None,
            metadata: serde_json::Map::new(),
        }
    }

    /// Adds metadata.
    #[must_use]
    pub fn with_metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// Sets the length.
    #[must_use]
    pub fn with_length_in_minutes(mut self, minutes: u32) -> Self {
        self.length_in_minutes = Some(minutes);
        self
    }

    /// Adds a guest.
    #[must_use]
    pub fn with_guest(mut self, guest: EmailAddress) -> Self {
        self.guests.push(guest);
        self
    }

    /// The JSON body of `POST /v2/bookings`.
    #[must_use]
    pub fn to_json(&self) -> serde_json::Value {
        let mut body = serde_json::Map::new();
        body.insert(
            "start".into(),
            self.start.to_rfc3339_opts(SecondsFormat::Secs, true).into(),
        );
        match &self.event_type {
            EventTypeRef::Id(id) => {
                body.insert("eventTypeId".into(), (*id).into());
            }
            EventTypeRef::UserSlug {
                slug,
                username,
                organization_slug,
            } => {
                body.insert("eventTypeSlug".into(), slug.clone().into());
                body.insert("username".into(), username.clone().into());
                if let Some(org) = organization_slug {
                    body.insert("organizationSlug".into(), org.clone().into());
                }
            }
            EventTypeRef::TeamSlug { slug, team_slug } => {
                body.insert("eventTypeSlug".into(), slug.clone().into());
                body.insert("teamSlug".into(), team_slug.clone().into());
            }
        }
        body.insert(
            "attendee".into(),
            serde_json::to_value(&self.attendee).unwrap_or_default(),
        );
        if !self.guests.is_empty() {
            let guests = self.guests.iter().map(|g| g.as_str().into()).collect();
            body.insert("guests".into(), serde_json::Value::Array(guests));
        }
        if let Some(minutes) = self.length_in_minutes {
            body.insert("lengthInMinutes".into(), minutes.into());
        }
        if !self.metadata.is_empty() {
            body.insert("metadata".into(), self.metadata.clone().into());
        }
        serde_json::Value::Object(body)
    }
}

/// A created booking.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Booking {
    /// Numeric id.
    pub id: Option<i64>,
    /// Stable uid (also in webhooks).
    pub uid: Option<String>,
    /// Title.
    pub title: Option<String>,
    /// Status, e.g. `accepted`.
    pub status: Option<String>,
    /// Start time.
    pub start: Option<DateTime<Utc>>,
    /// End time.
    pub end: Option<DateTime<Utc>>,
    /// Video call URL, if any.
    pub meeting_url: Option<String>,
}

/// The slots to list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotsQuery {
    /// Event type id.
    pub event_type_id: i64,
    /// First day.
    pub start: NaiveDate,
    /// Last day.
    pub end: NaiveDate,
    /// Time zone the slots are computed in.
    pub time_zone: String,
}

/// A free slot.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Slot {
    /// Start time, as Cal.com writes it.
    pub start: String,
}

#[derive(Deserialize)]
struct Envelope<T> {
    status: String,
    data: Option<T>,
}

/// A Cal.com API v2 client.
pub struct CalComClient {
    client: ProviderClient,
    api_key: SecretString,
    bookings_api_version: String,
    slots_api_version: String,
}

impl fmt::Debug for CalComClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CalComClient")
            .field("client", &self.client)
            .field("api_key", &"[redacted]")
            .field("bookings_api_version", &self.bookings_api_version)
            .field("slots_api_version", &self.slots_api_version)
            .finish()
    }
}

fn unwrap_envelope<T: serde::de::DeserializeOwned>(
    response: &HttpResponse,
) -> Result<T, ChannelError> {
    if !response.is_success() {
        return Err(response.channel_error(PROVIDER));
    }
    let envelope: Envelope<T> = response.channel_json(PROVIDER)?;
    match envelope.data {
        Some(data) if envelope.status == "success" => Ok(data),
        _ => Err(ChannelError::Permanent {
            provider: PROVIDER,
            reason: format!(
                "status {}: {}",
                envelope.status,
                response.error_detail().summary()
            ),
        }),
    }
}

impl CalComClient {
    /// A client for `config`, its API key resolved through `secrets` now (build a new
    /// one to pick up a rotated API key).
    pub async fn connect(
        config: CalComConfig,
        secrets: &dyn SecretResolver,
    ) -> Result<Self, BuildError> {
        let api_key = secrets.resolve(&config.api_key).await?;
        Ok(Self::new(config, api_key)?)
    }

    /// A client for `config` with `api_key`, the value behind `config.api_key` that the
    /// caller resolved itself.
    pub fn new(config: CalComConfig, api_key: SecretString) -> Result<Self, ConfigError> {
        Ok(Self {
            client: ProviderClient::new(PROVIDER, &config.http)?,
            api_key,
            bookings_api_version: config.bookings_api_version,
            slots_api_version: config.slots_api_version,
        })
    }

    /// Creates a booking: `POST /bookings`. Errors are classified as for channel
    /// sends (401/403 `Auth`, 429 `RateLimited`, 5xx `Retryable`, other 4xx such as a
    /// taken slot `Permanent`).
    pub async fn create_booking(&self, booking: &BookingRequest) -> Result<Booking, ChannelError> {
        let span = send_span(PROVIDER, "create_booking", booking.attendee.email.as_str());
        async {
            let request = self
                .client
                .request(Method::POST, &["bookings"])
                .header("cal-api-version", &self.bookings_api_version)
                .json(&booking.to_json());
            let response = self
                .client
                .execute_for_channel(Auth::Bearer(&self.api_key).apply(request))
                .await?;
            unwrap_envelope(&response)
        }
        .instrument(span)
        .await
    }

    /// Free slots per day: `GET /slots?eventTypeId=&start=&end=&timeZone=`.
    pub async fn slots(
        &self,
        query: &SlotsQuery,
    ) -> Result<BTreeMap<String, Vec<Slot>>, ChannelError> {
        let request = self
            .client
            .request(Method::GET, &["slots"])
            .header("cal-api-version", &self.slots_api_version)
            .query(&[
                ("eventTypeId", query.event_type_id.to_string()),
                ("start", query.start.to_string()),
                ("end", query.end.to_string()),
                ("timeZone", query.time_zone.clone()),
            ]);
        let response = self
            .client
            .execute_for_channel(Auth::Bearer(&self.api_key).apply(request))
            .await?;
        unwrap_envelope(&response)
    }
}
