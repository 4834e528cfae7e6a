//! A small client for the server's JSON API and webhook routes, as an integrating
//! application would call them: bearer API key, JSON in and out.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::signing::StandardWebhooksSigner;

/// One answer: status, JSON body (`Null` when empty or not JSON) and how long it took.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The HTTP status.
    pub status: StatusCode,
    /// The body as JSON.
    pub body: Value,
    /// From sending the request to reading the whole body.
    pub elapsed: Duration,
}

impl Answer {
    /// Panics with the body unless the status is `expected`.
    pub fn expect(self, expected: StatusCode, what: &str) -> Value {
        assert_eq!(
            self.status, expected,
            "{what}: expected {expected}, got {} with {}",
            self.status, self.body
        );
        self.body
    }

    /// Panics with the body unless the status is a success.
    pub fn ok(self, what: &str) -> Value {
        assert!(
            self.status.is_success(),
            "{what}: got {} with {}",
            self.status,
            self.body
        );
        self.body
    }
}

/// The API of one server process, acting with one API key.
#[derive(Debug, Clone)]
pub struct Api {
    client: reqwest::Client,
    base_url: String,
    key: String,
}

impl Api {
    /// A client of the server at `base_url` using the API key `key`.
    pub fn new(base_url: impl Into<String>, key: impl Into<String>) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(300))
            .pool_max_idle_per_host(64)
            .build()
            .unwrap_or_else(|e| panic!("no HTTP client: {e}"));
        Self {
            client,
            base_url: base_url.into(),
            key: key.into(),
        }
    }

    /// The same key against another process.
    pub fn at(&self, base_url: impl Into<String>) -> Self {
        Self {
            client: self.client.clone(),
            base_url: base_url.into(),
            key: self.key.clone(),
        }
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `method path` with the API key and an optional JSON body. A transport failure
    /// panics: every test expects the server to answer.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> Answer {
        self.try_call(method.clone(), path, body)
            .await
            .unwrap_or_else(|e| panic!("{method} {path} got no answer: {e}"))
    }

    /// Like [`call`](Self::call), returning a transport failure instead of panicking.
    pub async fn try_call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, reqwest::Error> {
        let mut request = self
            .client
            .request(method, format!("{}{path}", self.base_url))
            .bearer_auth(&self.key);
        if let Some(body) = body {
            request = request.json(body);
        }
        let started = Instant::now();
        let response = request.send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            elapsed: started.elapsed(),
        })
    }

    /// `GET path`.
    pub async fn get(&self, path: &str) -> Answer {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with `body`.
    pub async fn post(&self, path: &str, body: &Value) -> Answer {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Posts a Resend webhook delivery `payload` with id `msg_id`, signed by `signer`,
    /// to `/webhooks/resend/{workspace}`.
    pub async fn post_resend_webhook(
        &self,
        signer: &StandardWebhooksSigner,
        workspace: &str,
        msg_id: &str,
        payload: Vec<u8>,
    ) -> Result<Answer, reqwest::Error> {
        let timestamp = chrono::Utc::now().timestamp();
        let mut request = self
            .client
            .post(format!("{}/webhooks/resend/{workspace}", self.base_url))
            .header("content-type", "application/json");
        for (name, value) in signer.svix_headers(msg_id, timestamp, &payload) {
            request = request.header(name, value);
        }
        let started = Instant::now();
        let response = request.body(payload).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        Ok(Answer {
            status,
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            elapsed: started.elapsed(),
        })
    }
}
