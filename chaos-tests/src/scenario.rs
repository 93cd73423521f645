//! One chaos run: a cluster of simulated masters, the workload of
//! [`crate::workload`], the nemesis of [`crate::nemesis`] over the first
//! part of the run, then heal, a quiet period, and every invariant checked:
//!
//! - the register history is linearizable ([`crate::linearizability`]);
//! - no acknowledged write is lost;
//! - at most one leader per term commits: the entries every master applied
//!   name one leader per term ([`crate::observe`]); terms in which two
//!   masters were elected are reported (openraft allows them by design,
//!   see [`crate::observe`]; they must not break the other invariants);
//! - every master applied the same events for the same revisions
//!   (committed prefixes agree) and holds the same keys;
//! - every watch saw exactly the events of its prefix from its revision:
//!   no gap, no repeat, also across the hops between masters.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use raft_store::{Event, NodeId, Revision};

use crate::history::{Call, Outcome, Recorder};
use crate::nemesis::{Nemesis, Schedule, BASE_LATENCY};
use crate::workload::{self, Acked, Watched};
use crate::{master_host, observe, run_master, sim_client};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The test binary's name, for messages and file names.
    pub test: &'static str,
    pub masters: u64,
    pub registers: usize,
    pub register_clients: u64,
    pub writers: u64,
    pub watchers: u64,
    /// Simulated time with faults, then without.
    pub faults_for: Duration,
    pub quiet: Duration,
    /// Where a failing history is written.
    pub dump_dir: PathBuf,
}

impl Config {
    pub fn new(test: &'static str, masters: u64, dump_dir: impl Into<PathBuf>) -> Self {
        Config {
            test,
            masters,
            registers: 3,
            register_clients: 4,
            writers: 2,
            watchers: 2,
            faults_for: Duration::from_secs(30),
            quiet: Duration::from_secs(10),
            dump_dir: dump_dir.into(),
        }
    }
}

/// How long the cluster may take to settle after healing.
const SETTLE: Duration = Duration::from_secs(60);

/// Runs the scenario with `seed`; an `Err` names the broken invariant.
pub fn run(seed: u64, cfg: &Config) -> turmoil::Result {
    let dirs = tempfile::tempdir()?;
    let mut sim = cluster(seed, cfg.masters, dirs.path());
    let masters: Vec<NodeId> = (1..=cfg.masters).collect();
    let schedule = Schedule::random(seed, masters.len(), WARMUP, cfg.faults_for, cfg.quiet);
    tracing::info!("seed {seed} schedule:\n{schedule}");
    let (admin_tx, admin_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut nemesis = Nemesis::new(seed, schedule.clone(), masters.clone(), admin_tx);

    let cfg2 = cfg.clone();
    let end = schedule.end;
    sim.client("workload", async move { drive(seed, cfg2, end, admin_rx).await });
    simulate(cfg.test, seed, &mut sim, &mut nemesis, |_| {})
}

/// When the nemesis starts: the cluster has elected its first leader.
pub const WARMUP: Duration = Duration::from_secs(3);

/// A seeded simulation running `masters` masters, each with its RocksDB
/// data under `data` (kept across crashes and bounces).
pub fn cluster(seed: u64, masters: u64, data: &Path) -> turmoil::Sim<'static> {
    observe::reset();
    let mut sim = turmoil::Builder::new()
        .rng_seed(seed)
        .simulation_duration(Duration::from_secs(600))
        .min_message_latency(Duration::from_millis(1))
        .max_message_latency(BASE_LATENCY)
        .build();
    for id in 1..=masters {
        let dir = data.join(master_host(id));
        sim.host(master_host(id), move || run_master(id, masters, dir.clone()));
    }
    sim
}

