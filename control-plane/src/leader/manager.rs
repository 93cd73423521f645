//! The leader's reconcile loop: one cache, kept by a watch, and every
//! controller run over it after each change (level-triggered). Decisions are
//! pure functions (scheduler, controllers); this loop only reads the cache,
//! calls them, and commits what they decide with compare-and-swap.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use raft_store::{Expect, Revision};
use tokio_util::sync::CancellationToken;

use crate::api::pod::{Condition, PodPhase, PodStatus};
use crate::api::{Deployment, Kind, Node, Object, Pod, Service, Time};
use crate::controllers::{deployment, endpoints, events, gc, node_ipam, node_lifecycle};
use crate::objects;
use crate::scheduler;
use crate::service::MasterCtx;

use super::cache::{Cache, REGISTRY};
use super::writer::{commit, Write};

/// How long changes may gather before a pass.
const SETTLE: Duration = Duration::from_millis(50);

/// Pods scheduled per pass at most (the rest wait for the next pass).
const SCHEDULE_PER_PASS: usize = 2000;

/// Timings of the controllers.
#[derive(Debug, Clone, Copy)]
pub struct ControllerConfig {
    /// A node silent this long becomes NotReady.
    pub node_grace_seconds: i64,
    /// ... and this much longer, its pods are failed and replaced.
    pub node_eviction_seconds: i64,
    /// How often the controllers run without a change (time-based rules).
    pub resync: Duration,
    /// How often the horizontal pod autoscalers decide.
    pub hpa_sync: Duration,
    /// Where nodes' pod CIDRs come from.
    pub ipam: node_ipam::IpamConfig,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            node_grace_seconds: 10,
            node_eviction_seconds: 20,
            resync: Duration::from_secs(1),
            hpa_sync: Duration::from_secs(15),
            ipam: node_ipam::IpamConfig::default(),
        }
    }
}

/// The leader's cache, kept between leadership terms: it holds only
/// committed state, so a master that leads again catches it up from the
/// event history instead of reading and decoding every object again.
pub type CacheSlot = std::sync::Arc<tokio::sync::Mutex<Option<Cache>>>;

/// Runs the scheduler and controllers for one leadership term, until `cancel`.
pub async fn run(
    ctx: MasterCtx,
    term: u64,
    cancel: CancellationToken,
    cfg: ControllerConfig,
    slot: CacheSlot,
) {
    let mut kept = slot.lock().await;
    if let Err(e) = run_term(&ctx, &cancel, cfg, &mut kept).await {
        tracing::warn!(master = ctx.id, term, error = %e, "controllers stopped");
    }
}

/// The cache as of every write committed before this term's read index:
/// the kept one caught up from the event history, or a fresh load.
async fn current_cache(ctx: &MasterCtx, kept: Option<Cache>) -> Result<Cache, String> {
    let sm = &ctx.node.state_machine;
    if let Some(mut cache) = kept {
        match sm.events_since(REGISTRY.to_vec(), Revision(cache.revision.0 + 1)).await {
            Ok((events, through)) => {
                let count = events.len();
                for e in events {
                    cache.apply(e);
                }
                cache.revision = cache.revision.max(through);
                tracing::info!(
                    master = ctx.id,
                    events = count,
                    revision = through.0,
                    "controller cache caught up"
                );
                return Ok(cache);
            }
            Err(e) => {
                tracing::info!(master = ctx.id, error = %e, "controller cache too old; loading it again")
            }
        }
    }
    Cache::load(sm).await.map_err(|e| e.to_string())
}

