//! `touchpoint destinations …`: status, replay of dead letters, and `check ga4` (a sample sent to
//! GA4's validation endpoint, printing its validationMessages). Configuration from the environment.
#![allow(clippy::print_stdout)]

use super::{Destinations, api};
use crate::config::Config;
use anyhow::{Context, bail};
use clap::Subcommand;
use std::process::ExitCode;

/// Destination subcommands.
#[derive(Subcommand, Debug)]
pub enum DestinationsCommand {
    /// Prints every destination's status and outbox counts as JSON.
    Status,
    /// Makes a destination's dead letters due again (after fixing the cause).
    Replay {
        /// salesforce, hubspot, ga4, resend, meta or webhook.
        name: String,
    },
    /// Sends a sample to a destination's validation endpoint (only `ga4`) and prints what it says.
    Check {
        /// The destination (`ga4`).
        name: String,
    },
}

/// Runs a destinations subcommand.
pub async fn run(command: DestinationsCommand) -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("reading configuration")?;
    match command {
        DestinationsCommand::Check { name } => {
            if name != "ga4" {
                bail!("only `ga4` has a validation endpoint");
            }
            let Some(c) = config.destinations.ga4.clone() else {
                bail!(
                    "GA4 is not configured (TOUCHPOINT_GA4_MEASUREMENT_ID, TOUCHPOINT_GA4_API_SECRET)"
                );
            };
            let ga4 = super::ga4::Ga4::new(c, super::http::client()?);
            let sample = super::ga4::Ga4::sample();
            let messages = ga4
                .validate(&sample)
                .await
                .map_err(|e| anyhow::anyhow!(e))?;
            println!("sent: {sample}");
            if messages.is_empty() {
                println!("ga4: no validation messages — the sample is valid");
                Ok(ExitCode::SUCCESS)
            } else {
                for m in &messages {
                    println!(
                        "ga4: {}: {} ({})",
                        m["fieldPath"].as_str().unwrap_or("-"),
                        m["description"].as_str().unwrap_or(""),
                        m["validationCode"].as_str().unwrap_or("")
                    );
                }
                Ok(ExitCode::FAILURE)
            }
        }
        DestinationsCommand::Status => {
            let d = open(&config).await?;
            let status = api::status(&d).await.map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&status)?);
            Ok(ExitCode::SUCCESS)
        }
        DestinationsCommand::Replay { name } => {
            if !super::ALL.contains(&name.as_str()) {
                bail!(
                    "unknown destination {name:?} (one of {})",
                    super::ALL.join(", ")
                );
            }
            let d = open(&config).await?;
            let n = d
                .store
                .replay(&name, chrono::Utc::now().timestamp_millis())
                .await
                .context("replaying dead letters")?;
            println!("{name}: {n} dead letter(s) queued for delivery");
            Ok(ExitCode::SUCCESS)
        }
    }
}

async fn open(config: &Config) -> anyhow::Result<Destinations> {
    let stores = crate::stores::connect(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the database ({})",
                crate::startup::redact(&config.database_url)
            )
        })?;
    Ok(Destinations::new(
        stores.destinations,
        &config.destinations,
    )?)
}
