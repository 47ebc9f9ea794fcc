//! `LEAD_HANDOFF.md`: the lead scoring model, the handoff rules, the territories and the rep
//! roster, kept in git beside the tracking plan and validated by `touchpoint plan check` with the
//! file's line numbers. Pure: parse the text, then validate against the plan and the audiences.
//!
//! ```markdown
//! ## Scoring
//! | Factor | When | Points | Cap | Half-life |
//! | `senior_role` | trait `job_title CONTAINS 'VP'` | 150 | | |
//! | `pricing_page` | page `/pricing` | 60 | 180 | 7 days |
//! ## Handoff rules
//! | Rule | Trigger | Priority |
//! | `score_threshold` | score >= 500 | immediate |
//! | `demo_request` | event `demo_requested` | priority |
//! | `nurture_14_days` | audience `lead_nurture` for 14 days | standard |
//! ## Territories
//! | Team | When |
//! | `emea` | `country IN ('DE', 'FR')` |
//! | `inbound` | anyone else |
//! ## Reps
//! | Rep | Email | Team | Salesforce owner | HubSpot owner | Capacity |
//! ```

use crate::audiences::condition::Condition;
use std::collections::HashSet;
use touchpoint_tracking_plan::TrackingPlan;

/// The file read when `TOUCHPOINT_LEAD_HANDOFF` is not set.
pub const DEFAULT_FILE: &str = "LEAD_HANDOFF.md";

/// What a scoring factor or a behaviour trigger looks at.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// A condition on the person's (or their account's) traits, in the audience language.
    Trait(Condition),
    /// A track event by name.
    Event(String),
    /// A page call whose path starts with this prefix.
    Page(String),
}

/// One scoring factor.
#[derive(Debug, Clone, PartialEq)]
pub struct Factor {
    /// Its name in the breakdown.
    pub id: String,
    /// What it looks at.
    pub signal: Signal,
    /// Points when a trait condition holds, or per event.
    pub points: i64,
    /// Most points the factor gives (events).
    pub cap: Option<i64>,
    /// Days after which an event counts half (events; none: no decay).
    pub half_life_days: Option<f64>,
    /// Line in the file.
    pub line: usize,
}

/// What starts a handoff.
#[derive(Debug, Clone, PartialEq)]
pub enum Trigger {
    /// The score reaches this many points.
    Score(i64),
    /// A behaviour: an event or a page visit.
    Behaviour(Signal),
    /// Time in a nurture audience: a member for at least `days`.
    Nurture {
        /// The audience.
        audience: String,
        /// Days of membership.
        days: u32,
    },
}

impl Trigger {
    /// The kind of trigger as the log shows it.
    pub fn kind(&self) -> &'static str {
        match self {
            Trigger::Score(_) => "score",
            Trigger::Behaviour(_) => "behaviour",
            Trigger::Nurture { .. } => "nurture",
        }
    }
}

/// How urgent a handoff is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Score-based: straight to a rep.
    Immediate,
    /// Behaviour-based.
    Priority,
    /// Time-based.
    Standard,
}

impl Priority {
    /// The text in the file and the log.
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Immediate => "immediate",
            Priority::Priority => "priority",
            Priority::Standard => "standard",
        }
    }

    fn parse(s: &str) -> Option<Priority> {
        match s {
            "immediate" => Some(Priority::Immediate),
            "priority" => Some(Priority::Priority),
            "standard" => Some(Priority::Standard),
            _ => None,
        }
    }
}

/// One handoff rule.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Its name in the log.
    pub id: String,
    /// What starts it.
    pub trigger: Trigger,
    /// How urgent.
    pub priority: Priority,
    /// Line in the file.
    pub line: usize,
}

/// A territory: who belongs to a team. The first whose condition holds wins; `None` matches anyone.
#[derive(Debug, Clone, PartialEq)]
pub struct Territory {
    /// The team.
    pub team: String,
    /// Who belongs to it.
    pub when: Option<Condition>,
    /// Line in the file.
    pub line: usize,
}

