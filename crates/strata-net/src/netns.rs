//! Network namespaces made ahead of a container and pinned by a bind mount (as `ip netns add`
//! does), so the engine can wire them before the container's process exists and drop them
//! after it is gone.

use std::io;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use crate::netlink::Netlink;

/// Where the namespace of container `id` is pinned.
pub fn path_for(id: &str) -> PathBuf {
    Path::new("/run/strata/netns").join(id)
}

/// Makes a new network namespace pinned at `path`, its loopback up.
pub fn create(path: &Path) -> io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::File::create(path)?;
    let target = path.to_owned();
    let made = std::thread::spawn(move || -> io::Result<()> {
        // A thread may have a network namespace of its own: make one, pin it, leave it.
        // SAFETY: only the network namespace of this short-lived thread changes; no file
        // descriptor table or memory is unshared.
        unsafe { rustix::thread::unshare_unsafe(rustix::thread::UnshareFlags::NEWNET)? };
        rustix::mount::mount_bind("/proc/thread-self/ns/net", &target)?;
        let mut netlink = Netlink::open()?;
        if let Some(lo) = netlink.link_index("lo")? {
            netlink.set_up(lo, None)?;
        }
        Ok(())
    })
    .join()
    .map_err(|_| io::Error::other("the thread making a network namespace panicked"))?;
    if let Err(e) = made {
        let _ = remove(path);
        return Err(e);
    }
    Ok(())
}

/// Unpins and removes it: the namespace (and the veth end in it) goes once no process is in it.
pub fn remove(path: &Path) -> io::Result<()> {
    match rustix::mount::unmount(path, rustix::mount::UnmountFlags::DETACH) {
        Ok(()) | Err(rustix::io::Errno::INVAL) | Err(rustix::io::Errno::NOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Opens a pinned namespace.
pub fn open(path: &Path) -> io::Result<std::fs::File> {
    std::fs::File::open(path)
}

/// One end of a container's link to a bridge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: std::net::Ipv4Addr,
    pub prefix: u8,
    pub gateway: std::net::Ipv4Addr,
    pub mac: [u8; 6],
    /// The host end's name (`veth` + 7 hex).
    pub host_link: String,
}

/// Docker's MAC for an address: 02:42 and the address's four bytes.
pub fn mac_for(address: std::net::Ipv4Addr) -> [u8; 6] {
    let [a, b, c, d] = address.octets();
    [0x02, 0x42, a, b, c, d]
}

pub fn format_mac(mac: &[u8; 6]) -> String {
    mac.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Makes sure the bridge `name` exists with `gateway/prefix` and is up; sets what the host
/// needs for it: forwarding from it, and `route_localnet` so that published ports answer on
/// 127.0.0.1. Returns its index.
pub fn ensure_bridge(name: &str, gateway: std::net::Ipv4Addr, prefix: u8) -> io::Result<u32> {
    ensure_bridge_made(name, gateway, prefix).map(|(index, _)| index)
}

/// [`ensure_bridge`], and whether it was made now.
pub fn ensure_bridge_made(name: &str, gateway: std::net::Ipv4Addr, prefix: u8) -> io::Result<(u32, bool)> {
    let mut netlink = Netlink::open()?;
    let mut made = false;
    let index = match netlink.link_index(name)? {
        Some(index) => index,
        None => {
            made = true;
            match netlink.add_bridge(name) {
                Ok(()) => {}
                // Another command made it meanwhile.
                Err(e) if e.raw_os_error() == Some(libc::EEXIST) => {}
                Err(e) => return Err(e),
            }
            netlink.link_index(name)?.ok_or_else(|| io::Error::other(format!("bridge {name} vanished")))?
        }
    };
    netlink.add_address(index, gateway, prefix)?;
    netlink.set_up(index, None)?;
    for (setting, value) in [("forwarding", "1"), ("route_localnet", "1")] {
        std::fs::write(format!("/proc/sys/net/ipv4/conf/{name}/{setting}"), value)?;
    }
    Ok((index, made))
}

/// Lets answers from beyond the host reach containers where IPv4 forwarding is off
/// (`net.ipv4.ip_forward=0`): the kernel forwards a packet only when the interface it came in
/// on has `forwarding` set. strata's bridges have it; this turns it on for the interfaces the
/// host's default routes leave through, and for nothing else. Returns the names it changed.
pub fn forward_out() -> io::Result<Vec<String>> {
    let on = |path: &str| std::fs::read_to_string(path).is_ok_and(|v| v.trim() == "1");
    if on("/proc/sys/net/ipv4/ip_forward") {
        return Ok(Vec::new());
    }
    let mut netlink = Netlink::open()?;
    let links = netlink.links()?;
    let mut changed = Vec::new();
    for index in netlink.default_route_links()? {
        let Some((_, name)) = links.iter().find(|(i, _)| *i == index) else { continue };
        let path = format!("/proc/sys/net/ipv4/conf/{name}/forwarding");
        if !on(&path) {
            std::fs::write(&path, "1")?;
            changed.push(name.clone());
        }
    }
    Ok(changed)
}

/// Connects the namespace at `netns` to the bridge: a veth pair, `eth0` inside with the
/// endpoint's address, MAC and default route.
pub fn attach(netns: &Path, bridge: u32, endpoint: &Endpoint) -> io::Result<()> {
    attach_named(netns, bridge, endpoint, "eth0", true)
}

/// [`attach`] with the inside end called `inside`, and the default route only when `route`
/// (a second network of a container adds an address, not a route).
pub fn attach_named(netns: &Path, bridge: u32, endpoint: &Endpoint, inside_name: &str, route: bool) -> io::Result<()> {
    let namespace = open(netns)?;
    let mut host = Netlink::open()?;
    host.add_veth(&endpoint.host_link, inside_name, endpoint.mac, namespace.as_fd())?;
    let result = (|| {
        let index = host
            .link_index(&endpoint.host_link)?
            .ok_or_else(|| io::Error::other(format!("{} vanished", endpoint.host_link)))?;
        host.set_up(index, Some(bridge))?;
        let mut inside = Netlink::open_in(namespace.as_fd())?;
        let link =
            inside.link_index(inside_name)?.ok_or_else(|| io::Error::other(format!("{inside_name} vanished")))?;
        inside.add_address(link, endpoint.address, endpoint.prefix)?;
        inside.set_up(link, None)?;
        if route {
            inside.add_default_route(endpoint.gateway)?;
        }
        Ok(())
    })();
    if result.is_err() {
        if let Ok(Some(index)) = host.link_index(&endpoint.host_link) {
            let _ = host.delete_link(index);
        }
    }
    result
}
