//! The Docker runtime against the real local engine: pods as a sandbox plus
//! app containers, their network, volumes, exec, logs, stats, events, and
//! an engine outage (simulated with a socket proxy, so that other users of
//! the engine are left alone).
//!
//! Each test runs as its own node (`rt-test-<uuid8>`), labels everything
//! with it, and removes all of it when it ends, also on panic. Contacts only
//! 127.0.0.1 and pod IPs on the Corral network.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use node::runtime::docker::{
    ensure_busybox_images, DockerRuntime, BUSYBOX_IMAGE, DEFAULT_NETWORK, NO_NEW_PRIVILEGES, PAUSE_IMAGE,
};
use node::runtime::{
    labels, ContainerConfig, ContainerInfo, ContainerState, LogOptions, Mount, MountSource, PodRef,
    PortMapping, PortProtocol, Runtime, RuntimeError, Sandbox, SandboxConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::OnceCell;

/// Every test ends within this, however loaded the machine.
const TEST_BUDGET: Duration = Duration::from_secs(180);

/// Runs a test body within [`TEST_BUDGET`].
async fn bounded<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TEST_BUDGET, body).await.expect("the test ran past its time budget")
}

/// Removes every container and volume labelled with the test's node, and
/// any network it names, when dropped: also when the test panics.
struct Cleanup {
    node: String,
    networks: Vec<String>,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let filter = format!("label={}={}", labels::NODE, self.node);
        let ids = |args: &[&str]| -> Vec<String> {
            Command::new("docker")
                .args(args)
                .output()
                .map(|o| String::from_utf8_lossy(&o.stdout).split_whitespace().map(String::from).collect())
                .unwrap_or_default()
        };
        let containers = ids(&["ps", "-aq", "--filter", &filter]);
        if !containers.is_empty() {
            let _ = Command::new("docker").args(["rm", "-f", "-v"]).args(&containers).output();
        }
        let volumes = ids(&["volume", "ls", "-q", "--filter", &filter]);
        if !volumes.is_empty() {
            let _ = Command::new("docker").args(["volume", "rm", "-f"]).args(&volumes).output();
        }
        for network in &self.networks {
            // By id: should a test fail with duplicates, the name is ambiguous.
            let exact = format!("name=^{network}$");
            let ids = ids(&["network", "ls", "-q", "--filter", &exact]);
            if !ids.is_empty() {
                let _ = Command::new("docker").args(["network", "rm"]).args(&ids).output();
            }
        }
    }
}

/// One test's node on the shared engine.
struct Harness {
    rt: DockerRuntime,
    node: String,
    _cleanup: Cleanup,
}

static IMAGES: OnceCell<()> = OnceCell::const_new();

impl Harness {
    async fn start() -> Harness {
        let node = format!("rt-test-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let cleanup = Cleanup { node: node.clone(), networks: Vec::new() };
        let rt = DockerRuntime::connect(DEFAULT_NETWORK).await.expect("the local Docker engine answers");
        IMAGES
            .get_or_try_init(|| async { ensure_busybox_images(rt.docker()).await })
            .await
            .expect("busybox images build");
        Harness { rt, node, _cleanup: cleanup }
    }

    fn pod(&self, name: &str) -> PodRef {
        PodRef { uid: uuid::Uuid::new_v4().to_string(), namespace: "default".into(), name: name.into() }
    }

    fn test_labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([(labels::TEST.to_string(), self.node.clone())])
    }

    fn sandbox_config(&self, pod: &PodRef) -> SandboxConfig {
        SandboxConfig {
            pod: pod.clone(),
            node: self.node.clone(),
            hostname: pod.name.clone(),
            ports: vec![],
            dns_servers: vec![],
            dns_search: vec![],
            dns_options: vec![],
            empty_dirs: vec![],
            extra_labels: self.test_labels(),
        }
    }

