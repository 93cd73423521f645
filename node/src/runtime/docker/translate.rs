//! Pure conversions between Corral's runtime types and Docker's: container
//! and volume names, labels, create bodies, states, times, memory figures
//! and errors. No I/O here, so every rule is unit-tested with tables.

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;
use std::time::SystemTime;

use bollard::errors::Error as DockerError;
use bollard::models::{
    ContainerCreateBody, ContainerStateStatusEnum, HostConfig, Mount as DockerMount, MountType, PortBinding,
    RestartPolicy, RestartPolicyNameEnum,
};

use crate::runtime::{
    labels, ContainerConfig, ContainerInfo, ContainerState, MountSource, PodRef, PortMapping, PortProtocol,
    RuntimeError, SandboxConfig,
};

/// The sandbox's stand-in for a container name, as kubelet's dockershim did.
pub const SANDBOX_CONTAINER: &str = "POD";
pub const ROLE_SANDBOX: &str = "sandbox";
pub const ROLE_APP: &str = "app";

/// The sandbox's process: waits forever and exits 0 at once on SIGTERM, so
/// stopping a pod never waits out the grace period on its sandbox. Written
/// for busybox `sh`; `wait` returns as soon as a trapped signal arrives.
pub fn sandbox_command() -> Vec<String> {
    ["/bin/sh", "-c", "trap 'exit 0' TERM INT; sleep 2147483647 & wait"].map(String::from).to_vec()
}

/// Replaces what Docker refuses in a name (`[a-zA-Z0-9][a-zA-Z0-9_.-]*`)
/// with `-`. Names are never parsed back (labels are), so lossy is fine.
pub fn sanitize(part: &str) -> String {
    let cleaned: String = part
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .collect();
    if cleaned.is_empty() {
        "-".to_string()
    } else {
        cleaned
    }
}

/// `corral_<node>_<namespace>_<pod>_<container>_<attempt>`; the sandbox's
/// container is [`SANDBOX_CONTAINER`]. The `corral` prefix keeps the first
/// character alphanumeric, as Docker requires.
pub fn container_name(node: &str, pod: &PodRef, container: &str, attempt: u32) -> String {
    format!(
        "corral_{}_{}_{}_{}_{attempt}",
        sanitize(node),
        sanitize(&pod.namespace),
        sanitize(&pod.name),
        sanitize(container)
    )
}

/// The Docker volume backing one emptyDir of a pod.
pub fn volume_name(pod_uid: &str, volume: &str) -> String {
    format!("corral-{}-{}", sanitize(pod_uid), sanitize(volume))
}

/// Labels shared by everything of one pod. Extra labels go in first so that
/// they can never override Corral's own.
fn pod_labels(pod: &PodRef, node: &str, extra: &BTreeMap<String, String>) -> HashMap<String, String> {
    let mut out: HashMap<String, String> = extra.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    for (k, v) in [
        (labels::OWNED, "true"),
        (labels::NODE, node),
        (labels::POD_UID, pod.uid.as_str()),
        (labels::POD_NAMESPACE, pod.namespace.as_str()),
        (labels::POD_NAME, pod.name.as_str()),
    ] {
        out.insert(k.to_string(), v.to_string());
    }
    out
}

pub fn volume_labels(pod: &PodRef, node: &str, extra: &BTreeMap<String, String>) -> HashMap<String, String> {
    pod_labels(pod, node, extra)
}

pub fn sandbox_labels(config: &SandboxConfig) -> HashMap<String, String> {
    let mut out = pod_labels(&config.pod, &config.node, &config.extra_labels);
    out.insert(labels::ROLE.into(), ROLE_SANDBOX.into());
    out.insert(labels::ATTEMPT.into(), "0".into());
    out.insert(labels::SPEC_HASH.into(), String::new());
    out
}

pub fn app_labels(config: &ContainerConfig) -> HashMap<String, String> {
    let mut out = pod_labels(&config.pod, &config.node, &config.extra_labels);
    out.insert(labels::ROLE.into(), ROLE_APP.into());
    out.insert(labels::CONTAINER.into(), config.name.clone());
    out.insert(labels::ATTEMPT.into(), config.attempt.to_string());
    out.insert(labels::SPEC_HASH.into(), config.spec_hash.clone());
    out
}

