//! A loopback stand-in for Resend's send API, served from the test process.
//!
//! It takes `POST /emails` the way crm-channels' Resend adapter sends it (bearer key,
//! `Idempotency-Key` header, `{from, to: [..], subject, text}`) and answers as Resend
//! documents: `{"id": ..}` on success; the same key with the same payload returns the
//! first email's id (a retry is not a second email); the same key with another payload
//! is 409 `invalid_idempotent_request`; a key whose first request is still being
//! answered is 409 `concurrent_idempotent_requests`; a missing or wrong key is 401.
//!
//! Every request that reached the handler is recorded, duplicates included, with its
//! idempotency key: the crash test counts keys sent more than once from that log.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde::Deserialize;
use serde_json::{Value, json};

/// One `POST /emails` as the fake provider received it.
#[derive(Debug, Clone)]
pub struct SentEmail {
    /// The `Idempotency-Key` header, if any.
    pub idempotency_key: Option<String>,
    /// The single recipient.
    pub to: String,
    /// The subject.
    pub subject: String,
    /// The text body.
    pub text: String,
    /// The id answered (the first request's for a repeated key).
    pub email_id: String,
    /// When it arrived.
    pub received_at: Instant,
    /// Whether it repeated a key already answered (and so sent no second email).
    pub replay: bool,
}

#[derive(Deserialize)]
struct SendEmail {
    from: String,
    to: Vec<String>,
    subject: String,
    text: String,
}

#[derive(Default)]
struct Log {
    requests: Vec<SentEmail>,
    /// Key -> (payload fingerprint, email id) of the first answered request.
    answered: HashMap<String, (String, String)>,
    in_flight: HashSet<String>,
}

struct Shared {
    api_key: String,
    latency: Duration,
    log: Mutex<Log>,
}

impl Shared {
    fn log(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The running fake provider; stops when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeProvider")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FakeProvider {
    /// Serves on a free loopback port, accepting `api_key` as the bearer key and
    /// answering each send after `latency` (so sends overlap as they do against a real
    /// provider, and a killed server leaves some in flight).
    pub async fn start(api_key: &str, latency: Duration) -> Self {
        let shared = Arc::new(Shared {
            api_key: api_key.to_owned(),
            latency,
            log: Mutex::new(Log::default()),
        });
        let app = Router::new()
            .route("/emails", post(send_email))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("the fake provider cannot bind a loopback port: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("the fake provider's port is unknown: {e}"));
        let task = tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                eprintln!("fake provider stopped: {e}");
            }
        });
        Self { addr, shared, task }
    }

    /// The base URL to configure as Resend's (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<SentEmail> {
        self.shared.log().requests.clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.shared.log().requests.len()
    }

    /// The requests sent to `to`.
    pub fn requests_to(&self, to: &str) -> Vec<SentEmail> {
        self.shared
            .log()
            .requests
            .iter()
            .filter(|r| r.to.eq_ignore_ascii_case(to))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests arrived, or panics after `timeout`.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.request_count();
            if got >= n {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the fake provider got {got} of {n} expected sends within {timeout:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

fn error(status: StatusCode, name: &str, message: &str) -> (StatusCode, Json<Value>) {
    (
        status,
        Json(json!({"statusCode": status.as_u16(), "name": name, "message": message})),
    )
}

/// Removes the key from the in-flight set however the handler ends (answered, or
/// dropped because the caller went away).
struct InFlight {
    shared: Arc<Shared>,
    key: Option<String>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(key) = &self.key {
            self.shared.log().in_flight.remove(key);
        }
    }
}

async fn send_email(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> (StatusCode, Json<Value>) {
    let received_at = Instant::now();
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        None => {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing_api_key",
                "Missing API key",
            );
        }
        Some(key) if key != shared.api_key => {
            return error(
                StatusCode::FORBIDDEN,
                "invalid_api_key",
                "API key is invalid",
            );
        }
        Some(_) => {}
    }
    let Ok(email) = serde_json::from_slice::<SendEmail>(&body) else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "missing_required_field",
            "from, to, subject and text are required",
        );
    };
    let [to] = email.to.as_slice() else {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "the adapter sends to exactly one recipient",
        );
    };
    if email.from.trim().is_empty() || email.subject.trim().is_empty() {
        return error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "from and subject must not be empty",
        );
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fingerprint = format!("{}\n{}\n{}", to, email.subject, email.text);
    let mut record = SentEmail {
        idempotency_key: key.clone(),
        to: to.clone(),
        subject: email.subject.clone(),
        text: email.text.clone(),
        email_id: String::new(),
        received_at,
        replay: false,
    };
    let guard = {
        let mut log = shared.log();
        if let Some(key) = &key {
            if let Some((first, id)) = log.answered.get(key).cloned() {
                record.email_id = id.clone();
                record.replay = true;
                log.requests.push(record);
                if first != fingerprint {
                    return error(
                        StatusCode::CONFLICT,
                        "invalid_idempotent_request",
                        "Same idempotency key used with a different request payload",
                    );
                }
                return (StatusCode::OK, Json(json!({ "id": id })));
            }
            if !log.in_flight.insert(key.clone()) {
                record.replay = true;
                log.requests.push(record);
                return error(
                    StatusCode::CONFLICT,
                    "concurrent_idempotent_requests",
                    "Same idempotency key used while the original request is in progress",
                );
            }
        }
        record.email_id = uuid::Uuid::now_v7().to_string();
        log.requests.push(record.clone());
        InFlight {
            shared: shared.clone(),
            key: key.clone(),
        }
    };
    // An accepted email is processed to the end even when the client goes away (a
    // killed sender), as by a real provider: the handler's future is dropped on
    // disconnect, so the work runs in its own task.
    let email_id = record.email_id.clone();
    let finish = tokio::spawn(async move {
        if !shared.latency.is_zero() {
            tokio::time::sleep(shared.latency).await;
        }
        if let Some(key) = &key {
            shared
                .log()
                .answered
                .insert(key.clone(), (fingerprint, email_id));
        }
        drop(guard);
    });
    if finish.await.is_err() {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application_error",
            "the fake provider's send task failed",
        );
    }
    (StatusCode::OK, Json(json!({ "id": record.email_id })))
}
