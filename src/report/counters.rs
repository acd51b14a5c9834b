//! Every counter group the daemon reports, each counter declared once with
//! [`overlay_proto::counters!`]: its field (also its JSON name), its doc, and the Prometheus
//! metric `/metrics` exports it as. The protocol's own group, [`EndpointSnapshot`], is declared
//! in `overlay-proto`; the data plane's, DNS's, the local surfaces', membership's, conntrack's
//! and the engine's are declared here, where the control API's types live, so that this module
//! depends on no part of the daemon (the data plane, DNS server, control socket, HTTP listener,
//! membership layer and connection table use the atomic structs generated here).
//!
//! Invariant: the groups flattened into [`Counters`] have no field name in common (a test
//! checks it), so `engine.counters` stays one flat object, as it always was.

use overlay_proto::counters::{Family, Metric, Reading, Snapshot};
use overlay_proto::stats::DROPS;
use serde::{Deserialize, Serialize};

pub use overlay_proto::EndpointSnapshot;

const TAP_FRAMES: Family =
    Family::new("weft_tap_frames", "Frames read from and written to the TAP devices", "direction");
const OFFLOAD: Family = Family::new(
    "weft_offload",
    "TCP superframes read from the TAPs and split into segments (tso_*), and received segments \
     coalesced into superframes written to them (gro_*)",
    "kind",
);
const DNS_QUERIES: Family =
    Family::new("weft_dns_queries", "DNS queries answered by this node, by result", "result");
const MEMBERSHIP_MESSAGES: Family =
    Family::new("weft_membership_messages", "Membership messages received and sent", "direction");
const MEMBERSHIP_BYTES: Family =
    Family::new("weft_membership_bytes", "Bytes of membership messages received and sent", "direction");
const MEMBERSHIP_REFUSED: Family =
    Family::new("weft_membership_refused", "Membership messages refused, by reason", "reason");
const LOCAL_REFUSED: Family = Family::new(
    "weft_local_refused",
    "Local requests refused, by reason: control socket connections from users other than root \
     and node.control_group (control_peer), HTTP writes without the right API token (api_token), \
     HTTP requests naming a foreign Host (api_host)",
    "reason",
);
const RELAY_PACKETS: Family = Family::new(
    "weft_relay_datagrams",
    "Datagrams sent through a relay (sent), received through one (received), passed on as a \
     relay (forwarded), and direct-path probes sent while relayed (punches)",
    "kind",
);
const CONNTRACK_REFUSED: Family = Family::new(
    "weft_conntrack_refused",
    "New flows the connection table refused, by reason, per network",
    "reason",
);

