//! Building Event objects for what the controllers do and see. An event is
//! named `<object>.<hash>` from its object's name and a hash of the object's
//! kind and the reason, so recording the same reason again finds the same
//! Event and bumps its `count` and `lastTimestamp` instead of adding one
//! more (Kubernetes' event correlator aggregates the same way, by reason).
//! Writing them is the shell's job.

use crate::api::node::EventSource;
use crate::api::service::ObjectReference;
use crate::api::{Event, Object, ObjectMeta, Time};
use crate::controllers::hash::short_hash;

/// Kubernetes' two event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Normal,
    Warning,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Normal => "Normal",
            EventType::Warning => "Warning",
        }
    }
}

/// Something that happened, before it becomes an Event.
#[derive(Debug, Clone, PartialEq)]
pub struct Occurrence<'a> {
    pub involved: ObjectReference,
    pub type_: EventType,
    /// A short CamelCase reason (`ScalingReplicaSet`, `NodeNotReady`).
    pub reason: &'a str,
    pub message: String,
    /// The controller that saw it (`deployment-controller`).
    pub component: &'a str,
}

/// A reference to `obj`, for `involvedObject`.
pub fn reference(obj: &Object) -> ObjectReference {
    let kind = obj.kind();
    ObjectReference {
        kind: Some(kind.name().into()),
        namespace: kind.namespaced().then(|| obj.namespace().to_string()),
        name: Some(obj.meta().name.clone()),
        uid: obj.meta().uid.clone(),
        api_version: Some(kind.api_version().into()),
        resource_version: None,
    }
}

/// The Event's name: `<object>.<10 base-36 characters>`.
pub fn event_name(involved: &ObjectReference, reason: &str) -> String {
    let kind = involved.kind.as_deref().unwrap_or_default();
    let name = involved.name.as_deref().unwrap_or_default();
    format!("{name}.{}", short_hash(format!("{kind}/{reason}").as_bytes()))
}

/// How long an identical occurrence (same object, reason and message) is
/// not news: a controller that sees the same trouble every pass (the
/// autoscaler every 15 s, the scheduler every pass) writes it once a minute,
/// not once a pass (Kubernetes' event correlator rate-limits the same way).
pub const REPEAT_SECS: i64 = 60;

/// Whether `what` only repeats `existing` within [`REPEAT_SECS`]: then there
/// is nothing to write.
pub fn repeats(what: &Occurrence<'_>, existing: &Event, now: Time) -> bool {
    existing.involved_object.uid == what.involved.uid
        && existing.message.as_deref() == Some(what.message.as_str())
        && existing.last_timestamp.is_some_and(|t| now.0 - t.0 < REPEAT_SECS)
}

