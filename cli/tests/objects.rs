//! Kubernetes-shaped objects through real masters: apply, get, list,
//! watch, scale, status and graceful delete, from any master.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{corral, TestCluster};
use control_plane::api::Object;
use control_plane::{ClientError, CorralClient};
use futures::StreamExt;
use raft_store::transport::TcpDialer;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: corral/busybox:1
        ports: [{containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_apply_list_watch_scale_and_delete_through_any_master() {
    let tc = TestCluster::start(3, &[]).await;
    let (ok, out, err) = corral(&tc, &["apply", "-f", "-"], Some(APP));
    assert!(ok, "{err}");
    assert_eq!(out, "deployment.apps/web created\nservice/web created\n");
    let (_, out, _) = corral(&tc, &["apply", "-f", "-"], Some(APP));
    assert_eq!(out, "deployment.apps/web unchanged\nservice/web unchanged\n");

    // A follower alone serves linearizable reads and forwards writes.
    let leader = tc.leader(0).await;
    let follower = tc.cluster.file.masters.iter().find(|m| m.id != leader).unwrap().address.clone();
    let client = CorralClient::new(vec![follower], Arc::new(TcpDialer::default()));
    let (items, rev) = client.list_objects("deployments", "", "app=web").await.unwrap();
    assert_eq!(items.len(), 1);
    let Object::Deployment(d) = &items[0] else { panic!("not a deployment") };
    assert_eq!((d.replicas(), d.metadata.generation), (2, Some(1)));
    assert!(d.metadata.uid.is_some() && d.metadata.creation_timestamp.is_some());

    // Watch from the list's revision: the scale and the image change arrive in order.
    let mut watch = Box::pin(
        client.watch_objects("deployments", "default", Some(raft_store::Revision(rev.0 + 1))).await.unwrap(),
    );
    client.scale("deployment", "default", "web", 5).await.unwrap();
    let (ok, out, _) =
        corral(&tc, &["apply", "-f", "-"], Some(&APP.replace("corral/busybox:1", "corral/busybox:2")));
    assert!(ok && out.starts_with("deployment.apps/web configured"), "{out}");
    // One entry per generation (the controllers also write the status, which
    // does not change the generation).
    let mut seen: Vec<(String, i32, Option<i64>)> = Vec::new();
    while seen.last().map(|s| s.2) != Some(Some(3)) {
        let batch =
            tokio::time::timeout(Duration::from_secs(10), watch.next()).await.unwrap().unwrap().unwrap();
        for e in batch {
            let Object::Deployment(d) = e.object else { panic!() };
            if seen.last().map(|s| s.2) != Some(d.metadata.generation) {
                seen.push((e.type_, d.replicas(), d.metadata.generation));
            }
        }
    }
    // The manifest says 2 replicas: applying it is declarative and sets them back.
    assert_eq!(seen, vec![("MODIFIED".to_string(), 5, Some(2)), ("MODIFIED".to_string(), 2, Some(3))]);

    // A status update with a stale resourceVersion is a conflict, never an overwrite.
    let mut stale = items[0].clone();
    if let Object::Deployment(d) = &mut stale {
        d.status = Some(Default::default());
    }
    assert!(matches!(client.update_status(&stale).await, Err(ClientError::Conflict(_))));

    // kubectl-style output.
    let (ok, out, _) = corral(&tc, &["get", "deployments"], None);
    assert!(ok && out.starts_with("NAME  READY  UP-TO-DATE  AVAILABLE  AGE\nweb   0/2"), "{out}");
    let (_, out, _) = corral(&tc, &["get", "svc", "web", "-o", "json"], None);
    let svc: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 8080);

    // A pod bound to a node terminates gracefully; an unbound one goes at once.
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: bound}\nspec: {nodeName: n1, containers: [{name: c, image: busybox}]}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: loose}\nspec: {containers: [{name: c, image: busybox}]}\n";
    assert!(corral(&tc, &["apply", "-f", "-"], Some(pods)).0);
    let (action, obj) = client.delete_object("pod", "default", "bound").await.unwrap();
    assert_eq!(action, "terminating");
    assert!(obj.meta().deletion_timestamp.is_some());
    let (_, out, _) = corral(&tc, &["get", "pods"], None);
    assert!(out.contains("bound") && out.contains("Terminating"), "{out}");
    assert_eq!(client.delete_object("pod", "default", "loose").await.unwrap().0, "deleted");
    let err = client.get_object("pod", "default", "loose").await.unwrap_err();
    assert!(matches!(&err, ClientError::NotFound(m) if m == "pods \"loose\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manifest_with_one_bad_document_applies_nothing() {
    let tc = TestCluster::start(3, &[]).await;
    let bad = format!("{APP}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n  containers: [{{name: c, image: x}}]\n  tolerations: []\n");
    let (ok, _, err) = corral(&tc, &["apply", "-f", "-"], Some(&bad));
    assert!(!ok);
    assert!(
        err.contains("<stdin>: document 3 (line 33): spec.tolerations: is not supported by Corral"),
        "{err}"
    );
    let (items, _) = tc.client().list_objects("deployments", "", "").await.unwrap();
    assert!(items.is_empty(), "nothing may be applied from a file with an error");
}
