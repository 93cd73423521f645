//! The proxy against real sockets on 127.0.0.0/8, with ephemeral ports.
//! Every wait is bounded by a timeout.

use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use control_plane::api::service::{EndpointAddress, EndpointPort, EndpointSubset, ServicePort};
use control_plane::api::{Endpoints, ObjectMeta, Service};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::time::timeout;
use tokio_util::sync::CancellationToken;

use super::*;
use crate::proxy::plan::plan;

const WAIT: Duration = Duration::from_secs(5);

/// A backend that answers every line with `"<id> <line>"`.
async fn backend(id: &'static str) -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind backend");
    let addr = socket.local_addr().expect("backend address");
    tokio::spawn(async move {
        while let Ok((stream, _)) = socket.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if write.write_all(format!("{id} {line}\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// An address nobody listens on: connects to it are refused.
async fn dead_backend() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    socket.local_addr().expect("address")
}

/// A port free on `ip` right now (the OS picks it; we let it go at once).
fn free_port(ip: &str) -> u16 {
    let socket = std::net::TcpListener::bind((ip, 0)).expect("bind for a free port");
    socket.local_addr().expect("address").port()
}

/// A service `name` on `port`, with clusterIP `cluster_ip`, whose
/// Endpoints are `backends` (one subset each, as they differ in port).
fn service(name: &str, cluster_ip: &str, port: u16, backends: &[SocketAddr]) -> (Service, Endpoints) {
    let metadata = ObjectMeta { name: name.into(), namespace: Some("default".into()), ..Default::default() };
    let mut svc = Service { metadata: metadata.clone(), ..Default::default() };
    svc.spec.cluster_ip = Some(cluster_ip.into());
    svc.spec.ports = vec![ServicePort { port: i32::from(port), ..Default::default() }];
    let subsets = backends
        .iter()
        .map(|b| EndpointSubset {
            addresses: vec![EndpointAddress { ip: b.ip().to_string(), ..Default::default() }],
            ports: vec![EndpointPort { port: i32::from(b.port()), ..Default::default() }],
            ..Default::default()
        })
        .collect();
    (svc, Endpoints { metadata, subsets, ..Default::default() })
}

fn table(services: &[(Service, Endpoints)]) -> ProxyTable {
    let (svcs, eps): (Vec<Service>, Vec<Endpoints>) = services.iter().cloned().unzip();
    let t = plan(&svcs, &eps, &[]);
    assert!(t.conflicts.is_empty() && t.invalid.is_empty(), "{t:?}");
    t
}

async fn connect(addr: SocketAddr) -> BufReader<TcpStream> {
    let stream = timeout(WAIT, TcpStream::connect(addr)).await.expect("connect in time").expect("connect");
    BufReader::new(stream)
}

/// Sends one line, returns the id of the backend that answered it.
async fn ask(stream: &mut BufReader<TcpStream>, line: &str) -> String {
    stream.get_mut().write_all(format!("{line}\n").as_bytes()).await.expect("send");
    let mut reply = String::new();
    timeout(WAIT, stream.read_line(&mut reply)).await.expect("reply in time").expect("reply");
    let (id, echoed) = reply.trim_end().split_once(' ').unwrap_or_else(|| panic!("odd reply {reply:?}"));
    assert_eq!(echoed, line);
    id.to_string()
}

/// A new connection through `addr`: which backend answers.
async fn who(addr: SocketAddr) -> String {
    ask(&mut connect(addr).await, "hello").await
}

/// Waits (bounded) until the listener at `addr` counts no active connection.
async fn until_idle(proxy: &Proxy, addr: SocketAddr) -> ListenerStats {
    let deadline = Instant::now() + WAIT;
    loop {
        let stats = proxy.stats()[&addr];
        if stats.active == 0 || Instant::now() > deadline {
            return stats;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn connections_go_round_robin_over_three_backends() {
    let mut backends = [(backend("a").await, "a"), (backend("b").await, "b"), (backend("c").await, "c")];
    backends.sort();
    let addrs: Vec<SocketAddr> = backends.iter().map(|b| b.0).collect();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let proxy = Proxy::start(CancellationToken::new());
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &addrs)])).await;

    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(who(listen).await);
    }
    // The plan sorts backends, and the first connection takes the first.
    let order: Vec<String> = backends.iter().map(|b| b.1.to_string()).collect();
    assert_eq!(seen, [order.clone(), order].concat());
    assert_eq!(until_idle(&proxy, listen).await, ListenerStats { accepted: 6, active: 0, failed: 0 });
}

#[tokio::test]
async fn a_refused_backend_is_skipped() {
    let mut backends = vec![backend("live-1").await, dead_backend().await, backend("live-2").await];
    backends.sort();
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let proxy = Proxy::start(CancellationToken::new());
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &backends)])).await;

    for _ in 0..6 {
        let id = timeout(WAIT, who(listen)).await.expect("served in time");
        assert!(id.starts_with("live-"), "{id}");
    }
    assert_eq!(proxy.stats()[&listen].failed, 0);
}