/// The Event to write for `what` at `now`. `existing` is the stored Event
/// of the same name, if any: when it is about the same object (same uid),
/// it is returned with `count` + 1, the new message and `lastTimestamp`
/// (and its metadata, so the write can compare its resourceVersion);
/// otherwise a new Event with count 1. Events of cluster-scoped objects
/// live in `default`, as in Kubernetes.
pub fn record(what: Occurrence<'_>, existing: Option<&Event>, now: Time) -> Event {
    let name = event_name(&what.involved, what.reason);
    if let Some(old) =
        existing.filter(|e| e.metadata.name == name && e.involved_object.uid == what.involved.uid)
    {
        let mut next = old.clone();
        next.count = Some(old.count.unwrap_or(1).saturating_add(1));
        next.message = Some(what.message);
        next.type_ = Some(what.type_.as_str().into());
        next.last_timestamp = Some(now);
        return next;
    }
    let namespace = what.involved.namespace.clone().unwrap_or_else(|| "default".into());
    Event {
        api_version: "v1".into(),
        kind: "Event".into(),
        metadata: ObjectMeta { name, namespace: Some(namespace), ..Default::default() },
        involved_object: what.involved,
        reason: Some(what.reason.into()),
        message: Some(what.message),
        type_: Some(what.type_.as_str().into()),
        count: Some(1),
        first_timestamp: Some(now),
        last_timestamp: Some(now),
        source: Some(EventSource { component: Some(what.component.into()), host: None }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testing::*;

    fn occurrence(obj: &Object, reason: &'static str, message: &str) -> Occurrence<'static> {
        Occurrence {
            involved: reference(obj),
            type_: EventType::Warning,
            reason,
            message: message.into(),
            component: "node-lifecycle-controller",
        }
    }

    #[test]
    fn a_first_event_counts_one_and_names_its_object() {
        let web = Object::Pod(pod("web-1"));
        let e = record(occurrence(&web, "NodeLost", "node n2 is gone"), None, T0);
        assert!(e.metadata.name.starts_with("web-1."), "{}", e.metadata.name);
        assert_eq!(e.metadata.name.len(), "web-1.".len() + 10);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(
            (e.count, e.first_timestamp, e.last_timestamp, e.type_.as_deref(), e.reason.as_deref()),
            (Some(1), Some(T0), Some(T0), Some("Warning"), Some("NodeLost"))
        );
        assert_eq!(e.involved_object.kind.as_deref(), Some("Pod"));
        assert_eq!(e.involved_object.uid.as_deref(), Some("uid-web-1"));
        assert_eq!(e.source.and_then(|s| s.component).as_deref(), Some("node-lifecycle-controller"));
    }

    #[test]
    fn repeated_events_bump_count_instead_of_piling_up() {
        let web = Object::Pod(pod("web-1"));
        let first = record(occurrence(&web, "NodeLost", "first"), None, T0);
        let second = record(occurrence(&web, "NodeLost", "second"), Some(&first), at(30));
        assert_eq!(second.metadata.name, first.metadata.name);
        assert_eq!(
            (second.count, second.first_timestamp, second.last_timestamp, second.message.as_deref()),
            (Some(2), Some(T0), Some(at(30)), Some("second"))
        );
    }

    #[test]
    fn the_same_message_within_a_minute_is_not_news() {
        let web = Object::Pod(pod("web-1"));
        let first = record(occurrence(&web, "FailedGetScale", "no target"), None, T0);
        assert!(repeats(&occurrence(&web, "FailedGetScale", "no target"), &first, at(59)));
        assert!(!repeats(&occurrence(&web, "FailedGetScale", "no target"), &first, at(60)));
        assert!(!repeats(&occurrence(&web, "FailedGetScale", "other"), &first, at(30)));
    }

    #[test]
    fn names_differ_by_reason_and_kind_and_not_by_message() {
        let pod_web = reference(&Object::Pod(pod("web")));
        let deploy_web = reference(&Object::Deployment(deployment("web", 1)));
        let names = [
            event_name(&pod_web, "NodeLost"),
            event_name(&pod_web, "Killing"),
            event_name(&deploy_web, "NodeLost"),
        ];
        assert_ne!(names[0], names[1]);
        assert_ne!(names[0], names[2]);
        assert_eq!(names[0], event_name(&pod_web, "NodeLost"));
    }

    #[test]
    fn an_event_of_a_recreated_object_starts_a_new_count() {
        let old = Object::Pod(pod("web-1"));
        let first = record(occurrence(&old, "NodeLost", "old"), None, T0);
        let new = Object::Pod(pod("web-1").edit(|p| p.metadata.uid = Some("uid-again".into())));
        let e = record(occurrence(&new, "NodeLost", "new"), Some(&first), at(5));
        assert_eq!((e.count, e.first_timestamp), (Some(1), Some(at(5))));
    }

    #[test]
    fn events_of_cluster_scoped_objects_live_in_default() {
        let n = Object::Node(node("n2", "Unknown", T0));
        let e = record(occurrence(&n, "NodeNotReady", "silent"), None, T0);
        assert_eq!(e.metadata.namespace.as_deref(), Some("default"));
        assert_eq!(e.involved_object.namespace, None);
    }
}
