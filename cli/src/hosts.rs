//! A multi-host test bed on one machine (`corral up --hosts`, and the
//! multi-host tests): every master and worker node on a host of its own, a
//! network namespace with its own address on one virtual link, and every
//! worker with its own Docker engine (own socket, data root, exec root and
//! bridge, inside its namespace), into which the local images are built.
//!
//! The link is a bridge inside a namespace of its own (the "switch"), so
//! nothing of it is in the machine's namespace but one veth with the bed's
//! first address: the machine reaches every host's address through it (the
//! CLI, curl and the tests run from the ordinary shell), and the machine's
//! packet filter (where Docker's rules live) never sees the hosts' traffic.
//!
//! Everything is named for the bed (`crl<N>`: namespaces `crl<N>-<host>`,
//! veths `crl<N>…`), so [`Bed::destroy`] finds it again, also after a crash.
//! Links and namespaces are made with iproute2 (`ip`), faults with `ip` and
//! `iptables` inside the hosts' namespaces (entered with `nsenter`); the node agents program their
//! own routes through netlink.

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// One test bed: its number, its link's subnet (10.77.N.0/24) and the
/// machine's address on it (10.77.N.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bed {
    pub id: u8,
}

/// A host of the bed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    /// Its short name (`m1`, `n2`).
    pub name: String,
    /// Its network namespace.
    pub netns: String,
    pub address: Ipv4Addr,
    /// Its own Docker engine's socket (workers only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub engine: Option<PathBuf>,
    /// The pid of that engine's dockerd.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dockerd_pid: Option<u32>,
}

fn run(what: &str, cmd: &mut Command) -> io::Result<()> {
    let out =
        cmd.stdin(Stdio::null()).output().map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!("{what}: {}", String::from_utf8_lossy(&out.stderr).trim())))
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    run(&format!("ip {}", args.join(" ")), Command::new("ip").args(args))
}

/// A command inside host `netns`: `nsenter --net=/var/run/netns/NETNS PROGRAM ...`.
/// Only the network namespace changes (`ip netns exec` would also remount
/// /sys, hiding the cgroup mounts a Docker engine needs).
pub fn in_netns(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{netns}")).arg(program);
    cmd
}

impl Bed {
    /// The bed's prefix: every name it creates starts with it.
    pub fn prefix(&self) -> String {
        format!("crl{}", self.id)
    }

    fn switch(&self) -> String {
        format!("{}-sw", self.prefix())
    }

