//! `folio::Error`: the one error type of the public API, wrapping each layer's error, with the
//! stable machine-readable codes that the CLI prints (`docs/cli.md`, "Errors"). It sits above
//! every layer whose error it wraps (`docs/architecture.md`): log, domain, state, store, replay
//! and verify.

use crate::domain::LedgerError;
use crate::domain::validate::Refusal;
use crate::log::LogError;
use crate::replay::ReplayError;
use crate::state::StateError;
use crate::store::StoreError;
use crate::verify::VerifyError;

/// Any error Folio returns.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A request refused or a failure of the ledger (`LedgerError`).
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// The log's error, wherever it surfaced, in a replay or a verify too (a read of the log
    /// by the state stays `State(StateError::Log)`).
    #[error(transparent)]
    Log(#[from] LogError),
    /// The state's error, wherever it surfaced.
    #[error(transparent)]
    State(#[from] StateError),
    /// The store's directory or lock: not a store, in use.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Replay's own failures (the state file being rebuilt, `replay --out`'s directory). A
    /// [`ReplayError`] converts into `Log`, `State` or `Store` for an error of those layers.
    #[error(transparent)]
    Replay(ReplayError),
    /// Verify's own failures (copying the state file). A [`VerifyError`] converts into the
    /// variant of the layer that failed for the others.
    #[error(transparent)]
    Verify(VerifyError),
}

/// A replay error as the layer's error it carries, so that a caller matches one variant per
/// layer whichever path the error took (`Error::Log(LogError::Corrupt { .. })`).
impl From<ReplayError> for Error {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::Log(error) => Error::Log(error),
            ReplayError::State(error) => Error::State(error),
            ReplayError::Store(error) => Error::Store(error),
            ReplayError::Io { .. }
            | ReplayError::OutNotADirectory { .. }
            | ReplayError::OutExists { .. }
            | ReplayError::OutIo { .. } => Error::Replay(error),
        }
    }
}

/// A verify error as the layer's error it carries, as for [`ReplayError`].
impl From<VerifyError> for Error {
    fn from(error: VerifyError) -> Self {
        match error {
            VerifyError::Store(error) => Error::Store(error),
            VerifyError::Log(error) => Error::Log(error),
            VerifyError::State(error) => Error::State(error),
            VerifyError::Replay(error) => Error::from(*error),
            VerifyError::StateFile { .. } => Error::Verify(error),
        }
    }
}

/// Validation's answer in the crate's terms: a broken rule is the ledger's error, a failed read
/// the state's (`ViewError` carries it whole), a disagreement between state and log the
/// state's `Inconsistent`.
impl From<Refusal> for Error {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::Rule(error) => Error::Ledger(error),
            Refusal::View(error) => Error::State(StateError::from(error)),
            Refusal::Inconsistent { seq, detail } => {
                Error::State(StateError::Inconsistent { seq, detail })
            }
        }
    }
}

impl Error {
    /// A stable, machine-readable code naming the kind of error.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Ledger(error) => ledger_code(error),
            Error::Log(error) => log_code(error),
            Error::State(error) => state_code(error),
            Error::Store(error) => store_code(error),
            Error::Replay(error) => replay_code(error),
            Error::Verify(error) => verify_code(error),
        }
    }

    /// Whether the error is a rejection of the request (bad input or a business rule), as
    /// opposed to a failure of the store.
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            Error::Ledger(
                LedgerError::InvalidInput { .. }
                    | LedgerError::AmountPrecision { .. }
                    | LedgerError::MetadataTooLarge { .. }
                    | LedgerError::EmptyPostings
                    | LedgerError::TooManyPostings { .. }
                    | LedgerError::InsufficientFunds { .. }
                    | LedgerError::Overflow { .. }
                    | LedgerError::IdempotencyConflict { .. }
                    | LedgerError::TransactionNotFound { .. }
                    | LedgerError::AlreadyReverted { .. }
                    | LedgerError::MetadataKeyNotFound { .. }
                    | LedgerError::WorldPolicy
                    | LedgerError::EntryTooLarge { .. }
                    | LedgerError::AckBeyondHead { .. }
                    | LedgerError::AckBackwards { .. }
                    | LedgerError::SkipNotNext { .. }
            ) | Error::Log(
                LogError::BodyTooLarge { .. }
                    | LogError::BatchTooLarge { .. }
                    | LogError::InvalidOption(_)
            ) | Error::Replay(ReplayError::OutNotADirectory { .. })
        )
    }
}

