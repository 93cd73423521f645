//! Validation of objects: every problem is reported with its field path,
//! in Kubernetes' words where Kubernetes has them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use super::affinity::{Affinity, NodeSelectorOperator, NodeSelectorTerm, PodAffinityTerm};
use super::deployment::{Deployment, StrategyType};
use super::labels::{
    validate_dns1123_label, validate_dns1123_subdomain, validate_label_key, validate_label_value,
    LabelSelector,
};
use super::meta::ObjectMeta;
use super::pod::{Container, PodSpec, Probe, RestartPolicy, SecurityContext};
use super::pod_security::{self, Access, PodSecurity, BASELINE};
use super::service::{Endpoints, Service, ServiceType};
use super::{IntOrString, Kind, Object};

/// One problem, at one field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// The one topology Corral schedules by: the node.
pub const HOSTNAME_TOPOLOGY: &str = "kubernetes.io/hostname";

/// Collects the errors of one object.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError { path: path.into(), message: message.into() });
    }

    fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(m) = result {
            self.add(path, m);
        }
    }
}

/// The problems of `obj` under the rules that hold on every cluster (what a
/// client can check before it sends a manifest).
pub fn validate(obj: &Object) -> Vec<FieldError> {
    validate_with(obj, None)
}

/// The problems of `obj`; with `security` (on a master), also the cluster's
/// pod security settings: where hostPath volumes may point, and whether
/// they may be written.
pub fn validate_with(obj: &Object, security: Option<&PodSecurity>) -> Vec<FieldError> {
    let mut e = Errors::default();
    validate_meta(&mut e, obj.kind(), obj.meta());
    match obj {
        Object::Pod(p) => validate_pod_spec(&mut e, "spec", &p.spec, false, security),
        Object::Deployment(d) => validate_deployment(&mut e, d, security),
        Object::Service(s) => validate_service(&mut e, s),
        Object::Endpoints(ep) => validate_endpoints(&mut e, ep),
        Object::Node(n) => {
            validate_pod_cidrs(&mut e, &n.spec);
            if let Some(status) = &n.status {
                for key in status.capacity.keys().chain(status.allocatable.keys()) {
                    if !matches!(key.as_str(), "cpu" | "memory" | "pods") {
                        e.add(format!("status.capacity[{key}]"), "only cpu, memory and pods are supported");
                    }
                }
            }
        }
        Object::HorizontalPodAutoscaler(h) => validate_hpa(&mut e, h),
        Object::Lease(l) => {
            if l.spec.lease_duration_seconds.is_some_and(|d| d <= 0) {
                e.add("spec.leaseDurationSeconds", "must be greater than 0");
            }
        }
        Object::Event(ev) => {
            if ev.involved_object.name.as_deref().unwrap_or_default().is_empty() {
                e.add("involvedObject.name", "is required");
            }
            if ev.involved_object.kind.as_deref().unwrap_or_default().is_empty() {
                e.add("involvedObject.kind", "is required");
            }
        }
    }
    e.0
}

fn validate_meta(e: &mut Errors, kind: Kind, meta: &ObjectMeta) {
    if meta.name.is_empty() {
        e.add("metadata.name", "is required");
    } else if matches!(kind, Kind::Service | Kind::Endpoints) {
        e.check("metadata.name", validate_dns1123_label(&meta.name));
    } else {
        e.check("metadata.name", validate_dns1123_subdomain(&meta.name));
    }
    if let Some(ns) = &meta.namespace {
        if !kind.namespaced() && !ns.is_empty() {
            e.add("metadata.namespace", format!("{kind} is cluster-scoped: remove the namespace"));
        } else {
            e.check("metadata.namespace", validate_dns1123_label(ns));
        }
    }
    validate_labels(e, "metadata.labels", &meta.labels);
    for key in meta.annotations.keys() {
        e.check(format!("metadata.annotations[{key}]"), validate_label_key(key));
    }
    let annotation_bytes: usize = meta.annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if annotation_bytes > 256 * 1024 {
        e.add(
            "metadata.annotations",
            format!("{annotation_bytes} bytes: annotations are limited to 256 KiB"),
        );
    }
    for (i, o) in meta.owner_references.iter().enumerate() {
        for (field, value) in
            [("apiVersion", &o.api_version), ("kind", &o.kind), ("name", &o.name), ("uid", &o.uid)]
        {
            if value.is_empty() {
                e.add(format!("metadata.ownerReferences[{i}].{field}"), "is required");
            }
        }
    }
}

