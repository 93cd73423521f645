//! The Corral network: one user-defined bridge per engine, on which each
//! pod's sandbox gets its pod IP. Its subnet, gateway and address ranges
//! come from a [`PodNetworkSpec`]: the node's pod CIDR (one node per
//! engine), or the cluster CIDR with each node's pods addressed from its
//! own pod CIDR (several nodes sharing one engine).
//!
//! A network of the name with another subnet (made by an older Corral, or
//! for another cluster) is replaced when no container uses it, and reported
//! with what to do otherwise.
//!
//! Engines before API 1.44 do not refuse a second network with the same name
//! unless asked, and two agents starting together would each create one
//! (then every later use of the name is ambiguous). Creation is therefore
//! serialised between the processes of this host with a file lock; a 409
//! from a newer engine is also taken as "someone else created it".

use std::collections::{BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use bollard::models::{Ipam, IpamConfig, NetworkCreateRequest, NetworkInspect};
use bollard::Docker;

use super::translate::{is_conflict, is_not_found, runtime_error, sanitize};
use crate::runtime::{labels, PodNetworkSpec, RuntimeError, RuntimeResult};

/// Creates the bridge network `name` as `spec` says unless it exists so;
/// replaces one with another subnet that no container uses. Without a
/// spec, any network of the name will do, and a new one gets the subnet
/// the engine picks (a test's own network).
pub(super) async fn ensure_network(
    docker: &Docker,
    name: &str,
    spec: Option<&PodNetworkSpec>,
) -> RuntimeResult<()> {
    if matches_spec(docker, name, spec).await? {
        return Ok(());
    }
    let _lock = HostLock::acquire(name).await;
    if matches_spec(docker, name, spec).await? {
        return Ok(());
    }
    let request = match spec {
        Some(spec) => create_request(name, spec),
        None => NetworkCreateRequest {
            name: name.to_string(),
            driver: Some("bridge".into()),
            labels: Some(owned_label()),
            ..Default::default()
        },
    };
    let subnet = spec.map_or_else(|| "the engine's choice".to_string(), |s| s.subnet.to_string());
    match docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = name, %subnet, "created the Corral network");
            Ok(())
        }
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(runtime_error(&format!("creating network {name} with subnet {subnet}"), e)),
    }
}

fn owned_label() -> HashMap<String, String> {
    HashMap::from([(labels::OWNED.to_string(), "true".to_string())])
}

/// Docker's request for the network of `spec`. Pure.
pub(super) fn create_request(name: &str, spec: &PodNetworkSpec) -> NetworkCreateRequest {
    let mut options = HashMap::new();
    if !spec.engine_masquerade {
        options.insert("com.docker.network.bridge.enable_ip_masquerade".to_string(), "false".to_string());
    }
    if let Some(mtu) = spec.mtu {
        options.insert("com.docker.network.driver.mtu".to_string(), mtu.to_string());
    }
    NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        ipam: Some(Ipam {
            config: Some(vec![IpamConfig {
                subnet: Some(spec.subnet.to_string()),
                ip_range: spec.engine_range.map(|r| r.to_string()),
                gateway: Some(spec.gateway.to_string()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        options: (!options.is_empty()).then_some(options),
        labels: Some(owned_label()),
        ..Default::default()
    }
}

/// The subnet a network was made with.
fn subnet_of(net: &NetworkInspect) -> Option<String> {
    net.ipam.as_ref()?.config.as_ref()?.iter().find_map(|c| c.subnet.clone())
}

/// Whether `name` exists with `spec`'s subnet. One with another subnet is
/// removed when no container uses it, and an error otherwise.
async fn matches_spec(docker: &Docker, name: &str, spec: Option<&PodNetworkSpec>) -> RuntimeResult<bool> {
    let net = match docker.inspect_network(name, None).await {
        Ok(n) => n,
        Err(e) if is_not_found(&e) => return Ok(false),
        Err(e) => return Err(runtime_error(&format!("inspecting network {name}"), e)),
    };
    let Some(spec) = spec else { return Ok(true) };
    let have = subnet_of(&net);
    if have.as_deref() == Some(spec.subnet.to_string().as_str()) {
        return Ok(true);
    }
    let users = net.containers.as_ref().map_or(0, |c| c.len());
    let have = have.unwrap_or_else(|| "none".into());
    if users > 0 {
        return Err(RuntimeError::Engine(format!(
            "the Docker network {name:?} has subnet {have}, but this node's pod network needs {}; {users} container(s) still use it: remove them (docker ps -a --filter network={name}) and the network (docker network rm {name}), or give this node another --network",
            spec.subnet
        )));
    }
    tracing::info!(network = name, old = %have, new = %spec.subnet, "replacing the Corral network with another subnet");
    match docker.remove_network(name).await {
        Ok(()) => Ok(false),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(runtime_error(&format!("removing network {name} (subnet {have})"), e)),
    }
}

/// The addresses of the containers on network `name`.
pub(super) async fn addresses_in_use(
    docker: &Docker,
    name: &str,
) -> RuntimeResult<BTreeSet<std::net::Ipv4Addr>> {
    let net = docker
        .inspect_network(name, None)
        .await
        .map_err(|e| runtime_error(&format!("inspecting network {name}"), e))?;
    Ok(net
        .containers
        .unwrap_or_default()
        .values()
        .filter_map(|c| c.ipv4_address.as_deref()?.split('/').next()?.parse().ok())
        .collect())
}

/// The bridge interface of network `name` on this host and its gateway.
pub(super) async fn pod_network(docker: &Docker, name: &str) -> RuntimeResult<crate::runtime::PodNetwork> {
    let net = docker
        .inspect_network(name, None)
        .await
        .map_err(|e| runtime_error(&format!("inspecting network {name}"), e))?;
    let id = net.id.unwrap_or_default();
    let interface = net
        .options
        .as_ref()
        .and_then(|o| o.get("com.docker.network.bridge.name").cloned())
        .unwrap_or_else(|| format!("br-{}", id.get(..12).unwrap_or(&id)));
    let gateway = net
        .ipam
        .and_then(|i| i.config)
        .into_iter()
        .flatten()
        .find_map(|c| c.gateway.and_then(|g| g.parse().ok()));
    Ok(crate::runtime::PodNetwork { interface, gateway })
}

/// An exclusive `flock` on a file named for the network, released on drop.
struct HostLock {
    _file: File,
}

impl HostLock {
    /// Best effort: without a lock file (read-only temp dir, another user's
    /// file) creation goes ahead unserialised, as it would without the lock.
    async fn acquire(network: &str) -> Option<HostLock> {
        let path = lock_path(network);
        let locked = tokio::task::spawn_blocking(move || -> std::io::Result<File> {
            let file = OpenOptions::new().create(true).truncate(false).write(true).open(&path)?;
            // SAFETY: flock only reads the descriptor, which `file` keeps open.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(file)
        })
        .await;
        match locked {
            Ok(Ok(file)) => Some(HostLock { _file: file }),
            Ok(Err(e)) => {
                tracing::warn!(network, error = %e, "no lock for creating the network; going ahead");
                None
            }
            Err(e) => {
                tracing::warn!(network, error = %e, "no lock for creating the network; going ahead");
                None
            }
        }
    }
}

fn lock_path(network: &str) -> PathBuf {
    std::env::temp_dir().join(format!("corral-network-{}.lock", sanitize(network)))
}
