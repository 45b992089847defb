//! The first admin: generated password file (0600, path logged, password
//! never logged, deleted on password change) and environment admins that are
//! created once and never recreated while an admin exists.

mod graphql_support;

use claude_relay::config::Config;
use claude_relay::graphql;
use graphql_support::{code, data, Harness};
use serde_json::json;
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Collects everything a tracing subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test]
async fn generated_password_goes_to_a_0600_file_whose_path_is_logged() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::TRACE)
        .finish();
    // Current-thread runtime: the bootstrap inside `start_with` logs on this thread.
    let guard = tracing::subscriber::set_default(subscriber);
    let h = Harness::start_with(|c| {
        c.admin_user = None;
        c.admin_password = None;
    })
    .await;
    drop(guard);

    let path = graphql::password_file(&h.config);
    assert_eq!(path, h.config.data_dir.join(graphql::PASSWORD_FILE));
    let password = std::fs::read_to_string(&path)
        .unwrap()
        .trim_end()
        .to_string();
    assert!(password.len() >= 24, "a long generated password");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let logged = logs.text();
    assert!(
        logged.contains(&path.display().to_string()),
        "the path is logged: {logged}"
    );
    assert!(logged.contains("WARN"), "as a warning: {logged}");
    assert!(!logged.contains(&password), "the password is never logged");

    // The generated admin is `admin`, an OWNER, and the file's password works.
    let token = h.login(graphql::DEFAULT_ADMIN, &password).await;
    let me = h
        .post(Some(&token), "{ me { username role } }", json!({}))
        .await;
    assert_eq!(data(&me)["me"]["role"], "OWNER");

    // Changing that password deletes the file; the old password stops working.
    let changed = h
        .post(
            Some(&token),
            "mutation($c: String!) { changePassword(input: {currentPassword: $c, newPassword: \"my-own-password-1\"}) { revokedSessions } }",
            json!({ "c": password }),
        )
        .await;
    data(&changed);
    assert!(
        !path.exists(),
        "the password file is deleted with the change"
    );
    assert_eq!(
        code(&h.try_login(graphql::DEFAULT_ADMIN, &password).await),
        "UNAUTHENTICATED"
    );
    h.login(graphql::DEFAULT_ADMIN, "my-own-password-1").await;

    // A restart with admins present writes no new file and creates no admin.
    graphql::bootstrap_admin(&h.store, &h.config).await.unwrap();
    assert!(!path.exists());
    assert_eq!(h.store.admin_count().unwrap(), 1);
}

#[tokio::test]
async fn environment_admin_is_created_once_and_never_recreated() {
    let h = Harness::start_with(|c| {
        c.admin_user = Some("ops".into());
        c.admin_password = Some("ops-password-123".into());
    })
    .await;
    assert!(
        !graphql::password_file(&h.config).exists(),
        "no file when the password is given"
    );
    let token = h.login("ops", "ops-password-123").await;
    let me = h.post(Some(&token), "{ me { role } }", json!({})).await;
    assert_eq!(data(&me)["me"]["role"], "OWNER");

    // Other credentials in the environment on a later start change nothing.
    let later = Config {
        admin_user: Some("intruder".into()),
        admin_password: Some("intruder-password".into()),
        ..(*h.config).clone()
    };
    graphql::bootstrap_admin(&h.store, &later).await.unwrap();
    assert_eq!(h.store.admin_count().unwrap(), 1);
    assert!(h.store.admin_by_username("intruder").unwrap().is_none());
    h.login("ops", "ops-password-123").await;
}

#[tokio::test]
async fn a_user_name_without_a_password_gets_a_generated_one() {
    let h = Harness::start_with(|c| {
        c.admin_user = Some("boss".into());
        c.admin_password = None;
    })
    .await;
    let password = std::fs::read_to_string(graphql::password_file(&h.config)).unwrap();
    h.login("boss", password.trim_end()).await;
}
