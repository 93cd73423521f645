use std::net::SocketAddr;
use std::str::FromStr;

use control_plane::api::meta::ObjectMeta;
use control_plane::api::service::ServiceSpec;
use hickory_server::net::client::{Client, ClientHandle};
use hickory_server::net::runtime::TokioRuntimeProvider;
use hickory_server::net::tcp::TcpClientStream;
use hickory_server::net::udp::UdpClientStream;
use hickory_server::proto::op::DnsResponse;
use tokio::task::JoinHandle;

use super::*;

/// Every network step of these tests is bounded by this.
const STEP: Duration = Duration::from_secs(5);

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn table(entries: &[(&str, &str, &str)]) -> ServiceRecords {
    let mut records = ServiceRecords::new();
    for (namespace, name, addr) in entries {
        records.insert(namespace, name, ip(addr));
    }
    records
}

fn name(s: &str) -> Name {
    Name::from_str(s).unwrap()
}

#[test]
fn resolve_answers_by_the_table() {
    let records = table(&[("default", "web", "10.96.0.10"), ("shop", "cart", "10.96.0.11")]);
    use Answer::*;
    use RecordType as T;
    let cases = [
        ("web.default.svc.cluster.local.", T::A, Address(ip("10.96.0.10"))),
        ("WEB.Default.SVC.Cluster.Local.", T::A, Address(ip("10.96.0.10"))),
        ("cart.shop.svc.cluster.local.", T::ANY, Address(ip("10.96.0.11"))),
        ("web.default.svc.cluster.local.", T::AAAA, NoData),
        ("web.default.svc.cluster.local.", T::MX, NoData),
        ("cart.default.svc.cluster.local.", T::A, NxDomain),
        ("nope.default.svc.cluster.local.", T::AAAA, NxDomain),
        ("x.web.default.svc.cluster.local.", T::A, NxDomain),
        ("web.cluster.local.", T::A, NxDomain),
        ("web.default.cluster.local.", T::A, NxDomain),
        ("default.svc.cluster.local.", T::A, NoData),
        ("empty.svc.cluster.local.", T::A, NxDomain),
        ("svc.cluster.local.", T::A, NoData),
        ("cluster.local.", T::SOA, Soa),
        ("cluster.local.", T::A, NoData),
        ("example.com.", T::A, Refused),
        ("web.default.svc.cluster.local.example.com.", T::A, Refused),
        ("local.", T::A, Refused),
        (".", T::A, Refused),
    ];
    for (qname, qtype, want) in cases {
        assert_eq!(records.resolve(&name(qname), qtype), want, "{qname} {qtype}");
    }
}

fn service(namespace: Option<&str>, name: &str, cluster_ip: Option<&str>) -> Service {
    Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: namespace.map(Into::into),
            ..Default::default()
        },
        spec: ServiceSpec { cluster_ip: cluster_ip.map(Into::into), ..Default::default() },
        status: None,
    }
}

#[test]
fn records_from_takes_cluster_ips_and_skips_headless_and_unassigned_services() {
    let services = [
        service(Some("shop"), "cart", Some("10.96.0.11")),
        service(None, "web", Some("10.96.0.10")),
        service(Some("shop"), "headless", Some("None")),
        service(Some("shop"), "pending", None),
        service(Some("shop"), "empty", Some("")),
        service(Some("shop"), "v6", Some("fd00::1")),
    ];
    let records = records_from(&services);
    assert_eq!(records, table(&[("shop", "cart", "10.96.0.11"), ("default", "web", "10.96.0.10")]));
}

/// A responder on an ephemeral loopback port, stopped by `stop`.
struct Harness {
    addr: SocketAddr,
    table: watch::Sender<ServiceRecords>,
    cancel: CancellationToken,
    task: JoinHandle<Result<(), DnsError>>,
}

impl Harness {
    async fn start(records: ServiceRecords) -> Self {
        let (table, rx) = watch::channel(records);
        let responder = DnsResponder::bind("127.0.0.1:0".parse().unwrap(), rx).await.unwrap();
        let addr = responder.local_addr();
        let cancel = CancellationToken::new();
        let task = tokio::spawn(responder.run(cancel.clone()));
        Self { addr, table, cancel, task }
    }

    async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(STEP, self.task).await.expect("the responder stops when cancelled");
        result.unwrap().unwrap();
    }
}

async fn query_udp(addr: SocketAddr, qname: &str, qtype: RecordType) -> DnsResponse {
    let stream =
        UdpClientStream::builder(addr, TokioRuntimeProvider::default()).with_timeout(Some(STEP)).build();
    let (mut client, background) = Client::<TokioRuntimeProvider>::from_sender(stream);
    let background = tokio::spawn(background);
    let response = tokio::time::timeout(STEP, client.query(name(qname), DNSClass::IN, qtype)).await;
    background.abort();
    response.expect("an answer within the step").unwrap()
}

