use super::manifest::parse;
use super::*;

/// The nginx Deployment of the Kubernetes documentation, unchanged.
const NGINX_DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: nginx-deployment
  labels:
    app: nginx
spec:
  replicas: 3
  selector:
    matchLabels:
      app: nginx
  template:
    metadata:
      labels:
        app: nginx
    spec:
      containers:
      - name: nginx
        image: nginx:1.14.2
        ports:
        - containerPort: 80
"#;

/// The two-container Pod of the Kubernetes documentation, unchanged.
const TWO_CONTAINER_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: two-containers
spec:
  restartPolicy: Never
  volumes:
  - name: shared-data
    emptyDir: {}
  containers:
  - name: nginx-container
    image: nginx
    volumeMounts:
    - name: shared-data
      mountPath: /usr/share/nginx/html
  - name: debian-container
    image: debian
    volumeMounts:
    - name: shared-data
      mountPath: /pod-data
    command: ["/bin/sh"]
    args: ["-c", "echo Hello from the debian container > /pod-data/index.html"]
"#;

const SERVICE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: my-service
spec:
  selector:
    app.kubernetes.io/name: MyApp
  ports:
    - protocol: TCP
      port: 80
      targetPort: 9376
"#;

fn one(text: &str) -> Object {
    let mut objs = parse("test.yaml", text).unwrap_or_else(|e| panic!("{e:?}"));
    assert_eq!(objs.len(), 1);
    objs.remove(0)
}

fn errors(text: &str) -> Vec<String> {
    parse("test.yaml", text).expect_err("should be refused").into_iter().map(|e| e.to_string()).collect()
}

#[test]
fn kubernetes_documentation_manifests_apply_unchanged() {
    let Object::Deployment(d) = one(NGINX_DEPLOYMENT) else { panic!("not a deployment") };
    assert_eq!((d.metadata.name.as_str(), d.replicas()), ("nginx-deployment", 3));
    assert_eq!(d.spec.template.spec.containers[0].ports[0].container_port, 80);
    let Object::Pod(p) = one(TWO_CONTAINER_POD) else { panic!("not a pod") };
    assert_eq!(p.spec.containers.len(), 2);
    assert_eq!(p.spec.restart_policy, Some(pod::RestartPolicy::Never));
    let Object::Service(s) = one(SERVICE) else { panic!("not a service") };
    assert_eq!(s.spec.ports[0].target_port, Some(IntOrString::Int(9376)));
}

#[test]
fn objects_round_trip_through_json() {
    for text in [NGINX_DEPLOYMENT, TWO_CONTAINER_POD, SERVICE] {
        let obj = one(text);
        assert_eq!(Object::from_json(&obj.to_json()).unwrap(), obj);
    }
}

#[test]
fn a_field_outside_the_subset_is_refused_with_its_path() {
    let text = NGINX_DEPLOYMENT.replace("      containers:", "      tolerations: []\n      containers:");
    let errs = errors(&text);
    assert!(errs[0].contains("spec.template.spec.tolerations: is not supported by Corral"), "{errs:?}");
    assert!(errs[0].starts_with("test.yaml: document 1"), "{errs:?}");
}

#[test]
fn validation_names_every_field_that_is_wrong() {
    let text = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: Web_1
spec:
  replicas: -1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: other
    spec:
      containers:
      - name: web
        image: ""
        ports:
        - containerPort: 70000
        resources:
          requests:
            cpu: 2
          limits:
            cpu: 500m
"#;
    let errs = errors(text).join("\n");
    for want in [
        "metadata.name: \"Web_1\"",
        "spec.replicas: must be greater than or equal to 0",
        "spec.template.metadata.labels: Invalid value: `selector` does not match template `labels`",
        "spec.template.spec.containers[0].image: is required",
        "spec.template.spec.containers[0].ports[0].containerPort: 70000",
        "spec.template.spec.containers[0].resources.requests[cpu]: 2: must be less than or equal to cpu limit 500m",
    ] {
        assert!(errs.contains(want), "missing {want:?} in:\n{errs}");
    }
}

#[test]
fn bad_quantities_and_unknown_kinds_are_named() {
    let text = TWO_CONTAINER_POD.replace(
        "    image: debian",
        "    image: debian\n    resources:\n      limits:\n        memory: 12x",
    );
    let errs = errors(&text);
    assert!(
        errs[0].contains("spec.containers[1].resources.limits.memory") && errs[0].contains("12x"),
        "{errs:?}"
    );
    let errs = errors("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\n");
    assert!(errs[0].contains("kind: \"ConfigMap\" is not a kind Corral serves"), "{errs:?}");
    let errs = errors("apiVersion: v1\nkind: Deployment\nmetadata: {name: x}\n");
    assert!(errs[0].contains("apiVersion: Deployment is served as \"apps/v1\""), "{errs:?}");
}

