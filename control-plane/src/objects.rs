//! The object registry: where objects live in the store, and what an
//! apply, a status update, a scale or a delete does to a stored object.
//! Pure functions over plain data; the gRPC service is the shell.

use raft_store::{Expect, KeyValue, Revision};

use crate::api::{Kind, Object, Time};

/// The store key of an object: `/registry/<plural>/<namespace>/<name>`
/// (`/registry/nodes/<name>` for cluster-scoped kinds).
pub fn key(kind: Kind, namespace: &str, name: &str) -> Vec<u8> {
    if kind.namespaced() {
        format!("/registry/{}/{namespace}/{name}", kind.plural()).into_bytes()
    } else {
        format!("/registry/{}/{name}", kind.plural()).into_bytes()
    }
}

/// The key prefix of every object of `kind`, in one namespace or all (`None`).
pub fn prefix(kind: Kind, namespace: Option<&str>) -> Vec<u8> {
    match namespace.filter(|_| kind.namespaced()) {
        Some(ns) => format!("/registry/{}/{ns}/", kind.plural()).into_bytes(),
        None => format!("/registry/{}/", kind.plural()).into_bytes(),
    }
}

/// Reads a stored object; its `resourceVersion` is the key's revision.
pub fn decode(kv: &KeyValue) -> Result<Object, String> {
    let mut obj = Object::from_json(&kv.value)
        .map_err(|e| format!("stored object {} is unreadable: {e}", String::from_utf8_lossy(&kv.key)))?;
    obj.meta_mut().resource_version = Some(kv.revision.0.to_string());
    Ok(obj)
}

/// The stored form: no `resourceVersion` (the store's revision is the truth).
pub fn encode(obj: &Object) -> Vec<u8> {
    let mut obj = obj.clone();
    obj.meta_mut().resource_version = None;
    obj.to_json()
}

/// Annotations written by Corral's controllers rather than by users.
pub fn is_system_annotation(key: &str) -> bool {
    key == "deployment.kubernetes.io/revision" || key.starts_with("corral.io/")
}

/// What an apply did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Created,
    Configured,
    Unchanged,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Created => "created",
            Action::Configured => "configured",
            Action::Unchanged => "unchanged",
        }
    }
}

/// Why a change is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
}

fn parse_rv(obj: &Object) -> Result<Option<Revision>, RegistryError> {
    match obj.meta().resource_version.as_deref() {
        None | Some("") => Ok(None),
        Some(rv) => rv.parse().map(|r| Some(Revision(r))).map_err(|_| {
            RegistryError::Invalid(format!("metadata.resourceVersion: {rv:?} is not a revision number"))
        }),
    }
}

fn display_name(obj: &Object) -> String {
    match obj.kind().namespaced() {
        true => {
            format!("{} \"{}\" in namespace \"{}\"", obj.kind().qualified(), obj.meta().name, obj.namespace())
        }
        false => format!("{} \"{}\"", obj.kind().qualified(), obj.meta().name),
    }
}

