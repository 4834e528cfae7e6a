//! End to end across processes: `crm-server` runs as a real process on a loopback port
//! against PostgreSQL (a fresh schema) and the loopback fake Resend. After the
//! operator's bootstrap (the CLI registers the workspace and issues the API key), the
//! test is an integrating application: it only talks HTTP. It imports contacts,
//! enrolls them in a two-step email sequence, approves the first messages in the inbox,
//! lets the worker send them to the fake provider, posts a correctly signed reply
//! webhook and a bounce webhook, and checks that those enrollments stopped and that
//! nothing more was sent to those contacts, while the third contact, who neither
//! replied nor bounced, got the follow-up.

// Tests measure real elapsed time and stamp provider events with the wall clock;
// their failures are panics with the answer that broke them.
#![allow(clippy::disallowed_methods, clippy::panic)]

mod support;

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use support::api::Api;
use support::signing::{self, StandardWebhooksSigner};
use support::{Deployment, eventually};

#[test]
fn signs_the_published_standard_webhooks_vector() {
    // SW-1, shared by the Standard Webhooks reference libraries and Svix's tests.
    let signer = StandardWebhooksSigner::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
    assert_eq!(
        signer.sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1_614_265_330,
            br#"{"test": 2432232314}"#
        ),
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    );
}

const ALICE: &str = "alice@e2e.example.com";
const BOB: &str = "bob@e2e.example.com";
const CAROL: &str = "carol@e2e.example.com";

/// A two-step email sequence; both steps need a person's approval, the follow-up is
/// due as soon as the first step went out.
fn sequence() -> Value {
    let step = |subject: &str, body: &str| {
        json!({
            "channel": "email",
            "template": {"subject": subject, "body": body},
            "delay": {"unit": "hours", "amount": 0},
            "window": null,
            "requires_approval": true
        })
    };
    json!({
        "name": "E2E outreach",
        "steps": [
            step("Hello {{first_name}}", "Hi {{first_name}}, first touch."),
            step("Following up, {{first_name}}", "Hi {{first_name}}, second touch."),
        ]
    })
}

/// Approves every pending inbox item whose body passes `select`; returns how many.
async fn approve_pending(api: &Api, select: impl Fn(&str) -> bool) -> usize {
    let listed = api
        .get("/api/v1/inbox?limit=100")
        .await
        .ok("list the inbox");
    let mut approved = 0;
    for item in listed["items"].as_array().into_iter().flatten() {
        let body = item["body"].as_str().unwrap_or_default();
        if !select(body) {
            continue;
        }
        let id = item["id"].as_str().unwrap_or_default();
        let answer = api
            .post(&format!("/api/v1/inbox/{id}/approve"), &json!({}))
            .await;
        assert!(
            answer.status.is_success() || answer.status == StatusCode::CONFLICT,
            "approve {id}: {} {}",
            answer.status,
            answer.body
        );
        approved += usize::from(answer.status.is_success());
    }
    approved
}