fn ledger_code(error: &LedgerError) -> &'static str {
    match error {
        LedgerError::InvalidInput { .. } => "INVALID_INPUT",
        LedgerError::AmountPrecision { .. } => "AMOUNT_PRECISION",
        LedgerError::MetadataTooLarge { .. } => "METADATA_TOO_LARGE",
        LedgerError::EmptyPostings => "EMPTY_POSTINGS",
        LedgerError::TooManyPostings { .. } => "TOO_MANY_POSTINGS",
        LedgerError::InsufficientFunds { .. } => "INSUFFICIENT_FUNDS",
        LedgerError::Overflow { .. } => "OVERFLOW",
        LedgerError::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
        LedgerError::TransactionNotFound { .. } => "TRANSACTION_NOT_FOUND",
        LedgerError::AlreadyReverted { .. } => "ALREADY_REVERTED",
        LedgerError::MetadataKeyNotFound { .. } => "METADATA_KEY_NOT_FOUND",
        LedgerError::WorldPolicy => "WORLD_POLICY",
        LedgerError::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN",
        LedgerError::NoSpace { .. } => "NO_SPACE",
        LedgerError::Storage { .. } => "STORAGE",
        LedgerError::EntryTooLarge { .. } => "ENTRY_TOO_LARGE",
        LedgerError::AckBeyondHead { .. } => "SEQ_OUT_OF_RANGE",
        LedgerError::AckBackwards { .. } => "ACK_BACKWARDS",
        LedgerError::SkipNotNext { .. } => "SKIP_NOT_NEXT",
        LedgerError::Closed => "CLOSED",
        LedgerError::OpenForReading => "READ_ONLY",
        LedgerError::Poisoned => "POISONED",
        LedgerError::StateBehind => "STATE_BEHIND",
        LedgerError::StoreExists { .. } => "STORE_EXISTS",
        LedgerError::LogBehindState { .. } => "LOG_BEHIND_STATE",
        LedgerError::StateLogMismatch { .. } => "STATE_LOG_MISMATCH",
        LedgerError::NotAStore => "NOT_A_STORE",
    }
}

/// The code of a log error, wherever it surfaced.
fn log_code(error: &LogError) -> &'static str {
    match error {
        LogError::NotAStore { .. } => "NOT_A_STORE",
        LogError::AlreadyExists { .. } => "STORE_EXISTS",
        LogError::UnsupportedVersion { .. } => "UNSUPPORTED_VERSION",
        LogError::Corrupt { .. } => "LOG_CORRUPT",
        LogError::BodyTooLarge { .. } | LogError::BatchTooLarge { .. } => "ENTRY_TOO_LARGE",
        LogError::OutcomeUnknown { .. } => "OUTCOME_UNKNOWN",
        LogError::Poisoned => "POISONED",
        LogError::NoSpace { .. } => "NO_SPACE",
        LogError::Io { .. } => "IO",
        LogError::SeqOutOfRange { .. } => "SEQ_OUT_OF_RANGE",
        LogError::ReadOnly | LogError::NotWritable { .. } => "READ_ONLY",
        LogError::InvalidOption(_) => "INVALID_INPUT",
    }
}

fn state_code(error: &StateError) -> &'static str {
    match error {
        StateError::Inconsistent { .. } => "STATE_INCONSISTENT",
        StateError::BadEntry { .. } => "BAD_ENTRY",
        StateError::NoSpace { .. } => "NO_SPACE",
        StateError::Log(error) => log_code(error),
        StateError::Database(_) | StateError::BadRow { .. } | StateError::Unreadable(_) => "STATE",
    }
}

fn store_code(error: &StoreError) -> &'static str {
    match error {
        StoreError::NotAStore { .. } => "NOT_A_STORE",
        StoreError::InUse { .. } | StoreError::Busy { .. } => "STORE_IN_USE",
        StoreError::Lock { .. } => "STORAGE",
    }
}