/// Plans an apply (create or update) of `incoming` over `current` (the
/// stored object and its revision). Returns the object to store, the
/// condition its write carries, and what it does. Pure.
///
/// Users write metadata and spec: an update keeps the stored status, uid
/// and creation time; a spec change bumps the generation. A given
/// `resourceVersion` must match the stored one.
pub fn plan_apply(
    mut incoming: Object,
    current: Option<(&Object, Revision)>,
    now: Time,
    new_uid: &mut dyn FnMut() -> String,
) -> Result<(Object, Expect, Action), RegistryError> {
    let wanted_rv = parse_rv(&incoming)?;
    if incoming.kind().namespaced() {
        let ns = incoming.namespace().to_string();
        incoming.meta_mut().namespace = Some(ns);
    }
    let Some((current, rev)) = current else {
        if wanted_rv.is_some() {
            return Err(RegistryError::NotFound(format!(
                "{} not found: it cannot be updated at a resourceVersion; remove resourceVersion to create it",
                display_name(&incoming)
            )));
        }
        let meta = incoming.meta_mut();
        meta.uid = Some(new_uid());
        meta.creation_timestamp = Some(now);
        meta.generation = Some(1);
        meta.deletion_timestamp = None;
        meta.resource_version = None;
        return Ok((incoming, Expect::Absent, Action::Created));
    };
    if let Some(rv) = wanted_rv {
        if rv != rev {
            return Err(RegistryError::Conflict(format!(
                "Operation cannot be fulfilled on {}: the object has been modified (resourceVersion {rv} is not the current {rev}); read it again and retry",
                display_name(&incoming)
            )));
        }
    }
    if current.meta().deletion_timestamp.is_some() {
        return Err(RegistryError::Conflict(format!(
            "{} is being deleted; wait for it to go, then create it again",
            display_name(&incoming)
        )));
    }
    if let (Object::Pod(new), Object::Pod(old)) = (&mut incoming, current) {
        // The binding is the scheduler's: a re-applied manifest keeps it.
        if new.spec.node_name.is_none() {
            new.spec.node_name = old.spec.node_name.clone();
        }
        if new.spec != old.spec {
            return Err(RegistryError::Invalid(format!(
                "{}: spec: Forbidden: pod updates may not change the spec; delete the pod and create it again",
                display_name(&incoming)
            )));
        }
    }
    let shown = display_name(&incoming);
    if let (Object::Service(new), Object::Service(old)) = (&mut incoming, current) {
        // The cluster IP is allocated once and kept: a manifest without one
        // keeps it, one with another is refused.
        match (new.spec.cluster_ip.as_deref().filter(|ip| !ip.is_empty()), old.spec.cluster_ip.as_deref()) {
            (None, _) => new.spec.cluster_ip = old.spec.cluster_ip.clone(),
            (Some(a), Some(b)) if a == b => {}
            (Some(a), b) => {
                return Err(RegistryError::Invalid(format!(
                    "{shown}: spec.clusterIP: Invalid value: {a:?}: field is immutable (it is {:?}); delete the service and create it again",
                    b.unwrap_or("")
                )));
            }
        }
    }
    if let (Object::Node(new), Object::Node(old)) = (&mut incoming, current) {
        // The pod CIDR is the node IPAM controller's, given once: a
        // manifest without one keeps it, one with another is refused.
        if new.spec.pod_cidr.is_none() && new.spec.pod_cidrs.is_empty() {
            new.spec.pod_cidr = old.spec.pod_cidr.clone();
            new.spec.pod_cidrs = old.spec.pod_cidrs.clone();
        } else if old.spec.pod_cidr.is_some() && new.spec.pod_cidr != old.spec.pod_cidr {
            return Err(RegistryError::Invalid(format!(
                "{shown}: spec.podCIDR: Forbidden: podCIDR may only be set once (it is {:?}); delete the node to release it",
                old.spec.pod_cidr.as_deref().unwrap_or("")
            )));
        }
    }
    let spec_changed = incoming.spec_value() != current.spec_value();
    let old = current.meta().clone();
    incoming.keep_status_of(current);
    {
        let meta = incoming.meta_mut();
        meta.uid = old.uid.clone();
        meta.creation_timestamp = old.creation_timestamp;
        meta.deletion_timestamp = None;
        if meta.owner_references.is_empty() {
            meta.owner_references = old.owner_references.clone();
        }
        // Annotations the controllers keep (revision number and history)
        // survive an apply of a manifest that does not set them.
        for (k, v) in &old.annotations {
            if is_system_annotation(k) && !meta.annotations.contains_key(k) {
                meta.annotations.insert(k.clone(), v.clone());
            }
        }
        let generation = old.generation.unwrap_or(1);
        meta.generation = Some(if spec_changed { generation + 1 } else { generation });
        meta.resource_version = None;
    }
    if encode(&incoming) == encode(current) {
        return Ok((current.clone(), Expect::Revision(rev), Action::Unchanged));
    }
    Ok((incoming, Expect::Revision(rev), Action::Configured))
}

/// Plans a status update: the stored object with `incoming`'s status. Pure.
pub fn plan_status(
    incoming: Object,
    current: &Object,
    rev: Revision,
) -> Result<(Object, Expect), RegistryError> {
    if let Some(rv) = parse_rv(&incoming)? {
        if rv != rev {
            return Err(RegistryError::Conflict(format!(
                "status of {} changed since resourceVersion {rv} (now {rev}); read it again and retry",
                display_name(current)
            )));
        }
    }
    let mut next = current.clone();
    next.take_status_from(incoming).map_err(RegistryError::Invalid)?;
    Ok((next, Expect::Revision(rev)))
}

/// What a delete does.
#[derive(Debug, Clone, PartialEq)]
pub enum DeletePlan {
    /// Remove the key now.
    Remove,
    /// A pod on a node: mark it terminating; the node removes it once its
    /// containers have stopped (or the node-lifecycle controller, if the node is gone).
    MarkTerminating(Box<Object>),
    /// Already terminating: nothing more to do.
    AlreadyTerminating,
}

pub fn plan_delete(current: &Object, now: Time, force: bool) -> DeletePlan {
    let Object::Pod(pod) = current else { return DeletePlan::Remove };
    if force {
        return DeletePlan::Remove;
    }
    if pod.spec.node_name.is_none() {
        return DeletePlan::Remove;
    }
    if pod.metadata.deletion_timestamp.is_some() {
        return DeletePlan::AlreadyTerminating;
    }
    let mut next = current.clone();
    let grace = pod.spec.termination_grace_period_seconds.unwrap_or(30);
    let meta = next.meta_mut();
    meta.deletion_timestamp = Some(now);
    meta.deletion_grace_period_seconds = Some(grace);
    DeletePlan::MarkTerminating(Box::new(next))
}

/// Plans `scale`: a deployment with `replicas`. Pure.
pub fn plan_scale(current: &Object, replicas: i32) -> Result<Object, RegistryError> {
    let Object::Deployment(d) = current else {
        return Err(RegistryError::Invalid(format!(
            "{} cannot be scaled: only deployments can",
            current.kind()
        )));
    };
    if replicas < 0 {
        return Err(RegistryError::Invalid(format!(
            "replicas: {replicas}: must be greater than or equal to 0"
        )));
    }
    let mut next = d.clone();
    if next.spec.replicas != Some(replicas) {
        next.spec.replicas = Some(replicas);
        next.metadata.generation = Some(d.metadata.generation.unwrap_or(1) + 1);
    }
    Ok(Object::Deployment(next))
}

#[cfg(test)]
mod tests;
