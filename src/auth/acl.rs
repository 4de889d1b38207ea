//! The IP access list: CIDR ranges (IPv4 and IPv6) marked `allow` or `deny`.
//!
//! Owned by [`Security`](super::Security), which consults it for every accepted socket
//! before a byte is read. An `allow` entry lets clients from its range connect without a
//! username and password; a `deny` entry closes their socket right after accept. When
//! several entries contain an address, the most specific one (longest prefix) decides.
//! An IPv4-mapped IPv6 address (`::ffff:10.1.2.3`) is looked up as the IPv4 address.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// What an ACL entry says about the addresses it contains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AclVerdict {
    /// Connect without credentials.
    Allow,
    /// Close the socket right after accept.
    Deny,
}

impl fmt::Display for AclVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AclVerdict::Allow => "allow",
            AclVerdict::Deny => "deny",
        })
    }
}

/// The stored form of one ACL entry (the key is the [`IpNet`] in its text form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclRecord {
    /// Allow or deny.
    pub verdict: AclVerdict,
}

/// An address range: an address and a prefix length, with the host bits cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// Why a text is not an address range.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not an IP address or CIDR range (e.g. 10.0.0.0/8, ::1, fd00::/8)")]
pub struct IpNetError(pub String);

impl IpNet {
    /// The range of `prefix` leading bits of `addr`; `None` if the prefix is too long.
    pub fn new(addr: IpAddr, prefix: u8) -> Option<IpNet> {
        let addr = canonical(addr);
        let bits = max_prefix(addr);
        (prefix <= bits).then(|| IpNet {
            addr: mask(addr, prefix),
            prefix,
        })
    }

    /// The range holding exactly `addr`.
    pub fn host(addr: IpAddr) -> IpNet {
        let addr = canonical(addr);
        IpNet {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// First address of the range.
    pub fn addr(&self) -> IpAddr {
        self.addr
    }

    /// Prefix length in bits.
    pub fn prefix(&self) -> u8 {
        self.prefix
    }

    /// Whether `ip` lies in this range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        ip.is_ipv4() == self.addr.is_ipv4() && mask(ip, self.prefix) == self.addr
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.prefix == max_prefix(self.addr) {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.prefix)
        }
    }
}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// `10.0.0.0/8`, `fd00::/8`, or a single address (`127.0.0.1`, `::1`). Host bits set
    /// in a range (`10.1.2.3/8`) are cleared.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || IpNetError(s.to_string());
        let s = s.trim();
        match s.split_once('/') {
            None => s.parse().map(IpNet::host).map_err(|_| err()),
            Some((addr, prefix)) => {
                let addr: IpAddr = addr.parse().map_err(|_| err())?;
                let prefix: u8 = prefix.parse().map_err(|_| err())?;
                // A mapped IPv4 range keeps its meaning: ::ffff:10.0.0.0/104 == 10.0.0.0/8.
                let prefix = match addr {
                    IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some() => {
                        prefix.checked_sub(96).ok_or_else(err)?
                    }
                    _ => prefix,
                };
                IpNet::new(addr, prefix).ok_or_else(err)
            }
        }
    }
}

impl Serialize for IpNet {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for IpNet {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// IPv4-mapped IPv6 addresses count as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn max_prefix(ip: IpAddr) -> u8 {
    if ip.is_ipv4() {
        32
    } else {
        128
    }
}

/// `ip` with all but the first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => {
            let keep = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(v4) & keep).into())
        }
        IpAddr::V6(v6) => {
            let keep = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(v6) & keep).into())
        }
    }
}

/// The access list: range → verdict, looked up by longest prefix.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpAcl {
    entries: BTreeMap<IpNet, AclVerdict>,
}

impl IpAcl {
    /// Builds the list from stored entries (later entries for the same range win).
    pub fn load(entries: impl IntoIterator<Item = (IpNet, AclRecord)>) -> IpAcl {
        IpAcl {
            entries: entries.into_iter().map(|(n, r)| (n, r.verdict)).collect(),
        }
    }

