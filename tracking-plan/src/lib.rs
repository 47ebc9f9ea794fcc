//! Touchpoint's data contract: parses `TRACKING_PLAN.md`, and validates Segment-spec messages against it.
//!
//! Pure Rust with no I/O so the same code runs in the browser SDK (dev warnings), in the edge worker
//! (enforcement) and in core (enforcement for server sources). Builds for `wasm32-unknown-unknown`.
//!
//! ```
//! use touchpoint_tracking_plan::{Message, TrackingPlan, Verdict};
//!
//! let plan: TrackingPlan = "## Settings\n\n- Unplanned events: `block`\n".parse().unwrap();
//! let mut msg = Message::from_value(
//!     serde_json::json!({"type": "track", "userId": "u1", "event": "invoice_paid"}),
//!     None,
//! )
//! .unwrap()
//! .message;
//! assert_eq!(plan.enforce(&mut msg).verdict, Verdict::Block);
//! ```

#![warn(missing_docs)]

pub mod lint;
pub mod message;
pub mod parse;
pub mod plan;
#[cfg(feature = "protocol")]
pub mod protocol;
pub mod validate;

pub use lint::{ga4_event_problems, ga4_param_problems, is_snake_case, to_snake_case};
pub use message::{BatchEnvelope, Message, MessageError, MessageType, Notice, Parsed};
pub use parse::{Diagnostic, ParseError, ParseErrorKind, Severity, check, parse};
pub use plan::{
    BlockedValue, Constraints, EventSpec, IdentityRules, InvalidEventPolicy, NamingConvention,
    PropertySpec, PropertyType, Settings, Stage, TrackingPlan, UnplannedEventPolicy,
    UnplannedPropertyPolicy,
};
pub use validate::{Outcome, Verdict, Violation, ViolationKind, is_timestamp};
