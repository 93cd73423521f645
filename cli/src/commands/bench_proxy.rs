//! `corral bench proxy`: what the service proxy costs. An echo backend on
//! 127.0.0.1 is reached directly and through a [`node::proxy::Proxy`]
//! started in this process, the same forwarding code a node agent runs:
//! requests/s and latency with kept-alive connections and with a new
//! connection per request, then the MB/s of one bulk transfer.
//!
//! Client, proxy and backend share this process's runtime and the machine's
//! cores (as a node's proxy shares them with its pods), so the direct
//! figures are the ceiling of this machine, not of the network.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use node::proxy::{Proxy, ProxyTable, Route, ServicePortName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

use super::bench::ProxyBenchArgs;
use super::{CliError, Result};
use crate::local::free_base_port;
use crate::output::table;

fn err(e: impl std::fmt::Display) -> CliError {
    CliError::msg(e.to_string())
}

/// The echo backend's wire: a 4-byte big-endian length, then that many
/// bytes, which come back unframed. The length's top bit asks the backend
/// to close after answering (HTTP/1.0 style): the server then closes first
/// and keeps the TIME_WAIT, so a connection per request cannot use up the
/// client's ephemeral ports.
const CLOSE_AFTER: u32 = 1 << 31;

/// The largest payload the header can carry.
const MAX_PAYLOAD: usize = (CLOSE_AFTER - 1) as usize;

/// How long one request (or connect) may take before it counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

fn header(len: usize, close: bool) -> [u8; 4] {
    debug_assert!(len <= MAX_PAYLOAD, "payload length checked at the flag");
    (len as u32 | if close { CLOSE_AFTER } else { 0 }).to_be_bytes()
}

fn parse_header(h: [u8; 4]) -> (usize, bool) {
    let v = u32::from_be_bytes(h);
    ((v & !CLOSE_AFTER) as usize, v & CLOSE_AFTER != 0)
}

/// The two ports of the backend: the echo server and a sink that reads to
/// EOF and answers with the byte count (8 bytes, big-endian).
struct Backend {
    echo: SocketAddr,
    sink: SocketAddr,
}

async fn start_backend(cancel: &CancellationToken) -> Result<Backend> {
    let echo = TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
    let sink = TcpListener::bind("127.0.0.1:0").await.map_err(err)?;
    let backend = Backend { echo: echo.local_addr().map_err(err)?, sink: sink.local_addr().map_err(err)? };
    tokio::spawn(serve(echo, cancel.clone(), echo_conn));
    tokio::spawn(serve(sink, cancel.clone(), sink_conn));
    Ok(backend)
}

async fn serve<F, Fut>(listener: TcpListener, cancel: CancellationToken, handle: F)
where
    F: Fn(TcpStream) -> Fut,
    Fut: std::future::Future<Output = std::io::Result<()>> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        match accepted {
            Ok((stream, _)) => {
                let (cancel, conn) = (cancel.clone(), handle(stream));
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        _ = conn => {}
                    }
                });
            }
            // Out of descriptors and the like: the client counts the failures.
            Err(_) => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}

async fn echo_conn(mut s: TcpStream) -> std::io::Result<()> {
    s.set_nodelay(true)?;
    let mut buf = Vec::new();
    loop {
        let mut h = [0u8; 4];
        match s.read_exact(&mut h).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e),
        }
        let (len, close) = parse_header(h);
        buf.resize(len, 0);
        s.read_exact(&mut buf).await?;
        s.write_all(&buf).await?;
        if close {
            return Ok(());
        }
    }
}

async fn sink_conn(mut s: TcpStream) -> std::io::Result<()> {
    let mut buf = vec![0u8; 256 << 10];
    let mut total = 0u64;
    loop {
        match s.read(&mut buf).await? {
            0 => break,
            n => total += n as u64,
        }
    }
    s.write_all(&total.to_be_bytes()).await
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    KeptAlive,
    PerRequest,
}

impl Mode {
    fn label(self) -> &'static str {
        match self {
            Mode::KeptAlive => "kept alive",
            Mode::PerRequest => "new per request",
        }
    }
}