overlay_proto::counters! {
    /// Data-plane counters (drops by reason, frames each way).
    pub struct DataplaneStats;
    /// A copy of [`DataplaneStats`].
    pub struct DataplaneSnapshot;
    {
        /// Frames read from TAPs.
        tap_rx => TAP_FRAMES.label("from_tap"),
        /// Frames written to TAPs.
        tap_tx => TAP_FRAMES.label("to_tap"),
        /// ARP requests answered locally.
        arp_suppressed => Metric::new("weft_arp_suppressed", "ARP requests answered by the daemon itself"),
        /// Frames replicated to peers (per copy).
        flooded => Metric::new(
            "weft_flooded_frames",
            "Frame copies replicated to peers (broadcast, unknown unicast)",
        ),
        /// Frames whose inner source is outside the sender's certified subnets, or whose MAC is
        /// bound to another owner.
        drop_spoof => DROPS.label("spoof"),
        /// Frames from a local container (read from our TAP) whose source MAC, IP, ARP sender or
        /// neighbour discovery addresses are not its lease's (or, from the host, not the
        /// gateway's): local anti-spoofing.
        drop_local_spoof => DROPS.label("local_spoof"),
        /// Frames whose source is link-local or unspecified (IPv6 ND, ARP probes): not carried.
        drop_link_local => DROPS.label("link_local"),
        /// Frames for a VNI this node does not serve.
        drop_no_network => DROPS.label("no_network"),
        /// Frames of an ethertype we do not carry.
        drop_ethertype => DROPS.label("ethertype"),
        /// Frames larger than the overlay MTU (answered with ICMP when possible).
        drop_mtu => DROPS.label("mtu"),
        /// Authenticated work (gossip, learning, frames awaiting a session) the engine's session
        /// queue had no room for.
        drop_queue_full => DROPS.label("queue_full"),
        /// Datagrams of a message type the protocol does not have, dropped by the workers.
        drop_unknown_type => DROPS.label("unknown_type"),
        /// Handshake datagrams longer than any handshake message, or cookie replies of the wrong
        /// length, dropped by the workers.
        drop_handshake_size => DROPS.label("handshake_size"),
        /// Handshake datagrams (and unknown-session notices) over their source address's rate,
        /// dropped by the workers.
        drop_handshake_rate => DROPS.label("handshake_rate"),
        /// Handshake datagrams (and unknown-session notices) the engine's pre-auth queue had no
        /// room for.
        drop_preauth_queue_full => DROPS.label("preauth_queue_full"),
        /// Frames with no destination (no peers).
        drop_no_route => DROPS.label("no_route"),
        /// Socket or TAP errors.
        io_errors => Metric::new("weft_io_errors", "Socket and TAP errors"),
        /// Frames a policy rule or default denied.
        drop_policy => DROPS.label("policy"),
        /// IP frames too malformed to judge, on a network with a policy.
        drop_policy_malformed => DROPS.label("policy_malformed"),
        /// New flows refused because the connection table (or the peer's share) was full.
        drop_conntrack_full => DROPS.label("conntrack_full"),
        /// Offloaded frames from a TAP whose virtio-net header or headers could not be honoured.
        drop_offload => DROPS.label("offload_malformed"),
        /// Plain VXLAN frames whose TCP or UDP checksum is wrong (damaged on the way).
        drop_checksum => DROPS.label("checksum"),
        /// TCP superframes read from TAPs (TSO).
        tso_superframes => OFFLOAD.label("tso_superframes"),
        /// Segments made from TSO superframes.
        tso_segments => OFFLOAD.label("tso_segments"),
        /// TSO superframes read pre-segmented into the send arena (no copy in userspace).
        tso_in_place => OFFLOAD.label("tso_in_place"),
        /// Segments sent with their TCP checksum left partial, to peers that accept it (plain
        /// VXLAN: with remote checksum offload).
        tso_partial_csum => OFFLOAD.label("tso_partial_csum"),
        /// Superframes written to TAPs after coalescing received segments (GRO).
        gro_superframes => OFFLOAD.label("gro_superframes"),
        /// Received segments that went into those superframes.
        gro_segments => OFFLOAD.label("gro_segments"),
        /// Received pure TCP ACKs left out because a later ACK of their connection in the same
        /// batch acknowledged more (only that one reached the TAP).
        gro_acks_coalesced => OFFLOAD.label("gro_acks_coalesced"),
        /// Plain VXLAN frames received with remote checksum offload (their checksum partial).
        rco_rx => OFFLOAD.label("rco_rx"),
        /// Datagrams from `100::/64`, the prefix relayed paths are named by internally: forged.
        drop_reserved_source => DROPS.label("reserved_source"),
    }
}

overlay_proto::counters! {
    /// Counters of the engine itself.
    pub struct EngineCounters;
    {
        /// Member records refused (bad signature, certificate, or out of bounds).
        records_refused => DROPS.label("record_refused"),
        /// Member claims of a MAC another member announced first.
        mac_conflicts => DROPS.label("mac_conflict"),
        /// Revocations refused (not signed by the network CA, or malformed).
        revocations_refused => DROPS.label("revocation_refused"),
        /// Member keys the CA revoked, as this node knows them (a gauge in the flat counters).
        members_revoked => Metric::new("weft_members_revoked", "Member keys revoked by the CA, as this node knows them"),
    }
}

overlay_proto::counters! {
    /// Counters of relayed paths (see `engine::relay`).
    pub struct RelayCounters;
    {
        /// Datagrams we sent through a relay.
        relay_sent => RELAY_PACKETS.label("sent"),
        /// Datagrams that reached us through a relay.
        relay_received => RELAY_PACKETS.label("received"),
        /// Datagrams passed on as a relay.
        relay_forwarded => RELAY_PACKETS.label("forwarded"),
        /// Bytes passed on as a relay.
        relay_forwarded_bytes => Metric::new("weft_relay_forwarded_bytes", "Bytes of datagrams passed on as a relay"),
        /// Keepalives sent straight to a relayed peer's direct candidates.
        relay_punches => RELAY_PACKETS.label("punches"),
        /// Relay requests or relayed datagrams refused (relaying off, not between members,
        /// a chain, a relay not in `relay.groups`, a sender the relay misnamed).
        relay_refused => DROPS.label("relay_refused"),
        /// Datagrams not passed on because of `relay.max_mbit`.
        relay_capped => DROPS.label("relay_capped"),
        /// Peers reached through a relay now (a gauge in the flat counters).
        peers_relayed => Metric::new("weft_peers_relayed", "Peers this node reaches through a relay now"),
    }
}

