//! `VerifyError`: why verification could not run at all. Damage it finds is not an error but
//! a report with `ok: false` ([`super::VerifyReport`]); this is for a store it cannot open or
//! read.

use std::path::PathBuf;

use crate::log::LogError;
use crate::replay::ReplayError;
use crate::state::StateError;
use crate::store::StoreError;

/// An error that kept verification from running.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The directory is not a store, or another process has it open.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The log failed in a way that is not damage (I/O, an unsupported version), or an entry
    /// that the chain check passed does not read back.
    #[error(transparent)]
    Log(#[from] LogError),
    /// The store's state snapshot, or the in-memory state a replay builds, failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// A replay into an in-memory state failed ([`super::replay_state`]); boxed, since it
    /// holds a log or state error and more.
    #[error(transparent)]
    Replay(Box<ReplayError>),
    /// Looking for or opening `state.redb` to read it failed (`IO`).
    #[error("I/O error on {path}: {source}")]
    StateFile {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl From<ReplayError> for VerifyError {
    fn from(error: ReplayError) -> Self {
        VerifyError::Replay(Box::new(error))
    }
}