struct Measured {
    errors: u64,
    elapsed: Duration,
    /// Round-trip times in microseconds.
    hist: Histogram<u64>,
}

impl Measured {
    fn per_second(&self) -> f64 {
        self.hist.len() as f64 / self.elapsed.as_secs_f64()
    }

    fn quantile_us(&self, q: f64) -> u64 {
        self.hist.value_at_quantile(q)
    }
}

/// `connections` clients send requests to `target` until `requests` are
/// taken or `max_time` passes; each records its round trips.
async fn measure(target: SocketAddr, mode: Mode, args: &ProxyBenchArgs) -> Measured {
    let start = Instant::now();
    let deadline = start + args.max_time;
    let taken = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (taken, errors, requests) = (taken.clone(), errors.clone(), args.requests);
        let mut frame = header(args.payload, mode == Mode::PerRequest).to_vec();
        frame.resize(4 + args.payload, b'x');
        tasks.push(tokio::spawn(async move {
            let mut hist = Histogram::<u64>::new(3).expect("histogram bounds are valid");
            let mut reply = vec![0u8; frame.len() - 4];
            let mut conn: Option<TcpStream> = None;
            while taken.fetch_add(1, Ordering::Relaxed) < requests && Instant::now() < deadline {
                let t = Instant::now();
                let done = tokio::time::timeout(REQUEST_TIMEOUT, async {
                    match mode {
                        Mode::KeptAlive => {
                            if conn.is_none() {
                                conn = Some(connect(target).await?);
                            }
                            let s = conn.as_mut().expect("connected just above");
                            round_trip(s, &frame, &mut reply).await
                        }
                        Mode::PerRequest => {
                            let mut s = connect(target).await?;
                            round_trip(&mut s, &frame, &mut reply).await?;
                            // Wait for the server's FIN: it closes first.
                            let mut rest = [0u8; 1];
                            match s.read(&mut rest).await? {
                                0 => Ok(()),
                                _ => Err(std::io::Error::other("more bytes than the payload")),
                            }
                        }
                    }
                })
                .await;
                match done {
                    Ok(Ok(())) => {
                        let _ = hist.record(t.elapsed().as_micros() as u64);
                    }
                    _ => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        conn = None;
                    }
                }
            }
            hist
        }));
    }
    let mut hist = Histogram::<u64>::new(3).expect("histogram bounds are valid");
    for t in tasks {
        if let Ok(h) = t.await {
            hist.add(h).expect("histograms share bounds");
        }
    }
    Measured { errors: errors.load(Ordering::Relaxed), elapsed: start.elapsed(), hist }
}

async fn connect(target: SocketAddr) -> std::io::Result<TcpStream> {
    let s = TcpStream::connect(target).await?;
    s.set_nodelay(true)?;
    Ok(s)
}

async fn round_trip(s: &mut TcpStream, frame: &[u8], reply: &mut [u8]) -> std::io::Result<()> {
    s.write_all(frame).await?;
    s.read_exact(reply).await?;
    Ok(())
}

/// Sends `bytes` to the sink at `target` in one connection; the time until
/// the sink confirmed it read them all.
async fn bulk(target: SocketAddr, bytes: u64, max_time: Duration) -> Result<Duration> {
    let transfer = async {
        let mut s = TcpStream::connect(target).await?;
        let chunk = vec![b'x'; 256 << 10];
        let start = Instant::now();
        let mut left = bytes;
        while left > 0 {
            let n = left.min(chunk.len() as u64) as usize;
            s.write_all(&chunk[..n]).await?;
            left -= n as u64;
        }
        s.shutdown().await?;
        let got = s.read_u64().await?;
        if got != bytes {
            return Err(std::io::Error::other(format!("the sink read {got} of {bytes} bytes")));
        }
        Ok(start.elapsed())
    };
    match tokio::time::timeout(max_time, transfer).await {
        Ok(Ok(took)) => Ok(took),
        Ok(Err(e)) => Err(err(format!("bulk transfer to {target}: {e}"))),
        Err(_) => Err(err(format!("bulk transfer to {target}: not done within {max_time:?}"))),
    }
}