async fn run_term(
    ctx: &MasterCtx,
    cancel: &CancellationToken,
    cfg: ControllerConfig,
    kept: &mut Option<Cache>,
) -> Result<(), String> {
    // A fresh read index: the cache starts from every committed write.
    ctx.node.raft.ensure_linearizable().await.map_err(|e| format!("cannot confirm leadership: {e}"))?;
    let sm = &ctx.node.state_machine;
    let previous = kept.take();
    let cache = kept.insert(current_cache(ctx, previous).await?);
    let mut watch = Box::pin(sm.watch(REGISTRY.to_vec(), Some(Revision(cache.revision.0 + 1))));
    let mut tick = tokio::time::interval(cfg.resync);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first pass runs every controller; later ones those whose inputs
    // changed, and every controller at least once per `resync` (time-based
    // rules: heartbeats, minReadySeconds, eviction).
    let mut dirty = Dirty::all();
    let mut last_full: Option<std::time::Instant> = None;
    let mut memory = Memory::default();
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return Ok(()),
            item = watch.next() => {
                let Some(events) = item else { return Err("the watch ended".into()) };
                dirty.apply_all(cache, events.map_err(|e| e.to_string())?);
            }
            _ = tick.tick() => {}
        }
        // Let a burst of changes settle into one pass: a pass reads the
        // whole cache, so running one per event would starve everything else.
        tokio::time::sleep(SETTLE).await;
        while let Some(Some(more)) = futures::FutureExt::now_or_never(watch.next()) {
            dirty.apply_all(cache, more.map_err(|e| e.to_string())?);
        }
        if cancel.is_cancelled() {
            return Ok(());
        }
        if last_full.is_none_or(|t| t.elapsed() >= cfg.resync) {
            dirty = Dirty::all();
            last_full = Some(std::time::Instant::now());
        }
        let pass = std::mem::take(&mut dirty);
        if reconcile(ctx, cache, &cfg, &pass, &mut memory).await {
            return Err("this master is no longer the leader".into());
        }
    }
}

/// What controllers remember between passes of one term.
#[derive(Debug, Default)]
struct Memory {
    /// Each HPA's recent recommendations and scale events, by uid.
    hpa: BTreeMap<String, crate::controllers::hpa::History>,
    last_hpa: Option<std::time::Instant>,
}

/// The kinds of object changed since the last pass.
#[derive(Debug, Default, Clone)]
struct Dirty(BTreeSet<Kind>);

impl Dirty {
    fn all() -> Dirty {
        Dirty(Kind::ALL.into_iter().collect())
    }

    fn apply_all(&mut self, cache: &mut Cache, events: Vec<raft_store::Event>) {
        for e in events {
            self.0.extend(cache.apply(e));
        }
    }

    fn any(&self, kinds: &[Kind]) -> bool {
        kinds.iter().any(|k| self.0.contains(k))
    }
}

/// One pass of the controllers whose inputs changed. Returns whether this
/// master was deposed.
async fn reconcile(
    ctx: &MasterCtx,
    cache: &mut Cache,
    cfg: &ControllerConfig,
    dirty: &Dirty,
    memory: &mut Memory,
) -> bool {
    use Kind::*;
    let now = ctx.clock.now();
    let started = std::time::Instant::now();
    let mut deposed = false;
    if dirty.any(&[Node]) {
        deposed |= node_ipam_pass(ctx, cache, cfg, now).await;
        deposed |= node_lifecycle_pass(ctx, cache, cfg, now).await;
    }
    let t1 = started.elapsed();
    if dirty.any(&[Deployment, Pod]) {
        deposed |= deployments_pass(ctx, cache, now).await;
    }
    let t2 = started.elapsed();
    if dirty.any(&[Pod, Node]) {
        deposed |= scheduler_pass(ctx, cache, now).await;
    }
    let t3 = started.elapsed();
    if dirty.any(&[Service, Endpoints, Pod, Node]) {
        deposed |= endpoints_pass(ctx, cache, now).await;
    }
    if dirty.any(&[Deployment, Service]) {
        deposed |= gc_pass(ctx, cache, now).await;
    }
    // The autoscaler is time-driven, like Kubernetes' (every `hpa_sync`),
    // and decides at once for an autoscaler it has not seen yet.
    let new_hpa = dirty.any(&[HorizontalPodAutoscaler])
        && cache
            .of_kind(HorizontalPodAutoscaler)
            .any(|(o, _)| !memory.hpa.contains_key(o.meta().uid.as_deref().unwrap_or_default()));
    if new_hpa || memory.last_hpa.is_none_or(|t| t.elapsed() >= cfg.hpa_sync) {
        memory.last_hpa = Some(std::time::Instant::now());
        let writes = super::autoscaler::writes(cache, now, &mut memory.hpa);
        deposed |= commit(ctx, cache, writes, now).await.deposed;
    }
    tracing::debug!(
        objects = cache.len(),
        nodes_ms = t1.as_millis() as u64,
        deployments_ms = (t2 - t1).as_millis() as u64,
        scheduler_ms = (t3 - t2).as_millis() as u64,
        total_ms = started.elapsed().as_millis() as u64,
        "reconcile pass"
    );
    deposed
}

