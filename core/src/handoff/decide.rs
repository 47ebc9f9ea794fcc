//! The handoff decisions, pure: whether a person is handed off and by which rule ([`decide`]),
//! to whom ([`assign`]: territory, then round robin among the team's reps with capacity), what the
//! first follow-up Task and the rep's email say ([`Brief`]), and what to do with a handoff whose
//! Task may still be open ([`followup`]).

use super::model::{Model, Rule, Trigger};
use super::score::{DAY_MS, Event, Facts, Score};
use crate::identity::ProfileId;
use serde::Serialize;
use serde_json::{Value, json};
use std::collections::HashMap;

/// What the decision needs to know of one person.
#[derive(Debug, Clone)]
pub struct Candidate<'a> {
    /// Their traits, account traits and recent events.
    pub facts: &'a Facts,
    /// Their current score.
    pub score: &'a Score,
    /// The events that just arrived (behaviour triggers look only at these).
    pub new_events: &'a [Event],
    /// Audiences they are in, with when they entered (ms).
    pub memberships: &'a [(String, i64)],
    /// When they were last handed off (ms).
    pub last_handoff: Option<i64>,
}

/// Why a person a rule applies to is not handed off.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum Skip {
    /// Already a customer.
    Customer,
    /// Holds an open opportunity.
    OpenOpportunity,
    /// Handed off within the window.
    HandedOffRecently {
        /// When (ms).
        at: i64,
    },
}

/// Whether `rule` applies to the candidate now.
fn applies(rule: &Rule, c: &Candidate<'_>, now: i64) -> bool {
    match &rule.trigger {
        Trigger::Score(n) => c.score.total >= *n,
        // A behaviour counts when it is recent (not an old event imported late).
        Trigger::Behaviour(signal) => c
            .new_events
            .iter()
            .any(|e| e.matches(signal) && now - e.at < DAY_MS),
        Trigger::Nurture { audience, days } => c
            .memberships
            .iter()
            .any(|(a, entered)| a == audience && now - entered >= i64::from(*days) * DAY_MS),
    }
}

/// The first rule (in file order) that applies, unless the person is excluded: `Ok(None)` when no
/// rule applies, `Err` when one does but the person is a customer, holds an open opportunity or was
/// handed off within the window.
pub fn decide<'m>(model: &'m Model, c: &Candidate<'_>, now: i64) -> Result<Option<&'m Rule>, Skip> {
    let Some(rule) = model.rules.iter().find(|r| applies(r, c, now)) else {
        return Ok(None);
    };
    if let Some(at) = c.last_handoff
        && now - at < i64::from(model.settings.window_days) * DAY_MS
    {
        return Err(Skip::HandedOffRecently { at });
    }
    if model
        .settings
        .customer
        .as_ref()
        .is_some_and(|cond| c.facts.holds(cond))
    {
        return Err(Skip::Customer);
    }
    if model
        .settings
        .open_opportunity
        .as_ref()
        .is_some_and(|cond| c.facts.holds(cond))
    {
        return Err(Skip::OpenOpportunity);
    }
    Ok(Some(rule))
}

/// Who has how much on their plate, and who in each team was assigned last.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Load {
    /// Rep → open handoffs.
    pub open: HashMap<String, u32>,
    /// Team → the rep assigned last.
    pub last: HashMap<String, String>,
}

impl Load {
    /// Counts an assignment just made.
    pub fn record(&mut self, a: &Assignment) {
        *self.open.entry(a.rep.clone()).or_default() += 1;
        self.last.insert(a.team.clone(), a.rep.clone());
    }
}

/// Where a handoff goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assignment {
    /// The team (territory).
    pub team: String,
    /// The rep.
    pub rep: String,
    /// How they were chosen, for the log.
    pub how: String,
}

