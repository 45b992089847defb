//! Admin users and their sessions: the `admins` tree with its
//! `admins_by_name` index (lowercased username → id, so names are unique
//! regardless of case) and the `sessions` tree keyed by the SHA-256 of the
//! session token. Password hashing and session policy live in the admin API;
//! this file only keeps the records.

use super::trees::{decode, encode};
use super::{abort, Error, Store, StoreEvent};
use crate::domain::{Admin, AdminId, AdminSession};
use chrono::{DateTime, Utc};
use sled::Transactional;

const WHAT: &str = "admin";
const WHAT_SESSION: &str = "admin session";

fn name_key(username: &str) -> Vec<u8> {
    username.to_lowercase().into_bytes()
}

impl Store {
    pub fn admin_count(&self) -> Result<usize, Error> {
        // Admins are few; sled's len is a scan, which is fine here.
        Ok(self.inner.admins.len())
    }

    /// Creates or replaces an admin. A username (ignoring case) owned by
    /// another admin is a `Conflict`.
    pub fn put_admin(&self, admin: &Admin) -> Result<(), Error> {
        let (admins, by_name) = (&self.inner.admins, &self.inner.admins_by_name);
        let value = encode(admin)?;
        let new_name = name_key(&admin.username);
        (admins, by_name).transaction(|(admins, by_name)| {
            if let Some(owner) = by_name.get(&new_name)? {
                if owner.as_ref() != admin.id.0.as_bytes() {
                    return abort(Error::Conflict(format!(
                        "username {:?} is taken",
                        admin.username
                    )));
                }
            }
            if let Some(old) = admins.insert(admin.id.0.as_bytes(), value.as_slice())? {
                let old: Admin = match decode(&old, WHAT) {
                    Ok(old) => old,
                    Err(e) => return abort(e),
                };
                let old_name = name_key(&old.username);
                if old_name != new_name {
                    by_name.remove(old_name)?;
                }
            }
            by_name.insert(new_name.as_slice(), admin.id.0.as_bytes())?;
            Ok(())
        })?;
        self.emit(StoreEvent::AdminChanged { id: admin.id });
        Ok(())
    }

    pub fn get_admin(&self, id: AdminId) -> Result<Option<Admin>, Error> {
        self.inner
            .admins
            .get(id.0.as_bytes())?
            .map(|v| decode(&v, WHAT))
            .transpose()
    }

    /// Looks a username up ignoring case.
    pub fn admin_by_username(&self, username: &str) -> Result<Option<Admin>, Error> {
        let Some(id) = self.inner.admins_by_name.get(name_key(username))? else {
            return Ok(None);
        };
        let id = uuid::Uuid::from_slice(&id)
            .map_err(|_| Error::Corrupt("admins_by_name entry is not an id".into()))?;
        self.get_admin(AdminId(id))
    }

    /// All admins in id (creation) order.
    pub fn list_admins(&self) -> Result<Vec<Admin>, Error> {
        self.inner
            .admins
            .iter()
            .values()
            .map(|v| decode(&v?, WHAT))
            .collect()
    }

    /// Removes an admin, its name and all its sessions; returns how many
    /// sessions went. Removing an unknown admin is `NotFound`.
    pub fn delete_admin(&self, id: AdminId) -> Result<usize, Error> {
        let (admins, by_name) = (&self.inner.admins, &self.inner.admins_by_name);
        (admins, by_name).transaction(|(admins, by_name)| {
            let Some(old) = admins.remove(id.0.as_bytes())? else {
                return abort(Error::NotFound);
            };
            let old: Admin = match decode(&old, WHAT) {
                Ok(old) => old,
                Err(e) => return abort(e),
            };
            by_name.remove(name_key(&old.username))?;
            Ok(())
        })?;
        // Sessions of a removed admin can no longer resolve (the admin lookup
        // fails), so removing them after the transaction leaves no window.
        let revoked = self.delete_admin_sessions(id, None)?;
        self.emit(StoreEvent::AdminChanged { id });
        Ok(revoked)
    }

    pub fn put_session(&self, session: &AdminSession) -> Result<(), Error> {
        self.inner
            .sessions
            .insert(session.token_hash.as_bytes(), encode(session)?)?;
        self.emit(StoreEvent::AdminChanged {
            id: session.admin_id,
        });
        Ok(())
    }

    /// The stored session, expired or not: the caller decides on expiry.
    pub fn session_by_hash(&self, token_hash: &str) -> Result<Option<AdminSession>, Error> {
        self.inner
            .sessions
            .get(token_hash.as_bytes())?
            .map(|v| decode(&v, WHAT_SESSION))
            .transpose()
    }