async fn enrollment_state(api: &Api, id: &str) -> String {
    let enrollment = api
        .get(&format!("/api/v1/enrollments/{id}"))
        .await
        .ok("get an enrollment");
    enrollment["state"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reply_and_bounce_stop_their_enrollments_across_processes() {
    let started = Instant::now();
    let deployment = Deployment::new(Duration::from_millis(5)).await;
    let workspace = deployment.create_workspace("E2E");
    let key = deployment.create_key(&workspace);
    let server = deployment.start_server("e2e").await;
    let api = Api::new(server.base_url(), key);

    // No key, and a wrong key, are refused before anything else.
    let anonymous = Api::new(server.base_url(), "");
    anonymous
        .get("/api/v1/inbox")
        .await
        .expect(StatusCode::UNAUTHORIZED, "no API key");
    let wrong = Api::new(server.base_url(), "crm_wrong_key_0000000000000000");
    wrong
        .get("/api/v1/inbox")
        .await
        .expect(StatusCode::UNAUTHORIZED, "an unknown API key");

    // Import the contacts, create the sequence, enroll everyone.
    let contacts: Vec<Value> = [("Alice", ALICE), ("Bob", BOB), ("Carol", CAROL)]
        .iter()
        .map(|(name, email)| json!({"first_name": name, "last_name": "Tester", "email": email}))
        .collect();
    let imported = api
        .post("/api/v1/contacts/import", &json!({ "contacts": contacts }))
        .await
        .ok("import contacts");
    let results = imported["results"].as_array().cloned().unwrap_or_default();
    assert_eq!(results.len(), 3, "{imported}");
    let mut contact_ids = Vec::new();
    for result in &results {
        assert_eq!(result["ok"], true, "an import row failed: {result}");
        contact_ids.push(
            result["contact"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        );
    }
    let fetched = api
        .get(&format!("/api/v1/contacts/{}", contact_ids[0]))
        .await
        .ok("get a contact");
    assert_eq!(fetched["email"], ALICE);
    let sequence = api
        .post("/api/v1/sequences", &sequence())
        .await
        .expect(StatusCode::CREATED, "create the sequence");
    let sequence_id = sequence["id"].as_str().unwrap_or_default().to_owned();
    let mut enrollments = Vec::new();
    for contact in &contact_ids {
        let enrollment = api
            .post(
                "/api/v1/enrollments",
                &json!({"contact_id": contact, "sequence_id": sequence_id}),
            )
            .await
            .expect(StatusCode::CREATED, "enroll");
        enrollments.push(enrollment["id"].as_str().unwrap_or_default().to_owned());
    }
    let (alice, bob, carol) = (&enrollments[0], &enrollments[1], &enrollments[2]);

    // The runner drafts the first step; every draft waits in the inbox. Approve one
    // alone, one after an edit, and the third in a batch.
    let items = eventually("three first-step drafts in the inbox", || async {
        let listed = api
            .get("/api/v1/inbox?limit=100")
            .await
            .ok("list the inbox");
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        (items.len() >= 3).then_some(items)
    })
    .await;
    let id_of = |name: &str| -> String {
        items
            .iter()
            .find(|i| i["body"].as_str().is_some_and(|b| b.contains(name)))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("no draft for {name} in {items:?}"))
            .to_owned()
    };
    for item in &items {
        assert_ne!(
            item["recipient"], ALICE,
            "the inbox shows recipients masked"
        );
    }
    api.post(
        &format!("/api/v1/inbox/{}/approve", id_of("Alice")),
        &json!({}),
    )
    .await
    .ok("approve Alice's draft");
    let edited = "Hi Bob, first touch, edited by a person.";
    api.post(
        &format!("/api/v1/inbox/{}/approve", id_of("Bob")),
        &json!({ "body": edited }),
    )
    .await
    .ok("edit and approve Bob's draft");
    let batch = api
        .post(
            "/api/v1/inbox/batch-approve",
            &json!({ "ids": [id_of("Carol")] }),
        )
        .await
        .ok("batch approve Carol's draft");
    assert_eq!(batch["results"][0]["ok"], true, "{batch}");

    // The worker sends them to the fake provider, with the outbox ids as keys.
    let provider = &deployment.provider;
    provider.wait_for_requests(3, Duration::from_secs(60)).await;
    let first = |to: &str| {
        let sent = provider.requests_to(to);
        assert_eq!(sent.len(), 1, "one first touch to {to}: {sent:?}");
        sent[0].clone()
    };
    let (to_alice, to_bob, to_carol) = (first(ALICE), first(BOB), first(CAROL));
    assert_eq!(to_bob.text, edited, "the edited text is what was sent");
    assert_eq!(to_alice.subject, "Hello Alice");
    for sent in [&to_alice, &to_bob, &to_carol] {
        assert!(sent.idempotency_key.is_some(), "every send carries a key");
    }

    // The provider reports: Alice answered, Bob's address bounced. Both signed as
    // Resend (Svix) signs them.
    let reply = signing::resend_reply(
        &format!("Alice Tester <{ALICE}>"),
        "sales@example.com",
        "Thanks, let us talk next week.",
    );
    let bounce = signing::resend_bounce(&to_bob.email_id, BOB, true);
    let signer = &deployment.signer;
    let answer = api
        .post_resend_webhook(signer, &workspace, "msg_e2e_reply", reply.clone())
        .await
        .unwrap_or_else(|e| panic!("the reply webhook got no answer: {e}"));
    assert_eq!(answer.status, StatusCode::OK, "reply: {}", answer.body);
    assert_eq!(answer.body["outcome"], "accepted");
    let answer = api
        .post_resend_webhook(signer, &workspace, "msg_e2e_bounce", bounce)
        .await
        .unwrap_or_else(|e| panic!("the bounce webhook got no answer: {e}"));
    assert_eq!(answer.status, StatusCode::OK, "bounce: {}", answer.body);
    assert_eq!(answer.body["outcome"], "accepted");
    // The provider's retry of the same delivery is a duplicate, not a second reply.
    let again = api
        .post_resend_webhook(signer, &workspace, "msg_e2e_reply", reply.clone())
        .await
        .unwrap_or_else(|e| panic!("the retried webhook got no answer: {e}"));
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(again.body["outcome"], "duplicate");
    // A delivery signed with another secret is refused.
    let forged = StandardWebhooksSigner::new(&StandardWebhooksSigner::random_secret());
    let refused = api
        .post_resend_webhook(&forged, &workspace, "msg_e2e_forged", reply)
        .await
        .unwrap_or_else(|e| panic!("the forged webhook got no answer: {e}"));
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{}", refused.body);

    // The reply and the bounce stopped their enrollments.
    eventually("Alice's enrollment replied and Bob's bounced", || async {
        let states = (
            enrollment_state(&api, alice).await,
            enrollment_state(&api, bob).await,
        );
        (states.0 == "replied" && states.1 == "bounced").then_some(())
    })
    .await;

    // Carol's follow-up is drafted; approve whatever is pending until it is sent
    // (approving a draft of a stopped enrollment must still send nothing).
    eventually("Carol's follow-up at the provider", || async {
        approve_pending(&api, |_| true).await;
        (provider.requests_to(CAROL).len() >= 2).then_some(())
    })
    .await;
    let follow_up = &provider.requests_to(CAROL)[1];
    assert_eq!(follow_up.subject, "Following up, Carol");
    assert_ne!(
        follow_up.idempotency_key, to_carol.idempotency_key,
        "each message has its own key"
    );
    // Give the loops a few more polls to send anything they still would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    approve_pending(&api, |_| true).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        provider.requests_to(ALICE).len(),
        1,
        "nothing more to Alice"
    );
    assert_eq!(provider.requests_to(BOB).len(), 1, "nothing more to Bob");
    assert_eq!(provider.requests_to(CAROL).len(), 2);
    assert_eq!(enrollment_state(&api, alice).await, "replied");
    assert_eq!(enrollment_state(&api, bob).await, "bounced");
    let carol_state = enrollment_state(&api, carol).await;
    assert!(
        ["step_sent", "completed", "no_response"].contains(&carol_state.as_str()),
        "Carol's enrollment ran on: {carol_state}"
    );
    println!(
        "e2e: {} sends, {:.1} s including the server's start",
        provider.request_count(),
        started.elapsed().as_secs_f64()
    );
}
