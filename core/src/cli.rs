//! The `touchpoint` command line: `serve` and `plan check`.
#![allow(clippy::print_stdout)]

use crate::config::Config;
use crate::startup::Application;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;
use touchpoint_tracking_plan::Severity;

/// Touchpoint: a self-hosted customer data platform.
#[derive(Parser, Debug)]
#[command(name = "touchpoint", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the core service. Every setting is a flag and an environment variable (listed below);
    /// destinations, the CRM loop, webhooks, the warehouse and lead handoff read their own
    /// variables (see README).
    Serve(Box<crate::config::Settings>),
    /// Tracking-plan tools.
    Plan {
        #[command(subcommand)]
        command: PlanCommand,
    },
    /// CRM tools: compare the mappings with Salesforce and HubSpot metadata.
    Crm {
        #[command(subcommand)]
        command: CrmCommand,
    },
    /// Destination tools: status, replay of dead letters, GA4 validation.
    Destinations {
        #[command(subcommand)]
        command: crate::destinations::cli::DestinationsCommand,
    },
    /// Warehouse export: sync now (Parquet folder, PostgreSQL warehouse) or show its status.
    Warehouse {
        #[command(subcommand)]
        command: crate::warehouse::cli::WarehouseCommand,
    },
    /// API tokens for backends: create (shown once), list, revoke.
    Tokens {
        #[command(subcommand)]
        command: crate::backend_api::cli::TokensCommand,
    },
    /// Prints the OpenAPI document of the backend API (`touchpoint openapi > docs/openapi.json`).
    Openapi,
}

#[derive(Subcommand, Debug)]
enum CrmCommand {
    /// Compares the CRM mappings with the configured CRMs' metadata (Salesforce describe, HubSpot
    /// properties) and prints what to fix as FILE:LINE: crm object.field: what to do.
    Check {
        /// The mappings file (default CRM_MAPPINGS.md).
        #[arg(default_value = "CRM_MAPPINGS.md")]
        file: PathBuf,
        /// The tracking plan the traits come from.
        #[arg(long, default_value = "TRACKING_PLAN.md")]
        plan: PathBuf,
    },
}

