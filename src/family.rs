//! Values held at most once per IP family: a dual-stack network's subnets, its gateways, a
//! container's addresses. Invariant: the IPv4 slot holds only IPv4 values and the IPv6 slot
//! only IPv6 ones, so "one of each family" is a property of the type, not of its users.

use ipnet::IpNet;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// Something of one IP family.
pub trait Family: Copy {
    /// Whether it is IPv6.
    fn is_v6(&self) -> bool;
}

impl Family for IpAddr {
    fn is_v6(&self) -> bool {
        self.is_ipv6()
    }
}

impl Family for IpNet {
    fn is_v6(&self) -> bool {
        matches!(self, IpNet::V6(_))
    }
}

/// At most one value per IP family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PerFamily<T> {
    v4: Option<T>,
    v6: Option<T>,
}

impl<T> Default for PerFamily<T> {
    fn default() -> Self {
        Self { v4: None, v6: None }
    }
}

/// A network's subnets (or a node's pools in it): at most one per family.
pub type Subnets = PerFamily<IpNet>;
/// Addresses, at most one per family (a network's gateways, a container's addresses).
pub type Addrs = PerFamily<IpAddr>;

impl<T: Family> PerFamily<T> {
    /// Just `t`.
    pub fn one(t: T) -> Self {
        let mut p = Self { v4: None, v6: None };
        p.set(t);
        p
    }

    /// Puts `t` in its family's slot; returns what was there.
    pub fn set(&mut self, t: T) -> Option<T> {
        if t.is_v6() {
            self.v6.replace(t)
        } else {
            self.v4.replace(t)
        }
    }

    /// The values of `items`, or the first one whose family was already there.
    pub fn collect(items: impl IntoIterator<Item = T>) -> Result<Self, T> {
        let mut p = Self { v4: None, v6: None };
        for t in items {
            if p.of(t.is_v6()).is_some() {
                return Err(t);
            }
            p.set(t);
        }
        Ok(p)
    }

    /// The value of one family (`v6`: IPv6, else IPv4).
    pub fn of(&self, v6: bool) -> Option<T> {
        if v6 {
            self.v6
        } else {
            self.v4
        }
    }

    /// The value of `ip`'s family.
    pub fn for_ip(&self, ip: &IpAddr) -> Option<T> {
        self.of(ip.is_ipv6())
    }

    /// The IPv4 value.
    pub fn v4(&self) -> Option<T> {
        self.v4
    }

    /// The IPv6 value.
    pub fn v6(&self) -> Option<T> {
        self.v6
    }

    /// The values, IPv4 first.
    pub fn iter(&self) -> impl Iterator<Item = T> + '_ {
        self.v4.iter().chain(self.v6.iter()).copied()
    }

    /// The first value (IPv4 when there is one): what single-address surfaces show.
    pub fn first(&self) -> Option<T> {
        self.v4.or(self.v6)
    }

    /// Whether there is no value.
    pub fn is_empty(&self) -> bool {
        self.v4.is_none() && self.v6.is_none()
    }

    /// Whether both families are there.
    pub fn is_dual(&self) -> bool {
        self.v4.is_some() && self.v6.is_some()
    }
}

impl Subnets {
    /// Whether `ip` lies in one of the subnets.
    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.for_ip(ip).is_some_and(|n| n.contains(ip))
    }
}

impl Addrs {
    /// Whether `ip` is one of the addresses.
    pub fn has(&self, ip: &IpAddr) -> bool {
        self.for_ip(ip) == Some(*ip)
    }
}

impl<T: Family + fmt::Display> fmt::Display for PerFamily<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, t) in self.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{t}")?;
        }
        Ok(())
    }
}

/// Why a list of values per family did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// An item is not a value of the type.
    #[error("{0:?} does not parse")]
    Item(String),
    /// Two items of one family.
    #[error("two IPv{0} values; give at most one per family")]
    SameFamily(u8),
    /// Nothing given.
    #[error("empty")]
    Empty,
}

impl<T: Family + FromStr> FromStr for PerFamily<T> {
    type Err = ParseError;

    /// One value, or several separated by commas (at most one per family).
    fn from_str(s: &str) -> Result<Self, ParseError> {
        let items = s
            .split(',')
            .map(|p| p.trim().parse::<T>().map_err(|_| ParseError::Item(p.trim().to_owned())))
            .collect::<Result<Vec<T>, _>>()?;
        let p = Self::collect(items).map_err(|t| ParseError::SameFamily(if t.is_v6() { 6 } else { 4 }))?;
        if p.is_empty() {
            return Err(ParseError::Empty);
        }
        Ok(p)
    }
}

impl<T: Family + serde::Serialize> serde::Serialize for PerFamily<T> {
    /// A list, IPv4 first.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'de, T: Family + serde::Deserialize<'de>> serde::Deserialize<'de> for PerFamily<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let items = Vec::<T>::deserialize(d)?;
        Self::collect(items).map_err(|_| serde::de::Error::custom("two values of one IP family"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_value_per_family_and_lookups_by_family() {
        let s: Subnets = "10.42.0.0/16, fd42::/48".parse().unwrap();
        assert!(s.is_dual());
        assert!(s.contains(&"10.42.9.9".parse().unwrap()));
        assert!(s.contains(&"fd42::9".parse().unwrap()));
        assert!(!s.contains(&"10.43.0.1".parse().unwrap()));
        assert!(!s.contains(&"fd43::1".parse().unwrap()));
        assert_eq!(s.to_string(), "10.42.0.0/16, fd42::/48");
        assert_eq!("fd42::/48,10.42.0.0/16".parse::<Subnets>().unwrap(), s, "order does not matter");
        assert_eq!("10.42.0.0/16,10.43.0.0/16".parse::<Subnets>(), Err(ParseError::SameFamily(4)));
        assert!("10.42.0.0/16,x".parse::<Subnets>().is_err());
        let g: Addrs = "10.42.1.1".parse().unwrap();
        assert!(g.has(&"10.42.1.1".parse().unwrap()) && !g.is_dual());
        assert_eq!(g.v6(), None);
        let json = serde_json::to_string(&s).unwrap();
        assert_eq!(json, r#"["10.42.0.0/16","fd42::/48"]"#);
        assert_eq!(serde_json::from_str::<Subnets>(&json).unwrap(), s);
    }
}
