//! The Corral network: one user-defined bridge per engine, shared by every
//! agent on the host, on which each pod's sandbox gets its pod IP. Docker
//! picks the subnet.
//!
//! Engines before API 1.44 do not refuse a second network with the same name
//! unless asked, and two agents starting together would each create one
//! (then every later use of the name is ambiguous). Creation is therefore
//! serialised between the processes of this host with a file lock; a 409
//! from a newer engine is also taken as "someone else created it".

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;

use bollard::models::NetworkCreateRequest;
use bollard::Docker;

use super::translate::{is_conflict, is_not_found, runtime_error, sanitize};
use crate::runtime::{labels, RuntimeResult};

/// Creates the bridge network `name` unless it exists.
pub(super) async fn ensure_network(docker: &Docker, name: &str) -> RuntimeResult<()> {
    if network_exists(docker, name).await? {
        return Ok(());
    }
    let _lock = HostLock::acquire(name).await;
    if network_exists(docker, name).await? {
        return Ok(());
    }
    let request = NetworkCreateRequest {
        name: name.to_string(),
        driver: Some("bridge".into()),
        labels: Some(HashMap::from([(labels::OWNED.to_string(), "true".to_string())])),
        ..Default::default()
    };
    match docker.create_network(request).await {
        Ok(_) => {
            tracing::info!(network = name, "created the Corral network");
            Ok(())
        }
        Err(e) if is_conflict(&e) => Ok(()),
        Err(e) => Err(runtime_error(&format!("creating network {name}"), e)),
    }
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

async fn network_exists(docker: &Docker, name: &str) -> RuntimeResult<bool> {
    match docker.inspect_network(name, None).await {
        Ok(_) => Ok(true),
        Err(e) if is_not_found(&e) => Ok(false),
        Err(e) => Err(runtime_error(&format!("inspecting network {name}"), e)),
    }
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
