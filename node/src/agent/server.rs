//! The agent's own HTTP endpoint on the node's address (port 10250, as
//! kubelet's): `corral logs` streams a container's log from here, `corral
//! exec` runs commands here, and Prometheus scrapes `/metrics`.
//!
//! `GET /logs/{namespace}/{pod}/{container}?follow=true&tail=N` answers
//! with the log of the container's latest start, as plain text.
//!
//! `POST /exec/{namespace}/{pod}[?container=NAME]`, with the command's
//! arguments as the body, each ended by a NUL byte, runs the command in the
//! container's latest start (which must be running) and answers with
//! [`exec_wire`] frames: its stdout and stderr as they come, then its exit
//! code. Refusals before the command starts (no such pod here, unknown or
//! stopped container, no command) are plain-text errors with a 4xx status.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::metrics::NodeMetrics;
use crate::runtime::{ContainerInfo, ContainerState, ExecEvent, LogOptions, Runtime};

/// The port the agent serves on, at the node's address.
pub const PORT: u16 = 10250;

type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

/// What a request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRequest {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
    pub options: LogOptions,
}

/// Parses `/logs/ns/pod[/container]?follow=..&tail=..`. Pure.
pub fn parse_logs_path(path_and_query: &str) -> Result<LogRequest, String> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (namespace, pod, container) = match parts.as_slice() {
        ["logs", ns, pod] => (ns, pod, None),
        ["logs", ns, pod, c] => (ns, pod, Some(c.to_string())),
        _ => return Err(format!("{path}: not found; use /logs/NAMESPACE/POD[/CONTAINER]")),
    };
    let mut options = LogOptions::default();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("follow", v) => options.follow = v != "false",
            ("tail", v) => options.tail = Some(v.parse().map_err(|_| format!("tail={v}: not a number"))?),
            (k, _) => return Err(format!("unknown parameter {k:?}")),
        }
    }
    Ok(LogRequest { namespace: namespace.to_string(), pod: pod.to_string(), container, options })
}

/// What `POST /exec/...` asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecRequest {
    pub namespace: String,
    pub pod: String,
    pub container: Option<String>,
}

/// Parses `/exec/ns/pod[?container=name]`. Pure.
pub fn parse_exec_path(path_and_query: &str) -> Result<ExecRequest, String> {
    let (path, query) = path_and_query.split_once('?').unwrap_or((path_and_query, ""));
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let ["exec", namespace, pod] = parts.as_slice() else {
        return Err(format!("{path}: not found; use POST /exec/NAMESPACE/POD[?container=NAME]"));
    };
    let mut container = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=').unwrap_or((pair, "")) {
            ("container", v) if !v.is_empty() => container = Some(v.to_string()),
            (k, _) => return Err(format!("unknown parameter {k:?}")),
        }
    }
    Ok(ExecRequest { namespace: namespace.to_string(), pod: pod.to_string(), container })
}

/// The largest command `POST /exec` accepts (arguments and their NULs).
pub const MAX_EXEC_COMMAND: usize = 64 * 1024;

/// The wire form of `corral exec`'s answer: frames of one kind byte, a
/// big-endian u32 length and that many bytes. Kinds: 1 stdout, 2 stderr,
/// 3 exit (payload: the exit code as big-endian i64), 4 error (payload: a
/// UTF-8 message; the command's fate is unknown). The body ends with exactly
/// one exit or error frame; a body that ends without one was cut off.
pub mod exec_wire {
    use tokio::io::{AsyncRead, AsyncReadExt};

    #[derive(Debug, Clone, PartialEq, Eq)]
    pub enum Frame {
        Stdout(Vec<u8>),
        Stderr(Vec<u8>),
        Exit(i64),
        Error(String),
    }

    /// Frames larger than this are refused as garbage.
    const MAX_FRAME: u32 = 16 << 20;

    impl Frame {
        pub fn encode(&self) -> Vec<u8> {
            let (kind, payload): (u8, &[u8]) = match self {
                Frame::Stdout(b) => (1, b),
                Frame::Stderr(b) => (2, b),
                Frame::Exit(code) => return frame(3, &code.to_be_bytes()),
                Frame::Error(m) => (4, m.as_bytes()),
            };
            frame(kind, payload)
        }