    fn app(&self, pod: &PodRef, name: &str, script: &str) -> ContainerConfig {
        ContainerConfig {
            pod: pod.clone(),
            node: self.node.clone(),
            name: name.into(),
            image: BUSYBOX_IMAGE.into(),
            command: vec!["sh".into(), "-c".into(), script.into()],
            args: vec![],
            env: vec![],
            mounts: vec![],
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            attempt: 0,
            spec_hash: "hash-1".into(),
            extra_labels: self.test_labels(),
        }
    }

    /// A sandbox and one app container running `script`.
    async fn pod_running(&self, name: &str, script: &str) -> (PodRef, Sandbox, String) {
        let pod = self.pod(name);
        let sandbox = self.rt.create_sandbox(&self.sandbox_config(&pod)).await.expect("sandbox starts");
        let id =
            self.rt.start_container(&sandbox.id, &self.app(&pod, "main", script)).await.expect("app starts");
        (pod, sandbox, id)
    }

    async fn info(&self, id: &str) -> Option<ContainerInfo> {
        self.rt.list(&self.node).await.expect("list").into_iter().find(|c| c.id == id)
    }

    /// Polls `check` until it returns Some, for up to `within`.
    async fn wait_for<T, F: Future<Output = Option<T>>>(
        &self,
        what: &str,
        within: Duration,
        mut check: impl FnMut() -> F,
    ) -> T {
        let deadline = Instant::now() + within;
        loop {
            if let Some(found) = check().await {
                return found;
            }
            assert!(Instant::now() < deadline, "timed out after {within:?} waiting for {what}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// Drains `rt.changes(node)` from now on into a channel, so that the
/// subscription is live before the test acts (streams are lazy).
async fn watch_changes(rt: &DockerRuntime, node: &str) -> tokio::sync::mpsc::UnboundedReceiver<()> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let mut changes = rt.changes(node);
    tokio::spawn(async move {
        while changes.next().await.is_some() {
            if tx.send(()).is_err() {
                return;
            }
        }
    });
    // Time for the subscription to reach the engine.
    tokio::time::sleep(Duration::from_millis(500)).await;
    rx
}

/// A container's whole log (or its last `tail` lines) as text.
async fn read_log(rt: &DockerRuntime, id: &str, tail: Option<u64>) -> String {
    let chunks: Vec<_> = rt.logs(id, LogOptions { follow: false, tail }).collect().await;
    let bytes: Vec<u8> = chunks.into_iter().flat_map(|c| c.expect("log chunk")).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn unavailable<T>(result: &Result<T, RuntimeError>) -> bool {
    matches!(result, Err(RuntimeError::Unavailable(_)))
}

fn argv(parts: &[&str]) -> Vec<String> {
    parts.iter().map(|s| s.to_string()).collect()
}

/// A plain HTTP/1.0 GET; the whole answer, headers included.
async fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(addr).await.ok()?;
        stream.write_all(format!("GET {path} HTTP/1.0\r\nHost: pod\r\n\r\n").as_bytes()).await.ok()?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.ok()?;
        Some(answer)
    };
    tokio::time::timeout(Duration::from_secs(3), exchange).await.ok().flatten()
}

/// The host port Docker chose for `container_port`/tcp of a sandbox.
async fn published_port(rt: &DockerRuntime, sandbox: &str, container_port: u16) -> u16 {
    let inspect = rt.docker().inspect_container(sandbox, None).await.expect("inspect sandbox");
    let ports = inspect.network_settings.and_then(|n| n.ports).expect("ports");
    let bindings = ports[&format!("{container_port}/tcp")].clone().expect("a binding");
    bindings[0].host_port.as_deref().expect("host port").parse().expect("a port number")
}

#[tokio::test]
async fn a_pod_serves_a_file_written_by_its_other_container_over_the_pod_ip_and_a_published_port() {
    bounded(async {
        let h = Harness::start().await;
        let pod = h.pod("web");
        let mut sandbox_config = h.sandbox_config(&pod);
        sandbox_config.empty_dirs = vec!["www".into()];
        sandbox_config.ports = vec![PortMapping {
            container_port: 8080,
            protocol: PortProtocol::Tcp,
            host_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
            host_port: 0,
        }];
        sandbox_config.dns_servers = vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))];
        sandbox_config.dns_search = vec!["default.svc.cluster.local".into()];
        let www = |read_only| {
            vec![Mount { source: MountSource::EmptyDir("www".into()), target: "/www".into(), read_only }]
        };

        let started = Instant::now();
        let sandbox = h.rt.create_sandbox(&sandbox_config).await.expect("sandbox starts");
        let sandbox_took = started.elapsed();
        let mut server = h.app(&pod, "server", "exec httpd -f -p 8080 -h /www");
        server.mounts = www(true);
        server.cpu_limit_millis = Some(500);
        server.memory_limit_bytes = Some(64 << 20);
        let server_started = Instant::now();
        let server_id = h.rt.start_container(&sandbox.id, &server).await.expect("server starts");
        let server_took = server_started.elapsed();
        let mut writer = h.app(&pod, "writer", "echo hello-from-writer > /www/index.html; exec sleep 3600");
        writer.mounts = www(false);
        writer.env = vec![("GREETING".into(), "hi".into())];
        let writer_id = h.rt.start_container(&sandbox.id, &writer).await.expect("writer starts");
        eprintln!(
            "measured: sandbox {sandbox_took:?}, app container {server_took:?}, pod of 2 containers {:?}",
            started.elapsed()
        );

        let pod_ip = sandbox.ip.expect("the sandbox has a pod IP on the Corral network");
        let host_port = published_port(&h.rt, &sandbox.id, 8080).await;
        for addr in [SocketAddr::new(pod_ip, 8080), SocketAddr::new(Ipv4Addr::LOCALHOST.into(), host_port)] {
            let answer = h
                // The server may answer 404 before the writer has written the file.
                .wait_for(&format!("the file at http://{addr}/"), Duration::from_secs(30), || async move {
                    http_get(addr, "/index.html").await.filter(|a| a.contains("hello-from-writer"))
                })
                .await;
            assert!(answer.contains("hello-from-writer"), "{addr} answered {answer:?}");
        }

        let listing = Instant::now();
        let listed = h.rt.list(&h.node).await.expect("list");
        eprintln!("measured: list of 3 containers {:?}", listing.elapsed());
        assert_eq!(listed.len(), 3, "{listed:#?}");
        let sb = listed.iter().find(|c| c.is_sandbox()).expect("the sandbox is listed");
        assert_eq!(
            (sb.id.as_str(), sb.ip, sb.image.as_str()),
            (sandbox.id.as_str(), Some(pod_ip), PAUSE_IMAGE)
        );
        for (id, name) in [(&server_id, "server"), (&writer_id, "writer")] {
            let c = listed.iter().find(|c| &c.id == id).expect("the app container is listed");
            assert_eq!(c.container.as_deref(), Some(name));
            assert_eq!((c.pod.clone(), c.node.as_str(), c.attempt), (pod.clone(), h.node.as_str(), 0));
            assert_eq!((c.spec_hash.as_str(), c.image.as_str(), c.ip), ("hash-1", BUSYBOX_IMAGE, None));
            assert!(c.is_running(), "{c:?}");
        }

        // What Docker holds: labels, limits, DNS, the name.
        let inspect = h.rt.docker().inspect_container(&server_id, None).await.unwrap();
        let l = inspect.config.as_ref().unwrap().labels.clone().unwrap();
        for (k, v) in [
            (labels::OWNED, "true"),
            (labels::NODE, h.node.as_str()),
            (labels::POD_UID, pod.uid.as_str()),
            (labels::POD_NAMESPACE, "default"),
            (labels::POD_NAME, "web"),
            (labels::ROLE, "app"),
            (labels::CONTAINER, "server"),
            (labels::ATTEMPT, "0"),
            (labels::SPEC_HASH, "hash-1"),
            (labels::TEST, h.node.as_str()),
        ] {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "label {k}");
        }
        let host = inspect.host_config.unwrap();
        assert_eq!((host.nano_cpus, host.memory), (Some(500_000_000), Some(64 << 20)));
        assert_eq!(
            inspect.name.as_deref(),
            Some(format!("/corral_{}_default_web_server_0", h.node).as_str())
        );
        // On a user-defined network the pod's resolv.conf names Docker's
        // embedded resolver, which forwards to the configured servers.
        let sandbox_host =
            h.rt.docker().inspect_container(&sandbox.id, None).await.unwrap().host_config.unwrap();
        assert_eq!(sandbox_host.dns, Some(vec!["10.96.0.10".to_string()]));
        let resolv =
            h.rt.exec(&writer_id, &argv(&["cat", "/etc/resolv.conf"]), Duration::from_secs(20)).await;
        let resolv = resolv.expect("exec").output;
        assert!(resolv.contains("search default.svc.cluster.local"), "{resolv}");
        let env =
            h.rt.exec(&writer_id, &argv(&["sh", "-c", "echo $GREETING"]), Duration::from_secs(20)).await;
        assert_eq!(env.expect("exec").output.trim(), "hi");
        let hostname = h.rt.exec(&server_id, &argv(&["hostname"]), Duration::from_secs(20)).await;
        assert_eq!(hostname.expect("exec").output.trim(), "web", "app containers share the sandbox's UTS");
    })
    .await
}

