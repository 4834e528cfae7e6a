//! Anomaly scenarios: each rule on real counts, deduplication, acknowledge/resolve,
//! channel pausing and the scan job.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use serde_json::json;

use super::{clock, test_config};
use crate::engine::dispatch::{Harness, config, drain};
use crate::engine::inbound::harness::{SECRET, accepted, body, bounce, resend, sign};
use crate::store::fixtures::{awaiting_message, base, created, new_approval, ok, unique};
use crm_channels::webhooks::WebhookConfig;
use crm_core::DynStore;
use crm_core::anomaly::{
    AnomalyError, AnomalyScanHandler, AnomalyScanner, BOUNCE_SPIKE, FAILURE_RATE, LOW_CONFIDENCE,
    QUOTA_EXHAUSTED,
};
use crm_core::clock::{Clock, ManualClock};
use crm_core::ids::{AnomalyId, UserId, WorkspaceId};
use crm_core::jobs::{
    ANOMALY_SCAN, HandlerRegistry, PeriodicJob, SYSTEM_WORKSPACE, Scheduler, Worker,
};
use crm_core::model::{Anomaly, AnomalyStatus, Channel, JobStatus, OutboxStatus, Severity};
use crm_core::outreach::dispatch::{StubChannel, StubFailure};
use crm_core::outreach::inbound::{InboundEndpoint, InboundPipeline};
use crm_core::outreach::settings::{StaticSettings, WorkspaceSettings};
use crm_core::store::{JobStore, Page, Scope};

/// Sends `sent` email messages through a real dispatcher whose clock stands at `at`,
/// then bounces the first `bounced` of them for good with signed Resend webhooks
/// through the real inbound pipeline, at the same time: the `MessageSent` and
/// `Bounced` activities the scanner counts are the ones the engine records.
async fn send_and_bounce(
    store: &Arc<DynStore>,
    ws: WorkspaceId,
    sent: usize,
    bounced: usize,
    at: DateTime<Utc>,
) {
    let mut h = Harness::new(store.clone());
    h.ws = ws;
    h.clock.set(at);
    let mut messages = Vec::with_capacity(sent);
    for _ in 0..sent {
        messages.push(h.enqueue().await);
    }
    let report = drain(&h.dispatcher()).await;
    assert_eq!(
        report.sent as usize, sent,
        "every message was sent: {report:?}"
    );

    let hook = resend(SECRET, WebhookConfig::default());
    let endpoint = InboundEndpoint::new(ws, hook.clone());
    let pipeline = InboundPipeline::new(
        store.clone(),
        Arc::new(h.clock.clone()),
        Arc::new(StaticSettings::default()),
    );
    for message in messages.iter().take(bounced) {
        let message = h.get(message.id).await;
        let request = sign(
            &hook,
            &unique("msg_bounce"),
            at.timestamp(),
            &body(&bounce(&message, true)),
        );
        accepted(
            pipeline.receive(&endpoint, &request).await,
            "a signed hard bounce",
        );
    }
}

/// Sends `accepted` email messages the provider accepts and `rejected` ones it
/// rejects for good, through a real dispatcher whose clock stands at `at`: the
/// `MessageSent` and `SendFailed` activities the scanner counts are the ones the
/// dispatcher and the store record.
async fn send_email(
    store: &Arc<DynStore>,
    ws: WorkspaceId,
    accepted: usize,
    rejected: usize,
    at: DateTime<Utc>,
) {
    let mut h = Harness::new(store.clone());
    h.ws = ws;
    h.clock.set(at);
    let clock: Arc<dyn Clock> = Arc::new(h.clock.clone());
    for (n, adapter) in [
        (accepted, StubChannel::ok(Channel::Email)),
        (
            rejected,
            StubChannel::failing(Channel::Email, StubFailure::Permanent),
        ),
    ] {
        for _ in 0..n {
            h.enqueue().await;
        }
        let dispatcher = h.dispatcher_with(
            &adapter.with_clock(clock.clone()),
            WorkspaceSettings::default(),
            config(),
        );
        let report = drain(&dispatcher).await;
        assert_eq!(report.claimed as usize, n, "every message was tried once");
    }
    let failed = h.with_status(OutboxStatus::Failed).await;
    assert!(failed.len() >= rejected, "the rejected sends failed");
}

/// A scanner with default settings, timed by the returned clock, which stands at
/// [`base`].
fn scanner(store: &Arc<DynStore>) -> (AnomalyScanner, ManualClock) {
    let clock = ManualClock::new(base());
    let scanner = AnomalyScanner::new(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(StaticSettings::default()),
    );
    (scanner, clock)
}

