//! A chaos run with pods: masters and node agents (the real agent on the
//! in-memory [`SimRuntime`]) as turmoil hosts, a Deployment applied through
//! the API, the nemesis over the masters, and one node cut off from every
//! master for longer than the node grace and eviction periods; then heal,
//! a quiet period, and the pod invariants checked:
//!
//! - a pod is bound to at most one node: from the watch of every pod since
//!   before the Deployment, a pod's `spec.nodeName` never changes once set,
//!   and a name is never held by two live pods at once;
//! - while the node is cut off, its pods are replaced: the Deployment has
//!   its replica count of Ready pods on the other nodes;
//! - after healing, the Deployment has exactly its replica count of Ready
//!   pods, no pod lacks a live owner, no pod is bound to a missing node;
//! - the returned node's stale copies are gone: no node's runtime runs a
//!   container of a pod that no longer exists, is finished, or is bound
//!   elsewhere;
//! - and the store invariants of [`crate::scenario`]: the pod watch has no
//!   gap and no repeat, the masters agree; terms with two leaders are reported.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use control_plane::api::{Object, Pod};
use control_plane::controllers::pods::{is_active, is_finished};
use control_plane::CorralClient;
use raft_store::{EventKind, NodeId, Revision};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::history::sim_now;
use crate::nemesis::{Nemesis, Schedule};
use crate::scenario::{check_members_agree, check_watch, cluster, simulate, WARMUP};
use crate::workload::{self, Watched};
use crate::{master_host, node_host, run_node, sim_client, RuntimeSlot};

/// The shape of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub test: &'static str,
    pub masters: u64,
    pub nodes: usize,
    pub replicas: u32,
    /// Simulated time with master faults after the warm-up.
    pub faults_for: Duration,
    /// How long the node stays cut off: past the masters' node grace (10 s)
    /// plus eviction (20 s), with time to replace its pods even when master
    /// faults take the quorum away for part of it (seed 1 once needed more
    /// than 15 s).
    pub cut_for: Duration,
    /// Without faults, after the last one ended.
    pub quiet: Duration,
}

impl Config {
    pub fn new(test: &'static str) -> Self {
        Config {
            test,
            masters: 3,
            nodes: 3,
            replicas: 6,
            faults_for: Duration::from_secs(45),
            cut_for: Duration::from_secs(75),
            quiet: Duration::from_secs(15),
        }
    }
}

/// How long the cluster may take to reach a state the checks wait for.
const SETTLE: Duration = Duration::from_secs(60);
const DEPLOYMENT: &str = "web";
const PODS: &[u8] = b"/registry/pods/";

/// The node the driver asks the loop to cut off, and until when.
type Cut = Arc<Mutex<Option<(String, Duration)>>>;

/// Runs the pod scenario with `seed`; an `Err` names the broken invariant.
pub fn run(seed: u64, cfg: &Config) -> turmoil::Result {
    let dirs = tempfile::tempdir()?;
    let mut sim = cluster(seed, cfg.masters, dirs.path());
    let masters: Vec<NodeId> = (1..=cfg.masters).collect();
    let runtimes = start_nodes(&mut sim, cfg.nodes, &masters);
    let schedule = Schedule::random(seed, masters.len(), WARMUP, cfg.faults_for, cfg.quiet);
    tracing::info!("seed {seed} schedule:\n{schedule}");
    // Membership changes need the admin client of the register scenario:
    // its requests are dropped here, the other faults act as there.
    let (admin_tx, _) = tokio::sync::mpsc::unbounded_channel();
    let mut nemesis = Nemesis::new(seed, schedule.clone(), masters.clone(), admin_tx);
    let cut: Cut = Arc::default();

    let (cfg2, cut2, runtimes2) = (cfg.clone(), cut.clone(), runtimes.clone());
    let heal_at = schedule.heal_at;
    sim.client("pods", async move { drive(seed, cfg2, heal_at, cut2, runtimes2).await });
    let mut cutter = Cutter { cut, active: None, masters, log: Vec::new() };
    let result = simulate(cfg.test, seed, &mut sim, &mut nemesis, |sim| cutter.tick(sim));
    eprintln!("{} seed {seed}: {}", cfg.test, cutter.log.join("; "));
    result
}

