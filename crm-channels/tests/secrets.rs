//! The environment and file secret resolvers.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::ffi::OsString;

use crm_channels::secrets::{EnvSecretResolver, FileSecretResolver};
use crm_core::secret::{ExposeSecret, SecretError, SecretRef, SecretResolver};

fn reference(s: &str) -> SecretRef {
    SecretRef::parse(s).unwrap()
}

fn env(vars: &[(&str, &str)]) -> EnvSecretResolver {
    let map: HashMap<String, OsString> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), OsString::from(*v)))
        .collect();
    EnvSecretResolver::with_lookup(move |name| map.get(name).cloned())
}

#[test]
fn env_names_follow_the_documented_rule() {
    let r = EnvSecretResolver::new();
    assert_eq!(
        r.variable_name(&reference("secret://a/b-c:3")),
        "CRM_SECRET_A_B_C_3"
    );
    assert_eq!(
        r.variable_name(&reference("secret://resend/api-key:latest")),
        "CRM_SECRET_RESEND_API_KEY_LATEST"
    );
    let custom = EnvSecretResolver::new().with_prefix("APP_");
    assert_eq!(
        custom.variable_name(&reference("secret://x.y:v1.2")),
        "APP_X_Y_V1_2"
    );
}

#[tokio::test]
async fn env_resolves_values_and_reports_missing_ones() {
    let r = env(&[
        ("CRM_SECRET_RESEND_API_KEY_3", "re_live_abc"),
        ("CRM_SECRET_EMPTY_1", ""),
    ]);
    let value = r
        .resolve(&reference("secret://resend/api-key:3"))
        .await
        .unwrap();
    assert_eq!(value.expose_secret(), "re_live_abc");
    for missing in ["secret://resend/api-key:4", "secret://empty:1"] {
        let e = r.resolve(&reference(missing)).await.unwrap_err();
        assert!(matches!(e, SecretError::NotFound { .. }), "{missing}");
        assert!(!e.is_retryable());
    }
    assert!(!format!("{r:?}").contains("re_live"));
}

#[tokio::test]
async fn env_reads_the_process_environment() {
    // The real process environment, where this variable is not set.
    let r = EnvSecretResolver::new().with_prefix("");
    let e = r
        .resolve(&reference("secret://crm-no-such-var:1"))
        .await
        .unwrap_err();
    assert!(matches!(e, SecretError::NotFound { .. }));
}

fn temp_root(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("crm-secrets-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn files_resolve_from_id_and_version() {
    let root = temp_root("ok");
    std::fs::create_dir_all(root.join("resend/api-key")).unwrap();
    std::fs::write(root.join("resend/api-key/3"), "re_file_key\n").unwrap();
    std::fs::write(root.join("resend/api-key/4"), "crlf\r\n").unwrap();
    let r = FileSecretResolver::new(&root);
    let v = r
        .resolve(&reference("secret://resend/api-key:3"))
        .await
        .unwrap();
    assert_eq!(v.expose_secret(), "re_file_key");
    let v = r
        .resolve(&reference("secret://resend/api-key:4"))
        .await
        .unwrap();
    assert_eq!(v.expose_secret(), "crlf");
    let e = r
        .resolve(&reference("secret://resend/api-key:5"))
        .await
        .unwrap_err();
    assert!(matches!(e, SecretError::NotFound { .. }));
    let _ = std::fs::remove_dir_all(&root);
}

#[tokio::test]
async fn files_refuse_path_traversal() {
    let root = temp_root("traversal");
    let outside = root
        .parent()
        .unwrap()
        .join(format!("crm-outside-{}", std::process::id()));
    std::fs::write(&outside, "stolen").unwrap();
    let r = FileSecretResolver::new(root.join("inner"));
    std::fs::create_dir_all(root.join("inner")).unwrap();
    for bad in [
        "secret://../x:1",
        "secret://a/../../x:1",
        "secret://a:..",
        "secret://./a:1",
        "secret://a//b:1",
    ] {
        let parsed = SecretRef::parse(bad);
        let Ok(parsed) = parsed else { continue };
        assert!(r.path_of(&parsed).is_none(), "{bad} must be refused");
        assert!(r.resolve(&parsed).await.is_err(), "{bad} must not resolve");
    }
    let _ = std::fs::remove_file(&outside);
    let _ = std::fs::remove_dir_all(&root);
}

#[cfg(unix)]
#[tokio::test]
async fn files_refuse_symlinks_out_of_the_root() {
    let root = temp_root("symlink");
    let outside = temp_root("symlink-target");
    std::fs::write(outside.join("1"), "stolen").unwrap();
    std::os::unix::fs::symlink(&outside, root.join("escape")).unwrap();
    let r = FileSecretResolver::new(&root);
    let e = r
        .resolve(&reference("secret://escape:1"))
        .await
        .unwrap_err();
    assert!(matches!(e, SecretError::Unavailable { .. }), "{e}");
    assert!(!format!("{e:?}").contains("stolen"));
    let _ = std::fs::remove_dir_all(&root);
    let _ = std::fs::remove_dir_all(&outside);
}
