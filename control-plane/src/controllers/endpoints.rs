//! The endpoints controller's decision: the Endpoints object a Service
//! should have, from the pods it selects. Ready pods are `addresses`, the
//! others `notReadyAddresses`; a pod on a node that is not Ready (or is
//! gone) counts as not ready, since its node can no longer vouch for it
//! (Kubernetes gets the same effect by marking such pods not ready).
//!
//! Ports are resolved per pod (a named `targetPort` may differ between
//! pods), and pods with the same resolved ports share a subset, as
//! Kubernetes' `RepackSubsets` does. Everything is sorted, so an unchanged
//! world yields an identical object and the shell writes only on change.

use std::borrow::Borrow;
use std::collections::BTreeSet;

use crate::api::pod::Protocol;
use crate::api::service::{EndpointAddress, EndpointPort, EndpointSubset, ObjectReference, ServicePort};
use crate::api::{Endpoints, IntOrString, Node, ObjectMeta, OwnerReference, Pod, Service};
use crate::controllers::pods;

/// The Endpoints `svc` should have, named and namespaced like it. `None`
/// for a service without a selector: its endpoints are the user's to
/// write, and the controller leaves them alone.
///
/// The result carries a controller owner reference to the service, so
/// that the garbage collector removes it with the service (Kubernetes'
/// endpoints controller deletes it itself).
pub fn endpoints_for<P: Borrow<Pod>, N: Borrow<Node>>(
    svc: &Service,
    pods: &[P],
    nodes: &[N],
) -> Option<Endpoints> {
    if svc.spec.selector.is_empty() {
        return None;
    }
    let namespace = svc.metadata.namespace_or_default();
    let ready_nodes: BTreeSet<&str> = nodes
        .iter()
        .map(Borrow::borrow)
        .filter(|n: &&Node| n.is_ready())
        .map(|n| n.metadata.name.as_str())
        .collect();
    let mut subsets: Vec<EndpointSubset> = Vec::new();
    for pod in pods.iter().map(Borrow::borrow) {
        let selected = pod.metadata.namespace_or_default() == namespace
            && svc.spec.selector.iter().all(|(k, v)| pod.metadata.labels.get(k) == Some(v));
        if !selected || !pods::is_active(pod) {
            continue;
        }
        let Some(ip) = pod.status.as_ref().and_then(|s| s.pod_ip.as_deref()).filter(|ip| !ip.is_empty())
        else {
            continue;
        };
        let mut ports: Vec<EndpointPort> = svc.spec.ports.iter().filter_map(|sp| resolve(sp, pod)).collect();
        if ports.is_empty() {
            continue;
        }
        ports.sort_by(|a, b| port_key(a).cmp(&port_key(b)));
        let node_name = pod.spec.node_name.clone();
        let ready = pod.is_ready() && node_name.as_deref().is_some_and(|n| ready_nodes.contains(n));
        let address = EndpointAddress {
            ip: ip.to_string(),
            node_name,
            target_ref: Some(ObjectReference {
                kind: Some("Pod".into()),
                namespace: Some(namespace.to_string()),
                name: Some(pod.metadata.name.clone()),
                uid: pod.metadata.uid.clone(),
                ..Default::default()
            }),
        };
        let i = subsets.iter().position(|s| s.ports == ports).unwrap_or_else(|| {
            subsets.push(EndpointSubset { ports, ..Default::default() });
            subsets.len() - 1
        });
        let subset = &mut subsets[i]; // `i` was found or just pushed.
        match ready {
            true => subset.addresses.push(address),
            false => subset.not_ready_addresses.push(address),
        }
    }
    for s in &mut subsets {
        s.addresses.sort_by(|a, b| address_key(a).cmp(&address_key(b)));
        s.not_ready_addresses.sort_by(|a, b| address_key(a).cmp(&address_key(b)));
    }
    subsets.sort_by(|a, b| a.ports.iter().map(port_key).cmp(b.ports.iter().map(port_key)));
    let owner = svc.metadata.uid.as_ref().map(|uid| OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone(),
        uid: uid.clone(),
        controller: Some(true),
        block_owner_deletion: None,
    });
    Some(Endpoints {
        api_version: "v1".into(),
        kind: "Endpoints".into(),
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: Some(namespace.to_string()),
            labels: svc.metadata.labels.clone(),
            owner_references: owner.into_iter().collect(),
            ..Default::default()
        },
        subsets,
    })
}

/// Kubernetes' `FindPort`: a number is the port; a name is the container
/// port of that name and protocol (none: the pod is left out of this port).
/// No `targetPort` means the service's `port`.
fn resolve(sp: &ServicePort, pod: &Pod) -> Option<EndpointPort> {
    let protocol = sp.protocol.unwrap_or(Protocol::Tcp);
    let port = match &sp.target_port {
        None => sp.port,
        Some(IntOrString::Int(port)) => *port,
        Some(IntOrString::String(name)) => {
            pod.spec
                .containers
                .iter()
                .flat_map(|c| &c.ports)
                .find(|cp| {
                    cp.name.as_ref() == Some(name) && cp.protocol.unwrap_or(Protocol::Tcp) == protocol
                })?
                .container_port
        }
    };
    Some(EndpointPort { name: sp.name.clone(), port, protocol: Some(protocol) })
}

fn port_key(p: &EndpointPort) -> (Option<&str>, i32, bool) {
    (p.name.as_deref(), p.port, p.protocol == Some(Protocol::Udp))
}

fn address_key(a: &EndpointAddress) -> (&str, Option<&str>) {
    (a.ip.as_str(), a.target_ref.as_ref().and_then(|r| r.name.as_deref()))
}

#[cfg(test)]
mod tests;
