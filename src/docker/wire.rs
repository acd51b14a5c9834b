//! libnetwork's remote network driver and remote IPAM driver protocols: the JSON bodies
//! dockerd posts to `/NetworkDriver.*` and `/IpamDriver.*`, as far as weft reads them. Unknown
//! fields are ignored (newer dockerd versions add some); missing ones take their defaults, and
//! every value is checked by the handler that uses it.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `CreateNetwork`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateNetwork {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "Options")]
    pub options: BTreeMap<String, serde_json::Value>,
    #[serde(rename = "IPv4Data")]
    pub ipv4_data: Option<Vec<IpamData>>,
    #[serde(rename = "IPv6Data")]
    pub ipv6_data: Option<Vec<IpamData>>,
}

/// One pool of a network as dockerd's IPAM handed it out.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct IpamData {
    #[serde(rename = "AddressSpace")]
    pub address_space: String,
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "Gateway")]
    pub gateway: String,
}

/// `DeleteNetwork`, `EndpointOperInfo`, `DeleteEndpoint`, `Leave`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct EndpointRef {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
}

/// `CreateEndpoint`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct CreateEndpoint {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "Interface")]
    pub interface: Option<Interface>,
}

/// An endpoint's interface: what dockerd supplies in `CreateEndpoint`, and what the driver
/// fills in of what it did not.
#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(default)]
pub struct Interface {
    #[serde(rename = "Address", skip_serializing_if = "String::is_empty")]
    pub address: String,
    #[serde(rename = "AddressIPv6", skip_serializing_if = "String::is_empty")]
    pub address_ipv6: String,
    #[serde(rename = "MacAddress", skip_serializing_if = "String::is_empty")]
    pub mac_address: String,
}

/// `Join`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct Join {
    #[serde(rename = "NetworkID")]
    pub network_id: String,
    #[serde(rename = "EndpointID")]
    pub endpoint_id: String,
    #[serde(rename = "SandboxKey")]
    pub sandbox_key: String,
}

/// `IpamDriver.RequestPool`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RequestPool {
    #[serde(rename = "Pool")]
    pub pool: String,
    #[serde(rename = "SubPool")]
    pub sub_pool: String,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
    #[serde(rename = "V6")]
    pub v6: bool,
}

/// `IpamDriver.ReleasePool`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct ReleasePool {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
}

/// `IpamDriver.RequestAddress` and `ReleaseAddress`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AddressRequest {
    #[serde(rename = "PoolID")]
    pub pool_id: String,
    #[serde(rename = "Address")]
    pub address: String,
    #[serde(rename = "Options")]
    pub options: Option<BTreeMap<String, String>>,
}

/// What `RequestAddress`'s options say when dockerd asks for the network's gateway.
pub const GATEWAY_REQUEST: &str = "com.docker.network.gateway";

/// The option key of `RequestAddress` that says what the address is for.
pub const REQUEST_ADDRESS_TYPE: &str = "RequestAddressType";

/// Where `docker network create --opt K=V` arrives in `CreateNetwork`'s options.
pub const GENERIC_OPTIONS: &str = "com.docker.network.generic";

/// The address space weft's IPAM driver hands out pools in.
pub const ADDRESS_SPACE: &str = "weft";

/// The option naming the weft network: `--opt weft.network=NAME` (and `--ipam-opt`).
pub const NETWORK_OPTION: &str = "weft.network";