#[tokio::test]
async fn sandbox_and_app_run_without_new_privileges_and_under_the_pids_limit() {
    bounded(async {
        let mut h = Harness::start().await;
        h.rt = h.rt.clone().with_pids_limit(64);
        let (_pod, sandbox, id) = h.pod_running("hardened", "sleep 300").await;
        for (what, container) in [("sandbox", &sandbox.id), ("app", &id)] {
            let inspect = h.rt.docker().inspect_container(container, None).await.expect("inspect");
            let host = inspect.host_config.expect("host config");
            assert_eq!(host.security_opt, Some(vec![NO_NEW_PRIVILEGES.to_string()]), "{what}");
            assert_eq!(host.pids_limit, Some(64), "{what}");
            assert_eq!(host.privileged, Some(false), "{what}");
            assert!(host.cap_add.unwrap_or_default().is_empty(), "{what}: no capability added");
            assert_ne!(host.pid_mode.as_deref(), Some("host"), "{what}");
            assert_ne!(host.ipc_mode.as_deref(), Some("host"), "{what}");
        }
        // What the kernel enforces inside the app container.
        let long = Duration::from_secs(20);
        let status = h.rt.exec(&id, &argv(&["cat", "/proc/self/status"]), long).await.unwrap().output;
        let no_new_privs = status.lines().find(|l| l.starts_with("NoNewPrivs:")).map(str::split_whitespace);
        assert_eq!(no_new_privs.and_then(|mut w| w.nth(1)), Some("1"), "{status}");
        let cgroup = "cat /sys/fs/cgroup/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids/pids.max";
        let max = h.rt.exec(&id, &argv(&["sh", "-c", cgroup]), long).await.unwrap();
        assert_eq!(max.output.trim(), "64", "the container's cgroup holds the limit");
        // Past the limit, fork fails inside the container (and nowhere else).
        let forks = "for i in $(seq 1 80); do sleep 30 & done; kill $(jobs -p) 2>/dev/null; kill 0";
        let out = h.rt.exec(&id, &argv(&["sh", "-c", forks]), long).await.unwrap();
        assert!(
            out.output.contains("can't fork") || out.output.contains("Resource temporarily unavailable"),
            "80 processes fit under a limit of 64: {}",
            out.output
        );
    })
    .await
}

