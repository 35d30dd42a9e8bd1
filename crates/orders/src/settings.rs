//! What only the orders service reads: how long an order holds its ticket
//! and how many a buyer may hold or place (flattened into `ticketing`'s
//! command line).

use std::time::Duration;

use clap::Args;

use common::config::seconds;

/// The orders service's settings.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
#[group(id = "orders-settings")]
#[command(next_help_heading = "Orders")]
pub struct Settings {
    /// How long an order holds its ticket, in seconds.
    #[arg(global = true, long = "order-expiration-seconds", env = "ORDER_EXPIRATION_SECONDS",
          default_value = "900", value_parser = seconds)]
    pub order_expiration: Duration,

    /// How many unpaid orders one buyer may hold at once (0: no limit).
    #[arg(global = true, long, env = "MAX_LIVE_ORDERS_PER_USER", default_value_t = 5)]
    pub max_live_orders_per_user: u32,

    /// Orders one user may place per minute (0: no limit).
    #[arg(global = true, long, env = "ORDERS_PER_USER_PER_MINUTE", default_value_t = 30)]
    pub orders_per_user_per_minute: u32,
}

impl Default for Settings {
    fn default() -> Self {
        common::config::defaults()
    }
}