overlay_proto::counters! {
    /// Counters of the replies the DNS server sent (and of the messages it could not read).
    pub struct DnsStats;
    /// A copy of [`DnsStats`]: `weft status --json`'s `dns`.
    pub struct DnsSnapshot;
    {
        /// Names in our domain answered with records.
        answered => DNS_QUERIES.label("answered"),
        /// Names in our domain that exist without records of the asked type.
        nodata => DNS_QUERIES.label("nodata"),
        /// Names in our domain that do not exist.
        nxdomain => DNS_QUERIES.label("nxdomain"),
        /// Names outside our domain an upstream answered.
        forwarded => DNS_QUERIES.label("forwarded"),
        /// Names outside our domain no upstream answered (SERVFAIL).
        forward_failed => DNS_QUERIES.label("forward_failed"),
        /// Queries refused (outside our domain without upstreams, unsupported).
        refused => DNS_QUERIES.label("refused"),
        /// Messages undecodable, cut short, or answered FORMERR.
        malformed => DNS_QUERIES.label("malformed"),
    }
}

overlay_proto::counters! {
    /// Counters of the local surfaces (control socket, HTTP listener): what they refused.
    pub struct LocalStats;
    /// A copy of [`LocalStats`]: `weft status --json`'s `local`.
    pub struct LocalSnapshot;
    {
        /// Control socket connections refused for their peer's credentials.
        control_refused => LOCAL_REFUSED.label("control_peer"),
        /// HTTP writes refused: no token configured, or none or a wrong one presented.
        api_token_refused => LOCAL_REFUSED.label("api_token"),
        /// HTTP requests refused for a Host that is not an IP address, localhost or allowed.
        api_host_refused => LOCAL_REFUSED.label("api_host"),
    }
}

overlay_proto::counters! {
    /// Counters of the membership layer, for status output and tests.
    pub struct MembershipStats;
    {
        /// Messages given to `handle_message`.
        messages_in => MEMBERSHIP_MESSAGES.label("in"),
        /// Their bytes.
        bytes_in => MEMBERSHIP_BYTES.label("in"),
        /// Messages returned by `poll_transmit`.
        messages_out => MEMBERSHIP_MESSAGES.label("out"),
        /// Their bytes.
        bytes_out => MEMBERSHIP_BYTES.label("out"),
        /// Messages refused as undecodable or out of bounds.
        malformed => MEMBERSHIP_REFUSED.label("malformed"),
        /// SWIM packets whose source was not the authenticated sender.
        spoofed => MEMBERSHIP_REFUSED.label("spoofed"),
        /// SWIM packets foca refused.
        swim_errors => MEMBERSHIP_REFUSED.label("swim_error"),
        /// Records not signed by the node they describe, or whose certificate does not vouch
        /// for them.
        records_forged => MEMBERSHIP_REFUSED.label("forged"),
        /// Records and identities of new members refused because `max_members` were known.
        members_full => MEMBERSHIP_REFUSED.label("members_full"),
        /// Newer records accepted.
        records_accepted => Metric::new("weft_membership_records_accepted", "Newer member records accepted"),
        /// Chunks of records we already held at that version or newer.
        chunks_stale => Metric::new(
            "weft_membership_chunks_stale",
            "Record chunks received for a version this node already held",
        ),
        /// Partially received records given up on.
        reassemblies_dropped => Metric::new(
            "weft_membership_reassemblies_dropped",
            "Partially received member records given up on",
        ),
        /// Pulls for records we do not hold.
        pulls_unserved => Metric::new(
            "weft_membership_pulls_unserved",
            "Record pulls for records this node does not hold",
        ),
        /// Revocation entries dropped unchecked: their sender handed us more new ones than its
        /// share, or the engine's queue was full.
        revocations_throttled => Metric::new(
            "weft_membership_revocations_throttled",
            "Revocation entries dropped unchecked because their sender sent more than its share",
        ),
        /// Pulls left unanswered because their sender had used up its pull credit.
        pulls_throttled => Metric::new(
            "weft_membership_pulls_throttled",
            "Record pulls left unanswered because their sender pulled more than its share",
        ),
        /// Outgoing messages dropped because the queue was full.
        transmit_dropped => Metric::new(
            "weft_membership_transmit_dropped",
            "Outgoing membership messages dropped because the queue was full",
        ),
        /// Times our own record was larger than `max_record_len` (others will refuse it).
        own_record_too_large => Metric::new(
            "weft_membership_own_record_too_large",
            "Times this node's own record exceeded max_record_len (members refuse it)",
        ),
        /// "You are down" messages we asked their sender to confirm.
        turn_undead_challenged => Metric::new(
            "weft_membership_undead_challenged",
            "\"You are down\" messages this node asked their sender to confirm",
        ),
        /// Suspicions learned by gossip that nobody resolved in time, declared down here.
        suspicions_expired => Metric::new(
            "weft_membership_suspicions_expired",
            "Suspicions learned by gossip that nobody resolved in time, declared down here",
        ),
        /// Messages not sent to a SWIM identity nobody vouched for (no verified record, no
        /// authenticated message, not a seed): no handshakes to invented members.
        unvouched_sends_dropped => Metric::new(
            "weft_membership_unvouched_sends_dropped",
            "Membership messages not sent to a SWIM identity without a verified record or session",
        ),
        /// SWIM identities ignored because too many were already waiting to be vouched for.
        identities_unvouched => Metric::new(
            "weft_membership_identities_unvouched",
            "SWIM identities ignored because too many were waiting for a verified record or session",
        ),
        /// Record versions refused for claiming a time beyond our clock plus the allowed skew.
        versions_refused => Metric::new(
            "weft_membership_versions_refused",
            "Record versions refused for claiming a time beyond this node's clock plus the allowed skew",
        ),
        /// Failed probes and checks of a member while our session with it was not up (they
        /// waited for a handshake, not for the member): no evidence, not counted against it.
        probes_inconclusive => Metric::new(
            "weft_membership_probes_inconclusive",
            "Failed probes and checks of a member that waited for a handshake with it, not counted as evidence",
        ),
    }
}