/// Docker's key for a container port: `80/tcp`.
pub fn port_key(port: &PortMapping) -> String {
    let proto = match port.protocol {
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
    };
    format!("{}/{proto}", port.container_port)
}

/// The processes a container may hold unless the node says otherwise
/// (`corral node --pod-pids-limit`): a fork bomb stops there.
pub const DEFAULT_PIDS_LIMIT: i64 = 4096;

/// What every container Corral creates gets, sandbox or app, after
/// Kubernetes' PodSecurity "baseline": no privilege escalation
/// (`no-new-privileges`, so setuid binaries gain nothing), Docker's default
/// capability set (none added), a pids limit, never privileged, and none of
/// the host's namespaces (network, PID, IPC, UTS, user).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hardening {
    /// Docker's PidsLimit, per container.
    pub pids_limit: i64,
}

impl Default for Hardening {
    fn default() -> Self {
        Hardening { pids_limit: DEFAULT_PIDS_LIMIT }
    }
}

/// The option that keeps a container's processes from gaining privileges.
pub const NO_NEW_PRIVILEGES: &str = "no-new-privileges:true";

/// `host` with [`Hardening`] applied over whatever it said.
fn harden(host: HostConfig, hardening: &Hardening) -> HostConfig {
    HostConfig {
        security_opt: Some(vec![NO_NEW_PRIVILEGES.to_string()]),
        pids_limit: Some(hardening.pids_limit),
        privileged: Some(false),
        cap_add: None,
        pid_mode: None,
        ipc_mode: None,
        uts_mode: None,
        userns_mode: None,
        ..host
    }
}