#[derive(Subcommand, Debug)]
enum PlanCommand {
    /// Checks a tracking plan and prints every problem as FILE:LINE: severity: message.
    Check {
        /// The plan file (default TRACKING_PLAN.md).
        #[arg(default_value = "TRACKING_PLAN.md")]
        file: PathBuf,
        /// Fail on warnings (e.g. GA4 limits) too.
        #[arg(long)]
        deny_warnings: bool,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    run_with(cli, None).await
}

/// [`run`], starting the pipeline stages of `serve` on `background` when given.
async fn run_with(
    cli: Cli,
    background: Option<tokio::runtime::Handle>,
) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Destinations { command } => crate::destinations::cli::run(command).await,
        Command::Crm {
            command: CrmCommand::Check { file, plan },
        } => {
            let config = Config::from_env().context("reading configuration")?;
            let plan_text = std::fs::read_to_string(&plan)
                .with_context(|| format!("reading {}", plan.display()))?;
            let plan = touchpoint_tracking_plan::parse(&plan_text)
                .map_err(|e| anyhow::anyhow!("{}: {e}", plan.display()))?;
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let mappings = match crate::crm::mapping::load(&text, &plan) {
                Ok((m, _)) => m,
                Err(problems) => {
                    for p in problems.iter().filter(|p| p.error) {
                        println!("{}:{}: error: {}", file.display(), p.line, p.message);
                    }
                    return Ok(ExitCode::FAILURE);
                }
            };
            let (report, ok) =
                crate::crm::check::run(&config, &mappings, &file.display().to_string(), &plan)
                    .await?;
            print!("{report}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Warehouse { command } => crate::warehouse::cli::run(command).await,
        Command::Tokens { command } => crate::backend_api::cli::run(command).await,
        Command::Openapi => Ok(crate::backend_api::cli::print_openapi()),
        Command::Serve(settings) => {
            let mut config = Config::from_settings(*settings, |k| std::env::var(k).ok())
                .context("reading configuration")?;
            config.background = background;
            Application::build(config).await?.run().await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Plan {
            command:
                PlanCommand::Check {
                    file,
                    deny_warnings,
                },
        } => {
            let (report, ok) = plan_check(&file, deny_warnings)?;
            print!("{report}");
            Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
    }
}

/// One file's check results, written as `FILE:LINE: severity: message` lines and counted.
#[derive(Default)]
struct Report {
    text: String,
    errors: usize,
    warnings: usize,
}

impl Report {
    /// Adds the problems found in `file`: (line, is an error, message).
    fn add<'a>(
        &mut self,
        file: &std::path::Path,
        problems: impl IntoIterator<Item = (usize, bool, &'a str)>,
    ) {
        for (line, error, message) in problems {
            let severity = if error {
                self.errors += 1;
                "error"
            } else {
                self.warnings += 1;
                "warning"
            };
            self.text.push_str(&format!(
                "{}:{line}: {severity}: {message}\n",
                file.display()
            ));
        }
    }
}

/// Checks the plan at `file`, and the audiences, CRM mappings and lead handoff files beside it;
/// returns the report and whether it passed.
pub fn plan_check(file: &std::path::Path, deny_warnings: bool) -> anyhow::Result<(String, bool)> {
    let src =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let mut report = Report::default();
    report.add(
        file,
        touchpoint_tracking_plan::check(&src)
            .iter()
            .map(|d| (d.line, d.severity == Severity::Error, d.message.as_str())),
    );
    let plan = touchpoint_tracking_plan::parse(&src).ok();
    // Audience definitions kept beside the plan are part of the contract too.
    let audiences = file.with_file_name("AUDIENCES.md");
    let audience_text = std::fs::read_to_string(&audiences).ok();
    if let (Some(text), Some(plan)) = (&audience_text, &plan) {
        let (defs, mut problems) = crate::audiences::definitions::parse_file(text);
        problems.extend(crate::audiences::definitions::validate(&defs, plan, &[]));
        report.add(
            &audiences,
            problems
                .iter()
                .map(|p| (p.line, p.error, p.message.as_str())),
        );
    }
    // So are the CRM field mappings.
    let mappings = file.with_file_name("CRM_MAPPINGS.md");
    if let (Ok(text), Some(plan)) = (std::fs::read_to_string(&mappings), &plan) {
        let (m, mut problems) = crate::crm::mapping::parse(&text);
        problems.extend(crate::crm::mapping::validate(&m, plan));
        problems.sort_by_key(|p| p.line);
        report.add(
            &mappings,
            problems
                .iter()
                .map(|p| (p.line, p.error, p.message.as_str())),
        );
    }
    // And the lead scoring model, handoff rules and rep roster.
    let handoff = file.with_file_name(crate::handoff::model::DEFAULT_FILE);
    if let Some(plan) = &plan {
        let audience_ids: Vec<String> = audience_text
            .map(|t| {
                crate::audiences::definitions::parse_file(&t)
                    .0
                    .into_iter()
                    .map(|d| d.id)
                    .collect()
            })
            .unwrap_or_default();
        let problems =
            crate::handoff::check_file(&handoff, plan, &audience_ids).unwrap_or_default();
        report.add(
            &handoff,
            problems
                .iter()
                .map(|p| (p.line, p.error, p.message.as_str())),
        );
    }
    let Report {
        mut text,
        errors,
        warnings,
    } = report;
    let ok = errors == 0 && (!deny_warnings || warnings == 0);
    text.push_str(&format!(
        "{}: {errors} error(s), {warnings} warning(s){}\n",
        file.display(),
        if ok { "" } else { " — check failed" }
    ));
    Ok((text, ok))
}

/// The process entry point shared by the `touchpoint` binary: logging, arguments, runtime.
pub fn main() -> ExitCode {
    use tracing_subscriber::EnvFilter;
    let json = std::env::var("TOUCHPOINT_LOG_FORMAT").is_ok_and(|v| v == "json");
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => match crate::config::setting_error(&e) {
            Some(setting) => {
                eprintln!("error: {setting}");
                return ExitCode::from(2);
            }
            None => e.exit(),
        },
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // `serve` runs the pipeline stages on a runtime of their own whose threads yield the CPU to
    // the intake's (see `crate::background`); without it they share the main one.
    let background = match &cli.command {
        Command::Serve(settings) => {
            crate::background::set_nice(settings.background_nice());
            let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
            match crate::background::runtime(settings.background_threads(cpus)) {
                Ok(rt) => Some(rt),
                Err(e) => {
                    eprintln!("warning: no background runtime, the stages share the main one: {e}");
                    None
                }
            }
        }
        _ => None,
    };
    let handle = background.as_ref().map(|rt| rt.handle().clone());
    let code = match runtime.block_on(run_with(cli, handle)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    };
    if let Some(rt) = background {
        rt.shutdown_background();
    }
    code
}

#[cfg(test)]
mod tests {
    use super::plan_check;

    fn line_of(text: &str, needle: &str) -> usize {
        text.lines()
            .position(|l| l.contains(needle))
            .expect("needle in plan")
            + 1
    }

    #[test]
    fn plan_check_points_at_the_broken_lines_and_fails() {
        let good = include_str!("../../TRACKING_PLAN.md");
        let broken = good
            .replacen("| `trial_days` | integer |", "| `trial_days` | integr |", 1)
            .replacen(
                "- Unplanned events: `block`",
                "- Unplanned events: `sometimes`",
                1,
            );
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("TRACKING_PLAN.md");
        std::fs::write(&file, &broken).unwrap();
        let (report, ok) = plan_check(&file, false).unwrap();
        assert!(!ok, "{report}");
        for needle in ["`trial_days` | integr", "Unplanned events: `sometimes`"] {
            let expected = format!("{}:{}: error:", file.display(), line_of(&broken, needle));
            assert!(report.contains(&expected), "{expected} in\n{report}");
        }
    }

    #[test]
    fn the_repository_plan_and_audiences_pass_the_check() {
        let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../TRACKING_PLAN.md");
        let (report, ok) = plan_check(&file, false).unwrap();
        assert!(ok, "{report}");
        assert!(report.contains("0 error(s)"), "{report}");
    }

    #[test]
    fn plan_check_also_validates_the_crm_mappings_beside_the_plan_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("TRACKING_PLAN.md");
        std::fs::write(&file, include_str!("../../TRACKING_PLAN.md")).unwrap();
        std::fs::write(
            dir.path().join("CRM_MAPPINGS.md"),
            "# CRM mappings\n\n## Salesforce Lead\n| Field | Trait | Direction | Type | Values |\n|---|---|---|---|---|\n| `Status` | `lead_status` | in | picklist | `Hot` = `Boiling` |\n| `Rating` | `no_such_trait` | in | text | |\n",
        )
        .unwrap();
        let (report, ok) = plan_check(&file, false).unwrap();
        assert!(!ok, "{report}");
        let mappings = dir.path().join("CRM_MAPPINGS.md");
        for line in [6, 7] {
            let expected = format!("{}:{line}: error:", mappings.display());
            assert!(report.contains(&expected), "{expected} in\n{report}");
        }
    }

    #[test]
    fn plan_check_also_validates_the_lead_handoff_file_beside_the_plan_with_line_numbers() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("TRACKING_PLAN.md");
        std::fs::write(&file, include_str!("../../TRACKING_PLAN.md")).unwrap();
        std::fs::write(
            dir.path().join("AUDIENCES.md"),
            include_str!("../../AUDIENCES.md"),
        )
        .unwrap();
        let good = include_str!("../../LEAD_HANDOFF.md");
        let broken = good
            .replacen(
                "event `demo_requested` | priority",
                "event `demo_wanted` | priority",
                1,
            )
            .replacen(
                "| `jon` | jon@sales.example | inbound",
                "| `jon` | jon@sales.example | apac",
                1,
            );
        std::fs::write(dir.path().join("LEAD_HANDOFF.md"), &broken).unwrap();
        let (report, ok) = plan_check(&file, false).unwrap();
        assert!(!ok, "{report}");
        let handoff = dir.path().join("LEAD_HANDOFF.md");
        for needle in ["`demo_wanted`", "| `jon` |"] {
            let expected = format!("{}:{}: error:", handoff.display(), line_of(&broken, needle));
            assert!(report.contains(&expected), "{expected} in\n{report}");
        }
    }

    #[test]
    fn plan_check_also_validates_the_audiences_file_beside_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("TRACKING_PLAN.md");
        std::fs::write(&file, include_str!("../../TRACKING_PLAN.md")).unwrap();
        std::fs::write(
            dir.path().join("AUDIENCES.md"),
            "# Audiences\n\n## broken\n```audience\nplan_tier === 'free'\n```\n",
        )
        .unwrap();
        let (report, ok) = plan_check(&file, false).unwrap();
        assert!(!ok);
        let expected = format!("{}:5: error:", dir.path().join("AUDIENCES.md").display());
        assert!(report.contains(&expected), "{expected} in\n{report}");
    }
}
