//! `hookrelay run` flags that protect receivers and the network: which non-public networks
//! receivers may be on, the payload size limit, and when failing endpoints are disabled.

use std::time::Duration;

use clap::Args;
use ipnet::IpNet;

use crate::config;
use crate::guard::{self, AllowList};

/// Protection settings.
#[derive(Debug, Clone, Args)]
pub struct ProtectArgs {
    /// Let receivers be on this non-public network, e.g. 10.0.0.0/8 or fd00::/8 (repeatable;
    /// comma-separated in the environment variable). Without it, hookrelay refuses loopback,
    /// private, link-local (cloud metadata), CGNAT, unique-local and reserved addresses.
    #[arg(
        long = "allow-network",
        env = "HOOKRELAY_ALLOW_NETWORKS",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = guard::parse_network
    )]
    pub allow_networks: Vec<IpNet>,
    /// Let --allow-network open networks wider than a /8 (IPv4) or /7 (IPv6), such as
    /// 0.0.0.0/0 or ::/0: that turns the address guard off.
    #[arg(long, env = "HOOKRELAY_ALLOW_ANY_NETWORK")]
    pub allow_any_network: bool,
    /// Largest request body sent; larger payloads end dead with payload_too_large.
    #[arg(long, env = "HOOKRELAY_MAX_PAYLOAD_BYTES", default_value_t = config::DEFAULT_MAX_PAYLOAD_BYTES,
          allow_negative_numbers = true, value_parser = super::whole::<usize>)]
    pub max_payload_bytes: usize,
    /// Disable an endpoint whose every attempt has failed for this long (0s: never).
    #[arg(long, env = "HOOKRELAY_DISABLE_AFTER", default_value = "5d", value_parser = super::duration)]
    pub disable_after: Duration,
    /// ... once it has also failed at least this many times in a row.
    #[arg(long, env = "HOOKRELAY_DISABLE_AFTER_FAILURES", default_value_t = config::DEFAULT_DISABLE_AFTER_FAILURES,
          allow_negative_numbers = true, value_parser = super::whole::<u32>)]
    pub disable_after_failures: u32,
}

impl ProtectArgs {
    /// The networks opened; a network wider than any private range needs
    /// `--allow-any-network`.
    pub fn allow_list(&self) -> Result<AllowList, guard::GuardError> {
        guard::check_breadth(&self.allow_networks, self.allow_any_network)?;
        Ok(AllowList::new(self.allow_networks.clone()))
    }
}
