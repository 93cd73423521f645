use control_plane::api::pod::{ExecAction, TcpSocketAction};
use futures::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::*;

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn thresholds(failure: i32, success: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: vec!["true".into()] }),
        failure_threshold: Some(failure),
        success_threshold: Some(success),
        ..Default::default()
    }
}

#[test]
fn settings_take_kubernetes_defaults_and_raise_values_below_the_minimum() {
    let defaults = ProbeSettings {
        initial_delay: secs(0),
        period: secs(10),
        timeout: secs(1),
        failure_threshold: 3,
        success_threshold: 1,
    };
    let cases = [
        (Probe::default(), defaults),
        (
            Probe {
                initial_delay_seconds: Some(5),
                period_seconds: Some(2),
                timeout_seconds: Some(3),
                failure_threshold: Some(4),
                success_threshold: Some(2),
                ..Default::default()
            },
            ProbeSettings {
                initial_delay: secs(5),
                period: secs(2),
                timeout: secs(3),
                failure_threshold: 4,
                success_threshold: 2,
            },
        ),
        (
            Probe {
                initial_delay_seconds: Some(-1),
                period_seconds: Some(0),
                timeout_seconds: Some(0),
                failure_threshold: Some(0),
                success_threshold: Some(-3),
                ..Default::default()
            },
            ProbeSettings {
                initial_delay: secs(0),
                period: secs(1),
                timeout: secs(1),
                failure_threshold: 1,
                success_threshold: 1,
            },
        ),
    ];
    for (probe, want) in cases {
        assert_eq!(ProbeSettings::of(&probe), want, "{probe:?}");
    }
}

#[test]
fn verdicts_follow_consecutive_results() {
    use ProbeKind::{Liveness, Readiness};
    // Results: S(uccess) or F(ailure), one attempt per period. Verdicts
    // after each result: - (none), R(estart), U (Ready), D (NotReady).
    #[rustfmt::skip]
    let cases: &[(&str, ProbeKind, i32, i32, &str, &str)] = &[
        // behaviour                                              kind  failureThr successThr results verdicts
        ("liveness restarts after failureThreshold failures",       Liveness, 3, 1, "FFF",     "--R"),
        ("liveness: a success clears the run of failures",          Liveness, 3, 1, "FFSFFF",  "-----R"),
        ("liveness counts again from zero after a restart",         Liveness, 3, 1, "FFFFFF",  "--R--R"),
        ("liveness with failureThreshold 1",                        Liveness, 1, 1, "SF",      "-R"),
        ("liveness ignores successThreshold",                       Liveness, 2, 3, "SSSS",    "----"),
        ("readiness becomes ready on the first success",            Readiness, 3, 1, "S",      "U"),
        ("readiness: failures while not ready change nothing",      Readiness, 3, 1, "FFFF",   "----"),
        ("readiness waits for successThreshold successes in a row", Readiness, 3, 2, "SFSS",   "---U"),
        ("readiness drops after failureThreshold failures, once",   Readiness, 3, 1, "SFFFF",  "U--D-"),
        ("readiness: a success clears the run of failures",         Readiness, 3, 1, "SFFSFFF", "U-----D"),
        ("readiness comes back after failing",                      Readiness, 1, 2, "SSFSS",  "-UD-U"),
    ];
    let start = Instant::now();
    for (behaviour, kind, failure, success, results, want) in cases {
        let mut state = ProbeState::new(&thresholds(*failure, *success), *kind, start);
        let got: String = results
            .chars()
            .enumerate()
            .map(|(i, r)| {
                let result = if r == 'S' { ProbeResult::Success } else { ProbeResult::Failure("no".into()) };
                match state.observe(&result, start + secs(10 * i as u64)) {
                    None => '-',
                    Some(Verdict::Restart) => 'R',
                    Some(Verdict::Ready) => 'U',
                    Some(Verdict::NotReady) => 'D',
                }
            })
            .collect();
        assert_eq!(&got, want, "{behaviour}");
    }
}

#[test]
fn readiness_starts_not_ready_and_tracks_verdicts() {
    let start = Instant::now();
    let mut state = ProbeState::new(&thresholds(1, 1), ProbeKind::Readiness, start);
    assert!(!state.is_ready());
    state.observe(&ProbeResult::Success, start);
    assert!(state.is_ready());
    state.observe(&ProbeResult::Failure("no".into()), start + secs(10));
    assert!(!state.is_ready());
}

