//! Outreach at scale over the JSON API, as an integrating application drives it:
//! a sequence, contacts imported in chunks, enrollments and approvals spread over
//! concurrent requests.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::api::Api;

/// The contacts `import` takes per request (the API takes up to 1000; 100 keeps each
/// request short on a loaded machine).
const IMPORT_CHUNK: usize = 100;

/// A one-step email sequence; the step needs a person's approval.
pub async fn create_one_step_sequence(api: &Api, name: &str) -> String {
    let sequence = api
        .post(
            "/api/v1/sequences",
            &json!({
                "name": name,
                "steps": [{
                    "channel": "email",
                    "template": {"subject": "Hello {{first_name}}", "body": "Hi {{first_name}}, one touch."},
                    "delay": {"unit": "hours", "amount": 0},
                    "window": null,
                    "requires_approval": true
                }]
            }),
        )
        .await
        .expect(StatusCode::CREATED, "create a sequence");
    id_of(&sequence)
}

/// The `id` of an API answer.
pub fn id_of(value: &Value) -> String {
    value["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {value}"))
        .to_owned()
}

/// A contact named `first_name` at `email`, as the API takes it.
pub fn contact(first_name: &str, email: &str) -> Value {
    json!({"first_name": first_name, "last_name": "Load", "email": email})
}

/// Imports `contacts` in chunks; returns their ids in order. Every row must succeed.
pub async fn import_contacts(api: &Api, contacts: &[Value]) -> Vec<String> {
    let mut ids = Vec::with_capacity(contacts.len());
    for chunk in contacts.chunks(IMPORT_CHUNK) {
        let answer = api
            .post("/api/v1/contacts/import", &json!({ "contacts": chunk }))
            .await
            .ok("import contacts");
        for result in answer["results"].as_array().into_iter().flatten() {
            assert_eq!(result["ok"], true, "an imported row failed: {result}");
            ids.push(id_of(&result["contact"]));
        }
    }
    assert_eq!(ids.len(), contacts.len(), "every contact imported");
    ids
}

/// Runs `work` on every item of `items`, `concurrency` at a time, and returns the
/// results in order.
pub async fn in_parallel<T, R, F, Fut>(items: Vec<T>, concurrency: usize, work: F) -> Vec<R>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + Send + 'static,
{
    let work = Arc::new(work);
    let total = items.len();
    let mut lanes: Vec<Vec<(usize, T)>> = (0..concurrency.max(1)).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        lanes[i % concurrency.max(1)].push((i, item));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for lane in lanes {
        let work = work.clone();
        tasks.spawn(async move {
            let mut out = Vec::with_capacity(lane.len());
            for (i, item) in lane {
                out.push((i, work(item).await));
            }
            out
        });
    }
    let mut results: Vec<Option<R>> = (0..total).map(|_| None).collect();
    while let Some(done) = tasks.join_next().await {
        for (i, result) in done.unwrap_or_else(|e| panic!("a request task failed: {e}")) {
            results[i] = Some(result);
        }
    }
    results.into_iter().flatten().collect()
}

/// Enrolls every contact in `sequence`, `concurrency` requests at a time; returns the
/// enrollment ids in order.
pub async fn enroll_all(
    api: &Api,
    sequence: &str,
    contacts: Vec<String>,
    concurrency: usize,
) -> Vec<String> {
    let (api, sequence) = (api.clone(), sequence.to_owned());
    in_parallel(contacts, concurrency, move |contact| {
        let (api, sequence) = (api.clone(), sequence.clone());
        async move {
            let enrollment = api
                .post(
                    "/api/v1/enrollments",
                    &json!({"contact_id": contact, "sequence_id": sequence}),
                )
                .await
                .expect(StatusCode::CREATED, "enroll");
            id_of(&enrollment)
        }
    })
    .await
}

/// Approves pending inbox items in batches of up to 100 until `expected` were
/// approved, waiting for drafts as the engine makes them. Fails after `patience`
/// without progress.
pub async fn approve_all(api: &Api, expected: usize, patience: Duration) -> usize {
    let mut approved = 0;
    let mut last_progress = std::time::Instant::now();
    while approved < expected {
        let listed = api
            .get("/api/v1/inbox?limit=100")
            .await
            .ok("list the inbox");
        let ids: Vec<Value> = listed["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| item["id"].clone())
            .collect();
        if ids.is_empty() {
            assert!(
                last_progress.elapsed() < patience,
                "approved {approved} of {expected}; no new draft within {patience:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        }
        let answer = api
            .post("/api/v1/inbox/batch-approve", &json!({ "ids": ids }))
            .await
            .ok("batch approve");
        for result in answer["results"].as_array().into_iter().flatten() {
            assert_eq!(result["ok"], true, "a batch approval failed: {result}");
            approved += 1;
        }
        last_progress = std::time::Instant::now();
    }
    approved
}