        /// The next frame, or `None` at a clean end of the body.
        pub async fn read_from(r: &mut (impl AsyncRead + Unpin)) -> std::io::Result<Option<Frame>> {
            let kind = match r.read_u8().await {
                Ok(k) => k,
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            };
            let len = r.read_u32().await?;
            if len > MAX_FRAME {
                return Err(std::io::Error::other(format!("exec frame of {len} bytes: not an exec stream")));
            }
            let mut payload = vec![0; len as usize];
            r.read_exact(&mut payload).await?;
            Ok(Some(match kind {
                1 => Frame::Stdout(payload),
                2 => Frame::Stderr(payload),
                3 => {
                    let code =
                        payload.try_into().map_err(|_| std::io::Error::other("exit frame is not 8 bytes"))?;
                    Frame::Exit(i64::from_be_bytes(code))
                }
                4 => Frame::Error(String::from_utf8_lossy(&payload).into_owned()),
                k => return Err(std::io::Error::other(format!("unknown exec frame kind {k}"))),
            }))
        }
    }

    fn frame(kind: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + payload.len());
        out.push(kind);
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let body = Full::new(Bytes::from(message + "\n")).map_err(|e: Infallible| match e {}).boxed_unsync();
    Response::builder().status(status).body(body).expect("a static response builds")
}

type Refusal = (StatusCode, String);

/// The latest start of the pod's container `wanted` (or of its only
/// container), among the containers of this node.
fn pick_container<'a>(
    containers: &'a [ContainerInfo],
    node: &str,
    namespace: &str,
    pod: &str,
    wanted: Option<&str>,
) -> Result<&'a ContainerInfo, Refusal> {
    let of_pod: Vec<_> = containers
        .iter()
        .filter(|c| !c.is_sandbox() && c.pod.namespace == namespace && c.pod.name == pod)
        .collect();
    let names: std::collections::BTreeSet<&str> =
        of_pod.iter().filter_map(|c| c.container.as_deref()).collect();
    let list = names.iter().copied().collect::<Vec<_>>().join(" ");
    let name = match (wanted, names.len()) {
        (Some(c), _) => c,
        (None, 1) => names.first().copied().unwrap_or_default(),
        (None, 0) => {
            return Err((
                StatusCode::NOT_FOUND,
                format!(
                    "pod {pod:?} has no containers on node {node:?}: is it still starting? see corral get pod {pod} -o wide"
                ),
            ))
        }
        (None, _) => {
            return Err((
                StatusCode::BAD_REQUEST,
                format!("pod {pod:?} has several containers: choose one of [{list}] with -c"),
            ))
        }
    };
    of_pod.into_iter().filter(|c| c.container.as_deref() == Some(name)).max_by_key(|c| c.attempt).ok_or_else(
        || {
            (
                StatusCode::NOT_FOUND,
                format!("container {name:?} is not in pod {pod:?}: choose one of [{list}] with -c"),
            )
        },
    )
}

async fn handle(
    runtime: Arc<dyn Runtime>,
    node: String,
    metrics: Arc<NodeMetrics>,
    req: Request<Incoming>,
) -> Response<Body> {
    let target = req.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
    if req.uri().path() == "/metrics" {
        let body =
            Full::new(Bytes::from(metrics.render())).map_err(|e: Infallible| match e {}).boxed_unsync();
        return Response::builder()
            .header("content-type", "application/openmetrics-text; version=1.0.0; charset=utf-8")
            .body(body)
            .expect("a metrics response builds");
    }
    if req.uri().path().starts_with("/exec/") {
        return match exec(runtime, &node, &target, req).await {
            Ok(r) => r,
            Err((status, message)) => text(status, message),
        };
    }
    match logs(runtime, &node, &target).await {
        Ok(r) => r,
        Err((status, message)) => text(status, message),
    }
}

