use futures::StreamExt;
use openraft::{CommittedLeaderId, EntryPayload, Membership};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use super::*;
use crate::db::IoMode;

fn open(dir: &std::path::Path, retain: u64) -> StateMachine {
    let db = Db::open(dir, IoMode::Inline, true).unwrap();
    StateMachine::open(db, History { retain_revisions: retain }).unwrap()
}

fn log_id(index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn entry(index: u64, txns: Vec<Txn>) -> Entry {
    Entry { log_id: log_id(index), payload: EntryPayload::Normal(Command::Txns(txns)) }
}

fn membership_entry(index: u64) -> Entry {
    let nodes: BTreeMap<u64, openraft::BasicNode> =
        (1..=3).map(|i| (i, openraft::BasicNode::new(format!("127.0.0.1:700{i}")))).collect();
    let voters: BTreeSet<u64> = nodes.keys().copied().collect();
    Entry { log_id: log_id(index), payload: EntryPayload::Membership(Membership::new(vec![voters], nodes)) }
}

fn put(key: &str, value: &str, expect: Expect) -> Op {
    Op::Put { key: key.into(), value: value.into(), expect }
}

fn txn(ops: Vec<Op>) -> Txn {
    Txn { ops }
}

async fn apply(sm: &mut StateMachine, entries: Vec<Entry>) -> Vec<Response> {
    sm.apply(entries).await.unwrap()
}

async fn value(sm: &StateMachine, key: &str) -> Option<(String, u64)> {
    let (kv, _) = sm.get(key.into()).await.unwrap();
    kv.map(|kv| (String::from_utf8(kv.value).unwrap(), kv.revision.0))
}

#[tokio::test]
async fn cas_conflict_writes_nothing_and_names_the_actual_revision() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path(), 100);
    apply(&mut sm, vec![entry(1, vec![txn(vec![put("a", "1", Expect::Absent)])])]).await;
    let resp =
        apply(&mut sm, vec![entry(2, vec![txn(vec![put("a", "2", Expect::Revision(Revision(7)))])])]).await;
    let Outcome::Conflict(c) = &resp[0].outcomes[0] else { panic!("expected a conflict: {resp:?}") };
    assert_eq!((c.op_index, c.actual), (0, Some(Revision(1))));
    assert!(c.to_string().contains("expected revision 7, but it is at revision 1"), "{c}");
    assert_eq!(value(&sm, "a").await, Some(("1".into(), 1)));

    // Creating a key that exists conflicts too; the right revision succeeds.
    let resp = apply(&mut sm, vec![entry(3, vec![txn(vec![put("a", "x", Expect::Absent)])])]).await;
    assert!(matches!(resp[0].outcomes[0], Outcome::Conflict(_)));
    let resp =
        apply(&mut sm, vec![entry(4, vec![txn(vec![put("a", "3", Expect::Revision(Revision(1)))])])]).await;
    assert_eq!(resp[0].outcomes[0], Outcome::Applied(vec![OpResult { prev_revision: Some(Revision(1)) }]));
    assert_eq!(value(&sm, "a").await, Some(("3".into(), 4)));
}

#[tokio::test]
async fn transaction_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path(), 100);
    apply(&mut sm, vec![entry(1, vec![txn(vec![put("x", "1", Expect::Any)])])]).await;
    // The second condition fails: neither put may land.
    let failing = txn(vec![
        put("y", "1", Expect::Absent),
        Op::Check { key: "x".into(), expect: Expect::Revision(Revision(99)) },
        Op::Delete { key: "x".into(), expect: Expect::Any },
    ]);
    let resp = apply(&mut sm, vec![entry(2, vec![failing])]).await;
    assert!(matches!(&resp[0].outcomes[0], Outcome::Conflict(c) if c.op_index == 1));
    assert_eq!(value(&sm, "y").await, None);
    assert_eq!(value(&sm, "x").await, Some(("1".into(), 1)));

    // Two transactions batched in one entry: the first applies, the second
    // sees it (its create conflicts) and is rolled back on its own.
    let resp = apply(
        &mut sm,
        vec![entry(
            3,
            vec![
                txn(vec![put("y", "a", Expect::Absent), Op::Delete { key: "x".into(), expect: Expect::Any }]),
                txn(vec![put("z", "b", Expect::Absent), put("y", "b", Expect::Absent)]),
            ],
        )],
    )
    .await;
    assert!(matches!(resp[0].outcomes[0], Outcome::Applied(_)));
    assert!(
        matches!(&resp[0].outcomes[1], Outcome::Conflict(c) if c.op_index == 1 && c.actual == Some(Revision(3)))
    );
    assert_eq!(value(&sm, "y").await, Some(("a".into(), 3)));
    assert_eq!(value(&sm, "x").await, None);
    assert_eq!(value(&sm, "z").await, None);
}

