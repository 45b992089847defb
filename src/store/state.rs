//! Named state blobs in the `state` tree: run-time settings and state that
//! other modules persist lazily (sticky sessions, limit counters). Each blob
//! is one serde value under its own name, written whole.

use super::trees::{decode, encode};
use super::{Error, Store, StoreEvent};
use serde::de::DeserializeOwned;
use serde::Serialize;

impl Store {
    /// Writes the blob `name` and announces it.
    pub fn put_state<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Error> {
        self.inner.state.insert(name.as_bytes(), encode(value)?)?;
        self.emit(StoreEvent::StateChanged {
            name: name.to_string(),
        });
        Ok(())
    }

    /// Writes the blob `name` without an event (checkpoints nobody reacts to).
    pub fn put_state_quiet<T: Serialize>(&self, name: &str, value: &T) -> Result<(), Error> {
        self.inner.state.insert(name.as_bytes(), encode(value)?)?;
        Ok(())
    }

    pub fn get_state<T: DeserializeOwned>(&self, name: &str) -> Result<Option<T>, Error> {
        self.inner
            .state
            .get(name.as_bytes())?
            .map(|v| decode(&v, name))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::open;

    #[test]
    fn state_blobs_round_trip_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = open(dir.path());
            assert_eq!(store.get_state::<Vec<u32>>("x").unwrap(), None);
            store.put_state("x", &vec![1u32, 2, 3]).unwrap();
        }
        let store = open(dir.path());
        assert_eq!(
            store.get_state::<Vec<u32>>("x").unwrap(),
            Some(vec![1, 2, 3])
        );
    }
}
