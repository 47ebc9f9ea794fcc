//! Lead scoring and handoff (issue 15): a scoring model, handoff rules, territories and a rep
//! roster kept in git (`LEAD_HANDOFF.md`, [`model`]); the score as a trait with its breakdown
//! ([`score`]); who is handed off, by which rule and to whom ([`decide`]); and the I/O shell
//! ([`stage`]) that runs as a pipeline [`crate::pipeline::Stage`] after the profiles stage and on a
//! clock tick, sets the CRM owner, creates the first follow-up Task in Salesforce and HubSpot,
//! emails the rep through Resend and reminds them when the Task is still open. Every handoff is in
//! the log (`GET /admin/handoffs`, the `/handoffs` page, [`api`]).
//!
//! Time comes from an injected [`Clock`]: score decay, the time in nurture, the handoff window and
//! the reminder delay all read it, so tests move it instead of sleeping.

pub mod api;
pub mod decide;
pub mod model;
pub mod score;
pub mod stage;
pub mod store;

pub use model::Model;
pub use stage::Handoff;
pub use store::{HandoffStore, PgHandoffs, SqliteHandoffs};

use crate::config::ConfigError;
use crate::pipeline::ClockRef;
use std::path::PathBuf;
use std::time::Duration;

/// The internal source the score is recorded under (created at start with a key nobody is given).
pub const SOURCE: &str = "lead-scoring";

/// Lead scoring and handoff settings.
#[derive(Clone, Debug)]
pub struct HandoffConfig {
    /// The scoring model, rules, territories and reps (`TOUCHPOINT_LEAD_HANDOFF`, default
    /// `LEAD_HANDOFF.md`; without the file there is no scoring or handoff).
    pub path: PathBuf,
    /// How often time-based rules (time in nurture), pending deliveries and reminders are checked
    /// (`TOUCHPOINT_HANDOFF_TICK_SECS`, default 60; 0 checks only on `POST /admin/handoffs/tick`).
    pub tick: Duration,
    /// A clock for the handoff rules alone (`None`: the service's clock, [`Config::clock`]);
    /// tests move it to reach time-based rules without moving delivery backoff.
    ///
    /// [`Config::clock`]: crate::config::Config::clock
    pub clock: Option<ClockRef>,
}

impl Default for HandoffConfig {
    fn default() -> Self {
        HandoffConfig {
            path: PathBuf::from(model::DEFAULT_FILE),
            tick: Duration::from_secs(60),
            clock: None,
        }
    }
}

impl HandoffConfig {
    /// Reads the variables through `get`.
    pub fn from_lookup(get: &dyn Fn(&str) -> Option<String>) -> Result<HandoffConfig, ConfigError> {
        use crate::destinations::config::{num, var};
        let mut c = HandoffConfig::default();
        if let Some(p) = var(get, "TOUCHPOINT_LEAD_HANDOFF") {
            c.path = p.into();
        }
        c.tick = Duration::from_secs(num(get, "TOUCHPOINT_HANDOFF_TICK_SECS", 60)?);
        Ok(c)
    }

    /// Reads and validates the file (`None` when it does not exist); errors name the file and line.
    pub fn load(
        &self,
        plan: &touchpoint_tracking_plan::TrackingPlan,
        audiences: &[String],
    ) -> anyhow::Result<Option<Model>> {
        let text = match std::fs::read_to_string(&self.path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(
                    anyhow::Error::new(e).context(format!("reading {}", self.path.display()))
                );
            }
        };
        let file = self.path.display().to_string();
        match model::load(&text, &file, plan, audiences) {
            Ok((m, warnings)) => {
                for w in warnings {
                    tracing::warn!(file = %file, line = w.line, "{}", w.message);
                }
                Ok(Some(m))
            }
            Err(errors) => anyhow::bail!("invalid lead handoff file:\n{}", errors.join("\n")),
        }
    }
}

/// `touchpoint plan check`'s part: the problems of the file beside the plan, as report lines.
pub fn check_file(
    path: &std::path::Path,
    plan: &touchpoint_tracking_plan::TrackingPlan,
    audiences: &[String],
) -> Option<Vec<model::Problem>> {
    let text = std::fs::read_to_string(path).ok()?;
    let (m, mut problems) = model::parse(&text);
    problems.extend(model::validate(&m, plan, audiences));
    problems.sort_by_key(|p| p.line);
    Some(problems)
}
