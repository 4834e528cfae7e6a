//! Crash test: two `crm-server` processes on one database dispatch 10,000 messages to
//! the loopback fake Resend; one is killed with SIGKILL mid-run and started again.
//!
//! Every message must reach the provider; no idempotency key may reach it twice except
//! for messages that were in flight in the killed process (they are counted and
//! printed, and each repeat carries the same key as its first attempt, so the provider
//! drops it); nothing may be left claimed or pending; no workspace's daily cap may be
//! exceeded. The caps are set to exactly each workspace's share of the messages, so a
//! unit consumed twice would leave a message postponed to tomorrow, and pending.
//!
//! The dispatcher's leases are 10 s here (`CRM_DISPATCH_LEASE_SECONDS`), so the killed
//! process's claims are taken over after 40 s (lease + 30 s of allowed clock skew),
//! not after five and a half minutes. The server processes commit with
//! `synchronous_commit = off`: it is the application process that is killed, not
//! PostgreSQL, so no committed row can be lost, and a 2-core CI machine gets through
//! the 10,000 messages in minutes.

// Tests measure real elapsed time and stamp provider events with the wall clock;
// their failures are panics with the answer that broke them.
#![allow(clippy::disallowed_methods, clippy::panic)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use crm_core::ids::WorkspaceId;
use crm_core::store::WorkspaceStore;
use support::api::Api;
use support::fake_provider::SentEmail;
use support::outreach::{
    approve_all, contact, create_one_step_sequence, enroll_all, import_contacts,
};
use support::{Deployment, env};

/// Messages dispatched. `CRASH_TEST_MESSAGES` may raise it (or lower it, when iterating
/// locally).
const MESSAGES: usize = 10_000;
/// Workspaces the messages are spread over (their runner leases spread over both
/// processes).
const WORKSPACES: usize = 4;
/// Sends in flight at once per process; at most this many can be in flight at the kill.
const CONCURRENCY: usize = 32;
/// The fake provider's answer time, so sends overlap as they do against a real one.
const PROVIDER_LATENCY: Duration = Duration::from_millis(20);
/// Whole-run limit for the sends after the kill.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(600);

fn message_count() -> usize {
    std::env::var("CRASH_TEST_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(MESSAGES)
}

fn recipient(workspace: usize, i: usize) -> String {
    format!("c{i}@w{workspace}.crash.example")
}

/// The workspace index a recipient belongs to (`c{i}@w{k}.crash.example`).
fn workspace_of(address: &str) -> usize {
    address
        .split('@')
        .nth(1)
        .and_then(|domain| domain.split('.').next())
        .and_then(|w| w.strip_prefix('w'))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("not a crash-test address: {address}"))
}

/// The server's `DATABASE_URL` with `synchronous_commit = off` for its sessions.
fn fast_commit_url(url: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20synchronous_commit%3Doff")
}