overlay_proto::counters! {
    /// Counters of one network's connection table since creation (atomics).
    pub struct ConntrackCounters;
    /// A copy of [`ConntrackCounters`], per network in `weft policy show --json`; exported with
    /// a `network` label.
    pub struct ConntrackStats;
    {
        /// Flows inserted.
        inserts => Metric::new("weft_conntrack_inserts", "Flows entered into the connection table, per network"),
        /// Inserts refused because the whole table was full.
        table_full => CONNTRACK_REFUSED.label("table_full"),
        /// Inserts refused because the peer held its share.
        peer_full => CONNTRACK_REFUSED.label("peer_full"),
        /// Entries removed because they expired.
        expired => Metric::new("weft_conntrack_expired", "Tracked connections aged out, per network"),
    }
}

/// `engine.counters` of a status: every protocol, data-plane and engine counter, as one flat
/// object keyed by counter name.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// The protocol endpoint's counters.
    #[serde(flatten)]
    pub proto: EndpointSnapshot,
    /// The data plane's counters.
    #[serde(flatten)]
    pub dataplane: DataplaneSnapshot,
    /// The engine's own counters.
    #[serde(flatten)]
    pub engine: EngineCounters,
    /// Relayed paths.
    #[serde(flatten, default)]
    pub relay: RelayCounters,
}

impl Counters {
    /// Every counter of every group, in declaration order.
    pub fn readings(&self) -> impl Iterator<Item = Reading> + 'static {
        self.proto
            .readings()
            .chain(self.dataplane.readings())
            .chain(self.engine.readings())
            .chain(self.relay.readings())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use overlay_proto::counters::Counter;
    use std::collections::BTreeSet;