fn validate_labels(e: &mut Errors, path: &str, labels: &BTreeMap<String, String>) {
    for (k, v) in labels {
        e.check(format!("{path}[{k}]"), validate_label_key(k));
        e.check(format!("{path}[{k}]"), validate_label_value(v));
    }
}

fn validate_selector(e: &mut Errors, path: &str, selector: &LabelSelector) {
    if let Err(errors) = selector.validate() {
        for (sub, message) in errors {
            e.add(format!("{path}.{sub}"), message);
        }
    }
}

fn port_range(e: &mut Errors, path: String, port: i32) {
    if !(1..=65535).contains(&port) {
        e.add(path, format!("{port}: must be between 1 and 65535, inclusive"));
    }
}

fn validate_pod_spec(
    e: &mut Errors,
    path: &str,
    spec: &PodSpec,
    in_template: bool,
    security: Option<&PodSecurity>,
) {
    if spec.containers.is_empty() {
        e.add(format!("{path}.containers"), "at least one container is required");
    }
    let volumes: BTreeSet<&str> = spec.volumes.iter().map(|v| v.name.as_str()).collect();
    let mut names = BTreeSet::new();
    for (i, c) in spec.containers.iter().enumerate() {
        let cpath = format!("{path}.containers[{i}]");
        if !names.insert(c.name.as_str()) {
            e.add(format!("{cpath}.name"), format!("{:?}: duplicate container name", c.name));
        }
        validate_container(e, &cpath, c, &volumes);
    }
    let mut seen = BTreeSet::new();
    for (i, v) in spec.volumes.iter().enumerate() {
        let vpath = format!("{path}.volumes[{i}]");
        e.check(format!("{vpath}.name"), validate_dns1123_label(&v.name));
        if !seen.insert(v.name.as_str()) {
            e.add(format!("{vpath}.name"), format!("{:?}: duplicate volume name", v.name));
        }
        match (&v.empty_dir, &v.host_path) {
            (Some(_), Some(_)) => e.add(vpath, "may not specify more than 1 volume type"),
            (None, None) => e.add(vpath, "must specify a volume type: emptyDir or hostPath"),
            (None, Some(h)) if !h.path.starts_with('/') => {
                e.add(format!("{vpath}.hostPath.path"), "must be an absolute path")
            }
            (None, Some(h)) => {
                let verdict = match security {
                    Some(s) => s.host_path(&h.path).map(drop),
                    None => pod_security::check_host_path(&h.path).map(drop),
                };
                e.check(format!("{vpath}.hostPath.path"), verdict);
            }
            _ => {}
        }
    }
    if let Some(s) = security {
        validate_host_path_access(e, path, spec, s);
    }
    for (field, on) in
        [("hostNetwork", spec.host_network), ("hostPID", spec.host_pid), ("hostIPC", spec.host_ipc)]
    {
        if on == Some(true) {
            e.add(
                format!("{path}.{field}"),
                format!("sharing the host's namespaces is not allowed ({BASELINE})"),
            );
        }
    }
    if in_template && spec.restart_policy.is_some_and(|p| p != RestartPolicy::Always) {
        e.add(
            format!("{path}.restartPolicy"),
            "Unsupported value: only \"Always\" is allowed in a deployment's template",
        );
    }
    if spec.termination_grace_period_seconds.is_some_and(|s| s < 0) {
        e.add(format!("{path}.terminationGracePeriodSeconds"), "must be greater than or equal to 0");
    }
    validate_labels(e, &format!("{path}.nodeSelector"), &spec.node_selector);
    if let Some(a) = &spec.affinity {
        validate_affinity(e, &format!("{path}.affinity"), a);
    }
}

/// A read-only allowed prefix may only be mounted with `readOnly: true`:
/// refused rather than flipped, so that the pod's author sees it.
fn validate_host_path_access(e: &mut Errors, path: &str, spec: &PodSpec, security: &PodSecurity) {
    for (i, c) in spec.containers.iter().enumerate() {
        for (j, m) in c.volume_mounts.iter().enumerate() {
            let Some(host) =
                spec.volumes.iter().find(|v| v.name == m.name).and_then(|v| v.host_path.as_ref())
            else {
                continue;
            };
            let Ok((Access::ReadOnly, prefix)) = security.host_path(&host.path) else { continue };
            if m.read_only != Some(true) {
                e.add(
                    format!("{path}.containers[{i}].volumeMounts[{j}].readOnly"),
                    format!(
                        "hostPath volume {:?} ({:?}) is read-only on this cluster: set readOnly: true, or allow writes with corral master --allowed-host-paths {}:rw",
                        m.name, host.path, prefix.path
                    ),
                );
            }
        }
    }
}

