//! Real `corral node` agents on the local Docker engine for the
//! process-level tests. Every container and volume they create carries the
//! label `io.corral.test=<run id>`; dropping [`Nodes`] kills the agents (by
//! PID) and removes everything with that label, also when a test fails.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::local::remove_labelled;
use control_plane::api::{manifest, Object};
use control_plane::CorralClient;

use super::TestCluster;

/// The test agents' fast timings: heartbeats, usage samples, restart back-off.
pub const NODE_FLAGS: [&str; 8] = [
    "--heartbeat-ms",
    "500",
    "--usage-interval-ms",
    "1000",
    "--backoff-ms",
    "500",
    "--max-backoff-ms",
    "4000",
];

pub struct NodeAgent {
    pub name: String,
    pub address: String,
    pub log: PathBuf,
    child: Option<Child>,
}

pub struct Nodes {
    pub run_id: String,
    pub agents: Vec<NodeAgent>,
    servers: String,
    dir: PathBuf,
    extra: Vec<String>,
}

/// Builds the test images once per process (no registry: from busybox-static).
pub async fn ensure_images() {
    let runtime = node::runtime::docker::DockerRuntime::connect(node::runtime::docker::DEFAULT_NETWORK)
        .await
        .expect("docker");
    node::runtime::docker::ensure_busybox_images(runtime.docker()).await.expect("images build");
}

/// A 3-master cluster started with `flags`, and `nodes` Ready agents on
/// 127.0.0.(base+i): what the Docker tests start from.
pub async fn cluster_with_nodes(
    flags: &[&str],
    nodes: usize,
    base: u8,
) -> (TestCluster, Nodes, CorralClient) {
    ensure_images().await;
    let tc = TestCluster::start(3, flags).await;
    let servers = tc.cluster.file.masters.iter().map(|m| m.address.clone()).collect::<Vec<_>>().join(",");
    let agents = Nodes::start(&servers, tc.dir.path(), nodes, base, &[]);
    let client = tc.client();
    agents.wait_ready(&client).await;
    (tc, agents, client)
}

/// Applies every object of a YAML manifest.
pub async fn apply(client: &CorralClient, yaml: &str) {
    for obj in manifest::parse("test.yaml", yaml).expect("manifest parses") {
        client.apply(&obj).await.expect("apply");
    }
}

impl Nodes {
    /// Starts `count` agents n1..nN on 127.0.0.(base+i), talking to `servers`.
    pub fn start(servers: &str, dir: &std::path::Path, count: usize, base: u8, extra: &[&str]) -> Nodes {
        let run_id = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
        let mut nodes = Nodes {
            run_id,
            agents: Vec::new(),
            servers: servers.to_string(),
            dir: dir.to_path_buf(),
            extra: extra.iter().map(|s| s.to_string()).collect(),
        };
        for i in 0..count {
            let name = format!("{}-n{}", nodes.run_id, i + 1);
            let address = format!("127.0.0.{}", base as usize + i);
            let log = dir.join(format!("{name}.log"));
            let mut agent = NodeAgent { name, address, log, child: None };
            nodes.spawn(&mut agent);
            nodes.agents.push(agent);
        }
        nodes
    }

    fn spawn(&self, agent: &mut NodeAgent) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&agent.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_corral"))
            .args(["node", "--name", &agent.name, "--address", &agent.address, "--server", &self.servers])
            .args(NODE_FLAGS)
            .args(["--container-labels", &format!("io.corral.test={}", self.run_id)])
            .args(&self.extra)
            .env("RUST_LOG", "info,node=debug")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .spawn()
            .expect("corral node starts");
        agent.child = Some(child);
    }

    /// Kills agent `i` (SIGKILL); its containers keep running.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.agents[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self, i: usize) {
        self.kill(i);
        let mut agent = NodeAgent {
            name: self.agents[i].name.clone(),
            address: self.agents[i].address.clone(),
            log: self.agents[i].log.clone(),
            child: None,
        };
        self.spawn(&mut agent);
        self.agents[i] = agent;
    }

    /// Waits until every agent's Node is Ready.
    pub async fn wait_ready(&self, client: &CorralClient) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let mut ready = 0;
            for a in &self.agents {
                if let Ok(Object::Node(n)) = client.get_object("nodes", "", &a.name).await {
                    ready += usize::from(n.is_ready());
                }
            }
            if ready == self.agents.len() {
                return;
            }
            assert!(Instant::now() < deadline, "nodes not Ready within 60 s\n{}", self.log_tails());
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Removes every container and volume agent `i` created (a lost machine).
    pub fn remove_containers_of(&self, i: usize) {
        remove_labelled(&format!("io.corral.node={}", self.agents[i].name));
    }

    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for a in &self.agents {
            let log = std::fs::read_to_string(&a.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(30).collect();
            out.push_str(&format!("--- node {} log tail ---\n", a.name));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    pub fn dir(&self) -> &std::path::Path {
        &self.dir
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.log_tails());
        }
        for i in 0..self.agents.len() {
            self.kill(i);
        }
        remove_labelled(&format!("io.corral.test={}", self.run_id));
    }
}
