//! A local cluster of real `corral master` processes on loopback: started by
//! `corral up`, the integration tests and the benchmark alike, described in
//! `STATE_DIR/cluster.json`, stopped by `corral down`.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use control_plane::pb::StatusResponse;
use control_plane::CorralClient;
use raft_store::transport::TcpDialer;
use raft_store::NodeId;
use serde::{Deserialize, Serialize};

/// One process of the local cluster, as written to `cluster.json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ProcessInfo {
    pub role: String,
    pub id: NodeId,
    pub address: String,
    pub pid: u32,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    /// The network namespace (host of the test bed) it runs in; none: the machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub netns: Option<String>,
    /// The Docker engine socket a node runs its pods on; none: the machine's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<PathBuf>,
}

/// The contents of `cluster.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ClusterFile {
    pub masters: Vec<ProcessInfo>,
    /// Worker nodes (arrive with the node agent).
    #[serde(default)]
    pub nodes: Vec<ProcessInfo>,
    /// The multi-host test bed the processes run on (`corral up --hosts`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bed: Option<crate::hosts::Bed>,
    /// Its hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<crate::hosts::Host>,
}

impl ClusterFile {
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join("cluster.json")
    }

    pub fn load(state_dir: &Path) -> io::Result<Self> {
        let path = Self::path(state_dir);
        let text = fs::read_to_string(&path)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", path.display())))?;
        serde_json::from_str(&text).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a cluster file: {e}", path.display()),
            )
        })
    }

    pub fn save(&self, state_dir: &Path) -> io::Result<()> {
        let text = serde_json::to_string_pretty(self).expect("cluster file serializes");
        let tmp = state_dir.join("cluster.json.tmp");
        fs::write(&tmp, text)?;
        fs::rename(tmp, Self::path(state_dir))
    }

    pub fn addresses(&self) -> Vec<String> {
        self.masters.iter().map(|m| m.address.clone()).collect()
    }
}

/// How to start the masters of a local cluster.
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub exe: PathBuf,
    pub state_dir: PathBuf,
    pub masters: usize,
    pub base_port: u16,
    /// Extra flags for every master (timeouts, snapshot policy).
    pub master_flags: Vec<String>,
    /// Hosts of a test bed to run the masters on, master N on the Nth
    /// (listening on its address, port `base_port`); empty: all on loopback.
    pub master_hosts: Vec<crate::hosts::Host>,
}

/// A local cluster this process started (or loaded from its state dir).
pub struct LocalCluster {
    pub opts: LocalOptions,
    pub file: ClusterFile,
    /// Child handles of the processes this process spawned, by pid, so that
    /// they are reaped (a killed child must not linger as a zombie).
    children: BTreeMap<u32, Child>,
}

pub fn master_addr(base_port: u16, id: NodeId) -> String {
    format!("127.0.0.1:{}", base_port as u64 + id - 1)
}

impl LocalOptions {
    /// Where master `id` listens.
    pub fn master_addr(&self, id: NodeId) -> String {
        match self.master_hosts.get(id as usize - 1) {
            Some(h) => format!("{}:{}", h.address, self.base_port),
            None => master_addr(self.base_port, id),
        }
    }

    fn master_netns(&self, id: NodeId) -> Option<String> {
        self.master_hosts.get(id as usize - 1).map(|h| h.netns.clone())
    }
}

/// `program`, inside `netns` when given.
fn command_in(netns: Option<&str>, program: &Path) -> Command {
    match netns {
        Some(ns) => crate::hosts::in_netns(ns, program),
        None => Command::new(program),
    }
}

