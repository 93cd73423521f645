//! Which pods a service's Endpoints list, where, and on which ports.

use super::*;
use crate::api::pod::PodPhase;
use crate::controllers::testing::*;

/// A ready pod of app `web` on `n1` with container port `http` = 8080.
fn web(name: &str, ip: &str) -> Pod {
    pod(name).labelled(&[("app", "web")]).on("n1").ip(ip).ready_since(T0).container_port("http", 8080)
}

fn named(name: &str) -> Option<IntOrString> {
    Some(IntOrString::String(name.into()))
}

fn web_service() -> Service {
    service("web", &[("app", "web")], &[("http", 80, named("http"))])
}

fn nodes() -> Vec<Node> {
    vec![node("n1", "True", T0), node("n2", "True", T0)]
}

/// Per subset: (ready IPs, not-ready IPs, ports).
type Summary = Vec<(Vec<String>, Vec<String>, Vec<i32>)>;

fn summary(e: &Endpoints) -> Summary {
    let ips = |a: &[EndpointAddress]| a.iter().map(|a| a.ip.clone()).collect::<Vec<_>>();
    e.subsets
        .iter()
        .map(|s| (ips(&s.addresses), ips(&s.not_ready_addresses), s.ports.iter().map(|p| p.port).collect()))
        .collect()
}

