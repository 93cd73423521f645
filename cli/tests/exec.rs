//! `corral exec` on the real Docker engine: 3 real masters, one real
//! `corral node` agent, the real `corral` binary. Output streams (untruncated,
//! stdout and stderr apart), the exit code is the command's, and each
//! refusal says what to do.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::nodes::{apply, cluster_with_nodes};
use common::TestCluster;
use control_plane::api::pod::PodPhase;
use control_plane::api::Object;
use control_plane::CorralClient;

const PODS: &str = "
apiVersion: v1
kind: Pod
metadata: {name: two}
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - {name: app, image: corral/busybox:1, command: [sleep, '3600']}
  - {name: done, image: corral/busybox:1, command: [sh, -c, 'echo bye']}
---
apiVersion: v1
kind: Pod
metadata: {name: nowhere}
spec:
  nodeSelector: {disk: none-has-this}
  containers:
  - {name: app, image: corral/busybox:1, command: [sleep, '3600']}
";

/// Waits until pod `two` runs with `app` running and `done` exited.
async fn wait_two(client: &CorralClient, nodes: &common::nodes::Nodes) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Object::Pod(p)) = client.get_object("pods", "default", "two").await {
            let status = p.status.clone().unwrap_or_default();
            let state = |name: &str| {
                status.container_statuses.iter().find(|c| c.name == name).and_then(|c| c.state.clone())
            };
            let app_running = state("app").is_some_and(|s| s.running.is_some());
            let done_exited = state("done").is_some_and(|s| s.terminated.is_some());
            if status.phase == Some(PodPhase::Running) && app_running && done_exited {
                return;
            }
        }
        assert!(Instant::now() < deadline, "pod two not running within 60 s\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// `corral exec ARGS` against the cluster.
fn exec_command(tc: &TestCluster, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.arg("--server").arg(tc.cluster.file.addresses().join(",")).arg("exec").args(args);
    cmd
}

/// Runs `corral exec ARGS` to its end: exit code, stdout, stderr.
fn exec(tc: &TestCluster, args: &[&str]) -> (Option<i32>, String, String) {
    let out = exec_command(tc, args).output().expect("corral runs");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code(), text(&out.stdout), text(&out.stderr))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_streams_output_returns_the_exit_code_and_explains_refusals() {
    let (tc, nodes, client) = cluster_with_nodes(&[], 1, 71).await;
    apply(&client, PODS).await;
    wait_two(&client, &nodes).await;

    // stdout and stderr apart, and the command's own exit code.
    let (code, out, err) =
        exec(&tc, &["two", "-c", "app", "--", "sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!((code, out.as_str(), err.as_str()), (Some(7), "out\n", "err\n"));
    let (code, out, _) = exec(&tc, &["two", "-c", "app", "--", "cat", "/proc/1/cmdline"]);
    assert_eq!((code, out.as_str()), (Some(0), "sleep\x003600\x00"), "runs in the app container");

    // Far more than the probes' 8 KiB, nothing lost.
    let (code, out, _) = exec(&tc, &["two", "-c", "app", "--", "seq", "1", "30000"]);
    assert_eq!(code, Some(0));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!((lines.len(), lines[0], lines[29_999]), (30_000, "1", "30000"));

    // Output arrives while the command still runs.
    let started = Instant::now();
    let mut child =
        exec_command(&tc, &["two", "-c", "app", "--", "sh", "-c", "echo first; sleep 4; echo second"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let mut reader = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    reader.read_line(&mut first).unwrap();
    let first_after = started.elapsed();
    let mut rest = String::new();
    reader.read_line(&mut rest).unwrap();
    assert!(child.wait().unwrap().success());
    assert_eq!((first.as_str(), rest.as_str()), ("first\n", "second\n"));
    assert!(first_after < Duration::from_secs(3), "first line after {first_after:?}: not streamed");

    // A client that goes away takes its command with it.
    let mut child =
        exec_command(&tc, &["two", "-c", "app", "--", "sh", "-c", "echo started; exec sleep 313"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
    let mut started = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut started).unwrap();
    let (_, ps, _) = exec(&tc, &["two", "-c", "app", "--", "ps"]);
    assert!(ps.contains("sleep 313"), "{ps}");
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, ps, _) = exec(&tc, &["two", "-c", "app", "--", "ps"]);
        if !ps.contains("sleep 313") {
            break;
        }
        assert!(Instant::now() < deadline, "the abandoned command still runs:\n{ps}\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }

    // Refusals, each with what to do.
    let cases: [(&[&str], &str); 6] = [
        (&["two", "--", "true"], "choose one of [app done] with -c"),
        (&["two", "-c", "nope", "--", "true"], "container \"nope\" is not in pod \"two\""),
        (
            &["two", "-c", "done", "--", "true"],
            "is not running (it exited with code 0): see corral logs two -c done",
        ),
        (&["ghost", "--", "true"], "pod \"ghost\" not found in namespace \"default\": list the pods"),
        (&["nowhere", "--", "true"], "pod \"nowhere\" is not scheduled to a node yet"),
        (&["two", "-n", "other", "--", "true"], "not found in namespace \"other\""),
    ];
    for (args, want) in cases {
        let (code, out, err) = exec(&tc, args);
        assert_eq!(code, Some(1), "{args:?}: {out}{err}");
        assert!(err.contains(want), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line: {err}");
    }
    // A missing program: the engine's message, and its code (126, as Docker's).
    let (code, out, err) = exec(&tc, &["two", "-c", "app", "--", "no-such-program"]);
    assert_eq!(code, Some(126), "{out}{err}");
    assert!(format!("{out}{err}").contains("executable file not found"), "{out}{err}");
}