impl LocalCluster {
    /// Starts `opts.masters` masters that form one cluster, and writes `cluster.json`.
    pub fn start(mut opts: LocalOptions) -> io::Result<Self> {
        fs::create_dir_all(&opts.state_dir)?;
        // Absolute paths in cluster.json: `corral down` works from any directory.
        opts.state_dir = fs::canonicalize(&opts.state_dir)?;
        for id in 1..=opts.masters as NodeId {
            if !opts.master_hosts.is_empty() {
                continue; // a host of its own: nothing else listens there
            }
            let addr = master_addr(opts.base_port, id);
            // A port can be held for a moment by a probe or a closing socket: retry briefly.
            let free = (0..20).any(|attempt| {
                if attempt > 0 {
                    std::thread::sleep(Duration::from_millis(100));
                }
                std::net::TcpListener::bind(&addr).is_ok()
            });
            if !free {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!("port {addr} is in use: pick another --base-port, or stop what holds it"),
                ));
            }
        }
        let peers: Vec<String> =
            (1..=opts.masters as NodeId).map(|id| format!("{id}={}", opts.master_addr(id))).collect();
        let mut cluster = LocalCluster { opts, file: ClusterFile::default(), children: BTreeMap::new() };
        for id in 1..=cluster.opts.masters as NodeId {
            let info = cluster.spawn_master(id, &["--peers".into(), peers.join(",")])?;
            cluster.file.masters.push(info);
        }
        cluster.file.save(&cluster.opts.state_dir)?;
        Ok(cluster)
    }

    /// Spawns master `id` with its data dir and log under the state dir.
    pub fn spawn_master(&mut self, id: NodeId, extra: &[String]) -> io::Result<ProcessInfo> {
        let data_dir = self.opts.state_dir.join(format!("master-{id}"));
        let log = self.opts.state_dir.join(format!("master-{id}.log"));
        let address = self.opts.master_addr(id);
        let netns = self.opts.master_netns(id);
        let log_file = fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let mut cmd = command_in(netns.as_deref(), &self.opts.exe);
        cmd.arg("master")
            .args(["--id", &id.to_string(), "--listen", &address])
            .arg("--data-dir")
            .arg(&data_dir)
            .args(extra)
            .args(&self.opts.master_flags)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        // Its own process group: Ctrl-C on `corral up` must not stop the cluster.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {} master: {e}", self.opts.exe.display()))
        })?;
        let pid = child.id();
        self.children.insert(pid, child);
        Ok(ProcessInfo { role: "master".into(), id, address, pid, data_dir, log, netns, engine: None })
    }

    /// Spawns a worker node agent `name` at `address` with `extra` flags
    /// (more `--container-labels`, shorter heartbeats), and records it as
    /// node `id`. Its containers carry [`cluster_label`] too.
    pub fn spawn_node_as(
        &mut self,
        id: u64,
        name: &str,
        address: &str,
        extra: &[String],
    ) -> io::Result<ProcessInfo> {
        self.spawn_node_on(None, id, name, address, extra)
    }

    /// [`LocalCluster::spawn_node_as`] on `host` of a test bed: inside its
    /// namespace, on its own engine.
    pub fn spawn_node_on(
        &mut self,
        host: Option<&crate::hosts::Host>,
        id: u64,
        name: &str,
        address: &str,
        extra: &[String],
    ) -> io::Result<ProcessInfo> {
        let log = self.opts.state_dir.join(format!("{name}.log"));
        let log_file = fs::OpenOptions::new().create(true).append(true).open(&log)?;
        let netns = host.map(|h| h.netns.clone());
        let engine = host.and_then(|h| h.engine.clone());
        let mut cmd = command_in(netns.as_deref(), &self.opts.exe);
        if let Some(socket) = &engine {
            cmd.env("DOCKER_HOST", format!("unix://{}", socket.display()));
        }
        cmd.arg("node")
            .args(["--name", name, "--address", address, "--server", &self.file.addresses().join(",")])
            .args(["--container-labels", &cluster_label(&self.opts.state_dir)])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {} node: {e}", self.opts.exe.display()))
        })?;
        let pid = child.id();
        self.children.insert(pid, child);
        let info = ProcessInfo {
            role: "node".into(),
            id,
            address: address.to_string(),
            pid,
            data_dir: self.opts.state_dir.clone(),
            log,
            netns,
            engine,
        };
        self.file.nodes.push(info.clone());
        self.file.save(&self.opts.state_dir)?;
        Ok(info)
    }

    /// Starts an extra master that joins the running cluster, and records it.
    pub fn add_master(&mut self, id: NodeId) -> io::Result<ProcessInfo> {
        let join = self.file.addresses().join(",");
        let info = self.spawn_master(id, &["--join".into(), join])?;
        self.file.masters.push(info.clone());
        self.file.save(&self.opts.state_dir)?;
        Ok(info)
    }

    /// Restarts a stopped master from its data dir (no --peers needed: its log has the membership).
    pub fn restart_master(&mut self, id: NodeId) -> io::Result<ProcessInfo> {
        let info = self.spawn_master(id, &[])?;
        if let Some(m) = self.file.masters.iter_mut().find(|m| m.id == id) {
            *m = info.clone();
        }
        self.file.save(&self.opts.state_dir)?;
        Ok(info)
    }

    pub fn master(&self, id: NodeId) -> Option<&ProcessInfo> {
        self.file.masters.iter().find(|m| m.id == id)
    }

    pub fn client(&self) -> CorralClient {
        CorralClient::new(self.file.addresses(), Arc::new(TcpDialer::default()))
    }

    /// Sends `signal` to master `id` and, for a fatal one, reaps it.
    pub fn signal_master(&mut self, id: NodeId, signal: i32) -> io::Result<()> {
        let pid =
            self.master(id).map(|m| m.pid).ok_or_else(|| io::Error::other(format!("no master {id}")))?;
        send_signal(pid, signal)?;
        if signal == libc::SIGKILL {
            if let Some(mut child) = self.children.remove(&pid) {
                child.wait()?;
            }
        }
        Ok(())
    }

    /// Stops master `id` gracefully (SIGTERM, then SIGKILL after 10 s).
    pub fn stop_master(&mut self, id: NodeId) -> io::Result<()> {
        let pid =
            self.master(id).map(|m| m.pid).ok_or_else(|| io::Error::other(format!("no master {id}")))?;
        match self.children.remove(&pid) {
            Some(child) => stop_child(child, Duration::from_secs(10)),
            None => stop_pid(pid, Duration::from_secs(10)),
        }
    }

    /// Stops every process this cluster started, nodes first: an agent
    /// stopping cleanly (its DNS address off the bridge) needs no master,
    /// but a node outliving the masters only logs errors.
    pub fn stop_all(&mut self) {
        for pid in self.file.nodes.iter().chain(&self.file.masters).map(|p| p.pid).collect::<Vec<_>>() {
            let res = match self.children.remove(&pid) {
                Some(child) => stop_child(child, Duration::from_secs(5)),
                None => Ok(()),
            };
            if let Err(e) = res {
                tracing::warn!(pid, error = %e, "could not stop process");
            }
        }
    }

    /// Waits until a leader is elected and every master answers; reports progress through `progress`.
    pub async fn wait_ready(
        &self,
        timeout: Duration,
        mut progress: impl FnMut(&str),
    ) -> io::Result<StatusResponse> {
        wait_ready(&self.client(), self.opts.masters, timeout, &mut progress).await
    }
}