#[test]
fn one_bad_document_rejects_the_whole_file() {
    let text = format!("{NGINX_DEPLOYMENT}\n---\n{SERVICE}\n---\napiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec: {{containers: []}}\n");
    let errs = parse("app.yaml", &text).unwrap_err();
    assert_eq!(errs.len(), 1);
    assert_eq!((errs[0].document, errs[0].path.as_str()), (3, "spec.containers"));
    let errs = parse("broken.yaml", "apiVersion: v1\nkind: Pod\n  metadata: x: y\n").unwrap_err();
    assert_eq!(errs[0].line, Some(3), "{errs:?}");
}

#[test]
fn affinity_rules_are_checked() {
    let text = r#"
apiVersion: v1
kind: Pod
metadata: {name: gpu-job}
spec:
  containers: [{name: c, image: busybox}]
  affinity:
    nodeAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
        nodeSelectorTerms:
        - matchExpressions:
          - {key: gpu, operator: Gt, values: ["many"]}
    podAntiAffinity:
      requiredDuringSchedulingIgnoredDuringExecution:
      - labelSelector: {matchLabels: {app: web}}
        topologyKey: topology.kubernetes.io/zone
"#;
    let errs = errors(text).join("\n");
    assert!(
        errs.contains("nodeSelectorTerms[0].matchExpressions[0].values: must be a single integer"),
        "{errs}"
    );
    assert!(
        errs.contains("podAntiAffinity.requiredDuringSchedulingIgnoredDuringExecution[0].topologyKey"),
        "{errs}"
    );
}

#[test]
fn kinds_parse_from_what_users_type() {
    for (typed, kind) in [
        ("po", Kind::Pod),
        ("deployment.apps", Kind::Deployment),
        ("svc", Kind::Service),
        ("nodes", Kind::Node),
    ] {
        assert_eq!(Kind::parse(typed), Ok(kind));
    }
    assert!(Kind::parse("configmap").unwrap_err().contains("unknown kind"));
    assert_eq!(Kind::Deployment.qualified(), "deployment.apps");
}

#[test]
fn rollout_bounds_scale_like_kubernetes() {
    let pct = IntOrString::String("25%".into());
    assert_eq!(pct.scaled(10, true), Ok(3));
    assert_eq!(pct.scaled(10, false), Ok(2));
    assert_eq!(IntOrString::Int(2).scaled(10, true), Ok(2));
    assert!(IntOrString::String("lots".into()).scaled(10, true).is_err());
}

#[test]
fn pod_status_keeps_kubernetes_spelling_of_ip_fields() {
    let status = pod::PodStatus {
        pod_ip: Some("172.18.0.2".into()),
        host_ip: Some("127.0.0.11".into()),
        ..Default::default()
    };
    let json = serde_json::to_value(&status).unwrap();
    assert_eq!(json["podIP"], "172.18.0.2");
    assert_eq!(json["hostIP"], "127.0.0.11");
    // What earlier releases stored still reads.
    let old: pod::PodStatus = serde_json::from_str(r#"{"podIp":"10.0.0.1","hostIp":"127.0.0.12"}"#).unwrap();
    assert_eq!((old.pod_ip.as_deref(), old.host_ip.as_deref()), (Some("10.0.0.1"), Some("127.0.0.12")));
}

/// A pod (or a deployment's template, `in_template`) with `spec` under its spec.
fn pod_with(spec_extra: &str, container_extra: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: p}}\nspec:\n{spec_extra}  containers:\n  - name: app\n    image: busybox\n{container_extra}"
    )
}

fn problems_with(text: &str, security: &pod_security::PodSecurity) -> Vec<String> {
    let value: serde_json::Value = serde_yaml_ng::from_str(text).unwrap();
    let obj = Object::from_value(value).unwrap_or_else(|e| panic!("{e}"));
    obj.validate_with(security).iter().map(ToString::to_string).collect()
}

