//! `hookrelay run` flags that protect receivers and the network: which non-public networks
//! receivers may be on, the payload size limit, and when failing endpoints are disabled.

use std::time::Duration;

use clap::Args;
use ipnet::IpNet;

use crate::config::setting as s;
use crate::pipeline::guard::{self, AllowList};

/// Protection settings.
#[derive(Debug, Clone, Args)]
pub struct ProtectArgs {
    /// Let receivers be on this non-public network, e.g. 10.0.0.0/8 or fd00::/8 (repeatable;
    /// comma-separated in the environment variable). Without it, hookrelay refuses loopback,
    /// private, link-local (cloud metadata), CGNAT, unique-local and reserved addresses.
    #[arg(
        long = s::ALLOW_NETWORKS.flag,
        env = s::ALLOW_NETWORKS.env,
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = guard::parse_network
    )]
    pub allow_networks: Vec<IpNet>,
    /// Let --allow-network open networks wider than a /8 (IPv4) or /7 (IPv6), such as
    /// 0.0.0.0/0 or ::/0: that turns the address guard off.
    #[arg(long = s::ALLOW_ANY_NETWORK.flag, env = s::ALLOW_ANY_NETWORK.env)]
    pub allow_any_network: bool,
    /// Largest request body sent; larger payloads end dead with payload_too_large.
    #[arg(long = s::MAX_PAYLOAD_BYTES.flag, env = s::MAX_PAYLOAD_BYTES.env,
          default_value = s::MAX_PAYLOAD_BYTES.default_text(), allow_negative_numbers = true,
          value_parser = super::whole::<usize>)]
    pub max_payload_bytes: usize,
    /// Disable an endpoint whose every attempt has failed for this long (0s: never).
    #[arg(long = s::DISABLE_AFTER.flag, env = s::DISABLE_AFTER.env, default_value = s::DISABLE_AFTER.default_text(),
          value_parser = super::duration)]
    pub disable_after: Duration,
    /// ... once it has also failed at least this many times in a row.
    #[arg(long = s::DISABLE_AFTER_FAILURES.flag, env = s::DISABLE_AFTER_FAILURES.env,
          default_value = s::DISABLE_AFTER_FAILURES.default_text(), allow_negative_numbers = true,
          value_parser = super::whole::<u32>)]
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
