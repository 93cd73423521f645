//! Reaching the agent of the node that runs a pod (it serves on port 10250
//! of the node's address): finding the node, sending one HTTP/1.0 request,
//! and reading the answer's head. Shared by `corral logs` and `corral exec`.

use control_plane::api::{Object, Pod};
use control_plane::{ClientError, CorralClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::{CliError, Result};

/// A pod and the agent of the node it is bound to.
pub struct PodAgent {
    pub pod: Pod,
    pub node: String,
    /// The agent's host:port.
    pub target: String,
}

/// Looks up the pod, its node and that node's address.
pub async fn locate(client: &CorralClient, namespace: &str, name: &str) -> Result<PodAgent> {
    let pod = match client.get_object("pods", namespace, name).await {
        Ok(Object::Pod(pod)) => pod,
        Ok(_) => return Err(CliError::msg(format!("{name:?} is not a pod"))),
        Err(ClientError::NotFound(_)) => {
            return Err(CliError::msg(format!(
                "pod {name:?} not found in namespace {namespace:?}: list the pods with corral get pods -n {namespace}"
            )))
        }
        Err(e) => return Err(e.into()),
    };
    let node = pod.spec.node_name.clone().ok_or_else(|| {
        CliError::msg(format!(
            "pod {name:?} is not scheduled to a node yet: see why with corral describe pod {name} (or corral get pod {name} -o wide)"
        ))
    })?;
    let Object::Node(node_obj) = client.get_object("nodes", "", &node).await? else {
        return Err(CliError::msg(format!("node {node:?} is not a node")));
    };
    let address = node_obj
        .status
        .as_ref()
        .and_then(|s| s.addresses.iter().find(|a| a.type_ == "InternalIP"))
        .map(|a| a.address.clone())
        .ok_or_else(|| CliError::msg(format!("node {node:?} has no address: has its agent registered?")))?;
    let target = format!("{address}:{}", node::agent::server::PORT);
    Ok(PodAgent { pod, node, target })
}

impl PodAgent {
    /// Sends `head` (the request line and headers, without the blank line)
    /// and `body`; returns the answer's body to read once the status is 200.
    /// Any other status becomes an error carrying the agent's message.
    pub async fn request(&self, head: &str, body: &[u8]) -> Result<BufReader<TcpStream>> {
        let node = &self.node;
        let failed = |e: std::io::Error| CliError::msg(format!("node {node:?}: {e}"));
        let mut stream = TcpStream::connect(&self.target).await.map_err(|e| {
            CliError::msg(format!(
                "node {node:?} at {} does not answer: {e}; is its agent running?",
                self.target
            ))
        })?;
        let mut request = format!("{head}\r\nHost: {}\r\n", self.target).into_bytes();
        if !body.is_empty() {
            request.extend_from_slice(format!("Content-Length: {}\r\n", body.len()).as_bytes());
        }
        request.extend_from_slice(b"\r\n");
        request.extend_from_slice(body);
        stream.write_all(&request).await.map_err(failed)?;
        // Headers, then the body as it comes (HTTP/1.0: until the node closes).
        let mut reader = BufReader::new(stream);
        let mut status = String::new();
        reader.read_line(&mut status).await.map_err(failed)?;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).await.map_err(failed)? == 0 {
                return Err(CliError::msg(format!("node {node:?} closed the connection")));
            }
            if header.trim().is_empty() {
                break;
            }
        }
        if !status.contains(" 200") {
            let mut text = String::new();
            let _ = reader.read_to_string(&mut text).await;
            return Err(CliError::msg(format!("node {node:?}: {}", text.trim())));
        }
        Ok(reader)
    }
}
