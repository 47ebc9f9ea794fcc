//! Dev build only (`dev-validate`): checks each call against the tracking plan and warns in the console.

use touchpoint_tracking_plan::{Message, TrackingPlan};

/// Warns about every way `msg` (JSON text) breaks `plan`.
pub fn warn_violations(plan: &TrackingPlan, msg: &str) {
    let Ok(value) = serde_json::from_str(msg) else {
        return;
    };
    let Ok(parsed) = Message::from_value(value, None) else {
        return;
    };
    let m = &parsed.message;
    let what = m.event.as_deref().unwrap_or(m.kind.as_str());
    for v in plan.validate(m) {
        super::web::warn(&format!("touchpoint tracking plan: {what}: {v}"));
    }
}

/// Parses a plan, warning when it does not parse.
pub fn parse(text: &str) -> Option<TrackingPlan> {
    match touchpoint_tracking_plan::parse(text) {
        Ok(plan) => Some(plan),
        Err(e) => {
            super::web::warn(&format!(
                "touchpoint: the tracking plan does not parse: {e}"
            ));
            None
        }
    }
}

/// Loads the plan from the `devPlan` option, or with `debug` fetches `{apiHost}/sdk/plan.md`
/// (it arrives later, through `tp_plan`).
pub fn load_plan(
    slot: &mut Option<TrackingPlan>,
    dev_plan: Option<&str>,
    debug: bool,
    api_host: &str,
) {
    if let Some(text) = dev_plan {
        *slot = parse(text);
        return;
    }
    if debug {
        super::web::fetch_plan(&format!("{api_host}/sdk/plan.md"));
    }
}
