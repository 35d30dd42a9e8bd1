//! `ticketing`: the all-in-one marketplace, or one service with
//! `ticketing serve <service>`. See `ticketing --help`.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::install_crypto();
    let cli = ticketing::Cli::parse();
    common::telemetry::init_logging(&cli.config.rust_log, cli.config.log_format);
    match ticketing::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ticketing failed");
            std::process::ExitCode::FAILURE
        }
    }
}