/// Steps `sim` until its clients are done, letting the nemesis and then
/// `between` act after every step; prints what the nemesis did and the
/// terms that had two leaders elected (reported: see [`crate::observe`]);
/// fails if two leaders of one term committed entries.
pub fn simulate(
    test: &str,
    seed: u64,
    sim: &mut turmoil::Sim<'_>,
    nemesis: &mut Nemesis,
    mut between: impl FnMut(&mut turmoil::Sim<'_>),
) -> turmoil::Result {
    let result = loop {
        match sim.step() {
            Ok(true) => break Ok(()),
            Ok(false) => {
                nemesis.tick(sim);
                between(sim);
            }
            Err(e) => break Err(e),
        }
    };
    let result =
        result.and_then(|()| observe::check_one_committing_leader_per_term().map(|_| ()).map_err(Into::into));
    let terms = observe::leaders_by_term().len();
    let two = observe::terms_with_two_leaders();
    let committing = observe::committing_leaders_by_term().len();
    match &result {
        Ok(()) => eprintln!(
            "{test} seed {seed}: {} fault events injected, {terms} terms, {} with two leaders elected {two:?}, \
             {committing} terms with committed entries, each from one leader",
            nemesis.faults_injected(),
            two.len()
        ),
        Err(_) => eprintln!("{test} seed {seed}: faults injected:\n{}", nemesis.log.join("\n")),
    }
    result
}

/// The workload client: runs everything, then checks.
async fn drive(
    seed: u64,
    cfg: Config,
    end: Duration,
    admin_rx: tokio::sync::mpsc::UnboundedReceiver<crate::nemesis::AdminRequest>,
) -> turmoil::Result {
    let masters: Vec<NodeId> = (1..=cfg.masters).collect();
    let client = sim_client(&masters, Duration::from_secs(30));
    // A first write: the cluster is up, and the watches start after it.
    let start = client.put(b"start", b"", None).await?;
    let stop = Arc::new(AtomicBool::new(false));
    let history = Recorder::default();
    let acked: Arc<Mutex<Vec<Acked>>> = Arc::default();
    let target = Arc::new(AtomicU64::new(u64::MAX));

    let mut tasks = Vec::new();
    for w in 0..cfg.register_clients {
        let (m, h, s) = (masters.clone(), history.clone(), stop.clone());
        tasks.push(tokio::spawn(workload::register_client(w + 1, seed, m, cfg.registers, h, s)));
    }
    for w in 0..cfg.writers {
        let (m, a, s) = (masters.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(workload::writer(w, seed, m, a, s)));
    }
    let watchers: Vec<_> = (0..cfg.watchers)
        .map(|w| {
            let (m, s, t) = (masters.clone(), stop.clone(), target.clone());
            tokio::spawn(workload::watcher(w, seed, m, b"w/".to_vec(), start, s, t))
        })
        .collect();
    let admin = tokio::spawn(workload::admin(masters.clone(), admin_rx, stop.clone()));

    while crate::history::sim_now() < end {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await?;
    }
    let acked = acked.lock().expect("acked lock").clone();
    target.store(acked.iter().map(|a| a.2).max().unwrap_or(0), Ordering::Relaxed);
    let admin_log = admin.await?;
    tracing::info!("admin: {admin_log:?}");
    let mut watched = Vec::new();
    for w in watchers {
        watched.push(w.await?);
    }

    // The cluster has recovered: final reads of every register succeed.
    let final_client = sim_client(&masters, SETTLE);
    for key in 0..cfg.registers {
        let handle = history.invoke(u64::MAX, key, Call::Read);
        let outcome = workload::run_call(&final_client, &workload::register_key(key), Call::Read, None).await;
        if let Outcome::ReadFailed(e) = &outcome {
            return Err(
                format!("the cluster did not recover after healing: reading register {key}: {e}").into()
            );
        }
        history.returned(handle, outcome);
    }

    let ops = history.ops();
    let unknown = ops.iter().filter(|o| matches!(o.returned, Some((_, _, Outcome::Unknown(_))))).count();
    tracing::info!(ops = ops.len(), unknown, "checking the register history");
    let dump = cfg.dump_dir.join(format!("{}-seed{seed}-history.txt", cfg.test));
    crate::linearizability::check(&ops, Some(dump)).map_err(|a| format!("not linearizable: {a}"))?;
    let acknowledged = ops.iter().filter(|o| matches!(o.returned, Some((_, _, Outcome::Written(_))))).count();
    tracing::info!(ops = ops.len(), acknowledged, writes = acked.len(), "history is linearizable");

    check_no_acked_write_lost(&client, &acked).await?;
    let reference = check_members_agree(&masters, start).await?;
    for (i, w) in watched.iter().enumerate() {
        check_watch(i, w, b"w/", &reference, start)?;
        check_watch_saw_acked(i, w, &acked)?;
    }
    let resumed: usize = watched.iter().map(|w| w.resumed).sum();
    eprintln!(
        "{} seed {seed}: {} register ops ({acknowledged} acknowledged writes), {} distinct writes, \
         {} watch events over {resumed} resumptions: all invariants hold",
        cfg.test,
        ops.len(),
        acked.len(),
        watched.iter().map(|w| w.events.len()).sum::<usize>(),
    );
    Ok(())
}

async fn check_no_acked_write_lost(client: &control_plane::CorralClient, acked: &[Acked]) -> turmoil::Result {
    let (kvs, _) = client.list(b"w/", false).await?;
    let stored: BTreeMap<Vec<u8>, Vec<u8>> = kvs.into_iter().map(|kv| (kv.key, kv.value)).collect();
    let lost: Vec<&Acked> =
        acked.iter().filter(|(k, v, _)| stored.get(k.as_bytes()) != Some(&v.as_bytes().to_vec())).collect();
    if !lost.is_empty() {
        return Err(format!(
            "{} of {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        )
        .into());
    }
    Ok(())
}

/// Waits until every master has applied the same index, then compares
/// their events from `from` on and their keys. Returns the agreed events.
pub(crate) async fn check_members_agree(
    masters: &[NodeId],
    from: Revision,
) -> Result<Vec<Event>, Box<dyn std::error::Error>> {
    let deadline = tokio::time::Instant::now() + SETTLE;
    loop {
        let applied: Vec<(NodeId, u64)> = masters
            .iter()
            .map(|id| (*id, observe::running(*id).map(|n| n.state_machine.applied_index().0).unwrap_or(0)))
            .collect();
        if applied.windows(2).all(|w| w[0].1 == w[1].1) && applied[0].1 > 0 {
            break;
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("masters did not converge after healing: applied indexes {applied:?}").into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut seen: Vec<(NodeId, Vec<Event>, Vec<raft_store::KeyValue>)> = Vec::new();
    for id in masters {
        let node =
            observe::running(*id).ok_or_else(|| format!("master {id} is not running after healing"))?;
        // Events before a snapshot this master installed are not retained.
        let first = node.state_machine.first_retained()?.0.max(from.0);
        let (events, _) = node.state_machine.events_since(Vec::new(), Revision(first)).await?;
        let (kvs, _, _) = node.state_machine.list(Vec::new(), None, 0).await?;
        seen.push((*id, events, kvs));
    }
    // The reference: the master that retains the most history.
    seen.sort_by_key(|(_, events, _)| std::cmp::Reverse(events.len()));
    let (rid, reference, rkvs) = &seen[0];
    for (id, events, kvs) in &seen[1..] {
        // Compare over the revisions both retain.
        let lo = events.first().map(|e| e.revision).unwrap_or(Revision(u64::MAX));
        let r: Vec<&Event> = reference.iter().filter(|e| e.revision >= lo).collect();
        let mine: Vec<&Event> = events.iter().collect();
        if let Some(i) = first_difference(&r, &mine) {
            return Err(format!(
                "masters {rid} and {id} applied different events at position {i}: {:?} vs {:?}",
                r.get(i),
                mine.get(i)
            )
            .into());
        }
        if kvs != rkvs {
            return Err(format!("masters {rid} and {id} hold different keys after converging").into());
        }
    }
    Ok(reference.clone())
}

fn first_difference<T: PartialEq>(a: &[T], b: &[T]) -> Option<usize> {
    (0..a.len().max(b.len())).find(|i| a.get(*i) != b.get(*i))
}

/// A watch must have delivered exactly the events of `prefix` from its
/// start revision through its last one, in order, each once.
pub(crate) fn check_watch(
    i: usize,
    w: &Watched,
    prefix: &[u8],
    all: &[Event],
    from: Revision,
) -> turmoil::Result {
    let last = w.events.last().map(|e| e.revision).unwrap_or(from);
    let expected: Vec<&Event> = all
        .iter()
        .filter(|e| e.key.starts_with(prefix) && e.revision >= from && e.revision <= last)
        .collect();
    let got: Vec<&Event> = w.events.iter().collect();
    if let Some(pos) = first_difference(&expected, &got) {
        let show = |e: Option<&&Event>| {
            e.map(|e| format!("{} {}", e.revision.0, String::from_utf8_lossy(&e.key)))
                .unwrap_or("nothing".into())
        };
        let kind = if got.get(pos).is_some_and(|g| got[..pos].contains(g)) { "a repeat" } else { "a gap" };
        return Err(format!(
            "watcher {i}: {kind} at event {pos}: expected {}, got {} ({} events, {} resumptions)",
            show(expected.get(pos)),
            show(got.get(pos)),
            got.len(),
            w.resumed
        )
        .into());
    }
    Ok(())
}

/// ... including every acknowledged write up to its last revision.
fn check_watch_saw_acked(i: usize, w: &Watched, acked: &[Acked]) -> turmoil::Result {
    let last = w.events.last().map(|e| e.revision.0).unwrap_or(0);
    let missing = acked
        .iter()
        .filter(|(_, _, rev)| *rev <= last)
        .filter(|(k, _, rev)| !w.events.iter().any(|e| e.revision.0 == *rev && e.key == k.as_bytes()));
    if let Some(m) = missing.clone().next() {
        return Err(format!("watcher {i} never saw the acknowledged write {m:?}").into());
    }
    Ok(())
}