    fn fields<S: Snapshot>() -> Vec<&'static str> {
        S::COUNTERS.iter().map(|c| c.field).collect()
    }

    #[test]
    fn the_flat_counters_object_has_no_name_twice() {
        let all: Vec<&str> = [
            fields::<EndpointSnapshot>(),
            fields::<DataplaneSnapshot>(),
            fields::<EngineCounters>(),
            fields::<RelayCounters>(),
        ]
        .concat();
        let unique: BTreeSet<&str> = all.iter().copied().collect();
        assert_eq!(unique.len(), all.len(), "{all:?}");
        let c = Counters {
            proto: EndpointSnapshot::from_fn(|_| 1),
            dataplane: DataplaneSnapshot::from_fn(|_| 2),
            engine: EngineCounters::from_fn(|_| 3),
            relay: RelayCounters::from_fn(|_| 4),
        };
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Counters>(&json).unwrap(), c, "{json}");
        assert_eq!(c.readings().count(), all.len());
    }

    /// Counters sharing a metric family share its help text and differ in their label.
    #[test]
    fn a_family_is_one_help_text_and_distinct_labels() {
        let groups: [&[Counter]; 8] = [
            EndpointSnapshot::COUNTERS,
            DataplaneSnapshot::COUNTERS,
            EngineCounters::COUNTERS,
            RelayCounters::COUNTERS,
            DnsSnapshot::COUNTERS,
            LocalSnapshot::COUNTERS,
            MembershipStats::COUNTERS,
            ConntrackStats::COUNTERS,
        ];
        let all: Vec<&Counter> = groups.iter().flat_map(|g| g.iter()).collect();
        for a in &all {
            assert!(!a.doc.is_empty() && !a.metric.help.is_empty(), "{a:?}");
            assert!(a.metric.name.starts_with("weft_") && !a.metric.name.ends_with("_total"), "{a:?}");
            for b in &all {
                if std::ptr::eq(*a, *b) || a.metric.name != b.metric.name {
                    continue;
                }
                assert_eq!(a.metric.help, b.metric.help, "{a:?} / {b:?}");
                assert!(a.metric.label.is_some() && a.metric.label != b.metric.label, "{a:?} / {b:?}");
                assert_eq!(a.metric.label.map(|l| l.0), b.metric.label.map(|l| l.0), "{a:?} / {b:?}");
            }
        }
    }

    /// The names `weft status --json` has always shown; renaming one breaks scripts.
    #[test]
    fn json_names_are_the_published_ones() {
        assert_eq!(
            fields::<DataplaneSnapshot>(),
            [
                "tap_rx",
                "tap_tx",
                "arp_suppressed",
                "flooded",
                "drop_spoof",
                "drop_local_spoof",
                "drop_link_local",
                "drop_no_network",
                "drop_ethertype",
                "drop_mtu",
                "drop_queue_full",
                "drop_unknown_type",
                "drop_handshake_size",
                "drop_handshake_rate",
                "drop_preauth_queue_full",
                "drop_no_route",
                "io_errors",
                "drop_policy",
                "drop_policy_malformed",
                "drop_conntrack_full",
                "drop_offload",
                "drop_checksum",
                "tso_superframes",
                "tso_segments",
                "tso_in_place",
                "tso_partial_csum",
                "gro_superframes",
                "gro_segments",
                "gro_acks_coalesced",
                "rco_rx",
                "drop_reserved_source"
            ]
        );
        assert_eq!(
            fields::<EngineCounters>(),
            ["records_refused", "mac_conflicts", "revocations_refused", "members_revoked"]
        );
        assert_eq!(
            fields::<RelayCounters>(),
            [
                "relay_sent",
                "relay_received",
                "relay_forwarded",
                "relay_forwarded_bytes",
                "relay_punches",
                "relay_refused",
                "relay_capped",
                "peers_relayed"
            ]
        );
        assert_eq!(
            fields::<DnsSnapshot>(),
            ["answered", "nodata", "nxdomain", "forwarded", "forward_failed", "refused", "malformed"]
        );
        assert_eq!(
            fields::<MembershipStats>(),
            [
                "messages_in",
                "bytes_in",
                "messages_out",
                "bytes_out",
                "malformed",
                "spoofed",
                "swim_errors",
                "records_forged",
                "members_full",
                "records_accepted",
                "chunks_stale",
                "reassemblies_dropped",
                "pulls_unserved",
                "revocations_throttled",
                "pulls_throttled",
                "transmit_dropped",
                "own_record_too_large",
                "turn_undead_challenged",
                "suspicions_expired",
                "unvouched_sends_dropped",
                "identities_unvouched",
                "versions_refused",
                "probes_inconclusive"
            ]
        );
        assert_eq!(fields::<ConntrackStats>(), ["inserts", "table_full", "peer_full", "expired"]);
        assert_eq!(fields::<LocalSnapshot>(), ["control_refused", "api_token_refused", "api_host_refused"]);
    }
}
