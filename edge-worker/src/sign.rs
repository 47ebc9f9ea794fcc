//! The signature core verifies on `POST /v1/edge/batch`: the scheme lives in the protocol both
//! sides share (`touchpoint_tracking_plan::protocol`), so the worker and core cannot drift.

pub use touchpoint_tracking_plan::protocol::{SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
