//! Bad input gets an error that names what was wrong and what to do, and
//! nothing is half-applied.

mod common;

use std::process::Command;
use std::time::Duration;

use common::TestCluster;
use control_plane::pb::store_client::StoreClient;
use control_plane::{pb, ClientError};
use futures::StreamExt;
use raft_store::transport::{Dialer, TcpDialer};
use raft_store::{Expect, Op, Revision, Txn};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_with_errors_that_say_what_to_do() {
    let tc = TestCluster::start(3, &["--history", "20"]).await;
    let client = tc.client();

    // A value over etcd's 1.5 MiB request limit.
    let err = client.put(b"big", &vec![0u8; 1600 * 1024], None).await.unwrap_err();
    assert!(matches!(&err, ClientError::InvalidArgument(m) if m.contains("1.5 MiB")), "{err}");
    // An empty key and an over-long key.
    let err = client.put(b"", b"v", None).await.unwrap_err();
    assert!(matches!(&err, ClientError::InvalidArgument(m) if m.contains("key is empty")), "{err}");
    let err = client.get(&vec![b'k'; 5000], false).await.unwrap_err();
    assert!(matches!(&err, ClientError::InvalidArgument(m) if m.contains("at most 4096 bytes")), "{err}");

    // A compare-and-swap conflict names the key and both revisions.
    let rev = client.put(b"cas", b"1", Some(0)).await.unwrap();
    let err = client.put(b"cas", b"2", Some(rev.0 + 100)).await.unwrap_err();
    let ClientError::Conflict(m) = &err else { panic!("expected a conflict, got {err}") };
    assert!(m.contains(&format!("expected revision {}, but it is at revision {rev}", rev.0 + 100)), "{m}");

    // A transaction whose second condition fails writes nothing.
    let txn = Txn {
        ops: vec![
            Op::Put { key: b"half/a".to_vec(), value: b"1".to_vec(), expect: Expect::Any },
            Op::Check { key: b"cas".to_vec(), expect: Expect::Revision(Revision(1)) },
        ],
    };
    assert!(matches!(client.txn(&txn).await, Err(ClientError::Conflict(_))));
    assert!(client.get(b"half/a", false).await.unwrap().0.is_none(), "a failed transaction was half-applied");

    // A malformed request straight on the wire.
    let channel = TcpDialer::default().channel(&tc.cluster.file.masters[0].address).unwrap();
    let bad = pb::TxnRequest { ops: vec![pb::TxnOp { kind: 0, key: b"k".to_vec(), ..Default::default() }] };
    let status = StoreClient::new(channel).txn(bad).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("ops[0].kind"), "{}", status.message());

    // A watch from a revision older than the retained history.
    for i in 0..60 {
        client.put(format!("hist/{i}").as_bytes(), b"v", None).await.unwrap();
    }
    let mut watch = Box::pin(client.watch(b"hist/", Some(Revision(1))).await.unwrap());
    let err = watch.next().await.unwrap().unwrap_err();
    assert!(matches!(&err, ClientError::Compacted(m) if m.contains("relist")), "{err}");

    // Membership: unknown member, clashing id, clashing address, nobody there.
    let err = client.remove_master(9).await.unwrap_err();
    assert!(matches!(&err, ClientError::NotFound(m) if m.contains("master 9 is not a member")), "{err}");
    let err = client.add_master(2, "127.0.0.1:1").await.unwrap_err();
    assert!(matches!(&err, ClientError::Refused(m) if m.contains("already a member")), "{err}");
    let addr1 = tc.cluster.file.masters[0].address.clone();
    let err = client.add_master(9, &addr1).await.unwrap_err();
    assert!(matches!(&err, ClientError::Refused(m) if m.contains("already belongs to master 1")), "{err}");
    let err = client.add_master(9, "not-an-address").await.unwrap_err();
    assert!(matches!(&err, ClientError::InvalidArgument(m) if m.contains("address")), "{err}");
    let quick = client.clone().with_timeout(Duration::from_secs(2));
    let err = quick.add_master(5, "127.0.0.1:1").await.unwrap_err();
    assert!(err.to_string().contains("start it first"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_from_an_unexpected_address_is_refused_and_the_joiner_exits() {
    let tc = TestCluster::start(3, &[]).await;
    let seeds = tc.cluster.file.addresses().join(",");
    let port = tc.cluster.opts.base_port + 4;
    let data = tc.dir.path().join("intruder");
    // Master 2 exists at another address: this one claims its id.
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["master", "--id", "2", "--listen", &format!("127.0.0.1:{port}"), "--join", &seeds])
        .arg("--data-dir")
        .arg(&data)
        .output()
        .expect("run corral master");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("refused master 2 joining") && stderr.contains("already a member"), "{stderr}");
    // Nothing changed.
    let s = tc.client().status().await.unwrap();
    assert_eq!(s.members.iter().map(|m| m.id).collect::<Vec<_>>(), vec![1, 2, 3]);
}

#[test]
fn cli_names_the_unreachable_masters_and_what_to_do() {
    let out = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["--server", "127.0.0.1:1,127.0.0.1:2", "--timeout", "1s", "cluster", "status"])
        .output()
        .expect("run corral");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("no master reachable at 127.0.0.1:1, 127.0.0.1:2"), "{stderr}");
    assert!(stderr.contains("corral up"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
