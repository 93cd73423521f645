//! Safe pod defaults, after Kubernetes' PodSecurity "baseline" profile:
//! which host paths a pod may mount, and which privileges it may never ask
//! for.
//!
//! - `hostPath` volumes only under the prefixes the admin allows
//!   (`corral master --allowed-host-paths PREFIX[:rw],...`; none by
//!   default), read-only unless the prefix says `:rw`.
//! - Never the host's root, the Docker socket (or a directory holding it),
//!   `/etc`, `/proc`, `/sys`, `/dev`, `/root`, `/boot` or Docker's own data,
//!   even under an allowed prefix ([`protected`]).
//! - Privileged containers, the host's namespaces and capabilities beyond
//!   Docker's default set are refused by the object validation, which
//!   quotes [`BASELINE`] as its rule.
//!
//! Pure functions over strings: the master validates with them at apply
//! time, and the node agent checks [`protected`] again before it mounts
//! anything (defence in depth against objects written some other way).

use std::fmt;
use std::str::FromStr;

/// How the refusals name their rule.
pub const BASELINE: &str = "PodSecurity baseline";

/// The capabilities a container may list in `capabilities.add`: the
/// baseline profile's list, all already in Docker's default set (so adding
/// them changes nothing).
pub const BASELINE_CAPABILITIES: [&str; 13] = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Host paths never mounted into a pod, with why. A path is refused when it
/// is one of them, lies under one, or holds one (mounting `/var` would
/// expose `/var/run/docker.sock`).
const PROTECTED: [(&str, &str); 11] = [
    ("/etc", "the host's configuration and credentials"),
    ("/proc", "the host's processes and kernel settings"),
    ("/sys", "the host's kernel and devices"),
    ("/dev", "the host's devices"),
    ("/root", "the host's root user's home"),
    ("/boot", "the host's kernel and boot loader"),
    ("/var/run/docker.sock", "the Docker socket, which gives root on the host"),
    ("/run/docker.sock", "the Docker socket, which gives root on the host"),
    ("/var/lib/docker", "Docker's data: every container's filesystem"),
    ("/run/containerd", "containerd's socket and state"),
    ("/var/run/containerd", "containerd's socket and state"),
];

/// `path` with `.`, `..` and repeated or trailing slashes resolved, as the
/// kernel would read it (without following symlinks); `None` when it is not
/// absolute. `..` above the root stays at the root.
pub fn normalize(path: &str) -> Option<String> {
    if !path.starts_with('/') {
        return None;
    }
    let mut parts: Vec<&str> = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    Some(format!("/{}", parts.join("/")))
}

/// Whether normalized `path` is `prefix` or lies under it, by whole path
/// components (`/data` covers `/data/x`, not `/database`).
fn covers(prefix: &str, path: &str) -> bool {
    prefix == "/" || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Why normalized `path` may never be mounted, if it may not.
pub fn protected(path: &str) -> Option<String> {
    if path == "/" {
        return Some("the host's root filesystem is never mounted into a pod".into());
    }
    for (p, what) in PROTECTED {
        if covers(p, path) {
            return Some(format!("{p} ({what}) is never mounted into a pod"));
        }
        if covers(path, p) {
            return Some(format!("it holds {p} ({what}), which is never mounted into a pod"));
        }
    }
    None
}

/// Whether a pod may write where it mounts an allowed host path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// One `--allowed-host-paths` entry: `PREFIX`, `PREFIX:ro` or `PREFIX:rw`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPathPrefix {
    /// Normalized and absolute.
    pub path: String,
    pub access: Access,
}

impl fmt::Display for HostPathPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.access {
            Access::ReadOnly => write!(f, "{} (read-only)", self.path),
            Access::ReadWrite => write!(f, "{} (read-write)", self.path),
        }
    }
}