/// Adds `count` node hosts; returns their runtimes, by node name.
fn start_nodes(
    sim: &mut turmoil::Sim<'_>,
    count: usize,
    masters: &[NodeId],
) -> BTreeMap<String, RuntimeSlot> {
    let mut runtimes = BTreeMap::new();
    for i in 1..=count {
        let slot = RuntimeSlot::default();
        let (name, m, s) = (node_host(i), masters.to_vec(), slot.clone());
        sim.host(node_host(i), move || run_node(name.clone(), m.clone(), s.clone()));
        runtimes.insert(node_host(i), slot);
    }
    runtimes
}

/// Cuts the node the driver names off from every master, and repairs it.
struct Cutter {
    cut: Cut,
    active: Option<String>,
    masters: Vec<NodeId>,
    log: Vec<String>,
}

impl Cutter {
    fn tick(&mut self, sim: &mut turmoil::Sim<'_>) {
        let Some((node, until)) = self.cut.lock().expect("cut").clone() else { return };
        let now = sim.elapsed();
        if self.active.is_none() && now < until {
            for m in &self.masters {
                sim.partition(node.as_str(), master_host(*m));
            }
            self.log.push(format!("{:.3}s cut {node} off from every master", now.as_secs_f64()));
            self.active = Some(node);
        } else if now >= until && self.active.take().is_some() {
            for m in &self.masters {
                sim.repair(node.as_str(), master_host(*m));
            }
            self.log.push(format!("{:.3}s {node} reconnected", now.as_secs_f64()));
            *self.cut.lock().expect("cut") = None;
        }
    }
}

/// The driver: applies the Deployment, cuts a node off, waits, checks.
async fn drive(
    seed: u64,
    cfg: Config,
    heal_at: Duration,
    cut: Cut,
    runtimes: BTreeMap<String, RuntimeSlot>,
) -> turmoil::Result {
    let masters: Vec<NodeId> = (1..=cfg.masters).collect();
    let client = sim_client(&masters, Duration::from_secs(30));
    let nodes: Vec<String> = runtimes.keys().cloned().collect();
    wait_for("every node registered and Ready", || nodes_ready(&client, &nodes)).await?;
    let (_, start) = client.list_objects("pods", "", "").await?;
    let start = Revision(start.0 + 1);
    let stop = Arc::new(AtomicBool::new(false));
    let target = Arc::new(AtomicU64::new(u64::MAX));
    let watcher = tokio::spawn(workload::watcher(
        0,
        seed,
        masters.clone(),
        PODS.to_vec(),
        start,
        stop.clone(),
        target.clone(),
    ));
    client.apply(&deployment(cfg.replicas)?).await?;
    wait_for("the Deployment's pods Ready", || ready_on(&client, cfg.replicas, None)).await?;

    // Cut off the node with the most pods (the first such in a seeded order).
    let pods = web_pods(&client).await?;
    let mut order = nodes.clone();
    let turn = StdRng::seed_from_u64(seed).gen_range(0..order.len());
    order.rotate_left(turn);
    order.sort_by_key(|n| std::cmp::Reverse(bound_to(&pods, n).len()));
    let victim = order[0].clone();
    let stale = bound_to(&pods, &victim);
    let cut_end = sim_now() + cfg.cut_for;
    *cut.lock().expect("cut") = Some((victim.clone(), cut_end));
    let replaced = replaced_while_cut(&client, &victim, cfg.replicas, cut_end).await;
    let end = heal_at.max(cut_end) + cfg.quiet;
    while sim_now() < end {
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let final_client = sim_client(&masters, SETTLE);
    let converged = wait_for("the cluster converged after healing", || {
        converged(&final_client, &nodes, &runtimes, cfg.replicas)
    })
    .await;
    let (_, last) = final_client.list_objects("pods", "", "").await?;
    stop.store(true, Ordering::Relaxed);
    target.store(last.0, Ordering::Relaxed);
    let watched = watcher.await?;
    converged?;
    replaced.map_err(|e| format!("node {victim} (pods {stale:?}) cut off: {e}"))?;
    check_bound_once(&watched)?;
    let reference = check_members_agree(&masters, start).await?;
    check_watch(0, &watched, PODS, &reference, start)?;
    eprintln!(
        "{} seed {seed}: cut {victim} off with {} pods; {} pod events over {} resumptions: all pod invariants hold",
        cfg.test,
        stale.len(),
        watched.events.len(),
        watched.resumed
    );
    Ok(())
}

/// The Deployment: `replicas` busybox pods (an image every SimRuntime holds).
fn deployment(replicas: u32) -> Result<Object, Box<dyn std::error::Error>> {
    let json = format!(
        r#"{{"apiVersion":"apps/v1","kind":"Deployment","metadata":{{"name":"{DEPLOYMENT}","namespace":"default"}},
        "spec":{{"replicas":{replicas},"selector":{{"matchLabels":{{"app":"{DEPLOYMENT}"}}}},
        "template":{{"metadata":{{"labels":{{"app":"{DEPLOYMENT}"}}}},
        "spec":{{"containers":[{{"name":"main","image":"corral/busybox:1","command":["sleep","3600"]}}]}}}}}}}}"#
    );
    Ok(Object::from_json(json.as_bytes())?)
}

