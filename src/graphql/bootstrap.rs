//! The first admin (conventions.md "Admin bootstrap"). When no admin
//! exists: `RELAY_ADMIN_USER`/`RELAY_ADMIN_PASSWORD` create that OWNER;
//! without a password, one is generated and written to
//! `<data_dir>/admin-password.txt` (0600), whose path (never the password) is
//! logged. The file goes when that password is changed. While any admin
//! exists, nothing here runs, so the environment never recreates one.

use super::auth::{generate_password, hash_password};
use crate::config::Config;
use crate::domain::{Admin, AdminId, Role};
use crate::store::{self, Store};
use chrono::Utc;
use std::io::Write;
use std::path::{Path, PathBuf};

/// Name of the generated password file inside the data dir.
pub const PASSWORD_FILE: &str = "admin-password.txt";
/// Username of the generated admin when `RELAY_ADMIN_USER` is not set.
pub const DEFAULT_ADMIN: &str = "admin";

pub fn password_file(config: &Config) -> PathBuf {
    config.data_dir.join(PASSWORD_FILE)
}

/// Creates the first admin if there is none (see the module doc).
/// `RELAY_ADMIN_USER` alone names the generated admin; `RELAY_ADMIN_PASSWORD`
/// alone sets the password of `admin`.
pub async fn bootstrap_admin(store: &Store, config: &Config) -> Result<(), store::Error> {
    if store.admin_count()? > 0 {
        return Ok(());
    }
    let username = config
        .admin_user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .unwrap_or(DEFAULT_ADMIN)
        .to_string();
    let (password, generated) = match &config.admin_password {
        Some(p) => (p.clone(), false),
        None => (generate_password(), true),
    };
    let password_hash = hash_password(password.clone())
        .await
        .map_err(|_| store::Error::Sled("admin bootstrap: password hashing failed".into()))?;
    let path = password_file(config);
    // The file is written before the admin exists: a crash in between leaves
    // a stale file that the next start rewrites, never an admin nobody can log in as.
    if generated {
        write_password_file(&path, &password).map_err(|e| {
            store::Error::Sled(format!(
                "admin bootstrap: cannot write {}: {e}",
                path.display()
            ))
        })?;
    }
    let now = Utc::now();
    let admin = Admin {
        id: AdminId::generate(),
        username: username.clone(),
        password_hash,
        role: Role::Owner,
        created_at: now,
        password_changed_at: now,
        disabled: false,
    };
    store.put_admin(&admin)?;
    if generated {
        tracing::warn!(
            admin.username = %username,
            path = %path.display(),
            "created the first admin (OWNER) with a generated password; it is in the file at `path`, \
             which is deleted when the password is changed"
        );
    } else {
        tracing::info!(admin.username = %username, "created the first admin (OWNER) from RELAY_ADMIN_USER/RELAY_ADMIN_PASSWORD");
    }
    Ok(())
}

fn write_password_file(path: &Path, password: &str) -> std::io::Result<()> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)?;
    }
    // Remove a stale file so the new one is created with our mode, not
    // whatever the old one had.
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(format!("{password}\n").as_bytes())?;
    file.sync_all()
}

/// Called after a password change: if the password file holds the password
/// that was just retired, it has served its purpose and is deleted. Failing
/// to delete is logged, not fatal: the password in it no longer works.
pub(crate) fn forget_generated_password(config: &Config, retired: &str) {
    let path = password_file(config);
    let Ok(content) = std::fs::read_to_string(&path) else {
        return;
    };
    if content.trim_end_matches(['\n', '\r']) != retired {
        return;
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {
            tracing::info!(path = %path.display(), "deleted the generated admin password file")
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "could not delete the generated admin password file")
        }
    }
}