#[tokio::test]
async fn exec_returns_output_and_exit_codes_and_stops_at_its_timeout() {
    bounded(async {
        let h = Harness::start().await;
        let (_, _, id) = h.pod_running("exec", "exec sleep 3600").await;
        let long = Duration::from_secs(20);

        let out = h.rt.exec(&id, &argv(&["sh", "-c", "echo out; echo err >&2; exit 7"]), long).await.unwrap();
        assert_eq!(out.exit_code, 7);
        assert!(out.output.contains("out") && out.output.contains("err"), "{out:?}");

        let big = h.rt.exec(&id, &argv(&["sh", "-c", "seq 1 20000"]), long).await.unwrap();
        assert_eq!(big.exit_code, 0);
        assert_eq!(big.output.len(), node::runtime::docker::MAX_EXEC_OUTPUT, "output is capped");

        let started = Instant::now();
        let err = h.rt.exec(&id, &argv(&["sleep", "300"]), Duration::from_secs(1)).await.unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
        assert!(err.to_string().contains("timed out after 1s"), "{err}");
        // The timed-out command was killed, not left behind.
        let ps = h.rt.exec(&id, &argv(&["ps"]), long).await.unwrap().output;
        assert!(!ps.contains("sleep 300"), "{ps}");

        let missing = h.rt.exec("corral-no-such-container", &argv(&["true"]), long).await.unwrap_err();
        assert_eq!(missing, RuntimeError::NotFound("corral-no-such-container".into()));
    })
    .await
}

