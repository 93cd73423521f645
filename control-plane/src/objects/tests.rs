use super::*;
use crate::api::manifest;

fn obj(yaml: &str) -> Object {
    manifest::parse("t.yaml", yaml).unwrap().remove(0)
}

const DEPLOY: &str = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, labels: {app: web}}\nspec:\n  replicas: 2\n  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec: {containers: [{name: web, image: 'busybox:1'}]}\n";

fn uid() -> impl FnMut() -> String {
    let mut n = 0;
    move || {
        n += 1;
        format!("uid-{n}")
    }
}

#[test]
fn create_assigns_identity_and_requires_absence() {
    let (created, expect, action) = plan_apply(obj(DEPLOY), None, Time(100), &mut uid()).unwrap();
    assert_eq!((expect, action), (Expect::Absent, Action::Created));
    let m = created.meta();
    assert_eq!(
        (m.uid.as_deref(), m.creation_timestamp, m.generation),
        (Some("uid-1"), Some(Time(100)), Some(1))
    );
    assert_eq!(m.namespace.as_deref(), Some("default"));
}

#[test]
fn update_keeps_identity_and_status_and_bumps_generation_on_spec_change() {
    let (stored, _, _) = plan_apply(obj(DEPLOY), None, Time(100), &mut uid()).unwrap();
    let mut stored = stored;
    if let Object::Deployment(d) = &mut stored {
        d.status = Some(Default::default());
    }
    // The same manifest again: unchanged.
    let (_, expect, action) =
        plan_apply(obj(DEPLOY), Some((&stored, Revision(7))), Time(200), &mut uid()).unwrap();
    assert_eq!(action, Action::Unchanged);
    assert_eq!((expect, action), (Expect::Revision(Revision(7)), Action::Unchanged));
    // A new image: configured, generation 2, status and uid kept.
    let (next, _, action) = plan_apply(
        obj(&DEPLOY.replace("busybox:1", "busybox:2")),
        Some((&stored, Revision(7))),
        Time(200),
        &mut uid(),
    )
    .unwrap();
    assert_eq!(action, Action::Configured);
    let Object::Deployment(d) = &next else { panic!() };
    assert_eq!((d.metadata.generation, d.metadata.uid.as_deref()), (Some(2), Some("uid-1")));
    assert!(d.status.is_some(), "users do not overwrite the status");
    // A label change only: configured, generation unchanged.
    let (next, _, _) = plan_apply(
        obj(&DEPLOY.replacen("labels: {app: web}}", "labels: {app: web, tier: f}}", 1)),
        Some((&stored, Revision(7))),
        Time(200),
        &mut uid(),
    )
    .unwrap();
    assert_eq!(next.meta().generation, Some(1));
}

#[test]
fn a_stale_resource_version_is_a_conflict() {
    let (stored, _, _) = plan_apply(obj(DEPLOY), None, Time(100), &mut uid()).unwrap();
    let mut incoming = obj(DEPLOY);
    incoming.meta_mut().resource_version = Some("5".into());
    let err = plan_apply(incoming, Some((&stored, Revision(9))), Time(1), &mut uid()).unwrap_err();
    assert!(
        matches!(&err, RegistryError::Conflict(m) if m.contains("resourceVersion 5 is not the current 9")),
        "{err}"
    );
}

#[test]
fn pod_specs_are_immutable_but_binding_survives_reapply() {
    let pod =
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: [{name: c, image: busybox}]}\n";
    let (mut stored, _, _) = plan_apply(obj(pod), None, Time(1), &mut uid()).unwrap();
    if let Object::Pod(p) = &mut stored {
        p.spec.node_name = Some("n1".into());
    }
    let (_, _, action) = plan_apply(obj(pod), Some((&stored, Revision(3))), Time(2), &mut uid()).unwrap();
    assert_eq!(action, Action::Unchanged);
    let err =
        plan_apply(obj(&pod.replace("busybox", "nginx")), Some((&stored, Revision(3))), Time(2), &mut uid())
            .unwrap_err();
    assert!(err.to_string().contains("pod updates may not change the spec"), "{err}");
}