pub(super) fn put(object: Object, expect: Expect) -> Write {
    Write::Put { object: Box::new(object), expect }
}

/// A whole object the controllers own (endpoints, events): created or
/// replaced through the same rules as a user's apply.
pub(super) fn upsert(cache: &Cache, object: Object, now: Time) -> Option<Write> {
    let current = cache.get(object.kind(), object.namespace(), &object.meta().name);
    let mut uid = || uuid::Uuid::new_v4().to_string();
    match objects::plan_apply(object, current, now, &mut uid) {
        Ok((_, _, objects::Action::Unchanged)) => None,
        Ok((next, expect, _)) => Some(put(next, expect)),
        Err(e) => {
            tracing::warn!(error = %e, "a controller's object was refused");
            None
        }
    }
}

fn is_live(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && !matches!(p.phase(), Some(PodPhase::Failed | PodPhase::Succeeded))
}

async fn scheduler_pass(ctx: &MasterCtx, cache: &mut Cache, now: Time) -> bool {
    let mut pending: Vec<&Pod> = cache
        .of_kind(Kind::Pod)
        .filter_map(|(o, _)| match o {
            Object::Pod(p) if p.spec.node_name.is_none() && is_live(p) => Some(p),
            _ => None,
        })
        .collect();
    if pending.is_empty() {
        return false;
    }
    // Oldest first, a bounded number per pass.
    pending.sort_by_key(|p| p.metadata.creation_timestamp);
    pending.truncate(SCHEDULE_PER_PASS);
    let pending: Vec<Pod> = pending.into_iter().cloned().collect();
    let mut by_node: BTreeMap<String, Vec<scheduler::SharedPod>> = BTreeMap::new();
    for (o, _) in cache.shared_of_kind(Kind::Pod) {
        let Some(p) = scheduler::SharedPod::new(o.clone()) else { continue };
        if let (Some(n), true) = (&p.spec.node_name, is_live(&p)) {
            by_node.entry(n.clone()).or_default().push(p);
        }
    }
    let mut snapshot = scheduler::Snapshot {
        nodes: cache
            .of_kind(Kind::Node)
            .filter_map(|(o, _)| match o {
                Object::Node(node) => {
                    let pods = by_node.remove(&node.metadata.name).unwrap_or_default();
                    Some(scheduler::NodeInfo::new(node.clone(), pods))
                }
                _ => None,
            })
            .collect(),
    };
    // Computed off the async workers: a long scheduling cycle must not
    // delay Raft's heartbeats.
    let started = std::time::Instant::now();
    let decisions =
        match tokio::task::spawn_blocking(move || scheduler::schedule(&pending, &mut snapshot)).await {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "the scheduling cycle failed");
                return false;
            }
        };
    let mut writes = Vec::new();
    for decision in decisions {
        match decision {
            scheduler::Decision::Bind { namespace, name, node } => {
                let Some((Object::Pod(pod), rev)) = cache.get(Kind::Pod, &namespace, &name) else { continue };
                let mut bound = pod.clone();
                bound.spec.node_name = Some(node);
                let status = bound.status.get_or_insert_with(PodStatus::default);
                status.phase.get_or_insert(PodPhase::Pending);
                set_condition(&mut status.conditions, condition("PodScheduled", "True", None, None, now));
                writes.push(put(Object::Pod(bound), Expect::Revision(rev)));
            }
            scheduler::Decision::Unschedulable { namespace, name, message } => {
                let Some((Object::Pod(pod), rev)) = cache.get(Kind::Pod, &namespace, &name) else { continue };
                let old =
                    pod.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "PodScheduled"));
                if old.and_then(|c| c.message.as_deref()) == Some(message.as_str()) {
                    continue;
                }
                let mut waiting = pod.clone();
                let status = waiting.status.get_or_insert_with(PodStatus::default);
                status.phase = Some(PodPhase::Pending);
                let c = condition("PodScheduled", "False", Some("Unschedulable"), Some(&message), now);
                set_condition(&mut status.conditions, c);
                writes.push(put(Object::Pod(waiting), Expect::Revision(rev)));
                let what = events::Occurrence {
                    involved: events::reference(&Object::Pod(pod.clone())),
                    type_: events::EventType::Warning,
                    reason: "FailedScheduling",
                    message: message.clone(),
                    component: "default-scheduler",
                };
                writes.extend(record_event(cache, what, now));
            }
        }
    }
    let decided = started.elapsed();
    let count = writes.len();
    let written = commit(ctx, cache, writes, now).await;
    tracing::info!(
        decisions = count,
        decide_ms = decided.as_millis() as u64,
        commit_ms = (started.elapsed() - decided).as_millis() as u64,
        applied = written.applied,
        conflicts = written.conflicts,
        "scheduling pass"
    );
    written.deposed
}