fn validate_security_context(e: &mut Errors, path: &str, sc: &SecurityContext) {
    if sc.privileged == Some(true) {
        e.add(format!("{path}.privileged"), format!("privileged containers are not allowed ({BASELINE})"));
    }
    for (k, cap) in sc.capabilities.iter().flat_map(|c| c.add.iter()).enumerate() {
        if !pod_security::capability_allowed(cap) {
            e.add(
                format!("{path}.capabilities.add[{k}]"),
                format!(
                    "{cap:?}: adding capabilities is not allowed ({BASELINE}); only these, already in Docker's default set, may be listed: {}",
                    pod_security::BASELINE_CAPABILITIES.join(", ")
                ),
            );
        }
    }
}

fn validate_container(e: &mut Errors, path: &str, c: &Container, volumes: &BTreeSet<&str>) {
    e.check(format!("{path}.name"), validate_dns1123_label(&c.name));
    if let Some(sc) = &c.security_context {
        validate_security_context(e, &format!("{path}.securityContext"), sc);
    }
    if c.image.trim().is_empty() {
        e.add(format!("{path}.image"), "is required");
    }
    let mut port_names = BTreeSet::new();
    for (j, p) in c.ports.iter().enumerate() {
        port_range(e, format!("{path}.ports[{j}].containerPort"), p.container_port);
        if let Some(h) = p.host_port {
            if h != 0 {
                port_range(e, format!("{path}.ports[{j}].hostPort"), h);
            }
        }
        if let Some(name) = &p.name {
            e.check(format!("{path}.ports[{j}].name"), validate_dns1123_label(name));
            if !port_names.insert(name.as_str()) {
                e.add(format!("{path}.ports[{j}].name"), format!("{name:?}: duplicate port name"));
            }
        }
    }
    for (j, env) in c.env.iter().enumerate() {
        validate_env_source(e, &format!("{path}.env[{j}]"), env);
        let ok = !env.name.is_empty()
            && !env.name.starts_with(|ch: char| ch.is_ascii_digit())
            && env.name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '-' | '.'));
        if !ok {
            e.add(
                format!("{path}.env[{j}].name"),
                format!("{:?}: a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit", env.name),
            );
        }
    }
    for (section, map) in [("requests", &c.resources.requests), ("limits", &c.resources.limits)] {
        for key in map.keys() {
            if key != "cpu" && key != "memory" {
                e.add(format!("{path}.resources.{section}[{key}]"), "only cpu and memory are supported");
            }
        }
    }
    for key in ["cpu", "memory"] {
        let (Some(req), Some(lim)) = (c.resources.requests.get(key), c.resources.limits.get(key)) else {
            continue;
        };
        if req.millis() > lim.millis() {
            e.add(
                format!("{path}.resources.requests[{key}]"),
                format!("{req}: must be less than or equal to {key} limit {lim}"),
            );
        }
    }
    for (j, m) in c.volume_mounts.iter().enumerate() {
        if !volumes.contains(m.name.as_str()) {
            e.add(
                format!("{path}.volumeMounts[{j}].name"),
                format!("{:?}: not found among the pod's volumes", m.name),
            );
        }
        if !m.mount_path.starts_with('/') {
            e.add(format!("{path}.volumeMounts[{j}].mountPath"), "must be an absolute path");
        }
    }
    let named: BTreeSet<&str> = c.ports.iter().filter_map(|p| p.name.as_deref()).collect();
    for (field, probe) in [("livenessProbe", &c.liveness_probe), ("readinessProbe", &c.readiness_probe)] {
        if let Some(p) = probe {
            validate_probe(e, &format!("{path}.{field}"), p, &named);
        }
    }
}

