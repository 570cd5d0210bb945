//! Links, addresses and routes over rtnetlink (NETLINK_ROUTE), synchronously: one request, one
//! acknowledgement. A socket works on the network namespace it was opened in, so
//! [`Netlink::open_in`] opens one from a thread that entered the namespace.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, BorrowedFd};

use netlink_packet_core::{
    NetlinkHeader, NetlinkMessage, NetlinkPayload, NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REQUEST,
};
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{protocols::NETLINK_ROUTE, Socket, SocketAddr};

pub struct Netlink {
    socket: Socket,
    sequence: u32,
}

fn other(message: impl std::fmt::Display) -> io::Error {
    io::Error::other(message.to_string())
}

impl Netlink {
    /// A socket on this thread's network namespace.
    pub fn open() -> io::Result<Netlink> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        Ok(Netlink { socket, sequence: 0 })
    }

    /// A socket on the network namespace `netns` (a `/proc/PID/ns/net` or a bind mount of one).
    pub fn open_in(netns: BorrowedFd<'_>) -> io::Result<Netlink> {
        let fd = netns.try_clone_to_owned()?;
        std::thread::spawn(move || {
            rustix::thread::move_into_link_name_space(fd.as_fd(), Some(rustix::thread::LinkNameSpaceType::Network))?;
            Netlink::open()
        })
        .join()
        .map_err(|_| other("netlink: the thread that entered the namespace panicked"))?
    }

    /// Sends one request; returns the messages of the answer (for dumps) once acknowledged.
    fn request(&mut self, message: RouteNetlinkMessage, flags: u16) -> io::Result<Vec<RouteNetlinkMessage>> {
        self.sequence = self.sequence.wrapping_add(1);
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | NLM_F_ACK | flags;
        header.sequence_number = self.sequence;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let mut buffer = vec![0u8; packet.buffer_len()];
        packet.serialize(&mut buffer);
        self.socket.send(&buffer, 0)?;
        let mut answers = Vec::new();
        loop {
            let (data, _) = self.socket.recv_from_full()?;
            let mut offset = 0;
            while offset < data.len() {
                let reply = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[offset..]).map_err(other)?;
                let length = reply.header.length as usize;
                if length == 0 {
                    return Err(other("netlink: empty message"));
                }
                offset += (length + 3) & !3;
                if reply.header.sequence_number != self.sequence {
                    continue;
                }
                match reply.payload {
                    NetlinkPayload::Error(error) => {
                        return match error.code {
                            None => Ok(answers),
                            Some(code) => Err(io::Error::from_raw_os_error(-code.get())),
                        }
                    }
                    NetlinkPayload::Done(_) => return Ok(answers),
                    NetlinkPayload::InnerMessage(inner) => answers.push(inner),
                    _ => {}
                }
            }
        }
    }

    /// The index of the link called `name`, if there is one.
    pub fn link_index(&mut self, name: &str) -> io::Result<Option<u32>> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        match self.request(RouteNetlinkMessage::GetLink(message), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|a| match a {
                RouteNetlinkMessage::NewLink(link) => Some(link.header.index),
                _ => None,
            })),
            Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every link's (index, name).
    pub fn links(&mut self) -> io::Result<Vec<(u32, String)>> {
        let answers = self.request(RouteNetlinkMessage::GetLink(LinkMessage::default()), NLM_F_DUMP)?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewLink(link) => {
                    let name = link.attributes.iter().find_map(|attribute| match attribute {
                        LinkAttribute::IfName(name) => Some(name.clone()),
                        _ => None,
                    })?;
                    Some((link.header.index, name))
                }
                _ => None,
            })
            .collect())
    }

    /// Creates a bridge (down, no address).
    pub fn add_bridge(&mut self, name: &str) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(name.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]));
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Creates a veth pair: `host` here, `peer` (with `peer_mac`) in the namespace `peer_netns`.
    pub fn add_veth(
        &mut self,
        host: &str,
        peer: &str,
        peer_mac: [u8; 6],
        peer_netns: BorrowedFd<'_>,
    ) -> io::Result<()> {
        let mut peer_message = LinkMessage::default();
        peer_message.attributes.push(LinkAttribute::IfName(peer.to_owned()));
        peer_message.attributes.push(LinkAttribute::Address(peer_mac.to_vec()));
        peer_message.attributes.push(LinkAttribute::NetNsFd(std::os::fd::AsRawFd::as_raw_fd(&peer_netns)));
        let mut message = LinkMessage::default();
        message.attributes.push(LinkAttribute::IfName(host.to_owned()));
        message.attributes.push(LinkAttribute::LinkInfo(vec![
            LinkInfo::Kind(InfoKind::Veth),
            LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer_message))),
        ]));
        self.request(RouteNetlinkMessage::NewLink(message), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// Sets a link up, and optionally its master (a bridge port).
    pub fn set_up(&mut self, index: u32, master: Option<u32>) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        message.header.flags = LinkFlags::Up;
        message.header.change_mask = LinkFlags::Up;
        if let Some(master) = master {
            message.attributes.push(LinkAttribute::Controller(master));
        }
        self.request(RouteNetlinkMessage::SetLink(message), 0).map(drop)
    }

    pub fn delete_link(&mut self, index: u32) -> io::Result<()> {
        let mut message = LinkMessage::default();
        message.header.index = index;
        self.request(RouteNetlinkMessage::DelLink(message), 0).map(drop)
    }

    /// Adds `address/prefix` to a link (an existing one is fine).
    pub fn add_address(&mut self, index: u32, address: Ipv4Addr, prefix: u8) -> io::Result<()> {
        let mut message = AddressMessage::default();
        message.header.family = AddressFamily::Inet;
        message.header.prefix_len = prefix;
        message.header.index = index;
        message.attributes.push(AddressAttribute::Local(address.into()));
        message.attributes.push(AddressAttribute::Address(address.into()));
        let bits = u32::from(address) | (u32::MAX.checked_shr(u32::from(prefix)).unwrap_or(0));
        message.attributes.push(AddressAttribute::Broadcast(Ipv4Addr::from(bits)));
        match self.request(RouteNetlinkMessage::NewAddress(message), NLM_F_CREATE | NLM_F_EXCL) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    }

    /// The default route through `gateway`.
    pub fn add_default_route(&mut self, gateway: Ipv4Addr) -> io::Result<()> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        message.header.table = RouteHeader::RT_TABLE_MAIN;
        message.header.protocol = RouteProtocol::Boot;
        message.header.scope = RouteScope::Universe;
        message.header.kind = RouteType::Unicast;
        message.attributes.push(RouteAttribute::Gateway(RouteAddress::Inet(gateway)));
        self.request(RouteNetlinkMessage::NewRoute(message), NLM_F_CREATE | NLM_F_EXCL).map(drop)
    }

    /// The main table's IPv4 routes.
    fn main_routes(&mut self) -> io::Result<Vec<RouteMessage>> {
        let mut message = RouteMessage::default();
        message.header.address_family = AddressFamily::Inet;
        let answers = self.request(RouteNetlinkMessage::GetRoute(message), NLM_F_DUMP)?;
        Ok(answers
            .into_iter()
            .filter_map(|a| match a {
                RouteNetlinkMessage::NewRoute(route) if route.header.table == RouteHeader::RT_TABLE_MAIN => Some(route),
                _ => None,
            })
            .collect())
    }

    /// The links the main table's IPv4 default routes leave through.
    pub fn default_route_links(&mut self) -> io::Result<Vec<u32>> {
        Ok(self
            .main_routes()?
            .iter()
            .filter(|route| route.header.destination_prefix_length == 0)
            .filter_map(|route| {
                route.attributes.iter().find_map(|attribute| match attribute {
                    RouteAttribute::Oif(index) => Some(*index),
                    _ => None,
                })
            })
            .collect())
    }

    /// The IPv4 destinations (network, prefix) of the main table's routes.
    pub fn routes(&mut self) -> io::Result<Vec<(Ipv4Addr, u8)>> {
        Ok(self
            .main_routes()?
            .iter()
            .filter_map(|route| {
                let destination = route.attributes.iter().find_map(|attribute| match attribute {
                    RouteAttribute::Destination(RouteAddress::Inet(address)) => Some(*address),
                    _ => None,
                })?;
                Some((destination, route.header.destination_prefix_length))
            })
            .collect())
    }
}
