//! The packet filter rules a node of the `host-gw` and `vxlan` backends
//! needs, as flannel sets them: traffic from and to the cluster CIDR is
//! forwarded (an engine that enabled forwarding itself drops everything it
//! did not publish), and pod traffic leaving the cluster CIDR is
//! masqueraded behind the node's address, while traffic between pods keeps
//! its source address. Programmed with `iptables` (nftables' compatibility
//! front end on Debian 12); every rule carries a `corral` comment and is
//! checked (`-C`) before it is added, so a restarted agent adds nothing twice.

use ipnet::Ipv4Net;

/// The comment on every rule this module adds.
pub const COMMENT: &str = "corral pod network";

/// One rule: its table, its chain, whether it goes first (`-I`) or last
/// (`-A`), and its match and target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub table: &'static str,
    pub chain: &'static str,
    pub first: bool,
    pub spec: Vec<String>,
}

/// The rules for `cluster_cidr`. Pure.
pub fn rules(cluster_cidr: Ipv4Net) -> Vec<Rule> {
    let cidr = cluster_cidr.to_string();
    let comment = |mut v: Vec<String>| {
        v.extend(["-m", "comment", "--comment", COMMENT].map(String::from));
        v
    };
    let words = |s: &[&str]| s.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    vec![
        Rule {
            table: "filter",
            chain: "FORWARD",
            first: true,
            spec: comment(words(&["-s", &cidr, "-j", "ACCEPT"])),
        },
        Rule {
            table: "filter",
            chain: "FORWARD",
            first: true,
            spec: comment(words(&["-d", &cidr, "-j", "ACCEPT"])),
        },
        Rule {
            table: "nat",
            chain: "POSTROUTING",
            first: false,
            spec: comment(words(&["-s", &cidr, "!", "-d", &cidr, "-j", "MASQUERADE"])),
        },
    ]
}

/// Adds the rules that are missing; turns on IPv4 forwarding.
pub async fn ensure(cluster_cidr: Ipv4Net) -> Result<(), String> {
    tokio::fs::write("/proc/sys/net/ipv4/ip_forward", "1").await.map_err(|e| {
        format!("cannot turn on IPv4 forwarding (/proc/sys/net/ipv4/ip_forward): {e}; run the node as root")
    })?;
    for rule in rules(cluster_cidr) {
        let mut check = vec!["-t".to_string(), rule.table.to_string(), "-C".into(), rule.chain.into()];
        check.extend(rule.spec.iter().cloned());
        if iptables(&check).await.is_ok() {
            continue;
        }
        let mut add = vec!["-t".to_string(), rule.table.to_string()];
        if rule.first {
            add.extend(["-I".to_string(), rule.chain.to_string(), "1".to_string()]);
        } else {
            add.extend(["-A".to_string(), rule.chain.to_string()]);
        }
        add.extend(rule.spec.iter().cloned());
        iptables(&add).await?;
    }
    Ok(())
}

async fn iptables(args: &[String]) -> Result<(), String> {
    let out = tokio::process::Command::new("iptables")
        .arg("-w")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run `iptables {}`: {e} (install iptables)", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("`iptables {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarding_both_ways_and_masquerade_only_out_of_the_cluster() {
        let r = rules("10.244.0.0/16".parse().unwrap());
        assert_eq!(r.len(), 3);
        assert_eq!((r[0].table, r[0].chain, r[0].first), ("filter", "FORWARD", true));
        assert_eq!(r[0].spec[..4], ["-s", "10.244.0.0/16", "-j", "ACCEPT"]);
        assert_eq!(r[1].spec[..4], ["-d", "10.244.0.0/16", "-j", "ACCEPT"]);
        assert_eq!((r[2].table, r[2].chain), ("nat", "POSTROUTING"));
        assert_eq!(r[2].spec[..7], ["-s", "10.244.0.0/16", "!", "-d", "10.244.0.0/16", "-j", "MASQUERADE"]);
        assert!(r.iter().all(|r| r.spec.ends_with(&["--comment".to_string(), COMMENT.to_string()])));
    }
}