async fn logs(runtime: Arc<dyn Runtime>, node: &str, target: &str) -> Result<Response<Body>, Refusal> {
    let wanted = parse_logs_path(target).map_err(|e| (StatusCode::NOT_FOUND, e))?;
    let containers = runtime
        .list(node)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("node {node:?}: {e}")))?;
    let latest =
        pick_container(&containers, node, &wanted.namespace, &wanted.pod, wanted.container.as_deref())?;
    let stream = runtime.logs(&latest.id, wanted.options).map(|chunk| {
        chunk.map(|b| Frame::data(Bytes::from(b))).map_err(|e| std::io::Error::other(e.to_string()))
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(stream));
    Ok(Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .expect("a log response builds"))
}

async fn exec(
    runtime: Arc<dyn Runtime>,
    node: &str,
    target: &str,
    req: Request<Incoming>,
) -> Result<Response<Body>, Refusal> {
    if req.method() != hyper::Method::POST {
        return Err((StatusCode::METHOD_NOT_ALLOWED, "exec takes POST".to_string()));
    }
    let wanted = parse_exec_path(target).map_err(|e| (StatusCode::NOT_FOUND, e))?;
    let body = Limited::new(req.into_body(), MAX_EXEC_COMMAND).collect().await.map_err(|e| {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("cannot read the command (at most {MAX_EXEC_COMMAND} bytes): {e}"),
        )
    })?;
    let body = body.to_bytes();
    let command: Vec<String> = body
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    if command.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "no command given: corral exec POD -- COMMAND [ARGS...]".into(),
        ));
    }
    let containers = runtime
        .list(node)
        .await
        .map_err(|e| (StatusCode::SERVICE_UNAVAILABLE, format!("node {node:?}: {e}")))?;
    let (pod, ns) = (&wanted.pod, &wanted.namespace);
    let latest = pick_container(&containers, node, ns, pod, wanted.container.as_deref())?;
    let name = latest.container.as_deref().unwrap_or_default();
    if let ContainerState::Exited { exit_code, .. } = latest.state {
        return Err((
            StatusCode::CONFLICT,
            format!(
                "container {name:?} of pod {pod:?} is not running (it exited with code {exit_code}): see corral logs {pod} -c {name}, and retry once it has restarted"
            ),
        ));
    }
    if !latest.is_running() {
        return Err((
            StatusCode::CONFLICT,
            format!("container {name:?} of pod {pod:?} is not running yet: retry in a moment"),
        ));
    }
    tracing::info!(pod = %pod, namespace = %ns, container = name, ?command, "exec");
    let frames = runtime.exec_stream(&latest.id, &command).map(|event| {
        let frame = match event {
            Ok(ExecEvent::Stdout(b)) => exec_wire::Frame::Stdout(b),
            Ok(ExecEvent::Stderr(b)) => exec_wire::Frame::Stderr(b),
            Ok(ExecEvent::Exit(code)) => exec_wire::Frame::Exit(code),
            Err(e) => exec_wire::Frame::Error(e.to_string()),
        };
        Ok::<_, std::io::Error>(Frame::data(Bytes::from(frame.encode())))
    });
    Ok(Response::builder()
        .header("content-type", "application/vnd.corral.exec")
        .body(BodyExt::boxed_unsync(StreamBody::new(frames)))
        .expect("an exec response builds"))
}

