//! Address leases for attached containers, one table per network, persisted as JSON under the
//! state directory (written to a temporary file and renamed, so a crash never leaves a torn
//! file). An address is never handed out twice while its lease exists, across restarts too.

use anyhow::{bail, Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::family::{Addrs, Subnets};

/// One container's lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lease {
    /// Container name.
    pub name: String,
    /// The container's network namespace (name or path).
    pub netns: String,
    /// Host end of the veth pair.
    pub host_ifname: String,
    /// Interface name inside the container.
    pub ifname: String,
    /// Container MAC (written `aa:bb:…` in the file).
    #[serde(with = "mac_text")]
    pub mac: [u8; 6],
    /// Labels given at attach (policy selectors; `weft.service` declares services).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The runtime's container id (`CNI_CONTAINERID`) when the CNI plugin attached it: what
    /// its DEL finds the lease by (pod names repeat across Kubernetes namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<String>,
}

/// A state file as JSON, or `T::default()` when there is none yet.
pub fn load_json<T: serde::de::DeserializeOwned + Default>(path: &Path) -> Result<T> {
    match std::fs::read_to_string(path) {
        Ok(t) => serde_json::from_str(&t).with_context(|| format!("{} is corrupt", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// Writes a state file atomically: a temporary file renamed over it.
pub fn save_json<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))
}

/// Leases of every network, keyed by network name then address.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Leases {
    #[serde(default)]
    networks: BTreeMap<String, BTreeMap<IpAddr, Lease>>,
    #[serde(skip)]
    path: PathBuf,
}

impl Leases {
    /// Loads `state_dir/leases.json`, or starts empty.
    pub fn load(state_dir: &Path) -> Result<Self> {
        let path = state_dir.join("leases.json");
        let mut l: Leases = load_json(&path)?;
        l.path = path;
        Ok(l)
    }

    /// Writes the leases atomically.
    pub fn save(&self) -> Result<()> {
        save_json(&self.path, self)
    }

    /// The leases of one network.
    pub fn of(&self, network: &str) -> impl Iterator<Item = (&IpAddr, &Lease)> {
        self.networks.get(network).into_iter().flatten()
    }

    /// Finds a lease by container name.
    pub fn find(&self, network: &str, name: &str) -> Option<(IpAddr, &Lease)> {
        self.of(network).find(|(_, l)| l.name == name).map(|(ip, l)| (*ip, l))
    }

    /// Finds a lease by the runtime's container id.
    pub fn find_container_id(&self, network: &str, id: &str) -> Option<(IpAddr, &Lease)> {
        self.of(network).find(|(_, l)| l.container_id.as_deref() == Some(id)).map(|(ip, l)| (*ip, l))
    }

    /// Picks `wanted` or the lowest free host address of `pool` (skipping the network
    /// address — for IPv6 the subnet-router anycast address —, the gateway and the broadcast
    /// address).
    pub fn pick(
        &self,
        network: &str,
        pool: IpNet,
        gateway: IpAddr,
        wanted: Option<IpAddr>,
    ) -> Result<IpAddr> {
        let used = self.networks.get(network);
        let taken = |ip: &IpAddr| *ip == gateway || used.is_some_and(|u| u.contains_key(ip));
        if let Some(ip) = wanted {
            if !pool.contains(&ip) || ip == pool.network() || ip == pool.broadcast() {
                bail!("{ip} is not a host address of this node's subnet {pool}");
            }
            if taken(&ip) {
                bail!("{ip} is already in use");
            }
            return Ok(ip);
        }
        pool.hosts()
            .filter(|ip| *ip != pool.network())
            .find(|ip| !taken(ip))
            .with_context(|| format!("subnet {pool} has no free address"))
    }

    /// One address per family of `pools` (a dual-stack network's container gets both):
    /// `wanted` for its family, the lowest free one for the other (see [`Leases::pick`]).
    pub fn pick_per_family(
        &self,
        network: &str,
        pools: Subnets,
        gateways: Addrs,
        wanted: Option<IpAddr>,
    ) -> Result<Addrs> {
        if let Some(ip) = wanted.filter(|ip| pools.for_ip(ip).is_none()) {
            bail!("{ip} is not of a family of this network (subnets {pools})");
        }
        let mut out = Addrs::default();
        for pool in pools.iter() {
            let gateway = gateways.for_ip(&pool.addr()).context("no gateway for a subnet")?;
            let wanted = wanted.filter(|ip| ip.is_ipv6() == pool.addr().is_ipv6());
            out.set(self.pick(network, pool, gateway, wanted)?);
        }
        Ok(out)
    }

    /// Every lease (one per address: a dual-stack container has two) of the container named
    /// `name`.
    pub fn find_all(&self, network: &str, name: &str) -> Vec<(IpAddr, Lease)> {
        self.of(network).filter(|(_, l)| l.name == name).map(|(ip, l)| (*ip, l.clone())).collect()
    }

    /// Records a lease.
    pub fn insert(&mut self, network: &str, ip: IpAddr, lease: Lease) {
        self.networks.entry(network.to_owned()).or_default().insert(ip, lease);
    }

