//! The garbage collector's decision: which objects lost their owners and
//! should be deleted (background cascading deletion). It decides only;
//! the shell deletes, which for a pod on a node starts a graceful
//! termination.
//!
//! Kubernetes' rule: an object with owner references is garbage once none
//! of its owners exists any more. For the objects Corral's controllers
//! make (one controlling owner each), that is: its controller is gone.
//! Owners are identified by uid, so an owner deleted and re-created under
//! the same name does not adopt the old object's dependents.

use crate::api::{Kind, Object};

/// `(kind, namespace, name)` of each object whose owners are all gone,
/// sorted. `owners_alive` says whether an object with that uid exists.
/// Objects without owner references, and objects already being deleted,
/// are never listed.
pub fn orphans<'a>(
    objects: impl IntoIterator<Item = &'a Object>,
    owners_alive: impl Fn(&str) -> bool,
) -> Vec<(Kind, String, String)> {
    let mut out: Vec<(Kind, String, String)> = objects
        .into_iter()
        .filter(|o| o.meta().deletion_timestamp.is_none())
        .filter(|o| {
            let owners = &o.meta().owner_references;
            !owners.is_empty() && owners.iter().all(|r| !owners_alive(&r.uid))
        })
        .map(|o| (o.kind(), o.namespace().to_string(), o.meta().name.clone()))
        .collect();
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;
    use crate::api::OwnerReference;
    use crate::controllers::testing::*;

    fn owner(uid: &str, controller: bool) -> OwnerReference {
        OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: format!("owner-{uid}"),
            uid: uid.into(),
            controller: Some(controller),
            block_owner_deletion: Some(true),
        }
    }

    fn owned(name: &str, owners: Vec<OwnerReference>) -> Object {
        Object::Pod(pod(name).edit(|p| p.metadata.owner_references = owners))
    }

    #[test]
    fn objects_whose_owners_are_all_gone_are_orphans() {
        let alive: BTreeSet<&str> = ["live-1", "live-2"].into();
        // (object, orphan?)
        let cases = [
            (owned("controller-alive", vec![owner("live-1", true)]), false),
            (owned("controller-gone", vec![owner("dead", true)]), true),
            (owned("no-owner", vec![]), false),
            (owned("all-owners-gone", vec![owner("dead", true), owner("dead-2", false)]), true),
            (owned("another-owner-alive", vec![owner("dead", true), owner("live-2", false)]), false),
            (
                Object::Pod(pod("already-terminating").terminating(T0).edit(|p| {
                    p.metadata.owner_references = vec![owner("dead", true)];
                })),
                false,
            ),
        ];
        for (object, orphan) in cases {
            let found = orphans(std::slice::from_ref(&object), |uid| alive.contains(uid));
            assert_eq!(!found.is_empty(), orphan, "{}", object.meta().name);
        }
    }

    #[test]
    fn orphans_name_kind_and_namespace_in_a_stable_order() {
        let mut endpoints = crate::api::Endpoints {
            api_version: "v1".into(),
            kind: "Endpoints".into(),
            metadata: meta("web", "shop"),
            subsets: vec![],
        };
        endpoints.metadata.owner_references = vec![owner("gone-svc", true)];
        let objects = [
            owned("b", vec![owner("gone", true)]),
            Object::Endpoints(endpoints),
            Object::Pod(
                pod("a")
                    .in_namespace("shop")
                    .edit(|p| p.metadata.owner_references = vec![owner("gone", true)]),
            ),
        ];
        assert_eq!(
            orphans(&objects, |_| false),
            vec![
                (Kind::Pod, "default".to_string(), "b".to_string()),
                (Kind::Pod, "shop".to_string(), "a".to_string()),
                (Kind::Endpoints, "shop".to_string(), "web".to_string()),
            ]
        );
    }
}
