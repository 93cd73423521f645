use std::net::{IpAddr, SocketAddr};

use control_plane::api::pod::Protocol;
use control_plane::api::service::{EndpointAddress, EndpointPort, EndpointSubset, ServicePort};
use control_plane::api::{Endpoints, ObjectMeta, Service, Time};

use super::*;

fn meta(name: &str) -> ObjectMeta {
    ObjectMeta { name: name.into(), namespace: Some("default".into()), ..Default::default() }
}

/// A service; ports are `(name, port)` with "" for no name, all TCP.
fn svc(name: &str, cluster_ip: Option<&str>, ports: &[(&str, i32)]) -> Service {
    let mut s = Service {
        api_version: "v1".into(),
        kind: "Service".into(),
        metadata: meta(name),
        ..Default::default()
    };
    s.spec.cluster_ip = cluster_ip.map(str::to_string);
    s.spec.ports = ports
        .iter()
        .map(|&(n, port)| ServicePort {
            name: (!n.is_empty()).then(|| n.to_string()),
            port,
            ..Default::default()
        })
        .collect();
    s
}

fn created(mut s: Service, secs: i64) -> Service {
    s.metadata.creation_timestamp = Some(Time(secs));
    s
}

fn udp(mut s: Service) -> Service {
    for p in &mut s.spec.ports {
        p.protocol = Some(Protocol::Udp);
    }
    s
}

fn eps(name: &str, subsets: Vec<EndpointSubset>) -> Endpoints {
    Endpoints { api_version: "v1".into(), kind: "Endpoints".into(), metadata: meta(name), subsets }
}

fn subset(ready: &[&str], not_ready: &[&str], ports: &[(&str, i32)]) -> EndpointSubset {
    let addr = |ip: &&str| EndpointAddress { ip: ip.to_string(), ..Default::default() };
    EndpointSubset {
        addresses: ready.iter().map(addr).collect(),
        not_ready_addresses: not_ready.iter().map(addr).collect(),
        ports: ports
            .iter()
            .map(|&(n, port)| EndpointPort {
                name: (!n.is_empty()).then(|| n.to_string()),
                port,
                protocol: Some(Protocol::Tcp),
            })
            .collect(),
    }
}

fn ips(list: &[&str]) -> Vec<IpAddr> {
    list.iter().map(|s| s.parse().expect("test ip")).collect()
}

/// A table as `(listen, service, backends)` strings, easy to write in cases.
fn routes(t: &ProxyTable) -> Vec<(String, String, Vec<String>)> {
    t.routes
        .iter()
        .map(|r| {
            (
                r.listen.to_string(),
                r.service.to_string(),
                r.backends.iter().map(SocketAddr::to_string).collect(),
            )
        })
        .collect()
}

fn want(rows: &[(&str, &str, &[&str])]) -> Vec<(String, String, Vec<String>)> {
    rows.iter()
        .map(|(l, s, b)| (l.to_string(), s.to_string(), b.iter().map(|x| x.to_string()).collect()))
        .collect()
}

struct Case {
    name: &'static str,
    services: Vec<Service>,
    endpoints: Vec<Endpoints>,
    listen: &'static [&'static str],
    want: &'static [(&'static str, &'static str, &'static [&'static str])],
}