impl FromStr for HostPathPrefix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (raw, access) = match s.rsplit_once(':') {
            Some((p, "rw")) => (p, Access::ReadWrite),
            Some((p, "ro")) => (p, Access::ReadOnly),
            _ => (s, Access::ReadOnly),
        };
        let path = normalize(raw)
            .ok_or_else(|| format!("{s:?}: an allowed host path must be absolute (PREFIX[:rw])"))?;
        // A prefix that holds a protected path (`/`, `/var`) still serves its
        // other children; one inside a protected path could serve nothing.
        if path != "/" && PROTECTED.iter().any(|(p, _)| covers(p, &path)) {
            let why = protected(&path).unwrap_or_default();
            return Err(format!("{s:?}: {why}, so it cannot be allowed"));
        }
        Ok(HostPathPrefix { path, access })
    }
}

/// The pod security settings of a cluster, as its masters were started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodSecurity {
    /// Where hostPath volumes may point; empty: nowhere.
    pub allowed_host_paths: Vec<HostPathPrefix>,
}

impl PodSecurity {
    /// The access a pod gets to host path `path`, or why it may not mount it.
    /// The most specific allowed prefix decides.
    pub fn host_path(&self, path: &str) -> Result<(Access, &HostPathPrefix), String> {
        let normalized = check_host_path(path)?;
        self.allowed_host_paths
            .iter()
            .filter(|p| covers(&p.path, &normalized))
            .max_by_key(|p| p.path.len())
            .map(|p| (p.access, p))
            .ok_or_else(|| {
                let allowed = match self.allowed_host_paths.as_slice() {
                    [] => "none is allowed on this cluster".to_string(),
                    list => {
                        let list: Vec<String> = list.iter().map(ToString::to_string).collect();
                        format!("this cluster allows {}", list.join(", "))
                    }
                };
                format!(
                    "{path:?} is not allowed: hostPath volumes must be under an allowed prefix (corral master --allowed-host-paths); {allowed}"
                )
            })
    }
}

/// The rules that hold on every cluster: `path` is absolute and not
/// [`protected`]. Returns it normalized.
pub fn check_host_path(path: &str) -> Result<String, String> {
    let normalized = normalize(path)
        .ok_or_else(|| format!("{path:?} is not allowed: a hostPath must be an absolute path"))?;
    match protected(&normalized) {
        Some(why) => {
            Err(format!("{path:?} is not allowed: {why}, even under an allowed prefix ({BASELINE})"))
        }
        None => Ok(normalized),
    }
}