/// A sales rep.
#[derive(Debug, Clone, PartialEq)]
pub struct Rep {
    /// Short name.
    pub id: String,
    /// Where handoff emails go.
    pub email: String,
    /// Their team.
    pub team: String,
    /// Salesforce User Id (`OwnerId`).
    pub salesforce: Option<String>,
    /// HubSpot owner id (`hubspot_owner_id`).
    pub hubspot: Option<String>,
    /// Most open handoffs at once.
    pub capacity: u32,
    /// Line in the file.
    pub line: usize,
}

/// The settings section.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// Nobody is handed off twice within this many days.
    pub window_days: u32,
    /// Who is already a customer (never handed off).
    pub customer: Option<Condition>,
    /// Who holds an open opportunity (never handed off).
    pub open_opportunity: Option<Condition>,
    /// Lines of the `Customer` and `Open opportunity` settings (for messages).
    pub condition_lines: (usize, usize),
    /// Days after which a still-open Task gets a reminder.
    pub reminder_days: u32,
    /// Days until the first follow-up Task is due.
    pub task_due_days: u32,
    /// Sender of the emails to reps.
    pub email_from: String,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            window_days: 90,
            customer: None,
            open_opportunity: None,
            condition_lines: (0, 0),
            reminder_days: 3,
            task_due_days: 1,
            email_from: "Touchpoint <handoffs@touchpoint.invalid>".into(),
        }
    }
}

/// The whole file.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Settings.
    pub settings: Settings,
    /// Scoring factors.
    pub factors: Vec<Factor>,
    /// Handoff rules.
    pub rules: Vec<Rule>,
    /// Territories, in order.
    pub territories: Vec<Territory>,
    /// The rep roster, in round-robin order.
    pub reps: Vec<Rep>,
}

/// A problem in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line.
    pub line: usize,
    /// Whether it prevents loading.
    pub error: bool,
    /// What is wrong and what to do.
    pub message: String,
}