/// Serves until `cancel`. A bind failure is logged, not fatal: pods run
/// without it, only `corral logs` and `corral exec` are unavailable for
/// this node.
pub async fn serve(
    addr: SocketAddr,
    runtime: Arc<dyn Runtime>,
    node: String,
    metrics: Arc<NodeMetrics>,
    cancel: CancellationToken,
) {
    let listener = match tokio::net::TcpListener::bind(addr).await {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(%addr, error = %e, "cannot serve logs and exec (is another agent on this address?)");
            return;
        }
    };
    tracing::info!(%addr, "serving container logs");
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let (runtime, node, metrics, cancel) =
            (runtime.clone(), node.clone(), metrics.clone(), cancel.clone());
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let (runtime, node, metrics) = (runtime.clone(), node.clone(), metrics.clone());
                async move { Ok::<_, Infallible>(handle(runtime, node, metrics, req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = cancel.cancelled() => {}
                r = conn => if let Err(e) = r { tracing::debug!(error = %e, "log connection ended") },
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_paths_name_the_pod_container_and_options() {
        let got = parse_logs_path("/logs/default/web-1/app?follow=true&tail=20").unwrap();
        assert_eq!(
            got,
            LogRequest {
                namespace: "default".into(),
                pod: "web-1".into(),
                container: Some("app".into()),
                options: LogOptions { follow: true, tail: Some(20) },
            }
        );
        assert_eq!(parse_logs_path("/logs/ns/p").unwrap().container, None);
        assert!(parse_logs_path("/metrics").is_err());
        assert!(parse_logs_path("/logs/ns/p?tail=x").is_err());
        assert!(parse_logs_path("/logs/ns/p?color=1").is_err());
    }

    #[test]
    fn exec_paths_name_the_pod_and_maybe_the_container() {
        let want = |c: Option<&str>| ExecRequest {
            namespace: "default".into(),
            pod: "web-1".into(),
            container: c.map(String::from),
        };
        assert_eq!(parse_exec_path("/exec/default/web-1").unwrap(), want(None));
        assert_eq!(parse_exec_path("/exec/default/web-1?container=app").unwrap(), want(Some("app")));
        assert!(parse_exec_path("/exec/default").is_err());
        assert!(parse_exec_path("/exec/default/web-1?tty=1").is_err());
    }

    #[tokio::test]
    async fn exec_frames_read_back_in_order_and_end_cleanly() {
        use exec_wire::Frame;
        let frames = vec![
            Frame::Stdout(b"hello\n".to_vec()),
            Frame::Stderr(Vec::new()),
            Frame::Stderr(b"oops".to_vec()),
            Frame::Exit(-3),
        ];
        let wire: Vec<u8> = frames.iter().flat_map(Frame::encode).collect();
        let mut reader = &wire[..];
        let mut got = Vec::new();
        while let Some(f) = Frame::read_from(&mut reader).await.unwrap() {
            got.push(f);
        }
        assert_eq!(got, frames);
        let cut = &wire[..wire.len() - 2];
        let mut reader = cut;
        let mut last = Ok(None);
        for _ in 0..4 {
            last = Frame::read_from(&mut reader).await;
        }
        assert!(last.is_err(), "a frame cut off is an error, not an end");
        let mut garbage = &b"HTTP/1.1 500"[..];
        assert!(Frame::read_from(&mut garbage).await.is_err());
    }

    fn container(pod: &str, name: Option<&str>, attempt: u32) -> ContainerInfo {
        ContainerInfo {
            id: format!("{pod}-{}-{attempt}", name.unwrap_or("sandbox")),
            pod: crate::runtime::PodRef { uid: pod.into(), namespace: "default".into(), name: pod.into() },
            node: "n1".into(),
            container: name.map(String::from),
            attempt,
            spec_hash: String::new(),
            image: "corral/busybox:1".into(),
            state: ContainerState::Created,
            ip: None,
        }
    }

    #[test]
    fn pick_container_takes_the_latest_start_and_says_what_to_choose() {
        let all = vec![
            container("solo", None, 0),
            container("solo", Some("app"), 0),
            container("solo", Some("app"), 1),
            container("duo", Some("a"), 0),
            container("duo", Some("b"), 0),
        ];
        let pick = |pod: &str, c: Option<&str>| pick_container(&all, "n1", "default", pod, c);
        assert_eq!(pick("solo", None).unwrap().id, "solo-app-1");
        assert_eq!(pick("duo", Some("b")).unwrap().id, "duo-b-0");
        let (status, msg) = pick("duo", None).unwrap_err();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(msg.contains("choose one of [a b] with -c"), "{msg}");
        let (status, msg) = pick("duo", Some("c")).unwrap_err();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(msg.contains("container \"c\" is not in pod \"duo\": choose one of [a b]"), "{msg}");
        let (status, msg) = pick("gone", None).unwrap_err();
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert!(msg.contains("has no containers on node \"n1\""), "{msg}");
    }
}