#[test]
fn plans_routes_for_each_tcp_service_port() {
    let cases = vec![
        Case {
            name: "named ports take the endpoint port of the same name",
            services: vec![svc("web", Some("10.96.0.10"), &[("http", 80), ("metrics", 9090)])],
            endpoints: vec![eps(
                "web",
                vec![subset(&["10.0.0.2", "10.0.0.1"], &[], &[("metrics", 9100), ("http", 8080)])],
            )],
            listen: &["127.0.0.11"],
            want: &[
                ("10.96.0.10:80", "default/web:http", &["10.0.0.1:8080", "10.0.0.2:8080"]),
                ("10.96.0.10:9090", "default/web:metrics", &["10.0.0.1:9100", "10.0.0.2:9100"]),
                ("127.0.0.11:80", "default/web:http", &["10.0.0.1:8080", "10.0.0.2:8080"]),
                ("127.0.0.11:9090", "default/web:metrics", &["10.0.0.1:9100", "10.0.0.2:9100"]),
            ],
        },
        Case {
            name: "an unnamed single port takes the subset's only port",
            services: vec![svc("db", None, &[("", 5432)])],
            endpoints: vec![eps("db", vec![subset(&["10.0.0.5"], &[], &[("", 15432)])])],
            listen: &["127.0.0.11"],
            want: &[("127.0.0.11:5432", "default/db", &["10.0.0.5:15432"])],
        },
        Case {
            name: "an unnamed service port takes a lone endpoint port even if it is named",
            services: vec![svc("db", None, &[("", 5432)])],
            endpoints: vec![eps("db", vec![subset(&["10.0.0.5"], &[], &[("pg", 15432)])])],
            listen: &["127.0.0.11"],
            want: &[("127.0.0.11:5432", "default/db", &["10.0.0.5:15432"])],
        },
        Case {
            name: "subsets are merged, each at its own port",
            services: vec![svc("web", None, &[("http", 80)])],
            endpoints: vec![eps(
                "web",
                vec![
                    subset(&["10.0.0.3"], &[], &[("http", 8081)]),
                    subset(&["10.0.0.1", "10.0.0.2"], &[], &[("http", 8080)]),
                    subset(&["10.0.0.9"], &[], &[("other", 7000)]),
                ],
            )],
            listen: &["127.0.0.11"],
            want: &[(
                "127.0.0.11:80",
                "default/web:http",
                &["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8081"],
            )],
        },
        Case {
            name: "missing endpoints give a listener without backends",
            services: vec![svc("lonely", Some("10.96.0.7"), &[("", 80)])],
            endpoints: vec![eps("someone-else", vec![subset(&["10.0.0.1"], &[], &[("", 80)])])],
            listen: &[],
            want: &[("10.96.0.7:80", "default/lonely", &[])],
        },
        Case {
            name: "not-ready addresses are never backends",
            services: vec![svc("web", None, &[("", 80)])],
            endpoints: vec![eps(
                "web",
                vec![subset(&["10.0.0.1"], &["10.0.0.2", "10.0.0.3"], &[("", 8080)])],
            )],
            listen: &["127.0.0.11"],
            want: &[("127.0.0.11:80", "default/web", &["10.0.0.1:8080"])],
        },
        Case {
            name: "UDP ports are ignored",
            services: vec![
                udp(svc("dns", Some("10.96.0.53"), &[("dns", 53)])),
                svc("web", None, &[("", 80)]),
            ],
            endpoints: vec![eps("dns", vec![subset(&["10.0.0.1"], &[], &[("dns", 53)])])],
            listen: &["127.0.0.11"],
            want: &[("127.0.0.11:80", "default/web", &[])],
        },
        Case {
            name: "a headless service (clusterIP None) listens on the node addresses only",
            services: vec![svc("headless", Some("None"), &[("", 80)])],
            endpoints: vec![],
            listen: &["127.0.0.11", "127.0.0.12"],
            want: &[("127.0.0.11:80", "default/headless", &[]), ("127.0.0.12:80", "default/headless", &[])],
        },
        Case {
            name: "two services on the same port with different cluster IPs",
            services: vec![
                svc("a", Some("10.96.0.1"), &[("", 80)]),
                svc("b", Some("10.96.0.2"), &[("", 80)]),
            ],
            endpoints: vec![
                eps("a", vec![subset(&["10.0.0.1"], &[], &[("", 8080)])]),
                eps("b", vec![subset(&["10.0.0.2"], &[], &[("", 8080)])]),
            ],
            listen: &[],
            want: &[
                ("10.96.0.1:80", "default/a", &["10.0.0.1:8080"]),
                ("10.96.0.2:80", "default/b", &["10.0.0.2:8080"]),
            ],
        },
        Case {
            name: "a cluster IP that is also a node address is one listener",
            services: vec![svc("web", Some("127.0.0.11"), &[("", 80)])],
            endpoints: vec![],
            listen: &["127.0.0.11"],
            want: &[("127.0.0.11:80", "default/web", &[])],
        },
    ];
    for case in cases {
        let table = plan(&case.services, &case.endpoints, &ips(case.listen));
        assert_eq!(routes(&table), want(case.want), "{}", case.name);
        assert_eq!(table.conflicts, vec![], "{}", case.name);
        assert_eq!(table.invalid, vec![], "{}", case.name);
    }
}

