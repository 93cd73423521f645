//! Links, routes, neighbours and forwarding entries of this host, through
//! netlink (rtnetlink), never by parsing `ip` output. Every route this
//! module adds carries Corral's route protocol ([`ROUTE_PROTOCOL`]), so the
//! agent finds its own routes again after a restart and never touches
//! anybody else's.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage,
};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::{Handle, LinkVxlan, RouteMessageBuilder};

use super::plan::{Route, TunnelPeer};

/// The route protocol number on Corral's routes (`ip route show proto 153`);
/// unused by the routing daemons iproute2 knows.
pub const ROUTE_PROTOCOL: u8 = 153;

/// A netlink connection, its task running on the current runtime.
#[derive(Clone)]
pub struct Netlink {
    handle: Handle,
}

fn err(what: &str, e: impl std::fmt::Display) -> String {
    format!("{what}: {e}")
}

impl Netlink {
    pub fn connect() -> Result<Netlink, String> {
        let (connection, handle, _) =
            rtnetlink::new_connection().map_err(|e| err("cannot open a netlink socket", e))?;
        tokio::spawn(connection);
        Ok(Netlink { handle })
    }

    async fn link_by_name(&self, name: &str) -> Result<Option<LinkMessage>, String> {
        let mut links = self.handle.link().get().match_name(name.to_string()).execute();
        match links.try_next().await {
            Ok(link) => Ok(link),
            // The kernel answers "no such device" for a missing name.
            Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
            Err(e) => Err(err(&format!("looking up link {name}"), e)),
        }
    }