#[tokio::test]
async fn logs_keep_the_tail_and_stats_see_memory_and_cpu() {
    bounded(async {
        let h = Harness::start().await;
        // Docker orders stdout and stderr lines only roughly: a second apart.
        let script = "echo oops >&2; sleep 1; for i in 1 2 3 4 5; do echo line-$i; done; \
                      x=0; while [ $x -lt 20000 ]; do x=$((x+1)); done; exec sleep 3600";
        let (_, _, id) = h.pod_running("logs", script).await;
        let all = h
            .wait_for("the whole log", Duration::from_secs(30), || async {
                Some(read_log(&h.rt, &id, None).await).filter(|log| log.contains("line-5"))
            })
            .await;
        assert_eq!(all, "oops\nline-1\nline-2\nline-3\nline-4\nline-5\n", "stderr and stdout both");
        assert_eq!(read_log(&h.rt, &id, Some(2)).await, "line-4\nline-5\n");

        let usage = h.rt.stats(&id).await.expect("stats");
        assert!(usage.memory_bytes > 0, "{usage:?}");
        assert!(usage.cpu_nanos > 0, "{usage:?}");
        assert_eq!(
            h.rt.stats("corral-no-such-container").await.unwrap_err(),
            RuntimeError::NotFound("corral-no-such-container".into())
        );

        // A followed log ends when the container does.
        let (_, _, short) = h.pod_running("follow", "echo first; sleep 2; echo second").await;
        let followed: Vec<_> = tokio::time::timeout(
            Duration::from_secs(60),
            h.rt.logs(&short, LogOptions { follow: true, tail: None }).collect::<Vec<_>>(),
        )
        .await
        .expect("the followed log ends with the container");
        let bytes: Vec<u8> = followed.into_iter().flat_map(|c| c.expect("log chunk")).collect();
        assert_eq!(String::from_utf8_lossy(&bytes), "first\nsecond\n");
    })
    .await
}