async fn open(store: &DynStore, ws: WorkspaceId) -> Vec<Anomaly> {
    ok(
        store.list_anomalies(ws, true, Page::first(100)).await,
        "list_anomalies",
    )
}

/// 3 failures in 10 attempts (30 %) in the last hour raise one Error anomaly; a second
/// scan finds it open and raises nothing; after it is resolved the next scan raises a
/// new one. Failures older than an hour do not count.
pub async fn failure_rate_raises_one_error_deduplicated_until_resolved(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let now = base();
    let recent = now - Span::minutes(10);
    // Ten failures two hours ago would fire alone; they are outside the hour.
    send_email(&store, ws, 0, 10, now - Span::hours(2)).await;
    send_email(&store, ws, 7, 3, recent).await;
    let (scanner, clock) = scanner(&store);

    let first = ok(scanner.scan(ws).await.map_err(store_err), "scan");
    assert_eq!(
        first.len(),
        1,
        "only the last hour's failure rate: {first:?}"
    );
    assert_eq!(first[0].value.details["failed"], json!(3), "{first:?}");
    let anomaly = &first[0].value;
    assert!(first[0].created);
    assert_eq!(anomaly.rule, FAILURE_RATE);
    assert_eq!(anomaly.severity, Severity::Error);
    assert_eq!(anomaly.channel, Some(Channel::Email));
    assert_eq!(anomaly.dedup_key, "failure_rate:email");

    clock.set(now + Span::minutes(5));
    let second = ok(scanner.scan(ws).await.map_err(store_err), "rescan");
    assert_eq!(second.len(), 1);
    assert!(!second[0].created, "deduplicated while open");
    assert_eq!(second[0].value.id, anomaly.id);
    assert_eq!(open(&*store, ws).await.len(), 1);

    clock.set(now + Span::minutes(6));
    ok(
        scanner.resolve(ws, anomaly.id).await.map_err(store_err),
        "resolve",
    );
    clock.set(now + Span::minutes(7));
    let third = ok(
        scanner.scan(ws).await.map_err(store_err),
        "scan after resolve",
    );
    assert!(third[0].created, "raised again after resolve");
    assert_ne!(third[0].value.id, anomaly.id);
}

/// Items created in the last 24 h with an average confidence below 0.6 raise a
/// Warning; older items do not count.
pub async fn low_confidence_raises_a_warning(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let now = base();
    for (confidence, age) in [(0.4, Span::hours(2)), (0.95, Span::days(3))] {
        for _ in 0..5 {
            let message = awaiting_message(&*store, ws).await;
            let mut item = new_approval(&message, now + Span::days(1));
            item.created_at = now - age;
            item.updated_at = now - age;
            item.confidence = Some(confidence);
            created(store.insert_approval(&item).await, "insert_approval");
        }
    }
    let (scanner, _at_now) = scanner(&store);
    let raised = ok(scanner.scan(ws).await.map_err(store_err), "scan");
    assert_eq!(raised.len(), 1, "{raised:?}");
    let anomaly = &raised[0].value;
    assert_eq!(
        (anomaly.rule.as_str(), anomaly.severity),
        (LOW_CONFIDENCE, Severity::Warning)
    );
    assert_eq!(anomaly.channel, None);
    let average = anomaly.details["average"].as_f64().expect("average");
    assert!(
        (average - 0.4).abs() < 1e-9,
        "only recent items count: {average}"
    );
}

/// A bounce rate of 15 % against a 2 % baseline raises an Error on that channel; the
/// same rate in a workspace whose baseline is 10 % does not. Sends come from the
/// dispatcher, bounces from signed webhooks through the inbound pipeline.
pub async fn bounce_spike_raises_an_error_against_the_baseline(store: Arc<DynStore>) {
    let now = base();
    let (recent, earlier) = (now - Span::hours(3), now - Span::days(3));
    let (spiking, steady) = (WorkspaceId::new(), WorkspaceId::new());
    for (ws, baseline_bounces) in [(spiking, 1), (steady, 5)] {
        send_and_bounce(&store, ws, 20, 3, recent).await;
        send_and_bounce(&store, ws, 50, baseline_bounces, earlier).await;
    }
    let (scanner, _at_now) = scanner(&store);
    assert!(
        ok(scanner.scan(steady).await.map_err(store_err), "scan").is_empty(),
        "15 % against a 10 % baseline is no spike"
    );
    let raised = ok(scanner.scan(spiking).await.map_err(store_err), "scan");
    assert_eq!(raised.len(), 1, "{raised:?}");
    let anomaly = &raised[0].value;
    assert_eq!(anomaly.rule, BOUNCE_SPIKE);
    assert_eq!(
        (anomaly.channel, anomaly.severity),
        (Some(Channel::Email), Severity::Error)
    );
    assert_eq!(anomaly.dedup_key, "bounce_spike:email");
}

