//! The agent's own HTTP endpoint on the node's address (port 10250, as
//! kubelet's): `corral logs` streams a container's log from here, and
//! Prometheus scrapes `/metrics`.
//!
//! `GET /logs/{namespace}/{pod}/{container}?follow=true&tail=N` answers
//! with the log of the container's latest start, as plain text.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::StreamExt;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Bytes, Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use super::metrics::NodeMetrics;
use crate::runtime::{LogOptions, Runtime};

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

fn text(status: StatusCode, message: String) -> Response<Body> {
    let body = Full::new(Bytes::from(message + "\n")).map_err(|e: Infallible| match e {}).boxed_unsync();
    Response::builder().status(status).body(body).expect("a static response builds")
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
    let wanted = match parse_logs_path(&target) {
        Ok(w) => w,
        Err(e) => return text(StatusCode::NOT_FOUND, e),
    };
    let containers = match runtime.list(&node).await {
        Ok(c) => c,
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("node {node:?}: {e}")),
    };
    let of_pod: Vec<_> = containers
        .iter()
        .filter(|c| !c.is_sandbox() && c.pod.namespace == wanted.namespace && c.pod.name == wanted.pod)
        .collect();
    let names: std::collections::BTreeSet<&str> =
        of_pod.iter().filter_map(|c| c.container.as_deref()).collect();
    let name = match (&wanted.container, names.len()) {
        (Some(c), _) => c.clone(),
        (None, 1) => names.iter().next().map(|s| s.to_string()).unwrap_or_default(),
        (None, 0) => {
            return text(
                StatusCode::NOT_FOUND,
                format!("pod {:?} has no containers on node {node:?}", wanted.pod),
            )
        }
        (None, _) => {
            let list = names.iter().copied().collect::<Vec<_>>().join(" ");
            return text(
                StatusCode::BAD_REQUEST,
                format!("pod {:?} has several containers: choose one of [{list}] with -c", wanted.pod),
            );
        }
    };
    let Some(latest) =
        of_pod.iter().filter(|c| c.container.as_deref() == Some(name.as_str())).max_by_key(|c| c.attempt)
    else {
        return text(StatusCode::NOT_FOUND, format!("container {name:?} is not in pod {:?}", wanted.pod));
    };
    let stream = runtime.logs(&latest.id, wanted.options).map(|chunk| {
        chunk.map(|b| Frame::data(Bytes::from(b))).map_err(|e| std::io::Error::other(e.to_string()))
    });
    let body = BodyExt::boxed_unsync(StreamBody::new(stream));
    Response::builder()
        .header("content-type", "text/plain; charset=utf-8")
        .body(body)
        .expect("a log response builds")
}

/// Serves until `cancel`. A bind failure is logged, not fatal: pods run
/// without it, only `corral logs` is unavailable for this node.
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
            tracing::warn!(%addr, error = %e, "cannot serve logs (is another agent on this address?)");
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
}