fn summarize(svc: &Service, pods: &[Pod]) -> Summary {
    summary(&endpoints_for(svc, pods, &nodes()).expect("the service has a selector"))
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

#[test]
fn ready_pods_are_addresses_and_the_others_not_ready_addresses() {
    let pods = [web("web-1", "10.0.0.1"), web("web-2", "10.0.0.2").not_ready(T0)];
    let e = endpoints_for(&web_service(), &pods, &nodes()).expect("selector");
    assert_eq!(summary(&e), vec![(strings(&["10.0.0.1"]), strings(&["10.0.0.2"]), vec![8080])]);
    assert_eq!((e.api_version.as_str(), e.kind.as_str()), ("v1", "Endpoints"));
    assert_eq!((e.metadata.name.as_str(), e.metadata.namespace.as_deref()), ("web", Some("default")));
    let owner = e.metadata.controller().expect("owned by the service");
    assert_eq!((owner.kind.as_str(), owner.uid.as_str()), ("Service", "uid-web"));
    let address = &e.subsets[0].addresses[0];
    assert_eq!(address.node_name.as_deref(), Some("n1"));
    let target = address.target_ref.as_ref().expect("target");
    assert_eq!(
        (target.kind.as_deref(), target.namespace.as_deref(), target.name.as_deref(), target.uid.as_deref()),
        (Some("Pod"), Some("default"), Some("web-1"), Some("uid-web-1"))
    );
    let port = &e.subsets[0].ports[0];
    assert_eq!((port.name.as_deref(), port.protocol), (Some("http"), Some(Protocol::Tcp)));
}

#[test]
fn only_live_selected_pods_with_an_ip_are_listed() {
    // (case, pod, listed)
    let cases = [
        ("a ready pod", web("p", "10.0.0.1"), true),
        ("another namespace", web("p", "10.0.0.1").in_namespace("shop"), false),
        ("another app", web("p", "10.0.0.1").labelled(&[("app", "api")]), false),
        ("terminating", web("p", "10.0.0.1").terminating(T0), false),
        ("failed", web("p", "10.0.0.1").phase(PodPhase::Failed), false),
        ("succeeded", web("p", "10.0.0.1").phase(PodPhase::Succeeded), false),
        (
            "no IP yet",
            web("p", "").edit(|p| p.status.as_mut().into_iter().for_each(|s| s.pod_ip = None)),
            false,
        ),
        ("an empty IP", web("p", ""), false),
        ("no port named http", web("p", "10.0.0.1").edit(|p| p.spec.containers[0].ports.clear()), false),
    ];
    for (case, pod, listed) in cases {
        assert_eq!(!summarize(&web_service(), &[pod]).is_empty(), listed, "{case}");
    }
}

/// (case, targetPort, protocol, resolved ports)
type PortCase = (&'static str, Option<IntOrString>, Option<Protocol>, Vec<i32>);

#[test]
fn target_ports_resolve_by_number_by_name_or_default_to_the_port() {
    let cases: [PortCase; 5] = [
        ("no targetPort: the port", None, None, vec![80]),
        ("a number", Some(IntOrString::Int(9090)), None, vec![9090]),
        ("a container port's name", named("http"), None, vec![8080]),
        ("a name with the wrong protocol", named("http"), Some(Protocol::Udp), vec![]),
        ("an unknown name", named("grpc"), None, vec![]),
    ];
    for (case, target, protocol, ports) in cases {
        let mut svc = service("web", &[("app", "web")], &[("http", 80, target)]);
        svc.spec.ports[0].protocol = protocol;
        let got: Vec<i32> =
            summarize(&svc, &[web("web-1", "10.0.0.1")]).into_iter().flat_map(|s| s.2).collect();
        assert_eq!(got, ports, "{case}");
    }
}

#[test]
fn pods_that_resolve_ports_differently_get_separate_subsets() {
    let svc = service("web", &[("app", "web")], &[("http", 80, named("http")), ("metrics", 9100, None)]);
    let pods = [
        web("web-1", "10.0.0.1"),
        web("web-2", "10.0.0.2").edit(|p| p.spec.containers[0].ports[0].container_port = 9090),
        web("web-3", "10.0.0.3").edit(|p| p.spec.containers[0].ports.clear()),
        web("web-4", "10.0.0.4"),
    ];
    assert_eq!(
        summarize(&svc, &pods),
        vec![
            (strings(&["10.0.0.1", "10.0.0.4"]), vec![], vec![8080, 9100]),
            (strings(&["10.0.0.2"]), vec![], vec![9090, 9100]),
            (strings(&["10.0.0.3"]), vec![], vec![9100]),
        ]
    );
}

#[test]
fn pods_on_nodes_that_are_not_ready_or_gone_are_not_ready() {
    let pods = [
        web("on-ready", "10.0.0.1"),
        web("on-silent", "10.0.0.2").on("n2"),
        web("on-gone", "10.0.0.3").on("n9"),
    ];
    let nodes = [node("n1", "True", T0), node("n2", "Unknown", T0)];
    let e = endpoints_for(&web_service(), &pods, &nodes).expect("selector");
    assert_eq!(summary(&e), vec![(strings(&["10.0.0.1"]), strings(&["10.0.0.2", "10.0.0.3"]), vec![8080])]);
}

#[test]
fn a_service_without_a_selector_gets_no_managed_endpoints() {
    let svc = service("external", &[], &[("", 443, None)]);
    assert_eq!(endpoints_for(&svc, &[web("web-1", "10.0.0.1")], &nodes()), None);
}

#[test]
fn the_same_world_in_any_order_gives_the_same_endpoints() {
    let mut svc = web_service();
    svc.metadata.labels = labels(&[("team", "shop")]);
    let mut pods = vec![
        web("web-1", "10.0.0.9"),
        web("web-2", "10.0.0.10").not_ready(T0),
        web("web-3", "10.0.0.11"),
        web("web-4", "10.0.0.12").edit(|p| p.spec.containers[0].ports[0].container_port = 9090),
    ];
    let mut nodes = nodes();
    let first = endpoints_for(&svc, &pods, &nodes);
    pods.reverse();
    nodes.reverse();
    assert_eq!(endpoints_for(&svc, &pods, &nodes), first);
    let first = first.expect("selector");
    assert_eq!(first.metadata.labels, svc.metadata.labels, "the service's labels are copied");
    assert_eq!(
        summary(&first)[0].0,
        strings(&["10.0.0.11", "10.0.0.9"]),
        "sorted by IP text, as Kubernetes does"
    );
}
