//! `AUDIENCES.md`: audience definitions kept in git beside the tracking plan, and their validation
//! against the plan (events, traits, audience references, cycles).
//!
//! ```markdown
//! ## product_qualified_lead
//! Name: Product-qualified lead
//! A workspace with more than three seats that connected an integration in the last 30 days.
//! ```audience
//! account.seats_provisioned > 3 AND PERFORMED integration_connected WITHIN 30 DAYS
//! ```
//! ```

use super::condition::Condition;
use std::collections::{HashMap, HashSet};
use touchpoint_tracking_plan::TrackingPlan;

/// One audience definition.
#[derive(Debug, Clone, PartialEq)]
pub struct Definition {
    /// Stable id (snake_case), e.g. `product_qualified_lead`.
    pub id: String,
    /// Human name.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Who is in it.
    pub condition: Condition,
    /// Line of its heading in the file (0 when created through the API).
    pub line: usize,
}

/// A problem in the audiences file or a definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// 1-based line (0 when not from a file).
    pub line: usize,
    /// Whether it prevents loading.
    pub error: bool,
    /// What is wrong.
    pub message: String,
}

/// An audience section while it is being read.
struct Section {
    id: String,
    line: usize,
    name: String,
    description: Vec<String>,
    /// (line of the condition's first line, its text)
    condition: Option<(usize, String)>,
}

fn is_id(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Parses the file; definitions that parse are returned with every problem found.
pub fn parse_file(src: &str) -> (Vec<Definition>, Vec<Problem>) {
    let mut defs = Vec::new();
    let mut problems = Vec::new();
    let mut current: Option<Section> = None;
    let mut in_block: Option<(usize, Vec<String>)> = None;
    let finish = |cur: Option<Section>, defs: &mut Vec<Definition>, problems: &mut Vec<Problem>| {
        let Some(Section {
            id,
            line,
            name,
            description: desc,
            condition: cond,
        }) = cur
        else {
            return;
        };
        let Some((cond_line, text)) = cond else {
            problems.push(Problem {
                line,
                error: true,
                message: format!("audience {id} has no ```audience block"),
            });
            return;
        };
        match Condition::parse(&text) {
            Ok(condition) => defs.push(Definition {
                name: if name.is_empty() { id.clone() } else { name },
                id,
                description: desc.join(" "),
                condition,
                line,
            }),
            Err(e) => problems.push(Problem {
                line: cond_line,
                error: true,
                message: format!("audience {id}: {e}"),
            }),
        }
    };
    for (i, raw) in src.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if let Some((start, buf)) = &mut in_block {
            if line.starts_with("```") {
                let text = buf.join(" ");
                let start = *start;
                in_block = None;
                if let Some(cur) = &mut current {
                    if cur.condition.is_some() {
                        problems.push(Problem {
                            line: start,
                            error: true,
                            message: format!("audience {} has two conditions", cur.id),
                        });
                    }
                    cur.condition = Some((start + 1, text));
                }
            } else {
                buf.push(line.to_owned());
            }
            continue;
        }
        if let Some(id) = line.strip_prefix("## ") {
            finish(current.take(), &mut defs, &mut problems);
            let id = id.trim().to_owned();
            if !is_id(&id) {
                problems.push(Problem {
                    line: line_no,
                    error: true,
                    message: format!("audience id {id:?} must be snake_case"),
                });
            }
            current = Some(Section {
                id,
                line: line_no,
                name: String::new(),
                description: Vec::new(),
                condition: None,
            });
        } else if line.starts_with("```audience") {
            if current.is_none() {
                problems.push(Problem {
                    line: line_no,
                    error: true,
                    message: "condition block outside an audience section".into(),
                });
            }
            in_block = Some((line_no, Vec::new()));
        } else if let Some(cur) = &mut current {
            if let Some(name) = line.strip_prefix("Name:") {
                cur.name = name.trim().to_owned();
            } else if !line.is_empty() {
                cur.description.push(line.to_owned());
            }
        }
    }
    if let Some((start, _)) = in_block {
        problems.push(Problem {
            line: start,
            error: true,
            message: "unterminated ```audience block".into(),
        });
    }
    finish(current.take(), &mut defs, &mut problems);
    let mut seen = HashMap::new();
    for d in &defs {
        if let Some(first) = seen.insert(d.id.clone(), d.line) {
            problems.push(Problem {
                line: d.line,
                error: true,
                message: format!("audience {} already defined on line {first}", d.id),
            });
        }
    }
    (defs, problems)
}

const COMPUTED: [&str; 5] = [
    "messages_total",
    "first_seen",
    "last_seen",
    "active_days_30d",
    "journey_stage",
];