/// An Event: a new one, or the existing one of the same object and reason
/// with its count bumped; nothing when it only repeats it ([`events::repeats`]).
pub(super) fn record_event(cache: &Cache, what: events::Occurrence<'_>, now: Time) -> Option<Write> {
    let name = events::event_name(&what.involved, what.reason);
    let ns = what.involved.namespace.clone().unwrap_or_else(|| "default".into());
    let existing = match cache.get(Kind::Event, &ns, &name) {
        Some((Object::Event(e), _)) => Some(e.clone()),
        _ => None,
    };
    if existing.as_ref().is_some_and(|e| events::repeats(&what, e, now)) {
        return None;
    }
    upsert(cache, Object::Event(events::record(what, existing.as_ref(), now)), now)
}

pub(super) fn condition(
    type_: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
    now: Time,
) -> Condition {
    Condition {
        type_: type_.into(),
        status: status.into(),
        reason: reason.map(String::from),
        message: message.map(String::from),
        last_transition_time: Some(now),
        ..Default::default()
    }
}

pub(super) fn set_condition(conditions: &mut Vec<Condition>, c: Condition) {
    match conditions.iter_mut().find(|x| x.type_ == c.type_) {
        Some(old) if old.status == c.status && old.reason == c.reason && old.message == c.message => {}
        Some(old) => *old = c,
        None => conditions.push(c),
    }
}

async fn deployments_pass(ctx: &MasterCtx, cache: &mut Cache, now: Time) -> bool {
    let writes = cpu(|| deployment_writes(cache, now));
    commit(ctx, cache, writes, now).await.deposed
}

/// Runs CPU-heavy decision work without stalling the runtime's other tasks
/// (Raft heartbeats above all): on a multi-threaded runtime the worker hands
/// its queue to the others meanwhile. Simulations run on one thread: inline.
fn cpu<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

fn deployment_writes(cache: &Cache, now: Time) -> Vec<Write> {
    let mut by_owner: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for (o, _) in cache.of_kind(Kind::Pod) {
        if let Object::Pod(p) = o {
            if let Some(owner) = p.metadata.controller() {
                by_owner.entry(owner.uid.as_str()).or_default().push(p);
            }
        }
    }
    let deployments: Vec<(&Deployment, Revision)> = cache
        .of_kind(Kind::Deployment)
        .filter_map(|(o, r)| match o {
            Object::Deployment(d) if d.metadata.deletion_timestamp.is_none() => Some((d, r)),
            _ => None,
        })
        .collect();
    let mut writes = Vec::new();
    for (d, rev) in deployments {
        let uid = d.metadata.uid.clone().unwrap_or_default();
        let owned: &[&Pod] = by_owner.get(uid.as_str()).map_or(&[], |ps| ps.as_slice());
        let plan = deployment::plan(d, owned, now);
        for create in &plan.create {
            for _ in 0..create.count {
                let name = format!("{}-{}-{}", d.metadata.name, create.hash, suffix());
                let pod = deployment::pod_for(d, &create.hash, &name);
                if let Some(w) = upsert(cache, Object::Pod(pod), now) {
                    writes.push(w);
                }
            }
        }
        let created: usize = plan.create.iter().map(|c| c.count).sum();
        for (count, verb) in [(created, "up"), (plan.delete.len(), "down")] {
            if count > 0 {
                let revision = next_revision(d, &plan.annotations);
                let what = events::Occurrence {
                    involved: events::reference(&Object::Deployment(d.clone())),
                    type_: events::EventType::Normal,
                    reason: "ScalingReplicaSet",
                    message: format!(
                        "Scaled {verb} revision {revision} of deployment {:?} by {count} pod(s)",
                        d.metadata.name
                    ),
                    component: "deployment-controller",
                };
                writes.extend(record_event(cache, what, now));
            }
        }
        let ns = d.metadata.namespace_or_default().to_string();
        for name in &plan.delete {
            if let Some((_, prev)) = cache.get(Kind::Pod, &ns, name) {
                writes.push(Write::Delete {
                    kind: Kind::Pod,
                    namespace: ns.clone(),
                    name: name.clone(),
                    rev: prev,
                });
            }
        }
        if let Some((type_, reason, message)) = deployment::rollout_event(d.status.as_ref(), &plan.status) {
            let what = events::Occurrence {
                involved: events::reference(&Object::Deployment(d.clone())),
                type_,
                reason,
                message,
                component: "deployment-controller",
            };
            writes.extend(record_event(cache, what, now));
        }
        let mut next = d.clone();
        next.status = Some(plan.status.clone());
        next.metadata.annotations.extend(plan.annotations.clone());
        if next != *d {
            writes.push(put(Object::Deployment(next), Expect::Revision(rev)));
        }
    }
    writes
}