/// Why nobody could be assigned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoRep {
    /// No territory matches and none takes anyone else.
    #[error("no territory matches this person")]
    NoTerritory,
    /// Every rep of the team is at capacity.
    #[error("every rep of team {0} is at capacity")]
    TeamFull(String),
}

/// Picks the team by territory, then the next rep of the team in roster order after the one
/// assigned last, skipping reps at capacity.
pub fn assign(model: &Model, facts: &Facts, load: &Load) -> Result<Assignment, NoRep> {
    let territory = model
        .territories
        .iter()
        .find(|t| t.when.as_ref().is_none_or(|c| facts.holds(c)))
        .ok_or(NoRep::NoTerritory)?;
    let team: Vec<_> = model
        .reps
        .iter()
        .filter(|r| r.team == territory.team)
        .collect();
    let start = load
        .last
        .get(&territory.team)
        .and_then(|last| team.iter().position(|r| r.id == *last))
        .map_or(0, |i| i + 1);
    for k in 0..team.len() {
        let rep = team[(start + k) % team.len()];
        let open = load.open.get(&rep.id).copied().unwrap_or(0);
        if open < rep.capacity {
            let why = if territory.when.is_some() {
                format!("territory {}", territory.team)
            } else {
                format!("team {} (no territory matched)", territory.team)
            };
            let turn = if k == 0 {
                "round robin".to_owned()
            } else {
                format!("round robin, {k} at capacity skipped")
            };
            return Ok(Assignment {
                team: territory.team.clone(),
                rep: rep.id.clone(),
                how: format!("{why}, {turn}"),
            });
        }
    }
    Err(NoRep::TeamFull(territory.team.clone()))
}

/// What a handoff carries to the rep: the profile summary, the engagement history and the score
/// breakdown, as stored in the log and written into the Task and the email.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
pub struct Brief {
    /// The person's name, or their email, or their id.
    pub who: String,
    /// Profile summary: name, email, company, title, country, industry, employees, lead status.
    pub summary: Vec<(String, String)>,
    /// Latest first: (time ms, what).
    pub engagement: Vec<(i64, String)>,
    /// Factor → points.
    pub breakdown: Vec<(String, i64)>,
    /// The score.
    pub score: i64,
    /// The rule that fired.
    pub rule: String,
    /// Its priority.
    pub priority: String,
    /// The Touchpoint profile id.
    pub profile: ProfileId,
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// How an event reads in the engagement history.
pub fn describe(e: &Event) -> String {
    match (e.kind.as_str(), &e.event, &e.path) {
        ("track", Some(name), _) => name.clone(),
        ("page", _, Some(path)) => format!("visited {path}"),
        (kind, _, _) => kind.to_owned(),
    }
}

/// Builds the brief of a handoff.
pub fn brief(profile: &ProfileId, facts: &Facts, score: &Score, rule: &Rule) -> Brief {
    let t = |k: &str| facts.traits.get(k).and_then(text);
    let a = |k: &str| facts.account.get(k).and_then(text);
    let name = t("name").or_else(|| match (t("first_name"), t("last_name")) {
        (Some(f), Some(l)) => Some(format!("{f} {l}")),
        (f, l) => f.or(l),
    });
    let mut summary = Vec::new();
    for (label, value) in [
        ("Name", name.clone()),
        ("Email", t("email")),
        ("Company", t("company").or_else(|| a("name"))),
        ("Title", t("job_title")),
        ("Country", t("country")),
        ("Industry", a("industry")),
        ("Employees", a("employees")),
        ("Lead status", t("lead_status")),
        ("Plan", t("plan_tier")),
    ] {
        if let Some(v) = value {
            summary.push((label.to_owned(), v));
        }
    }
    let mut events: Vec<&Event> = facts
        .events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "track" | "page"))
        .collect();
    events.sort_by_key(|e| std::cmp::Reverse(e.at));
    Brief {
        who: name
            .or_else(|| t("email"))
            .unwrap_or_else(|| profile.to_string()),
        summary,
        engagement: events
            .iter()
            .take(20)
            .map(|e| (e.at, describe(e)))
            .collect(),
        breakdown: score
            .breakdown
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect(),
        score: score.total,
        rule: rule.id.clone(),
        priority: rule.priority.as_str().to_owned(),
        profile: profile.clone(),
    }
}