/// The sandbox container: the pause command on the Corral network, with the
/// pod's hostname, published ports and DNS settings.
/// `ip`: the pod's address when the runtime chooses it (a bridge shared by
/// several nodes); `None` lets the engine choose.
pub fn sandbox_body(
    config: &SandboxConfig,
    image: &str,
    network: &str,
    ip: Option<std::net::Ipv4Addr>,
    hardening: &Hardening,
) -> ContainerCreateBody {
    let mut bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
    for port in &config.ports {
        // An empty host port asks Docker for an ephemeral one.
        let host_port = if port.host_port == 0 { String::new() } else { port.host_port.to_string() };
        bindings
            .entry(port_key(port))
            .or_insert_with(|| Some(Vec::new()))
            .get_or_insert_with(Vec::new)
            .push(PortBinding { host_ip: Some(port.host_ip.to_string()), host_port: Some(host_port) });
    }
    let mut exposed: Vec<String> = bindings.keys().cloned().collect();
    exposed.sort();
    ContainerCreateBody {
        image: Some(image.to_string()),
        hostname: Some(config.hostname.clone()),
        entrypoint: Some(Vec::new()),
        cmd: Some(sandbox_command()),
        labels: Some(sandbox_labels(config)),
        exposed_ports: (!exposed.is_empty()).then_some(exposed),
        host_config: Some(harden(
            HostConfig {
                network_mode: Some(network.to_string()),
                port_bindings: (!bindings.is_empty()).then_some(bindings),
                dns: (!config.dns_servers.is_empty())
                    .then(|| config.dns_servers.iter().map(IpAddr::to_string).collect()),
                dns_search: (!config.dns_search.is_empty()).then(|| config.dns_search.clone()),
                dns_options: (!config.dns_options.is_empty()).then(|| config.dns_options.clone()),
                restart_policy: Some(no_restart()),
                ..Default::default()
            },
            hardening,
        )),
        networking_config: ip.map(|ip| bollard::models::NetworkingConfig {
            endpoints_config: Some(HashMap::from([(
                network.to_string(),
                bollard::models::EndpointSettings {
                    ipam_config: Some(bollard::models::EndpointIpamConfig {
                        ipv4_address: Some(ip.to_string()),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
            )])),
        }),
        ..Default::default()
    }
}

/// An app container in the sandbox's network namespace. Hostname, ports and
/// DNS belong to the sandbox: Docker refuses them with `container:` mode.
pub fn app_body(sandbox_id: &str, config: &ContainerConfig, hardening: &Hardening) -> ContainerCreateBody {
    let mounts: Vec<DockerMount> = config
        .mounts
        .iter()
        .map(|m| {
            let (typ, source) = match &m.source {
                MountSource::EmptyDir(volume) => (MountType::VOLUME, volume_name(&config.pod.uid, volume)),
                MountSource::HostPath(path) => (MountType::BIND, path.to_string_lossy().into_owned()),
            };
            DockerMount {
                typ: Some(typ),
                source: Some(source),
                target: Some(m.target.clone()),
                read_only: Some(m.read_only),
                ..Default::default()
            }
        })
        .collect();
    ContainerCreateBody {
        image: Some(config.image.clone()),
        entrypoint: (!config.command.is_empty()).then(|| config.command.clone()),
        cmd: (!config.args.is_empty()).then(|| config.args.clone()),
        env: (!config.env.is_empty()).then(|| config.env.iter().map(|(k, v)| format!("{k}={v}")).collect()),
        labels: Some(app_labels(config)),
        host_config: Some(harden(
            HostConfig {
                network_mode: Some(format!("container:{sandbox_id}")),
                mounts: (!mounts.is_empty()).then_some(mounts),
                nano_cpus: config
                    .cpu_limit_millis
                    .map(|m| m.saturating_mul(1_000_000).min(i64::MAX as u64) as i64),
                memory: config.memory_limit_bytes.map(|b| b.min(i64::MAX as u64) as i64),
                restart_policy: Some(no_restart()),
                ..Default::default()
            },
            hardening,
        )),
        ..Default::default()
    }
}

/// The agent restarts containers itself (it counts attempts); Docker must not.
fn no_restart() -> RestartPolicy {
    RestartPolicy { name: Some(RestartPolicyNameEnum::NO), maximum_retry_count: None }
}

/// Docker's timestamps are RFC 3339 in UTC; "never" is year 1.
pub fn parse_docker_time(text: &str) -> Option<SystemTime> {
    let parsed = chrono::DateTime::parse_from_rfc3339(text).ok()?;
    if parsed.timestamp() <= 0 {
        return None;
    }
    Some(SystemTime::from(parsed))
}

/// What inspect says about a container's state, in Corral's terms.
#[derive(Debug, Clone, Default)]
pub struct DockerState<'a> {
    pub status: Option<ContainerStateStatusEnum>,
    pub exit_code: Option<i64>,
    pub started_at: Option<&'a str>,
    pub finished_at: Option<&'a str>,
    pub oom_killed: bool,
}

pub fn container_state(state: &DockerState<'_>) -> ContainerState {
    use ContainerStateStatusEnum as S;
    let started_at = state.started_at.and_then(parse_docker_time);
    match state.status {
        // Paused and restarting containers still hold their processes.
        Some(S::RUNNING | S::PAUSED | S::RESTARTING) => {
            ContainerState::Running { started_at: started_at.unwrap_or(SystemTime::UNIX_EPOCH) }
        }
        Some(S::EXITED | S::DEAD | S::REMOVING | S::STOPPING) => ContainerState::Exited {
            exit_code: state.exit_code.unwrap_or(0),
            started_at,
            finished_at: state.finished_at.and_then(parse_docker_time),
            oom_killed: state.oom_killed,
        },
        Some(S::CREATED | S::EMPTY) | None => ContainerState::Created,
    }
}

/// Reads a container back from its labels; `None` when they are not
/// Corral's (no pod uid), so a stray container never confuses the agent.
pub fn container_info(
    id: &str,
    labels_of: &HashMap<String, String>,
    image: &str,
    state: ContainerState,
    ip: Option<IpAddr>,
) -> Option<ContainerInfo> {
    let get = |k: &str| labels_of.get(k).cloned();
    let pod = PodRef {
        uid: get(labels::POD_UID)?,
        namespace: get(labels::POD_NAMESPACE).unwrap_or_default(),
        name: get(labels::POD_NAME).unwrap_or_default(),
    };
    let container = match get(labels::ROLE).as_deref() {
        Some(ROLE_SANDBOX) => None,
        _ => Some(get(labels::CONTAINER)?),
    };
    Some(ContainerInfo {
        id: id.to_string(),
        pod,
        node: get(labels::NODE)?,
        container,
        attempt: get(labels::ATTEMPT).and_then(|a| a.parse().ok()).unwrap_or(0),
        spec_hash: get(labels::SPEC_HASH).unwrap_or_default(),
        image: image.to_string(),
        state,
        ip,
    })
}

/// Memory in use the way kubelet and `docker stats` count it: the working
/// set, without the page cache the kernel can drop (cgroup v2 names it
/// `inactive_file`, v1 `total_inactive_file`).
pub fn working_set(usage: u64, stats: Option<&HashMap<String, u64>>) -> u64 {
    let inactive = stats
        .and_then(|s| s.get("inactive_file").or_else(|| s.get("total_inactive_file")))
        .copied()
        .unwrap_or(0);
    usage.saturating_sub(inactive)
}

/// The status code Docker answered with, if it answered.
pub fn status_of(err: &DockerError) -> Option<u16> {
    match err {
        DockerError::DockerResponseServerError { status_code, .. } => Some(*status_code),
        _ => None,
    }
}

pub fn is_not_found(err: &DockerError) -> bool {
    status_of(err) == Some(404)
}

pub fn is_conflict(err: &DockerError) -> bool {
    status_of(err) == Some(409)
}

/// Docker's 404 on create names what was missing.
pub fn is_missing_image(err: &DockerError) -> bool {
    matches!(err, DockerError::DockerResponseServerError { status_code: 404, message }
        if message.to_ascii_lowercase().contains("no such image"))
}

pub fn is_missing_network(err: &DockerError) -> bool {
    matches!(err, DockerError::DockerResponseServerError { status_code: 404, message }
        if message.to_ascii_lowercase().contains("network"))
}

/// Whether the engine could not be reached at all (socket missing, refused,
/// closed mid-request, or silent past the client timeout).
pub fn is_unreachable(err: &DockerError) -> bool {
    matches!(
        err,
        DockerError::HyperLegacyError { .. }
            | DockerError::HyperResponseError { .. }
            | DockerError::IOError { .. }
            | DockerError::RequestTimeoutError
            | DockerError::SocketNotFoundError(_)
    )
}

/// Every other failure: `what` says what Corral was doing.
pub fn runtime_error(what: &str, err: DockerError) -> RuntimeError {
    if is_unreachable(&err) {
        return RuntimeError::Unavailable(format!("{what}: {err}"));
    }
    match err {
        DockerError::DockerResponseServerError { status_code, message } => {
            RuntimeError::Engine(format!("{what}: Docker answered {status_code}: {message}"))
        }
        other => RuntimeError::Engine(format!("{what}: {other}")),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::path::PathBuf;
    use std::time::Duration;

    use super::*;
    use crate::runtime::Mount;

    fn pod() -> PodRef {
        PodRef { uid: "u-1".into(), namespace: "default".into(), name: "web-7f9c".into() }
    }

    fn app(name: &str) -> ContainerConfig {
        ContainerConfig {
            pod: pod(),
            node: "n1".into(),
            name: name.into(),
            image: "corral/busybox:1".into(),
            command: vec![],
            args: vec![],
            env: vec![],
            mounts: vec![],
            cpu_limit_millis: None,
            memory_limit_bytes: None,
            attempt: 2,
            spec_hash: "abc".into(),
            extra_labels: BTreeMap::new(),
        }
    }

    fn sandbox() -> SandboxConfig {
        SandboxConfig {
            pod: pod(),
            node: "n1".into(),
            hostname: "web-7f9c".into(),
            ports: vec![],
            dns_servers: vec![],
            dns_search: vec![],
            dns_options: vec![],
            empty_dirs: vec![],
            extra_labels: BTreeMap::new(),
        }
    }

    #[test]
    fn sanitize_keeps_docker_characters_and_replaces_the_rest() {
        for (input, want) in [
            ("web-1", "web-1"),
            ("a_b.c-D9", "a_b.c-D9"),
            ("a b/c:d", "a-b-c-d"),
            ("héllo", "h-llo"),
            ("", "-"),
        ] {
            assert_eq!(sanitize(input), want, "input {input:?}");
        }
    }

    #[test]
    fn container_names_follow_the_corral_pattern() {
        let p = PodRef { uid: "u".into(), namespace: "team a".into(), name: "web".into() };
        assert_eq!(container_name("node-1", &p, "nginx", 3), "corral_node-1_team-a_web_nginx_3");
        assert_eq!(container_name("n", &p, SANDBOX_CONTAINER, 0), "corral_n_team-a_web_POD_0");
        assert_eq!(volume_name("1234-abcd", "cache dir"), "corral-1234-abcd-cache-dir");
    }

    #[test]
    fn app_labels_name_pod_container_attempt_and_hash() {
        let mut config = app("web");
        config.extra_labels.insert(labels::TEST.into(), "t1".into());
        // An extra label may not override Corral's own.
        config.extra_labels.insert(labels::NODE.into(), "other".into());
        let l = app_labels(&config);
        for (k, v) in [
            (labels::OWNED, "true"),
            (labels::NODE, "n1"),
            (labels::POD_UID, "u-1"),
            (labels::POD_NAMESPACE, "default"),
            (labels::POD_NAME, "web-7f9c"),
            (labels::ROLE, ROLE_APP),
            (labels::CONTAINER, "web"),
            (labels::ATTEMPT, "2"),
            (labels::SPEC_HASH, "abc"),
            (labels::TEST, "t1"),
        ] {
            assert_eq!(l.get(k).map(String::as_str), Some(v), "label {k}");
        }
        let s = sandbox_labels(&sandbox());
        assert_eq!(s.get(labels::ROLE).map(String::as_str), Some(ROLE_SANDBOX));
        assert!(!s.contains_key(labels::CONTAINER));
    }

    #[test]
    fn labels_map_back_to_container_info() {
        let state = ContainerState::Created;
        let app_info = container_info("c1", &app_labels(&app("web")), "img", state.clone(), None).unwrap();
        assert_eq!(app_info.container.as_deref(), Some("web"));
        assert_eq!(app_info.attempt, 2);
        assert_eq!(app_info.spec_hash, "abc");
        assert_eq!(app_info.pod, pod());
        assert_eq!(app_info.node, "n1");

        let ip = Some(IpAddr::V4(Ipv4Addr::new(172, 20, 0, 2)));
        let sb = container_info("s1", &sandbox_labels(&sandbox()), "pause", state.clone(), ip).unwrap();
        assert!(sb.is_sandbox());
        assert_eq!(sb.ip, ip);

        // Not Corral's: no pod uid, or an app without a container name.
        assert_eq!(container_info("x", &HashMap::new(), "img", state.clone(), None), None);
        let mut broken = app_labels(&app("web"));
        broken.remove(labels::CONTAINER);
        assert_eq!(container_info("x", &broken, "img", state, None), None);
    }

    #[test]
    fn docker_states_map_to_corral_states() {
        use ContainerStateStatusEnum as S;
        let started = "2024-05-07T21:09:36.123456789Z";
        let finished = "2024-05-07T21:10:36Z";
        let t0 = SystemTime::UNIX_EPOCH + Duration::new(1_715_116_176, 123_456_789);
        let t1 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_715_116_236);
        let st = |status, exit_code, oom_killed| DockerState {
            status: Some(status),
            exit_code: Some(exit_code),
            started_at: Some(started),
            finished_at: Some(finished),
            oom_killed,
        };
        let exited = |code, oom| ContainerState::Exited {
            exit_code: code,
            started_at: Some(t0),
            finished_at: Some(t1),
            oom_killed: oom,
        };
        for (state, want) in [
            (st(S::RUNNING, 0, false), ContainerState::Running { started_at: t0 }),
            (st(S::PAUSED, 0, false), ContainerState::Running { started_at: t0 }),
            (st(S::EXITED, 3, false), exited(3, false)),
            (st(S::EXITED, 137, true), exited(137, true)),
            (st(S::DEAD, 1, false), exited(1, false)),
            (st(S::CREATED, 0, false), ContainerState::Created),
            (DockerState::default(), ContainerState::Created),
        ] {
            assert_eq!(container_state(&state), want, "{state:?}");
        }
    }

    #[test]
    fn docker_zero_time_means_never() {
        assert_eq!(parse_docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(parse_docker_time("garbage"), None);
        assert_eq!(
            parse_docker_time("1970-01-01T00:00:01Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1))
        );
        let exited_never_started = DockerState {
            status: Some(ContainerStateStatusEnum::EXITED),
            exit_code: Some(128),
            started_at: Some("0001-01-01T00:00:00Z"),
            finished_at: Some("0001-01-01T00:00:00Z"),
            oom_killed: false,
        };
        assert_eq!(
            container_state(&exited_never_started),
            ContainerState::Exited { exit_code: 128, started_at: None, finished_at: None, oom_killed: false }
        );
    }

    #[test]
    fn sandbox_body_publishes_ports_and_sets_dns() {
        let mut config = sandbox();
        let lo = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 11));
        config.ports = vec![
            PortMapping { container_port: 80, protocol: PortProtocol::Tcp, host_ip: lo, host_port: 0 },
            PortMapping { container_port: 53, protocol: PortProtocol::Udp, host_ip: lo, host_port: 5353 },
        ];
        config.dns_servers = vec![IpAddr::V4(Ipv4Addr::new(10, 96, 0, 10))];
        config.dns_search = vec!["default.svc.cluster.local".into()];
        let body = sandbox_body(&config, "corral/pause:1", "corral", None, &Hardening::default());
        assert!(body.networking_config.is_none(), "the engine picks the address");
        let pinned = sandbox_body(
            &config,
            "corral/pause:1",
            "corral",
            Some("10.244.3.7".parse().unwrap()),
            &Hardening::default(),
        );
        let endpoints = pinned.networking_config.clone().and_then(|n| n.endpoints_config).unwrap();
        let ipam = endpoints["corral"].ipam_config.clone().unwrap();
        assert_eq!(ipam.ipv4_address.as_deref(), Some("10.244.3.7"));
        assert_eq!(body.exposed_ports, Some(vec!["53/udp".to_string(), "80/tcp".to_string()]));
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("corral"));
        let bindings = host.port_bindings.unwrap();
        let http = bindings["80/tcp"].as_ref().unwrap();
        assert_eq!(http[0].host_ip.as_deref(), Some("127.0.0.11"));
        assert_eq!(http[0].host_port.as_deref(), Some(""), "0 asks for an ephemeral port");
        assert_eq!(bindings["53/udp"].as_ref().unwrap()[0].host_port.as_deref(), Some("5353"));
        assert_eq!(host.dns, Some(vec!["10.96.0.10".to_string()]));
        assert_eq!(host.dns_search, Some(vec!["default.svc.cluster.local".to_string()]));
        assert_eq!(body.hostname.as_deref(), Some("web-7f9c"));
    }

    #[test]
    fn app_body_joins_the_sandbox_and_maps_limits_and_mounts() {
        let mut config = app("web");
        config.command = vec!["httpd".into()];
        config.args = vec!["-f".into(), "-p".into(), "8080".into()];
        config.env = vec![("A".into(), "1".into())];
        config.cpu_limit_millis = Some(250);
        config.memory_limit_bytes = Some(64 << 20);
        config.mounts = vec![
            Mount { source: MountSource::EmptyDir("www".into()), target: "/www".into(), read_only: true },
            Mount {
                source: MountSource::HostPath(PathBuf::from("/etc/hosts")),
                target: "/h".into(),
                read_only: false,
            },
        ];
        let body = app_body("sb1", &config, &Hardening::default());
        assert_eq!(body.entrypoint, Some(vec!["httpd".to_string()]));
        assert_eq!(body.cmd.as_ref().map(Vec::len), Some(3));
        assert_eq!(body.env, Some(vec!["A=1".to_string()]));
        assert_eq!(body.hostname, None);
        let host = body.host_config.unwrap();
        assert_eq!(host.network_mode.as_deref(), Some("container:sb1"));
        assert_eq!(host.nano_cpus, Some(250_000_000));
        assert_eq!(host.memory, Some(64 << 20));
        assert_eq!(host.port_bindings, None);
        let mounts = host.mounts.unwrap();
        assert_eq!(mounts[0].typ, Some(MountType::VOLUME));
        assert_eq!(mounts[0].source.as_deref(), Some("corral-u-1-www"));
        assert_eq!(mounts[0].read_only, Some(true));
        assert_eq!(mounts[1].typ, Some(MountType::BIND));
        assert_eq!(mounts[1].source.as_deref(), Some("/etc/hosts"));

        // Empty command and args keep the image's entrypoint and cmd.
        let plain = app_body("sb1", &app("web"), &Hardening::default());
        assert_eq!((plain.entrypoint, plain.cmd, plain.env), (None, None, None));
    }

    #[test]
    fn every_container_is_hardened_sandbox_and_app_alike() {
        let strict = Hardening { pids_limit: 64 };
        let mut config = app("web");
        config.mounts = vec![Mount {
            source: MountSource::HostPath(PathBuf::from("/srv/www")),
            target: "/www".into(),
            read_only: true,
        }];
        for (what, body) in [
            ("sandbox", sandbox_body(&sandbox(), "corral/pause:1", "corral", None, &strict)),
            ("app", app_body("sb1", &config, &strict)),
            ("default", app_body("sb1", &app("web"), &Hardening::default())),
        ] {
            let host = body.host_config.unwrap();
            assert_eq!(host.security_opt, Some(vec!["no-new-privileges:true".to_string()]), "{what}");
            let want = if what == "default" { DEFAULT_PIDS_LIMIT } else { 64 };
            assert_eq!(host.pids_limit, Some(want), "{what}");
            assert_eq!(host.privileged, Some(false), "{what}");
            assert_eq!(host.cap_add, None, "{what}: Docker's default capability set, nothing added");
            let (pid, ipc, uts, userns) = (host.pid_mode, host.ipc_mode, host.uts_mode, host.userns_mode);
            assert_eq!((pid, ipc, uts, userns), (None, None, None, None), "{what}: no host namespace");
            let network = host.network_mode.unwrap();
            assert!(network == "corral" || network == "container:sb1", "{what}: {network}");
        }
        assert_eq!(DEFAULT_PIDS_LIMIT, 4096);
    }

    #[test]
    fn working_set_leaves_out_inactive_page_cache() {
        let v2: HashMap<String, u64> = [("inactive_file".to_string(), 300)].into();
        let v1: HashMap<String, u64> = [("total_inactive_file".to_string(), 100)].into();
        assert_eq!(working_set(1000, Some(&v2)), 700);
        assert_eq!(working_set(1000, Some(&v1)), 900);
        assert_eq!(working_set(1000, None), 1000);
        assert_eq!(working_set(10, Some(&v2)), 0);
    }

    #[test]
    fn docker_errors_map_to_runtime_errors() {
        let server = |status_code: u16, message: &str| DockerError::DockerResponseServerError {
            status_code,
            message: message.into(),
        };
        assert!(is_missing_image(&server(404, "No such image: corral/nope:1")));
        assert!(!is_missing_image(&server(404, "No such container: abc")));
        assert!(is_missing_network(&server(404, "network corral not found")));
        assert!(is_conflict(&server(409, "Conflict. The container name is already in use")));
        assert!(matches!(runtime_error("x", DockerError::RequestTimeoutError), RuntimeError::Unavailable(_)));
        assert!(matches!(
            runtime_error("x", DockerError::SocketNotFoundError("/var/run/docker.sock".into())),
            RuntimeError::Unavailable(_)
        ));
        let e = runtime_error("starting web", server(500, "port is already allocated"));
        assert_eq!(
            e,
            RuntimeError::Engine("starting web: Docker answered 500: port is already allocated".into())
        );
    }
}
