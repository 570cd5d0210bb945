//! Container networking without a daemon: bridges and veth pairs over netlink, network
//! namespaces pinned by bind mounts, address leases, and the nftables rules for published
//! ports and masquerading.

pub mod firewall;
pub mod ipam;
pub mod netlink;
pub mod netns;
