//! A deployment's revisions shown as kubectl shows ReplicaSets. Corral
//! stores no ReplicaSet objects: a revision is the deployment's recorded
//! template (`deployment.kubernetes.io/revision` and the revision history
//! annotation) plus the pods carrying its `pod-template-hash` label. Pure.

use control_plane::api::{Deployment, Pod, Time};
use control_plane::controllers::deployment::{revisions, TEMPLATE_HASH_LABEL};
use serde_json::json;

/// One revision of one deployment, as a ReplicaSet would report it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaSetView {
    /// `<deployment>-<template hash>`, as Kubernetes names ReplicaSets.
    pub name: String,
    pub namespace: String,
    pub deployment: String,
    pub revision: i64,
    pub hash: String,
    /// The deployment's replicas for the current revision, 0 for old ones.
    pub desired: i32,
    /// Its pods that are not terminating.
    pub current: i32,
    pub ready: i32,
    /// When its oldest pod was created (the deployment's creation without pods).
    pub created: Option<Time>,
    pub template: control_plane::api::pod::PodTemplateSpec,
}

/// The revisions of `deployments`, newest first per deployment. `pods` may
/// hold any pods: a revision counts those its deployment controls.
pub fn views(deployments: &[Deployment], pods: &[Pod]) -> Vec<ReplicaSetView> {
    let mut out = Vec::new();
    for d in deployments {
        let (current, revs) = revisions(d);
        let ns = d.metadata.namespace_or_default();
        let owned: Vec<&Pod> = pods
            .iter()
            .filter(|p| p.metadata.namespace_or_default() == ns)
            .filter(|p| p.metadata.controller().is_some_and(|o| Some(&o.uid) == d.metadata.uid.as_ref()))
            .collect();
        for r in revs.into_iter().rev() {
            let mine: Vec<&&Pod> = owned
                .iter()
                .filter(|p| p.metadata.labels.get(TEMPLATE_HASH_LABEL) == Some(&r.hash))
                .collect();
            let live = mine.iter().filter(|p| p.metadata.deletion_timestamp.is_none());
            out.push(ReplicaSetView {
                name: format!("{}-{}", d.metadata.name, r.hash),
                namespace: ns.to_string(),
                deployment: d.metadata.name.clone(),
                revision: r.number,
                desired: if r.number == current { d.replicas() } else { 0 },
                current: live.clone().count() as i32,
                ready: live.filter(|p| p.is_ready()).count() as i32,
                created: mine
                    .iter()
                    .filter_map(|p| p.metadata.creation_timestamp)
                    .min()
                    .or(d.metadata.creation_timestamp),
                hash: r.hash,
                template: r.template,
            });
        }
    }
    out
}

impl ReplicaSetView {
    /// The ReplicaSet Kubernetes would show (`-o yaml|json`). Read only:
    /// `apply` refuses kind ReplicaSet.
    pub fn to_value(&self) -> serde_json::Value {
        let mut labels = self.template.metadata.labels.clone();
        labels.insert(TEMPLATE_HASH_LABEL.into(), self.hash.clone());
        json!({
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": self.name,
                "namespace": self.namespace,
                "labels": labels,
                "annotations": {"deployment.kubernetes.io/revision": self.revision.to_string()},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": self.deployment, "controller": true}],
            },
            "spec": {
                "replicas": self.desired,
                "selector": {"matchLabels": labels},
                "template": self.template,
            },
            "status": {"replicas": self.current, "readyReplicas": self.ready},
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control_plane::api::{manifest, Object};
    use control_plane::controllers::deployment::{owner_reference, plan, pod_for, template_hash};

    fn deployment(image: &str) -> Deployment {
        let text = format!("apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: web, uid: u1, creationTimestamp: '1970-01-01T00:00:10Z'}}\nspec:\n  replicas: 2\n  selector: {{matchLabels: {{app: web}}}}\n  template:\n    metadata: {{labels: {{app: web}}}}\n    spec: {{containers: [{{name: web, image: {image}}}]}}\n");
        match manifest::parse("d", &text).unwrap().remove(0) {
            Object::Deployment(d) => d,
            _ => unreachable!(),
        }
    }

    /// `d` with `image`, after the controller recorded the revision.
    fn rolled(mut d: Deployment, image: &str) -> Deployment {
        d.spec.template.spec.containers[0].image = image.into();
        let annotations = plan(&d, &[] as &[Pod], Time(0)).annotations;
        d.metadata.annotations.extend(annotations);
        d
    }

    #[test]
    fn each_revision_is_a_replicaset_with_its_own_pods() {
        let d = rolled(rolled(deployment("a"), "a"), "b");
        let old_hash = template_hash(&rolled(deployment("a"), "a").spec.template);
        let mut old_pod = pod_for(&d, &old_hash, "web-old");
        old_pod.metadata.creation_timestamp = Some(Time(20));
        let new_pod = pod_for(&d, &template_hash(&d.spec.template), "web-new");
        let mut stranger = new_pod.clone();
        stranger.metadata.owner_references[0].uid = "other".into();
        assert_eq!(owner_reference(&d).uid, "u1");

        let rs = views(std::slice::from_ref(&d), &[old_pod, new_pod, stranger]);
        let summary: Vec<(i64, i32, i32)> = rs.iter().map(|r| (r.revision, r.desired, r.current)).collect();
        assert_eq!(summary, vec![(2, 2, 1), (1, 0, 1)]);
        assert_eq!(rs[1].name, format!("web-{old_hash}"));
        assert_eq!(rs[1].created, Some(Time(20)));
        assert_eq!(rs[0].created, Some(Time(10)), "no dated pod: the deployment's age");
        let v = rs[0].to_value();
        assert_eq!(v["metadata"]["annotations"]["deployment.kubernetes.io/revision"], "2");
        assert_eq!(v["spec"]["template"]["spec"]["containers"][0]["image"], "b");
    }
}
