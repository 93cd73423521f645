//! The leader's view of every object: loaded from the state machine once
//! leadership is confirmed, then kept current by a watch from the loaded
//! revision (no gap, no repeat) and by the controllers' own writes.

use std::collections::BTreeMap;
use std::sync::Arc;

use raft_store::state_machine::StateMachine;
use raft_store::{Event, EventKind, KeyValue, Revision, StoreError};

use crate::api::{Kind, Object};
use crate::objects;

/// Every object under `/registry/`, with the revision it was read at.
/// Objects are shared (`Arc`): a pass hands them to the scheduler's
/// snapshot without copying tens of thousands of pods.
#[derive(Debug, Default, Clone)]
pub struct Cache {
    objects: BTreeMap<Vec<u8>, (Arc<Object>, Revision)>,
    /// The store revision the cache reflects.
    pub revision: Revision,
}

pub const REGISTRY: &[u8] = b"/registry/";

impl Cache {
    /// Reads every object from this master's state machine.
    pub async fn load(sm: &StateMachine) -> Result<Cache, StoreError> {
        let (kvs, revision, _) = sm.list(REGISTRY.to_vec(), None, 0).await?;
        let mut cache = Cache { objects: BTreeMap::new(), revision };
        for kv in kvs {
            cache.insert_kv(kv);
        }
        Ok(cache)
    }

    fn insert_kv(&mut self, kv: KeyValue) {
        match objects::decode(&kv) {
            Ok(obj) => {
                self.objects.insert(kv.key, (Arc::new(obj), kv.revision));
            }
            Err(e) => tracing::warn!(error = %e, "skipping an unreadable object"),
        }
    }

    /// Applies one watch event (idempotent: an event older than what the
    /// cache holds for the key is ignored). Returns the kind of object it
    /// changed, if any.
    pub fn apply(&mut self, e: Event) -> Option<Kind> {
        self.revision = self.revision.max(e.revision);
        if self.objects.get(&e.key).is_some_and(|(_, r)| *r > e.revision) {
            return None;
        }
        let kind = kind_of_key(&e.key);
        match e.kind {
            EventKind::Put => self.insert_kv(KeyValue { key: e.key, value: e.value, revision: e.revision }),
            EventKind::Delete => {
                self.objects.remove(&e.key);
            }
        }
        kind
    }

    /// Records a write this process made (before its watch event arrives).
    pub fn put(&mut self, obj: Object, revision: Revision) {
        let key = objects::key(obj.kind(), obj.namespace(), &obj.meta().name);
        let mut obj = obj;
        obj.meta_mut().resource_version = Some(revision.0.to_string());
        self.objects.insert(key, (Arc::new(obj), revision));
    }

    pub fn remove(&mut self, kind: Kind, namespace: &str, name: &str) {
        self.objects.remove(&objects::key(kind, namespace, name));
    }

    pub fn get(&self, kind: Kind, namespace: &str, name: &str) -> Option<(&Object, Revision)> {
        self.objects.get(&objects::key(kind, namespace, name)).map(|(o, r)| (&**o, *r))
    }

    /// Every object of `kind`, in key order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = (&Object, Revision)> {
        self.shared_of_kind(kind).map(|(o, r)| (&**o, r))
    }

    /// [`Cache::of_kind`], as shared handles.
    pub fn shared_of_kind(&self, kind: Kind) -> impl Iterator<Item = (&Arc<Object>, Revision)> {
        let prefix = objects::prefix(kind, None);
        self.objects
            .range(prefix.clone()..)
            .take_while(move |(k, _)| k.starts_with(&prefix))
            .map(|(_, (o, r))| (o, *r))
    }

    pub fn len(&self) -> usize {
        self.objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }
}

/// The kind of object a registry key holds.
fn kind_of_key(key: &[u8]) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| key.starts_with(&objects::prefix(*k, None)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::manifest;

    fn pod(name: &str) -> Object {
        let text = format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec: {{containers: [{{name: c, image: busybox}}]}}\n");
        manifest::parse("t", &text).unwrap().remove(0)
    }

    fn event(kind: EventKind, obj: &Object, rev: u64) -> Event {
        let key = objects::key(obj.kind(), obj.namespace(), &obj.meta().name);
        Event { revision: Revision(rev), kind, key, value: objects::encode(obj), prev_revision: None }
    }

    #[test]
    fn watch_events_and_own_writes_keep_the_cache_current() {
        let mut cache = Cache::default();
        assert_eq!(cache.apply(event(EventKind::Put, &pod("a"), 5)), Some(Kind::Pod));
        cache.apply(event(EventKind::Put, &pod("b"), 6));
        assert_eq!(cache.of_kind(Kind::Pod).count(), 2);
        assert_eq!(cache.of_kind(Kind::Deployment).count(), 0);
        // Our own write at 9 is newer than a late event at 7 for the same key.
        cache.put(pod("a"), Revision(9));
        assert_eq!(cache.apply(event(EventKind::Delete, &pod("a"), 7)), None);
        assert_eq!(cache.get(Kind::Pod, "default", "a").map(|(_, r)| r), Some(Revision(9)));
        cache.apply(event(EventKind::Delete, &pod("a"), 10));
        assert!(cache.get(Kind::Pod, "default", "a").is_none());
        assert_eq!(cache.revision, Revision(10));
    }
}