fn day(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|d| d.format("%Y-%m-%d %H:%M UTC").to_string())
        .unwrap_or_default()
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

impl Brief {
    /// The Task's subject.
    pub fn subject(&self) -> String {
        format!(
            "Follow up with {} ({} handoff, score {})",
            self.who, self.priority, self.score
        )
    }

    /// The Task's body (plain text).
    pub fn body(&self) -> String {
        let mut out = format!(
            "Handed off by rule {} ({}). Lead score {}.\n\nScore breakdown:\n",
            self.rule, self.priority, self.score
        );
        for (f, p) in &self.breakdown {
            out.push_str(&format!("- {f}: {p}\n"));
        }
        out.push_str("\nProfile:\n");
        for (k, v) in &self.summary {
            out.push_str(&format!("- {k}: {v}\n"));
        }
        out.push_str("\nEngagement history (latest first):\n");
        for (at, what) in &self.engagement {
            out.push_str(&format!("- {} {what}\n", day(*at)));
        }
        out.push_str(&format!("\nTouchpoint profile: {}\n", self.profile));
        out
    }

    /// The rep's email (HTML) about a new handoff or, with `reminder`, a Task still open.
    pub fn email(&self, rep: &str, reminder: bool) -> (String, String) {
        let subject = if reminder {
            format!("Reminder: your follow-up with {} is still open", self.who)
        } else {
            format!("New {} lead for you: {}", self.priority, self.who)
        };
        let mut html = format!(
            "<p>Hi {},</p><p>{} Lead score <b>{}</b> (rule {}).</p><h3>Score breakdown</h3><ul>",
            escape(rep),
            if reminder {
                "The first follow-up Task of this handoff is still open in the CRM."
            } else {
                "A lead was handed off to you and a follow-up Task is waiting in the CRM."
            },
            self.score,
            escape(&self.rule)
        );
        for (f, p) in &self.breakdown {
            html.push_str(&format!("<li>{}: {p}</li>", escape(f)));
        }
        html.push_str("</ul><h3>Profile</h3><ul>");
        for (k, v) in &self.summary {
            html.push_str(&format!("<li>{}: {}</li>", escape(k), escape(v)));
        }
        html.push_str("</ul><h3>Engagement history</h3><ul>");
        for (at, what) in &self.engagement {
            html.push_str(&format!("<li>{} {}</li>", day(*at), escape(what)));
        }
        html.push_str("</ul>");
        (subject, html)
    }

    /// The brief as JSON for the log.
    pub fn to_json(&self) -> Value {
        json!({
            "who": self.who,
            "summary": self.summary.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "engagement": self.engagement.iter().map(|(at, w)| json!([at, w])).collect::<Vec<_>>(),
            "breakdown": self.breakdown.iter().map(|(k, v)| json!([k, v])).collect::<Vec<_>>(),
            "score": self.score, "rule": self.rule, "priority": self.priority, "profile": self.profile,
        })
    }
}

/// What to do with an open handoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Followup {
    /// Nothing yet.
    Wait,
    /// Read the Task's status back from the CRM: the reminder is due.
    Check,
}

/// Whether an open handoff's reminder is due: once, `reminder_days` after the handoff.
pub fn followup(state: &str, created_at: i64, reminder_days: u32, now: i64) -> Followup {
    if state == "open" && now - created_at >= i64::from(reminder_days) * DAY_MS {
        Followup::Check
    } else {
        Followup::Wait
    }
}

/// Whether a Salesforce Task (`Status`, `IsClosed`) is still open.
pub fn salesforce_task_open(task: &Value) -> bool {
    task["IsClosed"] != json!(true) && task["Status"].as_str() != Some("Completed")
}

