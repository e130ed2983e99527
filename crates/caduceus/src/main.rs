//! The `caduceus` binary: argument parsing and start-up only. Each command
//! calls one function in `caduceus_server::commands`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "caduceus", version, about = "Self-hosted security platform for hospitals and clinics")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the platform from a configuration file.
    Serve {
        /// TOML configuration file (see docs/caduceus.example.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run the platform on the embedded default with generated demo data.
    Demo {
        /// Where the demo keeps its state.
        #[arg(long, default_value = "./caduceus-data")]
        data_dir: PathBuf,
        /// Address and port to listen on.
        #[arg(long, default_value = "127.0.0.1:8443")]
        listen: String,
    },
    /// Administrative tasks on an installation.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Issue an admin API token and print it once.
    IssueToken {
        #[arg(long, short)]
        config: PathBuf,
        /// A label saying who or what the token is for.
        #[arg(long, default_value = "admin")]
        label: String,
        /// Revoke earlier tokens with the same label.
        #[arg(long)]
        replace: bool,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    match run(Cli::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    use caduceus_server::commands;
    match cli.command {
        Command::Serve { config } => commands::serve(&config).await?,
        Command::Demo { data_dir, listen } => commands::demo(data_dir, listen).await?,
        Command::Admin { command: AdminCommand::IssueToken { config, label, replace } } => {
            commands::issue_token(&config, &label, replace).await?
        }
        Command::Version => println!("{}", commands::version()),
    }
    Ok(())
}