#[tokio::test]
async fn snapshot_round_trip_restores_keys_revisions_and_membership() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut source = open(a.path(), 100);
    apply(&mut source, vec![membership_entry(0)]).await;
    for i in 1..=20u64 {
        apply(
            &mut source,
            vec![entry(i, vec![txn(vec![put(&format!("k{:02}", i % 7), &i.to_string(), Expect::Any)])])],
        )
        .await;
    }
    let snapshot = source.get_snapshot_builder().await.build_snapshot().await.unwrap();
    assert_eq!(snapshot.meta.last_log_id, Some(log_id(20)));

    let mut target = open(b.path(), 100);
    apply(&mut target, vec![entry(1, vec![txn(vec![put("stale", "gone", Expect::Any)])])]).await;
    target.install_snapshot(&snapshot.meta, snapshot.snapshot).await.unwrap();

    let (want, want_rev, _) = source.list(Vec::new(), None, 0).await.unwrap();
    let (got, got_rev, _) = target.list(Vec::new(), None, 0).await.unwrap();
    assert_eq!(got, want);
    assert_eq!((got_rev, want_rev), (Revision(20), Revision(20)));
    let (applied, membership) = target.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(20)));
    assert_eq!(membership.membership().voter_ids().collect::<Vec<_>>(), vec![1, 2, 3]);
    let current = target.get_current_snapshot().await.unwrap().expect("snapshot kept");
    assert_eq!(current.meta.snapshot_id, snapshot.meta.snapshot_id);
    // History before the snapshot is gone: watchers from there must relist.
    assert_eq!(target.first_retained().unwrap(), Revision(21));
}

#[tokio::test]
async fn watch_resumes_from_a_revision_without_gap_or_repeat() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path(), 1000);
    for i in 1..=5u64 {
        let ops = vec![put(&format!("pods/{i}"), "v", Expect::Any), put("other/x", "v", Expect::Any)];
        apply(&mut sm, vec![entry(i, vec![txn(ops)])]).await;
    }
    let mut watch = Box::pin(sm.watch(b"pods/".to_vec(), Some(Revision(3))));
    let mut seen = Vec::new();
    while seen.len() < 3 {
        let batch = watch.next().await.unwrap().unwrap();
        seen.extend(batch.into_iter().map(|e| (e.revision.0, String::from_utf8(e.key).unwrap())));
    }
    assert_eq!(seen, vec![(3, "pods/3".to_string()), (4, "pods/4".into()), (5, "pods/5".into())]);

    // Live events follow, in order, including deletes.
    apply(&mut sm, vec![entry(6, vec![txn(vec![Op::Delete { key: "pods/1".into(), expect: Expect::Any }])])])
        .await;
    apply(&mut sm, vec![entry(7, vec![txn(vec![put("pods/7", "v", Expect::Any)])])]).await;
    let mut live = Vec::new();
    while live.len() < 2 {
        let batch =
            tokio::time::timeout(Duration::from_secs(5), watch.next()).await.unwrap().unwrap().unwrap();
        live.extend(batch.into_iter().map(|e| (e.revision.0, e.kind, e.prev_revision, e.value)));
    }
    let v = b"v".to_vec();
    assert_eq!(
        live,
        vec![(6, EventKind::Delete, Some(Revision(1)), v.clone()), (7, EventKind::Put, None, v)],
        "a delete event carries the value the key had"
    );
}

#[tokio::test]
async fn watch_from_a_compacted_revision_is_told_to_relist() {
    let dir = tempfile::tempdir().unwrap();
    let mut sm = open(dir.path(), 4);
    for i in 1..=20u64 {
        apply(&mut sm, vec![entry(i, vec![txn(vec![put("k", &i.to_string(), Expect::Any)])])]).await;
    }
    let oldest = sm.first_retained().unwrap();
    assert!(oldest > Revision(1) && oldest <= Revision(17), "retained from {oldest}");
    let mut watch = Box::pin(sm.watch(b"k".to_vec(), Some(Revision(2))));
    let err = watch.next().await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Compacted { requested: Revision(2), .. }), "{err}");
    assert!(err.to_string().contains("relist"), "{err}");
    // From the oldest retained revision the watch works.
    let mut watch = Box::pin(sm.watch(b"k".to_vec(), Some(oldest)));
    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first[0].revision, oldest);
}

#[tokio::test]
async fn state_machine_restarts_from_disk() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut sm = open(dir.path(), 100);
        apply(&mut sm, vec![membership_entry(0), entry(1, vec![txn(vec![put("a", "1", Expect::Any)])])])
            .await;
        apply(&mut sm, vec![entry(2, vec![txn(vec![put("b", "2", Expect::Any)])])]).await;
    }
    let mut sm = open(dir.path(), 100);
    let (applied, membership) = sm.applied_state().await.unwrap();
    assert_eq!(applied, Some(log_id(2)));
    assert_eq!(membership.log_id(), &Some(log_id(0)));
    assert_eq!(sm.applied_index(), Revision(2));
    assert_eq!(value(&sm, "a").await, Some(("1".into(), 1)));
    assert_eq!(value(&sm, "b").await, Some(("2".into(), 2)));
    // History survives too: a watcher can resume from before the restart.
    let mut watch = Box::pin(sm.watch(Vec::new(), Some(Revision(1))));
    let events = watch.next().await.unwrap().unwrap();
    assert_eq!(events.iter().map(|e| e.revision.0).collect::<Vec<_>>(), vec![1, 2]);
}

#[test]
fn plan_txn_sees_earlier_operations_of_the_same_transaction() {
    let t = txn(vec![put("a", "1", Expect::Absent), Op::Delete { key: "a".into(), expect: Expect::Any }]);
    let (outcome, mutations) = plan_txn(&t, Revision(9), &mut |_| Ok(None)).unwrap();
    assert_eq!(
        outcome,
        Outcome::Applied(vec![
            OpResult { prev_revision: None },
            OpResult { prev_revision: Some(Revision(9)) }
        ])
    );
    assert_eq!(mutations.len(), 2);
}
