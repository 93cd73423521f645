//! The README's walk-through, run for real: `corral up` (3 masters, 2 nodes
//! on the local Docker engine, the demo app), then what an operator does
//! next, through the real `corral` binary, checking its output and exit
//! codes: reach the app, get in every format, describe, logs, scale, a
//! rolling update and its undo, a snapshot saved and restored, drain, the
//! leader killed, a node killed, delete, and `corral down`.
//!
//! The cluster runs on its own ports, node names and node addresses
//! (127.0.0.101-102), so it never meets a cluster a user started; dropping
//! [`Up`] runs `corral down` and removes every container carrying the
//! cluster's label, also when the test fails.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cli::local::{cluster_label, free_base_port, remove_labelled, ClusterFile};
use common::{http_get, run_corral};

const NODE_1: &str = "127.0.0.101";
const NODE_2: &str = "127.0.0.102";

fn corral_exe() -> &'static str {
    env!("CARGO_BIN_EXE_corral")
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// A cluster `corral up` started; dropped, it is taken down.
struct Up {
    dir: tempfile::TempDir,
    servers: String,
    prefix: String,
    extra: Vec<Child>,
}

impl Up {
    fn start() -> (Self, String) {
        let dir = tempfile::Builder::new().prefix("corral-walkthrough-").tempdir().expect("temp dir");
        let prefix = format!("tw{}", std::process::id());
        let base_port = free_base_port(3).to_string();
        let mut cmd = Command::new(corral_exe());
        cmd.args(["up", "--masters", "3", "--nodes", "2", "--base-port", &base_port])
            .args(["--node-prefix", &prefix, "--node-address", NODE_1])
            // Relative, as in the README: `corral down` must find the same containers.
            .args(["--state-dir", "state"])
            .current_dir(dir.path());
        let (ok, out, err) = run_corral(cmd, None);
        let file = ClusterFile::load(&dir.path().join("state"));
        let servers = file.map(|f| f.addresses().join(",")).unwrap_or_default();
        let up = Up { dir, servers, prefix, extra: Vec::new() };
        assert!(ok, "corral up failed:\n{out}\n{err}");
        (up, out)
    }

    fn node(&self, i: usize) -> String {
        format!("{}-{i}", self.prefix)
    }

    /// The state dir, as `corral up` recorded it (canonical).
    fn state(&self) -> PathBuf {
        std::fs::canonicalize(self.dir.path().join("state")).unwrap_or_else(|_| self.dir.path().join("state"))
    }

    fn file(&self) -> ClusterFile {
        ClusterFile::load(&self.state()).expect("cluster.json")
    }

    /// `corral --server <this cluster> ARGS`: success, stdout, stderr.
    fn corral(&self, args: &[&str]) -> (bool, String, String) {
        let mut cmd = Command::new(corral_exe());
        cmd.arg("--server").arg(&self.servers).args(args).current_dir(examples());
        run_corral(cmd, None)
    }

    /// `corral ARGS`, which must succeed; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.corral(args);
        assert!(ok, "corral {} failed:\n{out}{err}", args.join(" "));
        out
    }

    /// Runs `corral ARGS` until `done(stdout)`, for up to `secs`.
    fn eventually(&self, secs: u64, args: &[&str], done: impl Fn(&str) -> bool) -> String {
        eventually(&format!("corral {}", args.join(" ")), secs, || {
            let (ok, out, _) = self.corral(args);
            (ok && done(&out)).then_some(out)
        })
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        for child in &mut self.extra {
            let _ = child.kill();
            let _ = child.wait();
        }
        if ClusterFile::path(&self.state()).exists() {
            let _ = Command::new(corral_exe())
                .args(["down", "--state-dir", "state"])
                .current_dir(self.dir.path())
                .output();
        }
        remove_labelled(&cluster_label(&self.state()));
    }
}

