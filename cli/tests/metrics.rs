//! A master's Prometheus endpoint (`--metrics-listen`) reports its Raft state.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn scrape(addr: &str) -> Option<String> {
    let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\n\r\n").await.ok()?;
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(3), s.read_to_string(&mut out)).await.ok()?.ok()?;
    Some(out)
}

#[tokio::test]
async fn a_single_master_reports_itself_leader() {
    let dir = tempfile::tempdir().expect("temp dir");
    let base = cli::local::free_base_port(2);
    let (listen, metrics) = (format!("127.0.0.1:{base}"), format!("127.0.0.1:{}", base + 1));
    let mut child = Command::new(env!("CARGO_BIN_EXE_corral"))
        .args(["master", "--id", "1", "--listen", &listen, "--peers", &format!("1={listen}")])
        .args(["--metrics-listen", &metrics])
        .arg("--data-dir")
        .arg(dir.path().join("m1"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("master starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = None;
    while Instant::now() < deadline {
        if let Some(text) = scrape(&metrics).await {
            if text.contains("corral_master_is_leader 1") {
                last = Some(text);
                break;
            }
            last = Some(text);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let _ = child.kill();
    let _ = child.wait();
    let text = last.expect("the metrics endpoint answered");
    for line in
        ["HTTP/1.1 200 OK", "corral_master_is_leader 1", "corral_master_leader_id 1", "corral_master_term 1"]
    {
        assert!(text.contains(line), "{line} missing from\n{text}");
    }
}
