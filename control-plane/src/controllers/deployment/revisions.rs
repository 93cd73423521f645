//! A deployment's revisions, kept in its annotations because Corral has no
//! ReplicaSet objects: `deployment.kubernetes.io/revision` is the number of
//! the current revision, and `corral.io/revision-history` a JSON list of
//! `{revision, hash, template}` holding the current revision and up to
//! `revisionHistoryLimit` old ones (as Kubernetes keeps the new ReplicaSet
//! and that many old ones). The current entry is kept so that the template
//! can still be restored after the spec moves on.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{HISTORY_ANNOTATION, REVISION_ANNOTATION};
use crate::api::pod::PodTemplateSpec;
use crate::controllers::hash::short_hash;

/// Kubernetes' default `revisionHistoryLimit`.
const DEFAULT_HISTORY_LIMIT: usize = 10;

/// The stable hash of a pod template: FNV-1a 64 over its JSON (struct
/// fields in declaration order, maps sorted), as 10 base-36 characters.
pub fn template_hash(template: &PodTemplateSpec) -> String {
    let json = serde_json::to_vec(template).expect("pod templates serialize to JSON");
    short_hash(&json)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(super) struct Entry {
    pub revision: i64,
    pub hash: String,
    pub template: PodTemplateSpec,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub(super) struct History {
    /// The current revision number (0: none yet).
    pub current: i64,
    /// Sorted by revision, oldest first.
    pub entries: Vec<Entry>,
}

impl History {
    /// Reads the annotations. An unreadable history counts as empty: the
    /// planner then starts a new revision rather than stall the deployment.
    pub fn read(annotations: &BTreeMap<String, String>) -> History {
        let current = annotations.get(REVISION_ANNOTATION).and_then(|r| r.parse().ok()).unwrap_or(0);
        let mut entries: Vec<Entry> = annotations
            .get(HISTORY_ANNOTATION)
            .and_then(|h| serde_json::from_str(h).ok())
            .unwrap_or_default();
        entries.sort_by_key(|e| e.revision);
        History { current, entries }
    }

    /// The annotations that carry this history (none before the first revision).
    pub fn annotations(&self) -> BTreeMap<String, String> {
        if self.current == 0 {
            return BTreeMap::new();
        }
        let history = serde_json::to_string(&self.entries).expect("revision entries serialize to JSON");
        BTreeMap::from([
            (REVISION_ANNOTATION.to_string(), self.current.to_string()),
            (HISTORY_ANNOTATION.to_string(), history),
        ])
    }

    pub fn current_entry(&self) -> Option<&Entry> {
        self.entries.iter().find(|e| e.revision == self.current)
    }

    pub fn template_of(&self, hash: &str) -> Option<&PodTemplateSpec> {
        self.entries.iter().rev().find(|e| e.hash == hash).map(|e| &e.template)
    }

    /// Makes `template` the current revision. A template that is already
    /// current keeps its number; any other gets the next number, also when
    /// it returns to an old revision's template (whose old entry goes), as
    /// Kubernetes renumbers a ReplicaSet it rolls back to. Returns whether a
    /// new revision started.
    pub fn record(mut self, hash: &str, template: &PodTemplateSpec, limit: usize) -> (History, bool) {
        let started = self.current_entry().is_none_or(|e| e.hash != hash);
        if started {
            let newest = self.entries.iter().map(|e| e.revision).max().unwrap_or(0);
            let next = self.current.max(newest) + 1;
            self.entries.retain(|e| e.hash != hash);
            self.entries.push(Entry { revision: next, hash: hash.to_string(), template: template.clone() });
            self.current = next;
        }
        let old = self.entries.iter().filter(|e| e.revision != self.current).count();
        let drop = old.saturating_sub(limit);
        let mut dropped = 0;
        // Oldest first; never the current entry.
        self.entries.retain(|e| {
            let keep = e.revision == self.current || dropped >= drop;
            dropped += usize::from(!keep);
            keep
        });
        (self, started)
    }
}

pub(super) fn history_limit(limit: Option<i32>) -> usize {
    limit.map_or(DEFAULT_HISTORY_LIMIT, |l| usize::try_from(l).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::super::{plan, rollback};
    use super::*;
    use crate::api::Deployment;
    use crate::controllers::testing::*;

    /// The deployment after the planner saw each image in turn.
    fn rolled_through(images: &[&str], limit: Option<i32>) -> Deployment {
        let mut d = deployment("web", 2);
        d.spec.revision_history_limit = limit;
        images.iter().fold(d, |d, image| recorded(with_image(d, image)))
    }

    /// (current revision, [(revision, image)]).
    fn revisions(d: &Deployment) -> (i64, Vec<(i64, String)>) {
        let h = History::read(&d.metadata.annotations);
        let entries = h.entries.iter().map(|e| (e.revision, e.template.spec.containers[0].image.clone()));
        (h.current, entries.collect())
    }

    fn entries(list: &[(i64, &str)]) -> Vec<(i64, String)> {
        list.iter().map(|(r, i)| (*r, i.to_string())).collect()
    }

    /// (images in turn, revisionHistoryLimit, current revision, history)
    type HistoryCase = (&'static [&'static str], Option<i32>, i64, &'static [(i64, &'static str)]);

    #[test]
    fn each_new_template_is_a_new_revision_and_old_ones_are_kept() {
        let cases: [HistoryCase; 6] = [
            (&["a"], None, 1, &[(1, "a")]),
            (&["a", "b"], None, 2, &[(1, "a"), (2, "b")]),
            (&["a", "b", "b"], None, 2, &[(1, "a"), (2, "b")]),
            (&["a", "b", "a"], None, 3, &[(2, "b"), (3, "a")]),
            (&["a", "b", "c", "d", "e"], Some(2), 5, &[(3, "c"), (4, "d"), (5, "e")]),
            (&["a", "b"], Some(0), 2, &[(2, "b")]),
        ];
        for (images, limit, current, history) in cases {
            let d = rolled_through(images, limit);
            assert_eq!(revisions(&d), (current, entries(history)), "{images:?} limit {limit:?}");
        }
    }

    #[test]
    fn annotations_hold_the_revision_number_and_a_json_history() {
        let d = rolled_through(&["img:1", "img:2"], None);
        assert_eq!(d.metadata.annotations[REVISION_ANNOTATION], "2");
        let history: serde_json::Value =
            serde_json::from_str(&d.metadata.annotations[HISTORY_ANNOTATION]).expect("JSON");
        let first = &history[0];
        assert_eq!(first["revision"], 1);
        assert_eq!(first["template"]["spec"]["containers"][0]["image"], "img:1");
        let a = with_image(deployment("web", 2), "img:1");
        assert_eq!(first["hash"], template_hash(&a.spec.template));
        assert_eq!(history.as_array().map(Vec::len), Some(2));
    }

    #[test]
    fn an_unreadable_history_starts_a_new_revision_instead_of_stalling() {
        let mut d = deployment("web", 2);
        d.metadata.annotations = labels(&[(REVISION_ANNOTATION, "7"), (HISTORY_ANNOTATION, "not json")]);
        assert_eq!(revisions(&recorded(d)), (8, entries(&[(8, "img:1")])));
    }

    #[test]
    fn rollback_restores_a_recorded_template() {
        let d = rolled_through(&["img:1", "img:2", "img:3"], None);
        // (to revision, image or error)
        let cases: [(Option<i64>, Result<&str, &str>); 5] = [
            (None, Ok("img:2")),
            (Some(0), Ok("img:2")),
            (Some(1), Ok("img:1")),
            (Some(3), Ok("img:3")),
            (Some(9), Err("unable to find specified revision 9 in history of deployment \"web\"")),
        ];
        for (to, expected) in cases {
            let got = rollback(&d, to).map(|r| r.spec.template.spec.containers[0].image.clone());
            assert_eq!(got.as_deref().map_err(String::as_str), expected, "{to:?}");
        }
    }

    #[test]
    fn a_rolled_back_template_becomes_the_next_revision() {
        let d = rolled_through(&["img:1", "img:2", "img:3"], None);
        let back = recorded(rollback(&d, Some(1)).expect("revision 1 exists"));
        assert_eq!(revisions(&back), (4, entries(&[(2, "img:2"), (3, "img:3"), (4, "img:1")])));
    }

    #[test]
    fn rollback_keeps_a_template_the_planner_has_not_seen_yet() {
        let d = with_image(rolled_through(&["img:1", "img:2"], None), "img:3");
        let back = rollback(&d, None).expect("revision 2 exists");
        assert_eq!(back.spec.template.spec.containers[0].image, "img:2");
        let forth = rollback(&recorded(back), Some(3)).expect("revision 3 was recorded");
        assert_eq!(forth.spec.template.spec.containers[0].image, "img:3");
    }

    #[test]
    fn rollback_without_history_or_while_paused_is_refused() {
        let fresh = deployment("web", 2);
        assert_eq!(
            rollback(&fresh, None).err().as_deref(),
            Some("no rollout history found for deployment \"web\"")
        );
        let mut paused = rolled_through(&["img:1", "img:2"], None);
        paused.spec.paused = Some(true);
        let err = rollback(&paused, None).expect_err("paused");
        assert!(err.starts_with("you cannot rollback a paused deployment; resume it first"), "{err}");
        // The planner itself leaves history alone while paused.
        assert_eq!(plan::<crate::api::Pod>(&paused, &[], T0).annotations, paused.metadata.annotations);
    }
}
