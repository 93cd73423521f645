//! A Docker daemon restart under a running agent. The shared engine of the
//! machine is not ours to restart, so the test starts a private `dockerd`
//! (its own socket, data and exec roots in a temp dir, no iptables, and a
//! default bridge of its own, `crlrst0`, that the test creates and
//! removes), points the agent at it with DOCKER_HOST, stops and starts that
//! daemon, and checks the pod comes back.
//!
//! Never start a second dockerd with `--bridge none`: at start-up it
//! deletes the host's `docker0`, which the machine's own engine uses.
//!
//! Needs root and the `dockerd` binary (Debian's docker.io), as every
//! machine of ours has; part of the suite.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::nodes::{ensure_images, Nodes};
use common::TestCluster;
use control_plane::api::{manifest, Object, Pod};
use control_plane::CorralClient;

/// A dockerd this test started, stopped by PID on drop.
struct PrivateDockerd {
    dir: PathBuf,
    child: Option<Child>,
}

/// The private engine's default bridge, created by the test and removed on drop.
const BRIDGE: &str = "crlrst0";

struct Bridge;

impl Bridge {
    fn create() -> Bridge {
        let ip = |args: &[&str]| Command::new("ip").args(args).status().is_ok_and(|s| s.success());
        let _ = ip(&["link", "del", BRIDGE]);
        assert!(
            ip(&["link", "add", BRIDGE, "type", "bridge"]),
            "cannot create bridge {BRIDGE} (root needed)"
        );
        assert!(ip(&["addr", "add", "172.31.254.1/24", "dev", BRIDGE]));
        assert!(ip(&["link", "set", BRIDGE, "up"]));
        Bridge
    }
}

impl Drop for Bridge {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", BRIDGE]).status();
    }
}

impl PrivateDockerd {
    fn socket(dir: &Path) -> PathBuf {
        dir.join("docker.sock")
    }

    fn start(dir: &Path) -> PrivateDockerd {
        std::fs::write(dir.join("daemon.json"), "{}").unwrap();
        let log =
            std::fs::OpenOptions::new().create(true).append(true).open(dir.join("dockerd.log")).unwrap();
        let child = Command::new("dockerd")
            .arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", Self::socket(dir).display()))
            .args(["--bridge", BRIDGE, "--iptables=false", "--ip-masq=false"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("dockerd starts (root and Debian's docker.io are needed)");
        let d = PrivateDockerd { dir: dir.to_path_buf(), child: Some(child) };
        d.wait_up();
        d
    }

    fn wait_up(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !Command::new("docker")
            .args(["-H", &format!("unix://{}", Self::socket(&self.dir).display()), "info"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
        {
            assert!(
                Instant::now() < deadline,
                "the private dockerd did not come up: see {}/dockerd.log",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// SIGTERM, as a service manager stops it, and waits for it to exit.
    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for PrivateDockerd {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn pod(client: &CorralClient, name: &str) -> Option<Pod> {
    match client.get_object("pods", "default", name).await {
        Ok(Object::Pod(p)) => Some(p),
        _ => None,
    }
}

fn sandbox_started(p: &Pod) -> Option<String> {
    let s = p.status.as_ref()?;
    s.container_statuses.first()?.state.as_ref()?.running.as_ref()?.started_at.map(|t| t.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_survives_a_docker_daemon_restart() {
    let dir = tempfile::Builder::new().prefix("corral-dockerd-").tempdir_in("/tmp").unwrap();
    let _bridge = Bridge::create();
    let mut dockerd = PrivateDockerd::start(dir.path());
    // This test binary runs this one test: the agents it spawns inherit it.
    std::env::set_var("DOCKER_HOST", format!("unix://{}", PrivateDockerd::socket(dir.path()).display()));
    ensure_images().await;
    // A cluster CIDR of its own: the private engine's bridge lives in this
    // machine's network namespace, beside the machine engine's `corral` bridge.
    let tc = TestCluster::start(3, &["--cluster-cidr", "10.243.0.0/16"]).await;
    let servers = tc.cluster.file.addresses().join(",");
    let nodes = Nodes::start(&servers, tc.dir.path(), 1, 91, &["--cluster-cidr", "10.243.0.0/16"]);
    let client = tc.client();
    nodes.wait_ready(&client).await;
    let yaml = "apiVersion: v1\nkind: Pod\nmetadata: {name: survivor}\nspec:\n  terminationGracePeriodSeconds: 0\n  containers:\n  - {name: app, image: 'corral/busybox:1', command: [sh, -c, 'exec sleep 3600']}\n";
    for obj in manifest::parse("t.yaml", yaml).unwrap() {
        client.apply(&obj).await.unwrap();
    }
    let wait = |what: &'static str, check: Box<dyn Fn(&Pod) -> bool + Send>| {
        let client = client.clone();
        let tails = nodes.log_tails();
        async move {
            let deadline = Instant::now() + Duration::from_secs(90);
            loop {
                if let Some(p) = pod(&client, "survivor").await {
                    if check(&p) {
                        return p;
                    }
                }
                assert!(Instant::now() < deadline, "{what} not within 90 s\n{tails}");
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    };
    let before = wait("the pod Ready", Box::new(|p| p.is_ready())).await;
    let started_before = sandbox_started(&before);

    // The daemon goes away (live-restore is off: its containers stop), then comes back.
    dockerd.stop();
    let down_at = Instant::now();
    // The node says so (alive, not Ready), so services stop sending to its pods.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Ok(Object::Node(n)) = client.get_object("nodes", "", &nodes.agents[0].name).await {
            let ready =
                n.status.as_ref().and_then(|s| s.conditions.iter().find(|c| c.type_ == "Ready").cloned());
            if let Some(c) = ready.filter(|c| c.status == "False") {
                assert!(c.message.unwrap_or_default().contains("container runtime is down"));
                break;
            }
        }
        assert!(Instant::now() < deadline, "the node did not report its engine down\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut dockerd = PrivateDockerd::start(dir.path());
    let after = wait(
        "the pod Running and Ready again",
        Box::new(move |p| p.is_ready() && sandbox_started(p) != started_before),
    )
    .await;
    eprintln!("back {:?} after the engine went down", down_at.elapsed());
    assert!(after.status.as_ref().unwrap().pod_ip.is_some());
    // The node, registered all along, is Ready again (the pod was Ready on it).
    let Ok(Object::Node(n)) = client.get_object("nodes", "", &nodes.agents[0].name).await else {
        panic!("node gone")
    };
    assert!(n.is_ready(), "{n:?}");
    drop(nodes); // removes the containers from the private engine
    dockerd.stop();
}