/// The revision number a deployment has after this step.
fn next_revision(d: &Deployment, annotations: &BTreeMap<String, String>) -> String {
    annotations
        .get(deployment::REVISION_ANNOTATION)
        .or_else(|| d.metadata.annotations.get(deployment::REVISION_ANNOTATION))
        .cloned()
        .unwrap_or_else(|| "1".into())
}

/// Five lowercase alphanumerics, as Kubernetes names generated pods.
fn suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    uuid::Uuid::new_v4().as_bytes()[..5]
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

async fn endpoints_pass(ctx: &MasterCtx, cache: &mut Cache, now: Time) -> bool {
    let services: Vec<Service> = cache
        .of_kind(Kind::Service)
        .filter_map(|(o, _)| if let Object::Service(s) = o { Some(s.clone()) } else { None })
        .collect();
    if services.is_empty() {
        return false;
    }
    let writes: Vec<Write> = cpu(|| {
        let all_pods: Vec<&Pod> = cache
            .of_kind(Kind::Pod)
            .filter_map(|(o, _)| if let Object::Pod(p) = o { Some(p) } else { None })
            .collect();
        let all_nodes: Vec<&Node> = cache
            .of_kind(Kind::Node)
            .filter_map(|(o, _)| if let Object::Node(n) = o { Some(n) } else { None })
            .collect();
        services
            .iter()
            .filter_map(|s| endpoints::endpoints_for(s, &all_pods, &all_nodes))
            .filter_map(|ep| upsert(cache, Object::Endpoints(ep), now))
            .collect()
    });
    commit(ctx, cache, writes, now).await.deposed
}

/// Gives every Node without a pod CIDR the next free one; reports an
/// exhausted cluster CIDR on the Node (`NetworkUnavailable`, reason
/// `CIDRNotAvailable`) and as an Event.
async fn node_ipam_pass(ctx: &MasterCtx, cache: &mut Cache, cfg: &ControllerConfig, now: Time) -> bool {
    let nodes: Vec<&Node> = cache
        .of_kind(Kind::Node)
        .filter_map(|(o, _)| if let Object::Node(n) = o { Some(n) } else { None })
        .collect();
    let decisions = node_ipam::plan(&cfg.ipam, &nodes);
    let mut writes = Vec::new();
    for decision in decisions {
        let name = match &decision {
            node_ipam::Decision::Assign { node, .. } | node_ipam::Decision::Exhausted { node } => {
                node.clone()
            }
        };
        let Some((Object::Node(node), rev)) = cache.get(Kind::Node, "", &name) else { continue };
        let mut next = node.clone();
        match decision {
            node_ipam::Decision::Assign { cidr, .. } => {
                tracing::info!(node = %name, %cidr, "pod CIDR allocated");
                next.spec.pod_cidr = Some(cidr.to_string());
                next.spec.pod_cidrs = vec![cidr.to_string()];
            }
            node_ipam::Decision::Exhausted { .. } => {
                let message = node_ipam::exhausted_message(&cfg.ipam, &name);
                let status = next.status.get_or_insert_with(Default::default);
                let c = condition(
                    crate::api::node::NETWORK_UNAVAILABLE,
                    "True",
                    Some("CIDRNotAvailable"),
                    Some(&message),
                    now,
                );
                set_condition(&mut status.conditions, c);
                let what = events::Occurrence {
                    involved: events::reference(&Object::Node(node.clone())),
                    type_: events::EventType::Warning,
                    reason: "CIDRNotAvailable",
                    message,
                    component: "node-ipam-controller",
                };
                writes.extend(record_event(cache, what, now));
            }
        }
        if next != *node {
            writes.push(put(Object::Node(next), Expect::Revision(rev)));
        }
    }
    commit(ctx, cache, writes, now).await.deposed
}