fn err(line: usize, message: impl Into<String>) -> Problem {
    Problem {
        line,
        error: true,
        message: message.into(),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Section {
    None,
    Settings,
    Scoring,
    Rules,
    Territories,
    Reps,
    Other,
}

/// Removes surrounding backticks.
fn unquote(s: &str) -> &str {
    let s = s.trim();
    s.strip_prefix('`')
        .and_then(|x| x.strip_suffix('`'))
        .unwrap_or(s)
        .trim()
}

fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The leading whole number of `"14 days"`.
fn leading_number(s: &str) -> Option<u32> {
    unquote(s).split_whitespace().next()?.parse().ok()
}

fn condition(
    line: usize,
    text: &str,
    what: &str,
    problems: &mut Vec<Problem>,
) -> Option<Condition> {
    match Condition::parse(text) {
        Ok(c) => Some(c),
        Err(e) => {
            problems.push(err(line, format!("{what}: {e} in `{text}`")));
            None
        }
    }
}

/// Reads `trait `…``, `event `…`` or `page `…``.
fn signal(line: usize, cell: &str, problems: &mut Vec<Problem>) -> Option<Signal> {
    let cell = cell.trim();
    let (word, rest) = cell.split_once(char::is_whitespace).unwrap_or((cell, ""));
    let value = unquote(rest);
    match word {
        "trait" => condition(line, value, "trait condition", problems).map(Signal::Trait),
        "event" if !value.is_empty() => Some(Signal::Event(value.to_owned())),
        "page" if value.starts_with('/') => Some(Signal::Page(value.to_owned())),
        _ => {
            problems.push(err(
                line,
                format!(
                    "`{cell}` is not a signal: write trait `condition`, event `event_name` or page `/path`"
                ),
            ));
            None
        }
    }
}

fn trigger(line: usize, cell: &str, problems: &mut Vec<Problem>) -> Option<Trigger> {
    let cell = unquote(cell);
    if let Some(rest) = cell.strip_prefix("score") {
        let n = rest.trim().strip_prefix(">=").map(str::trim);
        return match n.and_then(|n| n.parse::<i64>().ok()) {
            Some(n) if n > 0 => Some(Trigger::Score(n)),
            _ => {
                problems.push(err(
                    line,
                    format!("`{cell}`: a score trigger reads score >= N with N > 0"),
                ));
                None
            }
        };
    }
    if let Some(rest) = cell.strip_prefix("audience") {
        // audience `lead_nurture` for 14 days
        let (aud, days) = rest.split_once(" for ").unwrap_or((rest, ""));
        let audience = unquote(aud).to_owned();
        return match leading_number(days) {
            Some(d) if d > 0 && is_id(&audience) => Some(Trigger::Nurture { audience, days: d }),
            _ => {
                problems.push(err(
                    line,
                    format!("`{cell}`: a nurture trigger reads audience `id` for N days"),
                ));
                None
            }
        };
    }
    match signal(line, cell, problems)? {
        Signal::Trait(_) => {
            problems.push(err(
                line,
                "a handoff trigger is score >= N, event `name`, page `/path` or audience `id` for N days",
            ));
            None
        }
        s => Some(Trigger::Behaviour(s)),
    }
}

fn optional(cell: &str) -> Option<String> {
    let v = unquote(cell);
    (!v.is_empty() && v != "-" && v != "—").then(|| v.to_owned())
}

/// Parses the file; what parses is returned with every problem found.
pub fn parse(src: &str) -> (Model, Vec<Problem>) {
    let mut m = Model::default();
    let mut problems = Vec::new();
    let mut section = Section::None;
    let mut header_seen = false;
    for (i, raw) in src.lines().enumerate() {
        let line = i + 1;
        let text = raw.trim();
        if let Some(h) = text.strip_prefix("## ") {
            section = match h.trim().to_ascii_lowercase().as_str() {
                "settings" => Section::Settings,
                "scoring" => Section::Scoring,
                "handoff rules" => Section::Rules,
                "territories" => Section::Territories,
                "reps" => Section::Reps,
                _ => Section::Other,
            };
            header_seen = false;
            continue;
        }
        if section == Section::Settings {
            if let Some(item) = text.strip_prefix("- ") {
                setting(line, item, &mut m.settings, &mut problems);
            }
            continue;
        }
        if !text.starts_with('|') || matches!(section, Section::None | Section::Other) {
            continue;
        }
        if !header_seen {
            header_seen = true;
            continue;
        }
        if text.starts_with("|-") || text.starts_with("| -") || text.starts_with("|:") {
            continue;
        }
        let cells: Vec<&str> = text.trim_matches('|').split('|').map(str::trim).collect();
        let want = match section {
            Section::Scoring => 5,
            Section::Rules => 3,
            Section::Territories => 2,
            Section::Reps => 6,
            _ => 0,
        };
        if cells.len() != want {
            problems.push(err(
                line,
                format!("expected {want} columns, found {}", cells.len()),
            ));
            continue;
        }
        let id = unquote(cells[0]).to_owned();
        if !is_id(&id) {
            problems.push(err(line, format!("name {id:?} must be snake_case")));
            continue;
        }
        match section {
            Section::Scoring => {
                let Some(signal) = signal(line, cells[1], &mut problems) else {
                    continue;
                };
                let Ok(points) = unquote(cells[2]).parse::<i64>() else {
                    problems.push(err(
                        line,
                        format!("factor {id}: points must be a whole number"),
                    ));
                    continue;
                };
                let cap = match optional(cells[3]).map(|c| c.parse::<i64>()) {
                    None => None,
                    Some(Ok(c)) if c >= 0 => Some(c),
                    Some(_) => {
                        problems.push(err(
                            line,
                            format!("factor {id}: the cap must be a whole number ≥ 0"),
                        ));
                        continue;
                    }
                };
                let half_life = match optional(cells[4]) {
                    None => None,
                    Some(h) => match leading_number(&h) {
                        Some(d) if d > 0 => Some(f64::from(d)),
                        _ => {
                            problems.push(err(
                                line,
                                format!("factor {id}: the half-life reads N days with N > 0"),
                            ));
                            continue;
                        }
                    },
                };
                if matches!(signal, Signal::Trait(_)) && (cap.is_some() || half_life.is_some()) {
                    problems.push(err(
                        line,
                        format!("factor {id}: a trait factor has no cap or half-life (they apply to events)"),
                    ));
                }
                m.factors.push(Factor {
                    id,
                    signal,
                    points,
                    cap,
                    half_life_days: half_life,
                    line,
                });
            }
            Section::Rules => {
                let Some(trigger) = trigger(line, cells[1], &mut problems) else {
                    continue;
                };
                let Some(priority) = Priority::parse(unquote(cells[2])) else {
                    problems.push(err(
                        line,
                        format!("rule {id}: priority must be immediate, priority or standard"),
                    ));
                    continue;
                };
                m.rules.push(Rule {
                    id,
                    trigger,
                    priority,
                    line,
                });
            }
            Section::Territories => {
                let when = unquote(cells[1]);
                let when = if when == "anyone else" || when == "*" {
                    None
                } else {
                    match condition(line, when, &format!("territory {id}"), &mut problems) {
                        Some(c) => Some(c),
                        None => continue,
                    }
                };
                m.territories.push(Territory {
                    team: id,
                    when,
                    line,
                });
            }
            Section::Reps => {
                let email = unquote(cells[1]).to_owned();
                if !email.contains('@') {
                    problems.push(err(
                        line,
                        format!("rep {id}: {email:?} is not an email address"),
                    ));
                }
                let capacity = match unquote(cells[5]).parse::<u32>() {
                    Ok(c) if c > 0 => c,
                    _ => {
                        problems.push(err(
                            line,
                            format!("rep {id}: capacity must be a whole number > 0"),
                        ));
                        continue;
                    }
                };
                let rep = Rep {
                    id,
                    email,
                    team: unquote(cells[2]).to_owned(),
                    salesforce: optional(cells[3]),
                    hubspot: optional(cells[4]),
                    capacity,
                    line,
                };
                if rep.salesforce.is_none() && rep.hubspot.is_none() {
                    problems.push(err(
                        line,
                        format!(
                            "rep {}: give a Salesforce User Id or a HubSpot owner id",
                            rep.id
                        ),
                    ));
                }
                m.reps.push(rep);
            }
            _ => {}
        }
    }
    (m, problems)
}

fn setting(line: usize, item: &str, s: &mut Settings, problems: &mut Vec<Problem>) {
    let Some((name, rest)) = item.split_once(':') else {
        return;
    };
    // Commentary follows an em dash outside backticks.
    let value = match rest.trim().strip_prefix('`') {
        Some(q) => q.split_once('`').map_or(q, |(v, _)| v),
        None => rest.split(" — ").next().unwrap_or(rest),
    }
    .trim();
    let days = |problems: &mut Vec<Problem>| match leading_number(value) {
        Some(d) if d > 0 => Some(d),
        _ => {
            problems.push(err(
                line,
                format!("{}: expected N days, got {value:?}", name.trim()),
            ));
            None
        }
    };
    match name.trim() {
        "Handoff window" => s.window_days = days(problems).unwrap_or(s.window_days),
        "Reminder after" => s.reminder_days = days(problems).unwrap_or(s.reminder_days),
        "Task due" => s.task_due_days = days(problems).unwrap_or(s.task_due_days),
        "Customer" => {
            s.customer = condition(line, value, "Customer", problems);
            s.condition_lines.0 = line;
        }
        "Open opportunity" => {
            s.open_opportunity = condition(line, value, "Open opportunity", problems);
            s.condition_lines.1 = line;
        }
        "Email from" => {
            if value.contains('@') {
                s.email_from = value.to_owned();
            } else {
                problems.push(err(line, format!("Email from: {value:?} has no address")));
            }
        }
        other => problems.push(Problem {
            line,
            error: false,
            message: format!("unknown setting {other:?}"),
        }),
    }
}

/// Trait paths of a condition that are not in the plan, and whether it uses anything but traits.
fn check_condition(c: &Condition, plan: &TrackingPlan) -> (Vec<String>, bool) {
    let mut paths = Vec::new();
    c.trait_paths(&mut paths);
    let unknown = paths
        .into_iter()
        .filter(|p| {
            let name = match p.split_once('.') {
                Some(("traits", n)) | Some(("account", n)) => n,
                Some(_) => return true,
                None => p.as_str(),
            };
            plan.trait_spec(name).is_none()
        })
        .collect();
    let mut performed = Vec::new();
    c.performed(&mut performed);
    let mut audiences = Vec::new();
    c.audiences(&mut audiences);
    (unknown, !performed.is_empty() || !audiences.is_empty())
}

/// Checks the model against the plan (traits, events), the audiences it names and itself.
pub fn validate(m: &Model, plan: &TrackingPlan, audiences: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let traits_only = |c: &Condition, line: usize, what: &str, problems: &mut Vec<Problem>| {
        let (unknown, other) = check_condition(c, plan);
        for p in unknown {
            problems.push(err(
                line,
                format!("{what}: trait {p:?} is not in the tracking plan"),
            ));
        }
        if other {
            problems.push(err(
                line,
                format!(
                    "{what}: only trait comparisons are allowed here (no PERFORMED or IN AUDIENCE)"
                ),
            ));
        }
    };
    let event_known = |e: &str| plan.event(e).is_some();
    let mut seen = HashSet::new();
    for f in &m.factors {
        if !seen.insert(f.id.as_str()) {
            problems.push(err(f.line, format!("factor {} is defined twice", f.id)));
        }
        match &f.signal {
            Signal::Trait(c) => traits_only(c, f.line, &format!("factor {}", f.id), &mut problems),
            Signal::Event(e) if !event_known(e) => problems.push(err(
                f.line,
                format!("factor {}: event {e:?} is not in the tracking plan", f.id),
            )),
            _ => {}
        }
    }
    let mut seen = HashSet::new();
    for r in &m.rules {
        if !seen.insert(r.id.as_str()) {
            problems.push(err(r.line, format!("rule {} is defined twice", r.id)));
        }
        match &r.trigger {
            Trigger::Behaviour(Signal::Event(e)) if !event_known(e) => problems.push(err(
                r.line,
                format!("rule {}: event {e:?} is not in the tracking plan", r.id),
            )),
            Trigger::Nurture { audience, .. } if !audiences.iter().any(|a| a == audience) => {
                problems.push(err(
                    r.line,
                    format!(
                        "rule {}: audience {audience:?} is not defined in AUDIENCES.md",
                        r.id
                    ),
                ))
            }
            _ => {}
        }
    }
    if m.rules
        .iter()
        .filter(|r| matches!(r.trigger, Trigger::Score(_)))
        .count()
        > 1
    {
        problems.push(err(
            m.rules
                .iter()
                .filter(|r| matches!(r.trigger, Trigger::Score(_)))
                .nth(1)
                .map_or(0, |r| r.line),
            "only one score threshold rule is allowed",
        ));
    }
    if let Some(c) = &m.settings.customer {
        traits_only(c, m.settings.condition_lines.0, "Customer", &mut problems);
    }
    if let Some(c) = &m.settings.open_opportunity {
        traits_only(
            c,
            m.settings.condition_lines.1,
            "Open opportunity",
            &mut problems,
        );
    }
    let mut teams = HashSet::new();
    for t in &m.territories {
        if !teams.insert(t.team.as_str()) {
            problems.push(err(
                t.line,
                format!("territory {} is defined twice", t.team),
            ));
        }
        if let Some(c) = &t.when {
            traits_only(c, t.line, &format!("territory {}", t.team), &mut problems);
        }
        if !m.reps.iter().any(|r| r.team == t.team) {
            problems.push(err(
                t.line,
                format!("territory {} has no rep in ## Reps", t.team),
            ));
        }
    }
    if !m.rules.is_empty() && !m.territories.iter().any(|t| t.when.is_none()) {
        problems.push(Problem {
            line: m.territories.last().map_or(0, |t| t.line),
            error: false,
            message: "no territory takes anyone else: people matching none are not handed off"
                .into(),
        });
    }
    let mut reps = HashSet::new();
    for r in &m.reps {
        if !reps.insert(r.id.as_str()) {
            problems.push(err(r.line, format!("rep {} is listed twice", r.id)));
        }
        if !teams.contains(r.team.as_str()) {
            problems.push(err(
                r.line,
                format!(
                    "rep {}: team {:?} is not a territory in ## Territories",
                    r.id, r.team
                ),
            ));
        }
    }
    problems.sort_by_key(|p| p.line);
    problems
}

/// Parses and validates; `Err` lists the errors as `FILE:LINE: message`.
pub fn load(
    src: &str,
    file: &str,
    plan: &TrackingPlan,
    audiences: &[String],
) -> Result<(Model, Vec<Problem>), Vec<String>> {
    let (m, mut problems) = parse(src);
    problems.extend(validate(&m, plan, audiences));
    let errors: Vec<String> = problems
        .iter()
        .filter(|p| p.error)
        .map(|p| format!("{file}:{}: {}", p.line, p.message))
        .collect();
    if errors.is_empty() {
        Ok((m, problems.into_iter().filter(|p| !p.error).collect()))
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    fn audiences() -> Vec<String> {
        let (defs, _) =
            crate::audiences::definitions::parse_file(include_str!("../../../AUDIENCES.md"));
        defs.into_iter().map(|d| d.id).collect()
    }

    #[test]
    fn the_repository_file_is_valid() {
        let (m, problems) = parse(include_str!("../../../LEAD_HANDOFF.md"));
        assert!(problems.is_empty(), "{problems:?}");
        let problems = validate(&m, &plan(), &audiences());
        assert!(problems.iter().all(|p| !p.error), "{problems:?}");
        assert!(m.factors.len() >= 4);
        assert_eq!(m.rules.len(), 5);
        assert!(m.reps.len() >= 3);
        assert_eq!(m.settings.window_days, 90);
    }

    #[test]
    fn mistakes_are_reported_at_their_lines() {
        let src = "# X\n\n## Scoring\n| Factor | When | Points | Cap | Half-life |\n|---|---|---|---|---|\n\
| `a` | trait `job_title CONTAINS` | 10 | | |\n\
| `b` | event `no_such_event` | 10 | 30 | 7 days |\n\
| `c` | trait `shoe_size > 3` | 10 | | |\n\
\n## Handoff rules\n| Rule | Trigger | Priority |\n|---|---|---|\n\
| `r` | audience `nope` for 14 days | standard |\n\
| `s` | score >= 500 | urgent |\n\
\n## Territories\n| Team | When |\n|---|---|\n| `emea` | `country = 'DE'` |\n\
\n## Reps\n| Rep | Email | Team | Salesforce owner | HubSpot owner | Capacity |\n|---|---|---|---|---|---|\n\
| `ana` | ana@x.example | apac | | | 0 |\n";
        let (m, mut problems) = parse(src);
        problems.extend(validate(&m, &plan(), &audiences()));
        let lines: Vec<usize> = problems
            .iter()
            .filter(|p| p.error)
            .map(|p| p.line)
            .collect();
        for want in [6, 7, 8, 13, 14, 24] {
            assert!(lines.contains(&want), "line {want} in {problems:#?}");
        }
        assert!(
            problems.iter().any(|p| p.message.contains("shoe_size")
                && p.message.contains("not in the tracking plan"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.line == 19 && p.message.contains("no rep"))
        );
    }

    #[test]
    fn a_setting_condition_on_an_unknown_trait_is_reported_at_its_line() {
        let (m, _) = parse("## Settings\n\n- Customer: `is_paying = true`\n");
        let problems = validate(&m, &plan(), &audiences());
        assert!(
            problems
                .iter()
                .any(|p| p.line == 3 && p.error && p.message.contains("is_paying")),
            "{problems:?}"
        );
    }

    #[test]
    fn settings_read_values_and_ignore_commentary() {
        let (m, problems) = parse(
            "## Settings\n\n- Handoff window: 30 days — nobody twice\n- Customer: `lifecycle_stage = 'customer'`\n- Email from: `Sales <s@x.example>`\n",
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(m.settings.window_days, 30);
        assert!(m.settings.customer.is_some());
        assert_eq!(m.settings.email_from, "Sales <s@x.example>");
    }
}
