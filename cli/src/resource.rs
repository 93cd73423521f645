//! The one resolver of what users type for a kind (`po`, `deploy`,
//! `deployments.apps`, `rs`, ...) and of `KIND NAME` / `KIND/NAME` targets.
//!
//! ReplicaSets are not stored objects in Corral: a deployment's revisions
//! are kept in its annotations, and `get replicasets` shows them as
//! kubectl would show ReplicaSets (see `commands::replicasets`).

use std::fmt;

use control_plane::api::Kind;

use crate::commands::{CliError, Result};

/// What a CLI command can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Object(Kind),
    /// A deployment's revision, shown as a ReplicaSet (read only).
    ReplicaSet,
}

impl Resource {
    pub fn parse(s: &str) -> Result<Resource> {
        let base = s.to_ascii_lowercase();
        let base = base.split('.').next().unwrap_or_default();
        if matches!(base, "rs" | "replicaset" | "replicasets") {
            return Ok(Resource::ReplicaSet);
        }
        Kind::parse(s).map(Resource::Object).map_err(|_| {
            CliError::msg(format!(
                "unknown kind {s:?}: Corral serves pods (po), deployments (deploy), replicasets (rs), services (svc), endpoints (ep), nodes (no), events (ev), horizontalpodautoscalers (hpa) and leases"
            ))
        })
    }

    /// The stored kind, or an error saying that `what` needs one.
    pub fn kind(self, what: &str) -> Result<Kind> {
        match self {
            Resource::Object(k) => Ok(k),
            Resource::ReplicaSet => Err(CliError::msg(format!(
                "{what} replicasets: Corral keeps a deployment's revisions in the deployment; use the deployment (corral rollout history deployment/NAME)"
            ))),
        }
    }

    pub fn namespaced(self) -> bool {
        match self {
            Resource::Object(k) => k.namespaced(),
            Resource::ReplicaSet => true,
        }
    }

    /// kubectl's `deployment.apps`-style name.
    pub fn qualified(self) -> String {
        match self {
            Resource::Object(k) => k.qualified(),
            Resource::ReplicaSet => "replicaset.apps".into(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Resource::Object(k) => f.write_str(k.plural()),
            Resource::ReplicaSet => f.write_str("replicasets"),
        }
    }
}

/// Reads `KIND`, `KIND NAME` or `KIND/NAME` from positional arguments.
pub fn target(args: &[String]) -> Result<(Resource, Option<String>)> {
    match args {
        [one] => match one.split_once('/') {
            Some((k, n)) if !n.is_empty() => Ok((Resource::parse(k)?, Some(n.to_string()))),
            Some(_) => Err(CliError::msg(format!("{one:?}: give KIND/NAME, e.g. deployment/web"))),
            None => Ok((Resource::parse(one)?, None)),
        },
        [kind, name] if !kind.contains('/') => Ok((Resource::parse(kind)?, Some(name.clone()))),
        _ => Err(CliError::msg("give KIND NAME or KIND/NAME (e.g. deployment/web)")),
    }
}

/// Reads a `KIND NAME` / `KIND/NAME` target that must name one object.
pub fn named(args: &[String]) -> Result<(Resource, String)> {
    match target(args)? {
        (r, Some(n)) => Ok((r, n)),
        (r, None) => Err(CliError::msg(format!("give the name too: {r} NAME or {r}/NAME"))),
    }
}

/// Reads `deployment/NAME` (or `deploy/NAME`, `deployments NAME`).
pub fn deployment(args: &[String]) -> Result<String> {
    match named(args)? {
        (Resource::Object(Kind::Deployment), name) => Ok(name),
        (r, _) => Err(CliError::msg(format!("{r}: only deployments can do this; give deployment/NAME"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn kubectl_aliases_resolve() {
        let cases = [
            ("po", Resource::Object(Kind::Pod)),
            ("deploy", Resource::Object(Kind::Deployment)),
            ("deployments.apps", Resource::Object(Kind::Deployment)),
            ("svc", Resource::Object(Kind::Service)),
            ("no", Resource::Object(Kind::Node)),
            ("ep", Resource::Object(Kind::Endpoints)),
            ("ev", Resource::Object(Kind::Event)),
            ("rs", Resource::ReplicaSet),
            ("ReplicaSets", Resource::ReplicaSet),
        ];
        for (typed, want) in cases {
            assert_eq!(Resource::parse(typed).unwrap(), want, "{typed}");
        }
        assert!(Resource::parse("configmaps").unwrap_err().to_string().contains("replicasets (rs)"));
    }

    #[test]
    fn targets_read_kind_name_and_kind_slash_name() {
        let pod = Resource::Object(Kind::Pod);
        assert_eq!(target(&args(&["pods"])).unwrap(), (pod, None));
        assert_eq!(target(&args(&["pod", "web"])).unwrap(), (pod, Some("web".into())));
        assert_eq!(target(&args(&["po/web"])).unwrap(), (pod, Some("web".into())));
        assert!(target(&args(&["po/"])).is_err());
        assert!(named(&args(&["pods"])).unwrap_err().to_string().contains("give the name too"));
        assert_eq!(deployment(&args(&["deploy/web"])).unwrap(), "web");
        assert!(deployment(&args(&["svc/web"])).unwrap_err().to_string().contains("only deployments"));
    }
}
