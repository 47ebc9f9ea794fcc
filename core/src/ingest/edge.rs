//! Verification of batches the edge worker signs; the scheme lives in the protocol both sides share
//! (`touchpoint_tracking_plan::protocol`).

pub use touchpoint_tracking_plan::protocol::{
    SIGNATURE_HEADER, SignatureError, TIMESTAMP_HEADER, sign, verify,
};
