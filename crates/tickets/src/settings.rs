//! What only the tickets service reads: the live stream's limits, the
//! sellers' rate limit, how long the public list may be answered from
//! memory, and the ticket vault's keys (flattened into
//! `ticketing`'s command line).

use std::time::Duration;

use clap::Args;

use common::config::{Secret, milliseconds};

use crate::vault::Vault;

/// How long the all-in-one keeps an answer of the public list at most
/// (its own changes end it at once, so this bounds only a change written by
/// another process, a replayed dead letter).
const ALL_IN_ONE_LIST_CACHE: Duration = Duration::from_millis(1000);

/// The tickets service's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(id = "tickets-settings")]
#[command(next_help_heading = "Tickets")]
pub struct Settings {
    /// Live ticket streams (`GET /api/tickets/events`) one client address
    /// may hold open at once per process; past it, 429 (0: no limit).
    #[arg(global = true, long, env = "LIVE_STREAMS_PER_ADDRESS", default_value_t = 6)]
    pub live_streams_per_address: u32,

    /// Live ticket streams one process holds open at once; past it, 429
    /// (0: no limit).
    #[arg(global = true, long, env = "LIVE_STREAMS", default_value_t = 1000)]
    pub live_streams: u32,

    /// Tickets one user may create or edit per minute; past it, 429 (0: no
    /// limit).
    #[arg(global = true, long, env = "TICKET_WRITES_PER_USER_PER_MINUTE", default_value_t = 30)]
    pub ticket_writes_per_user_per_minute: u32,

    /// How far above its face value a ticket may be listed, in percent
    /// (0 to 1000): the price may be at most face value × (100 + this) /
    /// 100. 0: at most the face value. Listings without a face value are
    /// not capped.
    #[arg(global = true, long, env = "RESALE_MAX_MARKUP_PERCENT", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub resale_max_markup_percent: u32,

    /// How long the tickets service may answer the public list from
    /// memory, in milliseconds, without hearing of a change (0: never). Its
    /// own changes make its answers out of date at once, so the all-in-one
    /// (default 1000) is exact; `serve tickets` (default 0) may run beside
    /// other replicas whose changes it does not see.
    #[arg(global = true, long = "tickets-list-cache-ms", env = "TICKETS_LIST_CACHE_MS",
          value_parser = milliseconds)]
    pub tickets_list_cache: Option<Duration>,

    /// The ticket vault's key: 32 bytes, hex or base64 (`openssl rand -hex
    /// 32`); tickets' barcodes and files are encrypted under it. All-in-one:
    /// generated once and kept in `DATA_DIR`; `serve tickets`: required.
    #[arg(global = true, long, env = "TICKET_VAULT_KEY", hide_env_values = true)]
    pub ticket_vault_key: Option<Secret>,

    /// Earlier vault keys, comma-separated: what was encrypted under them
    /// is still read after a rotation (OPERATIONS.md).
    #[arg(global = true, long, env = "TICKET_VAULT_PREVIOUS_KEYS", hide_env_values = true)]
    pub ticket_vault_previous_keys: Option<Secret>,
}

impl Settings {
    /// The ticket vault of these settings. A service alone refuses to start
    /// without its key; a process that embeds the service without one
    /// (tests) gets a random key, so what it escrows is readable until it
    /// stops (the all-in-one binary always sets one: `DATA_DIR`'s).
    pub fn vault(&self, alone: bool) -> anyhow::Result<Vault> {
        match &self.ticket_vault_key {
            Some(key) => Vault::from_settings(key, self.ticket_vault_previous_keys.as_ref()),
            None if alone => anyhow::bail!(
                "TICKET_VAULT_KEY must be set for `ticketing serve tickets`: tickets held in \
                 escrow are encrypted under it (32 bytes, e.g. `openssl rand -hex 32`)"
            ),
            None => Vault::random(),
        }
    }

    /// How long the list may be answered from memory in this process:
    /// replicas do not see each other's changes, so none unless asked for
    /// (DECISIONS.md, "The list cache").
    pub fn list_cache(&self, alone: bool) -> Duration {
        self.tickets_list_cache.unwrap_or(if alone {
            Duration::ZERO
        } else {
            ALL_IN_ONE_LIST_CACHE
        })
    }
}

impl Default for Settings {
    fn default() -> Self {
        common::config::defaults()
    }
}
