//! Verification: that the state equals what a fresh replay of the log produces. (The chain
//! check of the log itself is the log's open in read-only mode plus a full read.)

pub mod diff;

pub use diff::{StateDifference, diff_states, replay_state};