struct Tenant {
    id: String,
    api: Api,
    contacts: usize,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_dispatch_through_a_sigkill_without_loss_or_double_sends() {
    let started = Instant::now();
    let total = message_count();
    let per_workspace = total.div_ceil(WORKSPACES);
    let mut deployment = Deployment::new(PROVIDER_LATENCY).await;
    let url = crm_store_postgres::testing::database_url();
    deployment.set_env(env::DATABASE_URL, fast_commit_url(&url));
    deployment.set_env("CRM_DISPATCH_LEASE_SECONDS", "10");
    deployment.set_env("CRM_DISPATCH_REAP_SECONDS", "2");
    deployment.set_env("CRM_DISPATCH_BATCH_SIZE", "100");
    deployment.set_env("CRM_DISPATCH_CONCURRENCY", CONCURRENCY.to_string());
    deployment.set_env(env::RATE_LIMIT_PER_MINUTE, "1000000");
    deployment.set_env(env::DB_MAX_CONNECTIONS, "16");
    deployment.set_env("RUST_LOG", "warn,crm_server=info");

    // The operator registers the tenants, with each one's daily email cap set to
    // exactly its share of the messages.
    let mut tenants = Vec::new();
    let mut caps = BTreeMap::new();
    for k in 0..WORKSPACES {
        let contacts = per_workspace.min(total - k * per_workspace);
        let id = deployment.create_workspace(&format!("Crash {k}"));
        let key = deployment.create_key(&id);
        let workspace_id: WorkspaceId = id.parse().unwrap_or_else(|e| panic!("{id}: {e}"));
        let mut workspace = deployment
            .store
            .get_workspace(workspace_id)
            .await
            .unwrap_or_else(|e| panic!("read workspace {id}: {e}"));
        workspace.settings.default_daily_cap =
            u32::try_from(contacts).unwrap_or_else(|e| panic!("{e}"));
        deployment
            .store
            .update_workspace(&workspace)
            .await
            .unwrap_or_else(|e| panic!("set the cap of {id}: {e}"));
        caps.insert(k, contacts);
        tenants.push(Tenant {
            id,
            api: Api::new("http://unset", key),
            contacts,
        });
    }

    let mut a = deployment.start_server("crash-a").await;
    let b = deployment.start_server("crash-b").await;
    println!(
        "crash: {total} messages over {WORKSPACES} workspaces; logs: {} and {}",
        a.log_path().display(),
        b.log_path().display()
    );

    // The application imports, creates a sequence and enrolls, alternating between the
    // two processes.
    let setup = Instant::now();
    for (k, tenant) in tenants.iter_mut().enumerate() {
        let base = if k % 2 == 0 {
            a.base_url()
        } else {
            b.base_url()
        };
        tenant.api = tenant.api.at(base);
    }
    let mut enrolling = tokio::task::JoinSet::new();
    for (k, tenant) in tenants.iter().enumerate() {
        let (api, contacts) = (tenant.api.clone(), tenant.contacts);
        enrolling.spawn(async move {
            let people: Vec<_> = (0..contacts)
                .map(|i| contact(&format!("C{i}"), &recipient(k, i)))
                .collect();
            let ids = import_contacts(&api, &people).await;
            let sequence = create_one_step_sequence(&api, "Crash outreach").await;
            enroll_all(&api, &sequence, ids, 8).await.len()
        });
    }
    let mut enrolled = 0;
    while let Some(done) = enrolling.join_next().await {
        enrolled += done.unwrap_or_else(|e| panic!("enrolling failed: {e}"));
    }
    assert_eq!(enrolled, total);
    println!(
        "crash: {total} contacts imported and enrolled in {:.1} s",
        setup.elapsed().as_secs_f64()
    );

    // A person approves every draft, through process B (A is about to die). Meanwhile
    // both processes send; once a third of the messages reached the provider, A is
    // killed with SIGKILL and started again under the same name.
    let approving = {
        let apis: Vec<Api> = tenants.iter().map(|t| t.api.at(b.base_url())).collect();
        let counts: Vec<usize> = tenants.iter().map(|t| t.contacts).collect();
        tokio::spawn(async move {
            let mut tasks = tokio::task::JoinSet::new();
            for (api, count) in apis.into_iter().zip(counts) {
                tasks
                    .spawn(async move { approve_all(&api, count, Duration::from_secs(180)).await });
            }
            let mut approved = 0;
            while let Some(done) = tasks.join_next().await {
                approved += done.unwrap_or_else(|e| panic!("approving failed: {e}"));
            }
            approved
        })
    };
    let provider = &deployment.provider;
    provider
        .wait_for_requests(total / 3, Duration::from_secs(600))
        .await;
    let sent_before_kill = provider.request_count();
    let killed_at = Instant::now();
    a.kill();
    println!(
        "crash: killed crash-a with SIGKILL after {sent_before_kill} sends ({:.1} s in)",
        started.elapsed().as_secs_f64()
    );
    a.restart().await;
    println!(
        "crash: crash-a healthy again after {:.1} s",
        killed_at.elapsed().as_secs_f64()
    );
    let approved = approving
        .await
        .unwrap_or_else(|e| panic!("approving failed: {e}"));
    assert_eq!(approved, total, "every draft approved");

    // Every recipient hears once; then nothing may be left claimed or pending.
    let drain = Instant::now();
    let everyone = wait_for_all_recipients(provider, total, DRAIN_TIMEOUT).await;
    support::eventually("an empty queue", || async {
        let open = open_messages(&deployment).await;
        (open == 0).then_some(())
    })
    .await;
    println!(
        "crash: all {total} delivered {:.1} s after the last approval wait ended",
        drain.elapsed().as_secs_f64()
    );

    let requests = provider.requests();
    let report = analyse(&requests, killed_at);
    println!(
        "crash: {} requests for {} messages; {} key(s) sent twice, all in flight at the kill:",
        requests.len(),
        everyone,
        report.repeated.len()
    );
    for (key, sends) in &report.repeated {
        println!(
            "crash:   {key}: {sends} sends to one recipient, one key, the repeat answered with the first email's id"
        );
    }

    // Each message has one key, each key one recipient.
    assert_eq!(
        report.recipients, total,
        "every message reached the provider"
    );
    assert_eq!(report.keys, total, "one idempotency key per message");
    assert!(
        report.mixed.is_empty(),
        "a message went out under two keys, or a key for two messages: {:?}",
        report.mixed
    );
    // Repeats only for what the killed process had in flight.
    assert!(
        report.repeated.len() <= CONCURRENCY,
        "{} keys repeated; at most {CONCURRENCY} sends were in flight in the killed process",
        report.repeated.len()
    );
    assert!(
        report.late_first.is_empty(),
        "keys repeated whose first send came after the kill (not in flight at it): {:?}",
        report.late_first
    );
    assert!(
        report.repeat_answers_differ.is_empty(),
        "a repeat was not answered as the same email: {:?}",
        report.repeat_answers_differ
    );

    // The database agrees: everything sent, nothing claimed, the caps held.
    let statuses = status_counts(&deployment).await;
    assert_eq!(
        statuses.get("sent").copied().unwrap_or(0),
        i64::try_from(total).unwrap_or(i64::MAX),
        "outbox statuses: {statuses:?}"
    );
    assert_eq!(leased_messages(&deployment).await, 0, "claims left behind");
    let used = quota_used(&deployment).await;
    let mut per_workspace_keys: BTreeMap<usize, BTreeSet<&str>> = BTreeMap::new();
    for r in &requests {
        if let Some(key) = r.idempotency_key.as_deref() {
            per_workspace_keys
                .entry(workspace_of(&r.to))
                .or_default()
                .insert(key);
        }
    }
    for (k, tenant) in tenants.iter().enumerate() {
        let cap = caps[&k];
        let counted = used.get(&tenant.id).copied().unwrap_or(0);
        assert!(
            counted <= i64::try_from(cap).unwrap_or(i64::MAX),
            "workspace {k} counted {counted} sends against a cap of {cap}"
        );
        let distinct = per_workspace_keys.get(&k).map_or(0, BTreeSet::len);
        assert!(
            distinct <= cap,
            "workspace {k}: {distinct} distinct messages reached the provider, cap {cap}"
        );
    }
    let retried = retried_messages(&deployment).await;
    println!(
        "crash: {retried} message(s) claimed more than once (the killed process's claims, taken over); quota used {used:?} against caps {caps:?}"
    );
    println!("crash: done in {:.1} s", started.elapsed().as_secs_f64());
    drop(b);
}

/// Waits until every one of `total` recipients got at least one request; returns how
/// many distinct recipients did.
async fn wait_for_all_recipients(
    provider: &support::fake_provider::FakeProvider,
    total: usize,
    timeout: Duration,
) -> usize {
    let deadline = Instant::now() + timeout;
    loop {
        let distinct: BTreeSet<String> = provider.requests().into_iter().map(|r| r.to).collect();
        if distinct.len() >= total {
            return distinct.len();
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {total} recipients reached within {timeout:?}",
            distinct.len()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// What the provider's log says.
#[derive(Debug, Default)]
struct Report {
    recipients: usize,
    keys: usize,
    /// Keys sent more than once, with their send counts.
    repeated: BTreeMap<String, usize>,
    /// Recipients reached under several keys, or keys used for several recipients.
    mixed: Vec<String>,
    /// Repeated keys whose first send arrived after the kill.
    late_first: Vec<String>,
    /// Repeated keys whose repeats were not answered with the first email id.
    repeat_answers_differ: Vec<String>,
}

fn analyse(requests: &[SentEmail], killed_at: Instant) -> Report {
    let mut by_key: BTreeMap<String, Vec<&SentEmail>> = BTreeMap::new();
    let mut keys_of: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut report = Report::default();
    for r in requests {
        let key = r
            .idempotency_key
            .clone()
            .unwrap_or_else(|| panic!("a send to {} without Idempotency-Key", r.to));
        keys_of.entry(&r.to).or_default().insert(key.clone());
        by_key.entry(key).or_default().push(r);
    }
    report.recipients = keys_of.len();
    report.keys = by_key.len();
    for (to, keys) in &keys_of {
        if keys.len() > 1 {
            report.mixed.push(format!("{to} under {keys:?}"));
        }
    }
    for (key, sends) in &by_key {
        let recipients: BTreeSet<&str> = sends.iter().map(|s| s.to.as_str()).collect();
        if recipients.len() > 1 {
            report.mixed.push(format!("{key} for {recipients:?}"));
        }
        if sends.len() < 2 {
            continue;
        }
        report.repeated.insert(key.clone(), sends.len());
        if sends[0].received_at > killed_at {
            report.late_first.push(key.clone());
        }
        if sends[1..]
            .iter()
            .any(|s| !s.replay || s.email_id != sends[0].email_id)
        {
            report.repeat_answers_differ.push(key.clone());
        }
    }
    report
}

async fn status_counts(deployment: &Deployment) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT status, count(*) FROM outbox_messages GROUP BY status",
    )
    .fetch_all(deployment.store.pool())
    .await
    .unwrap_or_else(|e| panic!("count outbox statuses: {e}"))
    .into_iter()
    .collect()
}

async fn open_messages(deployment: &Deployment) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM outbox_messages
         WHERE status IN ('pending', 'in_flight', 'awaiting_approval')",
    )
    .fetch_one(deployment.store.pool())
    .await
    .unwrap_or_else(|e| panic!("count open messages: {e}"))
}

async fn leased_messages(deployment: &Deployment) -> i64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM outbox_messages
         WHERE lease_owner IS NOT NULL OR lease_expires_at IS NOT NULL",
    )
    .fetch_one(deployment.store.pool())
    .await
    .unwrap_or_else(|e| panic!("count leased messages: {e}"))
}

async fn retried_messages(deployment: &Deployment) -> i64 {
    sqlx::query_scalar::<_, i64>("SELECT count(*) FROM outbox_messages WHERE attempts > 1")
        .fetch_one(deployment.store.pool())
        .await
        .unwrap_or_else(|e| panic!("count retried messages: {e}"))
}

/// The email send units counted per workspace (every day's counter; the run stays
/// within one day or two).
async fn quota_used(deployment: &Deployment) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (uuid::Uuid, i64)>(
        "SELECT workspace_id, max(used) FROM quota_counters
         WHERE counter = 'send:email' GROUP BY workspace_id",
    )
    .fetch_all(deployment.store.pool())
    .await
    .unwrap_or_else(|e| panic!("read the quota counters: {e}"))
    .into_iter()
    .map(|(ws, used)| (ws.to_string(), used))
    .collect()
}
