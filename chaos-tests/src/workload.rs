//! The clients of a chaos run, all going through the real API
//! ([`CorralClient`]) to masters picked at random:
//!
//! - register clients: reads, writes and compare-and-swaps on a few keys,
//!   recorded for the linearizability check;
//! - writers: distinct keys, remembering what was acknowledged;
//! - watchers: a watch from a revision that hops between masters (and
//!   resumes after the last event it got when a stream breaks);
//! - the admin: membership changes the nemesis asks for.
//!
//! Each operation is one attempt at one master (the client's own retries
//! could apply a write twice and hide it from the history): a failed write
//! is recorded as unknown, and the next operation goes to another master.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_plane::{ClientError, CorralClient};
use futures::StreamExt;
use raft_store::{Event, NodeId, Revision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::mpsc::UnboundedReceiver;

use crate::history::{Call, Outcome, Recorder};
use crate::nemesis::AdminRequest;
use crate::{master_host, sim_client, PORT};

/// Master `id`'s address as ip:port (the API takes no host names).
fn ip_addr(id: NodeId) -> String {
    format!("{}:{PORT}", turmoil::lookup(master_host(id)))
}

/// One client per master that makes exactly one attempt per call.
pub fn single_attempt_clients(masters: &[NodeId]) -> Vec<CorralClient> {
    masters.iter().map(|id| sim_client(&[*id], Duration::ZERO)).collect()
}

pub fn register_key(k: usize) -> Vec<u8> {
    format!("r/{k}").into_bytes()
}

fn parse_value(raw: &[u8]) -> u32 {
    std::str::from_utf8(raw).ok().and_then(|s| s.parse().ok()).unwrap_or(u32::MAX)
}

/// A register client: random operations on `keys` registers until `stop`.
/// Its values are `worker * 1_000_000 + n`, unique across the run.
pub async fn register_client(
    worker: u64,
    seed: u64,
    masters: Vec<NodeId>,
    keys: usize,
    history: Recorder,
    stop: Arc<AtomicBool>,
) {
    let clients = single_attempt_clients(&masters);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(31).wrapping_add(worker));
    let mut process = worker * 1_000;
    let mut n = 0u32;
    // What this client last read of each key: the CAS condition.
    let mut last_read: Vec<Option<(u32, u64)>> = vec![None; keys];
    while !stop.load(Ordering::Relaxed) {
        let key = rng.gen_range(0..keys);
        let client = &clients[rng.gen_range(0..clients.len())];
        let call = match rng.gen_range(0..10) {
            0..=3 => Call::Read,
            4..=6 => {
                n += 1;
                Call::Write(worker as u32 * 1_000_000 + n)
            }
            _ => {
                n += 1;
                Call::Cas { expect: last_read[key].map(|(v, _)| v), new: worker as u32 * 1_000_000 + n }
            }
        };
        let handle = history.invoke(process, key, call);
        let outcome = run_call(client, &register_key(key), call, last_read[key]).await;
        if let Outcome::Read(v) = &outcome {
            last_read[key] = *v;
        }
        if matches!(outcome, Outcome::Unknown(_)) {
            process += 1; // the old process's write stays open forever
        }
        history.returned(handle, outcome);
        tokio::time::sleep(Duration::from_millis(rng.gen_range(5..80))).await;
    }
}

/// One call, one attempt.
pub async fn run_call(
    client: &CorralClient,
    key: &[u8],
    call: Call,
    last_read: Option<(u32, u64)>,
) -> Outcome {
    match call {
        Call::Read => match client.get(key, false).await {
            Ok((kv, _)) => Outcome::Read(kv.map(|kv| (parse_value(&kv.value), kv.revision.0))),
            Err(e) => Outcome::ReadFailed(e.to_string()),
        },
        Call::Write(v) => write_outcome(client.put(key, v.to_string().as_bytes(), None).await),
        Call::Cas { new, .. } => {
            let expected = Some(last_read.map(|(_, rev)| rev).unwrap_or(0));
            write_outcome(client.put(key, new.to_string().as_bytes(), expected).await)
        }
    }
}

fn write_outcome(result: Result<Revision, ClientError>) -> Outcome {
    match result {
        Ok(rev) => Outcome::Written(rev.0),
        Err(ClientError::Conflict(_)) => Outcome::CasFailed,
        // The client says "unknown" whenever an attempt may have applied; a
        // timeout or no master means every attempt surely did not.
        Err(e @ (ClientError::Timeout(_) | ClientError::NoMaster { .. })) => {
            Outcome::NotApplied(e.to_string())
        }
        Err(e) => Outcome::Unknown(e.to_string()),
    }
}

/// An acknowledged write of a distinct key: key, value, revision.
pub type Acked = (String, String, u64);