/// Checks definitions against the plan and each other. `known` lists audience ids that exist
/// elsewhere (e.g. in the database) and may be referenced.
pub fn validate(defs: &[Definition], plan: &TrackingPlan, known: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let ids: HashSet<&str> = defs
        .iter()
        .map(|d| d.id.as_str())
        .chain(known.iter().map(String::as_str))
        .collect();
    for d in defs {
        let mut paths = Vec::new();
        d.condition.trait_paths(&mut paths);
        for path in paths {
            let known_path = match path.split_once('.') {
                Some(("computed", name)) => COMPUTED.contains(&name),
                Some(("account", name)) | Some(("traits", name)) => plan.trait_spec(name).is_some(),
                _ => plan.trait_spec(&path).is_some(),
            };
            if !known_path {
                problems.push(Problem {
                    line: d.line,
                    error: path.starts_with("computed."),
                    message: format!(
                        "audience {}: trait {path:?} is not in the tracking plan",
                        d.id
                    ),
                });
            }
        }
        let mut performed = Vec::new();
        d.condition.performed(&mut performed);
        for p in performed {
            if p.event != "any" && plan.event(&p.event).is_none() {
                problems.push(Problem {
                    line: d.line,
                    error: false,
                    message: format!(
                        "audience {}: event {:?} is not in the tracking plan",
                        d.id, p.event
                    ),
                });
            }
        }
        let mut refs = Vec::new();
        d.condition.audiences(&mut refs);
        for r in refs {
            if !ids.contains(r.as_str()) {
                problems.push(Problem {
                    line: d.line,
                    error: true,
                    message: format!("audience {}: IN AUDIENCE {r} refers to no audience", d.id),
                });
            }
        }
    }
    if let Err(cycle) = order(defs) {
        problems.push(Problem {
            line: defs.iter().find(|d| d.id == cycle).map_or(0, |d| d.line),
            error: true,
            message: format!("audience {cycle} depends on itself through IN AUDIENCE"),
        });
    }
    problems
}

/// Orders definitions so every audience comes after those it refers to; `Err(id)` names one on a cycle.
pub fn order(defs: &[Definition]) -> Result<Vec<&Definition>, String> {
    let by_id: HashMap<&str, &Definition> = defs.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut out: Vec<&Definition> = Vec::with_capacity(defs.len());
    let mut state: HashMap<&str, u8> = HashMap::new(); // 1 = visiting, 2 = done
    fn visit<'a>(
        d: &'a Definition,
        by_id: &HashMap<&str, &'a Definition>,
        state: &mut HashMap<&'a str, u8>,
        out: &mut Vec<&'a Definition>,
    ) -> Result<(), String> {
        match state.get(d.id.as_str()) {
            Some(2) => return Ok(()),
            Some(_) => return Err(d.id.clone()),
            None => {}
        }
        state.insert(&d.id, 1);
        let mut refs = Vec::new();
        d.condition.audiences(&mut refs);
        for r in refs {
            if let Some(dep) = by_id.get(r.as_str()) {
                visit(dep, by_id, state, out)?;
            }
        }
        state.insert(&d.id, 2);
        out.push(d);
        Ok(())
    }
    for d in defs {
        visit(d, &by_id, &mut state, &mut out)?;
    }
    Ok(out)
}

/// The audiences each definition refers to with `IN AUDIENCE`.
fn references(d: &Definition) -> Vec<String> {
    let mut refs = Vec::new();
    d.condition.audiences(&mut refs);
    refs
}

/// Orders what can be ordered: every audience after those it refers to, leaving out each audience
/// on an `IN AUDIENCE` cycle or depending on one (returned apart, in their given order). One cycle
/// (two writers racing past the API's check) then stops only the audiences it touches. A
/// reference to an audience not in `defs` is ignored, as in [`order`].
pub fn order_acyclic(defs: &[Definition]) -> (Vec<&Definition>, Vec<&Definition>) {
    let known: HashSet<&str> = defs.iter().map(|d| d.id.as_str()).collect();
    let mut placed: HashSet<&str> = HashSet::new();
    let mut ordered: Vec<&Definition> = Vec::with_capacity(defs.len());
    let mut waiting: Vec<(&Definition, Vec<String>)> = defs
        .iter()
        .map(|d| {
            let refs = references(d)
                .into_iter()
                .filter(|r| known.contains(r.as_str()))
                .collect();
            (d, refs)
        })
        .collect();
    // Each pass places every audience whose references are all placed; at most one pass per
    // definition, since a pass that places nothing ends the loop.
    loop {
        let before = waiting.len();
        waiting.retain(|(d, refs)| {
            if refs.iter().all(|r| placed.contains(r.as_str())) {
                placed.insert(d.id.as_str());
                ordered.push(d);
                false
            } else {
                true
            }
        });
        if waiting.is_empty() || waiting.len() == before {
            break;
        }
    }
    (ordered, waiting.into_iter().map(|(d, _)| d).collect())
}