    /// The verdict of the most specific entry containing `ip`, if any.
    pub fn lookup(&self, ip: IpAddr) -> Option<AclVerdict> {
        let ip = canonical(ip);
        // At most 33 (IPv4) or 129 (IPv6) probes, each a map lookup: cheap and bounded.
        (0..=max_prefix(ip)).rev().find_map(|prefix| {
            let net = IpNet::new(ip, prefix)?;
            self.entries.get(&net).copied()
        })
    }

    /// Sets the entry of `net`; returns the record to store.
    pub fn set(&mut self, net: IpNet, verdict: AclVerdict) -> AclRecord {
        self.entries.insert(net, verdict);
        AclRecord { verdict }
    }

    /// Removes the entry of `net`; `true` if there was one.
    pub fn remove(&mut self, net: &IpNet) -> bool {
        self.entries.remove(net).is_some()
    }

    /// Every entry, in address order.
    pub fn entries(&self) -> impl Iterator<Item = (IpNet, AclVerdict)> + '_ {
        self.entries.iter().map(|(n, v)| (*n, *v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_hosts_and_ranges() {
        assert_eq!(net("127.0.0.1").prefix(), 32);
        assert_eq!(net("::1").prefix(), 128);
        assert_eq!(net("10.1.2.3/8").to_string(), "10.0.0.0/8");
        assert_eq!(net("fd00::1/8").to_string(), "fd00::/8");
        assert_eq!(net("::ffff:10.0.0.0/104"), net("10.0.0.0/8"));
        assert_eq!(net("0.0.0.0/0").to_string(), "0.0.0.0/0");
        for bad in ["", "10.0.0.0/33", "::/129", "host", "10.0.0.0/x", "1.2.3/8"] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
    }

    #[test]
    fn most_specific_entry_wins() {
        let mut acl = IpAcl::default();
        acl.set(net("10.0.0.0/8"), AclVerdict::Deny);
        acl.set(net("10.1.0.0/16"), AclVerdict::Allow);
        acl.set(net("10.1.2.3"), AclVerdict::Deny);
        assert_eq!(acl.lookup(ip("10.9.9.9")), Some(AclVerdict::Deny));
        assert_eq!(acl.lookup(ip("10.1.9.9")), Some(AclVerdict::Allow));
        assert_eq!(acl.lookup(ip("10.1.2.3")), Some(AclVerdict::Deny));
        assert_eq!(acl.lookup(ip("11.0.0.1")), None);
        assert!(acl.remove(&net("10.1.2.3")));
        assert_eq!(acl.lookup(ip("10.1.2.3")), Some(AclVerdict::Allow));
    }

    #[test]
    fn ipv6_and_mapped_addresses() {
        let mut acl = IpAcl::default();
        acl.set(net("::1"), AclVerdict::Allow);
        acl.set(net("2001:db8::/32"), AclVerdict::Deny);
        acl.set(net("127.0.0.0/8"), AclVerdict::Deny);
        assert_eq!(acl.lookup(ip("::1")), Some(AclVerdict::Allow));
        assert_eq!(acl.lookup(ip("2001:db8:1::5")), Some(AclVerdict::Deny));
        assert_eq!(acl.lookup(ip("2001:db9::5")), None);
        assert_eq!(acl.lookup(ip("::ffff:127.0.0.5")), Some(AclVerdict::Deny));
        // IPv4 ranges never contain IPv6 addresses and vice versa.
        acl.set(net("0.0.0.0/0"), AclVerdict::Allow);
        assert_eq!(acl.lookup(ip("fe80::1")), None);
    }

    #[test]
    fn serde_uses_the_text_form() {
        let n = net("192.168.0.0/16");
        let json = serde_json::to_string(&n).unwrap();
        assert_eq!(json, "\"192.168.0.0/16\"");
        assert_eq!(serde_json::from_str::<IpNet>(&json).unwrap(), n);
    }
}
