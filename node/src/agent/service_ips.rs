//! Service cluster IPs on this host: the agent adds each Service's cluster
//! IP (and the cluster DNS address) as a /32 on the pod network's bridge,
//! so pods reach the proxy and the DNS responder there through their
//! default route, and removes the ones it added that no Service holds any
//! more. It never removes an address it did not want itself: agents of
//! another cluster on the same host may hold it. Uses iproute2's `ip`, as
//! root.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use control_plane::cluster_ip;

/// The addresses to add and to remove, given what the interface has and
/// what this agent wanted before (`ours`): only those are its to remove.
pub fn diff(
    have: &BTreeSet<Ipv4Addr>,
    want: &BTreeSet<Ipv4Addr>,
    ours: &BTreeSet<Ipv4Addr>,
) -> (Vec<Ipv4Addr>, Vec<Ipv4Addr>) {
    let add = want.difference(have).copied().collect();
    let remove = have
        .difference(want)
        .filter(|ip| ours.contains(ip) && cluster_ip::in_range(**ip) && !cluster_ip::is_node_dns(**ip))
        .copied()
        .collect();
    (add, remove)
}

/// The IPv4 /32 addresses of `ip -4 -o addr show dev IFACE` output.
pub fn parse_addresses(output: &str) -> BTreeSet<Ipv4Addr> {
    output
        .lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            words.find(|w| *w == "inet")?;
            let (ip, prefix) = words.next()?.split_once('/')?;
            (prefix == "32").then(|| ip.parse().ok()).flatten()
        })
        .collect()
}

/// `ip addr add` of an address the interface has: "File exists" (older
/// iproute2) or "Address already assigned" (newer).
fn already_there(error: &str) -> bool {
    error.contains("File exists") || error.contains("already assigned")
}

async fn ip(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("cannot run `ip {}`: {e} (install iproute2)", args.join(" ")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!("`ip {}`: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// Makes `interface` hold `want`, and drops what this agent wanted before
/// (`ours`, updated to `want`) and wants no more.
pub async fn converge(
    interface: &str,
    want: &BTreeSet<Ipv4Addr>,
    ours: &mut BTreeSet<Ipv4Addr>,
) -> Result<(), String> {
    let have = parse_addresses(&ip(&["-4", "-o", "addr", "show", "dev", interface]).await?);
    let (add, remove) = diff(&have, want, ours);
    *ours = want.clone();
    for a in add {
        self::add(interface, a).await?;
    }
    for r in remove {
        self::remove(interface, r).await?;
    }
    Ok(())
}

/// Adds one /32 to `interface` (already there is fine).
pub async fn add(interface: &str, addr: Ipv4Addr) -> Result<(), String> {
    match ip(&["addr", "add", &format!("{addr}/32"), "dev", interface]).await {
        Err(e) if already_there(&e) => Ok(()),
        r => r.map(drop),
    }
}

/// Removes one /32 from `interface` (already gone is fine).
pub async fn remove(interface: &str, addr: Ipv4Addr) -> Result<(), String> {
    match ip(&["addr", "del", &format!("{addr}/32"), "dev", interface]).await {
        Err(e) if e.contains("Cannot assign") => Ok(()),
        r => r.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_addresses_this_agent_wanted_are_removed() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let have: BTreeSet<Ipv4Addr> =
            [ip("10.96.0.5"), ip("10.96.0.6"), ip("10.96.0.7"), ip("172.18.0.1")].into();
        let want: BTreeSet<Ipv4Addr> = [ip("10.96.0.6"), ip("10.96.0.10")].into();
        // (node DNS addresses are the DNS loop's, never removed here)
        // 10.96.0.7 was never ours: another cluster's agents hold it.
        let ours: BTreeSet<Ipv4Addr> = [ip("10.96.0.5"), ip("10.96.0.6"), ip("172.18.0.1")].into();
        assert_eq!(diff(&have, &want, &ours), (vec![ip("10.96.0.10")], vec![ip("10.96.0.5")]));
    }

    #[test]
    fn addresses_are_read_from_ip_output() {
        let out = "7: br-1a2b    inet 172.18.0.1/16 brd 172.18.255.255 scope global br-1a2b\\       valid_lft forever preferred_lft forever\n7: br-1a2b    inet 10.96.0.10/32 scope global br-1a2b\\       valid_lft forever preferred_lft forever\n";
        assert_eq!(parse_addresses(out), [Ipv4Addr::new(10, 96, 0, 10)].into());
    }
}
