use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use crate::error::ConfigError;

/// An IPv4 or IPv6 address range in CIDR notation: `10.0.0.0/8`, `2001:db8::/32`, or a single
/// address (`192.0.2.7`, same as `/32`; `::1`, same as `/128`).
///
/// Parsing is strict: a prefix longer than the address, bits set after the prefix
/// (`10.0.0.1/8`, usually a typo for `10.0.0.0/8` or `10.0.0.1/32`), or anything but digits
/// after the `/` is an error. Ranges inside the IPv4-mapped block (`::ffff:10.0.0.0/104`) are
/// stored as the IPv4 range they denote, and [`Cidr::contains`] maps IPv4-mapped addresses
/// (`::ffff:10.1.2.3`, as a dual-stack socket reports an IPv4 peer) to IPv4 first, so either
/// spelling matches.
///
/// ```
/// use std::net::IpAddr;
/// use tower_bearer::network::Cidr;
///
/// let office: Cidr = "192.0.2.0/24".parse().unwrap();
/// assert!(office.contains("192.0.2.99".parse().unwrap()));
/// assert!(office.contains("::ffff:192.0.2.99".parse().unwrap()));
/// assert!(!office.contains("192.0.3.1".parse().unwrap()));
/// assert!("192.0.2.1/24".parse::<Cidr>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// The range of `network` with `prefix` leading bits; an error when the prefix is longer
    /// than the address or `network` has bits set after it.
    pub fn new(network: IpAddr, prefix: u8) -> Result<Self, ConfigError> {
        let max = max_prefix(network);
        if prefix > max {
            return Err(ConfigError::new(format!(
                "CIDR prefix /{prefix} is longer than the address ({max} bits)"
            )));
        }
        if mask(network, prefix) != network {
            return Err(ConfigError::new(format!(
                "CIDR {network}/{prefix} has bits set after the prefix (did you mean {}/{prefix}?)",
                mask(network, prefix)
            )));
        }
        Ok(Self::normalized(network, prefix))
    }

    /// Parses `a.b.c.d/n`, `x:y::z/n` or a bare address.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let bad = || ConfigError::new(format!("not a CIDR range or IP address: {text:?}"));
        let (addr, prefix) = match text.split_once('/') {
            Some((addr, prefix)) => {
                if prefix.is_empty()
                    || prefix.len() > 3
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(bad());
                }
                let addr: IpAddr = addr.parse().map_err(|_| bad())?;
                (addr, Some(prefix.parse::<u8>().map_err(|_| bad())?))
            }
            None => (text.parse::<IpAddr>().map_err(|_| bad())?, None),
        };
        Self::new(addr, prefix.unwrap_or_else(|| max_prefix(addr)))
    }

    /// The first address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        self.prefix
    }

    /// Whether `addr` is in the range (IPv4-mapped IPv6 addresses are compared as IPv4).
    pub fn contains(&self, addr: IpAddr) -> bool {
        let addr = addr.to_canonical();
        match (self.network, addr) {
            (IpAddr::V4(_), IpAddr::V4(_)) | (IpAddr::V6(_), IpAddr::V6(_)) => {
                mask(addr, self.prefix) == self.network
            }
            _ => false,
        }
    }

    /// `::ffff:a.b.c.d/n` with `n >= 96` is the IPv4 range `a.b.c.d/(n-96)`.
    fn normalized(network: IpAddr, prefix: u8) -> Self {
        if let IpAddr::V6(v6) = network
            && prefix >= 96
            && let Some(v4) = v6.to_ipv4_mapped()
        {
            return Self {
                network: IpAddr::V4(v4),
                prefix: prefix - 96,
            };
        }
        Self { network, prefix }
    }
}

fn max_prefix(addr: IpAddr) -> u8 {
    match addr {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// `addr` with every bit after the first `prefix` cleared.
fn mask(addr: IpAddr, prefix: u8) -> IpAddr {
    match addr {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

impl FromStr for Cidr {
    type Err = ConfigError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({self})")
    }
}

/// Parses every range of `ranges`, naming the first bad one.
pub(crate) fn parse_all<I>(ranges: I) -> Result<Box<[Cidr]>, ConfigError>
where
    I: IntoIterator,
    I::Item: AsRef<str>,
{
    ranges
        .into_iter()
        .map(|r| Cidr::parse(r.as_ref().trim()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_bare_addresses() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert_eq!((c.network(), c.prefix_len()), (ip("10.0.0.0"), 8));
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let c = Cidr::parse("2001:db8::/32").unwrap();
        assert_eq!(c.to_string(), "2001:db8::/32");
        assert_eq!(Cidr::parse("192.0.2.7").unwrap().prefix_len(), 32);
        assert_eq!(Cidr::parse("::1").unwrap().prefix_len(), 128);
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().prefix_len(), 0);
        assert_eq!(Cidr::parse("::/0").unwrap().prefix_len(), 0);
    }

    #[test]
    fn rejects_bad_ranges() {
        for bad in [
            "",
            "/8",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/-1",
            "10.0.0.0/0008",
            "10.0.0.0/8/8",
            "10.0.0.1/8",
            "10.0.0/8",
            "010.0.0.0/8",
            "2001:db8::/129",
            "2001:db8::1/32",
            "[::1]/128",
            "example.com/8",
            " 10.0.0.0/8",
            "10.0.0.0 /8",
        ] {
            assert!(Cidr::parse(bad).is_err(), "{bad:?}");
        }
        let err = Cidr::parse("10.0.0.1/8").unwrap_err().to_string();
        assert!(err.contains("10.0.0.0/8"), "{err}");
    }

    #[test]
    fn contains_v4_and_v6() {
        let c = Cidr::parse("192.0.2.0/24").unwrap();
        assert!(c.contains(ip("192.0.2.0")));
        assert!(c.contains(ip("192.0.2.255")));
        assert!(!c.contains(ip("192.0.3.0")));
        assert!(!c.contains(ip("192.0.1.255")));
        assert!(!c.contains(ip("2001:db8::1")));
        let c = Cidr::parse("2001:db8:cafe::/48").unwrap();
        assert!(c.contains(ip("2001:db8:cafe:ffff::1")));
        assert!(!c.contains(ip("2001:db8:caff::1")));
        assert!(!c.contains(ip("192.0.2.1")));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains(ip("203.0.113.9"))
        );
        assert!(!Cidr::parse("0.0.0.0/0").unwrap().contains(ip("::2")));
        assert!(Cidr::parse("::/0").unwrap().contains(ip("2001:db8::9")));
        let one = Cidr::parse("198.51.100.7/32").unwrap();
        assert!(one.contains(ip("198.51.100.7")));
        assert!(!one.contains(ip("198.51.100.6")));
    }

    #[test]
    fn ipv4_mapped_addresses_match_ipv4_ranges() {
        let c = Cidr::parse("10.0.0.0/8").unwrap();
        assert!(c.contains(ip("::ffff:10.1.2.3")));
        assert!(!c.contains(ip("::ffff:11.1.2.3")));
        let mapped = Cidr::parse("::ffff:10.0.0.0/104").unwrap();
        assert_eq!(mapped, c);
        assert!(mapped.contains(ip("10.200.0.1")));
    }
}
