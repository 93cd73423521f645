//! Liveness and readiness probes: when to run one ([`ProbeState`], a pure
//! state machine over results and instants) and how ([`run_probe`]: one
//! httpGet, tcpSocket or exec attempt against a pod).
//!
//! Kubernetes' semantics and defaults: the first probe runs
//! `initialDelaySeconds` (0) after the container started, then every
//! `periodSeconds` (10); one attempt may take `timeoutSeconds` (1). A
//! liveness probe asks for a restart after `failureThreshold` (3)
//! consecutive failures; a readiness probe marks the container not ready
//! after as many, and ready after `successThreshold` (1) consecutive
//! successes. A container with a readiness probe starts not ready; one
//! with a liveness probe starts alive.
//!
//! Not owned here: the agent's loop that sleeps until [`ProbeState::due`],
//! restarts containers, sets the pod's Ready condition and writes the
//! failure messages into Events.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use control_plane::api::pod::{ContainerPort, HttpGetAction, Probe};
use control_plane::api::IntOrString;
use futures::future::BoxFuture;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper::header::{ACCEPT, CONNECTION, HOST, USER_AGENT};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_util::task::AbortOnDropHandle;

use crate::runtime::ExecOutput;

/// Which question a probe answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeKind {
    /// Is the container alive? No: restart it.
    Liveness,
    /// May the container take traffic? Decides the pod's Ready condition.
    Readiness,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeResult {
    Success,
    /// Why it failed, worded like Kubernetes (`HTTP probe failed with
    /// statuscode: 500`), for the pod's Events.
    Failure(String),
}

impl ProbeResult {
    pub fn is_success(&self) -> bool {
        matches!(self, ProbeResult::Success)
    }
}

/// A change the agent acts on, returned once when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Liveness: `failureThreshold` failures in a row; restart the container.
    Restart,
    /// Readiness: `successThreshold` successes in a row after not being ready.
    Ready,
    /// Readiness: `failureThreshold` failures in a row after being ready.
    NotReady,
}

/// A probe's timing and thresholds with Kubernetes' defaults filled in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProbeSettings {
    pub initial_delay: Duration,
    pub period: Duration,
    pub timeout: Duration,
    pub failure_threshold: u32,
    pub success_threshold: u32,
}

impl ProbeSettings {
    /// Defaults for absent fields; values below the minimum that
    /// validation enforces (0 s delay, 1 s otherwise, thresholds 1) are
    /// raised to it rather than trusted.
    pub fn of(probe: &Probe) -> Self {
        let seconds = |v: Option<i32>, default: i32, min: i32| {
            Duration::from_secs(v.unwrap_or(default).max(min) as u64)
        };
        let count = |v: Option<i32>, default: i32| v.unwrap_or(default).max(1) as u32;
        Self {
            initial_delay: seconds(probe.initial_delay_seconds, 0, 0),
            period: seconds(probe.period_seconds, 10, 1),
            timeout: seconds(probe.timeout_seconds, 1, 1),
            failure_threshold: count(probe.failure_threshold, 3),
            success_threshold: count(probe.success_threshold, 1),
        }
    }
}

/// Where one probe of one container stands. Pure: the caller passes the
/// instants in. A restarted container gets a new `ProbeState`.
///
/// Liveness ignores `successThreshold` (Kubernetes requires it to be 1): a
/// success only clears the run of failures. After a [`Verdict::Restart`]
/// the count starts over, so a container whose restart has not happened
/// yet is not asked to restart again before `failureThreshold` more
/// failures.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeState {
    kind: ProbeKind,
    settings: ProbeSettings,
    next_due: Instant,
    failures: u32,
    successes: u32,
    ready: bool,
}

impl ProbeState {
    /// The state of a probe of a container that started at `started`.
    pub fn new(probe: &Probe, kind: ProbeKind, started: Instant) -> Self {
        let settings = ProbeSettings::of(probe);
        Self {
            kind,
            settings,
            next_due: started + settings.initial_delay,
            failures: 0,
            successes: 0,
            ready: false,
        }
    }

    pub fn kind(&self) -> ProbeKind {
        self.kind
    }

    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// Whether an attempt should start at `now`.
    pub fn due(&self, now: Instant) -> bool {
        now >= self.next_due
    }

    /// When the next attempt is due: `initialDelaySeconds` after the start,
    /// then `periodSeconds` after the last observed attempt.
    pub fn next_due(&self) -> Instant {
        self.next_due
    }