#[test]
fn deleting_a_bound_pod_is_graceful() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {terminationGracePeriodSeconds: 5, containers: [{name: c, image: busybox}]}\n";
    let (unbound, _, _) = plan_apply(obj(pod), None, Time(1), &mut uid()).unwrap();
    assert_eq!(plan_delete(&unbound, Time(9), false), DeletePlan::Remove);
    let mut bound = unbound.clone();
    if let Object::Pod(p) = &mut bound {
        p.spec.node_name = Some("n1".into());
    }
    let DeletePlan::MarkTerminating(marked) = plan_delete(&bound, Time(9), false) else {
        panic!("expected graceful delete")
    };
    assert_eq!(
        (marked.meta().deletion_timestamp, marked.meta().deletion_grace_period_seconds),
        (Some(Time(9)), Some(5))
    );
    assert_eq!(plan_delete(&marked, Time(10), false), DeletePlan::AlreadyTerminating);
    assert_eq!(plan_delete(&obj(DEPLOY), Time(9), false), DeletePlan::Remove);
    assert_eq!(plan_delete(&marked, Time(10), true), DeletePlan::Remove, "the node confirms");
}

#[test]
fn status_updates_leave_the_spec_alone() {
    let (stored, _, _) = plan_apply(obj(DEPLOY), None, Time(100), &mut uid()).unwrap();
    let mut incoming = obj(&DEPLOY.replace("replicas: 2", "replicas: 9"));
    if let Object::Deployment(d) = &mut incoming {
        d.status = Some(crate::api::deployment::DeploymentStatus { ready_replicas: 2, ..Default::default() });
    }
    let (next, expect) = plan_status(incoming, &stored, Revision(4)).unwrap();
    let Object::Deployment(d) = next else { panic!() };
    assert_eq!(
        (d.replicas(), d.status.unwrap().ready_replicas, expect),
        (2, 2, Expect::Revision(Revision(4)))
    );
}

#[test]
fn scale_changes_replicas_and_generation() {
    let (stored, _, _) = plan_apply(obj(DEPLOY), None, Time(100), &mut uid()).unwrap();
    let Object::Deployment(d) = plan_scale(&stored, 5).unwrap() else { panic!() };
    assert_eq!((d.replicas(), d.metadata.generation), (5, Some(2)));
    assert!(plan_scale(&stored, -1).is_err());
}

#[test]
fn keys_separate_kinds_and_namespaces() {
    assert_eq!(key(Kind::Pod, "default", "web-1"), b"/registry/pods/default/web-1");
    assert_eq!(key(Kind::Node, "", "n1"), b"/registry/nodes/n1");
    assert_eq!(prefix(Kind::Pod, Some("kube")), b"/registry/pods/kube/");
    assert_eq!(prefix(Kind::Pod, None), b"/registry/pods/");
}

#[test]
fn apply_keeps_the_controllers_revision_annotations() {
    let (mut stored, _, _) = plan_apply(obj(DEPLOY), None, Time(100), &mut uid()).unwrap();
    stored.meta_mut().annotations.insert("deployment.kubernetes.io/revision".into(), "3".into());
    stored.meta_mut().annotations.insert("corral.io/revision-history".into(), "[]".into());
    let (next, _, action) =
        plan_apply(obj(DEPLOY), Some((&stored, Revision(7))), Time(200), &mut uid()).unwrap();
    assert_eq!(action, Action::Unchanged);
    assert_eq!(
        next.meta().annotations.get("deployment.kubernetes.io/revision").map(String::as_str),
        Some("3")
    );
}

#[test]
fn a_service_keeps_its_cluster_ip_and_refuses_another() {
    let svc = |ip: &str| {
        obj(&format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{name: web}}\nspec: {{selector: {{app: web}}, ports: [{{port: 80}}]{ip}}}\n"
        ))
    };
    let mut stored = svc(", clusterIP: 10.96.0.7");
    stored.meta_mut().uid = Some("u".into());
    let current = Some((&stored, Revision(3)));
    let (kept, _, _) = plan_apply(svc(""), current, Time::from_unix(5), &mut uid()).unwrap();
    let Object::Service(kept) = kept else { panic!("a service") };
    assert_eq!(kept.spec.cluster_ip.as_deref(), Some("10.96.0.7"));
    let err = plan_apply(svc(", clusterIP: 10.96.0.8"), current, Time::from_unix(5), &mut uid()).unwrap_err();
    assert!(
        err.to_string().contains("spec.clusterIP: Invalid value: \"10.96.0.8\": field is immutable"),
        "{err}"
    );
}
