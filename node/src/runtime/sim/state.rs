//! The simulated engine's data and the rules it shares with Docker: ids,
//! pod IP allocation, taken names, log tails. Locked as a whole by
//! [`super::SimRuntime`]; nothing here waits.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, SystemTime};

use super::ExecBehaviour;
use crate::runtime::{ContainerInfo, ContainerState, RuntimeError, RuntimeResult, Usage};

/// Pod IPs come from 10.88.0.0/16; 10.88.0.1 is the bridge's gateway.
const POD_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 88, 0, 0);
const FIRST_HOST: u32 = 2;
const LAST_HOST: u32 = 65_534;

/// What the simulated wall clock reads when the runtime is created.
const SIM_EPOCH_SECS: u64 = 1_700_000_000;

pub(super) struct SimState {
    started: tokio::time::Instant,
    pub(super) unavailable: bool,
    pub(super) images: BTreeSet<String>,
    pub(super) containers: BTreeMap<String, SimContainer>,
    /// (pod uid, emptyDir name).
    pub(super) volumes: BTreeSet<(String, String)>,
    next_id: u64,
    ips_in_use: BTreeSet<u32>,
    next_ip: u32,
    pub(super) exec: HashMap<Vec<String>, ExecBehaviour>,
}

pub(super) struct SimContainer {
    pub(super) name: String,
    pub(super) info: ContainerInfo,
    /// emptyDir volumes this container mounts.
    pub(super) volumes: Vec<String>,
    pub(super) log: Vec<u8>,
    pub(super) usage: Usage,
    pub(super) ignores_sigterm: bool,
}

impl SimState {
    pub(super) fn new(images: [&str; 2]) -> Self {
        SimState {
            started: tokio::time::Instant::now(),
            unavailable: false,
            images: images.map(String::from).into(),
            containers: BTreeMap::new(),
            volumes: BTreeSet::new(),
            next_id: 1,
            ips_in_use: BTreeSet::new(),
            next_ip: FIRST_HOST,
            exec: HashMap::new(),
        }
    }

    pub(super) fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(SIM_EPOCH_SECS) + self.started.elapsed()
    }

    pub(super) fn new_id(&mut self) -> String {
        let id = format!("sim{:09}", self.next_id);
        self.next_id += 1;
        id
    }

    pub(super) fn insert(&mut self, name: String, info: ContainerInfo, volumes: Vec<String>) -> String {
        let id = info.id.clone();
        let container = SimContainer {
            name,
            info,
            volumes,
            log: Vec::new(),
            usage: Usage::default(),
            ignores_sigterm: false,
        };
        self.containers.insert(id.clone(), container);
        id
    }

    /// Removes a container; its node if it existed.
    pub(super) fn remove(&mut self, id: &str) -> Option<String> {
        let c = self.containers.remove(id)?;
        if let (None, Some(IpAddr::V4(ip))) = (&c.info.container, c.info.ip) {
            self.ips_in_use.remove(&(u32::from(ip) - u32::from(POD_NETWORK)));
        }
        Some(c.info.node)
    }

    /// Docker's rule for a taken name (as `DockerRuntime` applies it): a
    /// stopped holder is removed; a running holder is reused when it is the
    /// same start of the same container, else refused.
    pub(super) fn take_name(
        &mut self,
        name: &str,
        pod_uid: &str,
        container: Option<&str>,
        attempt: u32,
    ) -> RuntimeResult<Option<String>> {
        let Some(holder) = self.containers.values().find(|c| c.name == name) else { return Ok(None) };
        let info = &holder.info;
        if !info.is_running() {
            let id = info.id.clone();
            self.remove(&id);
            return Ok(None);
        }
        if info.pod.uid == pod_uid && info.container.as_deref() == container && info.attempt == attempt {
            return Ok(Some(info.id.clone()));
        }
        Err(RuntimeError::Engine(format!(
            "container name {name} is held by running container {} of pod uid {}: stop it first",
            info.id, info.pod.uid
        )))
    }

    /// The next free pod IP after the last one handed out, like Docker's
    /// IPAM: addresses are not reused at once.
    pub(super) fn allocate_ip(&mut self) -> RuntimeResult<IpAddr> {
        let span = LAST_HOST - FIRST_HOST + 1;
        for step in 0..span {
            let host = FIRST_HOST + (self.next_ip - FIRST_HOST + step) % span;
            if self.ips_in_use.insert(host) {
                self.next_ip = if host == LAST_HOST { FIRST_HOST } else { host + 1 };
                return Ok(IpAddr::V4(Ipv4Addr::from(u32::from(POD_NETWORK) + host)));
            }
        }
        Err(RuntimeError::Engine("no free pod IP left in 10.88.0.0/16".into()))
    }
}

pub(super) fn exited(
    exit_code: i64,
    started_at: SystemTime,
    now: SystemTime,
    oom_killed: bool,
) -> ContainerState {
    ContainerState::Exited { exit_code, started_at: Some(started_at), finished_at: Some(now), oom_killed }
}

pub(super) fn sort_infos(infos: &mut [ContainerInfo]) {
    infos.sort_by(|a, b| {
        (&a.pod, &a.container, a.attempt, &a.id).cmp(&(&b.pod, &b.container, b.attempt, &b.id))
    });
}

/// The last `n` lines of `log`.
pub(super) fn tail_lines(log: &[u8], n: u64) -> &[u8] {
    let body = log.strip_suffix(b"\n").unwrap_or(log);
    let mut newlines = body.iter().enumerate().rev().filter(|(_, b)| **b == b'\n').map(|(i, _)| i);
    match n.checked_sub(1).and_then(|skip| newlines.nth(skip as usize)) {
        Some(i) => &log[i + 1..],
        None if n == 0 => &[],
        None => log,
    }
}
