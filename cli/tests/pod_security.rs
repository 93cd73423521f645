//! Safe pod defaults through the real `corral` binary, 3 real masters and
//! one real agent on Docker: a pod asking for the host's root (or /etc, or
//! the host's network) is refused at apply with the field and the rule
//! named, by the CLI and by the masters; a directory the admin allowed
//! (`corral master --allowed-host-paths`) is mounted, read-only.

mod common;

use std::time::{Duration, Instant};

use common::nodes::cluster_with_nodes;
use common::TestCluster;
use control_plane::api::{manifest, Object};
use control_plane::{ClientError, CorralClient};

fn pod_yaml(name: &str, path: &str, read_only: bool) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}}}\nspec:\n  terminationGracePeriodSeconds: 0\n  volumes:\n  - {{name: host, hostPath: {{path: {path:?}}}}}\n  containers:\n  - name: app\n    image: corral/busybox:1\n    command: [sleep, '3600']\n    volumeMounts:\n    - {{name: host, mountPath: /host, readOnly: {read_only}}}\n"
    )
}

/// `corral apply -f -` with `yaml`: whether it succeeded, and what it printed.
fn apply(tc: &TestCluster, yaml: &str) -> (bool, String) {
    let (ok, out, err) = common::corral(tc, &["apply", "-f", "-"], Some(yaml));
    (ok, format!("{out}{err}"))
}

async fn wait_running(client: &CorralClient, name: &str, nodes: &common::nodes::Nodes) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Object::Pod(p)) = client.get_object("pods", "default", name).await {
            if p.status
                .as_ref()
                .and_then(|s| s.container_statuses.first())
                .is_some_and(|c| c.state.as_ref().is_some_and(|s| s.running.is_some()))
            {
                return;
            }
        }
        assert!(Instant::now() < deadline, "pod {name} not running within 60 s\n{}", nodes.log_tails());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_root_is_refused_at_apply_and_an_allowed_directory_mounts_read_only() {
    let allowed = tempfile::Builder::new().prefix("corral-hostpath-").tempdir().expect("temp dir");
    std::fs::write(allowed.path().join("hello"), "from the host\n").unwrap();
    let allowed_path = allowed.path().to_str().unwrap().to_string();
    let flag = format!("--allowed-host-paths={allowed_path}");
    let (tc, nodes, client) = cluster_with_nodes(&[&flag], 1, 75).await;

    // The hole of issue 14: the host's root, and its neighbours.
    for (path, field, rule) in [
        ("/", "spec.volumes[0].hostPath.path", "the host's root filesystem is never mounted into a pod"),
        ("/etc", "spec.volumes[0].hostPath.path", "/etc (the host's configuration and credentials)"),
        ("/var/run/docker.sock", "spec.volumes[0].hostPath.path", "the Docker socket"),
        ("/opt", "spec.volumes[0].hostPath.path", "hostPath volumes must be under an allowed prefix"),
    ] {
        let (ok, out) = apply(&tc, &pod_yaml("root", path, true));
        assert!(!ok, "{path} applied: {out}");
        assert!(out.contains(&format!("{field}: {path:?} is not allowed: ")), "{path}: {out}");
        assert!(out.contains(rule), "{path}: {out}");
    }
    let (ok, out) = apply(&tc, &pod_yaml("root", "/opt", true));
    assert!(!ok && out.contains(&format!("this cluster allows {allowed_path} (read-only)")), "{out}");

    // The masters refuse it too, whatever the client checked.
    let mut sneaky = match manifest::parse("t", &pod_yaml("root", &allowed_path, true)).unwrap().remove(0) {
        Object::Pod(p) => p,
        other => panic!("not a pod: {other:?}"),
    };
    sneaky.spec.volumes[0].host_path.as_mut().unwrap().path = "/".into();
    match client.apply(&Object::Pod(sneaky)).await {
        Err(ClientError::InvalidArgument(m)) => {
            assert!(m.contains("spec.volumes[0].hostPath.path: \"/\" is not allowed"), "{m}")
        }
        other => panic!("the master took a hostPath of /: {other:?}"),
    }

    // Baseline privileges stay refused, with the field and the rule.
    let privileged = pod_yaml("priv", &allowed_path, true)
        .replace(
            "    command: [sleep, '3600']\n",
            "    command: [sleep, '3600']\n    securityContext: {privileged: true}\n",
        )
        .replace("spec:\n", "spec:\n  hostNetwork: true\n");
    let (ok, out) = apply(&tc, &privileged);
    assert!(!ok, "{out}");
    assert!(
        out.contains("spec.hostNetwork: sharing the host's namespaces is not allowed (PodSecurity baseline)"),
        "{out}"
    );
    assert!(
        out.contains("spec.containers[0].securityContext.privileged: privileged containers are not allowed (PodSecurity baseline)"),
        "{out}"
    );

    // An allowed read-only prefix must be mounted readOnly: refused, not flipped.
    let (ok, out) = apply(&tc, &pod_yaml("data", &allowed_path, false));
    assert!(!ok, "{out}");
    assert!(
        out.contains(&format!("spec.containers[0].volumeMounts[0].readOnly: hostPath volume \"host\" ({allowed_path:?}) is read-only on this cluster: set readOnly: true, or allow writes with corral master --allowed-host-paths {allowed_path}:rw")),
        "{out}"
    );

    // Mounted read-only, it runs and reads the host's file, and cannot write.
    let (ok, out) = apply(&tc, &pod_yaml("data", &allowed_path, true));
    assert!(ok, "{out}");
    wait_running(&client, "data", &nodes).await;
    let (ok, out, err) = tc.corral(&["exec", "data", "--", "cat", "/host/hello"]);
    assert!(ok && out == "from the host\n", "{out}{err}");
    let (ok, out, err) = tc.corral(&["exec", "data", "--", "touch", "/host/written"]);
    assert!(!ok && err.contains("Read-only file system"), "{out}{err}");
    assert!(!allowed.path().join("written").exists());
    let (ok, out, err) = tc.corral(&["exec", "data", "--", "grep", "NoNewPrivs", "/proc/self/status"]);
    assert!(ok && out.split_whitespace().nth(1) == Some("1"), "{out}{err}");
    let (ok, _, err) = tc.corral(&["delete", "pod", "data"]);
    assert!(ok, "{err}");
}
