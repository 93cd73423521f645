//! The object model: Kubernetes' JSON shapes and field names for the
//! supported subset of Node, Pod, Deployment, Service, Endpoints and Event.
//!
//! Parsing is strict: a field outside the subset is refused with its path
//! (`spec.template.spec.tolerations`), never dropped. Validation names the
//! field path of every problem. Objects are stored as JSON; their
//! `resourceVersion` is the store revision of their key.

pub mod affinity;
pub mod autoscaling;
pub mod deployment;
pub mod labels;
pub mod manifest;
pub mod meta;
pub mod node;
pub mod pod;
pub mod pod_security;
pub mod quantity;
pub mod service;
pub mod validation;

use std::fmt;

use serde::{de::DeserializeOwned, Deserialize, Serialize};

pub use autoscaling::{HorizontalPodAutoscaler, Lease};
pub use deployment::Deployment;
pub use meta::{ObjectMeta, OwnerReference, Time};
pub use node::{Event, Node};
pub use pod::Pod;
pub use service::{Endpoints, Service};
pub use validation::FieldError;

/// An integer or a string, as Kubernetes writes ports (`8080` or `http`)
/// and rollout bounds (`1` or `25%`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i32),
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => write!(f, "{s}"),
        }
    }
}

impl IntOrString {
    /// Resolves a count or percentage of `total`, rounding as Kubernetes
    /// does (`round_up` for maxSurge, down for maxUnavailable).
    pub fn scaled(&self, total: i32, round_up: bool) -> Result<i32, String> {
        match self {
            IntOrString::Int(i) => Ok(*i),
            IntOrString::String(s) => {
                let pct: i64 = s
                    .strip_suffix('%')
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("{s:?} is not an integer or a percentage such as 25%"))?;
                let scaled = pct * total as i64;
                let v = if round_up { (scaled + 99).div_euclid(100) } else { scaled.div_euclid(100) };
                Ok(v as i32)
            }
        }
    }
}

/// The kinds Corral knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Kind {
    Node,
    Pod,
    Deployment,
    Service,
    Endpoints,
    Event,
    HorizontalPodAutoscaler,
    Lease,
}

impl Kind {
    pub const ALL: [Kind; 8] = [
        Kind::Node,
        Kind::Pod,
        Kind::Deployment,
        Kind::Service,
        Kind::Endpoints,
        Kind::Event,
        Kind::HorizontalPodAutoscaler,
        Kind::Lease,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Node => "Node",
            Kind::Pod => "Pod",
            Kind::Deployment => "Deployment",
            Kind::Service => "Service",
            Kind::Endpoints => "Endpoints",
            Kind::Event => "Event",
            Kind::HorizontalPodAutoscaler => "HorizontalPodAutoscaler",
            Kind::Lease => "Lease",
        }
    }

    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Deployment => "apps/v1",
            Kind::HorizontalPodAutoscaler => autoscaling::HPA_V2,
            Kind::Lease => "coordination.k8s.io/v1",
            _ => "v1",
        }
    }

    /// The lower-case plural, as in store keys and `kubectl get`.
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Node => "nodes",
            Kind::Pod => "pods",
            Kind::Deployment => "deployments",
            Kind::Service => "services",
            Kind::Endpoints => "endpoints",
            Kind::Event => "events",
            Kind::HorizontalPodAutoscaler => "horizontalpodautoscalers",
            Kind::Lease => "leases",
        }
    }

    /// kubectl's `deployment.apps`-style name, for messages.
    pub fn qualified(self) -> String {
        match self.api_version().split_once('/') {
            Some((group, _)) => format!("{}.{group}", self.plural().trim_end_matches('s')),
            None => self.name().to_lowercase(),
        }
    }

    pub fn namespaced(self) -> bool {
        self != Kind::Node
    }

    /// Parses what a user types: `pod`, `pods`, `po`, `deploy`, `deployment.apps`, `svc`, ...
    pub fn parse(s: &str) -> Result<Kind, String> {
        let lower = s.to_ascii_lowercase();
        let base = lower.split('.').next().unwrap_or_default();
        let kind = match base {
            "node" | "nodes" | "no" => Kind::Node,
            "pod" | "pods" | "po" => Kind::Pod,
            "deployment" | "deployments" | "deploy" => Kind::Deployment,
            "service" | "services" | "svc" => Kind::Service,
            "endpoints" | "ep" => Kind::Endpoints,
            "event" | "events" | "ev" => Kind::Event,
            "horizontalpodautoscaler" | "horizontalpodautoscalers" | "hpa" => Kind::HorizontalPodAutoscaler,
            "lease" | "leases" => Kind::Lease,
            _ => {
                return Err(format!(
                "unknown kind {s:?}: Corral serves nodes, pods, deployments, services, endpoints, events, horizontalpodautoscalers (hpa) and leases"
            ))
            }
        };
        Ok(kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Any object Corral stores.
// Objects are built once per request and moved rarely; boxing the larger
// kinds would only add noise to every match.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    Node(Node),
    Pod(Pod),
    Deployment(Deployment),
    Service(Service),
    Endpoints(Endpoints),
    Event(Event),
    HorizontalPodAutoscaler(HorizontalPodAutoscaler),
    Lease(Lease),
}

macro_rules! each_object {
    ($obj:expr, $o:ident => $body:expr) => {
        match $obj {
            Object::Node($o) => $body,
            Object::Pod($o) => $body,
            Object::Deployment($o) => $body,
            Object::Service($o) => $body,
            Object::Endpoints($o) => $body,
            Object::Event($o) => $body,
            Object::HorizontalPodAutoscaler($o) => $body,
            Object::Lease($o) => $body,
        }
    };
}

/// Why a manifest or a stored object could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ParseError {
    /// The field path (`spec.template.spec.containers[0].resources.limits.cpu`), or `.` for the document.
    pub path: String,
    pub message: String,
}