#[tokio::test]
async fn an_unresponsive_backend_times_out_and_the_next_is_used() {
    // A listener whose accept queue is full drops new SYNs: connects hang.
    let stuck = TcpSocket::new_v4().expect("socket");
    stuck.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let stuck = stuck.listen(1).expect("listen");
    let stuck_addr = stuck.local_addr().expect("address");
    let mut fillers = Vec::new();
    for _ in 0..8 {
        match timeout(Duration::from_millis(200), TcpStream::connect(stuck_addr)).await {
            Ok(Ok(s)) => fillers.push(s),
            _ => break,
        }
    }
    let live = backend("live").await;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let config = ProxyConfig { connect_timeout: Duration::from_millis(300), ..Default::default() };
    let proxy = Proxy::with_config(config, CancellationToken::new());
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &[stuck_addr, live])])).await;

    // Two connections: one of them starts at the stuck backend and must move on.
    let started = Instant::now();
    for _ in 0..2 {
        assert_eq!(timeout(WAIT, who(listen)).await.expect("served in time"), "live");
    }
    assert!(started.elapsed() >= Duration::from_millis(300), "no connect waited: {:?}", started.elapsed());
    drop((stuck, fillers));
}

#[tokio::test]
async fn a_service_without_backends_closes_connections_at_once() {
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let proxy = Proxy::start(CancellationToken::new());
    proxy.apply(&table(&[service("lonely", "127.0.0.1", listen.port(), &[])])).await;

    let mut stream = connect(listen).await;
    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(2), stream.read(&mut buf)).await.expect("closed promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert_eq!(until_idle(&proxy, listen).await, ListenerStats { accepted: 1, active: 0, failed: 1 });
}

#[tokio::test]
async fn an_endpoint_change_applies_to_new_connections_and_spares_established_ones() {
    let (a, b, c) = (backend("a").await, backend("b").await, backend("c").await);
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let proxy = Proxy::start(CancellationToken::new());
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &[a, b])])).await;
    let mut first = connect(listen).await;
    let mut second = connect(listen).await;
    let kept = ask(&mut first, "before").await;
    let dropped = ask(&mut second, "before").await;
    let mut pair = [kept.clone(), dropped.clone()];
    pair.sort();
    assert_eq!(pair, ["a", "b"]);
    let kept_addr = if kept == "a" { a } else { b };

    // The endpoint behind `second` goes, `c` comes.
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &[kept_addr, c])])).await;
    let mut fresh = Vec::new();
    for _ in 0..4 {
        fresh.push(who(listen).await);
    }
    assert!(fresh.contains(&"c".to_string()), "{fresh:?}");
    assert!(!fresh.contains(&dropped), "a removed endpoint got a new connection: {fresh:?}");
    // Established connections keep their backend, kept or removed alike.
    assert_eq!(ask(&mut first, "after").await, kept);
    assert_eq!(ask(&mut second, "after").await, dropped);
}

