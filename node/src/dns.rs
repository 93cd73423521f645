//! The DNS responder a node agent runs for its pods: it answers A queries
//! for Services under `cluster.local.` from a table the agent keeps
//! current, over UDP and TCP.
//!
//! Pods get this responder as their only name server, with the search
//! path `NAMESPACE.svc.cluster.local svc.cluster.local cluster.local` and
//! `ndots:5`. Their resolver expands what they ask for, so the responder
//! only ever has to answer the fully qualified form:
//!
//! | the pod asks for                 | the resolver sends (first hit wins)  |
//! | -------------------------------- | ------------------------------------ |
//! | `web` (same namespace)           | `web.NAMESPACE.svc.cluster.local.`   |
//! | `web.shop`                       | `web.shop.svc.cluster.local.`        |
//! | `web.shop.svc`                   | `web.shop.svc.cluster.local.`        |
//! | `web.shop.svc.cluster.local`     | `web.shop.svc.cluster.local.`        |
//!
//! What it answers ([`ServiceRecords::resolve`], a pure function):
//! - `NAME.NAMESPACE.svc.cluster.local.`, any letter case: the Service's
//!   cluster IP as an A record with a TTL of [`TTL`] seconds; AAAA (or any
//!   other type) for a known Service: NOERROR with no answer.
//! - `cluster.local.`, `svc.cluster.local.` and `NAMESPACE.svc.cluster.local.`
//!   of a namespace with Services exist without addresses: NOERROR, no
//!   answer (SOA at the apex).
//! - Any other name under `cluster.local.`: NXDOMAIN, authoritative, with
//!   the zone's SOA so resolvers cache the negative answer for [`TTL`] s.
//! - Names outside `cluster.local.` (and classes other than IN): REFUSED.
//!   The responder never forwards: nothing leaves the node's own networks.
//!
//! What it does not own: watching Services (the agent does, and sends
//! [`records_from`] of them down a `watch` channel), pod resolv.conf (the
//! runtime writes it from `SandboxConfig::dns_servers`), PTR records for
//! cluster IPs, SRV records for named ports, and pod A records.

use std::collections::BTreeMap;
use std::io;
use std::iter;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use control_plane::api::Service;
use hickory_server::proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_server::proto::rr::rdata::{A, SOA};
use hickory_server::proto::rr::{DNSClass, Name, RData, Record, RecordType};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use hickory_server::Server;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The zone the responder is authoritative for.
pub const CLUSTER_DOMAIN: &str = "cluster.local.";

/// Time to live of every answer, positive and negative, in seconds: short,
/// so a Service created or deleted is seen by pods within seconds.
pub const TTL: u32 = 5;

/// A TCP connection that sends no query for this long is closed.
const TCP_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection before the connection waits.
const TCP_RESPONSE_QUEUE: usize = 32;
/// How often binding TCP to the port UDP got from the OS is tried, when
/// the caller asked for port 0 and another process holds that TCP port.
const EPHEMERAL_BIND_TRIES: usize = 8;
/// Bound on the wait for in-flight answers at shutdown.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);

/// What went wrong with the responder, with the address it concerns.
#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot bind the DNS responder to {addr} ({protocol}): {source}")]
    Bind { addr: SocketAddr, protocol: &'static str, source: io::Error },
    #[error("the DNS responder on {addr} stopped unexpectedly: {reason}")]
    Stopped { addr: SocketAddr, reason: String },
}

/// Service (namespace, name) → cluster IP, the whole of what the responder
/// knows. Keys are kept in lower case: DNS names compare without case.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServiceRecords {
    services: BTreeMap<(String, String), Ipv4Addr>,
}

/// The responder's decision for one question, before it becomes a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// One A record: the Service's cluster IP.
    Address(Ipv4Addr),
    /// The zone's SOA record (a query for SOA at `cluster.local.`).
    Soa,
    /// The name exists, but not with this record type: NOERROR, no answer.
    NoData,
    /// No such name under `cluster.local.`: authoritative NXDOMAIN.
    NxDomain,
    /// Not our zone: we answer for `cluster.local.` only and never forward.
    Refused,
}

