//! A cluster on the multi-host test bed for the process-level tests:
//! masters and worker nodes each on a host of their own (a network
//! namespace on one virtual link), every worker with its own Docker engine.
//! Dropping [`HostCluster`] kills the processes, stops the engines and
//! removes the namespaces and links, also when a test fails.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use cli::hosts::{Bed, Host};
use cli::local::{LocalCluster, LocalOptions, ProcessInfo};
use control_plane::api::{Node, Object};
use control_plane::CorralClient;

pub struct HostCluster {
    pub bed: Bed,
    pub cluster: LocalCluster,
    pub workers: Vec<Host>,
    pub nodes: Vec<ProcessInfo>,
    pub backend: String,
    // Last: removed after everything that lives in it.
    pub dir: tempfile::TempDir,
}

use super::nodes::NODE_FLAGS;

/// The web app the multi-host tests run: `replicas` busybox web servers that
/// answer "hello from POD" on 8080 (`one_per_host`: required anti-affinity
/// on the hostname), behind the Service `web`.
pub fn web_app(replicas: u32, one_per_host: bool) -> String {
    let affinity = if one_per_host {
        "      affinity:\n        podAntiAffinity:\n          requiredDuringSchedulingIgnoredDuringExecution:\n          - labelSelector: {matchLabels: {app: web}}\n            topologyKey: kubernetes.io/hostname\n"
    } else {
        ""
    };
    format!(
        r#"apiVersion: apps/v1
kind: Deployment
metadata: {{name: web}}
spec:
  replicas: {replicas}
  selector: {{matchLabels: {{app: web}}}}
  template:
    metadata: {{labels: {{app: web}}}}
    spec:
      terminationGracePeriodSeconds: 1
{affinity}      containers:
      - name: web
        image: corral/busybox:1
        command: [sh, -c, 'mkdir -p /www && echo "hello from $HOSTNAME" > /www/index.html && exec httpd -f -p 8080 -h /www']
        ports: [{{containerPort: 8080, name: http}}]
        readinessProbe: {{tcpSocket: {{port: 8080}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: web}}
spec:
  selector: {{app: web}}
  ports: [{{port: 8080, targetPort: http}}]
"#
    )
}

/// The web app's pods (none when the masters do not answer).
pub async fn web_pods(client: &CorralClient) -> Vec<control_plane::api::Pod> {
    match client.list_objects("pods", "default", "app=web").await {
        Ok((objs, _)) => {
            objs.into_iter().filter_map(|o| if let Object::Pod(p) = o { Some(p) } else { None }).collect()
        }
        Err(_) => Vec::new(),
    }
}

/// Who answered: the pod name in "hello from NAME".
pub fn answered_by(body: &str) -> Option<String> {
    body.lines().find_map(|l| l.strip_prefix("hello from ").map(|n| n.trim().to_string()))
}

impl HostCluster {
    /// `masters` masters and `workers` worker nodes, each on a host of its
    /// own, on the first free bed from `first_bed`; nodes use `backend`.
    pub async fn start(
        first_bed: u8,
        masters: usize,
        workers: usize,
        backend: &str,
        master_flags: &[&str],
    ) -> Self {
        let dir = tempfile::Builder::new().prefix("corral-hosts-").tempdir_in("/tmp").expect("temp dir");
        let bed = claim_bed(first_bed);
        let mut guard = BedGuard { bed: bed.clone(), dir: dir.path().to_path_buf(), armed: true };
        bed.create().expect("the bed's link (root and iproute2 needed)");
        let master_hosts: Vec<Host> = (1..=masters)
            .map(|i| bed.add_host(&format!("m{i}"), 10 + i as u8).expect("a master host"))
            .collect();
        let mut hosts: Vec<Host> = (1..=workers)
            .map(|i| bed.add_host(&format!("n{i}"), 20 + i as u8).expect("a worker host"))
            .collect();
        for h in &mut hosts {
            let engine_dir = dir.path().join(format!("engine-{}", h.name));
            bed.start_engine(h, &engine_dir).expect("a worker's own Docker engine");
        }
        for h in &hosts {
            let socket = h.engine.clone().expect("an engine");
            let runtime = node::runtime::docker::DockerRuntime::open(&socket, "corral")
                .await
                .expect("the engine answers");
            node::runtime::docker::ensure_busybox_images(runtime.docker())
                .await
                .expect("images build in the host's engine");
        }
        let opts = LocalOptions {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_corral")),
            state_dir: dir.path().join("state"),
            masters,
            base_port: 7001,
            master_flags: master_flags.iter().map(|s| s.to_string()).collect(),
            master_hosts,
        };
        let mut cluster = LocalCluster::start(opts).expect("masters start on their hosts");
        cluster.wait_ready(Duration::from_secs(60), |_| {}).await.expect("cluster ready");
        let mut nodes = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            let mut flags: Vec<String> = NODE_FLAGS.iter().map(|s| s.to_string()).collect();
            flags.extend(["--network-backend".to_string(), backend.to_string()]);
            let name = format!("n{}", i + 1);
            let p = cluster
                .spawn_node_on(Some(h), i as u64 + 1, &name, &h.address.to_string(), &flags)
                .expect("a node agent on its host");
            nodes.push(p);
        }
        guard.armed = false;
        let hc = HostCluster { bed, cluster, workers: hosts, nodes, backend: backend.to_string(), dir };
        hc.wait_nodes_up().await;
        hc
    }

    pub fn client(&self) -> CorralClient {
        self.cluster.client().with_timeout(Duration::from_secs(30))
    }

    pub fn servers(&self) -> String {
        self.cluster.file.addresses().join(",")
    }

    /// `corral --server <masters> ARGS` from the machine.
    pub fn corral(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.arg("--server").arg(self.servers()).args(args);
        super::run_corral(cmd, None)
    }

    /// The last lines of every process's log, for failure messages.
    pub fn log_tails(&self) -> String {
        let mut out = String::new();
        for p in self.cluster.file.masters.iter().chain(&self.nodes) {
            let text = std::fs::read_to_string(&p.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            out.push_str(&format!("--- {} {} ---\n", p.role, p.log.display()));
            for l in &lines[lines.len().saturating_sub(15)..] {
                out.push_str(l);
                out.push('\n');
            }
        }
        out
    }

    /// Waits until every node is Ready with its pod network up.
    pub async fn wait_nodes_up(&self) {
        let client = self.client();
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let mut up = 0;
            let mut last = String::new();
            for p in &self.nodes {
                let name = format!("n{}", p.id);
                if let Ok(Object::Node(n)) = client.get_object("nodes", "", &name).await {
                    let net = n.condition("NetworkUnavailable").cloned();
                    if n.is_ready() && net.as_ref().is_some_and(|c| c.status == "False") {
                        up += 1;
                    } else {
                        last = format!(
                            "{name}: ready {} network {:?}",
                            n.is_ready(),
                            net.and_then(|c| c.message)
                        );
                    }
                }
            }
            if up == self.nodes.len() {
                return;
            }
            assert!(Instant::now() < deadline, "nodes not up within 90 s ({last})\n{}", self.log_tails());
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    pub async fn node(&self, name: &str) -> Option<Node> {
        match self.client().get_object("nodes", "", name).await {
            Ok(Object::Node(n)) => Some(n),
            _ => None,
        }
    }

    /// Corral's routes on worker host `i` (`ip route show proto 153`).
    pub fn routes_on(&self, i: usize) -> String {
        let out = cli::hosts::in_netns(&self.workers[i].netns, "ip")
            .args(["-4", "route", "show", "proto", "153"])
            .output()
            .expect("ip runs");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for HostCluster {
    fn drop(&mut self) {
        self.cluster.stop_all();
        let removed = Bed::destroy(&self.bed.prefix(), Some(self.dir.path()));
        eprintln!("test bed {} removed: {}", self.bed.prefix(), removed.join(", "));
        release_bed(self.bed.id);
    }
}

/// Removes a half-made bed when its setup panics.
struct BedGuard {
    bed: Bed,
    dir: PathBuf,
    armed: bool,
}

impl Drop for BedGuard {
    fn drop(&mut self) {
        if self.armed {
            Bed::destroy(&self.bed.prefix(), Some(&self.dir));
            release_bed(self.bed.id);
        }
    }
}

static CLAIMED: std::sync::Mutex<Vec<u8>> = std::sync::Mutex::new(Vec::new());

/// A bed number no other test of this process holds and this machine does not use.
fn claim_bed(first: u8) -> Bed {
    let mut claimed = CLAIMED.lock().expect("bed registry");
    let mut start = first;
    loop {
        let bed = Bed::free(start).expect("a free bed number");
        if !claimed.contains(&bed.id) {
            claimed.push(bed.id);
            return bed;
        }
        start = bed.id + 1;
    }
}

fn release_bed(id: u8) {
    CLAIMED.lock().expect("bed registry").retain(|b| *b != id);
}