/// The workspace's local day's `send:<channel>` usage (the counter the dispatcher
/// consumes) at the workspace's daily cap raises a Warning.
pub async fn quota_exhausted_raises_a_warning(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let now = base();
    let settings = WorkspaceSettings::default().with_daily_cap(Channel::Sms, 3);
    let key = settings.send_quota_key(Channel::Sms, now);
    let clock = ManualClock::new(now);
    let scanner = AnomalyScanner::new(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(StaticSettings::new(settings)),
    );
    ok(store.try_consume_quota(ws, &key, 3, 2).await, "consume");
    assert!(
        ok(scanner.scan(ws).await.map_err(store_err), "scan").is_empty(),
        "2 of 3 is fine"
    );
    ok(store.try_consume_quota(ws, &key, 3, 1).await, "consume");
    let raised = ok(scanner.scan(ws).await.map_err(store_err), "scan");
    assert_eq!(raised.len(), 1, "{raised:?}");
    let anomaly = &raised[0].value;
    assert_eq!(anomaly.rule, QUOTA_EXHAUSTED);
    assert_eq!(
        (anomaly.channel, anomaly.severity),
        (Some(Channel::Sms), Severity::Warning)
    );
    clock.set(now + Span::days(1));
    let next_day = ok(
        scanner.findings(ws).await.map_err(store_err),
        "findings tomorrow",
    );
    assert!(next_day.is_empty(), "a new day uses a new counter");
}

fn store_err(err: AnomalyError) -> crm_core::StoreError {
    match err {
        AnomalyError::Store(e) => e,
        other => panic!("unexpected anomaly error {other:?}"),
    }
}

/// Acknowledging keeps an anomaly open (and deduplicating); resolving closes it; a
/// resolved anomaly cannot be acknowledged; both are idempotent.
pub async fn anomalies_are_acknowledged_and_resolved(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let now = base();
    send_email(&store, ws, 0, 10, now).await;
    let (scanner, clock) = scanner(&store);
    let raised = ok(scanner.scan(ws).await.map_err(store_err), "scan");
    let id = raised[0].value.id;
    let user = UserId::new();

    let acked = ok(
        scanner.acknowledge(ws, id, user).await.map_err(store_err),
        "ack",
    );
    assert_eq!(acked.status, AnomalyStatus::Acknowledged);
    assert_eq!(acked.acknowledged_by, Some(user));
    let again = ok(
        scanner
            .acknowledge(ws, id, UserId::new())
            .await
            .map_err(store_err),
        "ack",
    );
    assert_eq!(again, acked, "acknowledging twice changes nothing");
    assert!(
        !ok(scanner.scan(ws).await.map_err(store_err), "scan")[0].created,
        "still open"
    );

    let later = now + Span::minutes(1);
    clock.set(later);
    let resolved = ok(scanner.resolve(ws, id).await.map_err(store_err), "resolve");
    assert_eq!(resolved.status, AnomalyStatus::Resolved);
    assert_eq!(resolved.resolved_at, Some(later));
    clock.set(later + Span::minutes(1));
    let twice = ok(scanner.resolve(ws, id).await.map_err(store_err), "resolve");
    assert_eq!(twice, resolved, "resolving twice changes nothing");
    clock.set(later);
    assert!(matches!(
        scanner.acknowledge(ws, id, user).await,
        Err(AnomalyError::AlreadyResolved { .. })
    ));
    assert!(matches!(
        scanner.resolve(ws, AnomalyId::new()).await,
        Err(AnomalyError::Store(e)) if e.kind() == crm_core::StoreErrorKind::NotFound
    ));
    assert!(
        matches!(
            scanner.resolve(WorkspaceId::new(), id).await,
            Err(AnomalyError::Store(e)) if e.kind() == crm_core::StoreErrorKind::NotFound
        ),
        "another workspace cannot see it"
    );
}