#[tokio::test]
async fn a_container_exiting_with_3_nudges_changes_and_is_listed_exited_3() {
    bounded(async {
        let h = Harness::start().await;
        let pod = h.pod("exits");
        let sandbox = h.rt.create_sandbox(&h.sandbox_config(&pod)).await.unwrap();
        let mut changes = watch_changes(&h.rt, &h.node).await;
        let id = h.rt.start_container(&sandbox.id, &h.app(&pod, "main", "sleep 1; exit 3")).await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        let info = loop {
            assert!(Instant::now() < deadline, "no nudge for the exit within 60s");
            if tokio::time::timeout(Duration::from_secs(5), changes.recv()).await.is_err() {
                continue;
            }
            if let Some(exited) = h.info(&id).await.filter(|c| !c.is_running()) {
                break exited;
            }
        };
        let ContainerState::Exited { exit_code, started_at, finished_at, oom_killed } = info.state else {
            panic!("not exited: {info:?}")
        };
        assert_eq!((exit_code, oom_killed), (3, false));
        let ran = finished_at.unwrap().duration_since(started_at.unwrap()).unwrap();
        assert!(ran >= Duration::from_millis(900), "ran {ran:?}");

        // Another node's containers do not nudge this node's watchers.
        let other = Harness::start().await;
        let mut quiet = watch_changes(&h.rt, &h.node).await;
        let other_pod = other.pod("other");
        other.rt.create_sandbox(&other.sandbox_config(&other_pod)).await.unwrap();
        assert!(tokio::time::timeout(Duration::from_secs(2), quiet.recv()).await.is_err());
    })
    .await
}

#[tokio::test]
async fn stop_gives_a_term_trapping_container_its_grace_and_kills_one_that_ignores_term() {
    bounded(async {
        let h = Harness::start().await;
        let graceful = "trap 'echo got TERM; exit 42' TERM; echo ready; while :; do sleep 1 & wait; done";
        let (pod, sandbox, id) = h.pod_running("graceful", graceful).await;
        h.wait_for("the trap to be set", Duration::from_secs(30), || async {
            read_log(&h.rt, &id, None).await.contains("ready").then_some(())
        })
        .await;
        let started = Instant::now();
        h.rt.stop_container(&id, Duration::from_secs(30)).await.expect("stop");
        assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
        let info = h.info(&id).await.expect("still listed after stop");
        assert!(matches!(info.state, ContainerState::Exited { exit_code: 42, .. }), "{info:?}");
        assert!(read_log(&h.rt, &id, None).await.contains("got TERM"));

        let mut stubborn = h.app(&pod, "stubborn", "trap '' TERM; while :; do sleep 1; done");
        stubborn.attempt = 1;
        let stubborn_id = h.rt.start_container(&sandbox.id, &stubborn).await.unwrap();
        let started = Instant::now();
        h.rt.stop_container(&stubborn_id, Duration::from_secs(2)).await.expect("stop");
        let took = started.elapsed();
        assert!(took >= Duration::from_secs(2), "the grace period was not given: {took:?}");
        let info = h.info(&stubborn_id).await.unwrap();
        assert!(matches!(info.state, ContainerState::Exited { exit_code: 137, .. }), "{info:?}");

        // Stopping what is stopped or gone is fine.
        h.rt.stop_container(&id, Duration::ZERO).await.expect("stop again");
        h.rt.stop_container("corral-no-such-container", Duration::ZERO).await.expect("stop missing");
        // The sandbox's pause process exits at once on TERM.
        let started = Instant::now();
        h.rt.stop_container(&sandbox.id, Duration::from_secs(30)).await.expect("stop sandbox");
        assert!(started.elapsed() < Duration::from_secs(15), "took {:?}", started.elapsed());
    })
    .await
}

#[tokio::test]
async fn a_missing_image_is_image_not_present_and_nothing_is_pulled() {
    bounded(async {
        let h = Harness::start().await;
        let pod = h.pod("noimage");
        let sandbox = h.rt.create_sandbox(&h.sandbox_config(&pod)).await.unwrap();
        let mut config = h.app(&pod, "main", "true");
        config.image = "corral/does-not-exist:1".into();
        let err = h.rt.start_container(&sandbox.id, &config).await.unwrap_err();
        assert_eq!(err, RuntimeError::ImageNotPresent { image: config.image.clone(), node: h.node.clone() });
        assert!(!h.rt.image_present(&config.image).await.unwrap());
        assert!(h.rt.image_present(BUSYBOX_IMAGE).await.unwrap());
        assert_eq!(h.rt.list(&h.node).await.unwrap().len(), 1, "only the sandbox exists");

        let missing = h.rt.start_container("corral-no-such-sandbox", &h.app(&pod, "main", "true")).await;
        assert_eq!(missing.unwrap_err(), RuntimeError::NotFound("corral-no-such-sandbox".into()));
    })
    .await
}