fn route(listen: SocketAddr, name: &str, backend: SocketAddr) -> Route {
    let service = ServicePortName { namespace: "bench".into(), name: name.into(), port: None };
    Route { listen, service, backends: vec![backend] }
}

pub async fn run(args: &ProxyBenchArgs) -> Result<()> {
    if args.connections == 0 || args.payload == 0 || args.payload > MAX_PAYLOAD {
        return Err(err(format!(
            "--connections must be at least 1 and --payload 1 to {MAX_PAYLOAD} bytes (got {} and {})",
            args.connections, args.payload
        )));
    }
    let cancel = CancellationToken::new();
    let _stop = cancel.clone().drop_guard();
    let backend = start_backend(&cancel).await?;
    let port = free_base_port(2);
    let proxied_echo = SocketAddr::from(([127, 0, 0, 1], port));
    let proxied_sink = SocketAddr::from(([127, 0, 0, 1], port + 1));
    let proxy = Proxy::start(cancel.clone());
    let routes = ProxyTable {
        routes: vec![route(proxied_echo, "echo", backend.echo), route(proxied_sink, "sink", backend.sink)],
        ..ProxyTable::default()
    };
    proxy.apply(&routes).await;
    if let Some(e) = proxy.status().into_iter().find_map(|l| l.error.map(|e| format!("{}: {e}", l.listen))) {
        return Err(err(format!("the proxy cannot listen: {e}")));
    }

    println!(
        "corral bench proxy: {} requests of {} bytes (echoed back) per row, {} connections, at most {:?} per row",
        args.requests, args.payload, args.connections, args.max_time
    );
    println!(
        "echo backend {}, proxy {proxied_echo}; client, proxy and backend in this one process",
        backend.echo
    );
    let mut rows = Vec::new();
    let mut ratios = Vec::new();
    for mode in [Mode::KeptAlive, Mode::PerRequest] {
        let direct = measure(backend.echo, mode, args).await;
        let proxied = measure(proxied_echo, mode, args).await;
        for (path, m) in [("direct", &direct), ("proxied", &proxied)] {
            rows.push(vec![
                mode.label().to_string(),
                path.to_string(),
                m.hist.len().to_string(),
                format!("{:.0}", m.per_second()),
                format!("{:.3}", m.quantile_us(0.50) as f64 / 1000.0),
                format!("{:.3}", m.quantile_us(0.99) as f64 / 1000.0),
                m.errors.to_string(),
            ]);
        }
        ratios.push(format!(
            "{}: proxied/direct requests/s {:.2}; the proxy adds {} µs at p50, {} µs at p99",
            mode.label(),
            proxied.per_second() / direct.per_second(),
            proxied.quantile_us(0.50) as i64 - direct.quantile_us(0.50) as i64,
            proxied.quantile_us(0.99) as i64 - direct.quantile_us(0.99) as i64,
        ));
    }
    println!(
        "{}",
        table(&["connections", "path", "requests", "requests/s", "p50 ms", "p99 ms", "errors"], rows)
    );
    for line in ratios {
        println!("{line}");
    }

    if args.bulk_mib > 0 {
        let bytes = args.bulk_mib << 20;
        let direct = bulk(backend.sink, bytes, args.max_time).await?;
        let proxied = bulk(proxied_sink, bytes, args.max_time).await?;
        let mb_s = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
        println!(
            "bulk {} MiB in one connection: direct {:.0} MB/s, proxied {:.0} MB/s (proxied/direct {:.2}; 1 MB = 10^6 bytes)",
            args.bulk_mib,
            mb_s(direct),
            mb_s(proxied),
            mb_s(proxied) / mb_s(direct)
        );
    }
    let stats = proxy.stats();
    let (accepted, failed) = stats.values().fold((0, 0), |(a, f), s| (a + s.accepted, f + s.failed));
    println!("proxy: {accepted} connections accepted, {failed} with no backend answering");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_carries_length_and_close_flag() {
        for (len, close) in [(0, false), (1024, false), (1024, true), (MAX_PAYLOAD, true)] {
            assert_eq!(parse_header(header(len, close)), (len, close));
        }
    }
}
