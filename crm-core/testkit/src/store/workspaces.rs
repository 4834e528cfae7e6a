//! Cases for [`WorkspaceStore`](crm_core::store::WorkspaceStore): the workspace
//! registry and its settings.

use chrono::Duration;

use crm_core::DynStore;
use crm_core::error::StoreErrorKind as Kind;
use crm_core::ids::WorkspaceId;
use crm_core::model::{
    Allowlist, Channel, ChannelConfig, MeetingBookedPolicy, ParallelSequencePolicy, Workspace,
    WorkspaceSettings,
};
use crm_core::secret::SecretRef;
use crm_core::store::Page;

use super::fixtures::{at, base, expect_err, ok, race, same_invalid, unique};

/// Settings with every field away from its default, so a round trip that drops or
/// mangles one is caught.
fn rich_settings() -> WorkspaceSettings {
    let secret = SecretRef::parse("secret://resend/api-key:7").expect("valid reference");
    let mut settings = WorkspaceSettings::default()
        .with_default_time_zone(chrono_tz::Europe::Berlin)
        .with_daily_touch_limit(3)
        .with_parallel_sequences(ParallelSequencePolicy::Allow)
        .with_daily_cap(Channel::Email, 150)
        .with_daily_cap(Channel::Sms, 0)
        .with_allowlist(
            Allowlist::new()
                .with_address("Boss@Example.com")
                .with_domain("pilot.example"),
        )
        .with_dry_run(true)
        .with_account_level_stop(true)
        .with_meeting_booked(MeetingBookedPolicy::Continue)
        .with_auto_enrich(true)
        .with_channel(
            Channel::Email,
            ChannelConfig::new("resend")
                .with_param("from", "sales@example.com")
                .with_secret("api_key", secret),
        );
    settings.default_daily_cap = 90;
    settings.out_of_office_pause = Duration::days(3) + Duration::seconds(5);
    settings.pause_channel_on_error_anomaly = false;
    settings
}

fn new_workspace(settings: WorkspaceSettings) -> Workspace {
    Workspace::new(WorkspaceId::new(), unique("Acme"), settings, base()).expect("valid workspace")
}

/// insert_workspace stores every setting and reads back equal; a second insert of the
/// id is Conflict; version other than 1, a blank name and invalid settings are the
/// model's Invalid; an unknown id is NotFound.
pub async fn workspace_round_trip_and_insert_rules(store: &DynStore) {
    let workspace = new_workspace(rich_settings());
    let stored = ok(store.insert_workspace(&workspace).await, "insert_workspace");
    assert_eq!(stored, workspace, "insert returns the row as stored");
    let read = ok(store.get_workspace(workspace.id).await, "get_workspace");
    assert_eq!(
        read, workspace,
        "every setting (zone, caps, allowlist, policies, pause, channels with secret \
         references) reads back exactly"
    );
    expect_err(
        store.insert_workspace(&workspace).await,
        Kind::Conflict,
        "a registered id MUST NOT be registered twice",
    );
    let mut versioned = new_workspace(WorkspaceSettings::default());
    versioned.version = 2;
    expect_err(
        store.insert_workspace(&versioned).await,
        Kind::Invalid,
        "an insert MUST have version 1",
    );
    let mut blank = new_workspace(WorkspaceSettings::default());
    blank.name = " ".into();
    same_invalid(
        store.insert_workspace(&blank).await,
        blank.validate(),
        "a blank name",
    );
    let mut bad = new_workspace(WorkspaceSettings::default());
    bad.settings.daily_touch_limit = 0;
    same_invalid(
        store.insert_workspace(&bad).await,
        bad.validate(),
        "a touch limit of 0",
    );
    expect_err(
        store.get_workspace(bad.id).await,
        Kind::NotFound,
        "a refused insert stores nothing",
    );
    expect_err(
        store.get_workspace(WorkspaceId::new()).await,
        Kind::NotFound,
        "an unknown workspace is NotFound",
    );
}