impl Drop for LocalCluster {
    /// Children this process spawned and still holds are killed and reaped,
    /// also when a test fails. `corral up` detaches its children first.
    fn drop(&mut self) {
        for (_, mut child) in std::mem::take(&mut self.children) {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl LocalCluster {
    /// Lets the processes outlive this handle (for `corral up`; `corral down` stops them).
    pub fn detach(mut self) {
        self.children.clear();
    }
}

/// Waits until a leader is known and `expected` masters answer.
pub async fn wait_ready(
    client: &CorralClient,
    expected: usize,
    timeout: Duration,
    progress: &mut dyn FnMut(&str),
) -> io::Result<StatusResponse> {
    let deadline = Instant::now() + timeout;
    let mut last = String::new();
    loop {
        let msg = match client.status().await {
            Ok(s) => {
                let up = s.members.iter().filter(|m| m.role != "unreachable").count();
                if s.leader_id != 0 && up >= expected && settled(&s) {
                    return Ok(s);
                }
                match s.leader_id {
                    0 => format!("{up}/{expected} masters up, electing a leader"),
                    id => format!("{up}/{expected} masters up, master {id} leads"),
                }
            }
            Err(e) => format!("waiting for the masters to answer ({e})"),
        };
        if msg != last {
            progress(&msg);
            last = msg;
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("the cluster was not ready within {timeout:?}: {last}"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Exactly one member reports itself leader, it is the leader the reporter
/// knows, and every member is in its term. (A restarted former leader
/// resumes its old leadership from disk until it hears the newer term.)
fn settled(s: &StatusResponse) -> bool {
    let leaders: Vec<&control_plane::pb::Member> = s.members.iter().filter(|m| m.role == "leader").collect();
    leaders.len() == 1
        && leaders[0].id == s.leader_id
        && s.members.iter().filter(|m| m.role != "unreachable").all(|m| m.term == leaders[0].term)
}

pub fn send_signal(pid: u32, signal: i32) -> io::Result<()> {
    // SAFETY: kill(2) with a pid we started and a valid signal number.
    let rc = unsafe { libc::kill(pid as libc::pid_t, signal) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn stop_child(mut child: Child, grace: Duration) -> io::Result<()> {
    if child.try_wait()?.is_some() {
        return Ok(());
    }
    send_signal(child.id(), libc::SIGTERM)?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill()?;
    child.wait().map(|_| ())
}

/// Whether `pid` is still a running `corral master` (not a reused pid).
pub fn is_our_master(pid: u32, data_dir: &Path) -> bool {
    is_ours(pid, "master", data_dir)
}

/// Whether `pid` is still a running `corral ROLE` whose arguments name
/// `dir` (a master's data dir; a node's state dir, in its container label).
pub fn is_ours(pid: u32, role: &str, dir: &Path) -> bool {
    let Ok(cmdline) = fs::read(format!("/proc/{pid}/cmdline")) else { return false };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    let dir = dir.as_os_str().as_encoded_bytes();
    let names_dir = args.iter().any(|a| a.windows(dir.len().max(1)).any(|w| w == dir));
    args.contains(&role.as_bytes()) && names_dir && !is_zombie(pid)
}

/// The label on every container of the local cluster started from `state_dir`.
pub fn cluster_label(state_dir: &Path) -> String {
    format!("io.corral.cluster={}", state_dir.display())
}

/// `docker rm -f` every container and `docker volume rm` every volume
/// labelled `label` (`key=value`); returns how many containers went.
/// Best effort: a missing or failing `docker` removes nothing.
pub fn remove_labelled(label: &str) -> usize {
    let list = |args: &[&str]| -> Vec<String> {
        Command::new("docker")
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    let containers = list(&["ps", "-aq", "--filter", &format!("label={label}")]);
    if !containers.is_empty() {
        let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&containers).output();
    }
    let volumes = list(&["volume", "ls", "-q", "--filter", &format!("label={label}")]);
    if !volumes.is_empty() {
        let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).output();
    }
    containers.len()
}

fn is_zombie(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| s.rsplit(')').next().is_some_and(|rest| rest.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// Stops a process we did not spawn in this process (from `cluster.json`).
pub fn stop_pid(pid: u32, grace: Duration) -> io::Result<()> {
    send_signal(pid, libc::SIGTERM)?;
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if !Path::new(&format!("/proc/{pid}")).exists() || is_zombie(pid) {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    send_signal(pid, libc::SIGKILL)
}

/// A base port with `count` free consecutive loopback ports, for tests.
/// Ranges handed out by this process are never handed out again, so that
/// clusters started concurrently in one test binary cannot collide.
pub fn free_base_port(count: u16) -> u16 {
    use rand::Rng;
    use std::sync::Mutex;
    static TAKEN: Mutex<Vec<(u16, u16)>> = Mutex::new(Vec::new());
    let mut rng = rand::thread_rng();
    loop {
        // Below Linux's ephemeral range (32768-60999), where outgoing
        // connections would take ports from under a starting cluster.
        let base: u16 = rng.gen_range(20_000..32_000);
        let mut taken = TAKEN.lock().expect("port registry lock");
        if taken.iter().any(|(b, n)| base < b + n && *b < base + count) {
            continue;
        }
        if (0..count).all(|i| std::net::TcpListener::bind(("127.0.0.1", base + i)).is_ok()) {
            taken.push((base, count));
            return base;
        }
    }
}