async fn query_tcp(addr: SocketAddr, qname: &str, qtype: RecordType) -> DnsResponse {
    let (connect, handle) = TcpClientStream::new(addr, None, Some(STEP), TokioRuntimeProvider::default());
    let stream = tokio::time::timeout(STEP, connect).await.unwrap().unwrap();
    let (mut client, background) = Client::<TokioRuntimeProvider>::with_timeout(stream, handle, STEP);
    let background = tokio::spawn(background);
    let response = tokio::time::timeout(STEP, client.query(name(qname), DNSClass::IN, qtype)).await;
    background.abort();
    response.expect("an answer within the step").unwrap()
}

fn addresses(response: &DnsResponse) -> Vec<Ipv4Addr> {
    response
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn known_service_name_resolves_to_its_cluster_ip() {
    let dns = Harness::start(table(&[("default", "web", "10.96.0.10")])).await;
    let response = query_udp(dns.addr, "web.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.metadata.authoritative);
    assert_eq!(addresses(&response), [ip("10.96.0.10")]);
    assert_eq!(response.answers[0].ttl, TTL);
    dns.stop().await;
}

#[tokio::test]
async fn names_match_in_any_letter_case() {
    let dns = Harness::start(table(&[("default", "web", "10.96.0.10")])).await;
    let response = query_udp(dns.addr, "Web.DEFAULT.svc.Cluster.Local.", RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert_eq!(addresses(&response), [ip("10.96.0.10")]);
    dns.stop().await;
}

#[tokio::test]
async fn unknown_name_under_cluster_local_is_an_authoritative_nxdomain() {
    let dns = Harness::start(table(&[("default", "web", "10.96.0.10")])).await;
    let response = query_udp(dns.addr, "db.default.svc.cluster.local.", RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NXDomain);
    assert!(response.metadata.authoritative);
    assert!(response.answers.is_empty());
    // The SOA lets resolvers cache the negative answer for TTL seconds.
    assert!(matches!(response.authorities.as_slice(), [r] if r.record_type() == RecordType::SOA));
    dns.stop().await;
}

#[tokio::test]
async fn aaaa_for_a_known_service_is_noerror_without_answers() {
    let dns = Harness::start(table(&[("default", "web", "10.96.0.10")])).await;
    let response = query_udp(dns.addr, "web.default.svc.cluster.local.", RecordType::AAAA).await;
    assert_eq!(response.metadata.response_code, ResponseCode::NoError);
    assert!(response.answers.is_empty());
    dns.stop().await;
}

#[tokio::test]
async fn names_outside_cluster_local_are_refused() {
    let dns = Harness::start(table(&[("default", "web", "10.96.0.10")])).await;
    let response = query_udp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(response.metadata.response_code, ResponseCode::Refused);
    assert!(!response.metadata.authoritative);
    assert!(response.answers.is_empty());
    dns.stop().await;
}

#[tokio::test]
async fn table_updates_apply_to_the_next_query() {
    let dns = Harness::start(ServiceRecords::new()).await;
    let fqdn = "web.default.svc.cluster.local.";
    let before = query_udp(dns.addr, fqdn, RecordType::A).await;
    assert_eq!(before.metadata.response_code, ResponseCode::NXDomain);

    dns.table.send_replace(table(&[("default", "web", "10.96.0.10")]));
    let added = query_udp(dns.addr, fqdn, RecordType::A).await;
    assert_eq!(addresses(&added), [ip("10.96.0.10")]);

    dns.table.send_replace(table(&[("default", "web", "10.96.0.99")]));
    let changed = query_udp(dns.addr, fqdn, RecordType::A).await;
    assert_eq!(addresses(&changed), [ip("10.96.0.99")]);

    dns.table.send_replace(ServiceRecords::new());
    let removed = query_udp(dns.addr, fqdn, RecordType::A).await;
    assert_eq!(removed.metadata.response_code, ResponseCode::NXDomain);
    dns.stop().await;
}

#[tokio::test]
async fn tcp_queries_are_answered_like_udp_ones() {
    let dns = Harness::start(table(&[("shop", "cart", "10.96.0.11")])).await;
    let known = query_tcp(dns.addr, "cart.shop.svc.cluster.local.", RecordType::A).await;
    assert_eq!(addresses(&known), [ip("10.96.0.11")]);
    let outside = query_tcp(dns.addr, "example.com.", RecordType::A).await;
    assert_eq!(outside.metadata.response_code, ResponseCode::Refused);
    dns.stop().await;
}

#[tokio::test]
async fn bind_failure_names_the_address() {
    let taken = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = taken.local_addr().unwrap();
    let (_table, rx) = watch::channel(ServiceRecords::new());
    let error = serve(addr, rx, CancellationToken::new()).await.unwrap_err();
    assert!(matches!(error, DnsError::Bind { addr: a, protocol: "udp", .. } if a == addr), "{error:?}");
    assert!(error.to_string().contains(&addr.to_string()), "{error}");
}