fn validate_probe(e: &mut Errors, path: &str, p: &Probe, named_ports: &BTreeSet<&str>) {
    let handlers =
        [p.http_get.is_some(), p.tcp_socket.is_some(), p.exec.is_some()].iter().filter(|h| **h).count();
    match handlers {
        0 => e.add(path.to_string(), "must specify a handler type: httpGet, tcpSocket or exec"),
        1 => {}
        _ => e.add(path.to_string(), "may not specify more than 1 handler type"),
    }
    let port = p
        .http_get
        .as_ref()
        .map(|h| (&h.port, "httpGet"))
        .or(p.tcp_socket.as_ref().map(|t| (&t.port, "tcpSocket")));
    if let Some((port, handler)) = port {
        let ppath = format!("{path}.{handler}.port");
        match port {
            IntOrString::Int(n) => port_range(e, ppath, *n),
            IntOrString::String(name) if !named_ports.contains(name.as_str()) => {
                e.add(ppath, format!("{name:?}: not a port name of this container"))
            }
            IntOrString::String(_) => {}
        }
    }
    if let Some(x) = &p.exec {
        if x.command.is_empty() {
            e.add(format!("{path}.exec.command"), "must not be empty");
        }
    }
    for (field, value, min) in [
        ("initialDelaySeconds", p.initial_delay_seconds, 0),
        ("periodSeconds", p.period_seconds, 1),
        ("timeoutSeconds", p.timeout_seconds, 1),
        ("failureThreshold", p.failure_threshold, 1),
        ("successThreshold", p.success_threshold, 1),
    ] {
        if value.is_some_and(|v| v < min) {
            e.add(format!("{path}.{field}"), format!("must be greater than or equal to {min}"));
        }
    }
}

/// `spec.podCIDR` and `spec.podCIDRs`: IPv4 CIDRs, the list (if given)
/// holding the one range.
fn validate_pod_cidrs(e: &mut Errors, spec: &super::node::NodeSpec) {
    if let Some(cidr) = &spec.pod_cidr {
        if let Err(m) = parse_cidr(cidr) {
            e.add("spec.podCIDR", m);
        }
    }
    for (i, cidr) in spec.pod_cidrs.iter().enumerate() {
        if let Err(m) = parse_cidr(cidr) {
            e.add(format!("spec.podCIDRs[{i}]"), m);
        }
    }
    if spec.pod_cidrs.len() > 1 {
        e.add("spec.podCIDRs", "must hold one IPv4 range (Corral's pod network is single-stack)");
    }
    if let (Some(one), Some(first)) = (&spec.pod_cidr, spec.pod_cidrs.first()) {
        if one != first {
            e.add("spec.podCIDRs[0]", format!("must equal spec.podCIDR ({one:?})"));
        }
    }
}

fn parse_cidr(cidr: &str) -> Result<ipnet::Ipv4Net, String> {
    let net: ipnet::Ipv4Net = cidr
        .parse()
        .map_err(|_| format!("Invalid value: {cidr:?}: must be an IPv4 CIDR such as 10.244.1.0/24"))?;
    if net.network() != net.addr() {
        return Err(format!("Invalid value: {cidr:?}: host bits are set (the range is {})", net.trunc()));
    }
    Ok(net)
}

fn validate_node_term(e: &mut Errors, path: &str, term: &NodeSelectorTerm) {
    if term.match_expressions.is_empty() {
        e.add(format!("{path}.matchExpressions"), "must have at least one requirement");
    }
    for (i, r) in term.match_expressions.iter().enumerate() {
        let rpath = format!("{path}.matchExpressions[{i}]");
        e.check(format!("{rpath}.key"), validate_label_key(&r.key));
        match r.operator {
            NodeSelectorOperator::In | NodeSelectorOperator::NotIn if r.values.is_empty() => {
                e.add(format!("{rpath}.values"), "must be specified when `operator` is 'In' or 'NotIn'")
            }
            NodeSelectorOperator::Exists | NodeSelectorOperator::DoesNotExist if !r.values.is_empty() => e
                .add(
                    format!("{rpath}.values"),
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                ),
            NodeSelectorOperator::Gt | NodeSelectorOperator::Lt
                if r.values.len() != 1 || r.values[0].parse::<i64>().is_err() =>
            {
                e.add(format!("{rpath}.values"), "must be a single integer when `operator` is 'Gt' or 'Lt'")
            }
            _ => {}
        }
    }
}

