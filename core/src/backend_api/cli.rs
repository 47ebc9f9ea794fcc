//! `touchpoint tokens …` (create, list, revoke API tokens against `DATABASE_URL`) and
//! `touchpoint openapi` (prints the OpenAPI document: `touchpoint openapi > docs/openapi.json`).
#![allow(clippy::print_stdout)]

use super::tokens::{self, Scope, TokenView};
use crate::config::Config;
use anyhow::Context;
use clap::Subcommand;
use std::process::ExitCode;

/// Token subcommands.
#[derive(Subcommand, Debug)]
pub enum TokensCommand {
    /// Creates a token and prints it once (only its SHA-256 is stored).
    Create {
        /// What it is for, e.g. `personalisation/production`.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes: profiles:read, audiences:read, admin.
        #[arg(long)]
        scopes: String,
    },
    /// Lists tokens as JSON (never the tokens themselves).
    List,
    /// Revokes a token by id.
    Revoke {
        /// The token's id (see `tokens list`).
        id: i64,
    },
}

/// Runs a tokens subcommand on the configured database.
pub async fn run(command: TokensCommand) -> anyhow::Result<ExitCode> {
    let config = Config::from_env().context("reading configuration")?;
    let stores = crate::stores::connect(&config.database_url)
        .await
        .with_context(|| {
            format!(
                "opening the database ({})",
                crate::startup::redact(&config.database_url)
            )
        })?;
    let now = chrono::Utc::now().timestamp_millis();
    match command {
        TokensCommand::Create { name, scopes } => {
            let scopes = Scope::parse_list(&scopes)?;
            let created = tokens::create(stores.api.as_ref(), &name, &scopes, now)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("{}", serde_json::to_string_pretty(&created)?);
            eprintln!("store the token now: it cannot be shown again");
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::List => {
            let rows: Vec<TokenView> = stores
                .api
                .tokens()
                .await?
                .into_iter()
                .map(TokenView::from)
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
            Ok(ExitCode::SUCCESS)
        }
        TokensCommand::Revoke { id } => {
            if stores.api.revoke_token(id, now).await? {
                println!("token {id} revoked");
                Ok(ExitCode::SUCCESS)
            } else {
                eprintln!("no unrevoked token has id {id}");
                Ok(ExitCode::FAILURE)
            }
        }
    }
}

/// Prints the OpenAPI document.
pub fn print_openapi() -> ExitCode {
    print!("{}", super::openapi::json());
    ExitCode::SUCCESS
}