#[test]
fn the_older_service_keeps_a_contested_address() {
    let old = created(svc("old", Some("10.96.0.1"), &[("http", 80)]), 100);
    let new = created(svc("new", Some("10.96.0.2"), &[("", 80)]), 200);
    let endpoints = vec![
        eps("old", vec![subset(&["10.0.0.1"], &[], &[("http", 8080)])]),
        eps("new", vec![subset(&["10.0.0.2"], &[], &[("", 8080)])]),
    ];
    // The newer one first in the input: age decides, not order.
    let table = plan(&[new, old], &endpoints, &ips(&["127.0.0.11"]));
    assert_eq!(
        routes(&table),
        want(&[
            ("10.96.0.1:80", "default/old:http", &["10.0.0.1:8080"]),
            ("10.96.0.2:80", "default/new", &["10.0.0.2:8080"]),
            ("127.0.0.11:80", "default/old:http", &["10.0.0.1:8080"]),
        ])
    );
    assert_eq!(table.conflicts.len(), 1, "{:?}", table.conflicts);
    assert_eq!(
        table.conflicts[0].to_string(),
        "127.0.0.11:80 is claimed by both default/old:http and default/new: default/old:http is older \
         and keeps it, default/new is not served there (give one of them another port or cluster IP)"
    );
}

#[test]
fn contested_address_without_creation_times_goes_by_name() {
    let table = plan(&[svc("b", None, &[("", 80)]), svc("a", None, &[("", 80)])], &[], &ips(&["127.0.0.11"]));
    assert_eq!(routes(&table), want(&[("127.0.0.11:80", "default/a", &[])]));
    assert_eq!(table.conflicts[0].loser.name, "b");
    // A known creation time beats an unknown one.
    let table = plan(
        &[svc("a", None, &[("", 80)]), created(svc("b", None, &[("", 80)]), 5)],
        &[],
        &ips(&["127.0.0.11"]),
    );
    assert_eq!(routes(&table), want(&[("127.0.0.11:80", "default/b", &[])]));
}

#[test]
fn unusable_values_are_reported_and_left_out() {
    let services = vec![svc("web", Some("ten.dot.one"), &[("http", 80), ("big", 70000)])];
    let endpoints = vec![eps("web", vec![subset(&["10.0.0.1", "nope"], &[], &[("http", 8080), ("big", 0)])])];
    let table = plan(&services, &endpoints, &ips(&["127.0.0.11"]));
    assert_eq!(routes(&table), want(&[("127.0.0.11:80", "default/web:http", &["10.0.0.1:8080"])]));
    let messages: Vec<String> = table.invalid.iter().map(ToString::to_string).collect();
    assert_eq!(
        messages,
        [
            "endpoints default/web: address \"nope\" is not an IP address; it is not a backend",
            "endpoints default/web: port 0 is not in 1-65535; it is not a backend",
            "service default/web: clusterIP \"ten.dot.one\" is not an IP address; only the node addresses serve it",
            "service default/web:big: port 70000 is not in 1-65535; it is not served",
        ]
    );
}

#[test]
fn the_table_does_not_depend_on_input_order() {
    let services = vec![
        created(svc("a", Some("10.96.0.1"), &[("", 80)]), 1),
        created(svc("b", Some("10.96.0.2"), &[("", 80)]), 1),
        created(svc("c", Some("10.96.0.3"), &[("x", 81), ("y", 82)]), 2),
    ];
    let endpoints = vec![
        eps("a", vec![subset(&["10.0.0.2", "10.0.0.1"], &[], &[("", 8080)])]),
        eps(
            "c",
            vec![subset(&["10.0.0.3"], &[], &[("y", 9), ("x", 8)]), subset(&["10.0.0.4"], &[], &[("x", 8)])],
        ),
    ];
    let listen = ips(&["127.0.0.12", "127.0.0.11"]);
    let forward = plan(&services, &endpoints, &listen);
    let mut rs = services.clone();
    rs.reverse();
    let mut re = endpoints.clone();
    re.reverse();
    let mut rl = listen.clone();
    rl.reverse();
    assert_eq!(plan(&rs, &re, &rl), forward);
    assert!(forward.routes.windows(2).all(|w| w[0].listen < w[1].listen));
    assert_eq!(forward.conflicts.len(), 2, "b loses both node addresses to a: {:?}", forward.conflicts);
}
