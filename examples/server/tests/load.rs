//! Load test: a bounded load from a second process (this test process) on loopback
//! against one `crm-server` process: signed webhooks, API calls and enrollments (with
//! their approvals and sends), at once, each stream stopping by itself after a fixed
//! count. It reports webhooks handled per second, API p50/p99 latency and outbox lag
//! (approval requested to the provider receiving the message), and fails on any error
//! or lost event. The server keeps PostgreSQL's default `synchronous_commit = on`.

// Tests measure real elapsed time and stamp provider events with the wall clock;
// their failures are panics with the answer that broke them.
#![allow(clippy::disallowed_methods, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;
use support::api::Api;
use support::outreach::{
    contact, create_one_step_sequence, enroll_all, import_contacts, in_parallel,
};
use support::signing;
use support::{Deployment, env, eventually};

const WEBHOOKS: usize = 1_000;
const WEBHOOK_CONCURRENCY: usize = 8;
const API_CALLS: usize = 400;
const API_CONCURRENCY: usize = 4;
/// Under the workspace's default daily cap of 200 sends.
const ENROLLMENTS: usize = 150;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_load_reports_throughput_and_latency_without_errors() {
    let mut deployment = Deployment::new(Duration::from_millis(5)).await;
    deployment.set_env(env::RATE_LIMIT_PER_MINUTE, "1000000");
    deployment.set_env("RUST_LOG", "warn,crm_server=info");
    let workspace = deployment.create_workspace("Load");
    let key = deployment.create_key(&workspace);
    let server = deployment.start_server("load").await;
    let api = Api::new(server.base_url(), key);

    let people: Vec<_> = (0..ENROLLMENTS)
        .map(|i| contact(&format!("L{i}x"), &format!("l{i}@load.example")))
        .collect();
    let contacts = import_contacts(&api, &people).await;
    let sequence = create_one_step_sequence(&api, "Load outreach").await;

    let started = Instant::now();
    // Stream 1: signed Resend deliveries, each a distinct delivery id.
    let webhooks = {
        let (api, signer, ws) = (api.clone(), deployment.signer.clone(), workspace.clone());
        tokio::spawn(async move {
            let begun = Instant::now();
            let answers = in_parallel((0..WEBHOOKS).collect(), WEBHOOK_CONCURRENCY, move |i| {
                let (api, signer, ws) = (api.clone(), signer.clone(), ws.clone());
                async move {
                    let body =
                        signing::resend_delivered(&format!("load-email-{i}"), "x@load.example");
                    api.post_resend_webhook(&signer, &ws, &format!("msg_load_{i}"), body)
                        .await
                        .map(|a| (a.status, a.body["outcome"].clone()))
                        .map_err(|e| e.to_string())
                }
            })
            .await;
            (answers, begun.elapsed())
        })
    };
    // Stream 2: reads and writes of the JSON API.
    let calls = {
        let (api, contacts) = (api.clone(), contacts.clone());
        tokio::spawn(async move {
            in_parallel((0..API_CALLS).collect(), API_CONCURRENCY, move |i| {
                let (api, contacts) = (api.clone(), contacts.clone());
                async move {
                    let answer = match i % 4 {
                        0 => api.get("/api/v1/inbox?limit=20").await,
                        1 => {
                            api.post(
                                "/api/v1/contacts",
                                &contact(&format!("A{i}"), &format!("a{i}@api.load.example")),
                            )
                            .await
                        }
                        _ => {
                            api.get(&format!(
                                "/api/v1/contacts/{}",
                                contacts[i % contacts.len()]
                            ))
                            .await
                        }
                    };
                    (answer.status, answer.elapsed)
                }
            })
            .await
        })
    };
    // Stream 3: enrollments, approved as their drafts appear; the lag of each message
    // is from the approval request to the provider receiving the message.
    let enrolled = enroll_all(&api, &sequence, contacts, 4).await;
    let mut approved_at = Vec::new();
    let mut approved = 0;
    let patience = Instant::now();
    while approved < ENROLLMENTS {
        let listed = api
            .get("/api/v1/inbox?limit=100")
            .await
            .ok("list the inbox");
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        if items.is_empty() {
            assert!(
                patience.elapsed() < support::EVENTUALLY,
                "drafts stopped coming"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        }
        let ids: Vec<_> = items.iter().map(|i| i["id"].clone()).collect();
        let at = Instant::now();
        let answer = api
            .post("/api/v1/inbox/batch-approve", &json!({ "ids": ids }))
            .await
            .ok("batch approve");
        for (item, result) in items
            .iter()
            .zip(answer["results"].as_array().into_iter().flatten())
        {
            assert_eq!(result["ok"], true, "{result}");
            let body = item["body"].as_str().unwrap_or_default();
            let name = body.split_whitespace().nth(1).unwrap_or_default();
            let index: usize = name
                .trim_start_matches('L')
                .trim_end_matches("x,")
                .parse()
                .unwrap_or_else(|_| panic!("a draft not of this test: {body}"));
            approved_at.push((format!("l{index}@load.example"), at));
            approved += 1;
        }
    }
    let provider = &deployment.provider;
    provider
        .wait_for_requests(ENROLLMENTS, support::EVENTUALLY)
        .await;

    let (webhook_answers, webhook_time) = webhooks.await.unwrap_or_else(|e| panic!("{e}"));
    let call_answers = calls.await.unwrap_or_else(|e| panic!("{e}"));
    let elapsed = started.elapsed();

    // Zero errors.
    let webhook_errors: Vec<_> = webhook_answers
        .iter()
        .filter(|a| !matches!(a, Ok((StatusCode::OK, outcome)) if outcome == "accepted"))
        .collect();
    assert!(
        webhook_errors.is_empty(),
        "webhook errors: {:?}",
        &webhook_errors[..webhook_errors.len().min(5)]
    );
    let api_errors: Vec<_> = call_answers
        .iter()
        .filter(|(status, _)| !status.is_success())
        .collect();
    assert!(api_errors.is_empty(), "API errors: {api_errors:?}");
    assert_eq!(enrolled.len(), ENROLLMENTS);

    // No lost events: every delivery is recorded as handled once, a retry is a
    // duplicate, and every approved message reached the provider exactly once.
    let handled = sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM webhook_deliveries
         WHERE provider = 'resend' AND delivery_id LIKE 'msg_load_%' AND lease_expires_at IS NULL",
    )
    .fetch_one(deployment.store.pool())
    .await
    .unwrap_or_else(|e| panic!("count deliveries: {e}"));
    assert_eq!(
        handled, WEBHOOKS as i64,
        "every webhook delivery handled and recorded"
    );
    let retry = api
        .post_resend_webhook(
            &deployment.signer,
            &workspace,
            "msg_load_0",
            signing::resend_delivered("load-email-0", "x@load.example"),
        )
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(retry.body["outcome"], "duplicate");
    let mut lags = Vec::new();
    for (address, at) in &approved_at {
        let sent = provider.requests_to(address);
        assert_eq!(sent.len(), 1, "{address} got {} sends", sent.len());
        lags.push(sent[0].received_at.saturating_duration_since(*at));
    }
    eventually("no draft left unsent", || async {
        let open = sqlx::query_scalar::<_, i64>(
            "SELECT count(*) FROM outbox_messages WHERE status <> 'sent'",
        )
        .fetch_one(deployment.store.pool())
        .await
        .unwrap_or(-1);
        (open == 0).then_some(())
    })
    .await;

    let mut latencies: Vec<Duration> = call_answers.iter().map(|(_, d)| *d).collect();
    latencies.sort();
    lags.sort();
    let report = format!(
        "load: {WEBHOOKS} signed webhooks ({WEBHOOK_CONCURRENCY} at a time) handled at {:.0}/s; \
         {API_CALLS} API calls ({API_CONCURRENCY} at a time) p50 {:.1} ms, p99 {:.1} ms; \
         {ENROLLMENTS} enrollments approved and sent, outbox lag p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms; \
         0 errors, 0 lost; {:.1} s in all\n",
        WEBHOOKS as f64 / webhook_time.as_secs_f64(),
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(percentile(&lags, 50.0)),
        ms(percentile(&lags, 99.0)),
        ms(lags.last().copied().unwrap_or_default()),
        elapsed.as_secs_f64(),
    );
    print!("{report}");
    let path = support::process::write_report("crm-server-load.txt", &report);
    println!("load: report written to {}", path.display());
    drop(server);
}
