//! The downward API: container environment variables whose values come
//! from the pod itself (`valueFrom.fieldRef`) or from its containers'
//! resources (`valueFrom.resourceFieldRef`), so an app knows who and where
//! it is (for example to use as its Lease identity).

use std::net::IpAddr;

use control_plane::api::pod::{Container, EnvVarSource};
use control_plane::api::quantity::Quantity;
use control_plane::api::Pod;

/// What the node knows beyond the pod object.
#[derive(Debug, Clone, Default)]
pub struct NodeFacts {
    pub node_ip: Option<IpAddr>,
    /// The pod's address (from its sandbox).
    pub pod_ip: Option<IpAddr>,
    /// Allocatable cpu and memory: what a limit that is not set resolves to.
    pub cpu: Option<Quantity>,
    pub memory: Option<Quantity>,
}

/// The value of one `valueFrom` for `container` of `pod`.
pub fn resolve(
    pod: &Pod,
    container: &Container,
    source: &EnvVarSource,
    facts: &NodeFacts,
) -> Result<String, String> {
    if let Some(field) = &source.field_ref {
        return field_value(pod, &field.field_path, facts);
    }
    if let Some(r) = &source.resource_field_ref {
        let target = match r.container_name.as_deref() {
            None | Some("") => container,
            Some(name) => pod.spec.containers.iter().find(|c| c.name == name).ok_or_else(|| {
                format!("resourceFieldRef names container {name:?}, which the pod does not have")
            })?,
        };
        return resource_value(target, &r.resource, r.divisor.as_ref(), facts);
    }
    Err("valueFrom needs fieldRef or resourceFieldRef".into())
}

fn field_value(pod: &Pod, path: &str, facts: &NodeFacts) -> Result<String, String> {
    let meta = &pod.metadata;
    let keyed =
        |prefix: &str| path.strip_prefix(prefix).and_then(|rest| rest.strip_suffix("']")).map(str::to_string);
    let value = match path {
        "metadata.name" => meta.name.clone(),
        "metadata.namespace" => meta.namespace_or_default().to_string(),
        "metadata.uid" => meta.uid.clone().unwrap_or_default(),
        "spec.nodeName" => pod.spec.node_name.clone().unwrap_or_default(),
        "status.podIP" => facts.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        "status.hostIP" => facts.node_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        _ => {
            if let Some(key) = keyed("metadata.labels['") {
                meta.labels.get(&key).cloned().unwrap_or_default()
            } else if let Some(key) = keyed("metadata.annotations['") {
                meta.annotations.get(&key).cloned().unwrap_or_default()
            } else {
                return Err(format!("fieldRef.fieldPath {path:?} is not supported"));
            }
        }
    };
    Ok(value)
}

fn resource_value(
    container: &Container,
    resource: &str,
    divisor: Option<&Quantity>,
    facts: &NodeFacts,
) -> Result<String, String> {
    let (section, name) = resource
        .split_once('.')
        .ok_or_else(|| format!("resourceFieldRef.resource {resource:?} is not supported"))?;
    let quantities = match section {
        "limits" => &container.resources.limits,
        "requests" => &container.resources.requests,
        _ => return Err(format!("resourceFieldRef.resource {resource:?} is not supported")),
    };
    let node_allocatable = match name {
        "cpu" => facts.cpu.as_ref(),
        "memory" => facts.memory.as_ref(),
        _ => return Err(format!("resourceFieldRef.resource {resource:?} is not supported")),
    };
    // Kubernetes: an unset limit is the node's allocatable; an unset request is 0 for cpu... and memory.
    let value = match (quantities.get(name), section) {
        (Some(q), _) => Some(q),
        (None, "limits") => node_allocatable,
        (None, _) => None,
    };
    let Some(value) = value else { return Ok("0".into()) };
    // In thousandths, rounded up like Kubernetes' ceil(value / divisor).
    let divisor = divisor.map_or(1000, Quantity::millis).max(1);
    Ok(value.millis().div_ceil(divisor).to_string())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use control_plane::api::pod::{ObjectFieldSelector, ResourceFieldSelector, ResourceRequirements};

    use super::*;

    fn pod() -> (Pod, Container) {
        let container = Container {
            name: "app".into(),
            resources: ResourceRequirements {
                requests: BTreeMap::from([("cpu".into(), "250m".parse().unwrap())]),
                limits: BTreeMap::from([("memory".into(), "64Mi".parse().unwrap())]),
            },
            ..Default::default()
        };
        let mut pod = Pod::default();
        pod.metadata.name = "web-1".into();
        pod.metadata.namespace = Some("shop".into());
        pod.metadata.uid = Some("u-1".into());
        pod.metadata.labels.insert("app".into(), "web".into());
        pod.spec.node_name = Some("n1".into());
        pod.spec.containers = vec![container.clone()];
        (pod, container)
    }

    fn facts() -> NodeFacts {
        NodeFacts {
            node_ip: Some("127.0.0.11".parse().unwrap()),
            pod_ip: Some("10.88.0.7".parse().unwrap()),
            cpu: Some("2".parse().unwrap()),
            memory: Some("4Gi".parse().unwrap()),
        }
    }

    fn field(path: &str) -> Result<String, String> {
        let (pod, c) = pod();
        let source = EnvVarSource {
            field_ref: Some(ObjectFieldSelector { field_path: path.into(), api_version: None }),
            resource_field_ref: None,
        };
        resolve(&pod, &c, &source, &facts())
    }

    fn resource(resource: &str, divisor: Option<&str>) -> Result<String, String> {
        let (pod, c) = pod();
        let source = EnvVarSource {
            field_ref: None,
            resource_field_ref: Some(ResourceFieldSelector {
                container_name: None,
                resource: resource.into(),
                divisor: divisor.map(|d| d.parse().unwrap()),
            }),
        };
        resolve(&pod, &c, &source, &facts())
    }

    #[test]
    fn field_refs_name_the_pod_and_where_it_runs() {
        for (path, want) in [
            ("metadata.name", "web-1"),
            ("metadata.namespace", "shop"),
            ("metadata.uid", "u-1"),
            ("metadata.labels['app']", "web"),
            ("metadata.labels['missing']", ""),
            ("spec.nodeName", "n1"),
            ("status.podIP", "10.88.0.7"),
            ("status.hostIP", "127.0.0.11"),
        ] {
            assert_eq!(field(path).as_deref(), Ok(want), "{path}");
        }
        assert!(field("spec.serviceAccountName").unwrap_err().contains("not supported"));
    }

    #[test]
    fn resource_refs_round_up_by_the_divisor_and_unset_limits_are_the_node() {
        assert_eq!(resource("requests.cpu", None).as_deref(), Ok("1"), "250m rounds up to 1 core");
        assert_eq!(resource("requests.cpu", Some("1m")).as_deref(), Ok("250"));
        assert_eq!(resource("limits.memory", None).as_deref(), Ok("67108864"));
        assert_eq!(resource("limits.memory", Some("1Mi")).as_deref(), Ok("64"));
        assert_eq!(resource("limits.cpu", None).as_deref(), Ok("2"), "no limit: the node's cpu");
        assert_eq!(resource("requests.memory", None).as_deref(), Ok("0"));
        assert!(resource("limits.ephemeral-storage", None).unwrap_err().contains("not supported"));
    }
}