/// A writer of distinct keys `w/<writer>/<n>` until `stop`.
pub async fn writer(
    writer: u64,
    seed: u64,
    masters: Vec<NodeId>,
    acked: Arc<Mutex<Vec<Acked>>>,
    stop: Arc<AtomicBool>,
) {
    let clients = single_attempt_clients(&masters);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(77).wrapping_add(writer));
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let (key, value) = (format!("w/{writer}/{n}"), format!("v{n}"));
        let client = &clients[rng.gen_range(0..clients.len())];
        if let Ok(rev) = client.put(key.as_bytes(), value.as_bytes(), None).await {
            acked.lock().expect("acked lock").push((key, value, rev.0));
        }
        n += 1;
        tokio::time::sleep(Duration::from_millis(rng.gen_range(10..60))).await;
    }
}

/// What a watcher saw, and how often it resumed elsewhere.
#[derive(Debug, Default)]
pub struct Watched {
    pub events: Vec<Event>,
    pub resumed: usize,
}

/// Watches `prefix` from `from`, hopping to a random master every few
/// seconds or when a stream breaks, resuming after the last revision it
/// got. Ends once `stop` is set and it has seen revision `target` (or after
/// `give_up` more simulated time).
pub async fn watcher(
    id: u64,
    seed: u64,
    masters: Vec<NodeId>,
    prefix: Vec<u8>,
    from: Revision,
    stop: Arc<AtomicBool>,
    target: Arc<AtomicU64>,
) -> Watched {
    let clients = single_attempt_clients(&masters);
    let mut rng = StdRng::seed_from_u64(seed.wrapping_mul(131).wrapping_add(id));
    let mut seen = Watched::default();
    let mut next = from;
    let mut stopping_since = None;
    loop {
        let client = &clients[rng.gen_range(0..clients.len())];
        let hop_at = tokio::time::Instant::now() + Duration::from_millis(rng.gen_range(1_000..6_000));
        if let Ok(mut stream) = client.watch(&prefix, Some(next)).await {
            while tokio::time::Instant::now() < hop_at {
                match tokio::time::timeout(Duration::from_millis(200), stream.next()).await {
                    Ok(Some(Ok(events))) => {
                        if let Some(last) = events.last() {
                            next = Revision(last.revision.0 + 1);
                        }
                        seen.events.extend(events);
                    }
                    Ok(Some(Err(_))) | Ok(None) => break,
                    Err(_) => {}
                }
                if done(&stop, &target, next, &mut stopping_since) {
                    return seen;
                }
            }
        }
        if done(&stop, &target, next, &mut stopping_since) {
            return seen;
        }
        seen.resumed += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Whether a watcher may end: stopped and caught up, or stopped for 60 s.
fn done(
    stop: &AtomicBool,
    target: &AtomicU64,
    next: Revision,
    since: &mut Option<tokio::time::Instant>,
) -> bool {
    if !stop.load(Ordering::Relaxed) {
        return false;
    }
    let since = *since.get_or_insert_with(tokio::time::Instant::now);
    next.0 > target.load(Ordering::Relaxed) || since.elapsed() > Duration::from_secs(60)
}

/// Carries out the nemesis's membership changes until `stop`, then makes
/// sure every master is a voter again. Returns one line per change.
pub async fn admin(
    masters: Vec<NodeId>,
    mut requests: UnboundedReceiver<AdminRequest>,
    stop: Arc<AtomicBool>,
) -> Vec<String> {
    let client = sim_client(&masters, Duration::from_secs(60));
    let mut log = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(200), requests.recv()).await {
            Ok(Some(AdminRequest::RemoveAndReadd(id))) => {
                let removed = client.remove_master(id).await;
                log.push(format!("remove master {id}: {:?}", removed.map(|r| r.voters)));
                let added = client.add_master(id, &ip_addr(id)).await;
                log.push(format!("add master {id} back: {:?}", added.map(|r| r.voters)));
            }
            Ok(None) => break,
            Err(_) if stop.load(Ordering::Relaxed) => break,
            Err(_) => {}
        }
    }
    // Restore the full membership (a change may have failed mid-way).
    for _ in 0..20 {
        let voters: Vec<NodeId> = match client.status().await {
            Ok(s) => s.members.iter().filter(|m| m.voter).map(|m| m.id).collect(),
            Err(_) => Vec::new(),
        };
        let missing: Vec<NodeId> = masters.iter().copied().filter(|id| !voters.contains(id)).collect();
        if !voters.is_empty() && missing.is_empty() {
            return log;
        }
        for id in missing {
            let added = client.add_master(id, &ip_addr(id)).await;
            log.push(format!("restore master {id}: {:?}", added.map(|r| r.voters)));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    log.push("membership not restored".into());
    log
}