impl ServiceRecords {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the address of Service `namespace/name`.
    pub fn insert(&mut self, namespace: &str, name: &str, cluster_ip: Ipv4Addr) {
        self.services.insert((namespace.to_ascii_lowercase(), name.to_ascii_lowercase()), cluster_ip);
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Ipv4Addr> {
        self.services.get(&(namespace.to_ascii_lowercase(), name.to_ascii_lowercase())).copied()
    }

    pub fn len(&self) -> usize {
        self.services.len()
    }

    pub fn is_empty(&self) -> bool {
        self.services.is_empty()
    }

    fn has_namespace(&self, namespace: &str) -> bool {
        self.services
            .range((namespace.to_string(), String::new())..)
            .next()
            .is_some_and(|((ns, _), _)| ns == namespace)
    }

    /// What to answer to a question for `name` (taken as fully qualified,
    /// as names on the wire are) and `qtype` in class IN. Pure.
    pub fn resolve(&self, name: &Name, qtype: RecordType) -> Answer {
        let labels: Vec<String> =
            name.iter().map(|l| String::from_utf8_lossy(l).to_ascii_lowercase()).collect();
        let Some(inside) = labels.strip_suffix(&["cluster".to_string(), "local".to_string()]) else {
            return Answer::Refused;
        };
        let wants_address = matches!(qtype, RecordType::A | RecordType::ANY);
        match inside {
            [] if qtype == RecordType::SOA => Answer::Soa,
            [] => Answer::NoData,
            [svc] if svc == "svc" => Answer::NoData,
            [namespace, svc] if svc == "svc" && self.has_namespace(namespace) => Answer::NoData,
            [service, namespace, svc] if svc == "svc" => {
                match self.services.get(&(namespace.clone(), service.clone())) {
                    Some(ip) if wants_address => Answer::Address(*ip),
                    Some(_) => Answer::NoData,
                    None => Answer::NxDomain,
                }
            }
            _ => Answer::NxDomain,
        }
    }
}

/// The table for `services`: each one's `spec.clusterIP` under its name
/// and namespace (`default` when unset). Headless Services (`None`),
/// Services with no cluster IP yet and IPv6 cluster IPs are left out: the
/// responder answers A records only.
pub fn records_from(services: &[Service]) -> ServiceRecords {
    let mut records = ServiceRecords::new();
    for s in services {
        let Some(ip) = s.spec.cluster_ip.as_deref().and_then(|ip| ip.parse::<Ipv4Addr>().ok()) else {
            continue;
        };
        if s.metadata.name.is_empty() {
            continue;
        }
        records.insert(s.metadata.namespace.as_deref().unwrap_or("default"), &s.metadata.name, ip);
    }
    records
}

/// UDP and TCP sockets bound to one address, ready to answer.
#[derive(Debug)]
pub struct DnsResponder {
    udp: UdpSocket,
    tcp: TcpListener,
    local_addr: SocketAddr,
    records: watch::Receiver<ServiceRecords>,
}

impl DnsResponder {
    /// Binds UDP and TCP to `addr`. With port 0 both get the same free port.
    pub async fn bind(addr: SocketAddr, records: watch::Receiver<ServiceRecords>) -> Result<Self, DnsError> {
        let tries = if addr.port() == 0 { EPHEMERAL_BIND_TRIES } else { 1 };
        let mut last_error = None;
        for _ in 0..tries {
            let udp = UdpSocket::bind(addr).await.map_err(|source| DnsError::Bind {
                addr,
                protocol: "udp",
                source,
            })?;
            let local_addr =
                udp.local_addr().map_err(|source| DnsError::Bind { addr, protocol: "udp", source })?;
            match TcpListener::bind(local_addr).await {
                Ok(tcp) => return Ok(Self { udp, tcp, local_addr, records }),
                // The OS picked a UDP port whose TCP twin is taken: try another.
                Err(e) if e.kind() == io::ErrorKind::AddrInUse && addr.port() == 0 => last_error = Some(e),
                Err(source) => return Err(DnsError::Bind { addr: local_addr, protocol: "tcp", source }),
            }
        }
        let source = last_error.unwrap_or_else(|| io::Error::from(io::ErrorKind::AddrInUse));
        Err(DnsError::Bind { addr, protocol: "tcp", source })
    }