/// Whether a HubSpot task (`hs_task_status`) is still open.
pub fn hubspot_task_open(task: &Value) -> bool {
    task["properties"]["hs_task_status"].as_str() != Some("COMPLETED")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handoff::model::parse;
    use crate::handoff::score::score;

    const NOW: i64 = 1_800_000_000_000;

    fn model() -> Model {
        parse(include_str!("../../../LEAD_HANDOFF.md")).0
    }

    fn facts(traits: Value, account: Value) -> Facts {
        Facts {
            traits: traits.as_object().cloned().unwrap_or_default(),
            account: account.as_object().cloned().unwrap_or_default(),
            events: Vec::new(),
        }
    }

    fn track(name: &str) -> Event {
        Event {
            kind: "track".into(),
            event: Some(name.into()),
            path: None,
            at: NOW,
        }
    }

    fn rule_of(
        m: &Model,
        f: &Facts,
        new: &[Event],
        memberships: &[(String, i64)],
        last: Option<i64>,
    ) -> Result<Option<String>, Skip> {
        let s = score(m, f, NOW);
        decide(
            m,
            &Candidate {
                facts: f,
                score: &s,
                new_events: new,
                memberships,
                last_handoff: last,
            },
            NOW,
        )
        .map(|r| r.map(|r| r.id.clone()))
    }

    #[test]
    fn a_score_at_the_threshold_hands_off_immediately() {
        let m = model();
        let mut f = facts(json!({"job_title": "VP Sales"}), json!({"employees": 900}));
        f.events = (0..4).map(|_| track("teammate_invited")).collect();
        assert_eq!(
            rule_of(&m, &f, &[], &[], None),
            Ok(Some("score_threshold".into()))
        );
        f.events.pop();
        assert_eq!(rule_of(&m, &f, &[], &[], None), Ok(None), "470 points");
    }

    #[test]
    fn behaviour_triggers_look_at_the_new_events_only() {
        let m = model();
        let mut f = facts(json!({}), json!({}));
        f.events = vec![track("demo_requested")];
        assert_eq!(rule_of(&m, &f, &[], &[], None), Ok(None));
        assert_eq!(
            rule_of(&m, &f, &[track("demo_requested")], &[], None),
            Ok(Some("demo_request".into()))
        );
        assert_eq!(
            rule_of(&m, &f, &[track("trial_started")], &[], None),
            Ok(Some("trial_signup".into()))
        );
        let mut imported = track("demo_requested");
        imported.at = NOW - 3 * DAY_MS;
        assert_eq!(
            rule_of(&m, &f, &[imported], &[], None),
            Ok(None),
            "a late import of an old request"
        );
    }

    #[test]
    fn nurture_hands_off_after_fourteen_days_in_the_audience() {
        let m = model();
        let f = facts(json!({"lead_status": "Nurturing"}), json!({}));
        let entered = |days: i64| vec![("lead_nurture".to_owned(), NOW - days * DAY_MS)];
        assert_eq!(rule_of(&m, &f, &[], &entered(13), None), Ok(None));
        assert_eq!(
            rule_of(&m, &f, &[], &entered(14), None),
            Ok(Some("nurture_14_days".into()))
        );
    }

    #[test]
    fn customers_open_opportunities_and_recent_handoffs_are_not_handed_off() {
        let m = model();
        let demo = [track("demo_requested")];
        let customer = facts(json!({"lifecycle_stage": "customer"}), json!({}));
        assert_eq!(
            rule_of(&m, &customer, &demo, &[], None),
            Err(Skip::Customer)
        );
        let opp = facts(json!({}), json!({"open_opportunity": true}));
        assert_eq!(
            rule_of(&m, &opp, &demo, &[], None),
            Err(Skip::OpenOpportunity)
        );
        let f = facts(json!({}), json!({}));
        let at = NOW - 10 * DAY_MS;
        assert_eq!(
            rule_of(&m, &f, &demo, &[], Some(at)),
            Err(Skip::HandedOffRecently { at })
        );
        assert_eq!(
            rule_of(&m, &f, &demo, &[], Some(NOW - 91 * DAY_MS)),
            Ok(Some("demo_request".into())),
            "the window is 90 days"
        );
    }

    #[test]
    fn territories_pick_the_team_and_reps_take_turns_within_it() {
        let m = model();
        let mut load = Load::default();
        let us = facts(json!({"country": "US"}), json!({}));
        let mut reps = Vec::new();
        for _ in 0..3 {
            let a = assign(&m, &us, &load).unwrap();
            load.record(&a);
            reps.push(a.rep);
        }
        assert_eq!(reps, ["ines", "jon", "ines"]);
        let de = facts(json!({"country": "DE"}), json!({"industry": "Healthcare"}));
        let a = assign(&m, &de, &load).unwrap();
        assert_eq!((a.team.as_str(), a.rep.as_str()), ("emea", "erik"));
        assert!(a.how.contains("territory emea"), "{}", a.how);
        let health = facts(json!({}), json!({"industry": "Healthcare"}));
        assert_eq!(assign(&m, &health, &load).unwrap().rep, "hana");
    }

    #[test]
    fn a_rep_at_capacity_is_skipped_and_a_full_team_gets_nobody() {
        let m = model();
        let us = facts(json!({}), json!({}));
        let mut load = Load::default();
        load.open.insert("ines".into(), 25);
        let a = assign(&m, &us, &load).unwrap();
        assert_eq!(a.rep, "jon");
        load.open.insert("jon".into(), 25);
        assert_eq!(
            assign(&m, &us, &load),
            Err(NoRep::TeamFull("inbound".into()))
        );
    }

    #[test]
    fn the_brief_carries_summary_engagement_and_breakdown() {
        let m = model();
        let mut f = facts(
            json!({"first_name": "Ada", "last_name": "Lovelace", "email": "ada@x.example", "job_title": "VP R&D"}),
            json!({"employees": 300, "industry": "Software"}),
        );
        f.events = vec![track("teammate_invited"), track("demo_requested")];
        let s = score(&m, &f, NOW);
        let b = brief(&ProfileId::from("p-1"), &f, &s, &m.rules[1]);
        assert_eq!(b.who, "Ada Lovelace");
        let body = b.body();
        for needle in [
            "rule demo_request (priority)",
            "- senior_role: 150",
            "- Email: ada@x.example",
            "- Employees: 300",
            "demo_requested",
            "Touchpoint profile: p-1",
        ] {
            assert!(body.contains(needle), "{needle} in {body}");
        }
        let (subject, html) = b.email("Ines", false);
        assert!(subject.contains("Ada Lovelace"));
        assert!(html.contains("VP R&amp;D"), "{html}");
        let back: Brief = serde_json::from_value(serde_json::to_value(&b).unwrap()).unwrap();
        assert_eq!(back, b);
    }

    #[test]
    fn the_reminder_is_due_once_after_the_delay() {
        assert_eq!(followup("open", NOW, 3, NOW + 2 * DAY_MS), Followup::Wait);
        assert_eq!(followup("open", NOW, 3, NOW + 3 * DAY_MS), Followup::Check);
        assert_eq!(
            followup("reminded", NOW, 3, NOW + 9 * DAY_MS),
            Followup::Wait
        );
        assert!(salesforce_task_open(
            &json!({"Status": "Not Started", "IsClosed": false})
        ));
        assert!(!salesforce_task_open(
            &json!({"Status": "Completed", "IsClosed": true})
        ));
        assert!(!hubspot_task_open(
            &json!({"properties": {"hs_task_status": "COMPLETED"}})
        ));
    }
}