fn deserialize_at<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, ParseError> {
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let message = e.into_inner().to_string();
        // serde says "unknown field `x`, expected one of ..." (or "expected
        // `a` or `b`" for two fields); the path already ends with the name.
        let message = if message.starts_with("unknown field") && message.contains(", expected") {
            "is not supported by Corral (see the supported subset in the README)".to_string()
        } else {
            message
        };
        ParseError { path, message }
    })
}

impl Object {
    /// Reads an object from a JSON value (a parsed manifest document),
    /// choosing the kind from `apiVersion` and `kind`.
    pub fn from_value(value: serde_json::Value) -> Result<Object, ParseError> {
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_string);
        let at = |path: &str, message: String| ParseError { path: path.into(), message };
        let kind_name = field("kind").ok_or_else(|| at("kind", "is required".into()))?;
        let api_version = field("apiVersion").ok_or_else(|| at("apiVersion", "is required".into()))?;
        let kind = Kind::ALL
            .into_iter()
            .find(|k| k.name() == kind_name)
            .ok_or_else(|| at("kind", format!("{kind_name:?} is not a kind Corral serves (Node, Pod, Deployment, Service, Endpoints, Event, HorizontalPodAutoscaler, Lease)")))?;
        if kind == Kind::HorizontalPodAutoscaler && api_version == autoscaling::HPA_V1 {
            let v1: autoscaling::HpaV1 = deserialize_at(value)?;
            return Ok(Object::HorizontalPodAutoscaler(v1.into()));
        }
        if api_version != kind.api_version() {
            return Err(at(
                "apiVersion",
                format!("{kind_name} is served as {:?}, not {api_version:?}", kind.api_version()),
            ));
        }
        Ok(match kind {
            Kind::Node => Object::Node(deserialize_at(value)?),
            Kind::Pod => Object::Pod(deserialize_at(value)?),
            Kind::Deployment => Object::Deployment(deserialize_at(value)?),
            Kind::Service => Object::Service(deserialize_at(value)?),
            Kind::Endpoints => Object::Endpoints(deserialize_at(value)?),
            Kind::Event => Object::Event(deserialize_at(value)?),
            Kind::HorizontalPodAutoscaler => Object::HorizontalPodAutoscaler(deserialize_at(value)?),
            Kind::Lease => Object::Lease(deserialize_at(value)?),
        })
    }

    /// Reads an object from JSON bytes (the stored form).
    pub fn from_json(bytes: &[u8]) -> Result<Object, ParseError> {
        let value: serde_json::Value = serde_json::from_slice(bytes)
            .map_err(|e| ParseError { path: ".".into(), message: e.to_string() })?;
        Object::from_value(value)
    }

    pub fn to_json(&self) -> Vec<u8> {
        each_object!(self, o => serde_json::to_vec(o)).expect("objects serialize to JSON")
    }

    pub fn to_value(&self) -> serde_json::Value {
        each_object!(self, o => serde_json::to_value(o)).expect("objects serialize to JSON")
    }

    pub fn kind(&self) -> Kind {
        match self {
            Object::Node(_) => Kind::Node,
            Object::Pod(_) => Kind::Pod,
            Object::Deployment(_) => Kind::Deployment,
            Object::Service(_) => Kind::Service,
            Object::Endpoints(_) => Kind::Endpoints,
            Object::Event(_) => Kind::Event,
            Object::HorizontalPodAutoscaler(_) => Kind::HorizontalPodAutoscaler,
            Object::Lease(_) => Kind::Lease,
        }
    }

    pub fn meta(&self) -> &ObjectMeta {
        each_object!(self, o => &o.metadata)
    }

    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        each_object!(self, o => &mut o.metadata)
    }

    /// The namespace the object lives in (empty for cluster-scoped kinds).
    pub fn namespace(&self) -> &str {
        if self.kind().namespaced() {
            self.meta().namespace_or_default()
        } else {
            ""
        }
    }

    /// Every problem with the object, each with its field path, under the
    /// rules that hold on every cluster.
    pub fn validate(&self) -> Vec<FieldError> {
        validation::validate(self)
    }

    /// [`Object::validate`] plus the cluster's pod security settings (on a master).
    pub fn validate_with(&self, security: &pod_security::PodSecurity) -> Vec<FieldError> {
        validation::validate_with(self, Some(security))
    }

    /// The spec, for telling a spec change (generation bump) from a metadata one.
    pub fn spec_value(&self) -> serde_json::Value {
        let value = self.to_value();
        match self.kind() {
            // Events and endpoints carry their content at the top level.
            Kind::Event | Kind::Endpoints => {
                let mut v = value;
                if let Some(m) = v.as_object_mut() {
                    m.remove("metadata");
                }
                v
            }
            _ => value.get("spec").cloned().unwrap_or_default(),
        }
    }

    /// Replaces the status with `other`'s (status updates leave the spec alone).
    pub fn take_status_from(&mut self, other: Object) -> Result<(), String> {
        match (self, other) {
            (Object::Node(a), Object::Node(b)) => a.status = b.status,
            (Object::Pod(a), Object::Pod(b)) => a.status = b.status,
            (Object::Deployment(a), Object::Deployment(b)) => a.status = b.status,
            (Object::Service(a), Object::Service(b)) => a.status = b.status,
            (Object::HorizontalPodAutoscaler(a), Object::HorizontalPodAutoscaler(b)) => a.status = b.status,
            (a, b) => {
                return Err(format!("{} has no status of its own to update from a {}", a.kind(), b.kind()))
            }
        }
        Ok(())
    }

    /// Copies the status from `other` (an update of the spec keeps the status it had).
    pub fn keep_status_of(&mut self, other: &Object) {
        match (self, other) {
            (Object::Node(a), Object::Node(b)) => a.status = b.status.clone(),
            (Object::Pod(a), Object::Pod(b)) => a.status = b.status.clone(),
            (Object::Deployment(a), Object::Deployment(b)) => a.status = b.status.clone(),
            (Object::Service(a), Object::Service(b)) => a.status = b.status.clone(),
            (Object::HorizontalPodAutoscaler(a), Object::HorizontalPodAutoscaler(b)) => {
                a.status = b.status.clone()
            }
            _ => {}
        }
    }
}

/// Reads a typed object of a known kind (for controllers and tests).
pub fn from_object<T: DeserializeOwned>(obj: &Object) -> Result<T, ParseError> {
    deserialize_at(obj.to_value())
}

#[cfg(test)]
mod tests;
