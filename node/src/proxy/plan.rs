//! The proxy's decision: which address listens for which service port, and
//! which endpoints its connections go to. Pure: Services, Endpoints and the
//! node's own addresses in, a [`ProxyTable`] out; no sockets, no clock.
//!
//! Only TCP is planned. A service port with `protocol: UDP` (and any UDP
//! endpoint port) is left out of the table: the proxy forwards TCP only.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use control_plane::api::pod::Protocol;
use control_plane::api::service::{EndpointPort, ServicePort};
use control_plane::api::{Endpoints, Service};

/// Which service port a listener serves, printed `namespace/name:port`
/// (`namespace/name` when the port has no name), as Kubernetes does.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServicePortName {
    pub namespace: String,
    pub name: String,
    pub port: Option<String>,
}

impl fmt::Display for ServicePortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)?;
        match &self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// One listening address and where its connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub listen: SocketAddr,
    pub service: ServicePortName,
    /// The ready endpoints, sorted and without duplicates; empty when the
    /// service has none (the proxy then closes every connection at once).
    pub backends: Vec<SocketAddr>,
}

/// Everything the proxy should serve, plus what it could not.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyTable {
    /// Sorted by `listen`; each address appears once.
    pub routes: Vec<Route>,
    /// Addresses claimed by more than one service port.
    pub conflicts: Vec<Conflict>,
    /// Values that could not be used (not an IP, port out of range).
    pub invalid: Vec<Invalid>,
}

/// Two service ports want the same listening address. The older service
/// (by creationTimestamp, then namespace/name; a missing timestamp counts as
/// newest) keeps it, as the first writer would on a real cluster.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{listen} is claimed by both {winner} and {loser}: {winner} is older and keeps it, \
     {loser} is not served there (give one of them another port or cluster IP)"
)]
pub struct Conflict {
    pub listen: SocketAddr,
    pub winner: ServicePortName,
    pub loser: ServicePortName,
}

/// A value the planner had to leave out, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    #[error("service {service}: clusterIP {value:?} is not an IP address; only the node addresses serve it")]
    ClusterIp { service: String, value: String },
    #[error("service {service}: port {port} is not in 1-65535; it is not served")]
    ServicePort { service: ServicePortName, port: i32 },
    #[error("endpoints {endpoints}: address {value:?} is not an IP address; it is not a backend")]
    EndpointIp { endpoints: String, value: String },
    #[error("endpoints {endpoints}: port {port} is not in 1-65535; it is not a backend")]
    EndpointPort { endpoints: String, port: i32 },
}

/// The table the proxy should serve: for every TCP port of every service,
/// a route on each `listen` address and on the service's cluster IP (when
/// set and not `None`), to the ready addresses of the Endpoints of the same
/// namespace/name at the endpoint port of the same name (or the subset's
/// only port when the service port has no name). Not-ready addresses are
/// never backends. The same input in any order gives the same table.
pub fn plan(services: &[Service], endpoints: &[Endpoints], listen: &[IpAddr]) -> ProxyTable {
    let mut invalid = Vec::new();
    let parsed: BTreeMap<(&str, &str), Vec<Subset>> = endpoints
        .iter()
        .map(|e| {
            ((e.metadata.namespace_or_default(), e.metadata.name.as_str()), parse_endpoints(e, &mut invalid))
        })
        .collect();

    // Oldest first, so that the first claim on an address is the one that keeps it.
    let mut ordered: Vec<&Service> = services.iter().collect();
    ordered.sort_by_key(|s| age_key(s));

    let mut routes: BTreeMap<SocketAddr, Route> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for svc in ordered {
        let (namespace, name) = (svc.metadata.namespace_or_default(), svc.metadata.name.as_str());
        let ips = listen_ips(svc, listen, &mut invalid);
        let subsets = parsed.get(&(namespace, name)).map(Vec::as_slice).unwrap_or_default();
        for sp in svc.spec.ports.iter().filter(|p| is_tcp(p.protocol)) {
            let service = ServicePortName {
                namespace: namespace.to_string(),
                name: name.to_string(),
                port: port_name(&sp.name).map(str::to_string),
            };
            let Some(port) = valid_port(sp.port) else {
                invalid.push(Invalid::ServicePort { service, port: sp.port });
                continue;
            };
            let backends = backends(sp, subsets);
            for &ip in &ips {
                let listen = SocketAddr::new(ip, port);
                match routes.get(&listen) {
                    Some(held) => conflicts.push(Conflict {
                        listen,
                        winner: held.service.clone(),
                        loser: service.clone(),
                    }),
                    None => {
                        let route = Route { listen, service: service.clone(), backends: backends.clone() };
                        routes.insert(listen, route);
                    }
                }
            }
        }
    }
    ProxyTable { routes: routes.into_values().collect(), conflicts, invalid }
}