fn validate_pod_term(e: &mut Errors, path: &str, term: &PodAffinityTerm) {
    if term.topology_key != HOSTNAME_TOPOLOGY {
        e.add(
            format!("{path}.topologyKey"),
            format!("{:?}: only {HOSTNAME_TOPOLOGY:?} (the node) is supported", term.topology_key),
        );
    }
    if let Some(s) = &term.label_selector {
        validate_selector(e, &format!("{path}.labelSelector"), s);
    }
}

fn weight(e: &mut Errors, path: String, w: i32) {
    if !(1..=100).contains(&w) {
        e.add(path, format!("{w}: must be in the range 1-100"));
    }
}

fn validate_affinity(e: &mut Errors, path: &str, a: &Affinity) {
    if let Some(n) = &a.node_affinity {
        let npath = format!("{path}.nodeAffinity");
        if let Some(req) = &n.required_during_scheduling_ignored_during_execution {
            let rpath = format!("{npath}.requiredDuringSchedulingIgnoredDuringExecution");
            if req.node_selector_terms.is_empty() {
                e.add(format!("{rpath}.nodeSelectorTerms"), "must have at least one node selector term");
            }
            for (i, t) in req.node_selector_terms.iter().enumerate() {
                validate_node_term(e, &format!("{rpath}.nodeSelectorTerms[{i}]"), t);
            }
        }
        for (i, p) in n.preferred_during_scheduling_ignored_during_execution.iter().enumerate() {
            let ppath = format!("{npath}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(e, format!("{ppath}.weight"), p.weight);
            validate_node_term(e, &format!("{ppath}.preference"), &p.preference);
        }
    }
    for (field, pa) in [("podAffinity", &a.pod_affinity), ("podAntiAffinity", &a.pod_anti_affinity)] {
        let Some(pa) = pa else { continue };
        let ppath = format!("{path}.{field}");
        for (i, t) in pa.required_during_scheduling_ignored_during_execution.iter().enumerate() {
            validate_pod_term(e, &format!("{ppath}.requiredDuringSchedulingIgnoredDuringExecution[{i}]"), t);
        }
        for (i, w) in pa.preferred_during_scheduling_ignored_during_execution.iter().enumerate() {
            let wpath = format!("{ppath}.preferredDuringSchedulingIgnoredDuringExecution[{i}]");
            weight(e, format!("{wpath}.weight"), w.weight);
            validate_pod_term(e, &format!("{wpath}.podAffinityTerm"), &w.pod_affinity_term);
        }
    }
}

fn validate_deployment(e: &mut Errors, d: &Deployment, security: Option<&PodSecurity>) {
    let spec = &d.spec;
    if spec.replicas.is_some_and(|r| r < 0) {
        e.add("spec.replicas", "must be greater than or equal to 0");
    }
    if spec.selector.match_labels.is_empty() && spec.selector.match_expressions.is_empty() {
        e.add("spec.selector", "Required value: a deployment needs a selector");
    } else {
        validate_selector(e, "spec.selector", &spec.selector);
        if !spec.selector.matches(&spec.template.metadata.labels) {
            e.add(
                "spec.template.metadata.labels",
                "Invalid value: `selector` does not match template `labels`",
            );
        }
    }
    validate_labels(e, "spec.template.metadata.labels", &spec.template.metadata.labels);
    validate_pod_spec(e, "spec.template.spec", &spec.template.spec, true, security);
    for (field, v) in [
        ("minReadySeconds", spec.min_ready_seconds),
        ("revisionHistoryLimit", spec.revision_history_limit),
        ("progressDeadlineSeconds", spec.progress_deadline_seconds),
    ] {
        if v.is_some_and(|v| v < 0) {
            e.add(format!("spec.{field}"), "must be greater than or equal to 0");
        }
    }
    if let Some(s) = &spec.strategy {
        if s.type_ == Some(StrategyType::Recreate) && s.rolling_update.is_some() {
            e.add("spec.strategy.rollingUpdate", "may not be specified when strategy `type` is 'Recreate'");
        }
        if let Some(ru) = &s.rolling_update {
            let mut zero = 0;
            for (field, v) in [("maxSurge", &ru.max_surge), ("maxUnavailable", &ru.max_unavailable)] {
                let Some(v) = v else { continue };
                match v.scaled(100, false) {
                    Ok(n) if n < 0 => e.add(
                        format!("spec.strategy.rollingUpdate.{field}"),
                        "must be greater than or equal to 0",
                    ),
                    Ok(0) => zero += 1,
                    Ok(_) => {}
                    Err(m) => e.add(format!("spec.strategy.rollingUpdate.{field}"), m),
                }
                if let IntOrString::String(p) = v {
                    if p.strip_suffix('%').and_then(|n| n.parse::<i64>().ok()).is_some_and(|n| n > 100)
                        && field == "maxUnavailable"
                    {
                        e.add(
                            format!("spec.strategy.rollingUpdate.{field}"),
                            "must not be greater than 100%",
                        );
                    }
                }
            }
            if zero == 2 {
                e.add("spec.strategy.rollingUpdate.maxUnavailable", "may not be 0 when `maxSurge` is 0");
            }
        }
    }
}

fn validate_service(e: &mut Errors, s: &Service) {
    let spec = &s.spec;
    validate_labels(e, "spec.selector", &spec.selector);
    if spec.ports.is_empty() {
        e.add("spec.ports", "Required value: a service needs at least one port");
    }
    let mut names = BTreeSet::new();
    for (i, p) in spec.ports.iter().enumerate() {
        let ppath = format!("spec.ports[{i}]");
        port_range(e, format!("{ppath}.port"), p.port);
        match &p.name {
            Some(n) => {
                e.check(format!("{ppath}.name"), validate_dns1123_label(n));
                if !names.insert(n.as_str()) {
                    e.add(format!("{ppath}.name"), format!("{n:?}: duplicate port name"));
                }
            }
            None if spec.ports.len() > 1 => {
                e.add(format!("{ppath}.name"), "is required when a service has more than one port")
            }
            None => {}
        }
        match &p.target_port {
            Some(IntOrString::Int(t)) => port_range(e, format!("{ppath}.targetPort"), *t),
            Some(IntOrString::String(t)) => e.check(format!("{ppath}.targetPort"), validate_dns1123_label(t)),
            None => {}
        }
        if let Some(np) = p.node_port {
            if spec.type_ != Some(ServiceType::NodePort) {
                e.add(format!("{ppath}.nodePort"), "may only be set when `type` is 'NodePort'");
            } else {
                port_range(e, format!("{ppath}.nodePort"), np);
            }
        }
    }
}

fn validate_endpoints(e: &mut Errors, ep: &Endpoints) {
    for (i, subset) in ep.subsets.iter().enumerate() {
        for (field, addrs) in
            [("addresses", &subset.addresses), ("notReadyAddresses", &subset.not_ready_addresses)]
        {
            for (j, a) in addrs.iter().enumerate() {
                if a.ip.parse::<std::net::IpAddr>().is_err() {
                    e.add(
                        format!("subsets[{i}].{field}[{j}].ip"),
                        format!("{:?}: must be a valid IP address", a.ip),
                    );
                }
            }
        }
        for (j, p) in subset.ports.iter().enumerate() {
            port_range(e, format!("subsets[{i}].ports[{j}].port"), p.port);
        }
    }
}

fn validate_env_source(e: &mut Errors, path: &str, env: &super::pod::EnvVar) {
    let Some(from) = &env.value_from else { return };
    if env.value.as_deref().is_some_and(|v| !v.is_empty()) {
        e.add(format!("{path}.valueFrom"), "may not be specified when `value` is not empty");
    }
    match (&from.field_ref, &from.resource_field_ref) {
        (Some(f), None) => {
            let p = f.field_path.as_str();
            let keyed =
                |prefix: &str| p.strip_prefix(prefix).is_some_and(|r| r.ends_with("']") && r.len() > 2);
            let supported = matches!(
                p,
                "metadata.name"
                    | "metadata.namespace"
                    | "metadata.uid"
                    | "spec.nodeName"
                    | "status.podIP"
                    | "status.hostIP"
            ) || keyed("metadata.labels['")
                || keyed("metadata.annotations['");
            if !supported {
                e.add(
                    format!("{path}.valueFrom.fieldRef.fieldPath"),
                    format!("{p:?}: supported values: metadata.name, metadata.namespace, metadata.uid, metadata.labels['<KEY>'], metadata.annotations['<KEY>'], spec.nodeName, status.podIP, status.hostIP"),
                );
            }
        }
        (None, Some(r)) => {
            if !matches!(
                r.resource.as_str(),
                "limits.cpu" | "limits.memory" | "requests.cpu" | "requests.memory"
            ) {
                e.add(
                    format!("{path}.valueFrom.resourceFieldRef.resource"),
                    format!(
                        "{:?}: supported values: limits.cpu, limits.memory, requests.cpu, requests.memory",
                        r.resource
                    ),
                );
            }
            if r.divisor.as_ref().is_some_and(|d| d.millis() == 0) {
                e.add(format!("{path}.valueFrom.resourceFieldRef.divisor"), "must be greater than 0");
            }
        }
        _ => e.add(format!("{path}.valueFrom"), "exactly one of fieldRef or resourceFieldRef is required"),
    }
}

fn validate_hpa(e: &mut Errors, h: &super::autoscaling::HorizontalPodAutoscaler) {
    let spec = &h.spec;
    let target = &spec.scale_target_ref;
    if target.kind != "Deployment" {
        e.add("spec.scaleTargetRef.kind", format!("{:?}: Corral scales Deployments only", target.kind));
    }
    if target.name.is_empty() {
        e.add("spec.scaleTargetRef.name", "is required");
    }
    if let Some(v) = target.api_version.as_deref() {
        if v != "apps/v1" {
            e.add("spec.scaleTargetRef.apiVersion", format!("{v:?}: Deployments are apps/v1"));
        }
    }
    let min = h.min_replicas();
    if min < 1 {
        e.add("spec.minReplicas", format!("{min}: must be greater than or equal to 1"));
    }
    if spec.max_replicas < 1 {
        e.add("spec.maxReplicas", format!("{}: must be greater than or equal to 1", spec.max_replicas));
    } else if min > spec.max_replicas {
        e.add(
            "spec.maxReplicas",
            format!("{}: must be greater than or equal to minReplicas ({min})", spec.max_replicas),
        );
    }
    for (i, m) in spec.metrics.iter().enumerate() {
        let path = format!("spec.metrics[{i}]");
        if m.type_ != "Resource" {
            e.add(
                format!("{path}.type"),
                format!("{:?}: Corral supports Resource metrics (cpu, memory) only", m.type_),
            );
            continue;
        }
        let Some(r) = &m.resource else {
            e.add(format!("{path}.resource"), "is required for a Resource metric");
            continue;
        };
        if r.name != "cpu" && r.name != "memory" {
            e.add(format!("{path}.resource.name"), format!("{:?}: supported values: cpu, memory", r.name));
        }
        let t = &r.target;
        match t.type_.as_str() {
            "Utilization" => {
                if t.average_utilization.is_none_or(|u| u <= 0) {
                    e.add(
                        format!("{path}.resource.target.averageUtilization"),
                        "must be set and greater than 0 for type Utilization",
                    );
                }
            }
            "AverageValue" => {
                if t.average_value.as_ref().is_none_or(|v| v.millis() == 0) {
                    e.add(
                        format!("{path}.resource.target.averageValue"),
                        "must be set and greater than 0 for type AverageValue",
                    );
                }
            }
            other => e.add(
                format!("{path}.resource.target.type"),
                format!("{other:?}: supported values for a Resource metric: Utilization, AverageValue"),
            ),
        }
    }
    if let Some(b) = &spec.behavior {
        for (name, rules) in [("scaleUp", &b.scale_up), ("scaleDown", &b.scale_down)] {
            let Some(rules) = rules else { continue };
            let path = format!("spec.behavior.{name}");
            if let Some(w) = rules.stabilization_window_seconds {
                if !(0..=3600).contains(&w) {
                    e.add(
                        format!("{path}.stabilizationWindowSeconds"),
                        format!("{w}: must be between 0 and 3600"),
                    );
                }
            }
            if let Some(p) = rules.select_policy.as_deref() {
                if !matches!(p, "Max" | "Min" | "Disabled") {
                    e.add(
                        format!("{path}.selectPolicy"),
                        format!("{p:?}: supported values: Max, Min, Disabled"),
                    );
                }
            }
            for (j, p) in rules.policies.iter().enumerate() {
                let ppath = format!("{path}.policies[{j}]");
                if p.type_ != "Pods" && p.type_ != "Percent" {
                    e.add(format!("{ppath}.type"), format!("{:?}: supported values: Pods, Percent", p.type_));
                }
                if p.value <= 0 {
                    e.add(format!("{ppath}.value"), "must be greater than 0");
                }
                if !(1..=1800).contains(&p.period_seconds) {
                    e.add(format!("{ppath}.periodSeconds"), "must be between 1 and 1800");
                }
            }
        }
    }
}
