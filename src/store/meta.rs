//! Schema version and the migration runner. The version lives in `meta`
//! under `schema_version` as a big-endian u32; an absent version means a store
//! that has never been opened (version 0). Each migration moves the store one
//! version up and records the new version when it succeeds, so an interrupted
//! upgrade resumes where it stopped.

use super::vault::Vault;
use super::Error;

const SCHEMA_VERSION: &[u8] = b"schema_version";

/// The layout this binary reads and writes.
pub(crate) const CURRENT_VERSION: u32 = 5;

/// One step: the version it produces, what it does (for the log), and the work.
struct Migration {
    to: u32,
    what: &'static str,
    run: fn(&sled::Db, &Vault) -> Result<(), Error>,
}

const MIGRATIONS: &[Migration] = &[
    Migration {
        to: 1,
        what: "initial layout",
        // Version 1 is the first layout: the trees are created by `open`.
        run: |_, _| Ok(()),
    },
    Migration {
        to: 2,
        what: "key secondary indexes",
        run: build_key_index,
    },
    Migration {
        to: 3,
        // Also marks the compact usage-bucket form (trees.rs), which an older
        // binary could not read: it refuses this version instead.
        what: "request log length kept in meta",
        run: count_request_log,
    },
    Migration {
        to: 4,
        what: "trigram postings grouped",
        run: |db, _| super::key_index::group_trigram_postings(db),
    },
    Migration {
        to: 5,
        what: "limit counters per key",
        run: |db, _| super::limit_counters::split_limits_state(db),
    },
];

/// Counts the request log once, so later opens read the count instead of
/// scanning (and caching) every entry.
fn count_request_log(db: &sled::Db, _: &Vault) -> Result<(), Error> {
    let requests = db.open_tree(super::trees::REQUESTS)?;
    let meta = db.open_tree(super::trees::META)?;
    meta.insert(
        super::usage::LOG_LEN_META,
        &(requests.len() as u64).to_be_bytes(),
    )?;
    Ok(())
}

/// Builds the key index for a store written before it existed. The zone is
/// UTC until the app sets the configured one (which rebuilds if it differs).
fn build_key_index(db: &sled::Db, _: &Vault) -> Result<(), Error> {
    let tz = chrono_tz::UTC;
    super::key_index::rebuild(db, tz, chrono::Utc::now())?;
    super::key_index::record_zone(&db.open_tree(super::trees::META)?, tz)
}

pub(crate) fn read_version(meta: &sled::Tree) -> Result<u32, Error> {
    match meta.get(SCHEMA_VERSION)? {
        None => Ok(0),
        Some(v) => <[u8; 4]>::try_from(v.as_ref())
            .map(u32::from_be_bytes)
            .map_err(|_| Error::Corrupt("schema version is not a u32".into())),
    }
}

/// Refuses a store written by a newer binary (it could not be read safely).
pub(crate) fn check_supported(meta: &sled::Tree) -> Result<u32, Error> {
    let version = read_version(meta)?;
    if version > CURRENT_VERSION {
        return Err(Error::Corrupt(format!(
            "store schema version {version} is newer than this binary supports ({CURRENT_VERSION}); upgrade claude-relay"
        )));
    }
    Ok(version)
}

/// Runs every migration above the stored version, in order.
pub(crate) fn migrate(db: &sled::Db, meta: &sled::Tree, vault: &Vault) -> Result<(), Error> {
    let mut version = check_supported(meta)?;
    for m in MIGRATIONS {
        if m.to <= version {
            continue;
        }
        tracing::info!(
            from = version,
            to = m.to,
            migration = m.what,
            "migrating store"
        );
        (m.run)(db, vault)?;
        meta.insert(SCHEMA_VERSION, &m.to.to_be_bytes())?;
        meta.flush()?;
        version = m.to;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fresh_store_migrates_to_current_and_newer_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::open(dir.path()).unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert_eq!(read_version(&meta).unwrap(), 0);
        let vault = Vault::from_key(&[1; 32]);
        migrate(&db, &meta, &vault).unwrap();
        assert_eq!(read_version(&meta).unwrap(), CURRENT_VERSION);
        meta.insert(SCHEMA_VERSION, &(CURRENT_VERSION + 1).to_be_bytes())
            .unwrap();
        assert!(matches!(
            migrate(&db, &meta, &vault),
            Err(Error::Corrupt(_))
        ));
    }
}