/// Retries `check` (an `Err` says what is not so yet) until it holds or
/// [`SETTLE`] has passed; the error names `what` and the last reason.
async fn wait_for<F, Fut>(what: &str, mut check: F) -> Result<(), Box<dyn std::error::Error>>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), String>>,
{
    let deadline = sim_now() + SETTLE;
    loop {
        let reason = match check().await {
            Ok(()) => return Ok(()),
            Err(reason) => reason,
        };
        if sim_now() > deadline {
            return Err(format!("{what}: not within {SETTLE:?}: {reason}").into());
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn nodes_ready(client: &CorralClient, nodes: &[String]) -> Result<(), String> {
    let (objects, _) = client.list_objects("nodes", "", "").await.map_err(|e| e.to_string())?;
    let ready: BTreeSet<&str> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Node(n) if n.is_ready() => Some(n.metadata.name.as_str()),
            _ => None,
        })
        .collect();
    let missing: Vec<&String> = nodes.iter().filter(|n| !ready.contains(n.as_str())).collect();
    match missing.is_empty() {
        true => Ok(()),
        false => Err(format!("nodes not Ready: {missing:?}")),
    }
}

async fn web_pods(client: &CorralClient) -> Result<Vec<Pod>, String> {
    let selector = format!("app={DEPLOYMENT}");
    let (objects, _) = client.list_objects("pods", "default", &selector).await.map_err(|e| e.to_string())?;
    Ok(objects.into_iter().filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None }).collect())
}

fn bound_to(pods: &[Pod], node: &str) -> Vec<String> {
    pods.iter()
        .filter(|p| p.spec.node_name.as_deref() == Some(node))
        .map(|p| p.metadata.name.clone())
        .collect()
}

/// `replicas` active Ready pods of the Deployment, none on `except`.
async fn ready_on(client: &CorralClient, replicas: u32, except: Option<&str>) -> Result<(), String> {
    let pods = web_pods(client).await?;
    let ready: Vec<&Pod> = pods
        .iter()
        .filter(|p| is_active(p) && p.is_ready() && p.spec.node_name.as_deref() != except)
        .collect();
    match ready.len() == replicas as usize {
        true => Ok(()),
        false => Err(format!(
            "{} of {replicas} pods Ready{}: {}",
            ready.len(),
            except.map(|e| format!(" off {e}")).unwrap_or_default(),
            describe(&pods)
        )),
    }
}

