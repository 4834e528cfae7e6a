//! Settings that cannot be read: the runner and the enroller fail closed.

use std::sync::Arc;

use crm_core::DynStore;
use crm_core::model::EnrollmentState;
use crm_core::outreach::enroll::{EnrollError, Enroller};
use crm_core::outreach::runner::{Runner, RunnerConfig, RunnerError};
use crm_core::outreach::settings::{SettingsError, WorkspaceSettings};

use super::world::{World, base_time, email};
use crate::engine::dispatch::FlakySettings;

/// While a workspace's settings cannot be read, a tick skips it (reported failed with
/// the settings error, nothing queued, the enrollment untouched); the next tick after
/// the read succeeds works on it.
pub async fn tick_skips_a_workspace_whose_settings_fail(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let now = base_time();
    let ada = w.contact().await;
    let seq = w.sequence(vec![email("Hello", "Hi {{first_name}}")]).await;
    let enrolled = w.enroll(&ada, &seq, now).await;
    let settings = Arc::new(FlakySettings::default());
    settings.set_failing(w.ws, true);
    let runner = Runner::new(
        w.store.clone(),
        w.time(),
        settings.clone(),
        RunnerConfig::default().with_holder("runner-settings"),
    )
    .expect("valid runner");

    let report = w.tick(&runner, now).await.expect("tick");
    assert!(
        report.tenant(w.ws).is_none(),
        "the workspace was not worked on"
    );
    let failure = report
        .failed
        .iter()
        .find(|f| f.workspace_id == w.ws)
        .expect("the workspace is reported failed");
    assert!(
        matches!(
            &failure.error,
            RunnerError::Settings(SettingsError::Unavailable { workspace_id, .. })
                if *workspace_id == w.ws
        ),
        "the report says why, naming the workspace: {:?}",
        failure.error
    );
    assert!(failure.error.is_retryable());
    assert!(w.outbox().await.is_empty(), "nothing is queued");
    let untouched = w.enrollment(enrolled.id).await;
    assert_eq!(
        (untouched.state, untouched.version),
        (enrolled.state, enrolled.version),
        "the enrollment is left as it was"
    );

    settings.set_failing(w.ws, false);
    let report = w.tick(&runner, now).await.expect("tick");
    let t = report.tenant(w.ws).expect("worked on once readable");
    assert_eq!((t.started, t.enqueued), (1, 1), "{t:?}");
    assert_eq!(
        w.enrollment(enrolled.id).await.state,
        EnrollmentState::StepPending
    );
}

/// The enroller returns the settings error (checking or enrolling), enrolling nothing.
pub async fn enroll_returns_the_settings_error(store: Arc<DynStore>) {
    let w = World::new(&store, WorkspaceSettings::default());
    let ada = w.contact().await;
    let seq = w.sequence(vec![email("Hello", "Hi")]).await;
    let settings = Arc::new(FlakySettings::default());
    settings.set_failing(w.ws, true);
    let enroller = Enroller::new(w.store.clone(), w.time(), settings);

    let checked = enroller.check(w.ws, ada.id, seq.id).await;
    assert!(
        matches!(checked, Err(EnrollError::Settings(_))),
        "check fails with the settings error: {checked:?}"
    );
    let enrolled = enroller.enroll(w.ws, ada.id, seq.id).await;
    match enrolled {
        Err(EnrollError::Settings(e)) => {
            assert_eq!(e.workspace_id(), w.ws, "the error names the workspace");
        }
        other => panic!("enroll must fail with the settings error, got {other:?}"),
    }
    assert!(w.enrollments().await.is_empty(), "nothing was enrolled");
}