#[test]
fn first_attempt_waits_for_the_initial_delay_then_one_period_between_attempts() {
    let start = Instant::now();
    let probe = Probe { initial_delay_seconds: Some(5), period_seconds: Some(10), ..thresholds(3, 1) };
    let mut state = ProbeState::new(&probe, ProbeKind::Liveness, start);
    let ms = Duration::from_millis;
    assert!(!state.due(start));
    assert!(!state.due(start + ms(4_999)));
    assert!(state.due(start + secs(5)));
    assert_eq!(state.next_due(), start + secs(5));

    // The attempt started late, at 7 s: the next one is a period after it.
    state.observe(&ProbeResult::Success, start + secs(7));
    assert!(!state.due(start + ms(16_999)));
    assert!(state.due(start + secs(17)));

    let no_delay = ProbeState::new(&thresholds(3, 1), ProbeKind::Readiness, start);
    assert!(no_delay.due(start));
}

// ---- running probes against loopback servers ----

/// Answers one HTTP request per status in `statuses`, in order, and
/// returns the request heads it read.
async fn http_server(statuses: &'static [u16]) -> (u16, JoinHandle<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let task = tokio::spawn(async move {
        let mut heads = Vec::new();
        for status in statuses {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
                let n = conn.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            heads.push(String::from_utf8_lossy(&head).into_owned());
            let response =
                format!("HTTP/1.1 {status} Status\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            conn.write_all(response.as_bytes()).await.unwrap();
        }
        heads
    });
    (port, task)
}

fn no_exec(_: Vec<String>, _: Duration) -> BoxFuture<'static, Result<ExecOutput, String>> {
    async { Err("exec is not expected in this test".to_string()) }.boxed()
}

fn target<'a>(ports: &'a [ContainerPort], exec: &'a dyn Exec) -> ProbeTarget<'a> {
    ProbeTarget { pod_ip: "127.0.0.1".parse().unwrap(), container_ports: ports, exec }
}

fn http_probe(port: IntOrString, path: &str) -> Probe {
    Probe { http_get: Some(HttpGetAction { path: Some(path.into()), port }), ..Default::default() }
}

fn tcp_probe(port: u16) -> Probe {
    Probe { tcp_socket: Some(TcpSocketAction { port: IntOrString::Int(port.into()) }), ..Default::default() }
}

/// A port nothing listens on (just released by us).
async fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}

/// Every probe run in these tests ends well within this.
const BOUND: Duration = Duration::from_secs(5);

async fn bounded_probe(probe: &Probe, target: ProbeTarget<'_>) -> ProbeResult {
    tokio::time::timeout(BOUND, run_probe(probe, target)).await.expect("run_probe honours its own timeout")
}

#[tokio::test]
async fn http_get_succeeds_on_2xx_and_3xx_and_fails_on_others_with_the_status() {
    let (port, server) = http_server(&[200, 302, 500, 404]).await;
    let probe = http_probe(IntOrString::Int(port.into()), "/healthz");
    let want = [
        ProbeResult::Success,
        ProbeResult::Success,
        ProbeResult::Failure("HTTP probe failed with statuscode: 500".into()),
        ProbeResult::Failure("HTTP probe failed with statuscode: 404".into()),
    ];
    for want in want {
        assert_eq!(bounded_probe(&probe, target(&[], &no_exec)).await, want);
    }
    let heads = server.await.unwrap();
    assert!(heads[0].starts_with("GET /healthz HTTP/1.1\r\n"), "{}", heads[0]);
    let lower = heads[0].to_ascii_lowercase();
    assert!(lower.contains(&format!("host: 127.0.0.1:{port}\r\n")), "{}", heads[0]);
    assert!(lower.contains("connection: close\r\n"), "{}", heads[0]);
}

#[tokio::test]
async fn http_get_resolves_a_named_port_from_the_container() {
    let (port, server) = http_server(&[200]).await;
    let ports = [
        ContainerPort { container_port: 9, name: Some("metrics".into()), ..Default::default() },
        ContainerPort { container_port: port.into(), name: Some("http".into()), ..Default::default() },
    ];
    let probe = http_probe(IntOrString::String("http".into()), "ready");
    assert_eq!(bounded_probe(&probe, target(&ports, &no_exec)).await, ProbeResult::Success);
    assert!(server.await.unwrap()[0].starts_with("GET /ready HTTP/1.1\r\n"));
}

#[tokio::test]
async fn an_unknown_named_port_fails_without_connecting() {
    let probe = http_probe(IntOrString::String("admin".into()), "/");
    let result = bounded_probe(&probe, target(&[], &no_exec)).await;
    assert_eq!(
        result,
        ProbeResult::Failure("couldn't find port \"admin\" among the container's ports".into())
    );
}