async fn node_lifecycle_pass(ctx: &MasterCtx, cache: &mut Cache, cfg: &ControllerConfig, now: Time) -> bool {
    let lifecycle = node_lifecycle::NodeLifecycleConfig {
        grace_seconds: cfg.node_grace_seconds,
        eviction_seconds: cfg.node_eviction_seconds,
    };
    let mut by_node: BTreeMap<&str, Vec<&Pod>> = BTreeMap::new();
    for (o, _) in cache.of_kind(Kind::Pod) {
        if let Object::Pod(p) = o {
            if let Some(n) = p.spec.node_name.as_deref() {
                by_node.entry(n).or_default().push(p);
            }
        }
    }
    let mut writes = Vec::new();
    for (o, rev) in cache.of_kind(Kind::Node) {
        let Object::Node(node) = o else { continue };
        let on_node: &[&Pod] = by_node.get(node.metadata.name.as_str()).map_or(&[], |ps| ps.as_slice());
        let plan = node_lifecycle::plan(node, on_node, now, &lifecycle);
        if let Some(updated) = plan.mark_not_ready {
            let message = updated
                .status
                .as_ref()
                .and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready"))
                .and_then(|c| c.message.clone())
                .unwrap_or_else(|| format!("node {:?} is not ready", node.metadata.name));
            let what = events::Occurrence {
                involved: events::reference(&Object::Node(node.clone())),
                type_: events::EventType::Warning,
                reason: "NodeNotReady",
                message,
                component: "node-controller",
            };
            writes.extend(record_event(cache, what, now));
            writes.push(put(Object::Node(updated), Expect::Revision(rev)));
        }
        for pod in plan.not_ready.into_iter().chain(plan.fail) {
            let ns = pod.metadata.namespace_or_default().to_string();
            if let Some((_, prev)) = cache.get(Kind::Pod, &ns, &pod.metadata.name) {
                writes.push(put(Object::Pod(pod), Expect::Revision(prev)));
            }
        }
        for name in plan.remove {
            let found = on_node.iter().find(|p| p.metadata.name == name);
            if let Some(p) = found {
                let ns = p.metadata.namespace_or_default().to_string();
                if let Some((_, prev)) = cache.get(Kind::Pod, &ns, &name) {
                    // The node will never confirm: remove outright.
                    writes.push(Write::Remove { kind: Kind::Pod, namespace: ns, name, rev: prev });
                }
            }
        }
    }
    commit(ctx, cache, writes, now).await.deposed
}

async fn gc_pass(ctx: &MasterCtx, cache: &mut Cache, now: Time) -> bool {
    let all: Vec<&Object> =
        [Kind::Pod, Kind::Endpoints].into_iter().flat_map(|k| cache.of_kind(k).map(|(o, _)| o)).collect();
    let owners: BTreeSet<String> = [Kind::Deployment, Kind::Service]
        .into_iter()
        .flat_map(|k| cache.of_kind(k).filter_map(|(o, _)| o.meta().uid.clone()).collect::<Vec<_>>())
        .collect();
    let writes: Vec<Write> = gc::orphans(all, |uid| owners.contains(uid))
        .into_iter()
        .filter_map(|(kind, ns, name)| {
            let rev = cache.get(kind, &ns, &name)?.1;
            Some(Write::Delete { kind, namespace: ns, name, rev })
        })
        .collect();
    commit(ctx, cache, writes, now).await.deposed
}
