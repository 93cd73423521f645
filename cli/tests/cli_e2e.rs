//! The real `corral` binary against a real cluster (three `corral master`
//! processes; no worker nodes, so pods stay Pending): every object command,
//! its output and its exit code, as an operator meets them.

mod common;

use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{corral, run_corral, TestCluster};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/k8s-docs")
}

/// Runs `corral ARGS` until `done(stdout)` holds (the controllers act
/// asynchronously), failing after 20 s with the last output.
fn eventually(tc: &TestCluster, args: &[&str], done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (ok, out, err) = corral(tc, args, None);
        if ok && done(&out) {
            return out;
        }
        assert!(Instant::now() < deadline, "corral {args:?} never got there; last output:\n{out}{err}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}):\n{out}"))
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: web, labels: {app: nginx}}\nspec:\n  selector: {app: nginx}\n  ports: [{port: 80, targetPort: 80}]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_get_describe_and_delete_through_the_binary() {
    let tc = TestCluster::start(3, &[]).await;
    let dir = fixtures();
    let dir = dir.to_str().unwrap();

    // The Kubernetes documentation's manifests apply unchanged.
    let (ok, out, err) = corral(&tc, &["apply", "-f", dir], None);
    assert!(ok, "{err}");
    assert_eq!(out, "deployment.apps/nginx-deployment created\npod/two-containers created\n");
    assert_eq!(
        corral(&tc, &["apply", "-f", dir], None).1,
        "deployment.apps/nginx-deployment unchanged\npod/two-containers unchanged\n"
    );
    let (ok, out, _) = corral(&tc, &["apply", "-f", "-"], Some(SERVICE));
    assert!(ok && out == "service/web created\n", "{out}");

    // Tables, with kubectl's columns and aliases.
    let (ok, out, _) = corral(&tc, &["get", "deploy"], None);
    assert!(
        ok && out.starts_with("NAME              READY  UP-TO-DATE  AVAILABLE  AGE\nnginx-deployment  0/3"),
        "{out}"
    );
    let (_, out, _) = corral(&tc, &["get", "deployments.apps/nginx-deployment", "-o", "wide"], None);
    assert!(
        out.contains("CONTAINERS  IMAGES        SELECTOR")
            && out.contains("nginx       nginx:1.14.2  app=nginx"),
        "{out}"
    );
    let (_, out, _) = corral(&tc, &["get", "po", "two-containers", "-o", "wide"], None);
    assert!(
        out.starts_with("NAME            READY  STATUS   RESTARTS  AGE") && out.contains("IP      NODE"),
        "{out}"
    );
    assert!(out.contains("two-containers  0/2    Pending  0"), "{out}");
    let (_, out, _) = corral(&tc, &["get", "pods", "-A"], None);
    assert!(out.starts_with("NAMESPACE  NAME"), "{out}");
    let (_, out, _) = corral(&tc, &["get", "svc"], None);
    assert!(out.starts_with("NAME  TYPE       CLUSTER-IP") && out.contains("80/TCP"), "{out}");
    let (ok, out, err) = corral(&tc, &["get", "no"], None);
    assert!(ok && out.is_empty() && err == "No resources found.\n", "{out}{err}");
    let (ok, _, err) = corral(&tc, &["get", "deploy", "-l", "app=none"], None);
    assert!(ok && err == "No resources found in default namespace.\n", "{err}");
    let (_, out, _) = corral(&tc, &["get", "deploy", "-l", "app=nginx", "-o", "name"], None);
    assert_eq!(out, "deployment.apps/nginx-deployment\n");
    let out = eventually(&tc, &["get", "rs"], |o| o.contains("nginx-deployment-"));
    assert!(out.starts_with("NAME") && out.contains("DESIRED  CURRENT  READY"), "{out}");
    let out = eventually(&tc, &["get", "ep"], |o| o.contains("web"));
    assert!(out.starts_with("NAME  ENDPOINTS  AGE\nweb   <none>"), "{out}");
    let (ok, _, err) = corral(&tc, &["get", "configmaps"], None);
    assert!(!ok && err.contains("unknown kind \"configmaps\""), "{err}");

    // -o json and -o yaml round-trip through apply.
    let (_, out, _) = corral(&tc, &["get", "svc", "web", "-o", "yaml"], None);
    assert!(out.starts_with("apiVersion: v1\nkind: Service\nmetadata:\n"), "{out}");
    assert_eq!(corral(&tc, &["apply", "-f", "-"], Some(&out)).1, "service/web unchanged\n");
    let (_, out, _) = corral(&tc, &["get", "svc", "-o", "json"], None);
    assert_eq!(json(&out)["kind"], "List");
    assert_eq!(corral(&tc, &["apply", "-f", "-"], Some(&out)).1, "service/web unchanged\n");
    let mut edited = json(&out);
    edited["items"][0]["metadata"]["labels"]["tier"] = "front".into();
    let edited = edited.to_string();
    let (ok, out, err) = corral(&tc, &["apply", "-f", "-"], Some(&edited));
    assert!(ok && out == "service/web configured\n", "{out}{err}\n{edited}");

    // describe: key fields, conditions and the deployment's own events.
    let out =
        eventually(&tc, &["describe", "deployment", "nginx-deployment"], |o| o.contains("RolloutStarted"));
    for want in [
        "Name:               nginx-deployment\n",
        "Replicas:           3 desired",
        "Pod Template:\n",
        "      Image:        nginx:1.14.2\n",
        "Conditions:\n",
        "Events:\n",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    let (_, out, _) = corral(&tc, &["describe", "pod/two-containers"], None);
    assert!(out.contains("  debian-container:\n") && out.contains("shared-data:"), "{out}");

    // Deleting: at once for objects off any node; --wait returns once gone.
    let (ok, out, err) = corral(&tc, &["delete", "svc", "web", "--wait"], None);
    assert!(ok && out == "service/web deleted\nservice/web gone\n", "{out}{err}");
    let bound = "apiVersion: v1\nkind: Pod\nmetadata: {name: bound}\nspec: {nodeName: gone-node, containers: [{name: c, image: x}]}\n";
    assert!(corral(&tc, &["apply", "-f", "-"], Some(bound)).0);
    let (ok, out, err) = corral(&tc, &["--timeout", "1s", "delete", "pod", "bound", "--wait"], None);
    assert!(!ok && out == "pod/bound terminating\n", "{out}");
    assert_eq!(err, "error: timed out waiting for pod/bound to be deleted (raise --timeout)\n");
    let (ok, out, err) = corral(&tc, &["delete", "-f", dir], None);
    assert!(
        ok && out == "deployment.apps/nginx-deployment deleted\npod/two-containers deleted\n",
        "{out}{err}"
    );
    let (ok, _, err) = corral(&tc, &["get", "deploy", "nginx-deployment"], None);
    assert!(!ok && err.contains("\"nginx-deployment\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_set_image_rollout_and_watch_through_the_binary() {
    let tc = TestCluster::start(3, &[]).await;
    let nginx = std::fs::read_to_string(fixtures().join("nginx-deployment.yaml")).unwrap();
    assert!(corral(&tc, &["apply", "-f", "-"], Some(&nginx)).0);

    let (ok, out, _) = corral(&tc, &["scale", "deployment/nginx-deployment", "--replicas", "5"], None);
    assert!(ok && out == "deployment.apps/nginx-deployment scaled\n", "{out}");
    let (_, out, _) = corral(&tc, &["get", "deploy", "nginx-deployment", "-o", "json"], None);
    assert_eq!(json(&out)["spec"]["replicas"], 5);

    // set image starts revision 2; history lists both; undo brings 1's template back as 3.
    let (ok, out, _) =
        corral(&tc, &["set", "image", "deployment/nginx-deployment", "nginx=nginx:1.16.1"], None);
    assert!(ok && out == "deployment.apps/nginx-deployment image updated\n", "{out}");
    let (ok, _, err) = corral(&tc, &["set", "image", "deploy/nginx-deployment", "nope=x"], None);
    assert!(!ok && err.contains("unable to find container named \"nope\""), "{err}");
    let out = eventually(&tc, &["rollout", "history", "deployment/nginx-deployment"], |o| {
        o.contains("nginx:1.16.1")
    });
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows[0], "deployment.apps/nginx-deployment");
    assert!(
        rows[1].starts_with("REVISION  REPLICASET") && rows[1].ends_with("IMAGES        CURRENT"),
        "{out}"
    );
    assert!(rows[2].starts_with("1         nginx-deployment-") && rows[2].ends_with("nginx:1.14.2"), "{out}");
    assert!(rows[3].starts_with("2 ") && rows[3].ends_with("nginx:1.16.1  *"), "{out}");
    let (_, out, _) =
        corral(&tc, &["rollout", "history", "deployment/nginx-deployment", "--revision", "1"], None);
    assert!(
        out.starts_with("deployment.apps/nginx-deployment with revision #1\n")
            && out.contains("image: nginx:1.14.2"),
        "{out}"
    );
    let (ok, out, _) = corral(&tc, &["rollout", "undo", "deployment/nginx-deployment"], None);
    assert!(ok && out == "deployment.apps/nginx-deployment rolled back\n", "{out}");
    let out = eventually(&tc, &["rollout", "history", "deployment/nginx-deployment"], |o| {
        o.contains("nginx:1.14.2  *")
    });
    assert!(out.lines().any(|l| l.starts_with("3 ")), "the restored template is revision 3:\n{out}");
    let (_, out, _) = corral(&tc, &["get", "deploy", "nginx-deployment", "-o", "yaml"], None);
    assert!(out.contains("image: nginx:1.14.2"), "{out}");

    // rollout status: done at once for 0 replicas; without nodes nothing becomes available.
    let idle = nginx.replace("nginx-deployment", "idle").replace("replicas: 3", "replicas: 0");
    assert!(corral(&tc, &["apply", "-f", "-"], Some(&idle)).0);
    let (ok, out, err) = corral(&tc, &["rollout", "status", "deployment/idle"], None);
    assert!(ok && out.ends_with("deployment \"idle\" successfully rolled out\n"), "{out}{err}");
    let (ok, out, err) =
        corral(&tc, &["--timeout", "2s", "rollout", "status", "deploy/nginx-deployment"], None);
    assert!(!ok && out.contains("Waiting for deployment \"nginx-deployment\" rollout to finish: "), "{out}");
    assert!(err.contains("timed out waiting for deployment \"nginx-deployment\" to roll out"), "{err}");

    // get -w: the listing, then each change as it happens.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.args(["--server", &tc.cluster.file.addresses().join(","), "get", "deploy", "idle", "-w"]);
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let next = || rx.recv_timeout(Duration::from_secs(20)).expect("a line from get -w");
    assert!(next().starts_with("NAME  READY"));
    assert!(next().starts_with("idle  0/0"));
    assert!(corral(&tc, &["scale", "deploy/idle", "--replicas", "2"], None).0);
    let mut seen = Vec::new();
    while !seen.iter().any(|l: &String| l.starts_with("idle  0/2")) {
        seen.push(next());
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn a_manifest_with_an_error_in_its_second_document_applies_nothing() {
    // No master is needed: validation happens before anything is sent.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("app.yaml");
    let nginx = std::fs::read_to_string(fixtures().join("nginx-deployment.yaml")).unwrap();
    let bad = nginx.replace("nginx-deployment", "second").replace(
        "        - containerPort: 80\n",
        "        - containerPort: 80\n        imagePullSecrets: []\n",
    );
    std::fs::write(&file, format!("{nginx}---\n{bad}")).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.args(["--server", "127.0.0.1:1", "--timeout", "1s", "apply", "-f"]).arg(&file);
    let (ok, out, err) = run_corral(cmd, None);
    assert!(!ok && out.is_empty(), "{out}");
    assert_eq!(
        err,
        format!("error: nothing applied: {}: document 2 (line 44): spec.template.spec.containers[0].imagePullSecrets: is not supported by Corral (see the supported subset in the README)\n", file.display())
    );
}

#[test]
fn an_unreachable_cluster_fails_with_one_line_saying_what_to_do() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
    cmd.args(["--server", "127.0.0.1:1,127.0.0.1:2", "--timeout", "1s", "get", "pods"])
        .env_remove("CORRAL_SERVER");
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(
            "error: no master reachable at 127.0.0.1:1, 127.0.0.1:2: is the cluster running? try `corral up`"
        ),
        "{err}"
    );
}

#[test]
fn server_comes_from_flag_then_env_then_config_file() {
    let home = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(home.path().join(".corral")).unwrap();
    std::fs::write(home.path().join(".corral/config"), "server: 127.0.0.1:3\n").unwrap();
    let run = |env: Option<&str>, flag: Option<&str>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_corral"));
        cmd.env("HOME", home.path()).env_remove("CORRAL_CONFIG").env_remove("CORRAL_SERVER");
        if let Some(e) = env {
            cmd.env("CORRAL_SERVER", e);
        }
        if let Some(f) = flag {
            cmd.args(["--server", f]);
        }
        cmd.args(["--timeout", "500ms", "get", "pods"]);
        run_corral(cmd, None).2
    };
    assert!(run(None, None).contains("no master reachable at 127.0.0.1:3:"));
    assert!(run(Some("127.0.0.1:4"), None).contains("no master reachable at 127.0.0.1:4:"));
    assert!(run(Some("127.0.0.1:4"), Some("127.0.0.1:5")).contains("no master reachable at 127.0.0.1:5:"));
}

#[test]
fn completions_and_examples_come_with_the_binary() {
    for shell in ["bash", "zsh", "fish"] {
        let out = Command::new(env!("CARGO_BIN_EXE_corral")).args(["completion", shell]).output().unwrap();
        assert!(out.status.success() && String::from_utf8_lossy(&out.stdout).contains("rollout"), "{shell}");
    }
    let out =
        Command::new(env!("CARGO_BIN_EXE_corral")).args(["rollout", "status", "--help"]).output().unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("Examples:\n  corral rollout status deployment/web")
    );
}