#[tokio::test]
async fn http_get_to_a_closed_port_fails_with_connection_refused() {
    let port = closed_port().await;
    let probe = http_probe(IntOrString::Int(port.into()), "/healthz");
    let result = bounded_probe(&probe, target(&[], &no_exec)).await;
    let want = format!(
        "Get \"http://127.0.0.1:{port}/healthz\": dial tcp 127.0.0.1:{port}: connect: connection refused"
    );
    assert_eq!(result, ProbeResult::Failure(want));
}

#[tokio::test]
async fn http_server_that_never_answers_fails_after_timeout_seconds() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and then says nothing, holding the connection open.
    let silent = tokio::spawn(async move {
        let (conn, _) = listener.accept().await.unwrap();
        tokio::time::sleep(BOUND).await;
        drop(conn);
    });
    let probe = Probe { timeout_seconds: Some(1), ..http_probe(IntOrString::Int(port.into()), "/") };
    let started = std::time::Instant::now();
    let result = bounded_probe(&probe, target(&[], &no_exec)).await;
    let took = started.elapsed();
    silent.abort();
    let ProbeResult::Failure(message) = result else { panic!("a silent server passed the probe") };
    assert!(message.contains("timeoutSeconds"), "{message}");
    assert!(took >= secs(1) && took < secs(3), "took {took:?}");
}

#[tokio::test]
async fn tcp_socket_succeeds_when_something_listens_and_fails_when_not() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let open = listener.local_addr().unwrap().port();
    assert_eq!(bounded_probe(&tcp_probe(open), target(&[], &no_exec)).await, ProbeResult::Success);

    let closed = closed_port().await;
    let result = bounded_probe(&tcp_probe(closed), target(&[], &no_exec)).await;
    let want = format!("dial tcp 127.0.0.1:{closed}: connect: connection refused");
    assert_eq!(result, ProbeResult::Failure(want));
}

fn exec_probe(command: &[&str], timeout_seconds: i32) -> Probe {
    Probe {
        exec: Some(ExecAction { command: command.iter().map(|s| s.to_string()).collect() }),
        timeout_seconds: Some(timeout_seconds),
        ..Default::default()
    }
}

#[tokio::test]
async fn exec_succeeds_on_exit_code_zero_and_reports_others() {
    // The fake runtime: `cat <file>` exits 0 for /tmp/healthy, 1 otherwise.
    let exec = |command: Vec<String>, timeout: Duration| -> BoxFuture<'static, Result<ExecOutput, String>> {
        async move {
            assert_eq!(timeout, secs(2), "the probe's timeoutSeconds reaches the runtime");
            match command.as_slice() {
                [cat, path] if cat == "cat" && path == "/tmp/healthy" => {
                    Ok(ExecOutput { exit_code: 0, output: "ok\n".into() })
                }
                [cat, path] if cat == "cat" => {
                    Ok(ExecOutput { exit_code: 1, output: format!("cat: can't open '{path}'\n") })
                }
                _ => Err("container is not running".into()),
            }
        }
        .boxed()
    };
    let cases = [
        (vec!["cat", "/tmp/healthy"], ProbeResult::Success),
        (
            vec!["cat", "/tmp/gone"],
            ProbeResult::Failure(
                "command [\"cat\", \"/tmp/gone\"] exited with 1: cat: can't open '/tmp/gone'".into(),
            ),
        ),
        (
            vec!["true"],
            ProbeResult::Failure("command [\"true\"] could not run: container is not running".into()),
        ),
    ];
    for (command, want) in cases {
        assert_eq!(bounded_probe(&exec_probe(&command, 2), target(&[], &exec)).await, want, "{command:?}");
    }
}

#[tokio::test]
async fn exec_that_outlives_timeout_seconds_fails() {
    let hang = |_: Vec<String>, _: Duration| -> BoxFuture<'static, Result<ExecOutput, String>> {
        async {
            tokio::time::sleep(BOUND).await;
            Ok(ExecOutput { exit_code: 0, output: String::new() })
        }
        .boxed()
    };
    let started = std::time::Instant::now();
    let result = bounded_probe(&exec_probe(&["sleep", "60"], 1), target(&[], &hang)).await;
    let took = started.elapsed();
    assert_eq!(
        result,
        ProbeResult::Failure("command [\"sleep\", \"60\"] timed out after 1s (timeoutSeconds)".into())
    );
    assert!(took >= secs(1) && took < secs(3), "took {took:?}");
}

#[tokio::test]
async fn a_probe_without_a_handler_fails() {
    let result = bounded_probe(&Probe::default(), target(&[], &no_exec)).await;
    assert_eq!(
        result,
        ProbeResult::Failure("the probe has no handler: set httpGet, tcpSocket or exec".into())
    );
}
