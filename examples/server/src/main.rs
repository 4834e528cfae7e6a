//! `crm-server`: the reference service. See the crate README for the commands and
//! every configuration variable.

use std::process::ExitCode;

use crm_server::cli::{self, Command};
use crm_server::{Config, Service, shutdown_signal};

const USAGE: &str = "\
usage:
  crm-server [serve]                     run the service (configuration from the environment)
  crm-server migrate                     apply the database migrations and exit
  crm-server workspaces create --name NAME [--dry-run]
                                         register a workspace; prints its id
  crm-server keys create --workspace ID --scopes SCOPE[,SCOPE...] [--name NAME] [--expires-days N]
                                         issue an API key; prints the token once
scopes: contacts:read contacts:write inbox:read inbox:write sequences:write
";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let command = match cli::parse(&args) {
        Ok(command) => command,
        Err(e) => {
            eprintln!("crm-server: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if matches!(command, Command::Help) {
        print!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("crm-server: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match command {
        Command::Serve => serve(config).await,
        other => cli::run_admin(other, &config).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("crm-server: {}", cli::chain(&*e));
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<(), Box<dyn std::error::Error>> {
    let service = Service::start(config).await?;
    let addr = service.local_addr()?;
    tracing::info!(%addr, "listening");
    let report = service.serve(shutdown_signal()).await?;
    tracing::info!(
        clean = report.is_clean(),
        sent = report.dispatched.sent,
        jobs = report.jobs.succeeded,
        "stopped"
    );
    Ok(())
}