/// Polls `f` every 300 ms until it returns a value, for up to `secs`.
fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The distinct answers of 12 requests through `node`'s Service port, once
/// every one of them starts with `greeting` and `replicas` pods answered.
async fn answers(node: &str, greeting: &str, replicas: usize) -> Vec<String> {
    let addr: SocketAddr = format!("{node}:8080").parse().expect("a node address");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut seen = Vec::new();
        for _ in 0..12 {
            match http_get(addr, "/").await {
                Ok(body) if body.starts_with(greeting) => {
                    if !seen.contains(&body) {
                        seen.push(body);
                    }
                }
                _ => break,
            }
        }
        if seen.len() == replicas {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "{replicas} replicas answering {greeting:?} through {node}: not within 60 s, last {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// The rows of `corral get pods -o wide` (header dropped).
fn pod_rows(out: &str) -> Vec<Vec<String>> {
    out.lines().skip(1).map(|l| l.split_whitespace().map(str::to_string).collect()).collect()
}

fn running_on(out: &str, want: usize, node: &str) -> bool {
    let rows = pod_rows(out);
    rows.len() == want
        && rows.iter().all(|r| r[1] == "1/1" && r[2] == "Running" && r.contains(&node.to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walkthrough_on_a_corral_up_cluster() {
    let started = Instant::now();
    let (mut up, printed) = Up::start();

    // `corral up` says how to reach the app and what to try next.
    let file = up.file();
    assert_eq!((file.masters.len(), file.nodes.len()), (3, 2), "{printed}");
    for want in [
        "Corral is up: 3 masters, 2 nodes, and the demo app (3 replicas) is ready.",
        &format!("export CORRAL_SERVER={}", up.servers),
        &format!("curl http://{NODE_1}:8080/"),
        "corral get pods -o wide",
        "corral apply -f examples/demo-v2.yaml",
        "corral rollout status deployment/demo",
        "cluster.json",
    ] {
        assert!(printed.contains(want), "missing {want:?} in:\n{printed}");
    }
    let status: serde_json::Value =
        serde_json::from_str(&up.ok(&["cluster", "status", "-o", "json"])).unwrap();
    let leader = status["leader"].as_u64().expect("a leader");
    let leader_pid = file.masters.iter().find(|m| m.id == leader).unwrap().pid;
    assert!(printed.contains(&format!("kill -9 {leader_pid} ")), "the leader's pid in:\n{printed}");

    // The demo app answers through either node, from each of its replicas.
    let v1 = answers(NODE_1, "hello from demo-", 3).await;
    assert_eq!(answers(NODE_2, "hello from demo-", 3).await.len(), 3);

    // get, in every format.
    let wide = up.ok(&["get", "pods", "-o", "wide"]);
    assert!(wide.starts_with("NAME") && wide.lines().next().unwrap().contains("NODE"), "{wide}");
    let rows = pod_rows(&wide);
    assert_eq!(rows.len(), 3, "{wide}");
    for r in &rows {
        assert!(r[1] == "1/1" && r[2] == "Running", "{wide}");
        assert!(r.contains(&up.node(1)) || r.contains(&up.node(2)), "{wide}");
        assert!(v1.iter().any(|a| a.ends_with(&r[0])), "pod {} answered: {v1:?}", r[0]);
    }
    let names = up.ok(&["get", "pods", "-l", "app=demo", "-o", "name"]);
    assert_eq!(names.lines().filter(|l| l.starts_with("pod/demo-")).count(), 3, "{names}");
    let list: serde_json::Value = serde_json::from_str(&up.ok(&["get", "pods", "-o", "json"])).unwrap();
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"].as_array().unwrap().len(), 3);
    assert!(list["items"][0]["status"]["podIP"].is_string(), "{list}");
    let yaml = up.ok(&["get", "deployment", "demo", "-o", "yaml"]);
    assert!(yaml.starts_with("apiVersion: apps/v1\nkind: Deployment\n"), "{yaml}");
    assert_eq!(up.ok(&["get", "nodes", "-o", "name"]), format!("node/{}\nnode/{}\n", up.node(1), up.node(2)));
    let svc = up.ok(&["get", "svc", "demo"]);
    assert!(svc.contains("8080/TCP"), "{svc}");

    // describe and logs of one pod.
    let pod = rows[0][0].clone();
    let described = up.ok(&["describe", "pod", &pod]);
    for want in ["Name:", "Node:", "Ready", "Events:", "corral/busybox:1"] {
        assert!(described.contains(want), "missing {want:?} in:\n{described}");
    }
    let logs = up.ok(&["logs", &pod]);
    assert!(logs.contains(&format!("demo {pod} serving on :8080")), "{logs}");

    // Scale.
    assert_eq!(up.ok(&["scale", "deployment/demo", "--replicas", "5"]), "deployment.apps/demo scaled\n");
    up.eventually(60, &["get", "deployment", "demo"], |o| o.contains(" 5/5 "));
    assert_eq!(answers(NODE_2, "hello from demo-", 5).await.len(), 5);

    // A rolling update to version 2, followed to its end, then undone.
    assert_eq!(up.ok(&["apply", "-f", "demo-v2.yaml"]), "deployment.apps/demo configured\n");
    let (ok, out, err) = up.corral(&["--timeout", "120s", "rollout", "status", "deployment/demo"]);
    assert!(ok && out.contains("successfully rolled out"), "{out}{err}");
    answers(NODE_1, "hello v2 from demo-", 3).await;
    let history = up.ok(&["rollout", "history", "deployment/demo"]);
    assert!(history.contains("REVISION") && history.lines().count() >= 3, "{history}");
    let undone = up.ok(&["rollout", "undo", "deployment/demo"]);
    assert!(undone.contains("rolled back"), "{undone}");
    let (ok, out, err) = up.corral(&["--timeout", "120s", "rollout", "status", "deployment/demo"]);
    assert!(ok && out.contains("successfully rolled out"), "{out}{err}");
    answers(NODE_2, "hello from demo-", 3).await;

    // A backup, restored into a new single-master cluster that serves the same objects.
    let backup = up.dir.path().join("backup.corral");
    let saved = up.ok(&["cluster", "snapshot", "save", backup.to_str().unwrap()]);
    assert!(std::fs::metadata(&backup).unwrap().len() > 0, "{saved}");
    let restored_addr = format!("127.0.0.1:{}", free_base_port(1));
    let restored_dir = up.dir.path().join("restored");
    let (ok, out, err) = run_corral(
        {
            let mut c = Command::new(corral_exe());
            c.args(["cluster", "snapshot", "restore", backup.to_str().unwrap(), "--id", "1"]).args([
                "--listen",
                &restored_addr,
                "--data-dir",
                restored_dir.to_str().unwrap(),
            ]);
            c
        },
        None,
    );
    assert!(ok && format!("{out}{err}").contains("corral master --id 1"), "{out}{err}");
    let master_log = std::fs::File::create(up.dir.path().join("restored.log")).unwrap();
    up.extra.push(
        Command::new(corral_exe())
            .args(["master", "--id", "1", "--listen", &restored_addr, "--data-dir"])
            .arg(&restored_dir)
            .stdin(Stdio::null())
            .stdout(master_log.try_clone().unwrap())
            .stderr(master_log)
            .spawn()
            .unwrap(),
    );
    eventually("the restored master serving the demo deployment", 30, || {
        let mut c = Command::new(corral_exe());
        c.args(["--server", &restored_addr, "--timeout", "2s", "get", "deployment", "demo", "-o", "name"]);
        let (ok, out, _) = run_corral(c, None);
        (ok && out == "deployment.apps/demo\n").then_some(())
    });
    for mut child in up.extra.drain(..) {
        let _ = child.kill();
        let _ = child.wait();
    }

    // Drain node 2: its pods come back on node 1; it stays unschedulable until uncordoned.
    let node2 = up.node(2);
    let (ok, out, err) = up.corral(&["drain", &node2, "--drain-timeout", "90s"]);
    assert!(ok && out.contains(&format!("node/{node2} drained")), "{out}{err}");
    let node1 = up.node(1);
    up.eventually(60, &["get", "pods", "-o", "wide"], |o| running_on(o, 3, &node1));
    let nodes = up.ok(&["get", "nodes"]);
    assert!(nodes.contains("Ready,SchedulingDisabled"), "{nodes}");
    assert_eq!(up.ok(&["uncordon", &node2]), format!("node/{node2} uncordoned\n"));

    // Kill the leader (kill -9): a new one is elected; the app and the API keep serving.
    let status: serde_json::Value =
        serde_json::from_str(&up.ok(&["cluster", "status", "-o", "json"])).unwrap();
    let leader = status["leader"].as_u64().expect("a leader");
    let pid = up.file().masters.iter().find(|m| m.id == leader).unwrap().pid;
    let killed_at = Instant::now();
    assert!(Command::new("kill").args(["-9", &pid.to_string()]).status().unwrap().success());
    let new_leader = eventually("a new leader", 30, || {
        let (ok, out, _) = up.corral(&["--timeout", "2s", "cluster", "status", "-o", "json"]);
        let s: serde_json::Value = serde_json::from_str(&out).ok()?;
        s["leader"].as_u64().filter(|l| ok && *l != leader)
    });
    let elected_in = killed_at.elapsed();
    assert_ne!(new_leader, leader);
    answers(NODE_1, "hello from demo-", 3).await;
    assert_eq!(up.ok(&["scale", "deployment/demo", "--replicas", "4"]), "deployment.apps/demo scaled\n");

    // Kill node 1, which now runs every pod, and its containers with it: they come back on node 2.
    let agent = up.file().nodes.iter().find(|n| n.address == NODE_1).unwrap().pid;
    let node_killed_at = Instant::now();
    assert!(Command::new("kill").args(["-9", &agent.to_string()]).status().unwrap().success());
    remove_labelled(&format!("io.corral.node={node1}"));
    up.eventually(120, &["get", "pods", "-o", "wide"], |o| running_on(o, 4, &node2));
    let healed_in = node_killed_at.elapsed();
    let nodes = up.ok(&["get", "nodes"]);
    assert!(nodes.lines().any(|l| l.starts_with(&node1) && l.contains("NotReady")), "{nodes}");
    assert_eq!(answers(NODE_2, "hello from demo-", 4).await.len(), 4);

    // Delete, then down: nothing of the cluster is left.
    let (ok, out, err) = up.corral(&["delete", "-f", "demo.yaml", "--wait"]);
    assert!(
        ok && out.contains("deployment.apps/demo deleted") && out.contains("service/demo deleted"),
        "{out}{err}"
    );
    up.eventually(60, &["get", "pods"], |o| o.is_empty());
    let (ok, out, err) = run_corral(
        {
            let mut c = Command::new(corral_exe());
            c.args(["down", "--state-dir", "state"]).current_dir(up.dir.path());
            c
        },
        None,
    );
    assert!(ok && err.contains("stopped"), "{out}{err}");
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={}", cluster_label(&up.state()))])
        .output()
        .unwrap();
    assert!(
        left.stdout.is_empty(),
        "containers left after corral down: {}",
        String::from_utf8_lossy(&left.stdout)
    );
    eprintln!(
        "walk-through: new leader {:?} after kill -9; pods back on the other node {:?} after its agent died; whole run {:?}",
        elected_in,
        healed_in,
        started.elapsed()
    );
}
