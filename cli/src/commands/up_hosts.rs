//! `corral up --hosts`: the multi-host test bed under a local cluster. Every
//! master and node gets a host of its own ([`crate::hosts`]): masters
//! `m1..` at 10.77.N.11.., nodes `n1..` at 10.77.N.21.., each node with its
//! own Docker engine, into which the local images are built.

use super::up::UpArgs;
use super::{CliError, Result};
use crate::hosts::{Bed, Host};
use crate::local::LocalOptions;

/// Makes the bed and its hosts (engines started), and points `opts`'
/// masters at theirs. Returns the bed and every host, for `cluster.json`.
pub fn prepare(args: &UpArgs, opts: &mut LocalOptions) -> Result<(Bed, Vec<Host>)> {
    if !matches!(args.network_backend.as_str(), "host-gw" | "vxlan") {
        return Err(CliError::msg(format!(
            "--network-backend {:?}: with --hosts every node has its own engine: use host-gw or vxlan",
            args.network_backend
        )));
    }
    if args.masters > 9 || args.nodes > 200 {
        return Err(CliError::msg("--hosts takes at most 9 masters and 200 nodes"));
    }
    let err = |what: &str, e: std::io::Error| {
        CliError::msg(format!("{what}: {e} (--hosts needs root and iproute2)"))
    };
    let bed = Bed::free(1).map_err(|e| err("no test bed", e))?;
    std::fs::create_dir_all(&args.state_dir).map_err(|e| err("state dir", e))?;
    let state_dir = std::fs::canonicalize(&args.state_dir).map_err(|e| err("state dir", e))?;
    eprintln!(
        "making test bed {} (link 10.77.{}.0/24, this machine at {})",
        bed.prefix(),
        bed.id,
        bed.gateway()
    );
    let made = (|| -> std::io::Result<Vec<Host>> {
        bed.create()?;
        let mut hosts = Vec::new();
        for i in 1..=args.masters {
            hosts.push(bed.add_host(&format!("m{i}"), 10 + i as u8)?);
        }
        for i in 1..=args.nodes {
            let mut h = bed.add_host(&format!("n{i}"), 20 + i as u8)?;
            eprintln!("starting the Docker engine of host {} ({})", h.name, h.address);
            let dir = state_dir.join(format!("engine-{}", h.name));
            bed.start_engine(&mut h, &dir)?;
            hosts.push(h);
        }
        Ok(hosts)
    })();
    let hosts = match made {
        Ok(h) => h,
        Err(e) => {
            Bed::destroy(&bed.prefix(), Some(&state_dir));
            return Err(err("cannot make the test bed", e));
        }
    };
    opts.master_hosts = hosts.iter().filter(|h| h.engine.is_none()).cloned().collect();
    Ok((bed, hosts))
}

/// Builds the local images (from Debian's static busybox, no registry) in
/// every worker's engine.
pub async fn load_images(workers: &[Host]) -> Result<()> {
    for h in workers {
        let Some(socket) = &h.engine else { continue };
        eprintln!("building the local images in host {}'s engine", h.name);
        let runtime =
            node::runtime::docker::DockerRuntime::open(socket, node::runtime::docker::DEFAULT_NETWORK)
                .await
                .map_err(|e| CliError::msg(format!("host {}: {e}", h.name)))?;
        node::runtime::docker::ensure_busybox_images(runtime.docker())
            .await
            .map_err(|e| CliError::msg(format!("host {}: {e}", h.name)))?;
    }
    Ok(())
}
