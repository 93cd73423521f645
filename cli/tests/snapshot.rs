//! `corral cluster snapshot save | restore` against real masters: a backup
//! of a 3-master cluster, restored into a new single-master cluster that
//! holds every key with its value and revision, continues the revisions,
//! and takes new masters with `--join`.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use cli::local::master_addr;
use common::TestCluster;
use control_plane::api::Object;
use control_plane::CorralClient;
use raft_store::backup::{Backup, CLUSTER_ID_KEY};
use raft_store::identity::{member_key, MEMBERS_PREFIX};
use raft_store::transport::TcpDialer;

const APP: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: corral/busybox:1, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{port: 80, targetPort: 8080}]
"#;

async fn wait_voters(client: &CorralClient, want: &[u64]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(s) = client.status().await {
            let voters: Vec<u64> = s.members.iter().filter(|m| m.voter).map(|m| m.id).collect();
            if voters == want && s.leader_id != 0 {
                return;
            }
        }
        assert!(Instant::now() < deadline, "voters never became {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapshot_of_three_masters_restores_into_a_new_cluster_that_continues_the_revisions() {
    let mut tc = TestCluster::start(3, &[]).await;
    let client = tc.client();
    let manifest = tc.dir.path().join("app.yaml");
    std::fs::write(&manifest, APP).unwrap();
    let (ok, _, err) = tc.corral(&["apply", "-f", manifest.to_str().unwrap()]);
    assert!(ok, "{err}");
    for i in 0..50 {
        client.put(format!("w/{i:02}").as_bytes(), format!("v{i}").as_bytes(), None).await.unwrap();
    }
    let (last_acked, _) = client.delete(b"w/49", None).await.unwrap();

    // Save through a follower: it forwards to the leader.
    let leader = tc.leader(0).await;
    let follower = tc.cluster.file.masters.iter().find(|m| m.id != leader).unwrap().address.clone();
    let file = tc.dir.path().join("backup.corral");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", &follower, "cluster", "snapshot", "save", file.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(
        stdout.contains("saved cluster") && stdout.contains(&format!("read on master {leader}")),
        "{stdout}"
    );

    let bytes = std::fs::read(&file).unwrap();
    let backup = Backup::decode(&bytes).unwrap();
    assert!(
        backup.revision >= last_acked,
        "every acknowledged write is in: {} < {last_acked}",
        backup.revision
    );
    assert!(backup.kvs.iter().all(|kv| kv.revision <= backup.revision), "one revision for all keys");
    let w: Vec<_> = backup.kvs.iter().filter(|kv| kv.key.starts_with(b"w/")).collect();
    assert_eq!(w.len(), 49, "w/00..w/48 (w/49 deleted)");
    for kind in ["deployments", "services"] {
        let key = format!("/registry/{kind}/default/web");
        assert!(backup.kvs.iter().any(|kv| kv.key == key.as_bytes()), "{key} in the backup");
    }
    assert_eq!(backup.members.len(), 3);
    let cluster_id = backup.cluster_id.clone().expect("the cluster got an id");
    assert!(stdout.contains(&cluster_id), "{stdout}");

    tc.cluster.stop_all();

    // What restore refuses: a corrupt copy, a foreign file, a used data dir.
    let restore = |file: &std::path::Path, dir: &std::path::Path, id: u64, addr: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["cluster", "snapshot", "restore", file.to_str().unwrap()])
            .args(["--data-dir", dir.to_str().unwrap(), "--id", &id.to_string(), "--listen", addr])
            .output()
            .unwrap();
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.success(), text)
    };
    let scratch = tc.dir.path().join("scratch");
    let corrupt = tc.dir.path().join("corrupt.corral");
    let mut bad = bytes.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 1;
    std::fs::write(&corrupt, &bad).unwrap();
    let (ok, text) = restore(&corrupt, &scratch, 1, "127.0.0.1:1");
    assert!(!ok && text.contains("the snapshot is corrupt: checksum"), "{text}");
    let (ok, text) = restore(&manifest, &scratch, 1, "127.0.0.1:1");
    assert!(!ok && text.contains("not a Corral snapshot"), "{text}");
    let old_dir = tc.cluster.master(1).unwrap().data_dir.clone();
    let (ok, text) = restore(&file, &old_dir, 1, "127.0.0.1:1");
    assert!(!ok && text.contains("is not empty"), "{text}");
    assert!(!scratch.exists(), "a refused restore writes nothing");

    // Restore as master 4, start it alone: it elects itself.
    let addr4 = master_addr(tc.cluster.opts.base_port, 4);
    let dir4 = tc.cluster.opts.state_dir.join("master-4");
    let (ok, text) = restore(&file, &dir4, 4, &addr4);
    assert!(ok, "{text}");
    assert!(text.contains(&format!("corral master --id 4 --listen {addr4}")), "{text}");
    let m4 = tc.cluster.spawn_master(4, &[]).unwrap();
    tc.cluster.file.masters.push(m4);
    let only4 = CorralClient::new(vec![addr4.clone()], Arc::new(TcpDialer::default()))
        .with_timeout(Duration::from_secs(30));
    wait_voters(&only4, &[4]).await;

    // The old masters' data dirs are not carried over: the new cluster
    // registers its own members as it hears from them.
    let (registered, _) = only4.list(MEMBERS_PREFIX, false).await.unwrap();
    assert!(registered.iter().all(|kv| kv.key == member_key(4)), "{registered:?}");
    let copied = |kv: &&raft_store::KeyValue| !kv.key.starts_with(MEMBERS_PREFIX);
    for kv in backup.kvs.iter().filter(copied).filter(|kv| !kv.key.starts_with(b"/registry/")) {
        let (got, _) = only4.get(&kv.key, false).await.unwrap();
        assert_eq!(
            got.as_ref(),
            Some(kv),
            "{:?} restored with its value and revision",
            String::from_utf8_lossy(&kv.key)
        );
    }
    // Objects: present, and unchanged unless the new leader's controllers
    // have written them since (then at a revision after the backup's).
    for kv in backup.kvs.iter().filter(|kv| kv.key.starts_with(b"/registry/")) {
        let (got, _) = only4.get(&kv.key, false).await.unwrap();
        let got = got.unwrap_or_else(|| panic!("{:?} restored", String::from_utf8_lossy(&kv.key)));
        assert!(got == *kv || got.revision > backup.revision, "{:?}", String::from_utf8_lossy(&kv.key));
    }
    let Object::Deployment(web) = only4.get_object("deployments", "default", "web").await.unwrap() else {
        panic!("not a deployment")
    };
    assert_eq!(web.spec.replicas, Some(2));
    assert!(only4.get_object("services", "default", "web").await.is_ok());
    let (gone, _) = only4.get(b"w/49", false).await.unwrap();
    assert!(gone.is_none(), "a key deleted before the backup stays deleted");

    let after = only4.put(b"after-restore", b"x", None).await.unwrap();
    assert!(after > backup.revision, "new write at {after}, backup at {}", backup.revision);

    // Others join as in any cluster; the id stays the cluster's.
    let m5 = tc.cluster.spawn_master(5, &["--join".into(), addr4.clone()]).unwrap();
    tc.cluster.file.masters.push(m5.clone());
    wait_voters(&only4, &[4, 5]).await;
    let only5 = CorralClient::new(vec![m5.address], Arc::new(TcpDialer::default()));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (kv, _) = only5.get(b"w/00", true).await.unwrap();
        if kv.is_some_and(|kv| kv.value == b"v0") {
            break;
        }
        assert!(Instant::now() < deadline, "master 5 never caught up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (id, _) = only4.get(CLUSTER_ID_KEY, false).await.unwrap();
    assert_eq!(id.map(|kv| kv.value), Some(cluster_id.into_bytes()));
}
