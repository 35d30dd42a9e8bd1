//! `ticketing-tools`: the load generator and the invariant checker. See
//! `ticketing-tools --help`.

use clap::Parser as _;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    common::install_crypto();
    let cli = tools::Cli::parse();
    common::telemetry::init_logging(&cli.rust_log, common::config::LogFormat::Pretty);
    match tools::run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = format!("{error:#}"), "ticketing-tools failed");
            std::process::ExitCode::FAILURE
        }
    }
}