#[tokio::test]
async fn removing_a_service_closes_its_listener() {
    let a = backend("a").await;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let proxy = Proxy::start(CancellationToken::new());
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &[a])])).await;
    let mut established = connect(listen).await;
    assert_eq!(ask(&mut established, "one").await, "a");

    proxy.apply(&ProxyTable::default()).await;
    let refused = timeout(WAIT, TcpStream::connect(listen)).await.expect("answer in time");
    assert_eq!(refused.expect_err("listener closed").kind(), io::ErrorKind::ConnectionRefused);
    assert_eq!(proxy.status(), vec![]);
    // What was established through it keeps going.
    assert_eq!(ask(&mut established, "two").await, "a");
}

#[tokio::test]
async fn one_port_on_two_loopback_addresses_at_once() {
    let (a, b) = (backend("a").await, backend("b").await);
    let port = free_port("127.0.0.2");
    let proxy = Proxy::start(CancellationToken::new());
    proxy
        .apply(&table(&[service("one", "127.0.0.2", port, &[a]), service("two", "127.0.0.3", port, &[b])]))
        .await;

    assert!(proxy.status().iter().all(|s| s.error.is_none()), "{:?}", proxy.status());
    let ip = |last| IpAddr::from([127, 0, 0, last]);
    assert_eq!(who(SocketAddr::new(ip(2), port)).await, "a");
    assert_eq!(who(SocketAddr::new(ip(3), port)).await, "b");
}

#[tokio::test]
async fn two_proxies_share_an_address() {
    // Several agents on one machine serve the same cluster IP and port.
    let a = backend("a").await;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let t = table(&[service("web", "127.0.0.1", listen.port(), &[a])]);
    let (one, two) = (Proxy::start(CancellationToken::new()), Proxy::start(CancellationToken::new()));
    one.apply(&t).await;
    two.apply(&t).await;
    for p in [&one, &two] {
        assert!(p.status().iter().all(|s| s.error.is_none()), "{:?}", p.status());
    }
    for _ in 0..4 {
        assert_eq!(who(listen).await, "a");
    }
}

#[tokio::test]
async fn a_bind_conflict_is_reported_and_retried_on_the_next_apply() {
    // A plain listener without SO_REUSEPORT holds the address.
    let squatter = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let listen = squatter.local_addr().expect("address");
    let a = backend("a").await;
    let t = table(&[service("web", "127.0.0.1", listen.port(), &[a])]);
    let proxy = Proxy::start(CancellationToken::new());
    proxy.apply(&t).await;

    let status = proxy.status();
    assert_eq!(status.len(), 1);
    assert_eq!((status[0].listen, status[0].service.to_string()), (listen, "default/web".to_string()));
    let error = status[0].error.clone().expect("a bind error");
    assert!(error.to_lowercase().contains("in use"), "{error}");

    drop(squatter);
    proxy.apply(&t).await;
    assert_eq!(proxy.status()[0].error, None);
    assert_eq!(who(listen).await, "a");
}

#[tokio::test]
async fn cancelling_the_token_closes_listeners() {
    let a = backend("a").await;
    let listen: SocketAddr = ([127, 0, 0, 1], free_port("127.0.0.1")).into();
    let cancel = CancellationToken::new();
    let proxy = Proxy::start(cancel.clone());
    proxy.apply(&table(&[service("web", "127.0.0.1", listen.port(), &[a])])).await;
    assert_eq!(who(listen).await, "a");

    cancel.cancel();
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(listen).await {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            _ if Instant::now() > deadline => panic!("{listen} still accepts after cancel"),
            _ => tokio::time::sleep(Duration::from_millis(10)).await,
        }
    }
}