/// One endpoint subset with its addresses parsed; only ready addresses and
/// TCP ports are kept.
struct Subset<'a> {
    ready: Vec<IpAddr>,
    ports: Vec<(&'a EndpointPort, u16)>,
}

fn parse_endpoints<'a>(e: &'a Endpoints, invalid: &mut Vec<Invalid>) -> Vec<Subset<'a>> {
    let endpoints = || format!("{}/{}", e.metadata.namespace_or_default(), e.metadata.name);
    let mut subsets = Vec::new();
    for s in &e.subsets {
        let mut ready = Vec::new();
        for a in &s.addresses {
            match a.ip.parse::<IpAddr>() {
                Ok(ip) => ready.push(ip),
                Err(_) => invalid.push(Invalid::EndpointIp { endpoints: endpoints(), value: a.ip.clone() }),
            }
        }
        let mut ports = Vec::new();
        for p in s.ports.iter().filter(|p| is_tcp(p.protocol)) {
            match valid_port(p.port) {
                Some(port) => ports.push((p, port)),
                None => invalid.push(Invalid::EndpointPort { endpoints: endpoints(), port: p.port }),
            }
        }
        subsets.push(Subset { ready, ports });
    }
    subsets
}

/// The node addresses plus the cluster IP, without duplicates.
fn listen_ips(svc: &Service, listen: &[IpAddr], invalid: &mut Vec<Invalid>) -> BTreeSet<IpAddr> {
    let mut ips: BTreeSet<IpAddr> = listen.iter().copied().collect();
    match svc.spec.cluster_ip.as_deref() {
        None | Some("") | Some("None") => {}
        Some(value) => match value.parse::<IpAddr>() {
            Ok(ip) => {
                ips.insert(ip);
            }
            Err(_) => invalid.push(Invalid::ClusterIp {
                service: format!("{}/{}", svc.metadata.namespace_or_default(), svc.metadata.name),
                value: value.to_string(),
            }),
        },
    }
    ips
}

fn backends(sp: &ServicePort, subsets: &[Subset]) -> Vec<SocketAddr> {
    let wanted = port_name(&sp.name);
    let mut out: Vec<SocketAddr> = subsets
        .iter()
        .filter_map(|s| {
            let port = match s.ports.iter().find(|(p, _)| port_name(&p.name) == wanted) {
                Some(&(_, port)) => port,
                // An unnamed service port takes a subset's only port, whatever its name.
                None if wanted.is_none() && s.ports.len() == 1 => s.ports[0].1,
                None => return None,
            };
            Some(s.ready.iter().map(move |&ip| SocketAddr::new(ip, port)))
        })
        .flatten()
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Older first; a service without a creation time counts as the newest.
fn age_key(s: &Service) -> (bool, Option<control_plane::api::Time>, &str, &str) {
    let created = s.metadata.creation_timestamp;
    (created.is_none(), created, s.metadata.namespace_or_default(), s.metadata.name.as_str())
}

/// Kubernetes' default protocol is TCP.
fn is_tcp(p: Option<Protocol>) -> bool {
    p.unwrap_or(Protocol::Tcp) == Protocol::Tcp
}

/// An empty port name is no name.
fn port_name(name: &Option<String>) -> Option<&str> {
    name.as_deref().filter(|n| !n.is_empty())
}

fn valid_port(port: i32) -> Option<u16> {
    u16::try_from(port).ok().filter(|&p| p != 0)
}

#[cfg(test)]
mod tests;