/// Whether `capability` (with or without `CAP_`, any case) may be added.
pub fn capability_allowed(capability: &str) -> bool {
    let upper = capability.to_ascii_uppercase();
    let name = upper.strip_prefix("CAP_").unwrap_or(&upper);
    BASELINE_CAPABILITIES.contains(&name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(entries: &[&str]) -> PodSecurity {
        PodSecurity { allowed_host_paths: entries.iter().map(|e| e.parse().unwrap()).collect() }
    }

    #[test]
    fn normalize_resolves_dots_and_slashes() {
        for (input, want) in [
            ("/", Some("/")),
            ("//", Some("/")),
            ("/data/", Some("/data")),
            ("/data//x/./y", Some("/data/x/y")),
            ("/data/../etc", Some("/etc")),
            ("/../../etc/shadow", Some("/etc/shadow")),
            ("/a/b/..", Some("/a")),
            ("data", None),
            ("./data", None),
            ("", None),
        ] {
            assert_eq!(normalize(input).as_deref(), want, "input {input:?}");
        }
    }

    #[test]
    fn protected_paths_are_refused_under_over_and_at() {
        for path in [
            "/",
            "/etc",
            "/etc/shadow",
            "/proc",
            "/proc/1/root",
            "/sys",
            "/dev",
            "/dev/sda",
            "/root",
            "/root/.ssh",
            "/var/run/docker.sock",
            "/run/docker.sock",
            "/var/run",
            "/run",
            "/var",
            "/var/lib/docker/overlay2",
            "/var/lib",
        ] {
            assert!(protected(path).is_some(), "{path} should be protected");
        }
        for path in ["/data", "/srv/www", "/tmp/x", "/etcetera", "/device", "/var/lib/app", "/run/user/1000"]
        {
            assert_eq!(protected(path), None, "{path} should be mountable");
        }
    }

    #[test]
    fn a_host_path_must_be_under_an_allowed_prefix() {
        let none = PodSecurity::default();
        assert_eq!(
            none.host_path("/data").unwrap_err(),
            "\"/data\" is not allowed: hostPath volumes must be under an allowed prefix (corral master --allowed-host-paths); none is allowed on this cluster"
        );
        let p = policy(&["/srv", "/srv/uploads:rw", "/tmp/cache:rw"]);
        for (path, want) in [
            ("/srv", Some(Access::ReadOnly)),
            ("/srv/www/index.html", Some(Access::ReadOnly)),
            ("/srv/uploads", Some(Access::ReadWrite)),
            ("/srv/uploads/../www", Some(Access::ReadOnly)),
            ("//srv//uploads/x", Some(Access::ReadWrite)),
            ("/tmp/cache", Some(Access::ReadWrite)),
            ("/tmp/cache2", None),
            ("/tmp", None),
            ("/srv/../etc", None),
            ("/srvx", None),
            ("srv", None),
        ] {
            assert_eq!(p.host_path(path).ok().map(|(a, _)| a), want, "path {path:?}");
        }
        let err = p.host_path("/opt").unwrap_err();
        assert!(
            err.ends_with(
                "this cluster allows /srv (read-only), /srv/uploads (read-write), /tmp/cache (read-write)"
            ),
            "{err}"
        );
    }

    #[test]
    fn protected_paths_stay_refused_under_an_allowed_prefix() {
        let p = policy(&["/:rw"]);
        assert_eq!(p.host_path("/data").map(|(a, _)| a), Ok(Access::ReadWrite));
        for (path, why) in [
            ("/", "the host's root filesystem is never mounted"),
            ("/etc/shadow", "/etc (the host's configuration and credentials) is never mounted"),
            ("/var/run", "it holds /var/run/docker.sock (the Docker socket"),
            ("/data/../run/docker.sock", "/run/docker.sock (the Docker socket"),
        ] {
            let err = p.host_path(path).unwrap_err();
            assert!(err.starts_with(&format!("{path:?} is not allowed: ")), "{err}");
            assert!(err.contains(why), "{path}: {err}");
            assert!(err.ends_with("even under an allowed prefix (PodSecurity baseline)"), "{err}");
        }
        assert!(p.host_path("relative/x").unwrap_err().contains("must be an absolute path"));
    }

    #[test]
    fn allowed_prefixes_parse_with_their_access() {
        assert_eq!(
            "/srv/data".parse::<HostPathPrefix>(),
            Ok(HostPathPrefix { path: "/srv/data".into(), access: Access::ReadOnly })
        );
        assert_eq!(
            "/srv//data/:rw".parse::<HostPathPrefix>(),
            Ok(HostPathPrefix { path: "/srv/data".into(), access: Access::ReadWrite })
        );
        assert_eq!("/x:ro".parse::<HostPathPrefix>().map(|p| p.access), Ok(Access::ReadOnly));
        assert_eq!("/".parse::<HostPathPrefix>().map(|p| p.path), Ok("/".to_string()));
        assert!("data:rw".parse::<HostPathPrefix>().unwrap_err().contains("must be absolute"));
        let err = "/etc/app".parse::<HostPathPrefix>().unwrap_err();
        assert!(err.contains("/etc (the host's configuration and credentials) is never mounted"), "{err}");
    }

    #[test]
    fn only_baseline_capabilities_may_be_added() {
        for cap in ["NET_BIND_SERVICE", "cap_chown", "CAP_KILL"] {
            assert!(capability_allowed(cap), "{cap}");
        }
        for cap in ["NET_ADMIN", "SYS_ADMIN", "NET_RAW", "ALL", "SYS_PTRACE"] {
            assert!(!capability_allowed(cap), "{cap}");
        }
    }
}