/// update_workspace is a compare-and-set on version: it stores version + 1 with the
/// new name and settings and keeps created_at; a stale version is VersionConflict, an
/// unknown id NotFound, invalid settings Invalid with the row unchanged.
pub async fn workspace_update_compare_and_set(store: &DynStore) {
    let workspace = ok(
        store
            .insert_workspace(&new_workspace(WorkspaceSettings::default()))
            .await,
        "insert_workspace",
    );
    let mut edit = workspace.clone();
    edit.name = "Renamed".into();
    edit.settings = rich_settings();
    edit.updated_at = at(30);
    edit.created_at = at(60); // never changes after insert
    let updated = ok(store.update_workspace(&edit).await, "update_workspace");
    assert_eq!(updated.version, 2, "an update stores version + 1");
    assert_eq!(updated.name, "Renamed");
    assert_eq!(
        updated.settings,
        rich_settings(),
        "the new settings are stored"
    );
    assert_eq!(updated.updated_at, at(30));
    assert_eq!(
        updated.created_at, workspace.created_at,
        "created_at is kept from the stored row"
    );
    assert_eq!(
        ok(store.get_workspace(workspace.id).await, "get_workspace"),
        updated,
        "the update returns the row as stored"
    );
    let err = expect_err(
        store.update_workspace(&edit).await,
        Kind::VersionConflict,
        "a stale version MUST NOT overwrite",
    );
    assert!(
        matches!(
            err,
            crm_core::StoreError::VersionConflict {
                expected: 1,
                actual: 2,
                ..
            }
        ),
        "the conflict names both versions: {err:?}"
    );
    let mut unknown = edit.clone();
    unknown.id = WorkspaceId::new();
    expect_err(
        store.update_workspace(&unknown).await,
        Kind::NotFound,
        "updating an unregistered workspace is NotFound",
    );
    let mut invalid = updated.clone();
    invalid.settings.daily_touch_limit = 0;
    same_invalid(
        store.update_workspace(&invalid).await,
        invalid.validate(),
        "an update with invalid settings",
    );
    assert_eq!(
        ok(store.get_workspace(workspace.id).await, "get_workspace"),
        updated,
        "a refused update changes nothing"
    );
}

/// list_workspaces pages every registered workspace by id: ascending, `after`
/// exclusive, chained pages without gaps or repeats; a limit of 0 or above 1000 is
/// Invalid. (Other cases may share the store, so only this case's rows are checked
/// for presence.)
pub async fn workspace_list_pages_by_id(store: &DynStore) {
    let mut mine = Vec::new();
    for _ in 0..5 {
        let workspace = new_workspace(WorkspaceSettings::default());
        ok(store.insert_workspace(&workspace).await, "insert_workspace");
        mine.push(workspace.id);
    }
    mine.sort();
    let mut walked = Vec::new();
    let mut after = None;
    loop {
        let page = ok(
            store.list_workspaces(Page { after, limit: 2 }).await,
            "list_workspaces",
        );
        assert!(page.len() <= 2, "a page holds at most `limit` rows");
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        walked.extend(page.iter().map(|w| w.id));
    }
    assert!(
        walked.windows(2).all(|w| w[0] < w[1]),
        "chained pages are strictly ascending by id, without repeats"
    );
    let seen: Vec<WorkspaceId> = walked.into_iter().filter(|id| mine.contains(id)).collect();
    assert_eq!(seen, mine, "every registered workspace is listed once");
    let after_first = ok(
        store.list_workspaces(Page::after(mine[0], 1)).await,
        "list_workspaces",
    );
    assert_eq!(after_first.len(), 1, "`limit` caps the page");
    assert!(after_first[0].id > mine[0], "`after` is exclusive");
    let listed = ok(
        store
            .list_workspaces(Page::after(mine[1], Page::<WorkspaceId>::MAX_LIMIT))
            .await,
        "list_workspaces",
    );
    let row = listed
        .iter()
        .find(|w| w.id == mine[2])
        .expect("a later workspace is listed");
    assert_eq!(
        row,
        &ok(store.get_workspace(mine[2]).await, "get_workspace"),
        "listed rows are whole rows, settings included"
    );
    for limit in [0, Page::<WorkspaceId>::MAX_LIMIT + 1] {
        expect_err(
            store.list_workspaces(Page { after: None, limit }).await,
            Kind::Invalid,
            "a page limit outside 1 to 1000 MUST be Invalid",
        );
    }
}

/// Ten writers updating the same workspace from version 1: exactly one wins, the
/// others see VersionConflict, and the stored row is the winner's at version 2.
pub async fn concurrent_workspace_updates_one_version_wins(store: &DynStore) {
    let workspace = ok(
        store
            .insert_workspace(&new_workspace(WorkspaceSettings::default()))
            .await,
        "insert_workspace",
    );
    let results = race(10, |i| {
        let mut edit = workspace.clone();
        edit.settings.daily_touch_limit = u32::try_from(i + 1).unwrap_or(1);
        async move { store.update_workspace(&edit).await }
    })
    .await;
    let winners: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(winners.len(), 1, "exactly one compare-and-set wins");
    for result in &results {
        if let Err(e) = result {
            assert_eq!(e.kind(), Kind::VersionConflict, "losers conflict: {e:?}");
        }
    }
    let stored = ok(store.get_workspace(workspace.id).await, "get_workspace");
    assert_eq!(&&stored, &winners[0], "the winner's row is stored");
    assert_eq!(stored.version, 2);
}