    /// Removes a session; removing an unknown one is not an error.
    pub fn delete_session(&self, token_hash: &str) -> Result<(), Error> {
        if let Some(old) = self.inner.sessions.remove(token_hash.as_bytes())? {
            let old: AdminSession = decode(&old, WHAT_SESSION)?;
            self.emit(StoreEvent::AdminChanged { id: old.admin_id });
        }
        Ok(())
    }

    /// Removes every session of `admin_id` except `keep` (the caller's own,
    /// after a password change) and returns how many went. One batch.
    pub fn delete_admin_sessions(
        &self,
        admin_id: AdminId,
        keep: Option<&str>,
    ) -> Result<usize, Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self.inner.sessions.iter() {
            let (hash, value) = entry?;
            let session: AdminSession = decode(&value, WHAT_SESSION)?;
            if session.admin_id == admin_id && keep != Some(session.token_hash.as_str()) {
                batch.remove(hash);
                removed += 1;
            }
        }
        if removed > 0 {
            self.inner.sessions.apply_batch(batch)?;
            self.emit(StoreEvent::AdminChanged { id: admin_id });
        }
        Ok(removed)
    }

    /// Drops sessions that expired before `now`; returns how many.
    pub fn prune_expired_sessions(&self, now: DateTime<Utc>) -> Result<usize, Error> {
        let mut batch = sled::Batch::default();
        let mut removed = 0;
        for entry in self.inner.sessions.iter() {
            let (hash, value) = entry?;
            let session: AdminSession = decode(&value, WHAT_SESSION)?;
            if session.expires_at <= now {
                batch.remove(hash);
                removed += 1;
            }
        }
        if removed > 0 {
            self.inner.sessions.apply_batch(batch)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::test_support::open;
    use super::*;
    use crate::domain::Role;

    pub(crate) fn sample_admin(username: &str) -> Admin {
        let now = Utc::now();
        Admin {
            id: AdminId::generate(),
            username: username.into(),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            role: Role::Owner,
            created_at: now,
            password_changed_at: now,
            disabled: false,
        }
    }

    fn session(admin: AdminId, hash: &str, ttl_secs: i64) -> AdminSession {
        let now = Utc::now();
        AdminSession {
            token_hash: hash.into(),
            admin_id: admin,
            created_at: now,
            expires_at: now + chrono::Duration::seconds(ttl_secs),
        }
    }

    #[test]
    fn admins_round_trip_and_names_are_unique_ignoring_case() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        assert_eq!(store.admin_count().unwrap(), 0);
        let mut root = sample_admin("Root");
        store.put_admin(&root).unwrap();
        assert_eq!(store.admin_count().unwrap(), 1);
        assert_eq!(
            store.admin_by_username("root").unwrap().as_ref(),
            Some(&root)
        );
        assert_eq!(store.get_admin(root.id).unwrap().as_ref(), Some(&root));
        assert!(matches!(
            store.put_admin(&sample_admin("ROOT")),
            Err(Error::Conflict(_))
        ));
        root.username = "boss".into();
        store.put_admin(&root).unwrap();
        assert_eq!(store.admin_by_username("root").unwrap(), None);
        assert_eq!(
            store.admin_by_username("boss").unwrap().unwrap().id,
            root.id
        );
        store.put_admin(&sample_admin("root")).unwrap();
        assert_eq!(store.list_admins().unwrap().len(), 2);
        store.put_session(&session(root.id, "s1", 60)).unwrap();
        assert_eq!(store.delete_admin(root.id).unwrap(), 1);
        assert!(store.get_admin(root.id).unwrap().is_none());
        assert!(store.admin_by_username("boss").unwrap().is_none());
        assert!(store.session_by_hash("s1").unwrap().is_none());
        assert!(matches!(store.delete_admin(root.id), Err(Error::NotFound)));
        // The name is free again.
        store.put_admin(&sample_admin("boss")).unwrap();
    }

    #[test]
    fn sessions_round_trip_and_bulk_delete_keeps_the_callers() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let a = AdminId::generate();
        let b = AdminId::generate();
        for (admin, hash) in [(a, "a1"), (a, "a2"), (a, "a3"), (b, "b1")] {
            store.put_session(&session(admin, hash, 60)).unwrap();
        }
        assert_eq!(store.session_by_hash("a1").unwrap().unwrap().admin_id, a);
        assert_eq!(store.delete_admin_sessions(a, Some("a2")).unwrap(), 2);
        assert!(store.session_by_hash("a1").unwrap().is_none());
        assert!(store.session_by_hash("a2").unwrap().is_some());
        assert!(store.session_by_hash("b1").unwrap().is_some());
        store.delete_session("a2").unwrap();
        store.delete_session("never-existed").unwrap();
        assert!(store.session_by_hash("a2").unwrap().is_none());
        store.put_session(&session(b, "old", -5)).unwrap();
        assert_eq!(store.prune_expired_sessions(Utc::now()).unwrap(), 1);
        assert!(store.session_by_hash("b1").unwrap().is_some());
    }
}