#[test]
fn baseline_privileges_are_refused_with_the_field_and_the_rule() {
    for (spec, container, want) in [
        ("  hostNetwork: true\n", "", "spec.hostNetwork: sharing the host's namespaces is not allowed (PodSecurity baseline)"),
        ("  hostPID: true\n", "", "spec.hostPID: sharing the host's namespaces is not allowed (PodSecurity baseline)"),
        ("  hostIPC: true\n", "", "spec.hostIPC: sharing the host's namespaces is not allowed (PodSecurity baseline)"),
        ("", "    securityContext: {privileged: true}\n", "spec.containers[0].securityContext.privileged: privileged containers are not allowed (PodSecurity baseline)"),
        ("", "    securityContext: {capabilities: {add: [NET_BIND_SERVICE, NET_ADMIN]}}\n", "spec.containers[0].securityContext.capabilities.add[1]: \"NET_ADMIN\": adding capabilities is not allowed (PodSecurity baseline)"),
    ] {
        let errs = errors(&pod_with(spec, container));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains(want), "{errs:?}");
    }
    // Defaults said out loud are fine.
    one(&pod_with(
        "  hostNetwork: false\n  hostPID: false\n",
        "    securityContext: {privileged: false, capabilities: {add: [CHOWN]}}\n",
    ));
    // The rest of securityContext stays "not supported", as before.
    for (container, path) in [
        ("    securityContext: {runAsUser: 1000}\n", "spec.containers[0].securityContext.runAsUser"),
        (
            "    securityContext: {capabilities: {drop: [ALL]}}\n",
            "spec.containers[0].securityContext.capabilities.drop",
        ),
    ] {
        let errs = errors(&pod_with("", container));
        assert!(errs[0].contains(&format!("{path}: is not supported by Corral")), "{errs:?}");
    }
    let errs = errors(&pod_with("  securityContext: {runAsNonRoot: true}\n", ""));
    assert!(errs[0].contains("spec.securityContext: is not supported by Corral"), "{errs:?}");
}

#[test]
fn host_paths_follow_the_clusters_allow_list() {
    let volume = |path: &str, read_only: &str| {
        pod_with(
            &format!("  volumes:\n  - {{name: h, hostPath: {{path: {path:?}}}}}\n"),
            &format!("    volumeMounts:\n    - {{name: h, mountPath: /h{read_only}}}\n"),
        )
    };
    let none = pod_security::PodSecurity::default();
    let some = pod_security::PodSecurity {
        allowed_host_paths: vec!["/srv".parse().unwrap(), "/var/cache/app:rw".parse().unwrap()],
    };
    for (path, read_only, security, want) in [
        ("/", ", readOnly: true", &some, Some("spec.volumes[0].hostPath.path: \"/\" is not allowed: the host's root filesystem is never mounted into a pod")),
        ("/srv/../etc/passwd", ", readOnly: true", &some, Some("spec.volumes[0].hostPath.path: \"/srv/../etc/passwd\" is not allowed: /etc")),
        ("/data", ", readOnly: true", &none, Some("spec.volumes[0].hostPath.path: \"/data\" is not allowed: hostPath volumes must be under an allowed prefix (corral master --allowed-host-paths); none is allowed on this cluster")),
        ("/srv/www", "", &some, Some("spec.containers[0].volumeMounts[0].readOnly: hostPath volume \"h\" (\"/srv/www\") is read-only on this cluster: set readOnly: true, or allow writes with corral master --allowed-host-paths /srv:rw")),
        ("/srv/www", ", readOnly: false", &some, Some("volumeMounts[0].readOnly: hostPath volume")),
        ("/srv/www", ", readOnly: true", &some, None),
        ("/var/cache/app/x", "", &some, None),
    ] {
        let got = problems_with(&volume(path, read_only), security);
        match want {
            Some(w) => assert!(got.len() == 1 && got[0].contains(w), "{path}{read_only}: {got:?}"),
            None => assert!(got.is_empty(), "{path}{read_only}: {got:?}"),
        }
    }
    // A client (no cluster settings) checks what holds everywhere only.
    assert!(errors(&volume("/", ", readOnly: true"))[0]
        .contains("spec.volumes[0].hostPath.path: \"/\" is not allowed"));
    one(&volume("/data", ""));
    // A deployment's template is a pod spec like any other.
    let deployment = NGINX_DEPLOYMENT.replace(
        "      containers:",
        "      volumes:\n      - {name: h, hostPath: {path: /proc}}\n      containers:",
    );
    let errs = errors(&deployment);
    assert!(
        errs[0].contains("spec.template.spec.volumes[0].hostPath.path: \"/proc\" is not allowed"),
        "{errs:?}"
    );
}