#[tokio::test]
async fn names_are_reused_for_a_retried_start_and_freed_from_stopped_leftovers() {
    bounded(async {
        let h = Harness::start().await;
        let (pod, sandbox, first) = h.pod_running("names", "exec sleep 3600").await;
        let same = h.app(&pod, "main", "exec sleep 3600");
        assert_eq!(h.rt.start_container(&sandbox.id, &same).await.unwrap(), first, "a retried start");
        let mut other_pod = same.clone();
        other_pod.pod.uid = uuid::Uuid::new_v4().to_string();
        let err = h.rt.start_container(&sandbox.id, &other_pod).await.unwrap_err();
        assert!(err.to_string().contains("stop it first"), "{err}");

        h.rt.stop_container(&first, Duration::ZERO).await.unwrap();
        let second =
            h.rt.start_container(&sandbox.id, &other_pod).await.expect("the stopped leftover is replaced");
        assert_ne!(second, first);
        assert!(h.info(&first).await.is_none(), "the leftover was removed");

        // A sandbox created again for a running pod is the same sandbox.
        let again = h.rt.create_sandbox(&h.sandbox_config(&pod)).await.unwrap();
        assert_eq!(again, sandbox);
    })
    .await
}

#[tokio::test]
async fn removal_is_idempotent_and_takes_the_pods_volumes() {
    bounded(async {
        let h = Harness::start().await;
        let pod = h.pod("vol");
        let mut config = h.sandbox_config(&pod);
        config.empty_dirs = vec!["data".into()];
        let sandbox = h.rt.create_sandbox(&config).await.unwrap();
        let mut app = h.app(&pod, "main", "echo x > /data/x; exec sleep 3600");
        app.mounts = vec![Mount {
            source: MountSource::EmptyDir("data".into()),
            target: "/data".into(),
            read_only: false,
        }];
        let id = h.rt.start_container(&sandbox.id, &app).await.unwrap();
        let volume = node::runtime::docker::volume_name(&pod.uid, "data");
        let labels_of = h.rt.docker().inspect_volume(&volume).await.expect("the volume exists").labels;
        assert_eq!(labels_of.get(labels::POD_UID), Some(&pod.uid));
        assert_eq!(labels_of.get(labels::NODE), Some(&h.node));

        let in_use = h.rt.remove_pod_volumes(&pod.uid).await.unwrap_err();
        assert!(in_use.to_string().contains("still in use"), "{in_use}");
        for c in [&id, &sandbox.id, &id] {
            h.rt.remove_container(c).await.expect("remove (again)");
        }
        h.rt.remove_pod_volumes(&pod.uid).await.expect("volumes go");
        h.rt.remove_pod_volumes(&pod.uid).await.expect("and again");
        assert!(h.rt.docker().inspect_volume(&volume).await.is_err());
        assert!(h.rt.list(&h.node).await.unwrap().is_empty());
    })
    .await
}

#[tokio::test]
async fn agents_connecting_together_create_one_network_and_recreate_it_if_deleted() {
    bounded(async {
        let mut h = Harness::start().await;
        let network = format!("corral-test-{}", &h.node["rt-test-".len()..]);
        h._cleanup.networks.push(network.clone());
        let connects = (0..4).map(|_| DockerRuntime::connect(&network));
        let agents: Vec<DockerRuntime> = futures::future::join_all(connects)
            .await
            .into_iter()
            .map(|rt| rt.expect("every agent connects"))
            .collect();
        let named = |all: Vec<bollard::models::Network>| -> Vec<bollard::models::Network> {
            all.into_iter().filter(|n| n.name.as_deref() == Some(network.as_str())).collect()
        };
        let same_name = named(h.rt.docker().list_networks(None).await.unwrap());
        assert_eq!(same_name.len(), 1, "{same_name:#?}");
        let owned = same_name[0].labels.as_ref().and_then(|l| l.get(labels::OWNED)).map(String::as_str);
        assert_eq!(owned, Some("true"));

        h.rt.docker().remove_network(&network).await.expect("remove the network");
        let pod = h.pod("renet");
        let sandbox =
            agents[0].create_sandbox(&h.sandbox_config(&pod)).await.expect("the network comes back");
        assert!(sandbox.ip.is_some());
        assert_eq!(named(h.rt.docker().list_networks(None).await.unwrap()).len(), 1);
    })
    .await
}

