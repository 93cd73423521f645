//! The one harness of the process-level tests: a cluster of real `corral
//! master` processes on loopback, a write load that records what was
//! acknowledged, and checks. Processes are killed and temp dirs removed on
//! drop, also when a test fails (then the masters' log tails are printed).

#![allow(dead_code)]

pub mod hosts;
pub mod nodes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use cli::local::{free_base_port, LocalCluster, LocalOptions};
use control_plane::CorralClient;
use raft_store::NodeId;

/// Runs the real `corral` binary as `cmd` says (with `stdin` piped in);
/// returns whether it succeeded, its stdout and its stderr.
pub fn run_corral(mut cmd: std::process::Command, stdin: Option<&str>) -> (bool, String, String) {
    use std::io::Write;
    use std::process::Stdio;
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("corral runs");
    let mut input = child.stdin.take().expect("piped stdin");
    input.write_all(stdin.unwrap_or_default().as_bytes()).expect("stdin written");
    drop(input);
    let out = child.wait_with_output().expect("corral ends");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into(),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// `corral --server <the test cluster> ARGS`.
pub fn corral(tc: &TestCluster, args: &[&str], stdin: Option<&str>) -> (bool, String, String) {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("--server").arg(tc.cluster.file.addresses().join(",")).args(args);
    run_corral(cmd, stdin)
}

pub struct TestCluster {
    pub cluster: LocalCluster,
    pub dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `masters` masters (room for two more ports) and waits for a leader.
    pub async fn start(masters: usize, flags: &[&str]) -> Self {
        let dir = tempfile::Builder::new().prefix("corral-test-").tempdir().expect("temp dir");
        let opts = LocalOptions {
            exe: PathBuf::from(env!("CARGO_BIN_EXE_corral")),
            state_dir: dir.path().to_path_buf(),
            masters,
            base_port: free_base_port(masters as u16 + 2),
            master_flags: flags.iter().map(|s| s.to_string()).collect(),
            master_hosts: Vec::new(),
        };
        let cluster = LocalCluster::start(opts).expect("masters start");
        let tc = TestCluster { cluster, dir };
        tc.cluster.wait_ready(Duration::from_secs(60), |_| {}).await.expect("cluster ready");
        tc
    }

    pub fn client(&self) -> CorralClient {
        self.cluster.client().with_timeout(Duration::from_secs(30))
    }

    /// Runs the `corral` binary against this cluster: whether it succeeded,
    /// its stdout, its stderr.
    pub fn corral(&self, args: &[&str]) -> (bool, String, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_corral"))
            .arg("--server")
            .arg(self.cluster.file.addresses().join(","))
            .args(args)
            .output()
            .expect("corral runs");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (out.status.success(), text(&out.stdout), text(&out.stderr))
    }

    /// Waits for a leader other than `not` (0 = any) and returns its id.
    pub async fn leader(&self, not: NodeId) -> NodeId {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(s) = self.client().with_timeout(Duration::from_secs(2)).status().await {
                if s.leader_id != 0 && s.leader_id != not {
                    return s.leader_id;
                }
            }
            assert!(Instant::now() < deadline, "no new leader within 30 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Asserts every acknowledged write reads back with its value (linearizable list).
    pub async fn assert_all_present(&self, acked: &BTreeMap<String, String>) {
        let (kvs, _) = self.client().list(b"w/", false).await.expect("list");
        let stored: BTreeMap<String, String> = kvs
            .into_iter()
            .map(|kv| (String::from_utf8(kv.key).unwrap(), String::from_utf8(kv.value).unwrap()))
            .collect();
        let missing: Vec<&String> = acked.keys().filter(|k| stored.get(*k) != acked.get(*k)).collect();
        assert!(
            missing.is_empty(),
            "{} of {} acknowledged writes lost, e.g. {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for m in &self.cluster.file.masters {
                let log = std::fs::read_to_string(&m.log).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(25).collect();
                eprintln!("--- master {} log tail ---", m.id);
                for line in tail.iter().rev() {
                    eprintln!("{line}");
                }
            }
        }
        self.cluster.stop_all();
    }
}

/// Background writers of distinct keys `w/<task>/<n>`; remembers what was acknowledged.
pub struct Writers {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<Vec<(String, String, Instant)>>>,
}

impl Writers {
    pub fn start(client: &CorralClient, tasks: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let tasks = (0..tasks)
            .map(|t| {
                let client = client.clone().with_timeout(Duration::from_secs(3));
                let stop = stop.clone();
                tokio::spawn(async move {
                    let mut acked = Vec::new();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        let (key, value) = (format!("w/{t}/{n}"), format!("v{n}"));
                        if client.put(key.as_bytes(), value.as_bytes(), None).await.is_ok() {
                            acked.push((key, value, Instant::now()));
                        }
                        n += 1;
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    acked
                })
            })
            .collect();
        Writers { stop, tasks }
    }

    /// Stops the writers; returns every acknowledged write with when it was acknowledged.
    pub async fn stop(self) -> Vec<(String, String, Instant)> {
        self.stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for t in self.tasks {
            all.extend(t.await.expect("writer task"));
        }
        all
    }
}

pub fn as_map(acked: &[(String, String, Instant)]) -> BTreeMap<String, String> {
    acked.iter().map(|(k, v, _)| (k.clone(), v.clone())).collect()
}

/// One HTTP/1.0 GET; the body, or why it failed.
pub async fn http_get(addr: SocketAddr, path: &str) -> Result<String, String> {
    let fut = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connect {addr}: {e}"))?;
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: test\r\n\r\n").as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| format!("read from {addr}: {e}"))?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (head, body) =
            text.split_once("\r\n\r\n").ok_or_else(|| format!("no HTTP answer from {addr}: {text:?}"))?;
        if !head.starts_with("HTTP/1.0 200") && !head.starts_with("HTTP/1.1 200") {
            return Err(format!("{addr}{path}: {}", head.lines().next().unwrap_or_default()));
        }
        Ok(body.trim().to_string())
    };
    tokio::time::timeout(Duration::from_secs(3), fut).await.map_err(|_| format!("{addr}{path}: timed out"))?
}
