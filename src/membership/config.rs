//! Membership settings, and the SWIM (`foca`) settings derived from them and the cluster size.
//!
//! SWIM's dissemination count and the longest suspicion grow with log(cluster size) like
//! memberlist's LAN profile; `swim_config` is recomputed as the cluster grows.

use std::num::{NonZeroU8, NonZeroUsize};
use std::time::Duration;

use super::wire::MAX_SWIM_PACKET;

/// SWIM updates each node keeps for dissemination (see foca's `max_updates_backlog`).
const MAX_UPDATES_BACKLOG: usize = 256;

/// Membership settings. Defaults are documented beside each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MembershipConfig {
    /// How often a random member is probed (default 1 s). Also paces gossip: rumors go out
    /// every `probe_period / 5`.
    pub probe_period: Duration,
    /// Records of dead members are removed this long after they were declared down (default
    /// 30 s).
    pub dead_grace: Duration,
    /// How often a random member gets our anti-entropy digest (default 2 s).
    pub anti_entropy_period: Duration,
    /// How often we re-announce to every seed once we have members, so split clusters merge
    /// (default 10 s).
    pub announce_period: Duration,
    /// Ceiling of the doubling retry interval to seeds while we have no members (default 10 s).
    pub seed_backoff_max: Duration,
    /// Largest encoded record we accept or send (default 64 KiB).
    pub max_record_len: usize,
    /// Most members, ourselves included, we keep (default 10,000): the records and SWIM
    /// identities of further keys are refused (counted as `members_full`) until room frees.
    pub max_members: usize,
}

impl Default for MembershipConfig {
    fn default() -> Self {
        Self {
            probe_period: Duration::from_secs(1),
            dead_grace: Duration::from_secs(30),
            anti_entropy_period: Duration::from_secs(2),
            announce_period: Duration::from_secs(10),
            seed_backoff_max: Duration::from_secs(10),
            max_record_len: 64 * 1024,
            max_members: 10_000,
        }
    }
}

impl MembershipConfig {
    /// The gossip tick: rumors, reassembly retries and expiries run at this pace.
    pub(crate) fn tick(&self) -> Duration {
        (self.probe_period / 5).max(Duration::from_millis(1))
    }

    /// How long a direct probe waits for its answer before the indirect round.
    pub(crate) fn probe_rtt(&self) -> Duration {
        self.probe_period.max(Duration::from_millis(3)) * 2 / 5
    }

    /// Shortest suspicion (Lifeguard's `min`): reached once every witness confirmed.
    pub(crate) fn suspicion_min(&self) -> Duration {
        self.probe_period.max(Duration::from_millis(3))
    }

    /// Longest suspicion (Lifeguard's `max`), for a cluster of `n` nodes: memberlist's
    /// `4 × probe period × log10 n`, what a suspicion nobody confirms gets, so that its
    /// refutation reaches everyone first.
    pub(crate) fn suspicion_max(&self, n: usize) -> Duration {
        let log_n = ((n.max(1)) as f64).log10().max(1.0);
        self.suspicion_min().mul_f64(4.0 * log_n)
    }

    /// How many ticks a rumor is pushed, for a cluster of `n` nodes.
    pub(crate) fn rumor_rounds(n: usize) -> u8 {
        let r = (2.0 * ((n + 1) as f64).log10()).ceil() as u8;
        r.clamp(3, 20)
    }

    /// foca's settings for a cluster of `n` nodes (ourselves included).
    pub(crate) fn swim_config(&self, n: usize) -> foca::Config {
        let period = self.probe_period.max(Duration::from_millis(3));
        let max_tx = (4.0 * ((n + 1) as f64).log10()).ceil().clamp(4.0, 40.0) as u8;
        foca::Config {
            probe_period: period,
            probe_rtt: self.probe_rtt(),
            num_indirect_probes: NonZeroUsize::new(3).expect("non-zero"),
            max_transmissions: NonZeroU8::new(max_tx).expect("clamped above zero"),
            // Only a backstop: every member times its suspicions itself, Lifeguard-style
            // (see `suspicion`), and the prober's verdict comes from that timer too.
            suspect_to_down_after: self.suspicion_max(n) * 2,
            // Forgetting a down identity lets stale gossip resurrect it; a rejoining node
            // renews its identity instead, so foca may remember the dead for long.
            remove_down_after: Some(Duration::from_secs(3600).max(self.dead_grace * 4)),
            max_packet_size: NonZeroUsize::new(MAX_SWIM_PACKET).expect("non-zero"),
            notify_down_members: true,
            periodic_announce: Some(foca::PeriodicParams {
                frequency: self.announce_period * 3,
                num_members: NonZeroUsize::new(1).expect("non-zero"),
            }),
            periodic_announce_to_down_members: Some(foca::PeriodicParams {
                frequency: self.announce_period * 2,
                num_members: NonZeroUsize::new(2).expect("non-zero"),
            }),
            periodic_gossip: Some(foca::PeriodicParams {
                frequency: self.tick(),
                num_members: NonZeroUsize::new(3).expect("non-zero"),
            }),
            // News beyond this waits for anti-entropy; without a bound a cluster of
            // thousands forming at once holds an update per member in every backlog.
            max_updates_backlog: NonZeroUsize::new(MAX_UPDATES_BACKLOG),
        }
    }
}