fn replay_code(error: &ReplayError) -> &'static str {
    match error {
        ReplayError::Log(error) => log_code(error),
        ReplayError::State(error) => state_code(error),
        ReplayError::Store(error) => store_code(error),
        ReplayError::Io { .. } => "IO",
        ReplayError::OutNotADirectory { .. } => "INVALID_INPUT",
        ReplayError::OutExists { .. } => "STORE_EXISTS",
        ReplayError::OutIo { .. } => "STORAGE",
    }
}

fn verify_code(error: &VerifyError) -> &'static str {
    match error {
        VerifyError::Store(error) => store_code(error),
        VerifyError::Log(error) => log_code(error),
        VerifyError::State(error) => state_code(error),
        VerifyError::Replay(error) => replay_code(error),
        VerifyError::StateFile { .. } => "IO",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_too_large_entry_is_a_rejection_whichever_layer_refuses_it() {
        let from_log = Error::Log(LogError::BodyTooLarge {
            index: 0,
            body_bytes: 2 << 20,
            max: 1 << 20,
        });
        let from_ledger = Error::Ledger(LedgerError::EntryTooLarge {
            bytes: 2 << 20,
            max: 1 << 20,
        });
        for error in [from_log, from_ledger] {
            assert_eq!(error.code(), "ENTRY_TOO_LARGE");
            assert!(error.is_rejection(), "{error}");
        }
        let option = Error::Log(LogError::InvalidOption("segment_bytes"));
        assert_eq!(option.code(), "INVALID_INPUT");
        assert!(option.is_rejection());
    }

    /// The errors of store, replay and verify were `LedgerError`s and `LogError`s before they
    /// had their own types: the codes, exit classes and messages a user sees stay as they were.
    #[test]
    fn the_store_replay_and_verify_errors_keep_their_codes_and_messages() {
        use std::path::PathBuf;
        let path = PathBuf::from("/books");
        let io = || std::io::Error::other("denied");
        let cases: Vec<(Error, &str, &str)> = vec![
            (
                StoreError::NotAStore {
                    path: path.clone(),
                    reason: "no log directory",
                }
                .into(),
                "NOT_A_STORE",
                "/books is not a Folio store: no log directory",
            ),
            (
                StoreError::InUse { path: path.clone() }.into(),
                "STORE_IN_USE",
                "store is in use by another process or handle: /books",
            ),
            (
                StoreError::Lock {
                    path: path.join("LOCK"),
                    source: io(),
                }
                .into(),
                "STORAGE",
                "storage error, nothing was written: cannot lock the store: /books/LOCK: denied",
            ),
            (
                ReplayError::Io {
                    path: path.join("state.redb.replay"),
                    source: io(),
                }
                .into(),
                "IO",
                "I/O error on /books/state.redb.replay: denied",
            ),
            (
                ReplayError::OutNotADirectory {
                    path: PathBuf::from(".."),
                }
                .into(),
                "INVALID_INPUT",
                "out \"..\" must name a directory",
            ),
            (
                ReplayError::OutExists { path: path.clone() }.into(),
                "STORE_EXISTS",
                "/books exists and is not empty",
            ),
            (
                ReplayError::OutIo {
                    out: path.clone(),
                    source: io(),
                }
                .into(),
                "STORAGE",
                "storage error, nothing was written: /books: denied",
            ),
            (
                VerifyError::StateFile {
                    path: path.join("state.redb"),
                    source: io(),
                }
                .into(),
                "IO",
                "I/O error on /books/state.redb: denied",
            ),
            (
                VerifyError::from(ReplayError::from(StoreError::InUse { path })).into(),
                "STORE_IN_USE",
                "store is in use by another process or handle: /books",
            ),
        ];
        for (error, code, message) in cases {
            assert_eq!((error.code(), error.to_string().as_str()), (code, message));
            assert_eq!(error.is_rejection(), code == "INVALID_INPUT", "{error}");
        }
    }

    /// A layer's error wraps the larger errors below it in a box or carries them inline no
    /// bigger than they are: results of these types stay a few words.
    #[test]
    fn the_layer_errors_stay_small() {
        let largest_below = size_of::<LogError>().max(size_of::<StateError>());
        assert!(size_of::<StoreError>() <= 48);
        assert!(size_of::<ReplayError>() <= largest_below + 8);
        assert!(size_of::<VerifyError>() <= largest_below + 8);
    }
}