/// A path of `IN AUDIENCE` references from `id` back to itself, if one exists: `[a, b, a]`.
pub fn cycle_through(defs: &[Definition], id: &str) -> Option<Vec<String>> {
    let by_id: HashMap<&str, &Definition> = defs.iter().map(|d| (d.id.as_str(), d)).collect();
    let mut seen: HashSet<String> = HashSet::new();
    // Depth-first over (audience, the path that reached it); each audience expanded once.
    let mut stack: Vec<(String, Vec<String>)> = vec![(id.to_owned(), vec![id.to_owned()])];
    while let Some((at, path)) = stack.pop() {
        let Some(d) = by_id.get(at.as_str()) else {
            continue;
        };
        for r in references(d) {
            let mut next = path.clone();
            next.push(r.clone());
            if r == id {
                return Some(next);
            }
            if seen.insert(r.clone()) {
                stack.push((r, next));
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> TrackingPlan {
        touchpoint_tracking_plan::parse(include_str!("../../../TRACKING_PLAN.md")).unwrap()
    }

    #[test]
    fn the_repository_audiences_file_is_valid() {
        let (defs, problems) = parse_file(include_str!("../../../AUDIENCES.md"));
        assert!(problems.is_empty(), "{problems:?}");
        assert!(defs.iter().any(|d| d.id == "product_qualified_lead"));
        let problems = validate(&defs, &plan(), &[]);
        assert!(problems.is_empty(), "{problems:?}");
    }

    #[test]
    fn a_bad_condition_is_reported_at_its_line() {
        let src = "# A\n\n## broken\nName: Broken\n```audience\nplan_tier ===\n```\n";
        let (defs, problems) = parse_file(src);
        assert!(defs.is_empty());
        assert_eq!(problems[0].line, 6, "{problems:?}");
    }

    #[test]
    fn cycles_and_dangling_references_are_errors() {
        let src = "## a\n```audience\nIN AUDIENCE b\n```\n## b\n```audience\nIN AUDIENCE a\n```\n## c\n```audience\nIN AUDIENCE nope\n```\n";
        let (defs, problems) = parse_file(src);
        assert!(problems.is_empty());
        let problems = validate(&defs, &plan(), &[]);
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("depends on itself"))
        );
        assert!(
            problems
                .iter()
                .any(|p| p.message.contains("refers to no audience"))
        );
    }

    #[test]
    fn dependencies_come_first() {
        let src =
            "## b\n```audience\nIN AUDIENCE a\n```\n## a\n```audience\nplan_tier = 'pro'\n```\n";
        let (defs, _) = parse_file(src);
        let ids: Vec<&str> = order(&defs)
            .unwrap()
            .iter()
            .map(|d| d.id.as_str())
            .collect();
        assert_eq!(ids, vec!["a", "b"]);
    }

    fn defs(src: &str) -> Vec<Definition> {
        let (defs, problems) = parse_file(src);
        assert!(problems.is_empty(), "{problems:?}");
        defs
    }

    #[test]
    fn a_cycle_leaves_out_only_the_audiences_on_it_or_depending_on_it() {
        let defs = defs(
            "## a\n```audience\nIN AUDIENCE b\n```\n## b\n```audience\nIN AUDIENCE a\n```\n\
             ## c\n```audience\nIN AUDIENCE a\n```\n## d\n```audience\nIN AUDIENCE e\n```\n\
             ## e\n```audience\nplan_tier = 'pro'\n```\n## f\n```audience\nIN AUDIENCE gone\n```\n",
        );
        let (ordered, skipped) = order_acyclic(&defs);
        let ids = |v: &[&Definition]| v.iter().map(|d| d.id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&ordered), vec!["e", "f", "d"]);
        assert_eq!(ids(&skipped), vec!["a", "b", "c"]);
    }

    #[test]
    fn without_a_cycle_every_audience_is_ordered_after_its_references() {
        let defs = defs(
            "## c\n```audience\nIN AUDIENCE b AND IN AUDIENCE a\n```\n## b\n```audience\nIN AUDIENCE a\n```\n\
             ## a\n```audience\nplan_tier = 'pro'\n```\n",
        );
        let (ordered, skipped) = order_acyclic(&defs);
        let ids: Vec<&str> = ordered.iter().map(|d| d.id.as_str()).collect();
        assert_eq!(ids, vec!["a", "b", "c"]);
        assert!(skipped.is_empty());
    }

    #[test]
    fn the_cycle_through_an_audience_is_named_as_a_path() {
        let defs = defs(
            "## a\n```audience\nIN AUDIENCE b\n```\n## b\n```audience\nIN AUDIENCE c\n```\n\
             ## c\n```audience\nIN AUDIENCE a OR IN AUDIENCE d\n```\n## d\n```audience\nplan_tier = 'pro'\n```\n",
        );
        assert_eq!(cycle_through(&defs, "a").unwrap(), vec!["a", "b", "c", "a"]);
        assert_eq!(cycle_through(&defs, "d"), None);
    }
}