    /// Readiness: whether the container counts as ready now (false until
    /// the first [`Verdict::Ready`]). Liveness probes never make a
    /// container ready: always false for them.
    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Takes the result of the attempt that started at `now` (so attempts
    /// are `periodSeconds` apart, start to start) and returns the verdict
    /// if this result changes what the agent must do.
    pub fn observe(&mut self, result: &ProbeResult, now: Instant) -> Option<Verdict> {
        self.next_due = now + self.settings.period;
        if result.is_success() {
            self.failures = 0;
            self.successes = self.successes.saturating_add(1);
        } else {
            self.successes = 0;
            self.failures = self.failures.saturating_add(1);
        }
        let s = &self.settings;
        match self.kind {
            ProbeKind::Liveness if self.failures >= s.failure_threshold => {
                self.failures = 0;
                Some(Verdict::Restart)
            }
            ProbeKind::Readiness if !self.ready && self.successes >= s.success_threshold => {
                self.ready = true;
                Some(Verdict::Ready)
            }
            ProbeKind::Readiness if self.ready && self.failures >= s.failure_threshold => {
                self.ready = false;
                Some(Verdict::NotReady)
            }
            _ => None,
        }
    }
}

/// Runs a command in the probed container. The agent implements it over
/// `Runtime::exec`; tests with a closure.
pub trait Exec: Send + Sync {
    /// Runs `command`, killed after `timeout`.
    fn exec(&self, command: Vec<String>, timeout: Duration)
        -> BoxFuture<'static, Result<ExecOutput, String>>;
}

impl<F> Exec for F
where
    F: Fn(Vec<String>, Duration) -> BoxFuture<'static, Result<ExecOutput, String>> + Send + Sync,
{
    fn exec(
        &self,
        command: Vec<String>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<ExecOutput, String>> {
        self(command, timeout)
    }
}

/// What a probe is run against.
#[derive(Clone, Copy)]
pub struct ProbeTarget<'a> {
    pub pod_ip: IpAddr,
    /// The probed container's ports, to resolve named probe ports.
    pub container_ports: &'a [ContainerPort],
    pub exec: &'a dyn Exec,
}

/// One attempt of `probe` against `target`, bounded by `timeoutSeconds`.
pub async fn run_probe(probe: &Probe, target: ProbeTarget<'_>) -> ProbeResult {
    let timeout = ProbeSettings::of(probe).timeout;
    let outcome = if let Some(http) = &probe.http_get {
        match resolve_port(&http.port, target.container_ports) {
            Ok(port) => http_get(SocketAddr::new(target.pod_ip, port), http, timeout).await,
            Err(e) => Err(e),
        }
    } else if let Some(tcp) = &probe.tcp_socket {
        match resolve_port(&tcp.port, target.container_ports) {
            Ok(port) => tcp_connect(SocketAddr::new(target.pod_ip, port), timeout).await.map(drop),
            Err(e) => Err(e),
        }
    } else if let Some(exec) = &probe.exec {
        run_exec(target.exec, &exec.command, timeout).await
    } else {
        Err("the probe has no handler: set httpGet, tcpSocket or exec".to_string())
    };
    match outcome {
        Ok(()) => ProbeResult::Success,
        Err(message) => ProbeResult::Failure(message),
    }
}

/// A probe port: a number, or the name of one of the container's ports
/// (or, as Kubernetes allows, a number written as a string).
fn resolve_port(port: &IntOrString, container_ports: &[ContainerPort]) -> Result<u16, String> {
    let number = match port {
        IntOrString::Int(n) => *n,
        IntOrString::String(name) => container_ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name.as_str()))
            .map(|p| p.container_port)
            .or_else(|| name.parse().ok())
            .ok_or_else(|| format!("couldn't find port {name:?} among the container's ports"))?,
    };
    u16::try_from(number).ok().filter(|p| *p > 0).ok_or_else(|| format!("invalid port number: {number}"))
}

/// Connects within `timeout`; errors read like Go's `dial tcp` ones.
async fn tcp_connect(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, String> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(stream)) => Ok(stream),
        Ok(Err(e)) => Err(dial_failed(addr, &e)),
        Err(_) => Err(format!("dial tcp {addr}: i/o timeout")),
    }
}

fn dial_failed(addr: SocketAddr, e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => format!("dial tcp {addr}: connect: connection refused"),
        _ => format!("dial tcp {addr}: {e}"),
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`; a status from 200 to
/// 399 is a success. The status line and headers must arrive within
/// `timeout` (connect included); the body is not read.
async fn http_get(addr: SocketAddr, action: &HttpGetAction, timeout: Duration) -> Result<(), String> {
    let path = match action.path.as_deref() {
        None | Some("") => "/".to_string(),
        Some(p) if p.starts_with('/') => p.to_string(),
        Some(p) => format!("/{p}"),
    };
    let url = format!("http://{addr}{path}");
    let attempt = async {
        let stream = TcpStream::connect(addr).await.map_err(|e| dial_failed(addr, &e))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        // Drives the connection; aborted when this attempt ends or times out.
        let _connection = AbortOnDropHandle::new(tokio::spawn(connection));
        let request = hyper::Request::get(path.as_str())
            .header(HOST, addr.to_string())
            .header(USER_AGENT, concat!("corral-probe/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, "*/*")
            .header(CONNECTION, "close")
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let response = sender.send_request(request).await.map_err(|e| e.to_string())?;
        Ok::<_, String>(response.status())
    };
    let status = match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(status)) => status,
        Ok(Err(e)) => return Err(format!("Get {url:?}: {e}")),
        Err(_) => {
            return Err(format!("Get {url:?}: no response within {}s (timeoutSeconds)", timeout.as_secs()))
        }
    };
    if (200..400).contains(&status.as_u16()) {
        Ok(())
    } else {
        Err(format!("HTTP probe failed with statuscode: {}", status.as_u16()))
    }
}

/// Exit code 0 is a success. The runtime kills the command after
/// `timeout`; the attempt is bounded by the same timeout here too, should
/// the runtime not answer.
async fn run_exec(exec: &dyn Exec, command: &[String], timeout: Duration) -> Result<(), String> {
    match tokio::time::timeout(timeout, exec.exec(command.to_vec(), timeout)).await {
        Ok(Ok(out)) if out.exit_code == 0 => Ok(()),
        Ok(Ok(out)) => {
            let output = out.output.trim();
            let mut message = format!("command {command:?} exited with {}", out.exit_code);
            if !output.is_empty() {
                message = format!("{message}: {output}");
            }
            Err(message)
        }
        Ok(Err(e)) => Err(format!("command {command:?} could not run: {e}")),
        Err(_) => Err(format!("command {command:?} timed out after {}s (timeoutSeconds)", timeout.as_secs())),
    }
}

#[cfg(test)]
mod tests;