    /// The machine's address on the bed's link.
    pub fn gateway(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.id, 1)
    }

    /// The address of host number `index` (2..=254).
    pub fn address(&self, index: u8) -> Ipv4Addr {
        Ipv4Addr::new(10, 77, self.id, index)
    }

    /// A bed number whose link is free on this machine (no such namespace
    /// and no route into its subnet), from `start` up.
    pub fn free(start: u8) -> io::Result<Bed> {
        let routes =
            String::from_utf8_lossy(&Command::new("ip").args(["-4", "route"]).output()?.stdout).into_owned();
        let namespaces = netns_list();
        (start.max(1)..=250)
            .map(|id| Bed { id })
            .find(|b| {
                !namespaces.iter().any(|n| n.starts_with(&format!("{}-", b.prefix())))
                    && !routes.contains(&format!("10.77.{}.", b.id))
            })
            .ok_or_else(|| io::Error::other("no free test bed number (10.77.N.0/24) on this machine"))
    }

    /// Makes the link: the switch namespace with its bridge, and the
    /// machine's veth into it with the bed's first address.
    pub fn create(&self) -> io::Result<()> {
        let (sw, up) = (self.switch(), self.prefix());
        ip(&["netns", "add", &sw])?;
        ip(&["-n", &sw, "link", "add", "br0", "type", "bridge"])?;
        ip(&["-n", &sw, "link", "set", "br0", "up"])?;
        ip(&["link", "add", &up, "type", "veth", "peer", "name", "uplink", "netns", &sw])?;
        ip(&["-n", &sw, "link", "set", "uplink", "master", "br0", "up"])?;
        ip(&["addr", "add", &format!("{}/24", self.gateway()), "dev", &up])?;
        ip(&["link", "set", &up, "up"])?;
        Ok(())
    }

    /// Adds host `name` at `10.77.N.index`: its namespace (loopback up), an
    /// `eth0` on the link.
    pub fn add_host(&self, name: &str, index: u8) -> io::Result<Host> {
        let netns = format!("{}-{name}", self.prefix());
        let port = format!("{}{name}", self.prefix());
        ip(&["netns", "add", &netns])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        ip(&["link", "add", &port, "type", "veth", "peer", "name", "eth0", "netns", &netns])?;
        ip(&["link", "set", &port, "netns", &self.switch()])?;
        ip(&["-n", &self.switch(), "link", "set", &port, "master", "br0", "up"])?;
        let address = self.address(index);
        ip(&["-n", &netns, "addr", "add", &format!("{address}/24"), "dev", "eth0"])?;
        ip(&["-n", &netns, "link", "set", "eth0", "up"])?;
        Ok(Host { name: name.to_string(), netns, address, engine: None, dockerd_pid: None })
    }

    /// Starts a Docker engine of `host`'s own in its namespace, its state
    /// under `dir`, and waits until it answers.
    pub fn start_engine(&self, host: &mut Host, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let socket = dir.join("docker.sock");
        std::fs::write(dir.join("daemon.json"), "{}")?;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("dockerd.log"))?;
        let mut cmd = in_netns(&host.netns, "dockerd");
        cmd.arg("--config-file")
            .arg(dir.join("daemon.json"))
            .arg("--data-root")
            .arg(dir.join("root"))
            .arg("--exec-root")
            .arg(dir.join("exec"))
            .arg("--pidfile")
            .arg(dir.join("docker.pid"))
            .arg("-H")
            .arg(format!("unix://{}", socket.display()))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child =
            cmd.spawn().map_err(|e| io::Error::new(e.kind(), format!("cannot start dockerd: {e}")))?;
        host.dockerd_pid = Some(child.id());
        host.engine = Some(socket.clone());
        let deadline = Instant::now() + Duration::from_secs(60);
        while !engine_answers(&socket) {
            if Instant::now() > deadline {
                return Err(io::Error::other(format!(
                    "the Docker engine of host {} did not answer within 60 s: see {}",
                    host.name,
                    dir.join("dockerd.log").display()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // The child is waited for by nobody: dockerd outlives this handle
        // (`corral up`), and `destroy` stops it by its pid file.
        std::mem::forget(child);
        Ok(())
    }

    /// Cuts `host` off the link (its port on the switch down), or brings it back.
    pub fn set_connected(&self, host: &Host, connected: bool) -> io::Result<()> {
        let port = format!("{}{}", self.prefix(), host.name);
        ip(&["-n", &self.switch(), "link", "set", &port, if connected { "up" } else { "down" }])
    }

    /// Drops every packet between `host` and `peers`, both ways, inside
    /// `host`'s namespace. [`Bed::heal`] takes it back.
    pub fn isolate_from(&self, host: &Host, peers: &[Ipv4Addr]) -> io::Result<()> {
        self.fault_chain(host)?;
        for p in peers {
            let p = p.to_string();
            iptables(host, &["-A", FAULT_CHAIN, "-s", &p, "-j", "DROP"])?;
            iptables(host, &["-A", FAULT_CHAIN, "-d", &p, "-j", "DROP"])?;
        }
        Ok(())
    }

    /// Removes every fault on `host`.
    pub fn heal(&self, host: &Host) -> io::Result<()> {
        self.fault_chain(host)?;
        iptables(host, &["-F", FAULT_CHAIN])
    }

    /// The chain faults go into, jumped to first from INPUT and OUTPUT.
    fn fault_chain(&self, host: &Host) -> io::Result<()> {
        if iptables(host, &["-L", FAULT_CHAIN, "-n"]).is_ok() {
            return Ok(());
        }
        iptables(host, &["-N", FAULT_CHAIN])?;
        iptables(host, &["-I", "INPUT", "1", "-i", "eth0", "-j", FAULT_CHAIN])?;
        iptables(host, &["-I", "OUTPUT", "1", "-o", "eth0", "-j", FAULT_CHAIN])
    }

    /// Removes every host, engine and link of bed `prefix` (`crl<N>`):
    /// engines stopped by their pid files (only a dockerd), namespaces and
    /// the machine's veth deleted. Best effort; returns what it removed.
    pub fn destroy(prefix: &str, state_dir: Option<&Path>) -> Vec<String> {
        let mut removed = Vec::new();
        if let Some(dir) = state_dir {
            for pidfile in glob_pidfiles(dir) {
                if let Some(pid) =
                    std::fs::read_to_string(&pidfile).ok().and_then(|s| s.trim().parse::<u32>().ok())
                {
                    if is_dockerd(pid) {
                        let _ = crate::local::stop_pid(pid, Duration::from_secs(15));
                        removed.push(format!("dockerd {pid}"));
                    }
                }
            }
        }
        for ns in netns_list().into_iter().filter(|n| n.starts_with(&format!("{prefix}-"))) {
            // Processes still inside (a crashed test's agents) keep it alive: kill them by pid.
            if let Ok(out) = Command::new("ip").args(["netns", "pids", &ns]).output() {
                for pid in String::from_utf8_lossy(&out.stdout)
                    .split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok())
                {
                    let _ = crate::local::send_signal(pid, libc::SIGKILL);
                }
            }
            if ip(&["netns", "del", &ns]).is_ok() {
                removed.push(format!("netns {ns}"));
            }
        }
        if ip(&["link", "del", prefix]).is_ok() {
            removed.push(format!("link {prefix}"));
        }
        removed
    }
}

/// The chain of injected faults inside a host.
const FAULT_CHAIN: &str = "CRL-FAULT";

fn iptables(host: &Host, args: &[&str]) -> io::Result<()> {
    run(
        &format!("iptables {} (host {})", args.join(" "), host.name),
        in_netns(&host.netns, "iptables").arg("-w").args(args),
    )
}

fn glob_pidfiles(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries.flatten().map(|e| e.path().join("docker.pid")).filter(|p| p.exists()).collect()
}

fn is_dockerd(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| c.split(|b| *b == 0).next().is_some_and(|a| a.ends_with(b"dockerd")))
        .unwrap_or(false)
}

fn engine_answers(socket: &Path) -> bool {
    Command::new("docker")
        .args(["-H", &format!("unix://{}", socket.display()), "info"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The network namespaces `ip netns` knows.
pub fn netns_list() -> Vec<String> {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| l.split_whitespace().next().map(String::from))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses_follow_the_bed_number() {
        let bed = Bed { id: 7 };
        assert_eq!(bed.prefix(), "crl7");
        assert_eq!(bed.gateway(), Ipv4Addr::new(10, 77, 7, 1));
        assert_eq!(bed.address(21), Ipv4Addr::new(10, 77, 7, 21));
        // Interface names stay within Linux's 15 characters.
        assert!(format!("{}{}", Bed { id: 250 }.prefix(), "n12").len() <= 15);
    }
}