    /// Removes a lease.
    pub fn remove(&mut self, network: &str, ip: &IpAddr) -> Option<Lease> {
        self.networks.get_mut(network)?.remove(ip)
    }

    /// Every lease of every network.
    pub fn all(&self) -> Vec<(String, IpAddr, Lease)> {
        self.networks
            .iter()
            .flat_map(|(n, m)| m.iter().map(move |(ip, l)| (n.clone(), *ip, l.clone())))
            .collect()
    }
}

/// Formats a MAC.
pub fn mac_string(m: &[u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// Parses a MAC.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let v: Vec<u8> = s.split(':').map(|p| u8::from_str_radix(p, 16).ok()).collect::<Option<_>>()?;
    v.try_into().ok()
}

/// A MAC as `aa:bb:cc:dd:ee:ff` text in the leases file; a malformed one makes the file
/// corrupt (an error at start naming it) rather than a lease silently ignored.
mod mac_text {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(mac: &[u8; 6], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::mac_string(mac))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 6], D::Error> {
        let text = String::deserialize(d)?;
        super::parse_mac(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not a MAC address")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(n: &str) -> Lease {
        Lease {
            name: n.into(),
            netns: n.into(),
            host_ifname: "wv0".into(),
            ifname: "eth0".into(),
            mac: [2, 0, 0, 0, 0, 1],
            labels: Default::default(),
            container_id: None,
        }
    }

    #[test]
    fn picks_free_addresses_and_persists() {
        let dir = std::env::temp_dir().join(format!("weft-ipam-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pool: IpNet = "10.42.1.0/29".parse().unwrap();
        let gw: IpAddr = "10.42.1.1".parse().unwrap();
        let mut l = Leases::load(&dir).unwrap();
        let a = l.pick("n", pool, gw, None).unwrap();
        assert_eq!(a, "10.42.1.2".parse::<IpAddr>().unwrap());
        l.insert("n", a, lease("a"));
        assert!(l.pick("n", pool, gw, Some(a)).is_err());
        assert!(l.pick("n", pool, gw, Some(gw)).is_err());
        assert!(l.pick("n", pool, gw, Some("10.42.1.7".parse().unwrap())).is_err(), "broadcast");
        assert!(l.pick("n", pool, gw, Some("10.42.2.7".parse().unwrap())).is_err(), "outside");
        l.save().unwrap();
        let l2 = Leases::load(&dir).unwrap();
        assert_eq!(l2.find("n", "a").unwrap().0, a);
        let mut l3 = l2;
        for name in ["b", "c", "d", "e"] {
            let ip = l3.pick("n", pool, gw, None).unwrap();
            l3.insert("n", ip, lease(name));
        }
        assert!(l3.pick("n", pool, gw, None).is_err(), "exhausted");
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(parse_mac(&mac_string(&[1, 2, 3, 4, 5, 0xab])), Some([1, 2, 3, 4, 5, 0xab]));
    }

    #[test]
    fn dual_stack_picks_one_address_per_family_never_the_ipv6_all_zero_one() {
        let pools: Subnets = "10.42.1.0/24, fd42:0:1::/64".parse().unwrap();
        let gateways: Addrs = "10.42.1.1, fd42:0:1::1".parse().unwrap();
        let mut l = Leases::default();
        let a = l.pick_per_family("n", pools, gateways, None).unwrap();
        assert_eq!(a, "10.42.1.2, fd42:0:1::2".parse().unwrap());
        for ip in a.iter() {
            l.insert("n", ip, lease("a"));
        }
        let b = l.pick_per_family("n", pools, gateways, Some("fd42:0:1::9".parse().unwrap())).unwrap();
        assert_eq!(b, "10.42.1.3, fd42:0:1::9".parse().unwrap(), "wanted for its family only");
        assert!(l.pick_per_family("n", pools, gateways, Some("fd42:0:1::".parse().unwrap())).is_err());
        assert_eq!(l.find_all("n", "a").len(), 2);
        let v4only: Subnets = "10.42.1.0/24".parse().unwrap();
        let e = l.pick_per_family("n", v4only, gateways, Some("fd42:0:1::9".parse().unwrap())).unwrap_err();
        assert!(e.to_string().contains("not of a family"), "{e}");
        // An IPv6-only pool whose gateway is ::1 starts at ::2, not at the all-zero address.
        let v6: IpNet = "fd42:0:2::/64".parse().unwrap();
        let ip = l.pick("m", v6, "fd42:0:2::1".parse().unwrap(), None).unwrap();
        assert_eq!(ip, "fd42:0:2::2".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn lease_macs_are_text_in_the_file_and_a_malformed_one_is_an_error() {
        let text = serde_json::to_string(&lease("a")).unwrap();
        assert!(text.contains(r#""mac":"02:00:00:00:00:01""#), "{text}");
        let back: Lease = serde_json::from_str(&text).unwrap();
        assert_eq!(back.mac, [2, 0, 0, 0, 0, 1]);
        let bad = text.replace("02:00:00:00:00:01", "02:00:zz");
        let e = serde_json::from_str::<Lease>(&bad).unwrap_err().to_string();
        assert!(e.contains("is not a MAC address"), "{e}");
    }
}
