//! `ticketing`: the all-in-one marketplace, or one service with
//! `ticketing serve <service>`. See `ticketing --help`.

use clap::Parser as _;

/// mimalloc instead of glibc's malloc, which kept every 19 MiB Argon2 block
/// a sign-in freed (RSS grew by 19 MiB per sign-in, without bound).
/// DECISIONS.md, "Allocator".
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::install_crypto();
    let cli = ticketing::Cli::parse();
    common::telemetry::init_logging(&cli.config.rust_log, cli.log_format());
    match ticketing::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ticketing failed");
            std::process::ExitCode::FAILURE
        }
    }
}
