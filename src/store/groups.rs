//! Account groups: the `groups` tree (id → `Group`). Which accounts belong to
//! a group is stored on the accounts (`AccountRouting::group_ids`).

use super::trees::{decode, encode};
use super::{Error, Store, StoreEvent};
use crate::domain::{Group, GroupId};

const WHAT: &str = "group";

impl Store {
    pub fn put_group(&self, group: &Group) -> Result<(), Error> {
        self.inner
            .groups
            .insert(group.id.0.as_bytes(), encode(group)?)?;
        self.emit(StoreEvent::GroupChanged { id: group.id });
        Ok(())
    }

    pub fn get_group(&self, id: GroupId) -> Result<Option<Group>, Error> {
        self.inner
            .groups
            .get(id.0.as_bytes())?
            .map(|v| decode(&v, WHAT))
            .transpose()
    }

    /// All groups in id (creation) order.
    pub fn list_groups(&self) -> Result<Vec<Group>, Error> {
        self.inner
            .groups
            .iter()
            .values()
            .map(|v| decode(&v?, WHAT))
            .collect()
    }

    /// Removes a group record (accounts keep no dangling reference: the
    /// caller unbinds them first).
    pub fn delete_group(&self, id: GroupId) -> Result<(), Error> {
        self.inner.groups.remove(id.0.as_bytes())?;
        self.emit(StoreEvent::GroupChanged { id });
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::open;
    use super::*;
    use chrono::Utc;

    #[test]
    fn groups_round_trip_and_emit_events() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(dir.path());
        let mut events = store.subscribe();
        let group = Group {
            id: GroupId::generate(),
            name: "team-a".into(),
            description: String::new(),
            strategy: Some(crate::domain::StrategyKind::CostFirst),
            created_at: Utc::now(),
            updated_at: Utc::now(),
        };
        store.put_group(&group).unwrap();
        assert_eq!(store.get_group(group.id).unwrap(), Some(group.clone()));
        assert_eq!(store.list_groups().unwrap(), vec![group.clone()]);
        assert!(
            matches!(events.try_recv().unwrap(), StoreEvent::GroupChanged { id } if id == group.id)
        );
        store.delete_group(group.id).unwrap();
        assert_eq!(store.get_group(group.id).unwrap(), None);
    }
}
