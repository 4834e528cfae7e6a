//! The inbox page in a real browser: headless Chromium driven through WebDriver
//! (Debian's `chromium` and `chromium-driver`).
//!
//! The service runs in this process on a loopback port against PostgreSQL (a fresh
//! schema) and a loopback fake Resend (wiremock). Over the JSON API the test creates two
//! contacts, a one-step email sequence and two enrollments; the engine's loops draft
//! both messages and park them for approval. In the browser it logs in with an API key,
//! sees both pending items, edits and approves one, and rejects the other with a
//! reason. Then, over the JSON API again, it checks that both decisions were recorded,
//! and that the fake provider received the edited text (and nothing for the rejected
//! item). A screenshot of the inbox with its items is saved as `target/inbox.png`.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
// Waiting is measured in real time.
#![allow(clippy::disallowed_methods)]

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::{Harness, eventually, free_port};
use fantoccini::{ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const EDITED: &str = "Hi Ada, edited by a person in the browser: shall we talk on Tuesday?";
const REASON: &str = "Wrong tone for this lead";

/// The chromedriver binary, or a failure that says how to install it (never a skip).
fn chromedriver() -> PathBuf {
    let candidates = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain([
            PathBuf::from("/usr/bin"),
            PathBuf::from("/usr/lib/chromium"),
        ])
        .map(|dir| dir.join("chromedriver"));
    for candidate in candidates {
        if candidate.is_file() {
            return candidate;
        }
    }
    panic!(
        "the browser test needs chromedriver and Chromium, and found no chromedriver. \
         Install them with: apt-get update && apt-get install -y chromium chromium-driver \
         (.ci/run does this when they are missing)"
    );
}

/// The Chromium binary chromedriver should start.
fn chromium() -> Option<PathBuf> {
    [
        "/usr/bin/chromium",
        "/usr/bin/chromium-browser",
        "/usr/bin/google-chrome",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// chromedriver on a loopback port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = free_port();
        let child = Command::new(chromedriver())
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where screenshots go: `$CARGO_TARGET_DIR` or the workspace's `target/`.
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target"),
        PathBuf::from,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_inbox_page_decides_items_in_a_real_browser() {
    let driver_binary = chromedriver();
    assert!(driver_binary.is_file());

    // The fake provider: Resend's POST /emails.
    let provider = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/emails"))
        .respond_with(ResponseTemplate::new(200).set_body_json(json!({"id": "re_fake_1"})))
        .mount(&provider)
        .await;

    // The service on a fresh schema, with a key of every scope; email goes to the fake.
    let harness = Harness::start(
        &[
            (
                "CRM_RESEND_API_KEY",
                "secret://browser_test/resend:1".to_owned(),
            ),
            ("CRM_RESEND_FROM", "Sales <sales@example.com>".to_owned()),
            ("CRM_RESEND_BASE_URL", provider.uri()),
        ],
        &[("secret://browser_test/resend:1", "re_test_key")],
    )
    .await;
    let (base, token) = (harness.base.clone(), harness.token.clone());

    // Two contacts, a sequence that mails them, two enrollments: over the JSON API.
    let api = harness.api();
    let mut contacts = Vec::new();
    for (first, email) in [("Ada", "ada@example.com"), ("Grace", "grace@example.com")] {
        let contact = api
            .post(
                "/api/v1/contacts",
                json!({"first_name": first, "last_name": "Test", "email": email}),
            )
            .await;
        contacts.push(contact["id"].as_str().expect("an id").to_owned());
    }
    let sequence = api
        .post(
            "/api/v1/sequences",
            json!({"name": "Intro", "steps": [{
                "channel": "email",
                "template": {"subject": "Hello {{first_name}}", "body": "Hi {{first_name}}, shall we talk?"},
                "delay": {"unit": "hours", "amount": 0},
                "window": null,
                "requires_approval": true
            }]}),
        )
        .await;
    let sequence_id = sequence["id"].as_str().expect("an id").to_owned();
    for contact in &contacts {
        api.post(
            "/api/v1/enrollments",
            json!({"contact_id": contact, "sequence_id": sequence_id}),
        )
        .await;
    }
    // The engine drafts both messages and parks them for approval.
    let pending = eventually("two pending approval items", || async {
        let page = api.get("/api/v1/inbox?limit=10").await;
        let items = page["items"].as_array().cloned().unwrap_or_default();
        (items.len() == 2).then_some(items)
    })
    .await;
    // Ada's item first, Grace's second: the inbox lists by item id, and the engine
    // drafts a page of enrollments at once, in no promised order between contacts.
    let item_for = |first: &str| {
        pending
            .iter()
            .find(|i| i["body"].as_str().is_some_and(|b| b.contains(first)))
            .and_then(|i| i["id"].as_str())
            .unwrap_or_else(|| panic!("an item for {first}: {pending:?}"))
            .to_owned()
    };
    let ids = [item_for("Ada"), item_for("Grace")];

    // The browser: log in, see both items.
    let driver = Driver::start();
    let mut chrome_options = json!({"args": [
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
        "--window-size=1280,1100"
    ]});
    if let Some(binary) = chromium() {
        chrome_options["binary"] = json!(binary);
    }
    let mut caps = serde_json::Map::new();
    caps.insert("goog:chromeOptions".to_owned(), chrome_options);
    let browser = eventually("chromedriver to accept a session", || {
        let caps = caps.clone();
        let url = driver.url.clone();
        async move {
            let mut builder = ClientBuilder::new(HttpConnector::new());
            builder.capabilities(caps).connect(&url).await.ok()
        }
    })
    .await;

    browser
        .goto(&format!("{base}/inbox"))
        .await
        .expect("the page loads");
    assert!(
        browser
            .current_url()
            .await
            .expect("a url")
            .path()
            .ends_with("/inbox/login"),
        "without a session the page asks to log in"
    );
    browser
        .find(Locator::Id("api_key"))
        .await
        .expect("the key field")
        .send_keys(&token)
        .await
        .expect("typing");
    browser
        .find(Locator::Id("login-submit"))
        .await
        .expect("the button")
        .click()
        .await
        .expect("log in");
    browser
        .wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::Css("article.item"))
        .await
        .expect("the inbox after logging in");
    let items = browser
        .find_all(Locator::Css("article.item"))
        .await
        .expect("the items");
    assert_eq!(items.len(), 2, "both pending items are listed");
    let first = browser
        .find(Locator::Id(&format!("item-{}", ids[0])))
        .await
        .expect("the first item");
    let recipient = first
        .find(Locator::Css(".recipient"))
        .await
        .expect("a recipient")
        .text()
        .await
        .expect("text");
    assert_eq!(recipient, "a***@example.com", "the recipient is masked");
    let body = first
        .find(Locator::Css(".body"))
        .await
        .expect("a body")
        .text()
        .await
        .expect("text");
    assert_eq!(body, "Hi Ada, shall we talk?", "the rendered body is shown");
    let channel = first
        .find(Locator::Css(".channel"))
        .await
        .expect("a channel")
        .text()
        .await
        .expect("text");
    assert_eq!(channel, "email");

    let shot = browser.screenshot().await.expect("a screenshot");
    let target = target_dir();
    std::fs::create_dir_all(&target).expect("target/ exists");
    std::fs::write(target.join("inbox.png"), &shot).expect("the screenshot is saved");

    // Edit and approve the first item.
    let textarea = first
        .find(Locator::Css("form.edit textarea[name=body]"))
        .await
        .expect("the edit field");
    textarea.clear().await.expect("clear");
    textarea.send_keys(EDITED).await.expect("typing");
    first
        .find(Locator::Css("form.edit button"))
        .await
        .expect("the edit button")
        .click()
        .await
        .expect("edit and approve");
    eventually("the page after the decision", || async {
        let url = browser.current_url().await.ok()?;
        (url.query() == Some("done=edited")).then_some(())
    })
    .await;
    let flash = browser
        .find(Locator::Id("flash"))
        .await
        .expect("a confirmation")
        .text()
        .await
        .expect("text");
    assert!(flash.starts_with("Edited and approved"), "{flash}");

    // Reject the second with a reason.
    let second = browser
        .find(Locator::Id(&format!("item-{}", ids[1])))
        .await
        .expect("the second item");
    second
        .find(Locator::Css("form.reject input[name=reason]"))
        .await
        .expect("the reason field")
        .send_keys(REASON)
        .await
        .expect("typing");
    second
        .find(Locator::Css("form.reject button"))
        .await
        .expect("the reject button")
        .click()
        .await
        .expect("reject");
    eventually("the page after the decision", || async {
        let url = browser.current_url().await.ok()?;
        (url.query() == Some("done=rejected")).then_some(())
    })
    .await;
    let flash = browser
        .find(Locator::Id("flash"))
        .await
        .expect("a confirmation")
        .text()
        .await
        .expect("text");
    assert!(flash.starts_with("Rejected"), "{flash}");
    assert!(
        browser.find(Locator::Id("empty")).await.is_ok(),
        "nothing is pending any more"
    );
    let shot = browser.screenshot().await.expect("a screenshot");
    std::fs::write(target.join("inbox-decided.png"), &shot).expect("the screenshot is saved");
    browser.close().await.expect("the browser closes");

    // The JSON API recorded both decisions.
    let approved = api.get(&format!("/api/v1/inbox/{}", ids[0])).await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["edited_body"], EDITED);
    assert_eq!(approved["body"], EDITED);
    let rejected = api.get(&format!("/api/v1/inbox/{}", ids[1])).await;
    assert_eq!(rejected["status"], "rejected");
    assert_eq!(rejected["reason"], REASON);

    // The fake provider received the edited text, once, and nothing for the other.
    let sent = eventually("the edited message at the provider", || async {
        let requests = provider.received_requests().await.unwrap_or_default();
        let bodies: Vec<Value> = requests
            .iter()
            .filter_map(|r| serde_json::from_slice::<Value>(&r.body).ok())
            .collect();
        (!bodies.is_empty()).then_some(bodies)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_now = provider.received_requests().await.unwrap_or_default();
    assert_eq!(sent.len(), 1, "exactly one message went out");
    assert_eq!(sent_now.len(), 1, "and no second one after it");
    assert_eq!(
        sent[0]["text"], EDITED,
        "the provider received the edited text"
    );
    assert_eq!(sent[0]["to"], json!(["ada@example.com"]));

    harness.stop().await;
}