    /// The index and MTU of the link that holds `address`.
    pub async fn link_of_address(&self, address: Ipv4Addr) -> Result<Option<(u32, u32)>, String> {
        let mut addresses = self.handle.address().get().execute();
        let mut index = None;
        while let Some(msg) = addresses.try_next().await.map_err(|e| err("listing addresses", e))? {
            let holds = msg.attributes.iter().any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(ip)) | AddressAttribute::Address(IpAddr::V4(ip)) if *ip == address));
            if holds {
                index = Some(msg.header.index);
                break;
            }
        }
        let Some(index) = index else { return Ok(None) };
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links.try_next().await.map_err(|e| err("reading a link", e))?;
        let mtu = link
            .and_then(|l| {
                l.attributes
                    .into_iter()
                    .find_map(|a| if let LinkAttribute::Mtu(m) = a { Some(m) } else { None })
            })
            .unwrap_or(1500);
        Ok(Some((index, mtu)))
    }

    /// Corral's routes in the main table, as [`Route`]s, with the messages
    /// to delete them by.
    pub async fn our_routes(&self) -> Result<Vec<(Route, RouteMessage)>, String> {
        let mut routes = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let mut out = Vec::new();
        while let Some(msg) = routes.try_next().await.map_err(|e| err("listing routes", e))? {
            if msg.header.protocol != RouteProtocol::Other(ROUTE_PROTOCOL) {
                continue;
            }
            let mut dst = None;
            let mut gateway = None;
            let mut oif = None;
            for a in &msg.attributes {
                match a {
                    RouteAttribute::Destination(RouteAddress::Inet(ip)) => dst = Some(*ip),
                    RouteAttribute::Gateway(RouteAddress::Inet(ip)) => gateway = Some(*ip),
                    RouteAttribute::Oif(i) => oif = Some(*i),
                    _ => {}
                }
            }
            let (Some(dst), Some(gateway)) = (dst, gateway) else { continue };
            let Ok(dst) = Ipv4Net::new(dst, msg.header.destination_prefix_length) else { continue };
            let onlink_device = match oif {
                Some(i) if msg.header.flags.contains(rtnetlink::packet_route::route::RouteFlags::Onlink) => {
                    self.link_name(i).await?
                }
                _ => None,
            };
            out.push((Route { dst, gateway, onlink_device }, msg));
        }
        Ok(out)
    }

    /// The routes of the main table that share an address with `net` and
    /// are not Corral's (route protocol), with their device names.
    pub async fn foreign_routes_into(&self, net: Ipv4Net) -> Result<Vec<(Ipv4Net, Option<String>)>, String> {
        let mut routes = self.handle.route().get(RouteMessageBuilder::<Ipv4Addr>::new().build()).execute();
        let mut found = Vec::new();
        while let Some(msg) = routes.try_next().await.map_err(|e| err("listing routes", e))? {
            if msg.header.protocol == RouteProtocol::Other(ROUTE_PROTOCOL) || msg.header.table != 254 {
                continue;
            }
            let dst = msg.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            // The default route (no destination) holds everything: not an overlap.
            let Some(dst) = dst else { continue };
            let Ok(dst) = Ipv4Net::new(dst, msg.header.destination_prefix_length) else { continue };
            if !(dst.contains(&net.network()) || net.contains(&dst.network())) {
                continue;
            }
            let oif =
                msg.attributes
                    .iter()
                    .find_map(|a| if let RouteAttribute::Oif(i) = a { Some(*i) } else { None });
            let dev = match oif {
                Some(i) => self.link_name(i).await?,
                None => None,
            };
            found.push((dst, dev));
        }
        Ok(found)
    }

    async fn link_name(&self, index: u32) -> Result<Option<String>, String> {
        let mut links = self.handle.link().get().match_index(index).execute();
        let link = links.try_next().await.map_err(|e| err("reading a link", e))?;
        Ok(link.and_then(|l| {
            l.attributes
                .into_iter()
                .find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n) } else { None })
        }))
    }

    /// Adds (or replaces) `route` with Corral's protocol.
    pub async fn add_route(&self, route: &Route) -> Result<(), String> {
        let mut builder = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(route.dst.network(), route.dst.prefix_len())
            .gateway(route.gateway)
            .protocol(RouteProtocol::Other(ROUTE_PROTOCOL));
        if let Some(dev) = &route.onlink_device {
            let link = self.link_by_name(dev).await?.ok_or_else(|| format!("link {dev} does not exist"))?;
            builder = builder.output_interface(link.header.index).onlink();
        }
        self.handle
            .route()
            .add(builder.build())
            .replace()
            .execute()
            .await
            .map_err(|e| err(&format!("adding route {} via {}", route.dst, route.gateway), e))
    }

    pub async fn del_route(&self, msg: RouteMessage) -> Result<(), String> {
        self.handle.route().del(msg).execute().await.map_err(|e| err("removing a route", e))
    }

    /// Makes the VXLAN device `name` (VNI, UDP port, local address and
    /// underlay link as given, no learning: the agent programs every peer),
    /// with `mac`, `mtu` and `address`/32, and sets it up.
    #[allow(clippy::too_many_arguments)]
    pub async fn ensure_vxlan(
        &self,
        name: &str,
        vni: u32,
        port: u16,
        local: Ipv4Addr,
        underlay: u32,
        mac: [u8; 6],
        mtu: u32,
        address: Ipv4Addr,
    ) -> Result<(), String> {
        let index = match self.link_by_name(name).await? {
            Some(link) => link.header.index,
            None => {
                let message = LinkVxlan::new(name, vni)
                    .dev(underlay)
                    .local(local)
                    .port(port)
                    .learning(false)
                    .address(mac.to_vec())
                    .mtu(mtu)
                    .up()
                    .build();
                self.handle
                    .link()
                    .add(message)
                    .execute()
                    .await
                    .map_err(|e| err(&format!("creating VXLAN device {name}"), e))?;
                self.link_by_name(name)
                    .await?
                    .ok_or_else(|| format!("VXLAN device {name} vanished"))?
                    .header
                    .index
            }
        };
        let up = rtnetlink::LinkUnspec::new_with_index(index).up().build();
        self.handle.link().set(up).execute().await.map_err(|e| err(&format!("setting {name} up"), e))?;
        let mut addresses = self.handle.address().get().set_link_index_filter(index).execute();
        let mut has = false;
        while let Some(msg) = addresses.try_next().await.map_err(|e| err("listing addresses", e))? {
            has |= msg
                .attributes
                .iter()
                .any(|a| matches!(a, AddressAttribute::Local(IpAddr::V4(ip)) if *ip == address));
        }
        if !has {
            self.handle
                .address()
                .add(index, IpAddr::V4(address), 32)
                .execute()
                .await
                .map_err(|e| err(&format!("adding {address}/32 to {name}"), e))?;
        }
        Ok(())
    }

    /// The neighbour (tunnel address → MAC) and forwarding (MAC → underlay
    /// address) entries of every peer on device `name`, replacing what was
    /// there; entries of peers that are gone are removed.
    pub async fn set_tunnel_peers(&self, name: &str, peers: &[TunnelPeer]) -> Result<(), String> {
        let index = self
            .link_by_name(name)
            .await?
            .ok_or_else(|| format!("VXLAN device {name} does not exist"))?
            .header
            .index;
        for p in peers {
            self.handle
                .neighbours()
                .add(index, IpAddr::V4(p.vtep_ip))
                .link_layer_address(&p.vtep_mac)
                .replace()
                .execute()
                .await
                .map_err(|e| err(&format!("adding neighbour {} on {name}", p.vtep_ip), e))?;
            self.handle
                .neighbours()
                .add_bridge(index, &p.vtep_mac)
                .destination(IpAddr::V4(p.underlay))
                .flags(NeighbourFlags::Own)
                .replace()
                .execute()
                .await
                .map_err(|e| err(&format!("adding forwarding entry for {} on {name}", p.underlay), e))?;
        }
        // Remove what belongs to no peer any more.
        let wanted_ips: Vec<Ipv4Addr> = peers.iter().map(|p| p.vtep_ip).collect();
        let wanted_macs: Vec<[u8; 6]> = peers.iter().map(|p| p.vtep_mac).collect();
        let mut stale: Vec<NeighbourMessage> = Vec::new();
        for family in [AddressFamily::Inet, AddressFamily::Bridge] {
            let mut entries = self.handle.neighbours().get().set_address_family(family).execute();
            while let Some(msg) = entries.try_next().await.map_err(|e| err("listing neighbours", e))? {
                if msg.header.ifindex != index {
                    continue;
                }
                let keep = msg.attributes.iter().any(|a| match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(ip))
                        if family == AddressFamily::Inet =>
                    {
                        wanted_ips.contains(ip)
                    }
                    NeighbourAttribute::LinkLayerAddress(mac) if family == AddressFamily::Bridge => {
                        wanted_macs.iter().any(|m| m[..] == mac[..]) || mac.iter().all(|b| *b == 0)
                    }
                    _ => false,
                });
                if !keep {
                    stale.push(msg);
                }
            }
        }
        for msg in stale {
            if let Err(e) = self.handle.neighbours().del(msg).execute().await {
                tracing::debug!(error = %e, "a stale tunnel entry was already gone");
            }
        }
        Ok(())
    }
}