    /// The address both sockets are bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers until `cancel`, then stops taking queries and waits (a few
    /// seconds at most) for answers in flight. Each query reads the table
    /// as it is then: an update sent on the channel applies to the next one.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), DnsError> {
        let addr = self.local_addr;
        let mut server = Server::new(Responder { records: self.records, soa: soa_record() });
        server.register_socket(self.udp);
        server.register_listener(self.tcp, TCP_IDLE_TIMEOUT, TCP_RESPONSE_QUEUE);
        tracing::info!(%addr, zone = CLUSTER_DOMAIN, "DNS responder answering");
        let ended_early = tokio::select! {
            _ = cancel.cancelled() => None,
            result = server.block_until_done() => Some(result),
        };
        match ended_early {
            None => match tokio::time::timeout(SHUTDOWN_GRACE, server.shutdown_gracefully()).await {
                Ok(Ok(())) | Err(_) => Ok(()),
                Ok(Err(e)) => Err(DnsError::Stopped { addr, reason: e.to_string() }),
            },
            Some(Ok(())) => Err(DnsError::Stopped { addr, reason: "its sockets closed".into() }),
            Some(Err(e)) => Err(DnsError::Stopped { addr, reason: e.to_string() }),
        }
    }
}

/// Binds to `addr` and answers until `cancel` (see [`DnsResponder`]).
pub async fn serve(
    addr: SocketAddr,
    records: watch::Receiver<ServiceRecords>,
    cancel: CancellationToken,
) -> Result<(), DnsError> {
    DnsResponder::bind(addr, records).await?.run(cancel).await
}

fn soa_record() -> Record {
    let name = |s: &str| Name::from_ascii(s).expect("a constant, valid domain name");
    let soa = SOA::new(
        name("ns.dns.cluster.local."),
        name("hostmaster.cluster.local."),
        1,
        // Refresh, retry, expire: there are no secondaries to act on them.
        7200,
        1800,
        86400,
        TTL,
    );
    Record::from_rdata(name(CLUSTER_DOMAIN), TTL, RData::SOA(soa))
}

/// The shell around [`ServiceRecords::resolve`]: request in, message out.
struct Responder {
    records: watch::Receiver<ServiceRecords>,
    soa: Record,
}

#[async_trait::async_trait]
impl RequestHandler for Responder {
    async fn handle_request<R: ResponseHandler, T: hickory_server::net::runtime::Time>(
        &self,
        request: &Request,
        mut response_handle: R,
    ) -> ResponseInfo {
        let mut metadata = Metadata::response_from_request(&request.metadata);
        let response_edns = request.edns.as_ref().map(|asked| {
            let mut edns = Edns::new();
            edns.set_max_payload(asked.max_payload().max(512)).set_version(0);
            edns
        });
        let builder = MessageResponseBuilder::new(&request.queries, response_edns.as_ref());

        // The server drops responses itself; what reaches here is a query.
        let question = if request.metadata.op_code != OpCode::Query {
            Err(ResponseCode::NotImp)
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            Err(ResponseCode::BADVERS)
        } else {
            // Exactly one question, or FORMERR.
            request.request_info().map(|info| info.query).map_err(|_| ResponseCode::FormErr)
        };
        let question = match question {
            Ok(q) => q,
            Err(code) => {
                metadata.response_code = code;
                return send(&mut response_handle, builder.build_no_records(metadata)).await;
            }
        };

        let answer = if question.query_class() == DNSClass::IN {
            // The borrow guard is dropped at the end of this statement,
            // before any await: the table is never held across I/O.
            self.records.borrow().resolve(question.name(), question.query_type())
        } else {
            Answer::Refused
        };
        tracing::debug!(name = %question.name(), qtype = %question.query_type(), ?answer, "DNS query");

        let mut answers = Vec::new();
        let mut authorities = Vec::new();
        metadata.authoritative = answer != Answer::Refused;
        match answer {
            Answer::Address(ip) => {
                answers.push(Record::from_rdata(question.original().name().clone(), TTL, RData::A(A(ip))))
            }
            Answer::Soa => answers.push(self.soa.clone()),
            Answer::NoData => authorities.push(self.soa.clone()),
            Answer::NxDomain => {
                metadata.response_code = ResponseCode::NXDomain;
                authorities.push(self.soa.clone());
            }
            Answer::Refused => metadata.response_code = ResponseCode::Refused,
        }
        let response =
            builder.build(metadata, answers.iter(), authorities.iter(), iter::empty(), iter::empty());
        send(&mut response_handle, response).await
    }
}

async fn send<'a, R: ResponseHandler>(
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    let mut failed = Metadata::response_from_request(response.metadata());
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(error) => {
            tracing::warn!(%error, "could not send a DNS response");
            failed.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header { metadata: failed, counts: HeaderCounts::default() })
        }
    }
}

#[cfg(test)]
mod tests;