/// A channel is paused only while an open Error anomaly of a send-health rule names it,
/// and only when the workspace setting is on.
pub async fn channel_paused_only_by_open_error_send_health_anomalies(store: Arc<DynStore>) {
    let ws = WorkspaceId::new();
    let now = base();
    let (scanner, clock) = scanner(&store);
    assert!(!ok(
        scanner
            .is_channel_paused(ws, Channel::Email)
            .await
            .map_err(store_err),
        "paused?"
    ));

    send_email(&store, ws, 0, 10, now).await;
    // SMS's daily quota used up: an open Warning (of a rule that is no send-health
    // rule) naming SMS, which must not pause it.
    let sms_quota = WorkspaceSettings::default().send_quota_key(Channel::Sms, now);
    let cap = WorkspaceSettings::default().daily_cap(Channel::Sms);
    ok(
        store.try_consume_quota(ws, &sms_quota, cap, cap).await,
        "use up the SMS quota",
    );
    let raised = ok(scanner.scan(ws).await.map_err(store_err), "scan");
    let rules: Vec<_> = raised.iter().map(|r| r.value.rule.as_str()).collect();
    assert_eq!(rules, [FAILURE_RATE, QUOTA_EXHAUSTED], "{raised:?}");
    let failure = raised[0].value.id;
    assert_eq!(
        (raised[1].value.channel, raised[1].value.severity),
        (Some(Channel::Sms), Severity::Warning)
    );

    assert!(ok(
        scanner
            .is_channel_paused(ws, Channel::Email)
            .await
            .map_err(store_err),
        "paused?"
    ));
    assert!(
        !ok(
            scanner
                .is_channel_paused(ws, Channel::Sms)
                .await
                .map_err(store_err),
            "paused?"
        ),
        "not send-health or not Error"
    );
    assert!(!ok(
        scanner
            .is_channel_paused(WorkspaceId::new(), Channel::Email)
            .await
            .map_err(store_err),
        "paused?"
    ));

    let mut off = WorkspaceSettings::default();
    off.pause_channel_on_error_anomaly = false;
    let lenient = AnomalyScanner::new(
        store.clone(),
        Arc::new(clock.clone()),
        Arc::new(StaticSettings::new(off)),
    );
    assert!(
        !ok(
            lenient
                .is_channel_paused(ws, Channel::Email)
                .await
                .map_err(store_err),
            "paused?"
        ),
        "setting off"
    );

    ok(
        scanner
            .acknowledge(ws, failure, UserId::new())
            .await
            .map_err(store_err),
        "ack",
    );
    assert!(
        ok(
            scanner
                .is_channel_paused(ws, Channel::Email)
                .await
                .map_err(store_err),
            "paused?"
        ),
        "acknowledged is open"
    );
    ok(
        scanner.resolve(ws, failure).await.map_err(store_err),
        "resolve",
    );
    assert!(
        !ok(
            scanner
                .is_channel_paused(ws, Channel::Email)
                .await
                .map_err(store_err),
            "paused?"
        ),
        "resolved"
    );
}

/// A scheduled `anomalies.scan` job in the system workspace scans the workspaces its
/// payload lists; one without a list is dead-lettered.
pub async fn anomaly_scan_job_scans_the_listed_workspaces(store: Arc<DynStore>) {
    let (ws1, ws2) = (WorkspaceId::new(), WorkspaceId::new());
    let now = base();
    for ws in [ws1, ws2] {
        send_email(&store, ws, 0, 10, now).await;
    }
    let (_manual, clock) = clock();
    let jobs: Arc<dyn JobStore> = store.clone();
    let scan = PeriodicJob::new(ANOMALY_SCAN, "0 0 * * * *")
        .expect("valid cron")
        .with_payload(json!({ "workspaces": [ws1.to_string(), ws2.to_string()] }));
    let scheduler = Scheduler::new(
        jobs.clone(),
        clock.clone(),
        vec![scan],
        Duration::from_secs(60),
    )
    .expect("valid scheduler");
    assert_eq!(ok(scheduler.tick().await, "tick").enqueued.len(), 1);
    let broken = PeriodicJob::new(ANOMALY_SCAN, "0 0 * * * *")
        .expect("valid cron")
        .job_at(now - Span::hours(1))
        .expect("valid job");
    created(
        store.enqueue_job(&broken).await,
        "enqueue a scan without a list",
    );

    let scanner = AnomalyScanner::new(
        store.clone(),
        clock.clone(),
        Arc::new(StaticSettings::default()),
    );
    let handler = AnomalyScanHandler::new(scanner);
    let registry = HandlerRegistry::new().with(ANOMALY_SCAN, Arc::new(handler));
    let worker = Worker::new(
        jobs,
        registry,
        clock,
        test_config(ws1).with_scope(Scope::All),
    );
    let stats = ok(worker.drain().await, "drain");
    assert_eq!((stats.succeeded, stats.dead), (1, 1), "{stats:?}");
    for ws in [ws1, ws2] {
        let found = open(&*store, ws).await;
        assert_eq!(found.len(), 1, "scanned {ws}");
        assert_eq!(found[0].rule, FAILURE_RATE);
    }
    let dead = ok(store.get_job(SYSTEM_WORKSPACE, broken.id).await, "get_job");
    assert_eq!(dead.status, JobStatus::Dead);
    assert!(dead.last_error.unwrap_or_default().contains("workspaces"));
}
