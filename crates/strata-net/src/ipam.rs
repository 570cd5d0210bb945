//! Subnets and addresses: Docker's default address pools, the first subnet that overlaps
//! nothing, the next free address in a subnet.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::str::FromStr;

/// An IPv4 network: address and prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subnet {
    pub network: Ipv4Addr,
    pub prefix: u8,
}

impl Subnet {
    pub fn new(address: Ipv4Addr, prefix: u8) -> Subnet {
        let mask = Self::mask_of(prefix);
        Subnet { network: Ipv4Addr::from(u32::from(address) & mask), prefix }
    }

    fn mask_of(prefix: u8) -> u32 {
        u32::MAX.checked_shl(32 - u32::from(prefix.min(32))).unwrap_or(0)
    }

    pub fn mask(&self) -> u32 {
        Self::mask_of(self.prefix)
    }

    pub fn contains(&self, address: Ipv4Addr) -> bool {
        u32::from(address) & self.mask() == u32::from(self.network)
    }

    pub fn overlaps(&self, other: &Subnet) -> bool {
        let mask = Self::mask_of(self.prefix.min(other.prefix));
        u32::from(self.network) & mask == u32::from(other.network) & mask
    }

    /// The first usable address (Docker's gateway).
    pub fn first(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) + 1)
    }

    pub fn broadcast(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.network) | !self.mask())
    }
}

impl std::fmt::Display for Subnet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl FromStr for Subnet {
    type Err = String;

    /// `172.18.0.0/16`; the address must be the network's (`172.18.0.1/16` is refused, as Docker).
    fn from_str(text: &str) -> Result<Subnet, String> {
        let bad = || format!("invalid subnet {text}: expected an IPv4 CIDR such as 172.28.0.0/16");
        let (address, prefix) = text.split_once('/').ok_or_else(bad)?;
        let address: Ipv4Addr = address.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().ok().filter(|p| *p <= 32).ok_or_else(bad)?;
        let subnet = Subnet::new(address, prefix);
        if subnet.network != address {
            return Err(format!("invalid subnet {text}: it should be {subnet}"));
        }
        Ok(subnet)
    }
}

/// A pool to carve subnets from: `base` split into subnets of `size` bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pool {
    pub base: Subnet,
    pub size: u8,
}

/// Docker's default address pools: 172.17–31.0.0/16, then 192.168.0–240.0/20.
pub fn default_pools() -> Vec<Pool> {
    vec![
        Pool { base: Subnet::new(Ipv4Addr::new(172, 17, 0, 0), 16), size: 16 },
        Pool { base: Subnet::new(Ipv4Addr::new(172, 18, 0, 0), 15), size: 16 },
        Pool { base: Subnet::new(Ipv4Addr::new(172, 20, 0, 0), 14), size: 16 },
        Pool { base: Subnet::new(Ipv4Addr::new(172, 24, 0, 0), 13), size: 16 },
        Pool { base: Subnet::new(Ipv4Addr::new(192, 168, 0, 0), 16), size: 20 },
    ]
}

/// The first subnet of the pools that overlaps none of `taken` (other networks, the host's
/// routes).
pub fn free_subnet(pools: &[Pool], taken: &[Subnet]) -> Option<Subnet> {
    for pool in pools {
        if pool.size < pool.base.prefix || pool.size > 30 {
            continue;
        }
        let count = 1u64 << (pool.size - pool.base.prefix);
        let step = 1u64 << (32 - pool.size);
        for n in 0..count {
            let network = Ipv4Addr::from((u64::from(u32::from(pool.base.network)) + n * step) as u32);
            let candidate = Subnet::new(network, pool.size);
            if !taken.iter().any(|t| t.overlaps(&candidate)) {
                return Some(candidate);
            }
        }
    }
    None
}

/// The lowest address of `range` (within `subnet`) that is not the network, the broadcast,
/// the gateway or `used`.
pub fn free_address(
    subnet: &Subnet,
    range: Option<&Subnet>,
    gateway: Ipv4Addr,
    used: &BTreeSet<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let range = range.unwrap_or(subnet);
    let start = u32::from(range.network).max(u32::from(subnet.network) + 1);
    let end = u32::from(range.broadcast()).min(u32::from(subnet.broadcast()).saturating_sub(1));
    (start..=end).map(Ipv4Addr::from).find(|a| *a != gateway && !used.contains(a))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_pools_and_addresses() {
        let docker0: Subnet = "172.17.0.0/16".parse().expect("cidr");
        assert!("172.17.0.1/16".parse::<Subnet>().is_err());
        assert!("300.0.0.0/8".parse::<Subnet>().is_err());
        assert!(docker0.contains(Ipv4Addr::new(172, 17, 3, 4)));
        let pools = default_pools();
        assert_eq!(free_subnet(&pools, &[]).expect("one").to_string(), "172.17.0.0/16");
        assert_eq!(free_subnet(&pools, &[docker0]).expect("next").to_string(), "172.18.0.0/16");
        let wide: Subnet = "172.16.0.0/12".parse().expect("cidr");
        assert_eq!(free_subnet(&pools, &[wide]).expect("192.168").to_string(), "192.168.0.0/20");
        let subnet: Subnet = "10.1.0.0/29".parse().expect("cidr");
        let gateway = subnet.first();
        let mut used = BTreeSet::new();
        let mut got = Vec::new();
        while let Some(address) = free_address(&subnet, None, gateway, &used) {
            used.insert(address);
            got.push(address.to_string());
        }
        assert_eq!(got, ["10.1.0.2", "10.1.0.3", "10.1.0.4", "10.1.0.5", "10.1.0.6"]);
        let range: Subnet = "10.1.0.4/30".parse().expect("cidr");
        assert_eq!(free_address(&subnet, Some(&range), gateway, &BTreeSet::new()), Some(Ipv4Addr::new(10, 1, 0, 4)));
    }
}