/// Stands in for the engine's socket: forwards to the real one, and can go
/// down (connections cut, new ones refused) and come back at the same path.
struct EngineProxy {
    path: PathBuf,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl EngineProxy {
    fn start(path: &Path) -> EngineProxy {
        let mut proxy = EngineProxy { path: path.to_path_buf(), serving: None };
        proxy.up();
        proxy
    }

    fn up(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        let listener = tokio::net::UnixListener::bind(&self.path).expect("bind the proxy socket");
        self.serving = Some(tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut client, _)) = listener.accept().await {
                connections.spawn(async move {
                    if let Ok(mut engine) = tokio::net::UnixStream::connect("/var/run/docker.sock").await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut engine).await;
                    }
                });
            }
        }));
    }

    /// Like a stopped daemon: open connections break, the socket file stays
    /// and refuses connections.
    async fn down(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
            let _ = serving.await;
        }
    }
}

impl Drop for EngineProxy {
    fn drop(&mut self) {
        if let Some(serving) = self.serving.take() {
            serving.abort();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

#[tokio::test]
async fn an_engine_outage_makes_calls_unavailable_and_everything_works_again_after() {
    bounded(async {
        let h = Harness::start().await;
        let socket = std::env::temp_dir().join(format!("corral-{}.sock", h.node));
        let mut proxy = EngineProxy::start(&socket);
        let rt =
            DockerRuntime::connect_at(&socket, DEFAULT_NETWORK).await.expect("connect through the proxy");
        let (pod, sandbox, _) = h.pod_running("outage", "exec sleep 3600").await;
        assert_eq!(rt.list(&h.node).await.unwrap().len(), 2);
        let mut changes = watch_changes(&rt, &h.node).await;

        proxy.down().await;
        let listed = rt.list(&h.node).await;
        assert!(unavailable(&listed), "{listed:?}");
        let second = h.app(&pod, "second", "exec sleep 3600");
        let started = rt.start_container(&sandbox.id, &second).await;
        assert!(unavailable(&started), "{started:?}");
        assert!(unavailable(&rt.exec(&sandbox.id, &argv(&["true"]), Duration::from_secs(5)).await));
        assert!(unavailable(&rt.stop_container(&sandbox.id, Duration::ZERO).await));
        assert!(unavailable(&rt.image_present(BUSYBOX_IMAGE).await));
        assert!(unavailable(&DockerRuntime::connect_at(&socket, DEFAULT_NETWORK).await));

        proxy.up();
        let back = Instant::now();
        // The first call after the outage already works.
        assert_eq!(rt.list(&h.node).await.expect("list after the outage").len(), 2);
        tokio::time::timeout(Duration::from_secs(30), changes.recv())
            .await
            .expect("changes() nudges once it is subscribed again")
            .expect("the stream goes on");
        eprintln!("measured: changes() nudged {:?} after the engine came back", back.elapsed());
        let id = rt.start_container(&sandbox.id, &second).await.expect("start after the outage");
        tokio::time::timeout(Duration::from_secs(30), changes.recv())
            .await
            .expect("events flow again after the outage")
            .expect("the stream goes on");
        assert!(h.info(&id).await.is_some_and(|c| c.is_running()));
    })
    .await
}
