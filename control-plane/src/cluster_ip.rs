//! Cluster IPs: every Service (except a headless one, `clusterIP: None`)
//! gets a virtual address from the service range, unique in the cluster.
//! Node agents serve it (the proxy listens there; the DNS responder answers
//! the Service's name with it), so pods reach a Service by name or by its
//! `NAME_SERVICE_HOST` variable, and two Services may use the same port.
//!
//! Uniqueness is a claim key per address (`/corral/clusterips/<ip>`, outside the object registry),
//! created in the same transaction as the Service (and removed with it)
//! with compare-and-swap: two Services can never hold one address.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

/// The service range: 10.96.0.0/16, Kubernetes' default range narrowed.
pub const RANGE_BASE: Ipv4Addr = Ipv4Addr::new(10, 96, 0, 0);
pub const RANGE_PREFIX: u8 = 16;

/// Node agents' DNS responders answer at addresses of 10.96.255.0/24
/// (never a Service's): each node its own, so agents of different clusters
/// on one machine never answer each other's pods.
pub const NODE_DNS_NET: Ipv4Addr = Ipv4Addr::new(10, 96, 255, 0);

/// The service range as a network.
pub fn range() -> ipnet::Ipv4Net {
    ipnet::Ipv4Net::new(RANGE_BASE, RANGE_PREFIX).expect("a valid prefix")
}

/// Whether `ip` is kept for node DNS responders.
pub fn is_node_dns(ip: Ipv4Addr) -> bool {
    ip.octets()[..3] == NODE_DNS_NET.octets()[..3]
}

/// The DNS addresses node `name` tries, in order: the first is derived
/// from its name, the others follow it round the /24.
pub fn node_dns_candidates(name: &str) -> impl Iterator<Item = Ipv4Addr> {
    let seed = fnv1a(name);
    let base = u32::from(NODE_DNS_NET);
    (0..254u32).map(move |i| Ipv4Addr::from(base + 1 + (seed.wrapping_add(i) % 254)))
}

pub const CLAIM_PREFIX: &[u8] = b"/corral/clusterips/";

pub fn claim_key(ip: Ipv4Addr) -> Vec<u8> {
    let mut key = CLAIM_PREFIX.to_vec();
    key.extend_from_slice(ip.to_string().as_bytes());
    key
}

/// The address a claim key holds.
pub fn ip_of_claim(key: &[u8]) -> Option<Ipv4Addr> {
    std::str::from_utf8(key.strip_prefix(CLAIM_PREFIX)?).ok()?.parse().ok()
}

/// FNV-1a: a stable spread of names over the range (not for security).
fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| (h ^ b as u32).wrapping_mul(0x0100_0193))
}

fn size() -> u32 {
    1u32 << (32 - RANGE_PREFIX)
}

/// Whether `ip` lies in the service range (network and broadcast
/// addresses, and .1 which is kept for the range's gateway, excluded).
pub fn in_range(ip: Ipv4Addr) -> bool {
    let (base, ip) = (u32::from(RANGE_BASE), u32::from(ip));
    ip > base + 1 && ip < base + size() - 1
}

/// A free address for the Service `namespace/name`: one derived from its
/// name (so a Service that is deleted and created again tends to get the
/// same one), or the next free one after it. `None` when the range is full.
pub fn allocate(namespace: &str, name: &str, taken: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let usable = size() - 3;
    let seed = fnv1a(&format!("{namespace}/{name}"));
    (0..usable)
        .map(|i| Ipv4Addr::from(u32::from(RANGE_BASE) + 2 + (seed.wrapping_add(i) % usable)))
        .find(|ip| !taken.contains(ip) && !is_node_dns(*ip))
}

/// Checks a `spec.clusterIP` a user wrote: `None` (headless), empty
/// (allocate one), or a free address of the range.
pub fn validate_requested(requested: &str) -> Result<Option<Ipv4Addr>, String> {
    match requested {
        "" | "None" => Ok(None),
        ip => {
            let parsed: Ipv4Addr = ip.parse().map_err(|_| {
                format!("spec.clusterIP: Invalid value: {ip:?}: must be an IPv4 address, \"None\" or empty")
            })?;
            if !in_range(parsed) {
                return Err(format!(
                    "spec.clusterIP: Invalid value: {ip:?}: provided IP is not in the valid range {RANGE_BASE}/{RANGE_PREFIX}"
                ));
            }
            if is_node_dns(parsed) {
                return Err(format!(
                    "spec.clusterIP: Invalid value: {ip:?}: {NODE_DNS_NET}/24 is reserved for the nodes' DNS"
                ));
            }
            Ok(Some(parsed))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allocation_is_stable_per_name_unique_and_in_range() {
        let mut taken = BTreeSet::new();
        let first = allocate("default", "web", &taken).unwrap();
        assert_eq!(allocate("default", "web", &taken), Some(first), "same name, same address");
        assert!(in_range(first));
        taken.insert(first);
        let second = allocate("default", "web", &taken).unwrap();
        assert_ne!(second, first);
        assert!(in_range(second));
        for i in 0..500 {
            let ip = allocate("ns", &format!("svc-{i}"), &taken).unwrap();
            assert!(taken.insert(ip), "{ip} handed out twice");
        }
    }

    #[test]
    fn a_full_range_allocates_nothing() {
        let all: BTreeSet<Ipv4Addr> =
            (2..size() - 1).map(|i| Ipv4Addr::from(u32::from(RANGE_BASE) + i)).collect();
        assert_eq!(allocate("default", "web", &all), None);
    }

    #[test]
    fn requested_addresses_are_checked() {
        assert_eq!(validate_requested(""), Ok(None));
        assert_eq!(validate_requested("None"), Ok(None));
        assert_eq!(validate_requested("10.96.3.4"), Ok(Some(Ipv4Addr::new(10, 96, 3, 4))));
        for bad in ["10.96.255.7", "10.97.0.1", "10.96.0.0", "10.96.0.1", "10.96.255.255", "web", "::1"] {
            assert!(validate_requested(bad).is_err(), "{bad}");
        }
        assert!(validate_requested("10.97.0.1").unwrap_err().starts_with("spec.clusterIP: Invalid value"));
    }

    #[test]
    fn node_dns_addresses_are_stable_distinct_and_never_allocated() {
        let a: Vec<Ipv4Addr> = node_dns_candidates("node-1").collect();
        assert_eq!(a.len(), 254);
        assert_eq!(a.iter().collect::<BTreeSet<_>>().len(), 254);
        assert!(a.iter().all(|ip| is_node_dns(*ip) && in_range(*ip)));
        assert_eq!(node_dns_candidates("node-1").next(), Some(a[0]));
        assert_ne!(node_dns_candidates("node-2").next(), Some(a[0]));
        let taken: BTreeSet<Ipv4Addr> = BTreeSet::new();
        for i in 0..2000 {
            assert!(!is_node_dns(allocate("ns", &format!("s{i}"), &taken).unwrap()));
        }
    }

    #[test]
    fn claim_keys_round_trip() {
        let ip = Ipv4Addr::new(10, 96, 1, 2);
        assert_eq!(ip_of_claim(&claim_key(ip)), Some(ip));
        assert_eq!(ip_of_claim(b"/registry/pods/x"), None);
    }
}