/// Whether the Deployment had all its replicas Ready on the other nodes at
/// some moment before `until` (while `victim` is still cut off).
async fn replaced_while_cut(
    client: &CorralClient,
    victim: &str,
    replicas: u32,
    until: Duration,
) -> Result<(), String> {
    let mut last = String::from("no answer from the cluster");
    // A little before the repair, so that the answer was true while cut off.
    while sim_now() + Duration::from_secs(1) < until {
        match ready_on(client, replicas, Some(victim)).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Err(format!("its pods were not replaced by Ready pods on other nodes while it was cut off: {last}"))
}

/// The state after healing: exactly `replicas` Ready pods, every pod with a
/// live owner and bound to an existing node, and no runtime running a
/// container of a pod that is gone, finished or bound elsewhere.
async fn converged(
    client: &CorralClient,
    nodes: &[String],
    runtimes: &BTreeMap<String, RuntimeSlot>,
    replicas: u32,
) -> Result<(), String> {
    ready_on(client, replicas, None).await.map_err(|e| format!("exact replica count: {e}"))?;
    let (deployments, _) = client.list_objects("deployments", "", "").await.map_err(|e| e.to_string())?;
    let owners: BTreeSet<String> = deployments.iter().filter_map(|d| d.meta().uid.clone()).collect();
    let (all, _) = client.list_objects("pods", "", "").await.map_err(|e| e.to_string())?;
    let pods: Vec<&Pod> =
        all.iter().filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None }).collect();
    for p in &pods {
        let owner = p.metadata.owner_references.iter().find(|o| o.controller == Some(true));
        if !owner.is_some_and(|o| owners.contains(&o.uid)) {
            return Err(format!("no orphan pods: pod {} has no live owner ({owner:?})", p.metadata.name));
        }
        if let Some(node) = p.spec.node_name.as_deref().filter(|n| !nodes.iter().any(|m| m == n)) {
            return Err(format!("no pod on a missing node: pod {} is bound to {node}", p.metadata.name));
        }
    }
    let live: BTreeMap<&str, &Pod> = pods
        .iter()
        .filter(|p| !is_finished(p))
        .filter_map(|p| Some((p.metadata.uid.as_deref()?, *p)))
        .collect();
    for (node, slot) in runtimes {
        let Some(runtime) = slot.lock().expect("runtime slot").clone() else { continue };
        for c in runtime.containers().iter().filter(|c| c.is_running()) {
            let bound = live.get(c.pod.uid.as_str()).and_then(|p| p.spec.node_name.as_deref());
            if bound != Some(node.as_str()) {
                return Err(format!(
                    "no stale copies: node {node} runs container {:?} of pod {} (uid {}), which {}",
                    c.container.as_deref().unwrap_or("sandbox"),
                    c.pod.name,
                    c.pod.uid,
                    match bound {
                        Some(other) => format!("is bound to {other}"),
                        None => "no longer exists or has finished".into(),
                    }
                ));
            }
        }
    }
    Ok(())
}

/// From the pod watch: a pod's node never changes once set, and no two
/// live pods share a name.
fn check_bound_once(w: &Watched) -> turmoil::Result {
    let mut node_of: BTreeMap<String, (String, String)> = BTreeMap::new(); // uid -> (name, node)
    let mut live: BTreeMap<Vec<u8>, String> = BTreeMap::new(); // key -> uid
    for e in &w.events {
        let Ok(Object::Pod(pod)) = Object::from_json(&e.value) else {
            return Err(format!("revision {}: unreadable pod event", e.revision.0).into());
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let name = pod.metadata.name.clone();
        if e.kind == EventKind::Delete {
            live.remove(&e.key);
            continue;
        }
        if let Some(other) = live.insert(e.key.clone(), uid.clone()).filter(|o| *o != uid) {
            return Err(format!(
                "no two live pods with one name: pod {name} (uid {uid}) written at revision {} while uid {other} still held the name",
                e.revision.0
            )
            .into());
        }
        let Some(node) = pod.spec.node_name.clone() else {
            if let Some((_, was)) = node_of.get(&uid) {
                return Err(format!("pod {name} lost its node {was} at revision {}", e.revision.0).into());
            }
            continue;
        };
        match node_of.get(&uid) {
            Some((_, was)) if *was != node => {
                return Err(format!(
                    "a pod is bound to at most one node: pod {name} (uid {uid}) moved from {was} to {node} at revision {}",
                    e.revision.0
                )
                .into())
            }
            _ => {
                node_of.insert(uid, (name, node));
            }
        }
    }
    Ok(())
}

fn describe(pods: &[Pod]) -> String {
    let line = |p: &Pod| {
        format!(
            "{}@{}{}{}",
            p.metadata.name,
            p.spec.node_name.as_deref().unwrap_or("-"),
            if p.is_ready() { " ready" } else { "" },
            if is_active(p) { "" } else { " inactive" }
        )
    };
    pods.iter().map(line).collect::<Vec<_>>().join(", ")
}
